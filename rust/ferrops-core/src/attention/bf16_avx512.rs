//! The bfloat16 forward pass on CPUs with AVX-512 BF16: both tile products run
//! `VDPBF16PS`, which multiplies pairs of bfloat16 values exactly and adds both
//! products to a float32 accumulator, on the inputs as they are (no float32
//! copy of `q`, `k`, `v`). The online softmax and everything that shapes the
//! scores stay in float32 (the float kernels' code); the probabilities are
//! rounded to bfloat16 for the `P V` product, as FlashAttention and torch's CPU
//! kernel do for bfloat16.
//!
//! `VDPBF16PS` sums over pairs of the reduction dimension, so each operand is
//! packed with the two values of a pair side by side in a 32-bit lane: query
//! tiles as `(q[r][2p], q[r][2p + 1])` per query `r`, probabilities as
//! `(P[r][2t], P[r][2t + 1])` per query, values as `(V[2t][c], V[2t + 1][c])` per
//! column. Key rows are read in place: a pair of a key row is already two
//! adjacent bfloat16 values.

use std::arch::x86_64::*;

use super::forward::{Scorer, Scratch, Task, BLOCK_K, BLOCK_Q};
use super::tile::{round_up, LANES};
use super::{Attention, Sequence};

/// Queries (score columns) per vector.
const QUERIES_PER_VECTOR: usize = 16;

/// Whether this path can run: the active SIMD level is AVX-512 (so `FERROPS_SIMD`
/// and `set_level` can turn it off) and the CPU has the BF16 extension.
pub(crate) fn available() -> bool {
    crate::simd::level() == crate::simd::SimdLevel::Avx512 && is_x86_feature_detected!("avx512bf16")
}

/// One thread's packed bfloat16 operands (32-bit pairs).
pub(crate) struct PackedTiles {
    /// `queries[p * rows_pad + r]`: query `r`'s pair `p` (the last pair of an odd
    /// head dimension has a zero high half).
    queries: Vec<u32>,
    /// The single query of a decoding tile, padded to an even length.
    query1: Vec<u16>,
    /// `probs[t * rows_pad + r]`: query `r`'s probabilities of keys `2t`, `2t + 1`.
    probs: Vec<u32>,
    /// `values[t * dv_pad + c]`: column `c` of value rows `2t`, `2t + 1`.
    values: Vec<u32>,
}

impl PackedTiles {
    pub(crate) fn new(d: usize, dv_pad: usize) -> Self {
        let key_pairs = BLOCK_K.div_ceil(2);
        PackedTiles {
            queries: vec![0; d.div_ceil(2) * BLOCK_Q],
            query1: Vec::with_capacity(d + 1),
            probs: vec![0; key_pairs * BLOCK_Q],
            values: vec![0; key_pairs * dv_pad],
        }
    }
}

/// [`super::forward`]'s `attend` for bfloat16 inputs: leaves the task's
/// unnormalised float32 output and statistics in `scratch`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend(att: &Attention<'_, f32>, seqs: &[Sequence], task: &Task, q: &[u16], k: &[u16], v: &[u16], scratch: &mut Scratch<f32>, packed: &mut PackedTiles) {
    assert!(available(), "the AVX-512 BF16 kernels need a CPU with them");
    let (hq, hkv, d, dv) = (att.heads_q, att.heads_kv, att.dim_qk, att.dim_v);
    let dv_pad = round_up(dv, LANES);
    let Task { s, h, i0, .. } = *task;
    let seq = &seqs[s];
    let hk = h / (hq / hkv);
    let scorer = Scorer::new(att, s, seq, h);
    let rows = BLOCK_Q.min(seq.len_q - i0);
    let rows_pad = round_up(rows, QUERIES_PER_VECTOR);
    let d_pairs = d.div_ceil(2);

    let q_start = att.row_offset(seq.q_row0, seq.len_q, hq, h, i0, d);
    let q_stride = att.row_stride(hq, d);
    let query_pairs = &mut packed.queries[..d_pairs * rows_pad];
    query_pairs.fill(0);
    for r in 0..rows {
        let row = &q[q_start + r * q_stride..q_start + r * q_stride + d];
        for (p, pair) in row.chunks(2).enumerate() {
            query_pairs[p * rows_pad + r] = pair[0] as u32 | (pair.get(1).copied().unwrap_or(0) as u32) << 16;
        }
    }
    if rows == 1 {
        packed.query1.clear();
        packed.query1.extend_from_slice(&q[q_start..q_start + d]);
        packed.query1.resize(d_pairs * 2, 0);
    }
    // The scale (and log2 e) is applied to the float32 scores: folding it into
    // bfloat16 queries would round them a second time.
    let factor = scorer.q_factor();

    scratch.start(rows_pad, dv_pad);
    let k_stride = att.row_stride(hkv, d);
    let v_stride = att.row_stride(hkv, dv);
    let mut k0 = task.k_begin;
    while k0 < task.k_end {
        let kc = BLOCK_K.min(task.k_end - k0);
        if scorer.mask_removes_tile(i0, rows, k0, kc) {
            k0 += kc;
            continue;
        }
        let k_start = att.row_offset(seq.k_row0, seq.len_k, hkv, hk, k0, d);
        assert!(k_start + (kc - 1) * k_stride + d <= k.len(), "key tile outside the key");
        let z = &mut scratch.z[..kc * rows_pad];
        if rows == 1 {
            for (j, z_row) in z.chunks_exact_mut(rows_pad).enumerate() {
                // SAFETY: the CPU has AVX-512 BF16 (asserted above); key row j and
                // the padded query both hold d values, checked by the assert.
                z_row[0] = unsafe { dot(k.as_ptr().add(k_start + j * k_stride), packed.query1.as_ptr(), d) } * factor;
                z_row[1..].fill(0.0);
            }
        } else {
            // SAFETY: as above; the query pairs hold d_pairs x rows_pad lanes and z
            // kc x rows_pad values.
            unsafe { scores(kc, rows_pad, d, k.as_ptr().add(k_start), k_stride, query_pairs.as_ptr(), z.as_mut_ptr(), factor) };
        }
        scratch.online_softmax(&scorer, i0, rows, rows_pad, k0, kc, dv_pad);
        let key_pairs = kc.div_ceil(2);
        let v_start = att.row_offset(seq.k_row0, seq.len_k, hkv, hk, k0, dv);
        assert!(v_start + (kc - 1) * v_stride + dv <= v.len(), "value tile outside the value");
        // SAFETY: AVX-512 BF16 present; z holds kc x rows_pad probabilities, the
        // packed buffers key_pairs x rows_pad and key_pairs x dv_pad lanes, the
        // value rows were checked above, and o holds rows_pad x dv_pad values.
        unsafe {
            pack_probabilities(kc, rows_pad, scratch.z.as_ptr(), packed.probs.as_mut_ptr());
            pack_values(kc, dv, dv_pad, v.as_ptr().add(v_start), v_stride, packed.values.as_mut_ptr());
            accumulate_values(rows, dv_pad, key_pairs, packed.probs.as_ptr(), rows_pad, packed.values.as_ptr(), scratch.o.as_mut_ptr());
        }
        k0 += kc;
    }
}

/// `z[j][r] = factor * sum_p q-pair(r, p) . k-pair(j, p)` for `keys` key rows
/// (`k_ld` apart) and `queries` columns (a multiple of 16), `z` `queries` apart.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn scores(keys: usize, queries: usize, d: usize, k: *const u16, k_ld: usize, query_pairs: *const u32, z: *mut f32, factor: f32) {
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
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn accumulate_values(rows: usize, dv_pad: usize, key_pairs: usize, probs: *const u32, rows_pad: usize, values: *const u32, o: *mut f32) {
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

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn block_of(mr: usize, nv: usize, ops: &Operands, a: *const u16, b: *const u32, c: *mut f32) {
    match mr {
        4 => block_rows::<4>(nv, ops, a, b, c),
        3 => block_rows::<3>(nv, ops, a, b, c),
        2 => block_rows::<2>(nv, ops, a, b, c),
        _ => block_rows::<1>(nv, ops, a, b, c),
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
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
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
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

#[inline(always)]
fn as_bf16(x: __m512i) -> __m512bh {
    // SAFETY: both are 512 bits of plain data.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(x) }
}

/// `sum_i a[i] b[i]` over `d` bfloat16 values; `b` is padded to an even length.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn dot(a: *const u16, b: *const u16, d: usize) -> f32 {
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
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn pack_probabilities(keys: usize, queries: usize, z: *const f32, probs: *mut u32) {
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
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512bf16")]
unsafe fn pack_values(keys: usize, dv: usize, dv_pad: usize, v: *const u16, v_ld: usize, values: *mut u32) {
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
