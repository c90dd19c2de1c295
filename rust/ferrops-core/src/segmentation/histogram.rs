//! Counting into private histograms (one per rayon fold, i.e. per thread), the
//! path for matrices that are small next to the input. Codes are counted run by
//! run where a group of 64 has few runs, pixel by pixel in interleaved copies
//! where it is busy.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::avx2;
use super::labels::{add_column_codes, row_codes, with_slice, Bounds, Labels};
use super::{first_bad_label, BLOCK, INTERLEAVED_MAX_CELLS, PIXELS_PER_TASK};
use crate::ensure;
use crate::error::Result;
use crate::simd::{self, dispatch, SimdKernel, SimdLevel};

/// Pixels whose run boundaries are found at once (one bit each in a u64).
pub(super) const GROUP: usize = 64;

/// A group with at most this many run starts is counted run by run (one add of
/// the run length per run); busier groups pixel by pixel. A run costs several
/// cycles (bit scan, a store that the next run of the same cell waits on, the
/// loop exit mispredicted), a pixel a little over one: 8 runs stay well below
/// the cost of 64 pixels.
pub(super) const MAX_RUNS_PER_GROUP: u32 = 8;

/// After a busy group, this many groups are counted pixel by pixel without the
/// run test.
const BUSY_GROUPS_SKIPPED: usize = 3;

/// Counts one pixel per code into `COPIES` interleaved histograms of `cells`
/// cells (consecutive pixels go to different copies, so a run of one cell does
/// not chain every increment on the store before it). `cells` is a power of two
/// and every code is below it (by construction of the codes); indexing with
/// `code & (cells - 1)` lets the compiler drop the bounds checks, which were a
/// third of the instructions of this loop.
#[inline(always)]
fn count_pixels<const COPIES: usize>(codes: &[u32], hist: &mut [u64], cells: usize) {
    let mask = cells - 1;
    if COPIES == 4 {
        let (h01, h23) = hist.split_at_mut(2 * cells);
        let (h0, h1) = h01.split_at_mut(cells);
        let (h2, h3) = h23.split_at_mut(cells);
        assert!(h0.len() > mask && h1.len() > mask && h2.len() > mask && h3.len() > mask);
        let mut groups = codes.chunks_exact(4);
        for g in &mut groups {
            h0[g[0] as usize & mask] += 1;
            h1[g[1] as usize & mask] += 1;
            h2[g[2] as usize & mask] += 1;
            h3[g[3] as usize & mask] += 1;
        }
        for &code in groups.remainder() {
            h0[code as usize & mask] += 1;
        }
    } else {
        let h = &mut hist[..cells];
        assert!(h.len() > mask);
        for &code in codes {
            h[code as usize & mask] += 1;
        }
    }
}

/// Bit `j` set when `g[j]` differs from the code before it (`previous` for `j = 0`).
/// `avx2` says the active SIMD level has AVX2: then 8 compares and movemasks do
/// it, where the portable form costs about 100 instructions per group (LLVM
/// builds the bits with vector shifts and an OR reduction).
#[inline(always)]
pub(super) fn run_starts(g: &[u32; GROUP], previous: u32, avx2: bool) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is true only when the active SIMD level is AVX2 or above,
        // and the level never exceeds what the CPU supports (simd::supports).
        return unsafe { avx2::run_starts(g, previous) };
    }
    let _ = avx2;
    let mut starts = (g[0] != previous) as u64;
    for j in 1..GROUP {
        starts |= ((g[j] != g[j - 1]) as u64) << j;
    }
    starts
}

/// Counts `codes` into the histogram(s). Segmentation maps are mostly long runs
/// of one (target, prediction) pair, so each group of 64 codes is compared with
/// itself shifted by one (a vectorised compare giving a bit per run start); a
/// group with few runs adds each run's length once, a busy group (noise, random
/// labels) falls back to one increment per pixel.
#[inline(always)]
pub(super) fn count_codes<const COPIES: usize>(codes: &[u32], hist: &mut [u64], cells: usize, avx2: bool) {
    let Some(&first) = codes.first() else { return };
    let mask = cells - 1;
    assert!(hist.len() > mask);
    let (mut run_code, mut run_start, mut previous) = (first, 0usize, first);
    let full = codes.len() / GROUP * GROUP;
    let mut base = 0;
    while base < full {
        let g: &[u32; GROUP] = codes[base..base + GROUP].try_into().expect("a full group");
        let mut starts = run_starts(g, previous, avx2);
        if starts.count_ones() <= MAX_RUNS_PER_GROUP {
            while starts != 0 {
                let j = starts.trailing_zeros() as usize;
                hist[run_code as usize & mask] += (base + j - run_start) as u64;
                run_code = g[j];
                run_start = base + j;
                starts &= starts - 1;
            }
            previous = g[GROUP - 1];
            base += GROUP;
        } else {
            // Busy labels tend to stay busy: count this group and the next few
            // pixel by pixel in one go, without testing them for runs.
            let end = (base + (1 + BUSY_GROUPS_SKIPPED) * GROUP).min(full);
            hist[run_code as usize & mask] += (base - run_start) as u64;
            count_pixels::<COPIES>(&codes[base..end], hist, cells);
            previous = codes[end - 1];
            (run_code, run_start) = (previous, end);
            base = end;
        }
    }
    hist[run_code as usize & mask] += (full - run_start) as u64;
    count_pixels::<COPIES>(&codes[full..], hist, cells);
}

/// The geometry of the private histograms: `C + 2` rows (classes, ignored,
/// bad target) of `width = 2^shift >= C + 1` cells (classes, bad prediction,
/// padding never written), `cells` rounded up to a power of two.
#[derive(Clone, Copy)]
pub(super) struct Grid {
    pub(super) num_classes: usize,
    pub(super) shift: u32,
    pub(super) width: usize,
    pub(super) cells: usize,
    pub(super) copies: usize,
}

impl Grid {
    pub(super) fn new(num_classes: usize) -> Option<Self> {
        let width = num_classes.checked_add(1)?.checked_next_power_of_two()?;
        let cells = num_classes.checked_add(2)?.checked_mul(width)?.checked_next_power_of_two()?;
        let copies = if cells <= INTERLEAVED_MAX_CELLS { 4 } else { 1 };
        Some(Grid { num_classes, shift: width.trailing_zeros(), width, cells, copies })
    }

    pub(super) fn ignored_row(&self) -> u32 {
        (self.num_classes * self.width) as u32
    }

    pub(super) fn invalid_row(&self) -> u32 {
        ((self.num_classes + 1) * self.width) as u32
    }
}

/// Counts pixels `[start, end)` into a private histogram (`grid.copies` copies).
struct CountPrivate<'a> {
    target: Labels<'a>,
    pred: Labels<'a>,
    start: usize,
    end: usize,
    ignore_index: Option<i64>,
    grid: Grid,
    hist: &'a mut [u64],
}

impl SimdKernel for CountPrivate<'_> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let g = self.grid;
        let c = g.num_classes;
        let avx2 = simd::supports(SimdLevel::Avx2);
        #[cfg(target_arch = "x86_64")]
        if let (true, Labels::U8(t), Labels::U8(p)) = (avx2, self.target, self.pred) {
            let range = self.start..self.end;
            // SAFETY: `avx2` is true only when the active SIMD level is AVX2 or
            // above, which never exceeds what the CPU supports (simd::supports).
            unsafe { avx2::count_u8_pairs(&t[range.clone()], &p[range], self.ignore_index, g, self.hist) };
            return;
        }
        let mut codes = [0u32; BLOCK];
        let mut first = self.start;
        while first < self.end {
            let last = (first + BLOCK).min(self.end);
            let codes = &mut codes[..last - first];
            with_slice!(self.target, s => row_codes(
                &s[first..last],
                codes,
                Bounds::new(c, self.ignore_index),
                g.shift,
                g.ignored_row(),
                g.invalid_row(),
            ));
            with_slice!(self.pred, s => add_column_codes(&s[first..last], codes, Bounds::new(c, None), c as u32));
            if g.copies == 4 {
                count_codes::<4>(codes, self.hist, g.cells, avx2);
            } else {
                count_codes::<1>(codes, self.hist, g.cells, avx2);
            }
            first = last;
        }
    }
}

pub(super) fn count_private(target: Labels<'_>, pred: Labels<'_>, c: usize, ignore_index: Option<i64>, grid: Grid) -> Result<Vec<i64>> {
    let n = target.len();
    let hist_len = grid.cells * grid.copies;
    let tasks = n.div_ceil(PIXELS_PER_TASK);
    let hist = (0..tasks)
        .into_par_iter()
        .fold(
            || vec![0u64; hist_len],
            |mut hist, task| {
                let start = task * PIXELS_PER_TASK;
                let end = (start + PIXELS_PER_TASK).min(n);
                dispatch(CountPrivate { target, pred, start, end, ignore_index, grid, hist: &mut hist });
                hist
            },
        )
        .reduce(
            || vec![0u64; hist_len],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let cell = |row: usize, col: usize| -> u64 { (0..grid.copies).map(|k| hist[k * grid.cells + row * grid.width + col]).sum() };
    let bad_targets = (0..grid.width).any(|col| cell(c + 1, col) != 0);
    let bad_predictions = (0..c).any(|row| cell(row, c) != 0);
    ensure!(!bad_targets && !bad_predictions, first_bad_label(target, pred, c, ignore_index));
    let mut out = Vec::with_capacity(c * c);
    for row in 0..c {
        out.extend((0..c).map(|col| cell(row, col) as i64));
    }
    Ok(out)
}
