//! The backward pass (ATT-BWD), recomputing `P` tile by tile from the saved
//! log-sum-exp, in one pass over (sequence, key head, key chunk) tasks with five
//! tile products per (query tile, key tile): `S`, `dP = dO V^T`, `dV += P^T dO`,
//! `dK += dS^T Q` and `dQ += dS K`. `dK` and `dV` rows belong to one task; `dQ`
//! rows are touched by every chunk, so each chunk adds into its own partial `dQ`
//! and the partials are summed in chunk order at the end: no atomics, and results
//! bitwise identical for any thread count.
//!
//! Operands are read in place from the inputs wherever the tile shape allows
//! (whole groups of 6 rows, widths a multiple of 16); the key tile is transposed
//! once per tile and reused by every query tile of the group's heads.
//!
//! Scores are recomputed with the forward's arithmetic (the query times the score
//! factor, the same products summed in the same order, a dot product for a
//! one-row tile) against the forward's base-2 log-sum-exp, and `Delta` by the
//! product routine that computes `dP`: a row that sees one key then gets `P = 1`
//! and `dP - Delta = 0` exactly, so `dQ` and `dK` are exactly 0 and `dV` is the
//! plain sum of `dO`, as the softmax's derivative says.

use rayon::prelude::*;

use super::forward::{pack_rows, pack_transposed, Scorer, SharedOut, BLOCK_Q};
use super::tile::{round_up, AttnFloat, LANES, PAD};
use super::{Attention, Sequence};
use crate::ensure;
use crate::error::{FerropsError, Result};
use crate::interrupt::Cancel;

/// Keys per tile.
const BLOCK_KB: usize = 96;
/// A sequence's keys are split into chunks of about this many keys (at most
/// [`MAX_CHUNKS`]), one task each, whose partial dQ are summed at the end: more
/// chunks give more parallel tasks but more partial dQ memory. Both depend only
/// on the sequence, not on the thread count.
const CHUNK_KEYS: usize = 512;
const MAX_CHUNKS: usize = 8;

/// Where the rows of one (sequence, query head) and its key head live.
struct Rows<'a, T> {
    att: &'a Attention<'a, T>,
    seq: Sequence,
    h: usize,
    hk: usize,
    total_q: usize,
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
    /// Index of query row `i` in the `[Hq, total_q]` statistics.
    fn stat(&self, i: usize) -> usize {
        self.h * self.total_q + self.seq.q_row0 + i
    }
}

/// `rows` rows of `dim` values from `src` as a matrix operand: in place when
/// `rows` is a whole number of 6-row groups and `dim` needs no padding to
/// `dim_pad`, else copied into `buf` as `round_up(rows, 6) x dim_pad` with zeros
/// around. Returns the operand and its row stride.
#[allow(clippy::too_many_arguments)]
fn operand<'a, T: AttnFloat>(
    buf: &'a mut [T],
    src: &'a [T],
    start: usize,
    stride: usize,
    rows: usize,
    dim: usize,
    dim_pad: usize,
) -> (&'a [T], usize) {
    let rows6 = round_up(rows, 6);
    if rows == rows6 && dim == dim_pad {
        return (&src[start..], stride);
    }
    pack_rows(buf, dim_pad, src, start, stride, rows, dim, T::ONE);
    buf[rows * dim_pad..rows6 * dim_pad].fill(T::ZERO);
    (buf, dim_pad)
}

/// `Delta = sum_c d_out[c] out[c]` computed by `T::gemm`, the routine (and so the
/// chain of fused products) that computes `dP = dO V^T`: where `out` is a value row
/// (a query that sees one key), `dP - Delta` is exactly 0. `column` is a
/// `len x 8` buffer, zero but for its first column.
fn row_delta<T: AttnFloat>(d_out: &[T], out: &[T], column: &mut [T]) -> T {
    for (c, &o) in out.iter().enumerate() {
        column[c * 8] = o;
    }
    let mut product = [T::ZERO; 8];
    T::gemm(1, 8, out.len(), d_out, out.len(), 1, column, 8, &mut product, 8, false);
    product[0]
}

/// `dS = P * (dP - Delta) * softcap'` over a tile, with one Delta per row
/// (`delta_by_row`, the key pass) or per column (the query pass, transposed).
#[allow(clippy::too_many_arguments)]
fn score_grads<T: AttnFloat>(
    rows: usize,
    cols: usize,
    ld: usize,
    p: &[T],
    dp: &mut [T],
    cap_grad: Option<&[T]>,
    delta_by_row: bool,
    delta: &[T],
) {
    for r in 0..rows {
        let (p_row, dp_row) = (&p[r * ld..r * ld + cols], &mut dp[r * ld..r * ld + cols]);
        if delta_by_row {
            let d = delta[r];
            for (g, &p) in dp_row.iter_mut().zip(p_row) {
                *g = p * (*g - d);
            }
        } else {
            for ((g, &p), &d) in dp_row.iter_mut().zip(p_row).zip(delta) {
                *g = p * (*g - d);
            }
        }
        if let Some(c) = cap_grad {
            for (g, &c) in dp_row.iter_mut().zip(&c[r * ld..r * ld + cols]) {
                *g *= c;
            }
        }
    }
}

struct Scratch<T> {
    fixed_a: Vec<T>,
    fixed_b: Vec<T>,
    q: Vec<T>,
    /// The query tile times the score factor, for the scores.
    q_scaled: Vec<T>,
    d_out: Vec<T>,
    z: Vec<T>,
    dp: Vec<T>,
    cap_grad: Vec<T>,
    acc_a: Vec<T>,
    acc_b: Vec<T>,
    k_rows: Vec<T>,
    shift: Vec<T>,
    delta: Vec<T>,
}

impl<T: AttnFloat> Scratch<T> {
    fn new(d_pad: usize, dv_pad: usize) -> Self {
        let rows = round_up(BLOCK_Q, PAD);
        let keys = round_up(BLOCK_KB, PAD);
        let wide = d_pad.max(dv_pad);
        let zero = |n: usize| vec![T::ZERO; n];
        Scratch {
            fixed_a: zero(wide * rows.max(keys)),
            fixed_b: zero(wide * rows.max(keys)),
            q: zero(rows.max(keys) * wide),
            q_scaled: zero(rows.max(keys) * wide),
            d_out: zero(rows.max(keys) * wide),
            z: zero(rows * keys),
            dp: zero(rows * keys),
            cap_grad: zero(rows * keys),
            acc_a: zero(rows.max(keys) * wide),
            acc_b: zero(keys * wide),
            k_rows: zero(keys * wide),
            shift: zero(rows),
            delta: zero(rows),
        }
    }
}

/// Gradients `(dq, dk, dv)` of the attention [`super::attention_forward`]
/// computed, given its `out` and base-2 `lse` and the gradient `d_out` of the
/// output. A raised `cancel` stops each running task within one key tile (a pass
/// over the query rows the tile's band reaches) and the call with
/// [`FerropsError::Interrupted`] (RUN-INTERRUPT).
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: AttnFloat>(
    att: &Attention<'_, T>,
    q: &[T],
    k: &[T],
    v: &[T],
    out: &[T],
    lse: &[T],
    d_out: &[T],
    cancel: &Cancel,
) -> Result<(Vec<T>, Vec<T>, Vec<T>)> {
    let seqs = att.validate(q, k, v)?;
    let (total_q, _) = att.total_rows()?;
    let (hq, hkv, d, dv) = (att.heads_q, att.heads_kv, att.dim_qk, att.dim_v);
    for (name, got, want) in [
        ("out", out.len(), total_q * hq * dv),
        ("grad_out", d_out.len(), total_q * hq * dv),
        ("lse", lse.len(), hq * total_q),
    ] {
        ensure!(
            got == want,
            FerropsError::value(att.function.clone(), name, format!("{want} elements"), format!("{got}"))
        );
    }
    let (d_pad, dv_pad) = (round_up(d, LANES), round_up(dv, LANES));
    let group = hq.checked_div(hkv).unwrap_or(1);

    // Per query row, Delta_i = sum_d dO_id O_id (P is recomputed against `lse`).
    let mut delta = vec![T::ZERO; hq * total_q];
    let mut column = vec![T::ZERO; dv * 8];
    for seq in &seqs {
        for h in 0..hq {
            let rows_of = Rows { att, seq: *seq, h, hk: 0, total_q };
            for i in 0..seq.len_q {
                let at = rows_of.q(i, dv);
                delta[rows_of.stat(i)] = row_delta(&d_out[at..at + dv], &out[at..at + dv], &mut column);
            }
        }
    }
    // The query times the factor the forward pass scales it by before the scores.
    let factor = att.score_factor();
    let q_scaled: Vec<T> = q.iter().map(|&x| x * factor).collect();

    let mut dq = vec![T::ZERO; q.len()];
    let mut dk = vec![T::ZERO; k.len()];
    let mut dvv = vec![T::ZERO; v.len()];

    // One pass over (sequence, key head, key chunk): dK and dV rows are owned by
    // their chunk; each chunk also adds dS K into its own partial dQ of the
    // sequence, and the partials are summed in chunk order at the end, so no two
    // tasks add into one row and no recomputation pass is needed for dQ.
    let mut tasks = Vec::new();
    // Index of the first task of each (sequence, key head), in that order.
    let mut task_start = Vec::new();
    for (s, seq) in seqs.iter().enumerate() {
        let chunks = seq.len_k.div_ceil(CHUNK_KEYS).clamp(1, MAX_CHUNKS);
        let chunk = round_up(seq.len_k.div_ceil(chunks).max(1), BLOCK_KB);
        for hk in 0..hkv {
            task_start.push(tasks.len());
            for k_begin in (0..seq.len_k).step_by(chunk) {
                tasks.push((s, hk, k_begin, (k_begin + chunk).min(seq.len_k)));
            }
        }
    }
    task_start.push(tasks.len());
    let (dk_ptr, dv_ptr) = (SharedOut(dk.as_mut_ptr()), SharedOut(dvv.as_mut_ptr()));
    let (dk_len, dv_len) = (dk.len(), dvv.len());
    let partial_dq: Vec<PartialDq<T>> = tasks
        .par_iter()
        .map_init(
            || Scratch::<T>::new(d_pad, dv_pad),
            |sc, &(s, hk, k_begin, k_end)| {
                let seq = seqs[s];
                // The query tiles whose band reaches this chunk (the band is the same
                // for every head): only their rows get a partial dQ.
                let scorer = Scorer::new(att, s, &seq, hk * group);
                let first_row = partition_point(seq.len_q, |i| scorer.range(i).1 <= k_begin);
                let end_row = partition_point(seq.len_q, |i| scorer.range(i).0 < k_end);
                let row0 = first_row / BLOCK_Q * BLOCK_Q;
                let rows = round_up(end_row, BLOCK_Q).min(seq.len_q).saturating_sub(row0);
                let mut part = PartialDq { row0, rows, values: vec![T::ZERO; group * rows * d_pad] };
                for j0 in (k_begin..k_end).step_by(BLOCK_KB) {
                    // A chunk holds up to an eighth of a sequence's keys, each
                    // tile a pass over its queries: look between tiles.
                    if cancel.is_raised() {
                        break;
                    }
                    key_tile(att, &seqs, s, hk, j0, k_end, sc, [q, &q_scaled, k, v, d_out], lse, &delta, &mut part);
                    let kc = BLOCK_KB.min(k_end - j0);
                    let first = Rows { att, seq, h: hk * group, hk, total_q };
                    let scale = T::from_f64(att.scale);
                    for r in 0..kc {
                        let (at_k, at_v) = (first.k(j0 + r, d), first.k(j0 + r, dv));
                        assert!(at_k + d <= dk_len && at_v + dv <= dv_len);
                        // SAFETY: key row j0 + r of key head hk of sequence s belongs
                        // to this task alone; bounds checked.
                        unsafe {
                            for c in 0..d {
                                *dk_ptr.at(at_k + c) = sc.acc_a[r * d_pad + c] * scale;
                            }
                            for c in 0..dv {
                                *dv_ptr.at(at_v + c) = sc.acc_b[r * dv_pad + c];
                            }
                        }
                    }
                }
                part
            },
        )
        .collect();
    cancel.check(&att.function)?;

    // dQ = scale * sum over chunks, in chunk order, per (sequence, query head).
    let dq_ptr = SharedOut(dq.as_mut_ptr());
    let dq_len = dq.len();
    let heads: Vec<(usize, usize)> = (0..seqs.len()).flat_map(|s| (0..hq).map(move |h| (s, h))).collect();
    heads.par_iter().for_each(|&(s, h)| {
        let seq = seqs[s];
        let hk = h / group;
        let rows_of = Rows { att, seq, h, hk, total_q };
        let g = h - hk * group;
        let slot = s * hkv + hk;
        let parts = &partial_dq[task_start[slot]..task_start[slot + 1]];
        let scale = T::from_f64(att.scale);
        let mut sum = vec![T::ZERO; d];
        for i in 0..seq.len_q {
            sum.fill(T::ZERO);
            for p in parts.iter().filter(|p| (p.row0..p.row0 + p.rows).contains(&i)) {
                let at = (g * p.rows + i - p.row0) * d_pad;
                for (x, &y) in sum.iter_mut().zip(&p.values[at..at + d]) {
                    *x += y;
                }
            }
            let at = rows_of.q(i, d);
            assert!(at + d <= dq_len);
            for (c, &x) in sum.iter().enumerate() {
                // SAFETY: row i of head h of sequence s is written by this task only.
                unsafe { *dq_ptr.at(at + c) = x * scale };
            }
        }
    });
    Ok((dq, dk, dvv))
}

/// The first `i` in `0..n` where `pred` is false (`pred` holds on a prefix: the
/// band's ends never decrease with the query row).
fn partition_point(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if pred(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// One key chunk's contributions to dQ, for query rows `[row0, row0 + rows)`
/// (whole query tiles) of each head of the group: `[group][rows][d_pad]`.
struct PartialDq<T> {
    row0: usize,
    rows: usize,
    values: Vec<T>,
}

/// `dK`, `dV` (unscaled `dS^T Q` in `sc.acc_a`, `P^T dO` in `sc.acc_b`, `kc` rows)
/// of the key tile at `j0` (up to `k_end`) of key head `hk`, over the query heads
/// of its group; adds this tile's `dS K` into the chunk's partial dQ. `tensors`
/// are `q`, `q` times the score factor, `k`, `v` and `d_out`.
#[allow(clippy::too_many_arguments)]
fn key_tile<T: AttnFloat>(
    att: &Attention<'_, T>,
    seqs: &[Sequence],
    s: usize,
    hk: usize,
    j0: usize,
    k_end: usize,
    sc: &mut Scratch<T>,
    tensors: [&[T]; 5],
    shift: &[T],
    delta: &[T],
    dq_part: &mut PartialDq<T>,
) {
    let [q, q_scaled, k, v, d_out] = tensors;
    let (hq, hkv, d, dv) = (att.heads_q, att.heads_kv, att.dim_qk, att.dim_v);
    let (d_pad, dv_pad) = (round_up(d, LANES), round_up(dv, LANES));
    let group = hq / hkv;
    let total_q = att.total_rows().map_or(0, |t| t.0);
    let seq = seqs[s];
    let kc = BLOCK_KB.min(k_end - j0);
    let kc_pad = round_up(kc, PAD);
    let first = Rows { att, seq, h: hk * group, hk, total_q };
    let kt = &mut sc.fixed_a[..d * kc_pad];
    kt.fill(T::ZERO);
    pack_transposed(kt, kc_pad, k, first.k(j0, d), first.k_stride(d), kc, d);
    let vt = &mut sc.fixed_b[..dv * kc_pad];
    vt.fill(T::ZERO);
    pack_transposed(vt, kc_pad, v, first.k(j0, dv), first.k_stride(dv), kc, dv);
    // Key rows as the right operand of dS K: in place when D needs no padding.
    let (k_rows, k_ld): (&[T], usize) = if d == d_pad {
        (&k[first.k(j0, d)..], first.k_stride(d))
    } else {
        pack_rows(&mut sc.k_rows, d_pad, k, first.k(j0, d), first.k_stride(d), kc, d, T::ONE);
        (&sc.k_rows, d_pad)
    };
    let (dk_acc, dv_acc) = (&mut sc.acc_a[..kc_pad * d_pad], &mut sc.acc_b[..kc_pad * dv_pad]);
    dk_acc.fill(T::ZERO);
    dv_acc.fill(T::ZERO);
    for h in hk * group..(hk + 1) * group {
        let rows_of = Rows { att, seq, h, hk, total_q };
        let scorer = Scorer::new(att, s, &seq, h);
        let g = h - hk * group;
        for i0 in (0..seq.len_q).step_by(BLOCK_Q) {
            let rows = BLOCK_Q.min(seq.len_q - i0);
            if scorer.range(i0 + rows - 1).1 <= j0
                || scorer.range(i0).0 >= j0 + kc
                || scorer.mask_removes_tile(i0, rows, j0, kc)
            {
                continue;
            }
            let rows6 = round_up(rows, 6);
            let (q_tile, q_ld) = operand(&mut sc.q, q, rows_of.q(i0, d), rows_of.q_stride(d), rows, d, d_pad);
            let (do_tile, do_ld) =
                operand(&mut sc.d_out, d_out, rows_of.q(i0, dv), rows_of.q_stride(dv), rows, dv, dv_pad);
            for r in 0..rows6 {
                let (sh, de) = if r < rows {
                    (shift[rows_of.stat(i0 + r)], delta[rows_of.stat(i0 + r)])
                } else {
                    (T::from_f64(f64::NEG_INFINITY), T::ZERO)
                };
                sc.shift[r] = sh;
                sc.delta[r] = de;
            }
            let z = &mut sc.z[..rows6 * kc_pad];
            if rows == 1 {
                // As the forward scores a one-row tile: a dot product per key.
                let at = rows_of.q(i0, d);
                let q_row = &q_scaled[at..at + d];
                z.fill(T::ZERO);
                for (j, x) in z[..kc].iter_mut().enumerate() {
                    let at_k = first.k(j0 + j, d);
                    *x = T::dot(&k[at_k..at_k + d], q_row);
                }
            } else {
                let (qs_tile, qs_ld) =
                    operand(&mut sc.q_scaled, q_scaled, rows_of.q(i0, d), rows_of.q_stride(d), rows, d, d_pad);
                T::gemm(rows6, kc_pad, d, qs_tile, qs_ld, 1, &sc.fixed_a, kc_pad, z, kc_pad, false);
            }
            let softcap = att.softcap > 0.0;
            if !scorer.is_plain(i0, rows, j0, kc, kc_pad) {
                let grad = if softcap { Some(&mut sc.cap_grad[..rows6 * kc_pad]) } else { None };
                scorer.adjust(z, kc_pad, i0, rows, j0, kc, kc_pad, grad);
            }
            T::exp2_shifted(rows6, kc_pad, z, kc_pad, &sc.shift);
            let dp = &mut sc.dp[..rows6 * kc_pad];
            T::gemm(rows6, kc_pad, dv, do_tile, do_ld, 1, &sc.fixed_b, kc_pad, dp, kc_pad, false);
            let cap_grad = if softcap { Some(&sc.cap_grad[..]) } else { None };
            score_grads(rows, kc_pad, kc_pad, z, dp, cap_grad, true, &sc.delta);
            // dV += P^T dO and dK += dS^T Q: the transposed tiles are read with
            // swapped strides; padding rows of P and dS are not summed.
            T::gemm(kc_pad, dv_pad, rows, z, 1, kc_pad, do_tile, do_ld, dv_acc, dv_pad, true);
            T::gemm(kc_pad, d_pad, rows, dp, 1, kc_pad, q_tile, q_ld, dk_acc, d_pad, true);
            // dQ (this chunk's part) += dS K.
            let at = g * dq_part.rows + i0 - dq_part.row0;
            let dq_rows = &mut dq_part.values[at * d_pad..(at + rows) * d_pad];
            T::gemm(rows, d_pad, kc, dp, kc_pad, 1, k_rows, k_ld, dq_rows, d_pad, true);
        }
    }
}
