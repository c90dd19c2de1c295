//! One split-KV task of `decode.rs`: the partial result of one (sequence, query
//! tile) over one chunk of cache positions, and the merge of a unit's partials.
//!
//! A task computes the whole chunk's scores first (`rows x chunk`, in L2), takes
//! each row's maximum (one per chunk, not one per position), exponentiates the
//! block with the shared vectorised `exp2_shifted` kernel and then accumulates the
//! values: the chunk's keys are read once, in position order, then its values. Its partial result, per row: the unnormalised output
//! (`dim_v` floats), the base-2 maximum `m` and the sum `l` of `2^(s - m)`.

#[cfg(target_arch = "x86_64")]
use super::bf16;
use super::decode::{CacheValues, KvCacheAttention, Unit};
#[cfg(target_arch = "x86_64")]
use super::kernels::{avx2_decode, avx512_decode, Walk};
use super::tile::{round_up, AttnFloat};
use crate::buffer;
use crate::error::Result;
#[cfg(target_arch = "x86_64")]
use crate::simd::SimdLevel;
use crate::simd::{self, SimdKernel};

/// Cache positions between the rows being read and the rows prefetched
/// (`kernels::Walk::prefetch_head`), for 4-byte and for 2-byte elements: far
/// enough for the misses to land in time, near enough not to queue behind each
/// other (Zen 4, issue 18's shape, CPU time: 8 float32 positions took 1.07x less
/// than 4; 4 bfloat16 ones 1.1x less than 8 at B = 1, the same at B = 8).
const PREFETCH_AHEAD: [usize; 2] = [8, 4];

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
        let rows_total = unit.positions * hq;
        let stride = dv + 2;
        // The score factor: base-2 scores, or natural ones where softcap must see
        // them first. The queries are scaled by it, or the sums where the scores
        // run on bfloat16 dot products (whose queries must stay bfloat16).
        let factor = if att.softcap > 0.0 { att.scale } else { att.scale * std::f64::consts::LOG2_E } as f32;
        let q_first = (unit.seq * att.len_q + unit.i0) * hq * dk;
        let query_rows = &q[q_first..q_first + rows_total * dk];
        let scaled = || -> Vec<f32> { query_rows.iter().map(|&x| x * factor).collect() };
        let shape = Shape { group, rows: unit.positions, hq, ldz, stride, lo };
        let rows_of = |j: usize| att.cache_row(unit.seq, unit.key_start + j);
        #[cfg(target_arch = "x86_64")]
        if let Some(kernels) = Kernels::for_cache(&keys, dk, dv) {
            let rows: Vec<usize> = (lo..hi).map(rows_of).collect();
            let walk = |cache: &CacheValues, dim: usize| {
                let (start, len) = raw(cache);
                // Every row inside the cache: the kernels read without checks.
                let last = rows.iter().max().map_or(0, |&r| (r + att.heads_kv) * dim);
                assert!(last <= len, "cache rows checked by validate");
                Walk {
                    cache: start,
                    rows: &rows,
                    heads_kv: att.heads_kv,
                    dim,
                    group,
                    query_positions: unit.positions,
                    heads_q: hq,
                    ahead: if matches!(cache, CacheValues::F32(_)) { PREFETCH_AHEAD[0] } else { PREFETCH_AHEAD[1] },
                }
            };
            if let Some(query_bits) = bf16_dot_queries(kernels, &keys, dk, query_rows) {
                // SAFETY: `bf16_dot_queries` checked the instruction set, the cache
                // and the width; the walk's rows are inside the cache;
                // `query_bits` holds the task's `rows_total x dk` and `z` their
                // `hi - lo` columns `ldz` apart.
                unsafe {
                    avx512_decode::scores_bf16_dot(&walk(&keys, dk), query_bits.as_ptr(), z.as_mut_ptr(), ldz, factor)
                };
            } else {
                let key_format = kernels.format(&keys, dk);
                let queries = if kernels == Kernels::Avx512 && key_format == avx512_decode::FORMAT_BF16_PAIRS {
                    in_pair_order(&scaled(), dk)
                } else {
                    scaled()
                };
                // SAFETY: `for_cache` checked the instruction set and the widths;
                // the walk's rows are inside the cache; `queries` holds the task's
                // `rows_total x dk` and `z` their `hi - lo` columns `ldz` apart.
                unsafe { kernels.scores(key_format, &walk(&keys, dk), queries.as_ptr(), z.as_mut_ptr(), ldz) };
            }
            adjust_scores(att, unit, lo, hi, ldz, bands, z);
            let maxima: Vec<f32> = (0..rows_total).map(|r| kernels.row_max(&z[r * ldz..r * ldz + hi - lo])).collect();
            f32::exp2_shifted(rows_total, ldz, z, ldz, &maxima);
            let value_format = kernels.format(&values, dv);
            // SAFETY: as for the keys; `partial` holds the rows' `dv` outputs
            // `stride` apart.
            unsafe {
                kernels.accumulate(value_format, &walk(&values, dv), z.as_ptr(), ldz, partial.as_mut_ptr(), stride)
            };
            for (r, row) in partial.chunks_mut(stride).take(rows_total).enumerate() {
                if kernels == Kernels::Avx512 && value_format == avx512_decode::FORMAT_BF16_PAIRS {
                    let paired = row[..dv].to_vec();
                    for (c, x) in row[..dv].iter_mut().enumerate() {
                        *x = paired[avx512_decode::pair_order(c)];
                    }
                }
                row[dv] = maxima[r];
                row[dv + 1] = kernels.row_sum(&z[r * ldz..r * ldz + hi - lo]);
            }
            return;
        }
        portable_scores(att, &shape, lo..hi, &rows_of, &keys, &scaled(), dk, scratch, z);
        adjust_scores(att, unit, lo, hi, ldz, bands, z);
        let mut maxima = vec![f32::NEG_INFINITY; rows_total];
        for (r, m) in maxima.iter_mut().enumerate() {
            // `>` skips NaN: a NaN score is exponentiated (NaN) below, not hidden.
            for &s in &z[r * ldz..r * ldz + hi - lo] {
                if s > *m {
                    *m = s;
                }
            }
        }
        f32::exp2_shifted(rows_total, ldz, z, ldz, &maxima);
        portable_values(att, &shape, lo..hi, &rows_of, &values, dv, z, scratch, partial);
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

/// The vector kernels a task walks its cache with.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernels {
    Avx512,
    Avx2,
}

#[cfg(target_arch = "x86_64")]
impl Kernels {
    /// AVX-512 for every cache; AVX2 for float32 and bfloat16 ones whose head
    /// widths are multiples of 8; none (the portable path) otherwise.
    fn for_cache(cache: &CacheValues, dk: usize, dv: usize) -> Option<Kernels> {
        if simd::supports(SimdLevel::Avx512) {
            return Some(Kernels::Avx512);
        }
        let widened = matches!(cache, CacheValues::F32(_) | CacheValues::Bf16(_));
        (simd::supports(SimdLevel::Avx2) && widened && dk.is_multiple_of(8) && dv.is_multiple_of(8))
            .then_some(Kernels::Avx2)
    }

    /// How the kernels read a cache of `dim`-element heads.
    fn format(self, cache: &CacheValues, dim: usize) -> u8 {
        match (self, cache) {
            (Kernels::Avx512, CacheValues::F32(_)) => avx512_decode::FORMAT_F32,
            (Kernels::Avx512, CacheValues::Bf16(_)) if dim.is_multiple_of(32) => avx512_decode::FORMAT_BF16_PAIRS,
            (Kernels::Avx512, CacheValues::Bf16(_)) => avx512_decode::FORMAT_BF16,
            (Kernels::Avx512, CacheValues::F16(_)) => avx512_decode::FORMAT_F16,
            (Kernels::Avx2, CacheValues::F32(_)) => avx2_decode::FORMAT_F32,
            (Kernels::Avx2, _) => avx2_decode::FORMAT_BF16,
        }
    }

    /// # Safety
    /// As for the kernels' `scores`; `self` from [`Kernels::for_cache`].
    unsafe fn scores(self, format: u8, walk: &Walk, q: *const f32, z: *mut f32, ldz: usize) {
        match self {
            Kernels::Avx512 => avx512_decode::scores(format, walk, q, z, ldz),
            Kernels::Avx2 => avx2_decode::scores(format, walk, q, z, ldz),
        }
    }

    /// # Safety
    /// As for the kernels' `accumulate`; `self` from [`Kernels::for_cache`].
    unsafe fn accumulate(self, format: u8, walk: &Walk, p: *const f32, ldp: usize, o: *mut f32, ldo: usize) {
        match self {
            Kernels::Avx512 => avx512_decode::accumulate(format, walk, p, ldp, o, ldo),
            Kernels::Avx2 => avx2_decode::accumulate(format, walk, p, ldp, o, ldo),
        }
    }

    /// The row's largest score, NaN skipped; -inf for none.
    fn row_max(self, row: &[f32]) -> f32 {
        match self {
            // SAFETY: AVX-512 is available (`for_cache`); `row` holds its floats.
            Kernels::Avx512 => unsafe { avx512_decode::row_max(row.as_ptr(), row.len()) },
            // `>` skips NaN: a NaN score is exponentiated (NaN) later, not hidden.
            Kernels::Avx2 => row.iter().fold(f32::NEG_INFINITY, |m, &s| if s > m { s } else { m }),
        }
    }

    /// The row's sum, in a fixed order.
    fn row_sum(self, row: &[f32]) -> f32 {
        match self {
            // SAFETY: AVX-512 is available (`for_cache`); `row` holds its floats.
            Kernels::Avx512 => unsafe { avx512_decode::row_sum(row.as_ptr(), row.len()) },
            Kernels::Avx2 => row.iter().sum(),
        }
    }
}

/// The task's queries as bfloat16 bits where its scores run on `VDPBF16PS`
/// (`avx512_decode::scores_bf16_dot`): a bfloat16 cache whose key heads are a
/// multiple of 32 wide, the bfloat16 dot products chosen at the AVX-512 level
/// (`bf16::native_dot_products`), and queries that are all bfloat16 values (as a
/// bfloat16 `q` reaches the core), so that every product stays exact.
#[cfg(target_arch = "x86_64")]
fn bf16_dot_queries(kernels: Kernels, keys: &CacheValues, dk: usize, queries: &[f32]) -> Option<Vec<u16>> {
    let usable = kernels == Kernels::Avx512
        && matches!(keys, CacheValues::Bf16(_))
        && dk.is_multiple_of(32)
        && bf16::native_dot_products();
    if !usable || queries.iter().any(|x| x.to_bits() & 0xFFFF != 0) {
        return None;
    }
    Some(queries.iter().map(|x| (x.to_bits() >> 16) as u16).collect())
}

/// `rows` (rows of `dim` floats) with each row in [`avx512_decode::pair_order`].
#[cfg(target_arch = "x86_64")]
fn in_pair_order(rows: &[f32], dim: usize) -> Vec<f32> {
    let mut paired = vec![0.0; rows.len()];
    for (from, to) in rows.chunks(dim).zip(paired.chunks_mut(dim)) {
        for (c, &x) in from.iter().enumerate() {
            to[avx512_decode::pair_order(c)] = x;
        }
    }
    paired
}

/// The cache's first byte and its elements.
#[cfg(target_arch = "x86_64")]
fn raw(cache: &CacheValues) -> (*const u8, usize) {
    match cache {
        CacheValues::F32(v) => (v.as_ptr() as *const u8, v.len()),
        CacheValues::Bf16(v) | CacheValues::F16(v) => (v.as_ptr() as *const u8, v.len()),
    }
}
