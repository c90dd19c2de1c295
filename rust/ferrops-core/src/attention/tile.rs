//! The two operations the tiled attention loops are made of, per element type:
//! a small matrix product over packed, padded tiles, and the online-softmax row
//! update (ATT-ONLINE) in the base-2 domain.
//!
//! float32 runs the hand-written AVX-512 or AVX2+FMA kernels of `kernels/` when
//! the active SIMD level allows it (8 x 32 and 6 x 16 register-blocked
//! micro-kernels and a polynomial `exp2`); every other case runs the portable code
//! below, which is also the reference the SIMD code is tested against. The level
//! is asked per tile with [`simd::supports`], and the SIMD bodies are
//! `#[target_feature]` functions: the intrinsics must be compiled with those
//! features, and a call per tile (tens of thousands of flops) costs nothing.

#[cfg(target_arch = "x86_64")]
use super::kernels::{avx2, avx512};
use crate::simd::{self, SimdLevel};
use crate::Real;

/// Rows of a tile are padded to a multiple of this (the micro-kernel's 6 rows and
/// 16 columns both divide it), so kernels never handle a ragged edge.
pub const PAD: usize = 48;
/// Columns of a product's output (and of the value/head dimension) are padded to
/// a multiple of this.
pub const LANES: usize = 16;

pub fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// The element types attention computes in: float32 (also for bfloat16/float16
/// inputs, converted by the caller) and float64.
pub trait AttnFloat: Real {
    /// `c[m x n] (+)= A[m x k] . b[k x n]` with `A[i][p] = a[i * a_rows + p * a_cols]`
    /// (row-major A has `a_cols = 1`; a transposed one `a_rows = 1`), `b` and `c`
    /// row-major with leading dimensions `ldb`, `ldc`; `n % 8 == 0`.
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        m: usize,
        n: usize,
        k: usize,
        a: &[Self],
        a_rows: usize,
        a_cols: usize,
        b: &[Self],
        ldb: usize,
        c: &mut [Self],
        ldc: usize,
        accumulate: bool,
    );

    /// One online-softmax step on a transposed score tile: `z` holds `keys` rows
    /// (`ldz` apart) of base-2 scores for `queries` columns (`queries % 8 == 0`,
    /// masked entries `-inf`). Per query (column): updates the running max `m`
    /// and sum `l`, overwrites `z` with the probabilities `exp2(z - m')`, and
    /// returns in `alpha` the factor `exp2(m - m')` its unnormalised output must be
    /// multiplied by.
    #[allow(clippy::too_many_arguments)]
    fn softmax_step(
        keys: usize,
        queries: usize,
        z: &mut [Self],
        ldz: usize,
        m: &mut [Self],
        l: &mut [Self],
        alpha: &mut [Self],
    );

    /// `z[i] = exp2(z[i] - shift)` for each row, with its own shift (`-inf` shift
    /// gives 0: a row that attends to nothing): the probabilities recomputed from
    /// the log-sum-exp in the backward pass.
    fn exp2_shifted(rows: usize, cols: usize, z: &mut [Self], ldz: usize, shift: &[Self]);

    /// `sum_i a[i] b[i]` over `a.len()` elements (`b` at least as long): the
    /// score of a single query (decoding), where a product with a padded query
    /// block would waste 7 of every 8 lanes.
    fn dot(a: &[Self], b: &[Self]) -> Self;
}

#[allow(clippy::too_many_arguments)]
fn gemm_portable<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    a_rows: usize,
    a_cols: usize,
    b: &[T],
    ldb: usize,
    c: &mut [T],
    ldc: usize,
    accumulate: bool,
) {
    for i in 0..m {
        let c_row = &mut c[i * ldc..i * ldc + n];
        if !accumulate {
            c_row.fill(T::ZERO);
        }
        for p in 0..k {
            let a_ip = a[i * a_rows + p * a_cols];
            let b_row = &b[p * ldb..p * ldb + n];
            for (c_ij, &b_pj) in c_row.iter_mut().zip(b_row) {
                *c_ij += a_ip * b_pj;
            }
        }
    }
}

/// `exp2` for the portable path: the library `exp` is accurate to an ulp, which
/// makes this path the reference the SIMD polynomial is checked against.
#[inline(always)]
fn exp2_portable<T: Real>(x: T) -> T {
    if x == T::from_f64(f64::NEG_INFINITY) {
        T::ZERO
    } else {
        (x * T::from_f64(std::f64::consts::LN_2)).exp()
    }
}

fn softmax_step_portable<T: Real>(
    keys: usize,
    queries: usize,
    z: &mut [T],
    ldz: usize,
    m: &mut [T],
    l: &mut [T],
    alpha: &mut [T],
) {
    let neg_inf = T::from_f64(f64::NEG_INFINITY);
    let mut shift = vec![T::ZERO; queries];
    for c in 0..queries {
        let tile_max = (0..keys).fold(neg_inf, |acc, j| acc.max_fast(z[j * ldz + c]));
        let m_new = m[c].max_fast(tile_max);
        // A query with nothing to attend to so far keeps m = -inf; shifting by 0
        // then gives exp2(-inf) = 0 instead of NaN.
        shift[c] = if m_new == neg_inf { T::ZERO } else { m_new };
        alpha[c] = exp2_portable(m[c] - shift[c]);
        m[c] = m_new;
        l[c] *= alpha[c];
    }
    for j in 0..keys {
        let row = &mut z[j * ldz..j * ldz + queries];
        for ((x, &s), l) in row.iter_mut().zip(&shift).zip(l.iter_mut()) {
            *x = exp2_portable(*x - s);
            *l += *x;
        }
    }
}

fn exp2_shifted_portable<T: Real>(rows: usize, cols: usize, z: &mut [T], ldz: usize, shift: &[T]) {
    let neg_inf = T::from_f64(f64::NEG_INFINITY);
    for r in 0..rows {
        let row = &mut z[r * ldz..r * ldz + cols];
        if shift[r] == neg_inf {
            row.fill(T::ZERO);
        } else {
            for x in row.iter_mut() {
                *x = exp2_portable(*x - shift[r]);
            }
        }
    }
}

fn dot_portable<T: Real>(a: &[T], b: &[T]) -> T {
    a.iter().zip(b).fold(T::ZERO, |acc, (&x, &y)| acc + x * y)
}

impl AttnFloat for f64 {
    fn gemm(
        m: usize,
        n: usize,
        k: usize,
        a: &[f64],
        a_rows: usize,
        a_cols: usize,
        b: &[f64],
        ldb: usize,
        c: &mut [f64],
        ldc: usize,
        accumulate: bool,
    ) {
        gemm_portable(m, n, k, a, a_rows, a_cols, b, ldb, c, ldc, accumulate)
    }
    fn softmax_step(
        keys: usize,
        queries: usize,
        z: &mut [f64],
        ldz: usize,
        m: &mut [f64],
        l: &mut [f64],
        alpha: &mut [f64],
    ) {
        softmax_step_portable(keys, queries, z, ldz, m, l, alpha)
    }
    fn exp2_shifted(rows: usize, cols: usize, z: &mut [f64], ldz: usize, shift: &[f64]) {
        exp2_shifted_portable(rows, cols, z, ldz, shift)
    }
    fn dot(a: &[f64], b: &[f64]) -> f64 {
        dot_portable(a, b)
    }
}

impl AttnFloat for f32 {
    fn gemm(
        m: usize,
        n: usize,
        k: usize,
        a: &[f32],
        a_rows: usize,
        a_cols: usize,
        b: &[f32],
        ldb: usize,
        c: &mut [f32],
        ldc: usize,
        accumulate: bool,
    ) {
        assert!(n.is_multiple_of(8), "tile not padded");
        assert!(m == 0 || k == 0 || (m - 1) * a_rows + (k - 1) * a_cols < a.len(), "tile exceeds its buffer");
        check_extent(k, n, ldb, b.len());
        check_extent(m, n, ldc, c.len());
        #[cfg(target_arch = "x86_64")]
        if simd::supports(SimdLevel::Avx512) {
            // SAFETY: the active level says the CPU has AVX-512 (F, BW, VL) and FMA;
            // the extents were checked.
            unsafe {
                avx512::gemm(m, n, k, a.as_ptr(), a_rows, a_cols, b.as_ptr(), ldb, c.as_mut_ptr(), ldc, accumulate)
            };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if simd::supports(SimdLevel::Avx2) {
            // SAFETY: the active level says the CPU has AVX2 and FMA; the extents were
            // checked.
            unsafe {
                avx2::gemm(m, n, k, a.as_ptr(), a_rows, a_cols, b.as_ptr(), ldb, c.as_mut_ptr(), ldc, accumulate)
            };
            return;
        }
        gemm_portable(m, n, k, a, a_rows, a_cols, b, ldb, c, ldc, accumulate)
    }

    fn softmax_step(
        keys: usize,
        queries: usize,
        z: &mut [f32],
        ldz: usize,
        m: &mut [f32],
        l: &mut [f32],
        alpha: &mut [f32],
    ) {
        check_extent(keys, queries, ldz, z.len());
        assert!(m.len() >= queries && l.len() >= queries && alpha.len() >= queries);
        #[cfg(target_arch = "x86_64")]
        if simd::supports(SimdLevel::Avx512) && queries.is_multiple_of(8) {
            // SAFETY: AVX-512 and FMA present; extents checked above.
            unsafe { avx512::softmax_step(keys, queries, z, ldz, m, l, alpha) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if simd::supports(SimdLevel::Avx2) && queries.is_multiple_of(8) {
            // SAFETY: AVX2+FMA present; extents checked above.
            unsafe { avx2::softmax_step(keys, queries, z, ldz, m, l, alpha) };
            return;
        }
        softmax_step_portable(keys, queries, z, ldz, m, l, alpha)
    }

    fn exp2_shifted(rows: usize, cols: usize, z: &mut [f32], ldz: usize, shift: &[f32]) {
        check_extent(rows, cols, ldz, z.len());
        assert!(shift.len() >= rows);
        #[cfg(target_arch = "x86_64")]
        if simd::supports(SimdLevel::Avx512) && cols.is_multiple_of(8) {
            // SAFETY: AVX-512 and FMA present; extents checked above.
            unsafe { avx512::exp2_shifted(rows, cols, z, ldz, shift) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if simd::supports(SimdLevel::Avx2) && cols.is_multiple_of(8) {
            // SAFETY: AVX2+FMA present; extents checked above.
            unsafe { avx2::exp2_shifted(rows, cols, z, ldz, shift) };
            return;
        }
        exp2_shifted_portable(rows, cols, z, ldz, shift)
    }

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let b = &b[..a.len()];
        #[cfg(target_arch = "x86_64")]
        if simd::supports(SimdLevel::Avx2) {
            // SAFETY: AVX2+FMA present; both slices have a.len() elements.
            return unsafe { avx2::dot(a, b) };
        }
        dot_portable(a, b)
    }
}

/// The raw-pointer kernels below rely on this: a `rows x cols` block `ld` apart fits.
fn check_extent(rows: usize, cols: usize, ld: usize, len: usize) {
    assert!(cols <= ld || rows <= 1, "tile columns exceed the leading dimension");
    assert!(rows == 0 || cols == 0 || (rows - 1) * ld + cols <= len, "tile exceeds its buffer");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::Lcg;

    /// Uniform in `[-1, 1)`, from the top 24 bits (exact in float32).
    fn signed(rng: &mut Lcg) -> f32 {
        ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn shifted_exponentials_agree_across_levels() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // 24 columns: a whole vector and a half one at every level.
        let (rows, cols) = (6, 24);
        let mut rng = Lcg::new(7);
        let z: Vec<f32> = (0..rows * cols).map(|_| 20.0 * signed(&mut rng)).collect();
        let shift: Vec<f32> = (0..rows).map(|i| if i == 3 { f32::NEG_INFINITY } else { i as f32 - 5.0 }).collect();
        let mut out = Vec::new();
        for level in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
            simd::set_level(level);
            let mut by_row = z.clone();
            f32::exp2_shifted(rows, cols, &mut by_row, cols, &shift);
            out.push(by_row);
        }
        simd::set_level(simd::detected());
        for simd_out in &out[1..] {
            assert!(simd_out[3 * cols..4 * cols].iter().all(|&x| x == 0.0));
            for (a, b) in out[0].iter().zip(simd_out) {
                assert!((a - b).abs() <= 3e-6 * a.abs().max(1e-30), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn dot_agrees_across_levels() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let mut rng = Lcg::new(3);
        for n in [0, 1, 7, 8, 33, 64, 80, 129] {
            let a: Vec<f32> = (0..n).map(|_| signed(&mut rng)).collect();
            let b: Vec<f32> = (0..n).map(|_| signed(&mut rng)).collect();
            let exact: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            for level in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
                simd::set_level(level);
                assert!((f32::dot(&a, &b) as f64 - exact).abs() < 1e-5, "n = {n}");
            }
        }
        simd::set_level(simd::detected());
    }

    #[test]
    fn simd_gemm_and_softmax_match_the_portable_code() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (m, n, k) = (13, 40, 37);
        let mut rng = Lcg::new(1);
        let a: Vec<f32> = (0..m * k).map(|_| signed(&mut rng)).collect();
        let b: Vec<f32> = (0..k * n).map(|_| signed(&mut rng)).collect();
        let mut results = Vec::new();
        for level in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
            simd::set_level(level);
            let mut c = vec![0.5f32; m * n];
            f32::gemm(m, n, k, &a, k, 1, &b, n, &mut c, n, true);
            let mut z = c.clone();
            z[3] = f32::NEG_INFINITY;
            let (mut mx, mut l, mut alpha) = (vec![f32::NEG_INFINITY; n], vec![0.0; n], vec![0.0; n]);
            mx[1] = 2.0;
            l[1] = 3.0;
            f32::softmax_step(m, n, &mut z, n, &mut mx, &mut l, &mut alpha);
            results.push((c, z, l, alpha));
        }
        simd::set_level(simd::detected());
        let (c0, z0, l0, a0) = &results[0];
        for (c1, z1, l1, a1) in &results[1..] {
            for (x, y) in c0.iter().zip(c1) {
                assert!((x - y).abs() < 1e-4, "{x} vs {y}");
            }
            for (x, y) in z0.iter().chain(l0).chain(a0).zip(z1.iter().chain(l1).chain(a1)) {
                assert!((x - y).abs() <= 1e-6 * (1.0 + x.abs()), "{x} vs {y}");
            }
            assert_eq!(z1[3], 0.0);
        }
    }
}
