//! Attention (SPEC section 3): tiled online-softmax attention, forward and
//! backward, without ever building the `L x S` score matrix.
//!
//! One description ([`Attention`]) serves the three public layouts: the SDPA
//! layout `[B, H, L, D]` ([`Layout::HeadMajor`]), FlashAttention's `[B, L, H, D]`
//! and its packed variable-length `[tokens, H, D]` ([`Layout::TokenMajor`], the
//! sequences given by `cu_seqlens`, ATT-VARLEN). Every option is a rule on the
//! base-2 scores of one tile: scale, softcap (ATT-SOFTCAP), ALiBi (ATT-ALIBI),
//! boolean or additive masks (ATT-MASK), and the causal/sliding-window band
//! (ATT-CAUSAL, ATT-WINDOW), which is also used to skip tiles that it removes.
//!
//! Work is split over (sequence, head, query tile), tasks whose boundaries do not
//! depend on the thread count; each task owns its output rows, so results are
//! bitwise identical for any number of threads. The backward pass (ATT-BWD)
//! recomputes the probabilities from the saved log-sum-exp over key chunks, each
//! owning its `dK`, `dV` rows and a partial `dQ`; the partials are summed in a
//! fixed order (see `backward.rs`).

mod backward;
pub mod bf16;
#[cfg(target_arch = "x86_64")]
mod bf16_dot;
mod decode;
mod decode_task;
mod forward;
#[cfg(target_arch = "x86_64")]
mod kernels;
mod tile;

pub use backward::attention_backward;
pub use decode::{kvcache_append, kvcache_attention, CacheValues, KvCacheAttention, DEFAULT_SPLIT};
pub use forward::attention_forward;
pub use tile::AttnFloat;

use crate::ensure;
use crate::error::{FerropsError, Name, Result};
use crate::finite::check_all_finite;

/// Where a tensor's rows live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[B, H, L, D]`: torch's `scaled_dot_product_attention` layout.
    HeadMajor,
    /// `[tokens, H, D]`: FlashAttention's `[B, L, H, D]` (tokens = B * L) and its
    /// packed variable-length layout.
    TokenMajor,
}

/// The batch: `batch` sequences of the same lengths, or packed sequences given by
/// cumulative lengths (`cu_seqlens`, ATT-VARLEN).
#[derive(Debug, Clone, Copy)]
pub enum Batch<'a> {
    Dense { batch: usize, len_q: usize, len_k: usize },
    Packed { cu_seqlens_q: &'a [i32], cu_seqlens_k: &'a [i32] },
}

/// Boolean (`true` = may attend) or additive mask entries.
#[derive(Debug, Clone, Copy)]
pub enum MaskValues<'a, T> {
    Bool(&'a [bool]),
    Additive(&'a [T]),
}

/// A mask broadcast over sequences and heads without a copy: the entry for
/// sequence `s`, query head `h`, query `i`, key `j` is
/// `values[offsets[s * heads_q + h] + i * row_stride + j * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct Mask<'a, T> {
    pub values: MaskValues<'a, T>,
    pub offsets: &'a [usize],
    pub row_stride: usize,
    pub col_stride: usize,
}

/// Everything about one attention call except the tensors.
#[derive(Debug, Clone)]
pub struct Attention<'a, T> {
    /// The public function, for error messages (the binding passes the caller's).
    pub function: Name,
    pub layout: Layout,
    pub batch: Batch<'a>,
    pub heads_q: usize,
    pub heads_kv: usize,
    pub dim_qk: usize,
    pub dim_v: usize,
    /// Multiplies `q . k` (ATT-REF).
    pub scale: f64,
    /// Causal and window alignment: `true` is FlashAttention's bottom-right (query
    /// `i` is at key position `i + S - L`), `false` torch's top-left.
    pub bottom_right: bool,
    /// Keys at most `left` before / `right` after the query's position; `None` is
    /// unbounded. Causal attention is `right = Some(0)`.
    pub window_left: Option<usize>,
    pub window_right: Option<usize>,
    /// `cap * tanh(s / cap)` on the scaled scores when positive.
    pub softcap: f64,
    /// One slope per query head, or per (sequence, query head).
    pub alibi_slopes: Option<&'a [f64]>,
    pub mask: Option<Mask<'a, T>>,
}

/// One sequence: its first query and key rows (in tokens) and lengths.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sequence {
    pub q_row0: usize,
    pub len_q: usize,
    pub k_row0: usize,
    pub len_k: usize,
}

impl<T: AttnFloat> Attention<'_, T> {
    pub(crate) fn sequences(&self) -> Result<Vec<Sequence>> {
        match self.batch {
            Batch::Dense { batch, len_q, len_k } => {
                Ok((0..batch).map(|b| Sequence { q_row0: b * len_q, len_q, k_row0: b * len_k, len_k }).collect())
            }
            Batch::Packed { cu_seqlens_q, cu_seqlens_k } => {
                ensure!(
                    self.layout == Layout::TokenMajor,
                    FerropsError::value(
                        self.function.clone(),
                        "layout",
                        "the token-major layout for packed sequences",
                        "head-major"
                    )
                );
                ensure!(
                    cu_seqlens_q.len() == cu_seqlens_k.len(),
                    FerropsError::value(
                        self.function.clone(),
                        "cu_seqlens_k",
                        format!("{} entries, as many as cu_seqlens_q", cu_seqlens_q.len()),
                        format!("{}", cu_seqlens_k.len()),
                    )
                );
                let q = starts(&self.function, "cu_seqlens_q", cu_seqlens_q)?;
                let k = starts(&self.function, "cu_seqlens_k", cu_seqlens_k)?;
                Ok(q.windows(2)
                    .zip(k.windows(2))
                    .map(|(q, k)| Sequence { q_row0: q[0], len_q: q[1] - q[0], k_row0: k[0], len_k: k[1] - k[0] })
                    .collect())
            }
        }
    }

    pub(crate) fn total_rows(&self) -> Result<(usize, usize)> {
        Ok(match self.batch {
            Batch::Dense { batch, len_q, len_k } => (batch * len_q, batch * len_k),
            Batch::Packed { cu_seqlens_q, cu_seqlens_k } => (
                starts(&self.function, "cu_seqlens_q", cu_seqlens_q)?.last().copied().unwrap_or(0),
                starts(&self.function, "cu_seqlens_k", cu_seqlens_k)?.last().copied().unwrap_or(0),
            ),
        })
    }

    /// The forward pass's cost in elementary steps of about a nanosecond of one
    /// thread (what `run_kernel_interruptible` compares with its bound): every
    /// (query head, query, key) score of each sequence costs `dim_qk + dim_v`
    /// multiply-adds plus about as much again in softmax, band and mask work, at
    /// about 32 per nanosecond. An upper bound (the band and masks skip tiles);
    /// 0 when the batch is invalid, an error the call reports at once.
    pub fn work(&self) -> u128 {
        let scores: u128 = match self.sequences() {
            Ok(seqs) => seqs.iter().map(|s| s.len_q as u128 * s.len_k as u128).sum(),
            Err(_) => 0,
        };
        scores * self.heads_q as u128 * (self.dim_qk + self.dim_v + 32) as u128 / 32
    }

    /// Checks every argument against the tensors and that their values are
    /// finite; returns the sequences.
    pub(crate) fn validate(&self, q: &[T], k: &[T], v: &[T]) -> Result<Vec<Sequence>> {
        let seqs = self.validate_shapes([q.len(), k.len(), v.len()])?;
        for (name, data) in [("query", q), ("key", k), ("value", v)] {
            // The tile max skips NaN, so a NaN key would be silently ignored.
            self.named(check_all_finite("", name, data))?;
        }
        Ok(seqs)
    }

    /// Checks every argument against the lengths of the query, key and value;
    /// returns the sequences.
    pub(crate) fn validate_shapes(&self, lengths: [usize; 3]) -> Result<Vec<Sequence>> {
        let f = || self.function.clone();
        // `is_multiple_of(0)` holds only for 0: no key heads fit only no query heads.
        ensure!(
            self.heads_q.is_multiple_of(self.heads_kv),
            FerropsError::value(
                f(),
                "key",
                format!("a number of heads dividing the query's {} heads (ATT-GQA)", self.heads_q),
                format!("{} heads", self.heads_kv),
            )
        );
        ensure!(
            self.scale.is_finite(),
            FerropsError::value(f(), "scale", "a finite number", format!("{}", self.scale))
        );
        ensure!(
            self.softcap.is_finite() && self.softcap >= 0.0,
            FerropsError::value(f(), "softcap", "a finite number >= 0", format!("{}", self.softcap))
        );
        let seqs = self.sequences()?;
        let (total_q, total_k) = self.total_rows()?;
        for (name, length, rows, heads, dim) in [
            ("query", lengths[0], total_q, self.heads_q, self.dim_qk),
            ("key", lengths[1], total_k, self.heads_kv, self.dim_qk),
            ("value", lengths[2], total_k, self.heads_kv, self.dim_v),
        ] {
            ensure!(
                length == rows * heads * dim,
                FerropsError::value(
                    f(),
                    name,
                    format!("{} elements ({rows} rows x {heads} heads x {dim})", rows * heads * dim),
                    format!("{length}"),
                )
            );
        }
        if let Some(slopes) = self.alibi_slopes {
            let per_sequence = seqs.len() * self.heads_q;
            ensure!(
                slopes.len() == self.heads_q || slopes.len() == per_sequence,
                FerropsError::value(
                    f(),
                    "alibi_slopes",
                    format!("{} slopes (one per head) or {per_sequence} (per sequence and head)", self.heads_q),
                    format!("{}", slopes.len()),
                )
            );
            if let Some(bad) = slopes.iter().find(|s| !s.is_finite()) {
                return Err(FerropsError::value(f(), "alibi_slopes", "finite slopes", format!("{bad}")));
            }
        }
        if let Some(mask) = &self.mask {
            let len = match mask.values {
                MaskValues::Bool(b) => b.len(),
                MaskValues::Additive(a) => a.len(),
            };
            ensure!(
                mask.offsets.len() == seqs.len() * self.heads_q,
                FerropsError::value(
                    f(),
                    "attn_mask",
                    format!("{} offsets (one per batch entry and head)", seqs.len() * self.heads_q),
                    format!("{}", mask.offsets.len()),
                )
            );
            for (i, &offset) in mask.offsets.iter().enumerate() {
                let s = seqs[i / self.heads_q.max(1)];
                if s.len_q == 0 || s.len_k == 0 {
                    continue;
                }
                let last = offset + (s.len_q - 1) * mask.row_stride + (s.len_k - 1) * mask.col_stride;
                ensure!(
                    last < len,
                    FerropsError::value(
                        f(),
                        "attn_mask",
                        format!("a view inside its {len} values"),
                        format!("an element at offset {last}")
                    )
                );
            }
        }
        Ok(seqs)
    }

    /// Element offset of row `i` of head `h` of a tensor whose sequence starts at
    /// token `row0` and has `len` rows.
    #[inline]
    pub(crate) fn row_offset(&self, row0: usize, len: usize, heads: usize, h: usize, i: usize, dim: usize) -> usize {
        match self.layout {
            Layout::HeadMajor => (row0 * heads + h * len + i) * dim,
            Layout::TokenMajor => ((row0 + i) * heads + h) * dim,
        }
    }

    /// Elements between consecutive rows of one head of a tensor with `heads`
    /// heads of `dim` values.
    #[inline]
    pub(crate) fn row_stride(&self, heads: usize, dim: usize) -> usize {
        match self.layout {
            Layout::HeadMajor => dim,
            Layout::TokenMajor => heads * dim,
        }
    }

    /// What queries are multiplied by before the scores: the scale folded with
    /// `log2(e)` (scores come out base-2), or only the scale when softcap must see
    /// natural-unit scores first.
    pub(crate) fn score_factor(&self) -> T {
        T::from_f64(if self.softcap > 0.0 { self.scale } else { self.scale * std::f64::consts::LOG2_E })
    }

    /// `result` of a shared check that names a `&'static str` function (`finite.rs`
    /// takes no run-time name), with this call's public function put in its place.
    pub(crate) fn named(&self, result: Result<()>) -> Result<()> {
        result.map_err(|error| match error {
            FerropsError::InvalidValue { argument, expected, got, .. } => {
                FerropsError::InvalidValue { function: self.function.clone(), argument, expected, got }
            }
            other => other,
        })
    }

    pub(crate) fn alibi_slope(&self, seq: usize, h: usize) -> Option<f64> {
        self.alibi_slopes.map(|s| if s.len() == self.heads_q { s[h] } else { s[seq * self.heads_q + h] })
    }
}

/// The validated starts of `cu_seqlens` as offsets: starts at 0, non-decreasing.
fn starts(function: &Name, argument: &'static str, cu: &[i32]) -> Result<Vec<usize>> {
    ensure!(
        !cu.is_empty(),
        FerropsError::value(function.clone(), argument, "at least one entry (0)", "an empty array")
    );
    ensure!(cu[0] == 0, FerropsError::value(function.clone(), argument, "a first entry of 0", format!("{}", cu[0])));
    if let Some(i) = cu.windows(2).position(|w| w[1] < w[0]) {
        return Err(FerropsError::value(
            function.clone(),
            argument,
            "non-decreasing offsets",
            format!("{} after {} at index {}", cu[i + 1], cu[i], i + 1),
        ));
    }
    Ok(cu.iter().map(|&c| c as usize).collect())
}

/// The band of keys query `i` may see: `[lo, hi)`, empty when `lo >= hi`.
#[inline]
pub(crate) fn key_range(
    i: usize,
    offset: i64,
    len_k: usize,
    left: Option<usize>,
    right: Option<usize>,
) -> (usize, usize) {
    let pos = i as i64 + offset;
    let lo = left.map_or(0, |w| (pos - w as i64).max(0) as usize).min(len_k);
    let hi = right.map_or(len_k as i64, |w| (pos + w as i64 + 1).clamp(0, len_k as i64)) as usize;
    (lo, hi.max(lo))
}

#[cfg(test)]
mod decode_tests;
#[cfg(test)]
mod tests;
