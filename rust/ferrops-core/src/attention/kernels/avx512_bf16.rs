//! The bfloat16 attention kernels in AVX-512 BF16 (for `bf16_dot.rs`): both tile
//! products run `VDPBF16PS`, which multiplies pairs of bfloat16 values exactly
//! and adds both products to a float32 accumulator; the probabilities are
//! rounded to bfloat16 (`VCVTNE2PS2BF16`) for the `P V` product.
//!
//! `VDPBF16PS` sums over pairs of the reduction dimension, so each operand is
//! packed with the two values of a pair side by side in a 32-bit lane: query
//! tiles as `(q[r][2p], q[r][2p + 1])` per query `r`, probabilities as
//! `(P[r][2t], P[r][2t + 1])` per query, values as `(V[2t][c], V[2t + 1][c])` per
//! column. Key rows are read in place: a pair of a key row is already two
//! adjacent bfloat16 values.

use std::arch::x86_64::*;

use crate::attention::tile::LANES;
use crate::simd::avx512_bf16_fn;

/// Queries (score columns) per vector.
pub const QUERIES_PER_VECTOR: usize = 16;

avx512_bf16_fn! {
    /// `z[j][r] = factor * sum_p q-pair(r, p) . k-pair(j, p)` for `keys` key rows
    /// (`k_ld` apart) and `queries` columns (a multiple of 16), `z` `queries` apart.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn scores(keys: usize, queries: usize, d: usize, k: *const u16, k_ld: usize, query_pairs: *const u32, z: *mut f32, factor: f32) {
        let operands = Operands {
            whole_pairs: d / 2,
            odd_tail: d % 2 == 1,
            a_rows: k_ld,
            a_step: 2,
            b_step: queries,
            ldc: queries,
            accumulate: false,
            factor,
        };
        let vectors = queries / QUERIES_PER_VECTOR;
        let mut j = 0;
        while j < keys {
            let mr = (keys - j).min(MAX_ROWS);
            let mut v0 = 0;
            while v0 < vectors {
                let nv = (vectors - v0).min(MAX_VECTORS);
                let b = query_pairs.add(v0 * QUERIES_PER_VECTOR);
                let c = z.add(j * queries + v0 * QUERIES_PER_VECTOR);
                block_of(mr, nv, &operands, k.add(j * k_ld), b, c);
                v0 += nv;
            }
            j += mr;
        }
    }

    /// `o[r][c] += sum_t P-pair(r, t) . V-pair(t, c)` for `rows` queries and
    /// `dv_pad` columns (a multiple of 16); `o` is `dv_pad` apart.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn accumulate_values(rows: usize, dv_pad: usize, key_pairs: usize, probs: *const u32, rows_pad: usize, values: *const u32, o: *mut f32) {
        let operands = Operands {
            whole_pairs: key_pairs,
            odd_tail: false,
            // Probability pairs are 32-bit lanes: two bfloat16 apart per query.
            a_rows: 2,
            a_step: 2 * rows_pad,
            b_step: dv_pad,
            ldc: dv_pad,
            accumulate: true,
            factor: 1.0,
        };
        let vectors = dv_pad / LANES;
        let mut r = 0;
        while r < rows {
            let mr = (rows - r).min(MAX_ROWS);
            let mut v0 = 0;
            while v0 < vectors {
                let nv = (vectors - v0).min(MAX_VECTORS);
                block_of(mr, nv, &operands, probs.add(r) as *const u16, values.add(v0 * LANES), o.add(r * dv_pad + v0 * LANES));
                v0 += nv;
            }
            r += mr;
        }
    }
}

/// Register blocks: up to 4 rows x 6 vectors of 16 float32 accumulators (24
/// registers, plus 6 for `b` and one broadcast of `a`, of AVX-512's 32).
const MAX_ROWS: usize = 4;
const MAX_VECTORS: usize = 6;

/// The shape of one product `c (+)= factor * A . B` over bfloat16 pairs:
/// row `i`'s pair `t` of `A` is the 32 bits at `a + i * a_rows + t * a_step`
/// (in bfloat16 units), pair row `t` of `B` (32-bit lanes) starts at
/// `b + t * b_step`, `c` is float32 `ldc` apart. With `odd_tail`, `A` has one
/// more single value after `whole_pairs` pairs (an odd head dimension), read
/// alone so that no value past a row's end is touched.
struct Operands {
    whole_pairs: usize,
    odd_tail: bool,
    a_rows: usize,
    a_step: usize,
    b_step: usize,
    ldc: usize,
    accumulate: bool,
    factor: f32,
}

avx512_bf16_fn! {
    #[inline]
    unsafe fn block_of(mr: usize, nv: usize, ops: &Operands, a: *const u16, b: *const u32, c: *mut f32) {
        match mr {
            4 => block_rows::<4>(nv, ops, a, b, c),
            3 => block_rows::<3>(nv, ops, a, b, c),
            2 => block_rows::<2>(nv, ops, a, b, c),
            _ => block_rows::<1>(nv, ops, a, b, c),
        }
    }

    #[inline]
    unsafe fn block_rows<const MR: usize>(nv: usize, ops: &Operands, a: *const u16, b: *const u32, c: *mut f32) {
        match nv {
            6 => block::<MR, 6>(ops, a, b, c),
            5 => block::<MR, 5>(ops, a, b, c),
            4 => block::<MR, 4>(ops, a, b, c),
            3 => block::<MR, 3>(ops, a, b, c),
            2 => block::<MR, 2>(ops, a, b, c),
            _ => block::<MR, 1>(ops, a, b, c),
        }
    }

    /// One `MR x 16 NV` block of `c`.
    #[inline]
    unsafe fn block<const MR: usize, const NV: usize>(ops: &Operands, a: *const u16, b: *const u32, c: *mut f32) {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        let mut b_row = [as_bf16(_mm512_setzero_si512()); NV];
        let pairs = ops.whole_pairs + ops.odd_tail as usize;
        for t in 0..pairs {
            for (v, slot) in b_row.iter_mut().enumerate() {
                *slot = as_bf16(_mm512_loadu_si512(b.add(t * ops.b_step + v * LANES) as *const _));
            }
            let whole = t < ops.whole_pairs;
            for (i, acc_i) in acc.iter_mut().enumerate() {
                let at = a.add(i * ops.a_rows + t * ops.a_step);
                // The odd tail's single value, zero-extended, is a pair with 0.
                let pair = if whole { (at as *const u32).read_unaligned() } else { *at as u32 };
                let a_i = as_bf16(_mm512_set1_epi32(pair as i32));
                for v in 0..NV {
                    acc_i[v] = _mm512_dpbf16_ps(acc_i[v], a_i, b_row[v]);
                }
            }
        }
        let factor = _mm512_set1_ps(ops.factor);
        for (i, acc_i) in acc.iter().enumerate() {
            for (v, &sum) in acc_i.iter().enumerate() {
                let at = c.add(i * ops.ldc + v * LANES);
                let value = if ops.accumulate { _mm512_add_ps(_mm512_loadu_ps(at), sum) } else { _mm512_mul_ps(sum, factor) };
                _mm512_storeu_ps(at, value);
            }
        }
    }
}

#[inline(always)]
fn as_bf16(x: __m512i) -> __m512bh {
    // SAFETY: both are 512 bits of plain data.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(x) }
}

avx512_bf16_fn! {
    /// `sum_i a[i] b[i]` over `d` bfloat16 values; `b` is padded to an even length.
    pub unsafe fn dot(a: *const u16, b: *const u16, d: usize) -> f32 {
        let mut acc = _mm512_setzero_ps();
        let mut i = 0;
        while i < d {
            let n = (d - i).min(32);
            // Masked loads: the lanes past `d` read nothing and hold 0.
            let mask: __mmask32 = if n == 32 { !0 } else { (1u32 << n) - 1 };
            let x = _mm512_maskz_loadu_epi16(mask, a.add(i) as *const i16);
            let y = _mm512_maskz_loadu_epi16(mask, b.add(i) as *const i16);
            acc = _mm512_dpbf16_ps(acc, as_bf16(x), as_bf16(y));
            i += 32;
        }
        _mm512_reduce_add_ps(acc)
    }

    /// `probs[t * queries + r]` = `(P[2t][r], P[2t + 1][r])` rounded to bfloat16
    /// (to nearest even), from the float32 tile `z` (`keys x queries`, queries a
    /// multiple of 16); an odd last key pairs with 0.
    pub unsafe fn pack_probabilities(keys: usize, queries: usize, z: *const f32, probs: *mut u32) {
        // Lane 2i of the result takes element i of the first half, lane 2i + 1
        // element i of the second: the two rows' values of query i side by side.
        let interleave = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0,
        );
        for t in 0..keys.div_ceil(2) {
            for r in (0..queries).step_by(QUERIES_PER_VECTOR) {
                let first = _mm512_loadu_ps(z.add(2 * t * queries + r));
                let second = if 2 * t + 1 < keys { _mm512_loadu_ps(z.add((2 * t + 1) * queries + r)) } else { _mm512_setzero_ps() };
                // The low half holds `first`, the high half `second`.
                let halves: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(second, first));
                _mm512_storeu_si512(probs.add(t * queries + r) as *mut _, _mm512_permutexvar_epi16(interleave, halves));
            }
        }
    }

    /// `values[t * dv_pad + c]` = `(V[2t][c], V[2t + 1][c])` from `keys` bfloat16 rows
    /// (`v_ld` apart, `dv` wide); columns past `dv` and an odd last key's partner are 0.
    pub unsafe fn pack_values(keys: usize, dv: usize, dv_pad: usize, v: *const u16, v_ld: usize, values: *mut u32) {
        for t in 0..keys.div_ceil(2) {
            for c in (0..dv_pad).step_by(LANES) {
                let n = dv.saturating_sub(c).min(LANES);
                let mask: __mmask16 = ((1u32 << n) - 1) as u16;
                let first = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, v.add(2 * t * v_ld + c) as *const i16));
                let second = if 2 * t + 1 < keys {
                    _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, v.add((2 * t + 1) * v_ld + c) as *const i16))
                } else {
                    _mm512_setzero_si512()
                };
                let pair = _mm512_or_si512(first, _mm512_slli_epi32::<16>(second));
                _mm512_storeu_si512(values.add(t * dv_pad + c) as *mut _, pair);
            }
        }
    }
}
