//! The segmentation confusion matrix (SEG-CM): `n[i, j]` = pixels with ground
//! truth `i` predicted `j`, skipping pixels whose ground truth is `ignore_index`.
//!
//! Labels arrive in their own integer type (uint8 masks straight from PNGs,
//! int64 from `argmax`): converting a 16-megapixel uint8 batch to int64 first
//! would write eight times the input before counting anything. The kernel is
//! generic over each label type separately (target and prediction may differ),
//! so only sixteen small loops are compiled, not one per pair of types.
//!
//! How a block of pixels is counted (the SIMD-friendly part): one pass maps each
//! target to a row code and one pass adds each prediction's column code, both
//! plain selects that vectorise in the label's own width; then the codes are
//! counted. Out-of-range labels and ignored pixels land in extra cells (row `C`:
//! ignored, row `C + 1`: bad target, column `C`: bad prediction) instead of
//! branching per pixel; a non-empty bad cell triggers a scan for the first
//! offending pixel, reported with its value.
//!
//! Counting exploits what segmentation maps look like: long runs of one
//! (target, prediction) pair along each row. Each group of 64 codes gets a bitmask
//! of run starts (vector compares); a group with few runs adds each run's length
//! once, a busy group (noise, random labels) increments one cell per pixel in 4
//! interleaved histogram copies. uint8 / uint8 inputs find the runs on the raw
//! bytes (32 pixels per compare) and code only the run starts.
//!
//! Small matrices are counted in private histograms (one per rayon fold, i.e.
//! per thread) over fixed-size chunks and summed; integer sums are exact, so the
//! result is the same for any thread count. When the matrix is large next to the
//! input (many classes, few pixels) private copies would cost more to zero and
//! merge than the counting itself, so threads add into the one output with
//! relaxed atomic increments instead (still exact).

use std::alloc::{alloc_zeroed, Layout};
use std::sync::atomic::{AtomicI64, Ordering};

use rayon::prelude::*;

use crate::error::{FerropsError, Result};
use crate::simd::{dispatch, SimdKernel};

const FUNCTION: &str = "confusion_matrix";

/// Pixels per parallel work item; fixed so that the split is the same for any
/// thread count.
const PIXELS_PER_TASK: usize = 1 << 16;

/// Pixels coded at once: the code buffer (8 KiB of u32) stays in L1.
const BLOCK: usize = 2048;

/// Largest private histogram, in cells (8 MiB of u64): up to 1022 classes.
const PRIVATE_MAX_CELLS: usize = 1 << 20;

/// Private histograms are zeroed and merged once per rayon fold; they pay off
/// only when there are many more pixels than cells.
const PIXELS_PER_PRIVATE_CELL: usize = 8;

/// Histograms up to this many cells are kept in 4 interleaved copies, so that
/// runs of one class (the normal case in a segmentation map) do not chain every
/// increment on the previous store to the same cell. 4 x 2048 x 8 B stays in L1/L2.
const INTERLEAVED_MAX_CELLS: usize = 2048;

/// An integer label type the kernel reads directly.
pub trait Label: Copy + PartialOrd + Send + Sync + std::fmt::Display + 'static {
    const ZERO: Self;
    const MAX: Self;
    const NAME: &'static str;
    /// `v` in this type, when it is representable.
    fn from_i64(v: i64) -> Option<Self>;
    /// `v` in this type, when it is representable.
    fn from_u64(v: u64) -> Option<Self>;
    /// The value as a u32/u64 (an `as` cast: exact for the valid labels in
    /// `[0, C)`, meaningless and unused for the others).
    fn as_u32(self) -> u32;
    fn as_u64(self) -> u64;
}

macro_rules! impl_label {
    ($($t:ty),*) => {$(
        impl Label for $t {
            const ZERO: Self = 0;
            const MAX: Self = <$t>::MAX;
            const NAME: &'static str = stringify!($t);
            #[inline(always)]
            fn from_i64(v: i64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            #[inline(always)]
            fn from_u64(v: u64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            #[inline(always)]
            fn as_u32(self) -> u32 {
                self as u32
            }
            #[inline(always)]
            fn as_u64(self) -> u64 {
                self as u64
            }
        }
    )*};
}

impl_label!(u8, i8, u16, i16, u32, i32, u64, i64);

/// A flat array of class labels in one of the supported integer types.
#[derive(Debug, Clone, Copy)]
pub enum Labels<'a> {
    U8(&'a [u8]),
    I8(&'a [i8]),
    U16(&'a [u16]),
    I16(&'a [i16]),
    U32(&'a [u32]),
    I32(&'a [i32]),
    U64(&'a [u64]),
    I64(&'a [i64]),
}

/// Runs `$body` with `$s` bound to the typed slice inside `$labels`.
macro_rules! with_slice {
    ($labels:expr, $s:ident => $body:expr) => {
        match $labels {
            Labels::U8($s) => $body,
            Labels::I8($s) => $body,
            Labels::U16($s) => $body,
            Labels::I16($s) => $body,
            Labels::U32($s) => $body,
            Labels::I32($s) => $body,
            Labels::U64($s) => $body,
            Labels::I64($s) => $body,
        }
    };
}

impl Labels<'_> {
    pub fn len(&self) -> usize {
        with_slice!(self, s => s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype_name(&self) -> &'static str {
        with_slice!(self, s => element_name(s))
    }

    /// Label `i` widened exactly (u64 and i64 both fit in i128).
    fn value(&self, i: usize) -> i128 {
        with_slice!(self, s => s[i].as_u64() as i128 - if signed_negative(s[i]) { 1i128 << 64 } else { 0 })
    }
}

fn element_name<T: Label>(_: &[T]) -> &'static str {
    T::NAME
}

/// Whether `v` is below zero (for the exact widening of signed labels).
fn signed_negative<T: Label>(v: T) -> bool {
    v < T::ZERO
}

/// What "a valid label" and "the ignored label" are, in the label's own type, so
/// that the per-pixel tests are comparisons of that width (they vectorise).
#[derive(Clone, Copy)]
struct Bounds<T> {
    /// The largest valid label, `min(C - 1, T::MAX)`.
    max_valid: T,
    /// `ignore_index` when this type can hold it (otherwise no pixel matches).
    ignore: Option<T>,
}

impl<T: Label> Bounds<T> {
    fn new(num_classes: usize, ignore_index: Option<i64>) -> Self {
        Bounds {
            max_valid: T::from_u64(num_classes as u64 - 1).unwrap_or(T::MAX),
            ignore: ignore_index.and_then(T::from_i64),
        }
    }

    #[inline(always)]
    fn is_valid(&self, v: T) -> bool {
        v >= T::ZERO && v <= self.max_valid
    }
}

/// Target row codes: `label << shift` for valid labels (a shift, not a multiply:
/// rows are a power of two wide), `ignored` / `invalid` otherwise.
#[inline(always)]
fn row_codes<T: Label>(target: &[T], codes: &mut [u32], b: Bounds<T>, shift: u32, ignored: u32, invalid: u32) {
    match b.ignore {
        Some(ignore) => {
            for (code, &t) in codes.iter_mut().zip(target) {
                let valid = if b.is_valid(t) { t.as_u32().wrapping_shl(shift) } else { invalid };
                *code = if t == ignore { ignored } else { valid };
            }
        }
        None => {
            for (code, &t) in codes.iter_mut().zip(target) {
                *code = if b.is_valid(t) { t.as_u32().wrapping_shl(shift) } else { invalid };
            }
        }
    }
}

/// Adds each prediction's column code (the label, or `invalid`) to `codes`.
#[inline(always)]
fn add_column_codes<P: Label>(pred: &[P], codes: &mut [u32], b: Bounds<P>, invalid: u32) {
    for (code, &p) in codes.iter_mut().zip(pred) {
        *code = code.wrapping_add(if b.is_valid(p) { p.as_u32() } else { invalid });
    }
}

/// Pixels whose run boundaries are found at once (one bit each in a u64).
const GROUP: usize = 64;

/// A group with at most this many run starts is counted run by run (one add of
/// the run length per run); busier groups pixel by pixel. A run costs several
/// cycles (bit scan, a store that the next run of the same cell waits on, the
/// loop exit mispredicted), a pixel a little over one: 8 runs stay well below
/// the cost of 64 pixels.
const MAX_RUNS_PER_GROUP: u32 = 8;

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
fn run_starts(g: &[u32; GROUP], previous: u32, avx2: bool) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: `avx2` is true only when the active SIMD level is AVX2 or above,
        // and the level never exceeds what the CPU supports (simd::level).
        return unsafe { run_starts_avx2(g, previous) };
    }
    let _ = avx2;
    let mut starts = (g[0] != previous) as u64;
    for j in 1..GROUP {
        starts |= ((g[j] != g[j - 1]) as u64) << j;
    }
    starts
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn run_starts_avx2(g: &[u32; GROUP], previous: u32) -> u64 {
    use std::arch::x86_64::*;
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

/// Counts `codes` into the histogram(s). Segmentation maps are mostly long runs
/// of one (target, prediction) pair, so each group of 64 codes is compared with
/// itself shifted by one (a vectorised compare giving a bit per run start); a
/// group with few runs adds each run's length once, a busy group (noise, random
/// labels) falls back to one increment per pixel.
#[inline(always)]
fn count_codes<const COPIES: usize>(codes: &[u32], hist: &mut [u64], cells: usize, avx2: bool) {
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
struct Grid {
    num_classes: usize,
    shift: u32,
    width: usize,
    cells: usize,
    copies: usize,
}

impl Grid {
    fn new(num_classes: usize) -> Option<Self> {
        let width = num_classes.checked_add(1)?.checked_next_power_of_two()?;
        let cells = num_classes.checked_add(2)?.checked_mul(width)?.checked_next_power_of_two()?;
        let copies = if cells <= INTERLEAVED_MAX_CELLS { 4 } else { 1 };
        Some(Grid { num_classes, shift: width.trailing_zeros(), width, cells, copies })
    }

    fn ignored_row(&self) -> u32 {
        (self.num_classes * self.width) as u32
    }

    fn invalid_row(&self) -> u32 {
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
        let avx2 = crate::simd::level() >= crate::simd::SimdLevel::Avx2;
        #[cfg(target_arch = "x86_64")]
        if let (true, Labels::U8(t), Labels::U8(p)) = (avx2, self.target, self.pred) {
            let range = self.start..self.end;
            // SAFETY: `avx2` is true only when the active SIMD level is AVX2 or
            // above, which never exceeds what the CPU supports (simd::level).
            unsafe { count_u8_pairs_avx2(&t[range.clone()], &p[range], self.ignore_index, g, self.hist) };
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

/// The uint8 / uint8 case (masks read from PNGs, predictions stored as uint8),
/// the most common and the one worth a kernel of its own: run starts come from
/// byte compares of the raw labels, 32 pixels per instruction, and a (target,
/// prediction) pair is turned into a histogram code only at a run start. A busy
/// group hands the next block to the general path (coded in full, counted
/// pixel by pixel where runs are short). Splitting a run where two raw pairs
/// share a code (two bad labels, say) only adds its length in two steps: the
/// counts are the same.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn count_u8_pairs_avx2(t: &[u8], p: &[u8], ignore_index: Option<i64>, g: Grid, hist: &mut [u64]) {
    use std::arch::x86_64::*;
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

fn count_private(target: Labels<'_>, pred: Labels<'_>, c: usize, ignore_index: Option<i64>, grid: Grid) -> Result<Vec<i64>> {
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
    if bad_targets || bad_predictions {
        return Err(first_bad_label(target, pred, c, ignore_index));
    }
    let mut out = Vec::with_capacity(c * c);
    for row in 0..c {
        out.extend((0..c).map(|col| cell(row, col) as i64));
    }
    Ok(out)
}

/// A zeroed `cells`-long vector, or an error when the allocator refuses it (a
/// huge `num_classes` must not abort the interpreter). Zeroed pages come from the
/// OS lazily, so an untouched corner of a big matrix costs nothing.
fn zeroed_matrix(num_classes: usize) -> Result<Vec<i64>> {
    let too_big = || {
        FerropsError::value(
            FUNCTION,
            "num_classes",
            "a class count whose [C, C] int64 matrix fits in memory",
            format!("{num_classes}"),
        )
    };
    let cells = num_classes.checked_mul(num_classes).ok_or_else(too_big)?;
    let layout = Layout::array::<i64>(cells).map_err(|_| too_big())?;
    if layout.size() == 0 {
        return Ok(Vec::new());
    }
    // SAFETY: the layout has a non-zero size.
    let ptr = unsafe { alloc_zeroed(layout) } as *mut i64;
    if ptr.is_null() {
        return Err(too_big());
    }
    // SAFETY: allocated by the global allocator with the layout of `cells` i64s,
    // all initialised (zero is a valid i64).
    Ok(unsafe { Vec::from_raw_parts(ptr, cells, cells) })
}

/// Row and column codes of a block for the shared-matrix path: the class, or `C`
/// for an ignored target, `C + 1` for a bad target, `C` for a bad prediction.
struct CountShared<'a> {
    target: Labels<'a>,
    pred: Labels<'a>,
    start: usize,
    end: usize,
    ignore_index: Option<i64>,
    num_classes: usize,
    matrix: &'a [AtomicI64],
}

impl SimdKernel for CountShared<'_> {
    /// Pixels with a bad label.
    type Output = u64;
    #[inline(always)]
    fn run(self) -> u64 {
        let c = self.num_classes;
        // Codes are u32: the shared path is only taken when C is too big for a
        // private histogram, but C itself stays far below 2^32 - 2 (the matrix
        // would not fit in memory otherwise; checked before).
        let (ignored, invalid) = (c as u32, c as u32 + 1);
        let mut rows = [0u32; BLOCK];
        let mut cols = [0u32; BLOCK];
        let mut bad = 0u64;
        let mut first = self.start;
        while first < self.end {
            let last = (first + BLOCK).min(self.end);
            let len = last - first;
            with_slice!(self.target, s => row_codes(
                &s[first..last], &mut rows[..len], Bounds::new(c, self.ignore_index), 0, ignored, invalid,
            ));
            cols[..len].fill(0);
            with_slice!(self.pred, s => add_column_codes(&s[first..last], &mut cols[..len], Bounds::new(c, None), c as u32));
            // One atomic add per run of equal (row, column) pairs: segmentation
            // maps are mostly long runs, and the atomics are the cost here.
            let mut add = |row: u32, col: u32, count: u64| {
                if row < ignored {
                    if col < ignored {
                        self.matrix[row as usize * c + col as usize].fetch_add(count as i64, Ordering::Relaxed);
                    } else {
                        bad += count;
                    }
                } else if row == invalid {
                    bad += count;
                }
            };
            let (mut run_row, mut run_col, mut run_len) = (rows[0], cols[0], 0u64);
            for (&row, &col) in rows[..len].iter().zip(&cols[..len]) {
                if row == run_row && col == run_col {
                    run_len += 1;
                } else {
                    add(run_row, run_col, run_len);
                    (run_row, run_col, run_len) = (row, col, 1);
                }
            }
            add(run_row, run_col, run_len);
            first = last;
        }
        bad
    }
}

fn count_shared(target: Labels<'_>, pred: Labels<'_>, c: usize, ignore_index: Option<i64>) -> Result<Vec<i64>> {
    if c > (u32::MAX - 2) as usize {
        return Err(FerropsError::value(
            FUNCTION,
            "num_classes",
            "a class count whose [C, C] int64 matrix fits in memory",
            format!("{c}"),
        ));
    }
    let mut out = zeroed_matrix(c)?;
    // SAFETY: AtomicI64 has the size and bit validity of i64 and, on the targets
    // where it exists with the same alignment as i64 (all 64-bit ones; checked at
    // compile time below), the same layout; the exclusive borrow of `out` lasts as
    // long as the shared atomic view.
    const _: () = assert!(std::mem::align_of::<AtomicI64>() == std::mem::align_of::<i64>());
    let matrix: &[AtomicI64] = unsafe { &*(out.as_mut_slice() as *mut [i64] as *const [AtomicI64]) };
    let n = target.len();
    let bad: u64 = (0..n.div_ceil(PIXELS_PER_TASK))
        .into_par_iter()
        .map(|task| {
            let start = task * PIXELS_PER_TASK;
            let end = (start + PIXELS_PER_TASK).min(n);
            dispatch(CountShared { target, pred, start, end, ignore_index, num_classes: c, matrix })
        })
        .sum();
    if bad != 0 {
        return Err(first_bad_label(target, pred, c, ignore_index));
    }
    Ok(out)
}

/// The error for the first pixel (in flat order) with a label outside `[0, C)`;
/// only called once counting has found one.
fn first_bad_label(target: Labels<'_>, pred: Labels<'_>, c: usize, ignore_index: Option<i64>) -> FerropsError {
    let valid = |v: i128| v >= 0 && v < c as i128;
    let ignore = ignore_index.map(i128::from);
    for i in 0..target.len() {
        let t = target.value(i);
        if Some(t) == ignore {
            continue;
        }
        if !valid(t) {
            let expected = match ignore_index {
                Some(ig) => format!("class labels in [0, {c}) or ignore_index={ig}"),
                None => format!("class labels in [0, {c})"),
            };
            return FerropsError::value(FUNCTION, "target", expected, format!("{t} at flat index {i}"));
        }
        let p = pred.value(i);
        if !valid(p) {
            return FerropsError::value(
                FUNCTION,
                "pred",
                format!("class labels in [0, {c}) where the target is not ignored"),
                format!("{p} at flat index {i}"),
            );
        }
    }
    unreachable!("first_bad_label is only called when a bad label was counted")
}

/// SEG-CM: the `[C, C]` confusion matrix (row-major, int64) of flat `target` and
/// `pred` label arrays of equal length. Pixels whose target equals
/// `ignore_index` are skipped whatever their prediction; every other target and
/// prediction must lie in `[0, C)`, else the first offending pixel is reported.
pub fn confusion_matrix(
    target: Labels<'_>,
    pred: Labels<'_>,
    num_classes: usize,
    ignore_index: Option<i64>,
) -> Result<Vec<i64>> {
    if num_classes == 0 {
        return Err(FerropsError::value(FUNCTION, "num_classes", "a class count >= 1", "0"));
    }
    if target.len() != pred.len() {
        return Err(FerropsError::value(
            FUNCTION,
            "pred",
            format!("as many labels as target ({})", target.len()),
            format!("{} labels", pred.len()),
        ));
    }
    let n = target.len();
    match Grid::new(num_classes) {
        Some(grid)
            if grid.cells <= INTERLEAVED_MAX_CELLS
                || (grid.cells <= PRIVATE_MAX_CELLS && grid.cells <= n / PIXELS_PER_PRIVATE_CELL) =>
        {
            count_private(target, pred, num_classes, ignore_index, grid)
        }
        _ => count_shared(target, pred, num_classes, ignore_index),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::{detected, set_level, SimdLevel};

    /// The definition, one pixel at a time.
    fn reference(target: &[i64], pred: &[i64], c: usize, ignore: Option<i64>) -> Vec<i64> {
        let mut m = vec![0i64; c * c];
        for (&t, &p) in target.iter().zip(pred) {
            if Some(t) != ignore {
                m[t as usize * c + p as usize] += 1;
            }
        }
        m
    }

    fn lcg_labels(n: usize, c: u64, seed: u64) -> Vec<i64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 33) % c) as i64
            })
            .collect()
    }

    #[test]
    fn small_matrix_by_hand() {
        let target: [u8; 6] = [0, 0, 1, 2, 2, 2];
        let pred: [i64; 6] = [0, 1, 1, 2, 0, 2];
        let m = confusion_matrix(Labels::U8(&target), Labels::I64(&pred), 3, None).unwrap();
        assert_eq!(m, vec![1, 1, 0, 0, 1, 0, 1, 0, 2]);
        // ignore_index inside [0, C): row 2 is skipped, its predictions too.
        let m = confusion_matrix(Labels::U8(&target), Labels::I64(&pred), 3, Some(2)).unwrap();
        assert_eq!(m, vec![1, 1, 0, 0, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn every_label_type_pair_matches_the_definition() {
        let c = 7usize;
        let t = lcg_labels(5000, 8, 1); // label 7 plays ignore_index
        let p = lcg_labels(5000, 7, 2);
        let want = reference(&t, &p, c, Some(7));
        macro_rules! typed {
            ($v:expr, $ty:ty, $variant:ident) => {
                Labels::$variant(&*Box::leak($v.iter().map(|&x| x as $ty).collect::<Vec<$ty>>().into_boxed_slice()))
            };
        }
        let all = |v: &Vec<i64>| -> Vec<Labels<'static>> {
            vec![
                typed!(v, u8, U8),
                typed!(v, i8, I8),
                typed!(v, u16, U16),
                typed!(v, i16, I16),
                typed!(v, u32, U32),
                typed!(v, i32, I32),
                typed!(v, u64, U64),
                typed!(v, i64, I64),
            ]
        };
        for tl in all(&t) {
            for pl in all(&p) {
                let got = confusion_matrix(tl, pl, c, Some(7)).unwrap();
                assert_eq!(got, want, "{} / {}", tl.dtype_name(), pl.dtype_name());
            }
        }
    }

    #[test]
    fn shared_and_private_paths_agree() {
        // 200 classes: 202 * 256 cells rounded up to 2^16; over 100k pixels (fewer
        // than 8 per cell) the shared path, over 600k private histograms.
        for (c, n) in [(200usize, 100_000usize), (200, 600_000), (1500, 50_000), (19, 100), (19, 300_000)] {
            let t = lcg_labels(n, c as u64 + 1, 3);
            let p = lcg_labels(n, c as u64, 4);
            let got = confusion_matrix(Labels::I64(&t), Labels::I64(&p), c, Some(c as i64)).unwrap();
            assert_eq!(got, reference(&t, &p, c, Some(c as i64)), "C = {c}");
            // Runs of equal pairs (as in segmentation maps), counted run by run.
            let runs = |v: &[i64]| -> Vec<i64> { v.iter().take(n / 37).flat_map(|&x| [x; 37]).collect() };
            let (t, mut p) = (runs(&t), runs(&p));
            p.iter_mut().step_by(101).for_each(|x| *x = (*x + 1) % c as i64);
            let got = confusion_matrix(Labels::I64(&t), Labels::I64(&p), c, Some(c as i64)).unwrap();
            assert_eq!(got, reference(&t, &p, c, Some(c as i64)), "C = {c}, runs");
        }
    }

    #[test]
    fn every_simd_level_and_thread_count_gives_the_same_matrix() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let t: Vec<u8> = lcg_labels(300_001, 20, 5).iter().map(|&v| if v == 19 { 255 } else { v as u8 }).collect();
        let p: Vec<u8> = lcg_labels(300_001, 19, 6).iter().map(|&v| v as u8).collect();
        let mut seen = Vec::new();
        for level in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
            set_level(level);
            for threads in [1, 2] {
                crate::parallel::set_num_threads(threads).unwrap();
                for c in [19usize, 700] {
                    seen.push((c, crate::parallel::install(|| {
                        confusion_matrix(Labels::U8(&t), Labels::U8(&p), c, Some(255)).unwrap()
                    })));
                }
            }
        }
        set_level(detected());
        let t64: Vec<i64> = t.iter().map(|&v| v as i64).collect();
        let p64: Vec<i64> = p.iter().map(|&v| v as i64).collect();
        for (c, m) in seen {
            assert_eq!(m, reference(&t64, &p64, c, Some(255)), "C = {c}");
        }
    }

    #[test]
    fn uint8_runs_at_every_level() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // Runs of random length (1..90) of random pairs, bad labels included, and
        // lengths that end mid-group.
        for (c, n, ignore) in [(19usize, 100_003usize, Some(255i64)), (7, 70_001, Some(3)), (7, 63, None), (3, 129, None)] {
            let mut s = c as u64;
            let mut next = move |m: u64| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 33) % m
            };
            let (mut t, mut p) = (Vec::with_capacity(n), Vec::with_capacity(n));
            while t.len() < n {
                let len = 1 + next(90) as usize;
                let tv = if next(10) == 0 { 255u8 } else { next(c as u64) as u8 };
                let pv = next(c as u64) as u8;
                t.extend(std::iter::repeat_n(tv, len));
                p.extend(std::iter::repeat_n(pv, len));
            }
            t.truncate(n);
            p.truncate(n);
            let t64: Vec<i64> = t.iter().map(|&v| v as i64).collect();
            let p64: Vec<i64> = p.iter().map(|&v| v as i64).collect();
            let first_bad = t.iter().position(|&v| Some(v as i64) != ignore && v as usize >= c);
            for level in [SimdLevel::Scalar, SimdLevel::Avx2] {
                set_level(level);
                let got = confusion_matrix(Labels::U8(&t), Labels::U8(&p), c, ignore);
                match first_bad {
                    None => assert_eq!(got.unwrap(), reference(&t64, &p64, c, ignore), "C = {c}, {level:?}"),
                    // 255 targets that are not ignored: the first one is reported.
                    Some(first) => {
                        assert!(got.unwrap_err().to_string().contains(&format!("255 at flat index {first}")));
                    }
                }
                let clean: Vec<u8> = t.iter().map(|&v| if v == 255 { 0 } else { v }).collect();
                let clean64: Vec<i64> = clean.iter().map(|&v| v as i64).collect();
                let got = confusion_matrix(Labels::U8(&clean), Labels::U8(&p), c, ignore).unwrap();
                assert_eq!(got, reference(&clean64, &p64, c, ignore), "C = {c}, {level:?}, clean");
            }
            set_level(detected());
        }
    }

    #[test]
    fn uint8_run_across_the_end_of_a_busy_block() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        // Busy labels up to just before the end of the block that the first busy
        // group hands to the general path (64 + 2048), then one long run across it.
        let busy = GROUP + BLOCK - 10;
        let mut s = 11u64;
        let mut next = move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) % 5) as u8
        };
        let (mut t, mut p): (Vec<u8>, Vec<u8>) = (0..busy).map(|_| (next(), next())).unzip();
        t.extend([3u8; 300]);
        p.extend([4u8; 300]);
        let t64: Vec<i64> = t.iter().map(|&v| v as i64).collect();
        let p64: Vec<i64> = p.iter().map(|&v| v as i64).collect();
        for level in [SimdLevel::Scalar, SimdLevel::Avx2] {
            set_level(level);
            let got = confusion_matrix(Labels::U8(&t), Labels::U8(&p), 5, None).unwrap();
            assert_eq!(got, reference(&t64, &p64, 5, None), "{level:?}");
        }
        set_level(detected());
    }

    #[test]
    fn bad_labels_are_reported_with_value_and_index() {
        let t: [i16; 4] = [0, 255, 1, -3];
        let p: [u8; 4] = [0, 9, 1, 0];
        // The ignored pixel's prediction (9) is not read.
        let err = confusion_matrix(Labels::I16(&t), Labels::U8(&p), 2, Some(255)).unwrap_err();
        assert!(err.to_string().contains("argument 'target'") && err.to_string().contains("-3 at flat index 3"), "{err}");
        let p2: [u8; 4] = [0, 0, 5, 0];
        let err = confusion_matrix(Labels::I16(&t[..3]), Labels::U8(&p2[..3]), 2, Some(255)).unwrap_err();
        assert!(err.to_string().contains("argument 'pred'") && err.to_string().contains("5 at flat index 2"), "{err}");
        let big: [u64; 1] = [u64::MAX];
        let err = confusion_matrix(Labels::U64(&big), Labels::U64(&[0]), 3, None).unwrap_err();
        assert!(err.to_string().contains(&u64::MAX.to_string()), "{err}");
        // Same on the shared path.
        let err = confusion_matrix(Labels::I16(&t), Labels::U8(&p), 1000, Some(255)).unwrap_err();
        assert!(err.to_string().contains("-3 at flat index 3"), "{err}");
    }

    #[test]
    fn run_starts_match_the_definition() {
        let mut s = 7u64;
        for _ in 0..200 {
            let g: Vec<u32> = (0..GROUP)
                .map(|_| {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((s >> 33) % 3) as u32
                })
                .collect();
            let previous = (s >> 40) as u32 % 3;
            let want = (0..GROUP).fold(0u64, |m, j| {
                let before = if j == 0 { previous } else { g[j - 1] };
                m | (((g[j] != before) as u64) << j)
            });
            let g: &[u32; GROUP] = g.as_slice().try_into().unwrap();
            assert_eq!(run_starts(g, previous, false), want);
            if detected() >= SimdLevel::Avx2 {
                assert_eq!(run_starts(g, previous, true), want);
            }
        }
    }

    #[test]
    fn edge_cases() {
        assert!(confusion_matrix(Labels::U8(&[]), Labels::U8(&[]), 0, None).is_err());
        assert!(confusion_matrix(Labels::U8(&[0, 1]), Labels::U8(&[0]), 2, None).is_err());
        assert_eq!(confusion_matrix(Labels::U8(&[]), Labels::I32(&[]), 3, None).unwrap(), vec![0; 9]);
        assert_eq!(confusion_matrix(Labels::U8(&[0, 0, 0]), Labels::U8(&[0, 0, 0]), 1, None).unwrap(), vec![3]);
        // ignore_index beyond the label type's range matches nothing.
        assert_eq!(confusion_matrix(Labels::I8(&[1]), Labels::I8(&[0]), 2, Some(1000)).unwrap(), vec![0, 0, 1, 0]);
        // C beyond the label type's range: every non-negative label is a class.
        assert_eq!(confusion_matrix(Labels::U8(&[255]), Labels::U8(&[0]), 300, None).unwrap()[255 * 300], 1);
        let err = confusion_matrix(Labels::U8(&[0]), Labels::U8(&[0]), usize::MAX / 2, None).unwrap_err();
        assert!(err.to_string().contains("fits in memory"), "{err}");
    }
}
