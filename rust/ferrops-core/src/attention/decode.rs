//! Attention over a key/value cache (ATT-KVCACHE, ATT-PAGED, ATT-SPLITKV):
//! FlashAttention-2's `flash_attn_with_kvcache` on the CPU.
//!
//! Decoding reads the whole cache once per new token and does a few
//! multiply-adds per value read, so it runs at the speed memory streams the
//! cache, not at the speed of the arithmetic. Everything here serves that:
//!
//! - The cache is read in its own layout, `[blocks, block_size, Hkv, D]` (a
//!   contiguous cache `[B, S, Hkv, D]` is the same thing with one block of `S`
//!   rows per sequence): one cache position holds the rows of all key heads side by
//!   side, so a task walks its positions in order and reads whole runs of memory,
//!   each key head once for all the query heads of its group (no `repeat_kv`).
//! - The context is split ("flash-decoding") into chunks of a fixed number of
//!   positions, [`DEFAULT_SPLIT`] unless the caller asks otherwise: one task per
//!   (sequence, query tile, chunk), so a single sequence keeps every thread busy.
//!   Each task leaves a partial result (its rows' maxima, sums and unnormalised
//!   outputs), merged per row in chunk order (ATT-ONLINE's rescaling). Chunk
//!   boundaries are positions, not threads, nor blocks: results are bitwise the
//!   same for any thread count and for a paged or contiguous cache.
//! - With AVX-512, one kernel call walks a task's positions four at a time
//!   (`kernels/avx512_decode.rs`, `avx2_decode.rs` on AVX2). The rows a few positions
//!   ahead are prefetched into L2, one key head's slice at a time between the
//!   arithmetic: the hardware prefetcher stops at page boundaries and does not
//!   follow a paged cache's jump to its next block.
//!
//! bfloat16 and float16 caches are widened to float32 in registers (bfloat16 in
//! pairs where the head dimension is a multiple of 32; other levels through a
//! small buffer); sums and outputs are float32.

use rayon::prelude::*;

use super::decode_task::{merge_rows, run_task, Task};
use super::key_range;
use crate::buffer;
use crate::ensure;
use crate::error::{FerropsError, Name, Result};
use crate::finite::check_all_finite;
use crate::interrupt::Cancel;

/// Positions per chunk: enough work per task (about 20-80 us of streaming) to
/// hide the merge, few enough that one 8k-position sequence gives 32 tasks.
pub const DEFAULT_SPLIT: usize = 256;

/// Query rows (query positions x query heads) per task at most, unless a single
/// position has more heads: the score tile is `rows x chunk` floats.
const MAX_TILE_ROWS: usize = 64;

/// Partial results held at once, in floats: a bound on the memory of a long
/// chunked prefill (many query rows, each with a partial per chunk).
const MAX_PARTIAL_FLOATS: usize = 1 << 23;

/// How a cache's elements are stored.
#[derive(Debug, Clone, Copy)]
pub enum CacheValues<'a> {
    F32(&'a [f32]),
    /// bfloat16 bits.
    Bf16(&'a [u16]),
    /// IEEE half-precision bits.
    F16(&'a [u16]),
}

impl CacheValues<'_> {
    pub fn len(&self) -> usize {
        match self {
            CacheValues::F32(v) => v.len(),
            CacheValues::Bf16(v) | CacheValues::F16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn format(&self) -> &'static str {
        match self {
            CacheValues::F32(_) => "float32",
            CacheValues::Bf16(_) => "bfloat16",
            CacheValues::F16(_) => "float16",
        }
    }
}

/// Everything about one call except the tensors.
#[derive(Debug, Clone)]
pub struct KvCacheAttention<'a> {
    /// The public function, for error messages.
    pub function: Name,
    pub batch: usize,
    pub len_q: usize,
    pub heads_q: usize,
    pub heads_kv: usize,
    pub dim_qk: usize,
    pub dim_v: usize,
    /// Cache blocks and positions per block (a contiguous cache: its batch and
    /// its length).
    pub num_blocks: usize,
    pub block_size: usize,
    /// `[batch, max_blocks]`: the cache block holding positions
    /// `[t * block_size, (t + 1) * block_size)` of each sequence.
    pub block_table: &'a [i32],
    pub max_blocks: usize,
    /// `[batch]`: keys of each sequence, the appended ones included.
    pub seqlens_k: &'a [i32],
    /// `[batch]`: the first cache position of each sequence (FlashAttention's
    /// `cache_leftpad`); key positions count from it.
    pub key_starts: &'a [i32],
    pub scale: f64,
    /// Keys at most `left` before / `right` after the query's position (bottom-right
    /// aligned); `None` is unbounded. Causal attention is `right = Some(0)`.
    pub window_left: Option<usize>,
    pub window_right: Option<usize>,
    pub softcap: f64,
    /// One slope per query head, or per (sequence, query head).
    pub alibi_slopes: Option<&'a [f64]>,
    /// `[batch or 1, len_q, len_q]`: whether new token `i` may see new token `j`,
    /// the last `len_q` keys (tree attention); earlier keys stay visible.
    pub tree_mask: Option<&'a [bool]>,
    /// Positions per chunk; 0 or at least the context: one chunk (no split).
    pub split: usize,
}

/// One (sequence, query tile) unit: its rows, and its keys `[start, start + len)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unit {
    pub seq: usize,
    pub i0: usize,
    pub positions: usize,
    pub key_start: usize,
    pub len_k: usize,
    pub chunks: usize,
}

impl KvCacheAttention<'_> {
    fn error(&self, argument: &'static str, expected: impl Into<String>, got: impl Into<String>) -> FerropsError {
        FerropsError::value(self.function.clone(), argument, expected, got)
    }

    /// Rows of one task: whole query positions, all heads.
    pub(crate) fn tile_positions(&self) -> usize {
        (MAX_TILE_ROWS / self.heads_q.max(1)).max(1)
    }

    /// Positions per chunk for a sequence of `len_k` keys.
    pub(crate) fn chunk_len(&self, len_k: usize) -> usize {
        if self.split == 0 {
            len_k.max(1)
        } else {
            self.split
        }
    }

    /// The element offset of cache position `pos` of sequence `seq` (its row of
    /// all key heads), the block table checked by [`Self::validate`].
    #[inline]
    pub(crate) fn cache_row(&self, seq: usize, pos: usize) -> usize {
        let block = self.block_table[seq * self.max_blocks + pos / self.block_size] as usize;
        (block * self.block_size + pos % self.block_size) * self.heads_kv
    }

    /// The band of keys (relative to the sequence's first key) that query
    /// position `i` may see.
    #[inline]
    pub(crate) fn band(&self, i: usize, len_k: usize) -> (usize, usize) {
        key_range(i, len_k as i64 - self.len_q as i64, len_k, self.window_left, self.window_right)
    }

    pub(crate) fn alibi_slope(&self, seq: usize, h: usize) -> Option<f64> {
        self.alibi_slopes.map(|s| if s.len() == self.heads_q { s[h] } else { s[seq * self.heads_q + h] })
    }

    /// Checks every argument against the tensors; returns the units.
    pub(crate) fn validate(&self, q: &[f32], keys_len: usize, values_len: usize) -> Result<Vec<Unit>> {
        ensure!(self.heads_kv > 0 || self.heads_q == 0, self.error("k_cache", "at least one key head", "0 heads"));
        ensure!(
            self.heads_q.is_multiple_of(self.heads_kv.max(1)),
            self.error(
                "k_cache",
                format!("a number of heads dividing the query's {} heads (ATT-GQA)", self.heads_q),
                format!("{} heads", self.heads_kv),
            )
        );
        ensure!(self.scale.is_finite(), self.error("softmax_scale", "a finite number", format!("{}", self.scale)));
        ensure!(
            self.softcap.is_finite() && self.softcap >= 0.0,
            self.error("softcap", "a finite number >= 0", format!("{}", self.softcap))
        );
        ensure!(self.block_size > 0, self.error("k_cache", "at least one position per block", "0"));
        let dims = |rows: &[usize]| buffer::checked_len::<f32>(self.function.clone(), "a tensor", rows);
        let q_len = dims(&[self.batch, self.len_q, self.heads_q, self.dim_qk])?;
        let k_len = dims(&[self.num_blocks, self.block_size, self.heads_kv, self.dim_qk])?;
        let v_len = dims(&[self.num_blocks, self.block_size, self.heads_kv, self.dim_v])?;
        for (name, got, want) in [("q", q.len(), q_len), ("k_cache", keys_len, k_len), ("v_cache", values_len, v_len)] {
            ensure!(got == want, self.error(name, format!("{want} elements"), format!("{got}")));
        }
        ensure!(
            self.block_table.len() == self.batch * self.max_blocks,
            self.error(
                "block_table",
                format!(
                    "{} entries ({} sequences x {} blocks)",
                    self.batch * self.max_blocks,
                    self.batch,
                    self.max_blocks
                ),
                format!("{}", self.block_table.len()),
            )
        );
        for (name, values) in [("cache_seqlens", self.seqlens_k), ("cache_leftpad", self.key_starts)] {
            ensure!(
                values.len() == self.batch,
                self.error(name, format!("{} entries (one per sequence)", self.batch), format!("{}", values.len()))
            );
        }
        let capacity = self.max_blocks * self.block_size;
        let tile = self.tile_positions();
        let mut units = Vec::new();
        for seq in 0..self.batch {
            let (len, start) = (self.seqlens_k[seq], self.key_starts[seq]);
            ensure!(
                len >= 0 && len as usize <= capacity,
                self.error(
                    "cache_seqlens",
                    format!("lengths (appended keys included) in [0, {capacity}], the cache's positions"),
                    format!("{len} for sequence {seq}"),
                )
            );
            ensure!(
                start >= 0 && start <= len,
                self.error("cache_leftpad", format!("a start in [0, {len}]"), format!("{start} for sequence {seq}"))
            );
            let used = (len as usize).div_ceil(self.block_size);
            let row = &self.block_table[seq * self.max_blocks..seq * self.max_blocks + used];
            if let Some(t) = row.iter().position(|&b| b < 0 || b as usize >= self.num_blocks) {
                return Err(self.error(
                    "block_table",
                    format!("block indices in [0, {})", self.num_blocks),
                    format!("{} at [{seq}, {t}]", row[t]),
                ));
            }
            let len_k = (len - start) as usize;
            let chunks = len_k.div_ceil(self.chunk_len(len_k));
            for i0 in (0..self.len_q).step_by(tile) {
                let positions = tile.min(self.len_q - i0);
                units.push(Unit { seq, i0, positions, key_start: start as usize, len_k, chunks });
            }
        }
        if let Some(slopes) = self.alibi_slopes {
            let per_sequence = self.batch * self.heads_q;
            ensure!(
                slopes.len() == self.heads_q || slopes.len() == per_sequence,
                self.error(
                    "alibi_slopes",
                    format!("{} slopes (one per head) or {per_sequence} (per sequence and head)", self.heads_q),
                    format!("{}", slopes.len()),
                )
            );
            if let Some(bad) = slopes.iter().find(|s| !s.is_finite()) {
                return Err(self.error("alibi_slopes", "finite slopes", format!("{bad}")));
            }
        }
        if let Some(mask) = self.tree_mask {
            let one = self.len_q * self.len_q;
            ensure!(
                mask.len() == one || mask.len() == self.batch * one,
                self.error(
                    "tree_mask",
                    format!("{one} or {} values ([len_q, len_q] or [batch, len_q, len_q])", self.batch * one),
                    format!("{}", mask.len()),
                )
            );
        }
        // The tile max skips NaN, so a NaN query would be silently ignored.
        check_all_finite("", "q", q).map_err(|e| match e {
            FerropsError::InvalidValue { argument, expected, got, .. } => {
                FerropsError::InvalidValue { function: self.function.clone(), argument, expected, got }
            }
            other => other,
        })?;
        Ok(units)
    }

    /// The whole call's cost in nanoseconds of one thread (for
    /// `run_kernel_interruptible`): every (query row, key) pair reads and
    /// multiplies `dim_qk + dim_v` values at about 8 per nanosecond.
    pub fn work(&self) -> u128 {
        let keys: u128 = self.seqlens_k.iter().map(|&s| s.max(0) as u128).sum();
        keys * (self.len_q * self.heads_q) as u128 * (self.dim_qk + self.dim_v) as u128 / 8
    }

    /// Whether query position `i` of `seq` may see key `j` (relative to the
    /// sequence's first key) under the tree mask; `true` without one.
    #[inline]
    pub(crate) fn tree_allows(&self, seq: usize, i: usize, j: usize, len_k: usize) -> bool {
        let Some(mask) = self.tree_mask else { return true };
        let first_new = len_k as i64 - self.len_q as i64;
        if (j as i64) < first_new {
            return true;
        }
        let one = self.len_q * self.len_q;
        let base = if mask.len() == one { 0 } else { seq * one };
        mask[base + i * self.len_q + (j as i64 - first_new) as usize]
    }
}

/// Writes the new keys and values `[batch, len_new, heads_kv, dim]` into the
/// caches at positions `[before, before + len_new)` of each sequence
/// (FlashAttention's in-place append), `before = seqlens_k - len_new`. Every
/// argument is checked before anything is written.
pub fn kvcache_append<E: Copy>(
    att: &KvCacheAttention,
    q: &[f32],
    (k_cache, v_cache): (&mut [E], &mut [E]),
    (k_new, v_new): (&[E], &[E]),
) -> Result<()> {
    att.validate(q, k_cache.len(), v_cache.len())?;
    let len_new = new_positions(att, "k", k_new.len(), att.dim_qk)?;
    ensure!(
        new_positions(att, "v", v_new.len(), att.dim_v)? == len_new,
        att.error("v", format!("{len_new} new positions, as many as k"), "another number")
    );
    for seq in 0..att.batch {
        let len = att.seqlens_k[seq] as usize;
        ensure!(
            len >= len_new + att.key_starts[seq] as usize,
            att.error(
                "cache_seqlens",
                "room before the appended keys for the left padding",
                format!("{len} keys with {len_new} appended for sequence {seq}")
            )
        );
    }
    for (cache, new, dim) in [(k_cache, k_new, att.dim_qk), (v_cache, v_new, att.dim_v)] {
        let per_position = att.heads_kv * dim;
        for seq in 0..att.batch {
            let len = att.seqlens_k[seq] as usize;
            for t in 0..len_new {
                let at = att.cache_row(seq, len - len_new + t) * dim;
                let from = (seq * len_new + t) * per_position;
                cache[at..at + per_position].copy_from_slice(&new[from..from + per_position]);
            }
        }
    }
    Ok(())
}

/// The new positions in `len` elements `[batch, len_new, heads_kv, dim]`.
fn new_positions(att: &KvCacheAttention, argument: &'static str, len: usize, dim: usize) -> Result<usize> {
    let per_sequence = att.batch * att.heads_kv * dim;
    let len_new = len.checked_div(per_sequence).unwrap_or(0);
    ensure!(
        len == len_new * per_sequence,
        att.error(
            argument,
            format!("[{}, len_new, {}, {dim}] elements", att.batch, att.heads_kv),
            format!("{len} elements")
        )
    );
    Ok(len_new)
}

/// `(out, lse)`: `out` `[batch, len_q, heads_q, dim_v]`, `lse` (natural log)
/// `[batch, len_q, heads_q]`, -inf (and output 0) where a row sees no key.
pub fn kvcache_attention(
    att: &KvCacheAttention,
    q: &[f32],
    keys: CacheValues,
    values: CacheValues,
    cancel: &Cancel,
) -> Result<(Vec<f32>, Vec<f32>)> {
    ensure!(
        keys.format() == values.format(),
        att.error("v_cache", format!("the dtype of k_cache ({})", keys.format()), values.format())
    );
    let units = att.validate(q, keys.len(), values.len())?;
    let rows_total = att.batch * att.len_q * att.heads_q;
    let mut out = buffer::try_zeroed::<f32>(att.function.clone(), "out", &[rows_total, att.dim_v])?;
    let mut lse = buffer::try_from_elem(att.function.clone(), "softmax_lse", &[rows_total], f32::NEG_INFINITY)?;
    let tile_rows = att.tile_positions() * att.heads_q;
    let slot = tile_rows * (att.dim_v + 2);
    let row_of = |u: &Unit| (u.seq * att.len_q + u.i0) * att.heads_q;
    // Waves of consecutive units whose partials fit in MAX_PARTIAL_FLOATS; the
    // waves change nothing in any row's arithmetic, only how much is held at once.
    let mut first = 0;
    while first < units.len() {
        let mut last = first;
        let mut slots = 0;
        while last < units.len() && (last == first || (slots + units[last].chunks) * slot <= MAX_PARTIAL_FLOATS) {
            slots += units[last].chunks;
            last += 1;
        }
        cancel.check(&att.function)?;
        let wave = &units[first..last];
        let tasks: Vec<Task> = wave
            .iter()
            .enumerate()
            .flat_map(|(u, unit)| (0..unit.chunks).map(move |c| Task { unit: u, chunk: c }))
            .collect();
        let mut partials = buffer::try_zeroed::<f32>(att.function.clone(), "partial results", &[tasks.len(), slot])?;
        partials.par_chunks_mut(slot.max(1)).zip(&tasks).try_for_each(|(partial, task)| {
            if cancel.is_raised() {
                return cancel.check(&att.function);
            }
            run_task(att, &wave[task.unit], task.chunk, q, keys, values, partial)
        })?;
        // Each unit's rows of `out` and `lse` are contiguous: split them off.
        let start_row = row_of(&wave[0]);
        let end_row = wave.last().map_or(start_row, |u| row_of(u) + u.positions * att.heads_q);
        let mut out_parts = Vec::with_capacity(wave.len());
        let mut out_rest = &mut out[start_row * att.dim_v..end_row * att.dim_v];
        let mut lse_rest = &mut lse[start_row..end_row];
        let mut partial_rest = &partials[..];
        for unit in wave {
            let rows = unit.positions * att.heads_q;
            let (o, o_tail) = std::mem::take(&mut out_rest).split_at_mut(rows * att.dim_v);
            let (l, l_tail) = std::mem::take(&mut lse_rest).split_at_mut(rows);
            let (p, p_tail) = partial_rest.split_at(unit.chunks * slot);
            out_parts.push((o, l, p));
            (out_rest, lse_rest, partial_rest) = (o_tail, l_tail, p_tail);
        }
        out_parts.into_par_iter().for_each(|(o, l, p)| merge_rows(att, p, slot, o, l));
        first = last;
    }
    Ok((out, lse))
}
