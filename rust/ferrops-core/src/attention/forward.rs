//! The forward pass: per (sequence, head, query tile), loop over the key tiles
//! the band allows, score, online-softmax, accumulate `P V` (ATT-ONLINE).

use std::f64::consts::LOG2_E;

use rayon::prelude::*;

use super::tile::{round_up, AttnFloat, LANES, PAD};
use super::{key_range, Attention, MaskValues, Sequence};
use crate::error::Result;
use crate::interrupt::Cancel;

/// Query rows per task and keys per tile. At D = 64 the transposed 96 x 64
/// query tile (24 KB) and the 96 x 96 score tile (36 KB) stay in L1/L2; 48 to
/// 192 keys and 48 to 144 queries measured the same (within 3%) on a Zen 3, so the
/// middle was kept.
pub(crate) const BLOCK_Q: usize = 96;
pub(crate) const BLOCK_K: usize = 96;

/// The score rules of one (sequence, head): turns `q . k` tiles into base-2
/// scores with `-inf` where a key may not be attended.
pub(crate) struct Scorer<'a, T> {
    pub(crate) att: &'a Attention<'a, T>,
    seq_index: usize,
    head: usize,
    /// The query's key position is `i + offset` (bottom-right or top-left alignment).
    offset: i64,
    len_k: usize,
    slope: Option<f64>,
}

impl<'a, T: AttnFloat> Scorer<'a, T> {
    pub(crate) fn new(att: &'a Attention<'a, T>, seq_index: usize, seq: &Sequence, head: usize) -> Self {
        let offset = if att.bottom_right { seq.len_k as i64 - seq.len_q as i64 } else { 0 };
        Scorer { att, seq_index, head, offset, len_k: seq.len_k, slope: att.alibi_slope(seq_index, head) }
    }

    /// What query tiles are multiplied by when packed: the whole scale folded with
    /// `log2(e)` (scores come out base-2), or only the scale when softcap must see
    /// natural-unit scores first.
    pub(crate) fn q_factor(&self) -> T {
        self.att.score_factor()
    }

    pub(crate) fn range(&self, i: usize) -> (usize, usize) {
        key_range(i, self.offset, self.len_k, self.att.window_left, self.att.window_right)
    }

    /// Whether scores of rows `[i0, i0 + rows)` x keys `[k0, k0 + kc)` (padded to
    /// `kc_pad`) are final as the product left them.
    pub(crate) fn is_plain(&self, i0: usize, rows: usize, k0: usize, kc: usize, kc_pad: usize) -> bool {
        let (first_lo, first_hi) = self.range(i0);
        let (last_lo, last_hi) = self.range(i0 + rows - 1);
        let in_band = k0 >= first_lo.max(last_lo) && k0 + kc <= first_hi.min(last_hi);
        in_band && kc == kc_pad && self.att.softcap == 0.0 && self.slope.is_none() && self.att.mask.is_none()
    }

    /// Applies softcap, ALiBi, the mask and the band to rows `[i0, i0 + rows)`
    /// of the tile `z` (`ldz` apart), keys `[k0, k0 + kc)`, padded columns up to
    /// `kc_pad`. With `softcap_grad`, also stores `1 - tanh^2` there (for ATT-BWD).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn adjust(
        &self,
        z: &mut [T],
        ldz: usize,
        i0: usize,
        rows: usize,
        k0: usize,
        kc: usize,
        kc_pad: usize,
        mut softcap_grad: Option<&mut [T]>,
    ) {
        let att = self.att;
        let neg_inf = T::from_f64(f64::NEG_INFINITY);
        let log2e = T::from_f64(LOG2_E);
        let cap = T::from_f64(att.softcap);
        let inv_cap = T::from_f64(if att.softcap > 0.0 { 1.0 / att.softcap } else { 0.0 });
        for r in 0..rows {
            let i = i0 + r;
            let (lo, hi) = self.range(i);
            let row = &mut z[r * ldz..r * ldz + kc_pad];
            if att.softcap > 0.0 {
                let grad_row = softcap_grad.as_deref_mut().map(|g| &mut g[r * ldz..r * ldz + kc]);
                match grad_row {
                    Some(g) => {
                        for (x, g) in row[..kc].iter_mut().zip(g) {
                            let t = (*x * inv_cap).tanh();
                            *g = T::ONE - t * t;
                            *x = log2e * cap * t;
                        }
                    }
                    None => {
                        for x in row[..kc].iter_mut() {
                            *x = log2e * cap * (*x * inv_cap).tanh();
                        }
                    }
                }
            }
            if let Some(slope) = self.slope {
                let pos = i as i64 + self.offset;
                let s = T::from_f64(slope * LOG2_E);
                for (j, x) in row[..kc].iter_mut().enumerate() {
                    *x -= s * T::from_f64((pos - (k0 + j) as i64).unsigned_abs() as f64);
                }
            }
            if let Some(mask) = &att.mask {
                let base =
                    mask.offsets[self.seq_index * att.heads_q + self.head] + i * mask.row_stride + k0 * mask.col_stride;
                match mask.values {
                    MaskValues::Bool(values) => {
                        for (j, x) in row[..kc].iter_mut().enumerate() {
                            if !values[base + j * mask.col_stride] {
                                *x = neg_inf;
                            }
                        }
                    }
                    MaskValues::Additive(values) => {
                        for (j, x) in row[..kc].iter_mut().enumerate() {
                            *x += log2e * values[base + j * mask.col_stride];
                        }
                    }
                }
            }
            // Keys outside the band [lo, hi) and the padding columns.
            let start = lo.saturating_sub(k0).min(kc);
            let end = hi.saturating_sub(k0).clamp(start, kc);
            row[..start].fill(neg_inf);
            row[end..].fill(neg_inf);
        }
    }
}

impl<T: AttnFloat> Scorer<'_, T> {
    /// [`Scorer::adjust`] on a transposed tile: `z` has one row per key
    /// (`[k0, k0 + kc)`, `ldz` apart) and one column per query (`[i0, i0 + rows)`;
    /// padding columns are left alone).
    pub(crate) fn adjust_transposed(&self, z: &mut [T], ldz: usize, i0: usize, rows: usize, k0: usize, kc: usize) {
        let att = self.att;
        let neg_inf = T::from_f64(f64::NEG_INFINITY);
        let log2e = T::from_f64(LOG2_E);
        let cap = T::from_f64(att.softcap);
        let inv_cap = T::from_f64(if att.softcap > 0.0 { 1.0 / att.softcap } else { 0.0 });
        for j in 0..kc {
            let row = &mut z[j * ldz..j * ldz + rows];
            let key = k0 + j;
            if att.softcap > 0.0 {
                for x in row.iter_mut() {
                    *x = log2e * cap * (*x * inv_cap).tanh();
                }
            }
            if let Some(slope) = self.slope {
                let s = T::from_f64(slope * LOG2_E);
                for (r, x) in row.iter_mut().enumerate() {
                    let pos = (i0 + r) as i64 + self.offset;
                    *x -= s * T::from_f64((pos - key as i64).unsigned_abs() as f64);
                }
            }
            if let Some(mask) = &att.mask {
                let offset = mask.offsets[self.seq_index * att.heads_q + self.head] + key * mask.col_stride;
                match mask.values {
                    MaskValues::Bool(values) => {
                        for (r, x) in row.iter_mut().enumerate() {
                            if !values[offset + (i0 + r) * mask.row_stride] {
                                *x = neg_inf;
                            }
                        }
                    }
                    MaskValues::Additive(values) => {
                        for (r, x) in row.iter_mut().enumerate() {
                            *x += log2e * values[offset + (i0 + r) * mask.row_stride];
                        }
                    }
                }
            }
            // Queries that see this key: key <= i + offset + right and
            // key >= i + offset - left, i.e. i in [key - offset - right, key - offset + left].
            let rel = key as i64 - self.offset;
            let first = att.window_right.map_or(0, |w| (rel - w as i64 - i0 as i64).clamp(0, rows as i64) as usize);
            let end = att
                .window_left
                .map_or(rows, |w| (rel + w as i64 + 1 - i0 as i64).clamp(first as i64, rows as i64) as usize);
            row[..first].fill(neg_inf);
            row[end..].fill(neg_inf);
        }
    }
}

impl<T: AttnFloat> Scorer<'_, T> {
    /// Whether the user's mask removes every score of rows `[i0, i0 + rows)` x
    /// keys `[k0, k0 + kc)` (padding masks do this to whole tiles): then the
    /// tile is skipped like one outside the causal band.
    pub(crate) fn mask_removes_tile(&self, i0: usize, rows: usize, k0: usize, kc: usize) -> bool {
        let att = self.att;
        let Some(mask) = &att.mask else { return false };
        let base = mask.offsets[self.seq_index * att.heads_q + self.head];
        let neg_inf = T::from_f64(f64::NEG_INFINITY);
        (i0..i0 + rows).all(|i| {
            let row = base + i * mask.row_stride + k0 * mask.col_stride;
            match mask.values {
                MaskValues::Bool(values) => (0..kc).all(|j| !values[row + j * mask.col_stride]),
                MaskValues::Additive(values) => (0..kc).all(|j| values[row + j * mask.col_stride] == neg_inf),
            }
        })
    }
}

/// Copies `rows` rows of `dim` values (`src_stride` apart, starting at `src`) into
/// `dst` as a `rows x ld` block times `factor`, zeroing the padding columns.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_rows<T: AttnFloat>(
    dst: &mut [T],
    ld: usize,
    src: &[T],
    start: usize,
    src_stride: usize,
    rows: usize,
    dim: usize,
    factor: T,
) {
    for r in 0..rows {
        let from = &src[start + r * src_stride..start + r * src_stride + dim];
        let to = &mut dst[r * ld..(r + 1) * ld];
        for (t, &f) in to.iter_mut().zip(from) {
            *t = f * factor;
        }
        to[dim..].fill(T::ZERO);
    }
}

/// Like [`pack_rows`] but transposed: `dst[d * ld + r] = src row r, column d`.
pub(crate) fn pack_transposed<T: AttnFloat>(
    dst: &mut [T],
    ld: usize,
    src: &[T],
    start: usize,
    src_stride: usize,
    rows: usize,
    dim: usize,
) {
    for r in 0..rows {
        let from = &src[start + r * src_stride..start + r * src_stride + dim];
        for (d, &f) in from.iter().enumerate() {
            dst[d * ld + r] = f;
        }
    }
}

/// A raw pointer shared by tasks that write disjoint elements of one buffer.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut<T>(pub(crate) *mut T);
// SAFETY: tasks write disjoint index sets (each owns its rows), see the callers.
unsafe impl<T: Send> Send for SharedOut<T> {}
unsafe impl<T: Send> Sync for SharedOut<T> {}

impl<T> SharedOut<T> {
    /// # Safety
    /// `index` is inside the buffer and no other task writes it.
    #[inline]
    pub(crate) unsafe fn at(&self, index: usize) -> *mut T {
        self.0.add(index)
    }
}

/// (sequence, head, first query row) of every task, in a fixed order.
pub(crate) fn query_tasks(seqs: &[Sequence], heads: usize) -> Vec<(usize, usize, usize)> {
    let mut tasks = Vec::new();
    for (s, seq) in seqs.iter().enumerate() {
        for h in 0..heads {
            for i0 in (0..seq.len_q).step_by(BLOCK_Q) {
                tasks.push((s, h, i0));
            }
        }
    }
    tasks
}

/// One thread's tiles. `z` (scores, then probabilities), `o` (the unnormalised
/// output) and the running statistics `m`, `l`, `alpha` are shared by every
/// element type's `attend`; `qt`, `q1` and `v` are the float kernels' packed
/// operands.
pub(crate) struct Scratch<T> {
    qt: Vec<T>,
    /// The scaled query when the tile has one row.
    q1: Vec<T>,
    v: Vec<T>,
    pub(crate) z: Vec<T>,
    pub(crate) o: Vec<T>,
    pub(crate) m: Vec<T>,
    pub(crate) l: Vec<T>,
    pub(crate) alpha: Vec<T>,
}

impl<T: AttnFloat> Scratch<T> {
    fn new(d: usize, dv: usize) -> Self {
        let rows = round_up(BLOCK_Q, PAD);
        let keys = round_up(BLOCK_K, PAD);
        Scratch {
            qt: vec![T::ZERO; d * rows],
            q1: Vec::with_capacity(d),
            v: vec![T::ZERO; keys * dv],
            z: vec![T::ZERO; keys * rows],
            o: vec![T::ZERO; rows * dv],
            m: vec![T::ZERO; rows],
            l: vec![T::ZERO; rows],
            alpha: vec![T::ZERO; rows],
        }
    }

    /// Starts a task of `rows_pad` query rows: no output, max `-inf`, sum 0.
    pub(crate) fn start(&mut self, rows_pad: usize, dv_pad: usize) {
        self.o[..rows_pad * dv_pad].fill(T::ZERO);
        self.m[..rows_pad].fill(T::from_f64(f64::NEG_INFINITY));
        self.l[..rows_pad].fill(T::ZERO);
    }

    /// Turns the `kc x rows_pad` score tile in `z` (keys `[k0, k0 + kc)`, queries
    /// from `i0`, `rows` of them real) into probabilities (ATT-ONLINE) and rescales
    /// the output rows by how much their running max grew.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn online_softmax(
        &mut self,
        scorer: &Scorer<'_, T>,
        i0: usize,
        rows: usize,
        rows_pad: usize,
        k0: usize,
        kc: usize,
        dv_pad: usize,
    ) {
        let z = &mut self.z[..kc * rows_pad];
        if !scorer.is_plain(i0, rows, k0, kc, kc) {
            scorer.adjust_transposed(z, rows_pad, i0, rows, k0, kc);
        }
        T::softmax_step(kc, rows_pad, z, rows_pad, &mut self.m, &mut self.l, &mut self.alpha);
        for r in 0..rows_pad {
            let a = self.alpha[r];
            if a != T::ONE {
                self.o[r * dv_pad..(r + 1) * dv_pad].iter_mut().for_each(|x| *x *= a);
            }
        }
    }
}

/// Query tiles with at most this many keys to see run as one task; longer key
/// ranges of a sequence with a single query tile (decoding, short prompts against
/// a long cache) are split into chunks of [`KEY_CHUNK`] keys so that all threads
/// work, and the partial results combined in chunk order (ATT-ONLINE's merge).
/// Both numbers are fixed, so the split does not depend on the thread count.
const SPLIT_MIN_KEYS: usize = 4096;
const KEY_CHUNK: usize = 1024;

/// One unit of work: query rows `[i0, i0 + BLOCK_Q)` of head `h` of sequence `s`
/// against keys `[k_begin, k_end)`; `split` when it is one chunk of a split range.
#[derive(Clone, Copy)]
pub(crate) struct Task {
    pub(crate) s: usize,
    pub(crate) h: usize,
    pub(crate) i0: usize,
    pub(crate) k_begin: usize,
    pub(crate) k_end: usize,
    split: bool,
}

/// A split chunk's unnormalised output (`rows x dv_pad`) and statistics.
struct Partial<T> {
    o: Vec<T>,
    m: Vec<T>,
    l: Vec<T>,
}

fn tasks_of<T: AttnFloat>(att: &Attention<'_, T>, seqs: &[Sequence]) -> Vec<Task> {
    let mut tasks = Vec::new();
    for (s, h, i0) in query_tasks(seqs, att.heads_q) {
        let seq = &seqs[s];
        let scorer = Scorer::new(att, s, seq, h);
        let rows = BLOCK_Q.min(seq.len_q - i0);
        let (k_lo, _) = scorer.range(i0);
        let (_, k_hi) = scorer.range(i0 + rows - 1);
        if seq.len_q <= BLOCK_Q && k_hi - k_lo > SPLIT_MIN_KEYS {
            for k_begin in (k_lo..k_hi).step_by(KEY_CHUNK) {
                tasks.push(Task { s, h, i0, k_begin, k_end: (k_begin + KEY_CHUNK).min(k_hi), split: true });
            }
        } else {
            tasks.push(Task { s, h, i0, k_begin: k_lo, k_end: k_hi, split: false });
        }
    }
    tasks
}

/// Runs the online softmax of one task, leaving the unnormalised output and
/// the running max and sum of its rows in `scratch.o`, `.m`, `.l`.
#[allow(clippy::too_many_arguments)]
fn attend<T: AttnFloat>(
    att: &Attention<'_, T>,
    seqs: &[Sequence],
    task: &Task,
    q: &[T],
    k: &[T],
    v: &[T],
    scratch: &mut Scratch<T>,
    cancel: &Cancel,
) {
    let (hq, hkv, d, dv) = (att.heads_q, att.heads_kv, att.dim_qk, att.dim_v);
    let dv_pad = round_up(dv, LANES);
    let Task { s, h, i0, .. } = *task;
    let seq = &seqs[s];
    let hk = h / (hq / hkv);
    let scorer = Scorer::new(att, s, seq, h);
    let rows = BLOCK_Q.min(seq.len_q - i0);
    // Query columns come in vectors of 8: a decoding step (one query) computes 8
    // columns, not a whole block.
    let rows_pad = round_up(rows, 8);
    let q_stride = att.row_stride(hq, d);
    // Scores are computed transposed, keys x queries: the key tile is the left
    // operand and is read in place (or row-copied), only the query tile is
    // transposed, once per task; the softmax statistics are then per column, 8
    // queries to a vector.
    let qt = &mut scratch.qt[..d * rows_pad];
    qt.fill(T::ZERO);
    pack_transposed(qt, rows_pad, q, att.row_offset(seq.q_row0, seq.len_q, hq, h, i0, d), q_stride, rows, d);
    let factor = scorer.q_factor();
    qt.iter_mut().for_each(|x| *x *= factor);
    if rows == 1 {
        scratch.q1.clear();
        scratch.q1.extend((0..d).map(|c| qt[c * rows_pad]));
    }
    scratch.start(rows_pad, dv_pad);
    let k_stride = att.row_stride(hkv, d);
    let v_stride = att.row_stride(hkv, dv);
    let mut k0 = task.k_begin;
    while k0 < task.k_end {
        // A query tile of a long sequence sees up to millions of keys: a raised
        // token stops it within one key tile (the task's rows are dropped).
        if cancel.is_raised() {
            return;
        }
        let kc = BLOCK_K.min(task.k_end - k0);
        if scorer.mask_removes_tile(i0, rows, k0, kc) {
            k0 += kc;
            continue;
        }
        let k_start = att.row_offset(seq.k_row0, seq.len_k, hkv, hk, k0, d);
        // The key tile is read in place: the product takes any number of rows.
        let (k_tile, k_ld) = (&k[k_start..], k_stride);
        let z = &mut scratch.z[..kc * rows_pad];
        if rows == 1 {
            // One query: a dot product per key; the 7 padding columns stay 0.
            for (j, z_row) in z.chunks_exact_mut(rows_pad).enumerate() {
                z_row[0] = T::dot(&k_tile[j * k_ld..j * k_ld + d], &scratch.q1);
                z_row[1..].fill(T::ZERO);
            }
        } else {
            T::gemm(kc, rows_pad, d, k_tile, k_ld, 1, &scratch.qt[..d * rows_pad], rows_pad, z, rows_pad, false);
        }
        scratch.online_softmax(&scorer, i0, rows, rows_pad, k0, kc, dv_pad);
        let v_start = att.row_offset(seq.k_row0, seq.len_k, hkv, hk, k0, dv);
        // Value rows are read in place when their width is already a whole number
        // of vectors.
        let (v_tile, v_ld): (&[T], usize) = if dv == dv_pad {
            (&v[v_start..], v_stride)
        } else {
            pack_rows(&mut scratch.v, dv_pad, v, v_start, v_stride, kc, dv, T::ONE);
            (&scratch.v, dv_pad)
        };
        T::gemm(rows, dv_pad, kc, &scratch.z[..kc * rows_pad], 1, rows_pad, v_tile, v_ld, &mut scratch.o, dv_pad, true);
        k0 += kc;
    }
}

/// Where finished rows go.
struct Outputs<T> {
    out: SharedOut<T>,
    out_len: usize,
    lse: SharedOut<T>,
    lse_len: usize,
    total_q: usize,
}

impl<T: AttnFloat> Outputs<T> {
    /// Writes `O = o / l` and the base-2 `LSE2 = m + log2 l` of the task's rows.
    ///
    /// # Safety
    /// No other thread writes these rows (tasks partition the query rows; a split
    /// range is written once, after its chunks are combined).
    unsafe fn write(&self, att: &Attention<'_, T>, seq: &Sequence, task: &Task, o: &[T], m: &[T], l: &[T]) {
        let (hq, dv) = (att.heads_q, att.dim_v);
        let dv_pad = round_up(dv, LANES);
        let (h, i0) = (task.h, task.i0);
        let rows = BLOCK_Q.min(seq.len_q - i0);
        let o_stride = att.row_stride(hq, dv);
        let o_start = att.row_offset(seq.q_row0, seq.len_q, hq, h, i0, dv);
        for r in 0..rows {
            let inv = if l[r] > T::ZERO { T::ONE / l[r] } else { T::ZERO };
            let at = o_start + r * o_stride;
            let lse_at = h * self.total_q + seq.q_row0 + i0 + r;
            assert!(at + dv <= self.out_len && lse_at < self.lse_len);
            for c in 0..dv {
                *self.out.at(at + c) = o[r * dv_pad + c] * inv;
            }
            if l[r] > T::ZERO {
                *self.lse.at(lse_at) = m[r] + T::from_f64(l[r].to_f64().log2());
            }
        }
    }
}

/// Attention output `[rows, Hq, Dv]` in the query's layout and the log-sum-exp
/// `[Hq, total_q]` in base 2 (`LSE / ln 2`, `-inf` for rows that attend to
/// nothing): the unit the scores are computed in, so that the backward pass
/// recomputes `P = exp2(z - LSE2)` from exactly the forward's statistics (a row
/// with one key gets `P = 1` exactly). Callers multiply by `ln 2` for the
/// natural log. A raised `cancel` stops the call within a key tile of each
/// running task, with [`FerropsError::Interrupted`](crate::FerropsError::Interrupted)
/// (RUN-INTERRUPT).
pub fn attention_forward<T: AttnFloat>(
    att: &Attention<'_, T>,
    q: &[T],
    k: &[T],
    v: &[T],
    cancel: &Cancel,
) -> Result<(Vec<T>, Vec<T>)> {
    let seqs = att.validate(q, k, v)?;
    run_tasks(att, &seqs, cancel, || (), |task, scratch, _| attend(att, &seqs, task, q, k, v, scratch, cancel))
}

/// Runs every task of a validated call in parallel and writes the output and
/// log-sum-exp: `attend` leaves a task's unnormalised output and statistics in
/// its [`Scratch`] (with `extra`, per-thread state of its own, made by
/// `new_extra`); split key ranges are merged here, in chunk order. Once `cancel`
/// is raised, tasks not yet started are skipped (`attend` stops running ones)
/// and the call returns `Interrupted` without merging.
pub(crate) fn run_tasks<T, X, NewExtra, Attend>(
    att: &Attention<'_, T>,
    seqs: &[Sequence],
    cancel: &Cancel,
    new_extra: NewExtra,
    attend: Attend,
) -> Result<(Vec<T>, Vec<T>)>
where
    T: AttnFloat,
    NewExtra: Fn() -> X + Sync + Send,
    Attend: Fn(&Task, &mut Scratch<T>, &mut X) + Sync + Send,
{
    let (total_q, _) = att.total_rows()?;
    let (hq, d, dv) = (att.heads_q, att.dim_qk, att.dim_v);
    let mut out = vec![T::ZERO; total_q * hq * dv];
    let mut lse = vec![T::from_f64(f64::NEG_INFINITY); hq * total_q];
    let tasks = tasks_of(att, seqs);
    let dv_pad = round_up(dv, LANES);
    let outputs = Outputs {
        out: SharedOut(out.as_mut_ptr()),
        out_len: out.len(),
        lse: SharedOut(lse.as_mut_ptr()),
        lse_len: lse.len(),
        total_q,
    };
    let partials: Vec<Option<Partial<T>>> = tasks
        .par_iter()
        .map_init(
            || (Scratch::<T>::new(d, dv_pad), new_extra()),
            |(scratch, extra), task| {
                if cancel.is_raised() {
                    return None;
                }
                attend(task, scratch, extra);
                let rows = BLOCK_Q.min(seqs[task.s].len_q - task.i0);
                if task.split {
                    return Some(Partial {
                        o: scratch.o[..rows * dv_pad].to_vec(),
                        m: scratch.m[..rows].to_vec(),
                        l: scratch.l[..rows].to_vec(),
                    });
                }
                // SAFETY: an unsplit task is the only writer of its rows.
                unsafe { outputs.write(att, &seqs[task.s], task, &scratch.o, &scratch.m, &scratch.l) };
                None
            },
        )
        .collect();
    cancel.check(&att.function)?;
    // Merge the chunks of each split range in chunk order: rescale each to the
    // common max and add.
    let mut n = 0;
    while n < tasks.len() {
        if !tasks[n].split {
            n += 1;
            continue;
        }
        let first = tasks[n];
        let mut end = n;
        while end < tasks.len()
            && tasks[end].split
            && (tasks[end].s, tasks[end].h, tasks[end].i0) == (first.s, first.h, first.i0)
        {
            end += 1;
        }
        let chunks: Vec<&Partial<T>> = partials[n..end].iter().flatten().collect();
        let rows = chunks[0].m.len();
        let neg_inf = T::from_f64(f64::NEG_INFINITY);
        let mut o = vec![T::ZERO; rows * dv_pad];
        let mut m = vec![neg_inf; rows];
        let mut l = vec![T::ZERO; rows];
        for r in 0..rows {
            m[r] = chunks.iter().fold(neg_inf, |acc, c| acc.max_fast(c.m[r]));
            if m[r] == neg_inf {
                continue;
            }
            for c in &chunks {
                let w = T::from_f64((c.m[r] - m[r]).to_f64().exp2());
                l[r] += w * c.l[r];
                for (x, &y) in o[r * dv_pad..(r + 1) * dv_pad].iter_mut().zip(&c.o[r * dv_pad..(r + 1) * dv_pad]) {
                    *x += w * y;
                }
            }
        }
        // SAFETY: the chunks are done; this range is written once, here.
        unsafe { outputs.write(att, &seqs[first.s], &first, &o, &m, &l) };
        n = end;
    }
    Ok((out, lse))
}
