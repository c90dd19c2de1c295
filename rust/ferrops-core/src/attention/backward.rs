//! The backward pass (ATT-BWD), recomputing `P` tile by tile from the saved
//! log-sum-exp. Two passes keep every output row owned by one task (bitwise
//! identical results for any thread count, no atomics): over key tiles for
//! `dK, dV` (4 tile products), then over query tiles for `dQ` (3 products).

use std::f64::consts::LOG2_E;

use rayon::prelude::*;

use super::forward::{pack_rows, pack_transposed, query_tasks, Scorer, SharedOut, BLOCK_Q};
use super::tile::{round_up, AttnFloat, LANES, PAD};
use super::{Attention, Sequence};
use crate::error::{FerropsError, Result};

/// Keys per task of the `dK, dV` pass.
const BLOCK_KB: usize = 96;

/// The per-(sequence, head) geometry both passes share.
struct Rows<'a, T> {
    att: &'a Attention<'a, T>,
    seq: Sequence,
    h: usize,
    hk: usize,
}

impl<T: AttnFloat> Rows<'_, T> {
    fn q(&self, i: usize, dim: usize) -> usize {
        self.att.row_offset(self.seq.q_row0, self.seq.len_q, self.att.heads_q, self.h, i, dim)
    }
    fn k(&self, j: usize, dim: usize) -> usize {
        self.att.row_offset(self.seq.k_row0, self.seq.len_k, self.att.heads_kv, self.hk, j, dim)
    }
    fn q_stride(&self, dim: usize) -> usize {
        self.q(1, dim) - self.q(0, dim)
    }
    fn k_stride(&self, dim: usize) -> usize {
        self.k(1, dim) - self.k(0, dim)
    }
}

struct Scratch<T> {
    q: Vec<T>,
    d_out: Vec<T>,
    kt: Vec<T>,
    k: Vec<T>,
    vt: Vec<T>,
    z: Vec<T>,
    dp: Vec<T>,
    cap_grad: Vec<T>,
    acc_a: Vec<T>,
    acc_b: Vec<T>,
    shift: Vec<T>,
    delta: Vec<T>,
}

impl<T: AttnFloat> Scratch<T> {
    fn new(dq: usize, dv: usize) -> Self {
        let rows = round_up(BLOCK_Q, PAD);
        let keys = round_up(super::forward::BLOCK_K.max(BLOCK_KB), PAD);
        let zero = |n: usize| vec![T::ZERO; n];
        Scratch {
            q: zero(rows * dq),
            d_out: zero(rows * dv),
            kt: zero(dq * keys),
            k: zero(keys * dq),
            vt: zero(dv * keys),
            z: zero(rows * keys),
            dp: zero(rows * keys),
            cap_grad: zero(rows * keys),
            acc_a: zero(rows.max(keys) * dq.max(dv)),
            acc_b: zero(keys * dv),
            shift: zero(rows),
            delta: zero(rows),
        }
    }
}

/// Gradients `(dq, dk, dv)` of the attention [`super::attention_forward`]
/// computed, given its `out` and `lse` and the gradient `d_out` of the output.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: AttnFloat>(
    att: &Attention<'_, T>,
    q: &[T],
    k: &[T],
    v: &[T],
    out: &[T],
    lse: &[T],
    d_out: &[T],
) -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
    let seqs = att.validate(q, k, v)?;
    let (total_q, _) = att.total_rows()?;
    let (hq, hkv, d, dv) = (att.heads_q, att.heads_kv, att.dim_qk, att.dim_v);
    for (name, got, want) in [("out", out.len(), total_q * hq * dv), ("grad_out", d_out.len(), total_q * hq * dv), ("lse", lse.len(), hq * total_q)] {
        if got != want {
            return Err(FerropsError::value(att.function, name, format!("{want} elements"), format!("{got}")));
        }
    }
    let (dq_pad, dv_pad) = (round_up(d, LANES), round_up(dv, LANES));
    let mut dq = vec![T::ZERO; q.len()];
    let mut dk = vec![T::ZERO; k.len()];
    let mut dvv = vec![T::ZERO; v.len()];
    let group = hq.checked_div(hkv).unwrap_or(1);

    // Pass 1: dK and dV per (sequence, key head, key tile).
    let mut key_tasks = Vec::new();
    for (s, seq) in seqs.iter().enumerate() {
        for hk in 0..hkv {
            for j0 in (0..seq.len_k).step_by(BLOCK_KB) {
                key_tasks.push((s, hk, j0));
            }
        }
    }
    let (dk_ptr, dv_ptr) = (SharedOut(dk.as_mut_ptr()), SharedOut(dvv.as_mut_ptr()));
    let (dk_len, dv_len) = (dk.len(), dvv.len());
    key_tasks.par_iter().for_each_init(
        || Scratch::<T>::new(dq_pad, dv_pad),
        |sc, &(s, hk, j0)| {
            let seq = seqs[s];
            let kc = BLOCK_KB.min(seq.len_k - j0);
            let kc_pad = round_up(kc, PAD);
            let first = Rows { att, seq, h: hk * group, hk };
            sc.kt[..dq_pad * kc_pad].fill(T::ZERO);
            pack_transposed(&mut sc.kt, kc_pad, k, first.k(j0, d), first.k_stride(d), kc, d);
            sc.vt[..dv_pad * kc_pad].fill(T::ZERO);
            pack_transposed(&mut sc.vt, kc_pad, v, first.k(j0, dv), first.k_stride(dv), kc, dv);
            // Taken out of the scratch while the tile helpers borrow the rest of it.
            let (mut dk_acc, mut dv_acc) = (std::mem::take(&mut sc.acc_a), std::mem::take(&mut sc.acc_b));
            dk_acc[..kc_pad * dq_pad].fill(T::ZERO);
            dv_acc[..kc_pad * dv_pad].fill(T::ZERO);
            let mut q_factor = T::ONE;
            for h in hk * group..(hk + 1) * group {
                let rows_of = Rows { att, seq, h, hk };
                let scorer = Scorer::new(att, s, &seq, h);
                q_factor = scorer.q_factor();
                for i0 in (0..seq.len_q).step_by(BLOCK_Q) {
                    let rows = BLOCK_Q.min(seq.len_q - i0);
                    if scorer.range(i0 + rows - 1).1 <= j0 || scorer.range(i0).0 >= j0 + kc {
                        continue;
                    }
                    let rows_pad = round_up(rows, PAD);
                    load_query_tile(sc, &rows_of, &scorer, q, out, lse, d_out, total_q, i0, rows, dq_pad, dv_pad);
                    probabilities_and_grads(sc, &scorer, i0, rows, rows_pad, j0, kc, kc_pad, dv_pad);
                    // dV += P^T dO, dK += dS^T Q (Q as packed; rescaled to `scale` below):
                    // the transposed tiles are read with swapped strides.
                    T::gemm(kc_pad, dv_pad, rows_pad, &sc.z, 1, kc_pad, &sc.d_out, dv_pad, &mut dv_acc, dv_pad, true);
                    T::gemm(kc_pad, dq_pad, rows_pad, &sc.dp, 1, kc_pad, &sc.q, dq_pad, &mut dk_acc, dq_pad, true);
                }
            }
            let dk_factor = T::from_f64(att.scale) / q_factor;
            for r in 0..kc {
                let (at_k, at_v) = (first.k(j0 + r, d), first.k(j0 + r, dv));
                assert!(at_k + d <= dk_len && at_v + dv <= dv_len);
                // SAFETY: key row j0 + r of key head hk of sequence s belongs to this
                // task alone; bounds checked.
                unsafe {
                    for c in 0..d {
                        *dk_ptr.at(at_k + c) = dk_acc[r * dq_pad + c] * dk_factor;
                    }
                    for c in 0..dv {
                        *dv_ptr.at(at_v + c) = dv_acc[r * dv_pad + c];
                    }
                }
            }
            (sc.acc_a, sc.acc_b) = (dk_acc, dv_acc);
        },
    );

    // Pass 2: dQ per (sequence, query head, query tile).
    let tasks = query_tasks(&seqs, hq);
    let dq_ptr = SharedOut(dq.as_mut_ptr());
    let dq_len = dq.len();
    tasks.par_iter().for_each_init(
        || Scratch::<T>::new(dq_pad, dv_pad),
        |sc, &(s, h, i0)| {
            let seq = seqs[s];
            let hk = h / group;
            let rows_of = Rows { att, seq, h, hk };
            let scorer = Scorer::new(att, s, &seq, h);
            let rows = BLOCK_Q.min(seq.len_q - i0);
            let rows_pad = round_up(rows, PAD);
            load_query_tile(sc, &rows_of, &scorer, q, out, lse, d_out, total_q, i0, rows, dq_pad, dv_pad);
            let mut dq_acc = std::mem::take(&mut sc.acc_a);
            dq_acc[..rows_pad * dq_pad].fill(T::ZERO);
            let (k_lo, _) = scorer.range(i0);
            let (_, k_hi) = scorer.range(i0 + rows - 1);
            let mut j0 = k_lo;
            while j0 < k_hi {
                let kc = BLOCK_KB.min(k_hi - j0);
                let kc_pad = round_up(kc, PAD);
                sc.kt[..dq_pad * kc_pad].fill(T::ZERO);
                pack_transposed(&mut sc.kt, kc_pad, k, rows_of.k(j0, d), rows_of.k_stride(d), kc, d);
                pack_rows(&mut sc.k, dq_pad, k, rows_of.k(j0, d), rows_of.k_stride(d), kc, d, T::ONE);
                sc.k[kc * dq_pad..kc_pad * dq_pad].fill(T::ZERO);
                sc.vt[..dv_pad * kc_pad].fill(T::ZERO);
                pack_transposed(&mut sc.vt, kc_pad, v, rows_of.k(j0, dv), rows_of.k_stride(dv), kc, dv);
                probabilities_and_grads(sc, &scorer, i0, rows, rows_pad, j0, kc, kc_pad, dv_pad);
                T::gemm(rows_pad, dq_pad, kc_pad, &sc.dp, kc_pad, 1, &sc.k, dq_pad, &mut dq_acc, dq_pad, true);
                j0 += kc;
            }
            let scale = T::from_f64(att.scale);
            for r in 0..rows {
                let at = rows_of.q(i0 + r, d);
                assert!(at + d <= dq_len);
                // SAFETY: query row i0 + r of head h of sequence s belongs to this task.
                unsafe {
                    for c in 0..d {
                        *dq_ptr.at(at + c) = dq_acc[r * dq_pad + c] * scale;
                    }
                }
            }
            sc.acc_a = dq_acc;
        },
    );
    Ok((dq, dk, dvv))
}

/// Packs the query tile (scaled as the forward pass did), `dO`, the base-2
/// log-sum-exp of each row (`-inf` for padding rows, whose P is then 0) and
/// `Delta_i = sum_d dO_id O_id`.
#[allow(clippy::too_many_arguments)]
fn load_query_tile<T: AttnFloat>(
    sc: &mut Scratch<T>,
    rows_of: &Rows<'_, T>,
    scorer: &Scorer<'_, T>,
    q: &[T],
    out: &[T],
    lse: &[T],
    d_out: &[T],
    total_q: usize,
    i0: usize,
    rows: usize,
    dq_pad: usize,
    dv_pad: usize,
) {
    let (d, dv) = (rows_of.att.dim_qk, rows_of.att.dim_v);
    let rows_pad = round_up(rows, PAD);
    pack_rows(&mut sc.q, dq_pad, q, rows_of.q(i0, d), rows_of.q_stride(d), rows, d, scorer.q_factor());
    sc.q[rows * dq_pad..rows_pad * dq_pad].fill(T::ZERO);
    pack_rows(&mut sc.d_out, dv_pad, d_out, rows_of.q(i0, dv), rows_of.q_stride(dv), rows, dv, T::ONE);
    sc.d_out[rows * dv_pad..rows_pad * dv_pad].fill(T::ZERO);
    let log2e = T::from_f64(LOG2_E);
    for r in 0..rows_pad {
        if r < rows {
            sc.shift[r] = lse[rows_of.h * total_q + rows_of.seq.q_row0 + i0 + r] * log2e;
            let at = rows_of.q(i0 + r, dv);
            sc.delta[r] = d_out[at..at + dv].iter().zip(&out[at..at + dv]).map(|(&a, &b)| a * b).sum();
        } else {
            sc.shift[r] = T::from_f64(f64::NEG_INFINITY);
            sc.delta[r] = T::ZERO;
        }
    }
}

/// Recomputes `P` into `sc.z` and writes `dS = P * (dP - Delta)` (times the
/// softcap derivative) into `sc.dp`, for the packed query tile against the
/// packed key tile (`sc.kt`, `sc.vt`).
#[allow(clippy::too_many_arguments)]
fn probabilities_and_grads<T: AttnFloat>(
    sc: &mut Scratch<T>,
    scorer: &Scorer<'_, T>,
    i0: usize,
    rows: usize,
    rows_pad: usize,
    j0: usize,
    kc: usize,
    kc_pad: usize,
    dv_pad: usize,
) {
    let dq_pad = round_up(scorer.att.dim_qk, LANES);
    let z = &mut sc.z[..rows_pad * kc_pad];
    T::gemm(rows_pad, kc_pad, dq_pad, &sc.q, dq_pad, 1, &sc.kt, kc_pad, z, kc_pad, false);
    let softcap = scorer.att.softcap > 0.0;
    if !scorer.is_plain(i0, rows, j0, kc, kc_pad) {
        let grad = if softcap { Some(&mut sc.cap_grad[..rows_pad * kc_pad]) } else { None };
        scorer.adjust(z, kc_pad, i0, rows, j0, kc, kc_pad, grad);
    }
    T::exp2_shifted(rows_pad, kc_pad, z, kc_pad, &sc.shift);
    let dp = &mut sc.dp[..rows_pad * kc_pad];
    T::gemm(rows_pad, kc_pad, dv_pad, &sc.d_out, dv_pad, 1, &sc.vt, kc_pad, dp, kc_pad, false);
    for r in 0..rows_pad {
        let delta = sc.delta[r];
        let (p_row, dp_row) = (&z[r * kc_pad..(r + 1) * kc_pad], &mut dp[r * kc_pad..(r + 1) * kc_pad]);
        for (g, &p) in dp_row.iter_mut().zip(p_row) {
            *g = p * (*g - delta);
        }
        if softcap && r < rows {
            for (g, &c) in dp_row[..kc].iter_mut().zip(&sc.cap_grad[r * kc_pad..r * kc_pad + kc]) {
                *g *= c;
            }
        }
    }
}
