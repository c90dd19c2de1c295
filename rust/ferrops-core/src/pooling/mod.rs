//! Pooling kernels (SPEC section 4): windowed max pooling and SPPF, adaptive
//! max/average pooling and spatial pyramid pooling, RoI pooling and RoI align,
//! each with its backward kernel.
//!
//! Inputs are row-major NCHW slices described by a [`Shape`]. Every kernel works
//! plane by plane (one `(batch, channel)` image of `H x W`): a plane fits in the
//! L1/L2 cache, so it is read from memory once whatever the window size, and
//! planes are independent, so the per-plane split gives results that are bitwise
//! the same for any thread count. Backward kernels that scatter into an input
//! plane (max arg max, RoI gradients) own that plane and visit its contributions
//! in a fixed order.

mod adaptive;
mod roi;
mod window;

pub use adaptive::{
    adaptive_max_pool2d_with_indices, adaptive_pool2d, adaptive_pool2d_backward, spatial_pyramid_pool,
    spatial_pyramid_pool_backward, PoolMode,
};
pub use roi::{roi_align, roi_align_backward, roi_pool, roi_pool_backward, roi_pool_with_argmax};
pub use window::{max_pool2d, max_pool2d_backward, sppf, sppf_backward};

use crate::buffer::{self, Zeroable};
use crate::error::{FerropsError, Result};
use crate::Real;

/// The shape of an NCHW tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub fn new(dims: [usize; 4]) -> Shape {
        Shape { n: dims[0], c: dims[1], h: dims[2], w: dims[3] }
    }

    pub fn planes(&self) -> usize {
        self.n * self.c
    }

    pub fn plane_len(&self) -> usize {
        self.h * self.w
    }

    pub fn len(&self) -> usize {
        self.planes() * self.plane_len()
    }

    pub fn dims(&self) -> [usize; 4] {
        [self.n, self.c, self.h, self.w]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that `data` holds exactly this shape's elements.
    pub(crate) fn check(&self, function: &'static str, argument: &'static str, len: usize) -> Result<()> {
        if len != self.len() {
            return Err(FerropsError::value(
                function,
                argument,
                format!("{} values for shape [{}, {}, {}, {}]", self.len(), self.n, self.c, self.h, self.w),
                format!("{len} values"),
            ));
        }
        Ok(())
    }
}

/// The input range `[start, end)` of adaptive bin `i` of `bins` over an extent
/// `size` (POOL-ADAPTIVE): `[floor(i a / n), ceil((i + 1) a / n))`.
#[inline]
pub fn adaptive_bin(i: usize, bins: usize, size: usize) -> (usize, usize) {
    let start = i * size / bins;
    let end = ((i + 1) * size).div_ceil(bins);
    (start, end)
}

/// The max of two values that propagates NaN from either side, as torch's max
/// pooling does; compiles to compare, compare-unordered and blend per vector.
#[inline(always)]
pub(crate) fn nan_max<T: Real>(a: T, b: T) -> T {
    #[allow(clippy::eq_op)]
    if a > b || a != a {
        a
    } else {
        b
    }
}

/// The element types of the windowed kernels: [`Real`] plus IEEE `maxNum`, which
/// vectorises (`vmaxps` and a blend) where a compare-and-select written in Rust
/// over a slice in place becomes a conditional store (`vmaskmovps`), microcoded
/// and many times slower. `maxNum` ignores a NaN operand, so planes that contain a
/// NaN take the [`nan_max`] path instead (see [`has_nan`]). Zero-initialised
/// outputs come from zeroed pages ([`Zeroable`]).
pub trait PoolReal: Real + Zeroable {
    fn max_num(self, other: Self) -> Self;
}

impl PoolReal for f32 {
    #[inline(always)]
    fn max_num(self, other: Self) -> Self {
        f32::max(self, other)
    }
}

impl PoolReal for f64 {
    #[inline(always)]
    fn max_num(self, other: Self) -> Self {
        f64::max(self, other)
    }
}

/// The max used by a kernel instance: NaN propagating when the plane has a NaN.
#[inline(always)]
pub(crate) fn max_of<T: PoolReal, const NAN: bool>(a: T, b: T) -> T {
    if NAN {
        nan_max(a, b)
    } else {
        a.max_num(b)
    }
}

/// Whether a plane may hold a NaN: true for a NaN, and also for an infinity
/// (`v - v` is NaN for both), which only sends such a plane down the NaN-exact
/// path, correct for infinities too. Sums in 32 independent lanes so the adds
/// vectorise without a dependency chain; a boolean fold would pack its masks to
/// bytes on every step.
#[inline(always)]
#[allow(clippy::eq_op)]
pub(crate) fn has_nan<T: Real>(plane: &[T]) -> bool {
    const LANES: usize = 32;
    let mut lanes = [T::ZERO; LANES];
    let mut chunks = plane.chunks_exact(LANES);
    for chunk in &mut chunks {
        for l in 0..LANES {
            lanes[l] += chunk[l] - chunk[l];
        }
    }
    let total = chunks.remainder().iter().fold(lanes.iter().fold(T::ZERO, |s, &v| s + v), |s, &v| s + (v - v));
    !total.is_finite()
}

/// Lanes of the partial maxima in [`max_reduce`]: one AVX2 vector of f32.
const REDUCE_LANES: usize = 8;

/// The max of a non-empty slice. Without NaN the running maximum is kept in
/// `REDUCE_LANES` independent lanes (a vector, and no chain of dependent maxes),
/// reduced at the end; with NaN, a NaN-propagating scalar fold.
#[inline(always)]
pub(crate) fn max_reduce<T: PoolReal, const NAN: bool>(values: &[T]) -> T {
    if NAN || values.len() < 2 * REDUCE_LANES {
        return values[1..].iter().fold(values[0], |m, &v| max_of::<T, NAN>(m, v));
    }
    let (chunks, tail) = values.split_at(values.len() - values.len() % REDUCE_LANES);
    let mut lanes = [values[0]; REDUCE_LANES];
    for chunk in chunks.chunks_exact(REDUCE_LANES) {
        for l in 0..REDUCE_LANES {
            lanes[l] = lanes[l].max_num(chunk[l]);
        }
    }
    tail.iter().fold(lanes.iter().fold(lanes[0], |m, &v| m.max_num(v)), |m, &v| m.max_num(v))
}

/// `dst[j] = max_t src[t * step + j]` over `t < count`: the elementwise max of
/// `count` rows `step` apart, or with `step == 1` the sliding window max of width
/// `count` along one row. Every caller has `count >= 1` (windows and bins are
/// never empty).
///
/// The first pass combines three rows and each later one two more, so `dst` is
/// loaded and stored `count / 2` times rather than `count` (plus a copy): every
/// pass reloads what the last one stored, and on Zen 4 that round trip, not the
/// maxes, bounds SPPF's `k = 5` pools.
#[inline(always)]
pub(crate) fn strided_max<T: PoolReal, const NAN: bool>(src: &[T], step: usize, count: usize, dst: &mut [T]) {
    debug_assert!(count >= 1, "strided_max over no rows");
    let n = dst.len();
    let row = |t: usize| &src[t * step..t * step + n];
    // Index loops over slices of one length: bounds checks vanish and nothing is
    // left to an iterator adapter that might not be inlined.
    match count {
        1 => dst.copy_from_slice(row(0)),
        2 => {
            let (a, b) = (row(0), row(1));
            for j in 0..n {
                dst[j] = max_of::<T, NAN>(a[j], b[j]);
            }
        }
        _ => {
            let (a, b, c) = (row(0), row(1), row(2));
            for j in 0..n {
                dst[j] = max_of::<T, NAN>(max_of::<T, NAN>(a[j], b[j]), c[j]);
            }
        }
    }
    let mut t = 3;
    while t + 1 < count {
        let (a, b) = (row(t), row(t + 1));
        for j in 0..n {
            dst[j] = max_of::<T, NAN>(dst[j], max_of::<T, NAN>(a[j], b[j]));
        }
        t += 2;
    }
    if t < count {
        let a = row(t);
        for j in 0..n {
            dst[j] = max_of::<T, NAN>(dst[j], a[j]);
        }
    }
}

/// Whether `v` replaces `best` as the arg max scanning in row-major order: a
/// strictly larger value (so ties keep the first, POOL-MAX), or a NaN (torch's
/// rule: NaN is the max, the last one in the window takes the gradient).
#[inline(always)]
pub(crate) fn beats<T: Real>(v: T, best: T) -> bool {
    #[allow(clippy::eq_op)]
    let v_nan = v != v;
    v > best || v_nan
}

pub(crate) fn positive(function: &'static str, argument: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(FerropsError::value(function, argument, "a positive size", "0"));
    }
    Ok(())
}

/// The `PH x PW` bins of each plane of an output of `output_size`, for backward
/// kernels, which get no forward output to size: both sizes positive and their
/// product one a buffer can hold, so that products of it with the other output
/// dimensions can then be checked without overflow.
pub(crate) fn plane_bins<T>(function: &'static str, output_size: [usize; 2]) -> Result<usize> {
    positive(function, "output_size", output_size[0])?;
    positive(function, "output_size", output_size[1])?;
    buffer::checked_len::<T>(function, "each plane of the output", &output_size)
}

/// Checks a gradient's length against the output shape it belongs to, `dims`
/// (counted in u128: a shape whose size overflows matches no gradient).
pub(crate) fn check_grad(function: &'static str, dims: &[usize], got: usize) -> Result<()> {
    let expected = dims.iter().fold(1u128, |n, &d| n.saturating_mul(d as u128));
    if expected != got as u128 {
        return Err(FerropsError::value(
            function,
            "grad_output",
            format!("{expected} values (the forward output's size)"),
            format!("{got} values"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adaptive_bins_cover_the_extent_and_follow_the_formula() {
        for size in 1..20 {
            for bins in 1..25 {
                let mut covered = vec![false; size];
                for i in 0..bins {
                    let (s, e) = adaptive_bin(i, bins, size);
                    assert_eq!(s, ((i * size) as f64 / bins as f64).floor() as usize);
                    assert_eq!(e, (((i + 1) * size) as f64 / bins as f64).ceil() as usize);
                    assert!(s < e && e <= size);
                    covered[s..e].iter_mut().for_each(|c| *c = true);
                }
                assert!(covered.iter().all(|&c| c));
            }
        }
    }

    #[test]
    fn nan_max_propagates_from_both_sides() {
        assert!(nan_max(f32::NAN, 1.0).is_nan());
        assert!(nan_max(1.0, f32::NAN).is_nan());
        assert_eq!(nan_max(1.0f32, 2.0), 2.0);
        assert!(beats(f32::NAN, 3.0));
        assert!(!beats(5.0, f32::NAN));
        assert!(beats(f32::NAN, f32::NAN));
        let mut plane = vec![1.0f32; 100];
        assert!(!has_nan(&plane));
        plane[99] = f32::NAN;
        assert!(has_nan(&plane));
        plane[99] = 0.0;
        plane[40] = f32::NAN;
        assert!(has_nan(&plane));
        let values: Vec<f32> = (0..37).map(|i| ((i * 7) % 23) as f32).collect();
        assert_eq!(max_reduce::<f32, false>(&values), 22.0);
        assert!(max_reduce::<f32, true>(&[1.0, f32::NAN, 2.0]).is_nan());
        assert!(!beats(3.0f32, 3.0));
    }
}
