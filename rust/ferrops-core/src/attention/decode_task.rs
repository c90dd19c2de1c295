//! One split-KV task of `decode.rs`: the partial result of one (sequence, query
//! tile) over one chunk of cache positions, and the merge of a unit's partials.
//!
//! A task computes the whole chunk's scores first (`rows x chunk`, in L2), takes
//! each row's maximum, exponentiates with the shared `exp2_shifted` kernel and
//! then accumulates the values: the chunk's keys are read once, in position
//! order, then its values. Its partial result, per row: the unnormalised output
//! (`dim_v` floats), the base-2 maximum `m` and the sum `l` of `2^(s - m)`.

use super::decode::{CacheValues, KvCacheAttention, Unit};
#[cfg(target_arch = "x86_64")]
use super::kernels::avx512;
use super::tile::{round_up, AttnFloat};
use crate::buffer;
use crate::error::Result;
#[cfg(target_arch = "x86_64")]
use crate::simd::SimdLevel;
use crate::simd::{self, SimdKernel};

/// Cache positions looked at ahead of the one being read, for prefetching.
const PREFETCH_AHEAD: usize = 16;

/// One task: a unit of the wave and a chunk of its keys.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Task {
    pub unit: usize,
    pub chunk: usize,
}

/// Runs one task into `partial` (`rows x (dim_v + 2)` floats, zeroed).
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_task(
    att: &KvCacheAttention,
    unit: &Unit,
    chunk: usize,
    q: &[f32],
    keys: CacheValues,
    values: CacheValues,
    partial: &mut [f32],
) -> Result<()> {
    let chunk_len = att.chunk_len(unit.len_k);
    let c0 = chunk * chunk_len;
    let c1 = (c0 + chunk_len).min(unit.len_k);
    let rows = unit.positions * att.heads_q;
    let stride = att.dim_v + 2;
    // Each query position's band, clipped to the chunk; the chunk's keys that any
    // row sees are `[lo, hi)`.
    let bands: Vec<(usize, usize)> = (0..unit.positions)
        .map(|i| {
            let (lo, hi) = att.band(unit.i0 + i, unit.len_k);
            (lo.max(c0), hi.min(c1))
        })
        .collect();
    let lo = bands.iter().filter(|b| b.0 < b.1).map(|b| b.0).min().unwrap_or(c1);
    let hi = bands.iter().filter(|b| b.0 < b.1).map(|b| b.1).max().unwrap_or(c0);
    for r in 0..rows {
        partial[r * stride + att.dim_v] = f32::NEG_INFINITY;
    }
    if lo >= hi {
        return Ok(());
    }
    let ldz = round_up(hi - lo, 8);
    let mut z = buffer::try_from_elem(att.function.clone(), "scores", &[rows, ldz], f32::NEG_INFINITY)?;
    let mut scratch = buffer::try_zeroed::<f32>(
        att.function.clone(),
        "a widened cache row",
        &[att.heads_kv, att.dim_qk.max(att.dim_v)],
    )?;
    simd::dispatch(Chunk {
        att,
        unit,
        lo,
        hi,
        ldz,
        bands: &bands,
        q,
        keys,
        values,
        z: &mut z,
        scratch: &mut scratch,
        partial,
    });
    Ok(())
}

struct Chunk<'a, 'b> {
    att: &'a KvCacheAttention<'b>,
    unit: &'a Unit,
    lo: usize,
    hi: usize,
    ldz: usize,
    bands: &'a [(usize, usize)],
    q: &'a [f32],
    keys: CacheValues<'a>,
    values: CacheValues<'a>,
    z: &'a mut [f32],
    scratch: &'a mut [f32],
    partial: &'a mut [f32],
}

impl SimdKernel for Chunk<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let Chunk { att, unit, lo, hi, ldz, bands, q, keys, values, z, scratch, partial } = self;
        let (hq, dk, dv) = (att.heads_q, att.dim_qk, att.dim_v);
        let group = hq / att.heads_kv;
        let rows = unit.positions * hq;
        let stride = dv + 2;
        // Queries times the score factor: base-2 scores, or natural ones where
        // softcap must see them first.
        let factor = if att.softcap > 0.0 { att.scale } else { att.scale * std::f64::consts::LOG2_E } as f32;
        let q_first = (unit.seq * att.len_q + unit.i0) * hq * dk;
        let queries: Vec<f32> = q[q_first..q_first + rows * dk].iter().map(|&x| x * factor).collect();
        let shape = Shape { group, rows: unit.positions, hq, ldz, stride, lo };
        #[cfg(target_arch = "x86_64")]
        let vectorised = simd::supports(SimdLevel::Avx512);
        #[cfg(not(target_arch = "x86_64"))]
        let vectorised = false;
        let rows_of = |j: usize| att.cache_row(unit.seq, unit.key_start + j);
        if vectorised {
            #[cfg(target_arch = "x86_64")]
            positions_avx512(att, &shape, lo..hi, &rows_of, &keys, dk, |key, n, col, r0| {
                // SAFETY: AVX-512 is active; `positions_avx512` bounds-checked the
                // cache rows; the query rows `r0..r0 + group` and their `n` score
                // cells from `j - lo` are inside `queries` and `z`.
                unsafe {
                    let out = z.as_mut_ptr().add(r0 * ldz + col);
                    let q_rows = queries.as_ptr().add(r0 * dk);
                    match key.1 {
                        avx512::FORMAT_F32 => {
                            avx512::dot_positions::<{ avx512::FORMAT_F32 }>(key.0, n, dk, q_rows, dk, group, out, ldz)
                        }
                        avx512::FORMAT_BF16 => {
                            avx512::dot_positions::<{ avx512::FORMAT_BF16 }>(key.0, n, dk, q_rows, dk, group, out, ldz)
                        }
                        _ => avx512::dot_positions::<{ avx512::FORMAT_F16 }>(key.0, n, dk, q_rows, dk, group, out, ldz),
                    }
                }
            });
        } else {
            portable_scores(att, &shape, lo..hi, &rows_of, &keys, &queries, dk, scratch, z);
        }
        adjust_scores(att, unit, lo, hi, ldz, bands, z);
        let mut maxima = vec![f32::NEG_INFINITY; rows];
        for (r, m) in maxima.iter_mut().enumerate() {
            // `>` skips NaN: a NaN score is exponentiated (NaN) below, not hidden.
            for &s in &z[r * ldz..r * ldz + hi - lo] {
                if s > *m {
                    *m = s;
                }
            }
        }
        f32::exp2_shifted(rows, ldz, z, ldz, &maxima);
        if vectorised {
            #[cfg(target_arch = "x86_64")]
            positions_avx512(att, &shape, lo..hi, &rows_of, &values, dv, |value, n, col, r0| {
                // SAFETY: as for the keys; the `group` output rows from `r0` are inside
                // `partial` (`rows x stride`), their `n` probabilities inside `z`.
                unsafe {
                    let (p, o) = (z.as_ptr().add(r0 * ldz + col), partial.as_mut_ptr().add(r0 * stride));
                    match value.1 {
                        avx512::FORMAT_F32 => avx512::accumulate_positions::<{ avx512::FORMAT_F32 }>(
                            value.0, n, dv, p, ldz, group, o, stride,
                        ),
                        avx512::FORMAT_BF16 => avx512::accumulate_positions::<{ avx512::FORMAT_BF16 }>(
                            value.0, n, dv, p, ldz, group, o, stride,
                        ),
                        _ => avx512::accumulate_positions::<{ avx512::FORMAT_F16 }>(
                            value.0, n, dv, p, ldz, group, o, stride,
                        ),
                    }
                }
            });
        } else {
            portable_values(att, &shape, lo..hi, &rows_of, &values, dv, z, scratch, partial);
        }
        for (r, &m) in maxima.iter().enumerate() {
            partial[r * stride + dv] = m;
            partial[r * stride + dv + 1] = z[r * ldz..r * ldz + hi - lo].iter().sum();
        }
    }
}

/// Where a task's rows live: query rows `i * hq + g * group ..` of position `i`
/// and key head `g`; scores `ldz` apart from key `lo`; partial rows `stride` apart.
struct Shape {
    group: usize,
    rows: usize,
    hq: usize,
    ldz: usize,
    stride: usize,
    lo: usize,
}

/// Calls `each((cache rows, format), n, col, r0)` for every run of up to
/// [`avx512::POSITIONS`] positions from `range`, every key head and query
/// position: the head's rows at those `n` positions (each bounds-checked whole),
/// the positions' first score column `col` and the group's first query row `r0`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn positions_avx512(
    att: &KvCacheAttention,
    shape: &Shape,
    range: std::ops::Range<usize>,
    rows_of: &impl Fn(usize) -> usize,
    cache: &CacheValues,
    dim: usize,
    mut each: impl FnMut(([*const u8; avx512::POSITIONS], u8), usize, usize, usize),
) {
    let row_elems = att.heads_kv * dim;
    let mut j = range.start;
    while j < range.end {
        let n = (range.end - j).min(avx512::POSITIONS);
        // Into L2, 16 positions ahead: that measured faster than no prefetch
        // (bfloat16 by 15%) and than prefetching into L1, whose prefetches wait
        // for the fill buffers the loads need.
        for t in j + PREFETCH_AHEAD..(j + n + PREFETCH_AHEAD).min(range.end) {
            prefetch(cache, rows_of(t) * dim, row_elems);
        }
        let mut rows = [(std::ptr::null(), 0, 0); avx512::POSITIONS];
        for (t, row) in rows.iter_mut().enumerate() {
            // Unused slots repeat the last position: read, never stored.
            *row = raw(cache, rows_of(j + t.min(n - 1)) * dim, row_elems);
        }
        let (size, format) = (rows[0].1, rows[0].2);
        for g in 0..att.heads_kv {
            let mut heads = [std::ptr::null(); avx512::POSITIONS];
            for (head, row) in heads.iter_mut().zip(rows) {
                // SAFETY: `g * dim + dim <= row_elems`, inside each checked row.
                *head = unsafe { row.0.add(g * dim * size) };
            }
            for i in 0..shape.rows {
                each((heads, format), n, j - shape.lo, i * shape.hq + g * shape.group);
            }
        }
        j += n;
    }
}

/// The scores of keys `range` for the portable path: each cache row widened to
/// float32, one dot product per query row.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn portable_scores(
    att: &KvCacheAttention,
    shape: &Shape,
    range: std::ops::Range<usize>,
    rows_of: &impl Fn(usize) -> usize,
    keys: &CacheValues,
    queries: &[f32],
    dk: usize,
    scratch: &mut [f32],
    z: &mut [f32],
) {
    let row_elems = att.heads_kv * dk;
    for j in range {
        let key_row = widened(keys, rows_of(j) * dk, row_elems, scratch);
        for g in 0..att.heads_kv {
            let k = &key_row[g * dk..(g + 1) * dk];
            for i in 0..shape.rows {
                for r in i * shape.hq + g * shape.group..i * shape.hq + (g + 1) * shape.group {
                    z[r * shape.ldz + j - shape.lo] = f32::dot(&queries[r * dk..(r + 1) * dk], k);
                }
            }
        }
    }
}

/// The probability-weighted values of keys `range` for the portable path.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn portable_values(
    att: &KvCacheAttention,
    shape: &Shape,
    range: std::ops::Range<usize>,
    rows_of: &impl Fn(usize) -> usize,
    values: &CacheValues,
    dv: usize,
    z: &[f32],
    scratch: &mut [f32],
    partial: &mut [f32],
) {
    let row_elems = att.heads_kv * dv;
    for j in range {
        let value_row = widened(values, rows_of(j) * dv, row_elems, scratch);
        for g in 0..att.heads_kv {
            let v = &value_row[g * dv..(g + 1) * dv];
            for i in 0..shape.rows {
                for r in i * shape.hq + g * shape.group..i * shape.hq + (g + 1) * shape.group {
                    let p = z[r * shape.ldz + j - shape.lo];
                    if p != 0.0 {
                        for (o, &x) in partial[r * shape.stride..r * shape.stride + dv].iter_mut().zip(v) {
                            *o += p * x;
                        }
                    }
                }
            }
        }
    }
}

/// Applies the band, the tree mask, softcap and ALiBi to the scores of keys
/// `[lo, hi)` (relative to the sequence's first key), leaving base-2 scores and
/// -inf where a row may not look.
#[inline(always)]
fn adjust_scores(
    att: &KvCacheAttention,
    unit: &Unit,
    lo: usize,
    hi: usize,
    ldz: usize,
    bands: &[(usize, usize)],
    z: &mut [f32],
) {
    let log2e = std::f64::consts::LOG2_E;
    let plain = att.softcap == 0.0 && att.alibi_slopes.is_none() && att.tree_mask.is_none();
    for (i, &(b_lo, b_hi)) in bands.iter().enumerate() {
        if plain && b_lo <= lo && b_hi >= hi {
            continue;
        }
        let position = (unit.i0 + i) as i64 + unit.len_k as i64 - att.len_q as i64;
        for h in 0..att.heads_q {
            let r = i * att.heads_q + h;
            let slope = att.alibi_slope(unit.seq, h);
            let row = &mut z[r * ldz..r * ldz + hi - lo];
            for (c, s) in row.iter_mut().enumerate() {
                let j = lo + c;
                if j < b_lo || j >= b_hi || !att.tree_allows(unit.seq, unit.i0 + i, j, unit.len_k) {
                    *s = f32::NEG_INFINITY;
                    continue;
                }
                if plain {
                    continue;
                }
                let mut score = *s as f64;
                if att.softcap > 0.0 {
                    score = att.softcap * (score / att.softcap).tanh() * log2e;
                }
                if let Some(slope) = slope {
                    score -= slope * (position - j as i64).abs() as f64 * log2e;
                }
                *s = score as f32;
            }
        }
    }
}

/// Merges a unit's partials (`chunks x slot` floats, chunk order) into its rows
/// of `out` (`rows x dim_v`) and `lse` (natural log; -inf where no key is seen).
pub(crate) fn merge_rows(att: &KvCacheAttention, partials: &[f32], slot: usize, out: &mut [f32], lse: &mut [f32]) {
    let dv = att.dim_v;
    let stride = dv + 2;
    let chunks = partials.len() / slot.max(1);
    for (r, (o, lse_r)) in out.chunks_mut(dv.max(1)).zip(lse.iter_mut()).enumerate() {
        let part = |c: usize| &partials[c * slot + r * stride..c * slot + (r + 1) * stride];
        let m = (0..chunks).map(|c| part(c)[dv]).fold(f32::NEG_INFINITY, f32::max);
        if m == f32::NEG_INFINITY {
            continue;
        }
        let mut l = 0.0f32;
        for c in 0..chunks {
            let p = part(c);
            // exp2(-inf) is 0: a chunk this row saw nothing of adds nothing.
            let w = (p[dv] - m).exp2();
            l += p[dv + 1] * w;
            for (o, &x) in o.iter_mut().zip(&p[..dv]) {
                *o += x * w;
            }
        }
        for o in o.iter_mut() {
            *o /= l;
        }
        *lse_r = (m + l.log2()) * std::f32::consts::LN_2;
    }
}

/// The `len` elements at `at` as float32: the cache itself, or widened into
/// `scratch`.
#[inline(always)]
fn widened<'a>(cache: &'a CacheValues, at: usize, len: usize, scratch: &'a mut [f32]) -> &'a [f32] {
    match cache {
        CacheValues::F32(v) => &v[at..at + len],
        CacheValues::Bf16(v) => {
            for (d, &s) in scratch[..len].iter_mut().zip(&v[at..at + len]) {
                *d = f32::from_bits((s as u32) << 16);
            }
            &scratch[..len]
        }
        CacheValues::F16(v) => {
            for (d, &s) in scratch[..len].iter_mut().zip(&v[at..at + len]) {
                *d = f16_to_f32(s);
            }
            &scratch[..len]
        }
    }
}

/// IEEE half precision to float32, exactly (every half is a float32).
#[inline(always)]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exponent = ((h >> 10) & 0x1f) as u32;
    let mantissa = (h & 0x3ff) as u32;
    let magnitude = match exponent {
        // Zero and subnormals: mantissa x 2^-24, exact in float32.
        0 => (mantissa as f32 * (1.0 / 16_777_216.0)).to_bits(),
        0x1f => 0x7f80_0000 | (mantissa << 13),
        _ => ((exponent + 112) << 23) | (mantissa << 13),
    };
    f32::from_bits(sign | magnitude)
}

/// The start of the `len` elements at `at` (bounds-checked here), the bytes of
/// one element and the cache's format, for the AVX-512 kernels.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn raw(cache: &CacheValues, at: usize, len: usize) -> (*const u8, usize, u8) {
    match cache {
        CacheValues::F32(v) => (v[at..at + len].as_ptr() as *const u8, 4, avx512::FORMAT_F32),
        CacheValues::Bf16(v) => (v[at..at + len].as_ptr() as *const u8, 2, avx512::FORMAT_BF16),
        CacheValues::F16(v) => (v[at..at + len].as_ptr() as *const u8, 2, avx512::FORMAT_F16),
    }
}

/// Asks for the `len` elements at `at` to be brought into the L2 cache.
#[inline(always)]
fn prefetch(cache: &CacheValues, at: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        let (start, bytes) = match cache {
            CacheValues::F32(v) => (v[at..at + len].as_ptr() as *const i8, len * 4),
            CacheValues::Bf16(v) | CacheValues::F16(v) => (v[at..at + len].as_ptr() as *const i8, len * 2),
        };
        for line in (0..bytes).step_by(64) {
            // SAFETY: a prefetch is a hint that never faults; the address is
            // inside the slice (`line < bytes`). SSE is part of x86-64.
            #[allow(unused_unsafe)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T1>(start.add(line))
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (cache, at, len);
}
