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
//!
//! Files: `labels.rs` (label types, codes), `histogram.rs` (private histograms,
//! run counting), `shared.rs` (one atomic matrix), `avx2.rs` (the AVX2 code),
//! `tests.rs`.

#[cfg(target_arch = "x86_64")]
mod avx2;
mod histogram;
mod labels;
mod shared;
#[cfg(test)]
mod tests;

pub use labels::{Label, Labels};

use crate::ensure;
use crate::error::{FerropsError, Result};
use histogram::{count_private, Grid};
use shared::count_shared;

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
    ensure!(num_classes != 0, FerropsError::value(FUNCTION, "num_classes", "a class count >= 1", "0"));
    ensure!(
        target.len() == pred.len(),
        FerropsError::value(FUNCTION, "pred", format!("as many labels as target ({})", target.len()), format!("{} labels", pred.len()))
    );
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
