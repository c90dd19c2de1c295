//! The decoding kernels of `decode_task.rs` in AVX-512 (F, BW, VL): one call walks
//! all of a task's cache positions, four at a time, for every key head and every
//! query row of its group, so nothing is looked up or dispatched per position.
//!
//! Decoding does `Hq / Hkv` multiply-adds per cache value read (4 in issue 18's
//! model), so it is bound by how fast the cache streams in, and the loops below
//! are shaped for that: the four positions' rows are read side by side (each key
//! head's slice of them once, for all the query rows of its group), the scores'
//! sums are reduced four at a time by one transposing reduction, and the values'
//! weights are broadcast once per four positions and held in registers while the
//! output rows stream through.
//!
//! A bfloat16 cache's scores against bfloat16 queries run on AVX-512 BF16's
//! `VDPBF16PS` where `bf16::native_dot_products` says so ([`scores_bf16_dot`]):
//! the keys go in as they are, a pair of products per 32-bit lane, so one
//! instruction does the work of two FMAs and the widening. Both factors are
//! bfloat16, so each product is exact in float32 and the sums are float32, as
//! widened; the instruction reads subnormal inputs as 0 (below 2^-126 in
//! magnitude, far under any score's rounding unless the other factor is huge).

// The kernels use index loops, never iterator adapters or closures: those need
// not be inlined into the target-feature functions, and where they are not, the
// vectors go through the stack (measured 4x slower).
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::{offset, Walk, POSITIONS};
use crate::simd::{avx512_bf16_fn, avx512_fn};

/// Cache element formats: float32, bfloat16 bits, float16 bits.
pub const FORMAT_F32: u8 = 0;
pub const FORMAT_BF16: u8 = 1;
pub const FORMAT_F16: u8 = 2;
/// bfloat16 bits read in pairs, for a `dim` that is a multiple of 32: a 32-bit
/// lane holds elements `2k` (low half) and `2k + 1` (high half), which a shift and
/// a mask widen into two float32 vectors, cheaper than `VPMOVZXWD` (a cross-lane
/// shuffle) per sixteen. The queries and the outputs are then in [`pair_order`].
pub const FORMAT_BF16_PAIRS: u8 = 3;

/// Where element `c` of a row lies in pair order: each block of 32 holds its even
/// elements, then its odd ones.
#[inline]
pub fn pair_order(c: usize) -> usize {
    c / 32 * 32 + if c.is_multiple_of(2) { c % 32 / 2 } else { 16 + c % 32 / 2 }
}

const ALL: __mmask16 = 0xFFFF;

#[inline(always)]
const fn element_bytes<const FORMAT: u8>() -> usize {
    if FORMAT == FORMAT_F32 {
        4
    } else {
        2
    }
}

/// The mask of the `d - c` (at most 16) lanes left of a row of `d`.
#[inline(always)]
fn tail(d: usize, c: usize) -> __mmask16 {
    if d - c >= 16 {
        ALL
    } else {
        ((1u32 << (d - c)) - 1) as __mmask16
    }
}

/// Elements `index..index + 16` (those under `mask`; 0 elsewhere) of a cache
/// row in `FORMAT`, as float32: bfloat16 is the top half of a float32, float16
/// goes through `VCVTPH2PS`; both exact.
#[inline(always)]
unsafe fn load16<const FORMAT: u8>(row: *const u8, index: usize, mask: __mmask16) -> __m512 {
    match FORMAT {
        FORMAT_F32 => _mm512_maskz_loadu_ps(mask, (row as *const f32).add(index)),
        FORMAT_BF16 => {
            let bits = _mm256_maskz_loadu_epi16(mask, (row as *const i16).add(index));
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(bits)))
        }
        _ => _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, (row as *const i16).add(index))),
    }
}

/// `z[r * ldz + j] = q_r . key_j` for every query row `r` of the walk and every
/// position `j` of it, the cache in `format` (one of the `FORMAT_` constants).
///
/// # Safety
/// As for [`scores_in`].
pub unsafe fn scores(format: u8, walk: &Walk, q: *const f32, z: *mut f32, ldz: usize) {
    match format {
        FORMAT_F32 => scores_in::<FORMAT_F32>(walk, q, z, ldz),
        FORMAT_BF16 => scores_in::<FORMAT_BF16>(walk, q, z, ldz),
        FORMAT_BF16_PAIRS => scores_in::<FORMAT_BF16_PAIRS>(walk, q, z, ldz),
        _ => scores_in::<FORMAT_F16>(walk, q, z, ldz),
    }
}

/// `o[r * ldo + c] += sum_j p[r * ldp + j] * value_j[c]`, the cache in `format`.
///
/// # Safety
/// As for [`accumulate_in`].
pub unsafe fn accumulate(format: u8, walk: &Walk, p: *const f32, ldp: usize, o: *mut f32, ldo: usize) {
    match format {
        FORMAT_F32 => accumulate_in::<FORMAT_F32>(walk, p, ldp, o, ldo),
        FORMAT_BF16 => accumulate_in::<FORMAT_BF16>(walk, p, ldp, o, ldo),
        FORMAT_BF16_PAIRS => accumulate_in::<FORMAT_BF16_PAIRS>(walk, p, ldp, o, ldo),
        _ => accumulate_in::<FORMAT_F16>(walk, p, ldp, o, ldo),
    }
}

avx512_fn! {
    /// `z[r * ldz + j] = q_r . key_j` for every query row `r` of the walk (`q`:
    /// rows of `walk.dim` floats) and every position `j` of it.
    ///
    /// # Safety
    /// AVX-512 is available; `walk` is as documented; `q` holds the task's rows
    /// and `z` their `walk.rows.len()` columns `ldz` apart.
    unsafe fn scores_in<const FORMAT: u8>(walk: &Walk, q: *const f32, z: *mut f32, ldz: usize) {
        let (d, size) = (walk.dim, element_bytes::<FORMAT>());
        let mut j = 0;
        while j < walk.rows.len() {
            let n = (walk.rows.len() - j).min(POSITIONS);
            let rows = walk.rows_at(j, n, size);
            let store: __mmask8 = ((1u32 << n) - 1) as __mmask8;
            for g in 0..walk.heads_kv {
                walk.prefetch_head(j, n, g, size);
                let keys = offset(rows, g * d * size);
                for i in 0..walk.query_positions {
                    let first = i * walk.heads_q + g * walk.group;
                    let mut r = 0;
                    while r < walk.group {
                        let (q, out) = (q.add((first + r) * d), z.add((first + r) * ldz + j));
                        if FORMAT == FORMAT_BF16_PAIRS {
                            r += match walk.group - r {
                                1 => dot_block_pairs::<1>(keys, d, q, out, ldz, store),
                                2 => dot_block_pairs::<2>(keys, d, q, out, ldz, store),
                                3 => dot_block_pairs::<3>(keys, d, q, out, ldz, store),
                                _ => dot_block_pairs::<4>(keys, d, q, out, ldz, store),
                            };
                            continue;
                        }
                        r += match walk.group - r {
                            1 => dot_block::<FORMAT, 1>(keys, d, q, out, ldz, store),
                            2 => dot_block::<FORMAT, 2>(keys, d, q, out, ldz, store),
                            3 => dot_block::<FORMAT, 3>(keys, d, q, out, ldz, store),
                            _ => dot_block::<FORMAT, 4>(keys, d, q, out, ldz, store),
                        };
                    }
                }
            }
            j += n;
        }
    }

    /// `o[r * ldo + c] += sum_j p[r * ldp + j] * value_j[c]` for every query row `r`
    /// of the walk and every position `j` of it, in blocks of four positions.
    ///
    /// # Safety
    /// AVX-512 is available; `walk` is as documented; `p` holds the task's rows'
    /// `walk.rows.len()` weights `ldp` apart, `o` their `walk.dim` outputs `ldo` apart.
    unsafe fn accumulate_in<const FORMAT: u8>(walk: &Walk, p: *const f32, ldp: usize, o: *mut f32, ldo: usize) {
        let (d, size) = (walk.dim, element_bytes::<FORMAT>());
        let mut j = 0;
        while j < walk.rows.len() {
            let n = (walk.rows.len() - j).min(POSITIONS);
            let rows = walk.rows_at(j, n, size);
            for g in 0..walk.heads_kv {
                walk.prefetch_head(j, n, g, size);
                let values = offset(rows, g * d * size);
                for i in 0..walk.query_positions {
                    let first = i * walk.heads_q + g * walk.group;
                    let mut r = 0;
                    while r < walk.group {
                        let (p, o) = (p.add((first + r) * ldp + j), o.add((first + r) * ldo));
                        if FORMAT == FORMAT_BF16_PAIRS {
                            r += match walk.group - r {
                                1 => accumulate_block_pairs::<1>(values, n, d, p, ldp, o, ldo),
                                2 => accumulate_block_pairs::<2>(values, n, d, p, ldp, o, ldo),
                                3 => accumulate_block_pairs::<3>(values, n, d, p, ldp, o, ldo),
                                _ => accumulate_block_pairs::<4>(values, n, d, p, ldp, o, ldo),
                            };
                            continue;
                        }
                        r += match walk.group - r {
                            1 => accumulate_block::<FORMAT, 1>(values, n, d, p, ldp, o, ldo),
                            2 => accumulate_block::<FORMAT, 2>(values, n, d, p, ldp, o, ldo),
                            3 => accumulate_block::<FORMAT, 3>(values, n, d, p, ldp, o, ldo),
                            _ => accumulate_block::<FORMAT, 4>(values, n, d, p, ldp, o, ldo),
                        };
                    }
                }
            }
            j += n;
        }
    }

    /// The largest of `row[..len]`, NaN skipped; -inf for none.
    ///
    /// # Safety
    /// AVX-512 is available; `row` holds `len` floats.
    pub unsafe fn row_max(row: *const f32, len: usize) -> f32 {
        let none = _mm512_set1_ps(f32::NEG_INFINITY);
        let mut m = none;
        let mut c = 0;
        while c < len {
            // MAXPS returns its second operand where either is NaN: the running maximum.
            m = _mm512_max_ps(_mm512_mask_loadu_ps(none, tail(len, c), row.add(c)), m);
            c += 16;
        }
        _mm512_reduce_max_ps(m)
    }

    /// The sum of `row[..len]`, sixteen lanes, then the lanes in a fixed order.
    ///
    /// # Safety
    /// AVX-512 is available; `row` holds `len` floats.
    pub unsafe fn row_sum(row: *const f32, len: usize) -> f32 {
        let mut s = _mm512_setzero_ps();
        let mut c = 0;
        while c < len {
            s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(tail(len, c), row.add(c)));
            c += 16;
        }
        _mm512_reduce_add_ps(s)
    }
}

avx512_bf16_fn! {
    /// `z[r * ldz + j] = factor * (q_r . key_j)` for every query row `r` of the
    /// walk (`q`: rows of `walk.dim` bfloat16 bits) and every position `j` of it, a
    /// bfloat16 cache whose `walk.dim` is a multiple of 32, with `VDPBF16PS`.
    ///
    /// # Safety
    /// AVX-512 BF16 is available; `walk` is as documented with such a `dim`; `q`
    /// holds the task's rows and `z` their `walk.rows.len()` columns `ldz` apart.
    pub unsafe fn scores_bf16_dot(walk: &Walk, q: *const u16, z: *mut f32, ldz: usize, factor: f32) {
        let (d, size) = (walk.dim, 2);
        let factor = _mm_set1_ps(factor);
        let mut j = 0;
        while j < walk.rows.len() {
            let n = (walk.rows.len() - j).min(POSITIONS);
            let rows = walk.rows_at(j, n, size);
            let store: __mmask8 = ((1u32 << n) - 1) as __mmask8;
            for g in 0..walk.heads_kv {
                walk.prefetch_head(j, n, g, size);
                let keys = offset(rows, g * d * size);
                for i in 0..walk.query_positions {
                    let first = i * walk.heads_q + g * walk.group;
                    let mut r = 0;
                    while r < walk.group {
                        let (q, out) = (q.add((first + r) * d), z.add((first + r) * ldz + j));
                        r += match walk.group - r {
                            1 => dot_block_bf16::<1>(keys, d, q, out, ldz, store, factor),
                            2 => dot_block_bf16::<2>(keys, d, q, out, ldz, store, factor),
                            3 => dot_block_bf16::<3>(keys, d, q, out, ldz, store, factor),
                            _ => dot_block_bf16::<4>(keys, d, q, out, ldz, store, factor),
                        };
                    }
                }
            }
            j += n;
        }
    }
}

/// [`dot_block`] for [`scores_bf16_dot`]: `R` rows of bfloat16 queries against four
/// positions' bfloat16 keys, 32 elements (16 pairs) an instruction; the sums
/// times `factor`.
#[inline(always)]
unsafe fn dot_block_bf16<const R: usize>(
    keys: [*const u8; POSITIONS],
    d: usize,
    q: *const u16,
    out: *mut f32,
    ld_out: usize,
    store: __mmask8,
    factor: __m128,
) -> usize {
    let mut acc = [[_mm512_setzero_ps(); POSITIONS]; R];
    let mut c = 0;
    while c < d {
        let k = [
            pairs(keys[0] as *const u16, c),
            pairs(keys[1] as *const u16, c),
            pairs(keys[2] as *const u16, c),
            pairs(keys[3] as *const u16, c),
        ];
        for i in 0..R {
            let q_i = pairs(q.add(i * d), c);
            for t in 0..POSITIONS {
                acc[i][t] = _mm512_dpbf16_ps(acc[i][t], q_i, k[t]);
            }
        }
        c += 32;
    }
    for i in 0..R {
        _mm_mask_storeu_ps(out.add(i * ld_out), store, _mm_mul_ps(lane_sums(acc[i]), factor));
    }
    R
}

/// Elements `c..c + 32` of a bfloat16 row, as sixteen pairs.
#[inline(always)]
unsafe fn pairs(row: *const u16, c: usize) -> __m512bh {
    let bits = _mm512_loadu_si512(row.add(c) as *const _);
    // SAFETY: both are 512 bits of plain data.
    std::mem::transmute::<__m512i, __m512bh>(bits)
}

/// `R` query rows (`d` apart in `q`) against four positions' keys; returns `R`.
#[inline(always)]
unsafe fn dot_block<const FORMAT: u8, const R: usize>(
    keys: [*const u8; POSITIONS],
    d: usize,
    q: *const f32,
    out: *mut f32,
    ld_out: usize,
    store: __mmask8,
) -> usize {
    let mut acc = [[_mm512_setzero_ps(); POSITIONS]; R];
    let mut c = 0;
    while c < d {
        let mask = tail(d, c);
        let k = [
            load16::<FORMAT>(keys[0], c, mask),
            load16::<FORMAT>(keys[1], c, mask),
            load16::<FORMAT>(keys[2], c, mask),
            load16::<FORMAT>(keys[3], c, mask),
        ];
        for i in 0..R {
            let q_i = _mm512_maskz_loadu_ps(mask, q.add(i * d + c));
            for t in 0..POSITIONS {
                acc[i][t] = _mm512_fmadd_ps(q_i, k[t], acc[i][t]);
            }
        }
        c += 16;
    }
    for i in 0..R {
        store_sums(acc[i], out.add(i * ld_out), store);
    }
    R
}

/// `R` output rows (`ldo` apart) plus the first `n` positions' values weighted by
/// `p` (`ldp` apart): the weights broadcast once, each output vector loaded and
/// stored once; returns `R`.
#[inline(always)]
unsafe fn accumulate_block<const FORMAT: u8, const R: usize>(
    values: [*const u8; POSITIONS],
    n: usize,
    d: usize,
    p: *const f32,
    ldp: usize,
    o: *mut f32,
    ldo: usize,
) -> usize {
    if n < POSITIONS {
        // The slots past `n` repeat a position: skipped one position at a time, so
        // that a value's infinity never meets a weight of 0.
        for t in 0..n {
            accumulate_one::<FORMAT, R>(values[t], d, p.add(t), ldp, o, ldo);
        }
        return R;
    }
    let mut w = [[_mm512_setzero_ps(); POSITIONS]; R];
    for i in 0..R {
        for t in 0..POSITIONS {
            w[i][t] = _mm512_set1_ps(*p.add(i * ldp + t));
        }
    }
    let mut c = 0;
    while c < d {
        let mask = tail(d, c);
        let mut acc = [_mm512_setzero_ps(); R];
        for i in 0..R {
            acc[i] = _mm512_maskz_loadu_ps(mask, o.add(i * ldo + c));
        }
        for t in 0..POSITIONS {
            let v = load16::<FORMAT>(values[t], c, mask);
            for i in 0..R {
                acc[i] = _mm512_fmadd_ps(w[i][t], v, acc[i]);
            }
        }
        for i in 0..R {
            _mm512_mask_storeu_ps(o.add(i * ldo + c), mask, acc[i]);
        }
        c += 16;
    }
    R
}

/// One position of [`accumulate_block`].
#[inline(always)]
unsafe fn accumulate_one<const FORMAT: u8, const R: usize>(
    value: *const u8,
    d: usize,
    p: *const f32,
    ldp: usize,
    o: *mut f32,
    ldo: usize,
) {
    let mut c = 0;
    while c < d {
        let mask = tail(d, c);
        let v = load16::<FORMAT>(value, c, mask);
        for i in 0..R {
            let at = o.add(i * ldo + c);
            _mm512_mask_storeu_ps(
                at,
                mask,
                _mm512_fmadd_ps(_mm512_set1_ps(*p.add(i * ldp)), v, _mm512_maskz_loadu_ps(mask, at)),
            );
        }
        c += 16;
    }
}

/// Elements `c..c + 32` of a bfloat16 row as float32: the even ones, the odd ones.
#[inline(always)]
unsafe fn load_pairs(row: *const u8, c: usize) -> (__m512, __m512) {
    let bits = _mm512_loadu_si512((row as *const i16).add(c) as *const _);
    let even = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(bits));
    let odd = _mm512_castsi512_ps(_mm512_and_si512(bits, _mm512_set1_epi32(0xFFFF_0000_u32 as i32)));
    (even, odd)
}

/// [`dot_block`] for [`FORMAT_BF16_PAIRS`]: `q` in pair order.
#[inline(always)]
unsafe fn dot_block_pairs<const R: usize>(
    keys: [*const u8; POSITIONS],
    d: usize,
    q: *const f32,
    out: *mut f32,
    ld_out: usize,
    store: __mmask8,
) -> usize {
    let mut acc = [[_mm512_setzero_ps(); POSITIONS]; R];
    let mut c = 0;
    while c < d {
        let k = [load_pairs(keys[0], c), load_pairs(keys[1], c), load_pairs(keys[2], c), load_pairs(keys[3], c)];
        for i in 0..R {
            let q_even = _mm512_loadu_ps(q.add(i * d + c));
            let q_odd = _mm512_loadu_ps(q.add(i * d + c + 16));
            for t in 0..POSITIONS {
                acc[i][t] = _mm512_fmadd_ps(q_odd, k[t].1, _mm512_fmadd_ps(q_even, k[t].0, acc[i][t]));
            }
        }
        c += 32;
    }
    for i in 0..R {
        store_sums(acc[i], out.add(i * ld_out), store);
    }
    R
}

/// [`accumulate_block`] for [`FORMAT_BF16_PAIRS`]: `o` in pair order.
#[inline(always)]
unsafe fn accumulate_block_pairs<const R: usize>(
    values: [*const u8; POSITIONS],
    n: usize,
    d: usize,
    p: *const f32,
    ldp: usize,
    o: *mut f32,
    ldo: usize,
) -> usize {
    if n < POSITIONS {
        // Positions past `n` repeat one: skipped, so that a value's infinity never
        // meets a weight of 0.
        for t in 0..n {
            let mut c = 0;
            while c < d {
                let (v_even, v_odd) = load_pairs(values[t], c);
                for i in 0..R {
                    let (at_even, at_odd) = (o.add(i * ldo + c), o.add(i * ldo + c + 16));
                    let w = _mm512_set1_ps(*p.add(i * ldp + t));
                    _mm512_storeu_ps(at_even, _mm512_fmadd_ps(w, v_even, _mm512_loadu_ps(at_even)));
                    _mm512_storeu_ps(at_odd, _mm512_fmadd_ps(w, v_odd, _mm512_loadu_ps(at_odd)));
                }
                c += 32;
            }
        }
        return R;
    }
    let mut w = [[_mm512_setzero_ps(); POSITIONS]; R];
    for i in 0..R {
        for t in 0..POSITIONS {
            w[i][t] = _mm512_set1_ps(*p.add(i * ldp + t));
        }
    }
    let mut c = 0;
    while c < d {
        let mut even = [_mm512_setzero_ps(); R];
        let mut odd = [_mm512_setzero_ps(); R];
        for i in 0..R {
            even[i] = _mm512_loadu_ps(o.add(i * ldo + c));
            odd[i] = _mm512_loadu_ps(o.add(i * ldo + c + 16));
        }
        for t in 0..POSITIONS {
            let (v_even, v_odd) = load_pairs(values[t], c);
            for i in 0..R {
                even[i] = _mm512_fmadd_ps(w[i][t], v_even, even[i]);
                odd[i] = _mm512_fmadd_ps(w[i][t], v_odd, odd[i]);
            }
        }
        for i in 0..R {
            _mm512_storeu_ps(o.add(i * ldo + c), even[i]);
            _mm512_storeu_ps(o.add(i * ldo + c + 16), odd[i]);
        }
        c += 32;
    }
    R
}

/// Stores the sums of the lanes of each of `a`'s four vectors to `out[0..4]` (the
/// lanes of `store`).
#[inline(always)]
unsafe fn store_sums(a: [__m512; POSITIONS], out: *mut f32, store: __mmask8) {
    _mm_mask_storeu_ps(out, store, lane_sums(a));
}

/// The sums of the lanes of each of `a`'s four vectors: a transposing reduction,
/// cheaper than four horizontal ones.
#[inline(always)]
unsafe fn lane_sums(a: [__m512; POSITIONS]) -> __m128 {
    // Per 128-bit lane: the sums of lanes {0, 2} and {1, 3} of vectors 0, 1 (then
    // 2, 3) side by side, then of all four lanes, one vector each.
    let s01 = _mm512_add_ps(_mm512_unpacklo_ps(a[0], a[1]), _mm512_unpackhi_ps(a[0], a[1]));
    let s23 = _mm512_add_ps(_mm512_unpacklo_ps(a[2], a[3]), _mm512_unpackhi_ps(a[2], a[3]));
    let w = _mm512_add_ps(_mm512_shuffle_ps::<0b01_00_01_00>(s01, s23), _mm512_shuffle_ps::<0b11_10_11_10>(s01, s23));
    // Then the four 128-bit lanes: every lane ends holding the four totals.
    let h = _mm512_add_ps(w, _mm512_shuffle_f32x4::<0b01_00_11_10>(w, w));
    let h = _mm512_add_ps(h, _mm512_shuffle_f32x4::<0b10_11_00_01>(h, h));
    _mm512_castps512_ps128(h)
}
