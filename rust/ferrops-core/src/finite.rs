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
    check_chunks(function, argument, values, |chunk| dispatch(AllFinite(chunk)), |v| v.is_finite(), |v| v.to_string())
}

/// [`check_all_finite`] on bfloat16 bits: an all-ones exponent is an infinity or
/// a NaN. The error shows the value widened to float32 (exactly).
pub fn check_all_finite_bf16(function: &'static str, argument: &'static str, values: &[u16]) -> Result<()> {
    let finite = |x: &u16| x & 0x7F80 != 0x7F80;
    check_chunks(
        function,
        argument,
        values,
        // Branch-free, so it vectorises.
        |chunk| chunk.iter().fold(true, |ok, x| ok & finite(x)),
        finite,
        |x| f32::from_bits((*x as u32) << 16).to_string(),
    )
}

/// The fast parallel test of every chunk, then, only on failure, the search for
/// the first bad element to name.
fn check_chunks<T: Sync>(
    function: &'static str,
    argument: &'static str,
    values: &[T],
    chunk_ok: impl Fn(&[T]) -> bool + Sync + Send,
    ok: impl Fn(&T) -> bool,
    show: impl Fn(&T) -> String,
) -> Result<()> {
    if values.par_chunks(CHUNK).all(chunk_ok) {
        return Ok(());
    }
    let i = values.iter().position(|v| !ok(v)).expect("a chunk test found a non-finite value");
    Err(FerropsError::value(function, argument, "finite values", format!("{argument}[{i}] = {}", show(&values[i]))))
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

    #[test]
    fn names_the_first_non_finite_bfloat16() {
        let mut x = vec![0x3F80u16; 100_000]; // 1.0
        assert!(check_all_finite_bf16("f", "key", &x).is_ok());
        x[70_001] = 0xFF80; // -inf
        x[90_000] = 0x7FC0; // NaN
        let err = check_all_finite_bf16("f", "key", &x).unwrap_err().to_string();
        assert!(err.contains("key[70001] = -inf"), "{err}");
    }
}
