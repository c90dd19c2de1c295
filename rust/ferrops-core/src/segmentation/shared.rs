//! Counting into the one output matrix with relaxed atomic increments (still
//! exact), the path for matrices that are large next to the input (many
//! classes, few pixels), where private copies would cost more to zero and merge
//! than the counting itself.

use std::alloc::{alloc_zeroed, Layout};
use std::sync::atomic::{AtomicI64, Ordering};

use rayon::prelude::*;

use super::labels::{add_column_codes, row_codes, with_slice, Bounds, Labels};
use super::{first_bad_label, BLOCK, FUNCTION, PIXELS_PER_TASK};
use crate::ensure;
use crate::error::{FerropsError, Result};
use crate::simd::{dispatch, SimdKernel};

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
    ensure!(!ptr.is_null(), too_big());
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

pub(super) fn count_shared(target: Labels<'_>, pred: Labels<'_>, c: usize, ignore_index: Option<i64>) -> Result<Vec<i64>> {
    ensure!(
        c <= (u32::MAX - 2) as usize,
        FerropsError::value(FUNCTION, "num_classes", "a class count whose [C, C] int64 matrix fits in memory", format!("{c}"))
    );
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
    ensure!(bad == 0, first_bad_label(target, pred, c, ignore_index));
    Ok(out)
}
