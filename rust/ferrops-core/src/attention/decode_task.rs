//! One split-KV task of `decode.rs`: the partial result of one (sequence, query
//! tile) over one chunk of cache positions, and the merge of a unit's partials.
//!
//! A task computes the whole chunk's scores first (`rows x chunk`, in L2), takes
//! each row's maximum, exponentiates with the shared `exp2_shifted` kernel and
//! then accumulates the values: the chunk's keys are read once, in position
//! order, then its values. Its partial result, per row: the unnormalised output
//! (`dim_v` floats), the base-2 maximum `m` and the sum `l` of `2^(s - m)`.

use super::decode::{CacheValues, KvCacheAttention, Unit};
use super::tile::{round_up, AttnFloat};
use crate::buffer;
use crate::error::Result;
#[cfg(target_arch = "x86_64")]
use super::kernels::avx512;
#[cfg(target_arch = "x86_64")]
use crate::simd::SimdLevel;
use crate::simd::{self, SimdKernel};

/// Cache positions prefetched ahead of the one being read.
const PREFETCH_AHEAD: usize = 4;

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
    simd::dispatch(Chunk { att, unit, lo, hi, ldz, bands: &bands, q, keys, values, z: &mut z, scratch: &mut scratch, partial });
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
        #[cfg(target_arch = "x86_64")]
        let vectorised = simd::supports(SimdLevel::Avx512);
        #[cfg(not(target_arch = "x86_64"))]
        let vectorised = false;
        let row_elems = att.heads_kv * dk;
        for j in lo..hi {
            if j + PREFETCH_AHEAD < hi {
                prefetch(&keys, att.cache_row(unit.seq, unit.key_start + j + PREFETCH_AHEAD) * dk, row_elems);
            }
            let at = att.cache_row(unit.seq, unit.key_start + j) * dk;
            #[cfg(target_arch = "x86_64")]
            if vectorised {
                let (base, size, format) = raw(&keys, at, row_elems);
                for g in 0..att.heads_kv {
                    for i in 0..unit.positions {
                        let r0 = i * hq + g * group;
                        // SAFETY: AVX-512 is active; `raw` checked the row's `row_elems`
                        // elements; the `group` query rows and score cells are inside
                        // `queries` and `z`.
                        unsafe {
                            let (key, q_rows, out) = (base.add(g * dk * size), queries.as_ptr().add(r0 * dk), z.as_mut_ptr().add(r0 * ldz + j - lo));
                            match format {
                                avx512::FORMAT_F32 => avx512::dot_rows::<{ avx512::FORMAT_F32 }>(key, dk, q_rows, dk, group, out, ldz),
                                avx512::FORMAT_BF16 => avx512::dot_rows::<{ avx512::FORMAT_BF16 }>(key, dk, q_rows, dk, group, out, ldz),
                                _ => avx512::dot_rows::<{ avx512::FORMAT_F16 }>(key, dk, q_rows, dk, group, out, ldz),
                            }
                        }
                    }
                }
                continue;
            }
            let key_row = widened(&keys, at, row_elems, scratch);
            for g in 0..att.heads_kv {
                let k = &key_row[g * dk..(g + 1) * dk];
                for i in 0..unit.positions {
                    for h in g * group..(g + 1) * group {
                        let r = i * hq + h;
                        z[r * ldz + j - lo] = f32::dot(&queries[r * dk..(r + 1) * dk], k);
                    }
                }
            }
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
        let row_elems = att.heads_kv * dv;
        for j in lo..hi {
            if j + PREFETCH_AHEAD < hi {
                prefetch(&values, att.cache_row(unit.seq, unit.key_start + j + PREFETCH_AHEAD) * dv, row_elems);
            }
            let at = att.cache_row(unit.seq, unit.key_start + j) * dv;
            #[cfg(target_arch = "x86_64")]
            if vectorised {
                let (base, size, format) = raw(&values, at, row_elems);
                for g in 0..att.heads_kv {
                    for i in 0..unit.positions {
                        let r0 = i * hq + g * group;
                        // SAFETY: as for the keys; the `group` output rows are inside
                        // `partial` (`rows x stride`), their probabilities inside `z`.
                        unsafe {
                            let (value, p, o) = (base.add(g * dv * size), z.as_ptr().add(r0 * ldz + j - lo), partial.as_mut_ptr().add(r0 * stride));
                            match format {
                                avx512::FORMAT_F32 => avx512::accumulate_rows::<{ avx512::FORMAT_F32 }>(value, dv, p, ldz, group, o, stride),
                                avx512::FORMAT_BF16 => avx512::accumulate_rows::<{ avx512::FORMAT_BF16 }>(value, dv, p, ldz, group, o, stride),
                                _ => avx512::accumulate_rows::<{ avx512::FORMAT_F16 }>(value, dv, p, ldz, group, o, stride),
                            }
                        }
                    }
                }
                continue;
            }
            let value_row = widened(&values, at, row_elems, scratch);
            for g in 0..att.heads_kv {
                let v = &value_row[g * dv..(g + 1) * dv];
                for i in 0..unit.positions {
                    for h in g * group..(g + 1) * group {
                        let r = i * hq + h;
                        let p = z[r * ldz + j - lo];
                        if p != 0.0 {
                            for (o, &x) in partial[r * stride..r * stride + dv].iter_mut().zip(v) {
                                *o += p * x;
                            }
                        }
                    }
                }
            }
        }
        for (r, &m) in maxima.iter().enumerate() {
            partial[r * stride + dv] = m;
            partial[r * stride + dv + 1] = z[r * ldz..r * ldz + hi - lo].iter().sum();
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

/// Asks for the `len` elements at `at` to be brought into the cache.
#[inline(always)]
fn prefetch(cache: &CacheValues, at: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let (start, bytes) = match cache {
            CacheValues::F32(v) => (v[at..at + len].as_ptr() as *const i8, len * 4),
            CacheValues::Bf16(v) | CacheValues::F16(v) => (v[at..at + len].as_ptr() as *const i8, len * 2),
        };
        for line in (0..bytes).step_by(64) {
            // SAFETY: a prefetch is a hint that never faults; the address is
            // inside the slice (`line < bytes`). SSE is part of x86-64.
            #[allow(unused_unsafe)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(start.add(line))
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (cache, at, len);
}
