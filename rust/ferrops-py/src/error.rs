//! The one error path of the bindings (polars' `PyPolarsErr` pattern). Neither
//! `FerropsError` nor `PyErr` is defined in this crate, so `From<FerropsError> for
//! PyErr` cannot be written here; [`BindingError`] stands between them, convertible
//! from both, so a binding returning [`BindingResult`] uses `?` on core results and
//! on PyO3 results alike, and PyO3 raises it as the matching Python exception.

use ferrops_core::FerropsError;
use pyo3::exceptions::{PyKeyboardInterrupt, PyMemoryError, PyTypeError, PyValueError};
use pyo3::PyErr;

pub struct BindingError(PyErr);

pub type BindingResult<T> = Result<T, BindingError>;

impl From<FerropsError> for BindingError {
    fn from(err: FerropsError) -> Self {
        let text = err.to_string();
        BindingError(match err {
            FerropsError::InvalidValue { .. } => PyValueError::new_err(text),
            FerropsError::InvalidType { .. } => PyTypeError::new_err(text),
            FerropsError::OutOfMemory { .. } => PyMemoryError::new_err(text),
            FerropsError::Interrupted { .. } => PyKeyboardInterrupt::new_err(text),
        })
    }
}

impl From<PyErr> for BindingError {
    fn from(err: PyErr) -> Self {
        BindingError(err)
    }
}

impl From<BindingError> for PyErr {
    fn from(err: BindingError) -> Self {
        err.0
    }
}
