//! The one error type of the core. Every kernel validates its arguments and reports
//! a failure as data (never a panic), naming the public function and the argument,
//! so that the binding layer can turn it into a Python exception with a useful text.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum FerropsError {
    /// A value is of the right type but not acceptable (shape, range, finiteness...).
    /// Maps to Python's `ValueError`.
    #[error("{function}(): argument '{argument}': expected {expected}, got {got}")]
    InvalidValue {
        function: &'static str,
        argument: &'static str,
        expected: String,
        got: String,
    },
    /// A value is of the wrong kind (dtype, container). Maps to Python's `TypeError`.
    #[error("{function}(): argument '{argument}': expected {expected}, got {got}")]
    InvalidType {
        function: &'static str,
        argument: &'static str,
        expected: String,
        got: String,
    },
}

impl FerropsError {
    pub fn value(
        function: &'static str,
        argument: &'static str,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        FerropsError::InvalidValue {
            function,
            argument,
            expected: expected.into(),
            got: got.into(),
        }
    }

    pub fn type_(
        function: &'static str,
        argument: &'static str,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        FerropsError::InvalidType {
            function,
            argument,
            expected: expected.into(),
            got: got.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, FerropsError>;
