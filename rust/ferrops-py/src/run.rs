//! The one way bindings call into the core: [`run_kernel`] releases the GIL, runs
//! the closure on ferrops' thread pool, turns a panic into a Python exception
//! instead of aborting the interpreter, and raises the core's [`FerropsError`]
//! through [`BindingError`] (`ValueError`/`TypeError`/`MemoryError`). No binding
//! releases the GIL or maps errors by hand. It returns `PyResult`, which `?` takes
//! in bindings returning `PyResult` and [`BindingResult`](crate::error::BindingResult) alike.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ferrops_core::{parallel, FerropsError};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::error::BindingError;

/// Kept for the bindings that still map errors by hand (boxes, detection, mdp);
/// delete once none uses it.
pub fn to_py_err(err: FerropsError) -> PyErr {
    BindingError::from(err).into()
}

pub fn run_kernel<T, F>(py: Python<'_>, kernel: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> ferrops_core::Result<T> + Send,
{
    let outcome = py.detach(|| catch_unwind(AssertUnwindSafe(|| parallel::install(kernel))));
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(BindingError::from(err).into()),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(PyRuntimeError::new_err(format!("internal error in ferrops (please report it): {what}")))
        }
    }
}
