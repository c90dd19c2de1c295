//! The attention tile kernels in AVX2 + FMA: 8-lane float32 vectors, 6 x 16
//! register blocks for the product and 8 queries per vector in the softmax
//! (the contracts are those of `tile::AttnFloat`).

use std::arch::x86_64::*;

use super::EXP2_POLYNOMIAL;

use crate::simd::avx2_fn;

avx2_fn! {
    /// Register blocks of up to 6 rows x 16 columns (2 vectors): 12 accumulators,
    /// 2 loads of `b` and 6 broadcasts of `a` per step of `k`. Edge blocks use
    /// fewer rows and 8 columns, so `m` may be anything and `n % 8 == 0`.
    #[allow(clippy::too_many_arguments)]
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

avx2_fn! {
    /// `2^x` to about 1.6e-7 relative: `x = n + f`, `f` in [-0.5, 0.5],
    /// [`EXP2_POLYNOMIAL`] for `2^f` (exact at 0, so `2^n` is exact for whole `n`:
    /// a score at its row's max gives probability exactly 1, in the forward pass
    /// and when the backward recomputes it), `2^n` built in the exponent bits. Inputs below -127 (including -inf) give exactly 0: `n` is
    /// clamped to -127, whose biased exponent 0 encodes +0.0.
    #[inline]
    unsafe fn exp2(x: __m256) -> __m256 {
        let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-127.0)), _mm256_set1_ps(127.0));
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
        let f = _mm256_sub_ps(x, n);
        let mut p = _mm256_set1_ps(EXP2_POLYNOMIAL[0]);
        for &c in &EXP2_POLYNOMIAL[1..] {
            p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(c));
        }
        let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
        _mm256_mul_ps(p, _mm256_castsi256_ps(bits))
    }

    /// Column-wise: 8 queries per vector, so the running statistics need no
    /// horizontal reductions.
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
