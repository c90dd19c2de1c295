//! The attention tile kernels in AVX-512 (F, BW, VL): the `avx2` kernels with
//! 16-lane vectors, 8 x 32 register blocks for the product, 16 queries per vector
//! in the softmax. Widths that are a multiple of 8 but not of 16 end in a half
//! vector, loaded and stored under a mask.

use std::arch::x86_64::*;

use super::EXP2_POLYNOMIAL;

use crate::simd::avx512_fn;

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

avx512_fn! {
    /// Same contract as `avx2::gemm`.
    #[allow(clippy::too_many_arguments)]
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

avx512_fn! {
    /// `avx2::exp2` on 16 lanes: the same clamp, polynomial and exponent bits, so
    /// inputs below -127 (including -inf) give exactly 0.
    #[inline]
    unsafe fn exp2(x: __m512) -> __m512 {
        let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-127.0)), _mm512_set1_ps(127.0));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
        let f = _mm512_sub_ps(x, n);
        let mut p = _mm512_set1_ps(EXP2_POLYNOMIAL[0]);
        for &c in &EXP2_POLYNOMIAL[1..] {
            p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c));
        }
        let bits = _mm512_slli_epi32::<23>(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)));
        _mm512_mul_ps(p, _mm512_castsi512_ps(bits))
    }

    /// Same contract as `avx2::softmax_step`, 16 queries per vector.
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
