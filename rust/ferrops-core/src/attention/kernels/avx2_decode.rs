//! The decoding kernels of `decode_task.rs` in AVX2 + FMA: the `avx512_decode`
//! walks with 8-lane vectors, for float32 and bfloat16 caches whose head
//! dimension is a multiple of 8 (float16, which needs F16C, and other widths take
//! the portable path). With 16 registers, two query rows go at a time against
//! four positions (8 accumulators).

// Index loops only, as in `avx512_decode`: iterator adapters and closures need not
// be inlined into the target-feature functions.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::{offset, Walk, POSITIONS};
use crate::simd::avx2_fn;

/// Cache element formats: float32, bfloat16 bits.
pub const FORMAT_F32: u8 = 0;
pub const FORMAT_BF16: u8 = 1;

/// Query rows taken at once.
const ROWS: usize = 2;

#[inline(always)]
const fn element_bytes<const FORMAT: u8>() -> usize {
    if FORMAT == FORMAT_F32 {
        4
    } else {
        2
    }
}

/// Elements `index..index + 8` of a cache row in `FORMAT`, as float32.
#[inline(always)]
unsafe fn load8<const FORMAT: u8>(row: *const u8, index: usize) -> __m256 {
    if FORMAT == FORMAT_F32 {
        _mm256_loadu_ps((row as *const f32).add(index))
    } else {
        let bits = _mm_loadu_si128((row as *const u16).add(index) as *const __m128i);
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(bits)))
    }
}

/// `z[r * ldz + j] = q_r . key_j` for every query row `r` of the walk and every
/// position `j` of it; `walk.dim` a multiple of 8.
///
/// # Safety
/// As for [`scores_in`].
pub unsafe fn scores(format: u8, walk: &Walk, q: *const f32, z: *mut f32, ldz: usize) {
    match format {
        FORMAT_F32 => scores_in::<FORMAT_F32>(walk, q, z, ldz),
        _ => scores_in::<FORMAT_BF16>(walk, q, z, ldz),
    }
}

/// `o[r * ldo + c] += sum_j p[r * ldp + j] * value_j[c]`; `walk.dim` a multiple of 8.
///
/// # Safety
/// As for [`accumulate_in`].
pub unsafe fn accumulate(format: u8, walk: &Walk, p: *const f32, ldp: usize, o: *mut f32, ldo: usize) {
    match format {
        FORMAT_F32 => accumulate_in::<FORMAT_F32>(walk, p, ldp, o, ldo),
        _ => accumulate_in::<FORMAT_BF16>(walk, p, ldp, o, ldo),
    }
}

avx2_fn! {
    /// # Safety
    /// AVX2 and FMA are available; `walk` is as documented with a `dim` that is a
    /// multiple of 8; `q` holds the task's rows and `z` their `walk.rows.len()`
    /// columns `ldz` apart.
    unsafe fn scores_in<const FORMAT: u8>(walk: &Walk, q: *const f32, z: *mut f32, ldz: usize) {
        let (d, size) = (walk.dim, element_bytes::<FORMAT>());
        let mut j = 0;
        while j < walk.rows.len() {
            let n = (walk.rows.len() - j).min(POSITIONS);
            let rows = walk.rows_at(j, n, size);
            for g in 0..walk.heads_kv {
                walk.prefetch_head(j, n, g, size);
                let keys = offset(rows, g * d * size);
                for i in 0..walk.query_positions {
                    let first = i * walk.heads_q + g * walk.group;
                    let mut r = 0;
                    while r < walk.group {
                        let (q, out) = (q.add((first + r) * d), z.add((first + r) * ldz + j));
                        r += if walk.group - r == 1 {
                            dot_block::<FORMAT, 1>(keys, n, d, q, out, ldz)
                        } else {
                            dot_block::<FORMAT, ROWS>(keys, n, d, q, out, ldz)
                        };
                    }
                }
            }
            j += n;
        }
    }

    /// # Safety
    /// AVX2 and FMA are available; `walk` is as documented with a `dim` that is a
    /// multiple of 8; `p` holds the task's rows' `walk.rows.len()` weights `ldp`
    /// apart, `o` their `walk.dim` outputs `ldo` apart.
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
                        r += if walk.group - r == 1 {
                            accumulate_block::<FORMAT, 1>(values, n, d, p, ldp, o, ldo)
                        } else {
                            accumulate_block::<FORMAT, ROWS>(values, n, d, p, ldp, o, ldo)
                        };
                    }
                }
            }
            j += n;
        }
    }
}

/// `R` query rows (`d` apart in `q`) against four positions' keys, the first `n`
/// sums stored; returns `R`.
#[inline(always)]
unsafe fn dot_block<const FORMAT: u8, const R: usize>(
    keys: [*const u8; POSITIONS],
    n: usize,
    d: usize,
    q: *const f32,
    out: *mut f32,
    ld_out: usize,
) -> usize {
    let mut acc = [[_mm256_setzero_ps(); POSITIONS]; R];
    let mut c = 0;
    while c < d {
        let k = [
            load8::<FORMAT>(keys[0], c),
            load8::<FORMAT>(keys[1], c),
            load8::<FORMAT>(keys[2], c),
            load8::<FORMAT>(keys[3], c),
        ];
        for i in 0..R {
            let q_i = _mm256_loadu_ps(q.add(i * d + c));
            for t in 0..POSITIONS {
                acc[i][t] = _mm256_fmadd_ps(q_i, k[t], acc[i][t]);
            }
        }
        c += 8;
    }
    for i in 0..R {
        // The four sums side by side: pairwise within 128-bit lanes, then the lanes.
        let h = _mm256_hadd_ps(_mm256_hadd_ps(acc[i][0], acc[i][1]), _mm256_hadd_ps(acc[i][2], acc[i][3]));
        let sums = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
        let mut lanes = [0.0f32; POSITIONS];
        _mm_storeu_ps(lanes.as_mut_ptr(), sums);
        for t in 0..n {
            *out.add(i * ld_out + t) = lanes[t];
        }
    }
    R
}

/// `R` output rows (`ldo` apart) plus the first `n` positions' values weighted by
/// `p` (`ldp` apart); returns `R`.
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
        // The slots past `n` repeat a position: skipped, so that a value's
        // infinity never meets a weight of 0.
        for t in 0..n {
            let mut c = 0;
            while c < d {
                let v = load8::<FORMAT>(values[t], c);
                for i in 0..R {
                    let at = o.add(i * ldo + c);
                    _mm256_storeu_ps(at, _mm256_fmadd_ps(_mm256_set1_ps(*p.add(i * ldp + t)), v, _mm256_loadu_ps(at)));
                }
                c += 8;
            }
        }
        return R;
    }
    let mut w = [[_mm256_setzero_ps(); POSITIONS]; R];
    for i in 0..R {
        for t in 0..POSITIONS {
            w[i][t] = _mm256_set1_ps(*p.add(i * ldp + t));
        }
    }
    let mut c = 0;
    while c < d {
        let mut acc = [_mm256_setzero_ps(); R];
        for i in 0..R {
            acc[i] = _mm256_loadu_ps(o.add(i * ldo + c));
        }
        for t in 0..POSITIONS {
            let v = load8::<FORMAT>(values[t], c);
            for i in 0..R {
                acc[i] = _mm256_fmadd_ps(w[i][t], v, acc[i]);
            }
        }
        for i in 0..R {
            _mm256_storeu_ps(o.add(i * ldo + c), acc[i]);
        }
        c += 8;
    }
    R
}
