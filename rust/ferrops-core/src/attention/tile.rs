//! The two operations the tiled attention loops are made of, per element type:
//! a small matrix product over packed, padded tiles, and the online-softmax row
//! update (ATT-ONLINE) in the base-2 domain.
//!
//! float32 runs hand-written AVX-512 or AVX2+FMA kernels when the active SIMD level
//! allows it (8 x 32 and 6 x 16 register-blocked micro-kernels and a polynomial
//! `exp2`); every other case runs the portable code below, which is also the
//! reference the SIMD code is tested against. The level is read per tile with
//! [`simd::level`], and the SIMD bodies are `#[target_feature]` functions: the
//! intrinsics must be compiled with those features, and a call per tile (tens of
//! thousands of flops) costs nothing.

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
    fn gemm(m: usize, n: usize, k: usize, a: &[Self], a_rows: usize, a_cols: usize, b: &[Self], ldb: usize, c: &mut [Self], ldc: usize, accumulate: bool);

    /// One online-softmax step on a transposed score tile: `z` holds `keys` rows
    /// (`ldz` apart) of base-2 scores for `queries` columns (`queries % 8 == 0`,
    /// masked entries `-inf`). Per query (column): updates the running max `m`
    /// and sum `l`, overwrites `z` with the probabilities `exp2(z - m')`, and
    /// returns in `alpha` the factor `exp2(m - m')` its unnormalised output must be
    /// multiplied by.
    #[allow(clippy::too_many_arguments)]
    fn softmax_step(keys: usize, queries: usize, z: &mut [Self], ldz: usize, m: &mut [Self], l: &mut [Self], alpha: &mut [Self]);

    /// `z[i] = exp2(z[i] - shift)` for each row, with its own shift (`-inf` shift
    /// gives 0: a row that attends to nothing): the probabilities recomputed from
    /// the log-sum-exp in the backward pass.
    fn exp2_shifted(rows: usize, cols: usize, z: &mut [Self], ldz: usize, shift: &[Self]);

    /// `sum_i a[i] b[i]` over `a.len()` elements (`b` at least as long): the
    /// score of a single query (decoding), where a product with a padded query
    /// block would waste 7 of every 8 lanes.
    fn dot(a: &[Self], b: &[Self]) -> Self;
}

fn use_avx2() -> bool {
    cfg!(target_arch = "x86_64") && simd::level() >= SimdLevel::Avx2
}

fn use_avx512() -> bool {
    cfg!(target_arch = "x86_64") && simd::level() >= SimdLevel::Avx512
}

#[allow(clippy::too_many_arguments)]
fn gemm_portable<T: Real>(m: usize, n: usize, k: usize, a: &[T], a_rows: usize, a_cols: usize, b: &[T], ldb: usize, c: &mut [T], ldc: usize, accumulate: bool) {
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

fn softmax_step_portable<T: Real>(keys: usize, queries: usize, z: &mut [T], ldz: usize, m: &mut [T], l: &mut [T], alpha: &mut [T]) {
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
    fn gemm(m: usize, n: usize, k: usize, a: &[f64], a_rows: usize, a_cols: usize, b: &[f64], ldb: usize, c: &mut [f64], ldc: usize, accumulate: bool) {
        gemm_portable(m, n, k, a, a_rows, a_cols, b, ldb, c, ldc, accumulate)
    }
    fn softmax_step(keys: usize, queries: usize, z: &mut [f64], ldz: usize, m: &mut [f64], l: &mut [f64], alpha: &mut [f64]) {
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
    fn gemm(m: usize, n: usize, k: usize, a: &[f32], a_rows: usize, a_cols: usize, b: &[f32], ldb: usize, c: &mut [f32], ldc: usize, accumulate: bool) {
        assert!(n.is_multiple_of(8), "tile not padded");
        assert!(m == 0 || k == 0 || (m - 1) * a_rows + (k - 1) * a_cols < a.len(), "tile exceeds its buffer");
        check_extent(k, n, ldb, b.len());
        check_extent(m, n, ldc, c.len());
        #[cfg(target_arch = "x86_64")]
        if use_avx512() {
            // SAFETY: use_avx512() says the CPU has AVX-512 (F, BW, VL) and FMA; the
            // extents were checked.
            unsafe { avx512::gemm(m, n, k, a.as_ptr(), a_rows, a_cols, b.as_ptr(), ldb, c.as_mut_ptr(), ldc, accumulate) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if use_avx2() {
            // SAFETY: use_avx2() says the CPU has AVX2 and FMA; the extents were checked.
            unsafe { avx2::gemm(m, n, k, a.as_ptr(), a_rows, a_cols, b.as_ptr(), ldb, c.as_mut_ptr(), ldc, accumulate) };
            return;
        }
        gemm_portable(m, n, k, a, a_rows, a_cols, b, ldb, c, ldc, accumulate)
    }

    fn softmax_step(keys: usize, queries: usize, z: &mut [f32], ldz: usize, m: &mut [f32], l: &mut [f32], alpha: &mut [f32]) {
        check_extent(keys, queries, ldz, z.len());
        assert!(m.len() >= queries && l.len() >= queries && alpha.len() >= queries);
        #[cfg(target_arch = "x86_64")]
        if use_avx512() && queries.is_multiple_of(8) {
            // SAFETY: AVX-512 and FMA present; extents checked above.
            unsafe { avx512::softmax_step(keys, queries, z, ldz, m, l, alpha) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if use_avx2() && queries.is_multiple_of(8) {
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
        if use_avx512() && cols.is_multiple_of(8) {
            // SAFETY: AVX-512 and FMA present; extents checked above.
            unsafe { avx512::exp2_shifted(rows, cols, z, ldz, shift) };
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if use_avx2() && cols.is_multiple_of(8) {
            // SAFETY: AVX2+FMA present; extents checked above.
            unsafe { avx2::exp2_shifted(rows, cols, z, ldz, shift) };
            return;
        }
        exp2_shifted_portable(rows, cols, z, ldz, shift)
    }

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let b = &b[..a.len()];
        #[cfg(target_arch = "x86_64")]
        if use_avx2() {
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

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Register blocks of up to 6 rows x 16 columns (2 vectors): 12 accumulators,
    /// 2 loads of `b` and 6 broadcasts of `a` per step of `k`. Edge blocks use
    /// fewer rows and 8 columns, so `m` may be anything and `n % 8 == 0`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gemm(m: usize, n: usize, k: usize, a: *const f32, a_rows: usize, a_cols: usize, b: *const f32, ldb: usize, c: *mut f32, ldc: usize, accumulate: bool) {
        let mut i0 = 0;
        while i0 < m {
            let a0 = a.add(i0 * a_rows);
            let c0 = c.add(i0 * ldc);
            let mut j0 = 0;
            while j0 < n {
                let args = (k, a0, a_rows, a_cols, b.add(j0), ldb, c0.add(j0), ldc, accumulate);
                let wide = n - j0 >= 16;
                match ((m - i0).min(6), wide) {
                    (6, true) => block::<6, 2>(args),
                    (5, true) => block::<5, 2>(args),
                    (4, true) => block::<4, 2>(args),
                    (3, true) => block::<3, 2>(args),
                    (2, true) => block::<2, 2>(args),
                    (1, true) => block::<1, 2>(args),
                    (6, false) => block::<6, 1>(args),
                    (5, false) => block::<5, 1>(args),
                    (4, false) => block::<4, 1>(args),
                    (3, false) => block::<3, 1>(args),
                    (2, false) => block::<2, 1>(args),
                    _ => block::<1, 1>(args),
                }
                j0 += if wide { 16 } else { 8 };
            }
            i0 += 6;
        }
    }

    type BlockArgs = (usize, *const f32, usize, usize, *const f32, usize, *mut f32, usize, bool);

    /// One `MR x 8 NV` block of `c` (`NV` is 1 or 2), accumulated over `k`.
    #[inline(always)]
    unsafe fn block<const MR: usize, const NV: usize>((k, a, a_rows, a_cols, b, ldb, c, ldc, accumulate): BlockArgs) {
        let mut acc0 = [_mm256_setzero_ps(); MR];
        let mut acc1 = [_mm256_setzero_ps(); MR];
        if accumulate {
            for r in 0..MR {
                acc0[r] = _mm256_loadu_ps(c.add(r * ldc));
                if NV == 2 {
                    acc1[r] = _mm256_loadu_ps(c.add(r * ldc + 8));
                }
            }
        }
        for p in 0..k {
            let b_row = b.add(p * ldb);
            let b0 = _mm256_loadu_ps(b_row);
            let b1 = if NV == 2 { _mm256_loadu_ps(b_row.add(8)) } else { b0 };
            for r in 0..MR {
                let a_rp = _mm256_broadcast_ss(&*a.add(r * a_rows + p * a_cols));
                acc0[r] = _mm256_fmadd_ps(a_rp, b0, acc0[r]);
                if NV == 2 {
                    acc1[r] = _mm256_fmadd_ps(a_rp, b1, acc1[r]);
                }
            }
        }
        for r in 0..MR {
            _mm256_storeu_ps(c.add(r * ldc), acc0[r]);
            if NV == 2 {
                _mm256_storeu_ps(c.add(r * ldc + 8), acc1[r]);
            }
        }
    }

    /// `2^x` to about 2e-7 relative: `x = n + f`, `f` in [-0.5, 0.5], a degree-5
    /// polynomial (fitted for relative error) for `2^f`, `2^n` built in the
    /// exponent bits. Inputs below -127 (including -inf) give exactly 0: `n` is
    /// clamped to -127, whose biased exponent 0 encodes +0.0.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp2(x: __m256) -> __m256 {
        let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-127.0)), _mm256_set1_ps(127.0));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
        let f = _mm256_sub_ps(x, n);
        let mut p = _mm256_set1_ps(0.001_327_647_2);
        p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.009_675_542));
        p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.055_507_13));
        p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.240_221_2));
        p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.693_146_94));
        p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.000_000_1));
        let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
        _mm256_mul_ps(p, _mm256_castsi256_ps(bits))
    }

    /// Column-wise: 8 queries per vector, so the running statistics need no
    /// horizontal reductions.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn softmax_step(keys: usize, queries: usize, z: &mut [f32], ldz: usize, m: &mut [f32], l: &mut [f32], alpha: &mut [f32]) {
        let z = z.as_mut_ptr();
        let mut c = 0;
        while c < queries {
            let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
            for j in 0..keys {
                vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(z.add(j * ldz + c)));
            }
            let m_old = _mm256_loadu_ps(m.as_ptr().add(c));
            let m_new = _mm256_max_ps(m_old, vmax);
            let empty = _mm256_cmp_ps::<_CMP_EQ_OQ>(m_new, _mm256_set1_ps(f32::NEG_INFINITY));
            let shift = _mm256_andnot_ps(empty, m_new);
            // exp2(-inf - shift) is 0 through the clamp in exp2.
            let a = exp2(_mm256_sub_ps(m_old, shift));
            let mut sum = _mm256_setzero_ps();
            for j in 0..keys {
                let at = z.add(j * ldz + c);
                let p = exp2(_mm256_sub_ps(_mm256_loadu_ps(at), shift));
                _mm256_storeu_ps(at, p);
                sum = _mm256_add_ps(sum, p);
            }
            _mm256_storeu_ps(m.as_mut_ptr().add(c), m_new);
            _mm256_storeu_ps(alpha.as_mut_ptr().add(c), a);
            let l_old = _mm256_loadu_ps(l.as_ptr().add(c));
            _mm256_storeu_ps(l.as_mut_ptr().add(c), _mm256_fmadd_ps(l_old, a, sum));
            c += 8;
        }
    }

    /// Four independent accumulators (FMA latency), then the tail in scalar.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (u, acc_u) in acc.iter_mut().enumerate() {
                *acc_u = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8 * u)), _mm256_loadu_ps(pb.add(i + 8 * u)), *acc_u);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc[0]);
            i += 8;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let s = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps::<1>(sum));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
        let mut total = _mm_cvtss_f32(s);
        while i < n {
            total += a[i] * b[i];
            i += 1;
        }
        total
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp2_shifted(rows: usize, cols: usize, z: &mut [f32], ldz: usize, shift: &[f32]) {
        for (r, &row_shift) in shift[..rows].iter().enumerate() {
            let row = z.as_mut_ptr().add(r * ldz);
            if row_shift == f32::NEG_INFINITY {
                std::ptr::write_bytes(row, 0, cols);
                continue;
            }
            let vshift = _mm256_set1_ps(row_shift);
            let mut j = 0;
            while j < cols {
                _mm256_storeu_ps(row.add(j), exp2(_mm256_sub_ps(_mm256_loadu_ps(row.add(j)), vshift)));
                j += 8;
            }
        }
    }

}

/// The AVX2 kernels with 16-lane vectors: 8 x 32 register blocks for the
/// product, 16 queries per vector in the softmax. Widths that are a multiple of
/// 8 but not of 16 end in a half vector, loaded and stored under a mask.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    const ALL: __mmask16 = 0xFFFF;
    const LOW_HALF: __mmask16 = 0x00FF;

    /// The mask of the vector starting `done` columns into `width` (a multiple of 8).
    #[inline(always)]
    fn lanes(width: usize, done: usize) -> __mmask16 {
        if width - done >= 16 {
            ALL
        } else {
            LOW_HALF
        }
    }

    struct Block {
        k: usize,
        a: *const f32,
        a_rows: usize,
        a_cols: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
        /// The mask of the block's last vector.
        last: __mmask16,
    }

    /// Same contract as `avx2::gemm`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    pub unsafe fn gemm(m: usize, n: usize, k: usize, a: *const f32, a_rows: usize, a_cols: usize, b: *const f32, ldb: usize, c: *mut f32, ldc: usize, accumulate: bool) {
        let mut i0 = 0;
        while i0 < m {
            let mut j0 = 0;
            while j0 < n {
                let cols = (n - j0).min(32);
                let block = Block {
                    k,
                    a: a.add(i0 * a_rows),
                    a_rows,
                    a_cols,
                    b: b.add(j0),
                    ldb,
                    c: c.add(i0 * ldc + j0),
                    ldc,
                    accumulate,
                    last: lanes(cols, (cols - 1) / 16 * 16),
                };
                let two = cols > 16;
                match (m - i0).min(8) {
                    8 => rows::<8>(two, &block),
                    7 => rows::<7>(two, &block),
                    6 => rows::<6>(two, &block),
                    5 => rows::<5>(two, &block),
                    4 => rows::<4>(two, &block),
                    3 => rows::<3>(two, &block),
                    2 => rows::<2>(two, &block),
                    _ => rows::<1>(two, &block),
                }
                j0 += cols;
            }
            i0 += 8;
        }
    }

    #[inline(always)]
    unsafe fn rows<const MR: usize>(two: bool, block: &Block) {
        if two {
            product::<MR, 2>(block)
        } else {
            product::<MR, 1>(block)
        }
    }

    /// One `MR x 16 NV` block of `c`, accumulated over `k`.
    #[inline(always)]
    unsafe fn product<const MR: usize, const NV: usize>(p: &Block) {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        if p.accumulate {
            for (r, acc_r) in acc.iter_mut().enumerate() {
                for (v, acc_rv) in acc_r.iter_mut().enumerate() {
                    let mask = if v + 1 == NV { p.last } else { ALL };
                    *acc_rv = _mm512_maskz_loadu_ps(mask, p.c.add(r * p.ldc + 16 * v));
                }
            }
        }
        for q in 0..p.k {
            let b_row = p.b.add(q * p.ldb);
            let mut b = [_mm512_setzero_ps(); NV];
            for (v, b_v) in b.iter_mut().enumerate() {
                let mask = if v + 1 == NV { p.last } else { ALL };
                *b_v = _mm512_maskz_loadu_ps(mask, b_row.add(16 * v));
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let a_rq = _mm512_set1_ps(*p.a.add(r * p.a_rows + q * p.a_cols));
                for v in 0..NV {
                    acc_r[v] = _mm512_fmadd_ps(a_rq, b[v], acc_r[v]);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (v, &acc_rv) in acc_r.iter().enumerate() {
                let mask = if v + 1 == NV { p.last } else { ALL };
                _mm512_mask_storeu_ps(p.c.add(r * p.ldc + 16 * v), mask, acc_rv);
            }
        }
    }

    /// `avx2::exp2` on 16 lanes: the same clamp, polynomial and exponent bits, so
    /// inputs below -127 (including -inf) give exactly 0.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    unsafe fn exp2(x: __m512) -> __m512 {
        let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-127.0)), _mm512_set1_ps(127.0));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
        let f = _mm512_sub_ps(x, n);
        let mut p = _mm512_set1_ps(0.001_327_647_2);
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.009_675_542));
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.055_507_13));
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.240_221_2));
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.693_146_94));
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.000_000_1));
        let bits = _mm512_slli_epi32::<23>(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)));
        _mm512_mul_ps(p, _mm512_castsi512_ps(bits))
    }

    /// Same contract as `avx2::softmax_step`, 16 queries per vector.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    pub unsafe fn softmax_step(keys: usize, queries: usize, z: &mut [f32], ldz: usize, m: &mut [f32], l: &mut [f32], alpha: &mut [f32]) {
        let z = z.as_mut_ptr();
        let mut c = 0;
        while c < queries {
            let mask = lanes(queries, c);
            let mut vmax = _mm512_set1_ps(f32::NEG_INFINITY);
            for j in 0..keys {
                vmax = _mm512_max_ps(vmax, _mm512_mask_loadu_ps(vmax, mask, z.add(j * ldz + c)));
            }
            let m_old = _mm512_mask_loadu_ps(_mm512_set1_ps(f32::NEG_INFINITY), mask, m.as_ptr().add(c));
            let m_new = _mm512_max_ps(m_old, vmax);
            let empty = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(m_new, _mm512_set1_ps(f32::NEG_INFINITY));
            // 0 where nothing was attended yet: exp2(-inf - 0) is 0 through the clamp.
            let shift = _mm512_maskz_mov_ps(!empty, m_new);
            let a = exp2(_mm512_sub_ps(m_old, shift));
            let mut sum = _mm512_setzero_ps();
            for j in 0..keys {
                let at = z.add(j * ldz + c);
                let p = exp2(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, at), shift));
                _mm512_mask_storeu_ps(at, mask, p);
                sum = _mm512_add_ps(sum, p);
            }
            _mm512_mask_storeu_ps(m.as_mut_ptr().add(c), mask, m_new);
            _mm512_mask_storeu_ps(alpha.as_mut_ptr().add(c), mask, a);
            let l_old = _mm512_maskz_loadu_ps(mask, l.as_ptr().add(c));
            _mm512_mask_storeu_ps(l.as_mut_ptr().add(c), mask, _mm512_fmadd_ps(l_old, a, sum));
            c += if mask == ALL { 16 } else { 8 };
        }
    }

    /// Same contract as `avx2::exp2_shifted`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    pub unsafe fn exp2_shifted(rows: usize, cols: usize, z: &mut [f32], ldz: usize, shift: &[f32]) {
        for (r, &row_shift) in shift[..rows].iter().enumerate() {
            let row = z.as_mut_ptr().add(r * ldz);
            if row_shift == f32::NEG_INFINITY {
                std::ptr::write_bytes(row, 0, cols);
                continue;
            }
            let vshift = _mm512_set1_ps(row_shift);
            let mut j = 0;
            while j < cols {
                let mask = lanes(cols, j);
                _mm512_mask_storeu_ps(row.add(j), mask, exp2(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, row.add(j)), vshift)));
                j += if mask == ALL { 16 } else { 8 };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifted_exponentials_agree_across_levels() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // 24 columns: a whole vector and a half one at every level.
        let (rows, cols) = (6, 24);
        let mut seed = 7;
        let z: Vec<f32> = (0..rows * cols).map(|_| 20.0 * lcg(&mut seed)).collect();
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
        let mut seed = 3;
        for n in [0, 1, 7, 8, 33, 64, 80, 129] {
            let a: Vec<f32> = (0..n).map(|_| lcg(&mut seed)).collect();
            let b: Vec<f32> = (0..n).map(|_| lcg(&mut seed)).collect();
            let exact: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            for level in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
                simd::set_level(level);
                assert!((f32::dot(&a, &b) as f64 - exact).abs() < 1e-5, "n = {n}");
            }
        }
        simd::set_level(simd::detected());
    }

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn simd_gemm_and_softmax_match_the_portable_code() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (m, n, k) = (13, 40, 37);
        let mut seed = 1;
        let a: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed)).collect();
        let b: Vec<f32> = (0..k * n).map(|_| lcg(&mut seed)).collect();
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
