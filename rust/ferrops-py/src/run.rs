//! The one way bindings call into the core: [`run_kernel`] releases the GIL, runs
//! the closure on ferrops' thread pool, turns a panic into a Python exception
//! instead of aborting the interpreter, and maps [`FerropsError`] to
//! `ValueError`/`TypeError`. No binding releases the GIL or maps errors by hand.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ferrops_core::{parallel, FerropsError};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::error::BindingError;

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
        Ok(result) => result.map_err(to_py_err),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(PyRuntimeError::new_err(format!(
                "internal error in ferrops (please report it): {what}"
            )))
        }
    }
}
