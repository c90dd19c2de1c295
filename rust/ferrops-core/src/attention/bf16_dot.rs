//! The bfloat16 forward pass on CPUs with AVX-512 BF16: both tile products run
//! the pair dot products of `kernels/avx512_bf16.rs` on the inputs as they are
//! (no float32 copy of `q`, `k`, `v`). The online softmax and everything that
//! shapes the scores stay in float32 (the float kernels' code); the probabilities
//! are rounded to bfloat16 for the `P V` product, as FlashAttention and torch's
//! CPU kernel do for bfloat16. The kernels' notes say how the operands are packed
//! in pairs.

use super::forward::{Scorer, Scratch, Task, BLOCK_K, BLOCK_Q};
use super::kernels::avx512_bf16::{self, QUERIES_PER_VECTOR};
use super::tile::{round_up, LANES};
use super::{Attention, Sequence};
use crate::interrupt::Cancel;
use crate::simd::{self, Extension};

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
pub(crate) fn attend(
    att: &Attention<'_, f32>,
    seqs: &[Sequence],
    task: &Task,
    q: &[u16],
    k: &[u16],
    v: &[u16],
    scratch: &mut Scratch<f32>,
    packed: &mut PackedTiles,
    cancel: &Cancel,
) {
    assert!(simd::supports_extension(Extension::Avx512Bf16), "the AVX-512 BF16 kernels need a CPU with them");
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
        // As in the float kernels' `attend`: a raised token stops the task.
        if cancel.is_raised() {
            return;
        }
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
                z_row[0] =
                    unsafe { avx512_bf16::dot(k.as_ptr().add(k_start + j * k_stride), packed.query1.as_ptr(), d) }
                        * factor;
                z_row[1..].fill(0.0);
            }
        } else {
            // SAFETY: as above; the query pairs hold d_pairs x rows_pad lanes and z
            // kc x rows_pad values.
            unsafe {
                avx512_bf16::scores(
                    kc,
                    rows_pad,
                    d,
                    k.as_ptr().add(k_start),
                    k_stride,
                    query_pairs.as_ptr(),
                    z.as_mut_ptr(),
                    factor,
                )
            };
        }
        scratch.online_softmax(&scorer, i0, rows, rows_pad, k0, kc, dv_pad);
        let key_pairs = kc.div_ceil(2);
        let v_start = att.row_offset(seq.k_row0, seq.len_k, hkv, hk, k0, dv);
        assert!(v_start + (kc - 1) * v_stride + dv <= v.len(), "value tile outside the value");
        // SAFETY: AVX-512 BF16 present; z holds kc x rows_pad probabilities, the
        // packed buffers key_pairs x rows_pad and key_pairs x dv_pad lanes, the
        // value rows were checked above, and o holds rows_pad x dv_pad values.
        unsafe {
            avx512_bf16::pack_probabilities(kc, rows_pad, scratch.z.as_ptr(), packed.probs.as_mut_ptr());
            avx512_bf16::pack_values(kc, dv, dv_pad, v.as_ptr().add(v_start), v_stride, packed.values.as_mut_ptr());
            avx512_bf16::accumulate_values(
                rows,
                dv_pad,
                key_pairs,
                packed.probs.as_ptr(),
                rows_pad,
                packed.values.as_ptr(),
                scratch.o.as_mut_ptr(),
            );
        }
        k0 += kc;
    }
}
