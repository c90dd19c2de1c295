//! The one error type of the core. Every kernel validates its arguments and reports
//! a failure as data (never a panic), naming the public function and the argument,
//! so that the binding layer can turn it into a Python exception with a useful text.
//!
//! Checks read as `ensure!(cond, FerropsError::value(...))` (polars' `polars_ensure!`
//! pattern); bindings turn the error into a Python exception through `From`, so no
//! call site maps errors by hand.

use std::borrow::Cow;

use thiserror::Error;

/// A public function's or argument's name: usually a literal, sometimes built at run
/// time (a binding that serves several public functions passes the caller's name).
pub type Name = Cow<'static, str>;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum FerropsError {
    /// A value is of the right type but not acceptable (shape, range, finiteness...).
    /// Maps to Python's `ValueError`.
    #[error("{function}(): argument '{argument}': expected {expected}, got {got}")]
    InvalidValue {
        function: Name,
        argument: Name,
        expected: String,
        got: String,
    },
    /// A value is of the wrong kind (dtype, container). Maps to Python's `TypeError`.
    #[error("{function}(): argument '{argument}': expected {expected}, got {got}")]
    InvalidType {
        function: Name,
        argument: Name,
        expected: String,
        got: String,
    },
    /// A result or working buffer larger than the machine can hold (or than `usize`
    /// can count). Maps to Python's `MemoryError`.
    #[error("{function}(): {what} needs {bytes} bytes, more than can be allocated")]
    OutOfMemory { function: Name, what: String, bytes: u128 },
    /// The caller raised the kernel's cancellation token ([`crate::interrupt`]):
    /// a signal handler raised an exception while the kernel ran. Maps to
    /// Python's `KeyboardInterrupt`.
    #[error("{function}(): interrupted")]
    Interrupted { function: Name },
}

impl FerropsError {
    pub fn value(
        function: impl Into<Name>,
        argument: impl Into<Name>,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        FerropsError::InvalidValue {
            function: function.into(),
            argument: argument.into(),
            expected: expected.into(),
            got: got.into(),
        }
    }

    pub fn type_(
        function: impl Into<Name>,
        argument: impl Into<Name>,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        FerropsError::InvalidType {
            function: function.into(),
            argument: argument.into(),
            expected: expected.into(),
            got: got.into(),
        }
    }
}

impl FerropsError {
    /// `what` ("the output of shape [N, M]") needs `bytes` bytes (a u128, so that a
    /// size that overflows `usize` is still reported as it is).
    pub fn out_of_memory(function: impl Into<Name>, what: impl Into<String>, bytes: u128) -> Self {
        FerropsError::OutOfMemory { function: function.into(), what: what.into(), bytes }
    }
}

pub type Result<T> = std::result::Result<T, FerropsError>;

/// `ensure!(condition, error)` returns `Err(error.into())` from the enclosing
/// function unless `condition` holds. The error expression is evaluated only on
/// failure, so building its message costs nothing on the good path.
#[macro_export]
macro_rules! ensure {
    ($condition:expr, $error:expr $(,)?) => {
        if !$condition {
            return ::core::result::Result::Err(::core::convert::From::from($error));
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positive(function: &'static str, x: i64) -> Result<i64> {
        ensure!(x > 0, FerropsError::value(function, "x", "a positive int", x.to_string()));
        Ok(x)
    }

    #[test]
    fn ensure_returns_the_error_only_when_the_condition_fails() {
        assert_eq!(positive("f", 3), Ok(3));
        let err = positive("f", -1).unwrap_err();
        assert_eq!(err.to_string(), "f(): argument 'x': expected a positive int, got -1");
    }

    #[test]
    fn names_built_at_run_time_are_kept() {
        let function = format!("{}_{}", "flash", "attn_func");
        let err = FerropsError::type_(function, "q", "float32", "int8");
        assert_eq!(err.to_string(), "flash_attn_func(): argument 'q': expected float32, got int8");
    }
}
