//! The confusion matrix's AVX2 code: run starts of a group of codes by 32-bit
//! compares, and the uint8 / uint8 kernel that finds runs on the raw bytes.

use std::arch::x86_64::*;

use super::histogram::{count_codes, Grid, GROUP, MAX_RUNS_PER_GROUP};
use super::labels::{add_column_codes, row_codes, Bounds};
use super::BLOCK;
use crate::simd::avx2_fn;

avx2_fn! {
    /// `histogram::run_starts`: bit `j` set when `g[j]` differs from the code
    /// before it, by 8 compares and movemasks.
    pub unsafe fn run_starts(g: &[u32; GROUP], previous: u32) -> u64 {
        let p = g.as_ptr();
        // Lanes 0..8 against (previous, g[0..7]): rotate up by one, put `previous` in lane 0.
        let first = _mm256_loadu_si256(p as *const __m256i);
        let rotated = _mm256_permutevar8x32_epi32(first, _mm256_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6));
        let before = _mm256_blend_epi32::<1>(rotated, _mm256_set1_epi32(previous as i32));
        let equal = _mm256_cmpeq_epi32(first, before);
        let mut same = _mm256_movemask_ps(_mm256_castsi256_ps(equal)) as u32 as u64;
        for k in 1..GROUP / 8 {
            // In bounds: 8k - 1 + 8 <= GROUP.
            let current = _mm256_loadu_si256(p.add(8 * k) as *const __m256i);
            let before = _mm256_loadu_si256(p.add(8 * k - 1) as *const __m256i);
            let equal = _mm256_cmpeq_epi32(current, before);
            same |= (_mm256_movemask_ps(_mm256_castsi256_ps(equal)) as u32 as u64) << (8 * k);
        }
        !same
    }

    /// The uint8 / uint8 case (masks read from PNGs, predictions stored as uint8),
    /// the most common and the one worth a kernel of its own: run starts come from
    /// byte compares of the raw labels, 32 pixels per instruction, and a (target,
    /// prediction) pair is turned into a histogram code only at a run start. A busy
    /// group hands the next block to the general path (coded in full, counted
    /// pixel by pixel where runs are short). Splitting a run where two raw pairs
    /// share a code (two bad labels, say) only adds its length in two steps: the
    /// counts are the same.
    pub unsafe fn count_u8_pairs(t: &[u8], p: &[u8], ignore_index: Option<i64>, g: Grid, hist: &mut [u64]) {
        let n = t.len().min(p.len());
        if n == 0 {
            return;
        }
        let c = g.num_classes;
        let (bt, bp) = (Bounds::<u8>::new(c, ignore_index), Bounds::<u8>::new(c, None));
        let (ignored, invalid) = (g.ignored_row(), g.invalid_row());
        let code = |i: usize| -> u32 {
            let (tv, pv) = (t[i], p[i]);
            let row = if Some(tv) == bt.ignore {
                ignored
            } else if bt.is_valid(tv) {
                (tv as u32) << g.shift
            } else {
                invalid
            };
            row + if bp.is_valid(pv) { pv as u32 } else { c as u32 }
        };
        let mask = g.cells - 1;
        assert!(hist.len() > mask);
        let (mut run_code, mut run_start) = (code(0), 0usize);
        let scalar_runs = |from: usize, to: usize, run_code: &mut u32, run_start: &mut usize, hist: &mut [u64]| {
            for i in from..to {
                let k = code(i);
                if k != *run_code {
                    hist[*run_code as usize & mask] += (i - *run_start) as u64;
                    (*run_code, *run_start) = (k, i);
                }
            }
        };
        // The first group scalar: the vector compares read the byte before a group.
        let mut base = GROUP.min(n);
        scalar_runs(1, base, &mut run_code, &mut run_start, hist);
        let mut codes = [0u32; BLOCK];
        while base + GROUP <= n {
            let (tp, pp) = (t.as_ptr().add(base), p.as_ptr().add(base));
            let mut same = 0u64;
            for half in 0..2 {
                let o = 32 * half;
                // In bounds: base >= GROUP > 0 and base + o + 32 <= n.
                let t_now = _mm256_loadu_si256(tp.add(o) as *const __m256i);
                let t_before = _mm256_loadu_si256(tp.add(o).sub(1) as *const __m256i);
                let p_now = _mm256_loadu_si256(pp.add(o) as *const __m256i);
                let p_before = _mm256_loadu_si256(pp.add(o).sub(1) as *const __m256i);
                let equal = _mm256_and_si256(_mm256_cmpeq_epi8(t_now, t_before), _mm256_cmpeq_epi8(p_now, p_before));
                same |= (_mm256_movemask_epi8(equal) as u32 as u64) << o;
            }
            let mut starts = !same;
            if starts.count_ones() <= MAX_RUNS_PER_GROUP {
                while starts != 0 {
                    let j = starts.trailing_zeros() as usize;
                    hist[run_code as usize & mask] += (base + j - run_start) as u64;
                    (run_code, run_start) = (code(base + j), base + j);
                    starts &= starts - 1;
                }
                base += GROUP;
            } else {
                // Busy labels (noise, random data): code the next block in full and
                // count it as the general path does, then look for runs again.
                hist[run_code as usize & mask] += (base - run_start) as u64;
                let end = (base + BLOCK).min(n);
                let codes = &mut codes[..end - base];
                row_codes(&t[base..end], codes, bt, g.shift, ignored, invalid);
                add_column_codes(&p[base..end], codes, bp, c as u32);
                if g.copies == 4 {
                    count_codes::<4>(codes, hist, g.cells, true);
                } else {
                    count_codes::<1>(codes, hist, g.cells, true);
                }
                // Every pixel before `end` is counted: a run starts at `end` (the next
                // group's compare may find no start there when the pixel repeats).
                (run_code, run_start) = (if end < n { code(end) } else { 0 }, end);
                base = end;
            }
        }
        scalar_runs(base, n, &mut run_code, &mut run_start, hist);
        hist[run_code as usize & mask] += (n - run_start) as u64;
    }
}
