//! Finiteness checks for inputs whose NaN or infinity a kernel would otherwise
//! hide (a max that skips NaN, say) rather than propagate: such input is rejected
//! with a `ValueError` naming the argument and the first bad element.

use rayon::prelude::*;

use crate::error::{FerropsError, Result};
use crate::simd::{dispatch, SimdKernel};
use crate::Real;

/// Elements per parallel task; fixed, so the work split does not depend on threads.
const CHUNK: usize = 1 << 16;

struct AllFinite<'a, T>(&'a [T]);

impl<T: Real> SimdKernel for AllFinite<'_, T> {
    type Output = bool;
    #[inline(always)]
    fn run(self) -> bool {
        // Branch-free, so it vectorises; NaN fails the comparison too.
        self.0.iter().fold(true, |ok, v| ok & (v.abs() < T::INFINITY))
    }
}

pub fn check_all_finite<T: Real>(function: &'static str, argument: &'static str, values: &[T]) -> Result<()> {
    if values.par_chunks(CHUNK).all(|chunk| dispatch(AllFinite(chunk))) {
        return Ok(());
    }
    let i = values.iter().position(|v| !v.is_finite()).expect("the fold found a non-finite value");
    Err(FerropsError::value(function, argument, "finite values", format!("{argument}[{i}] = {}", values[i])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_non_finite_value() {
        let mut v = vec![1.0f32; 200_000];
        assert!(check_all_finite("f", "x", &v).is_ok());
        v[150_001] = f32::INFINITY;
        v[170_000] = f32::NAN;
        let err = check_all_finite("f", "x", &v).unwrap_err().to_string();
        assert!(err.contains("x[150001] = inf"), "{err}");
        assert!(check_all_finite::<f64>("f", "x", &[]).is_ok());
    }
}
