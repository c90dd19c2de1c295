//! Box kernels (SPEC section 1): areas, format conversion, the IoU family as
//! matrices and as elementwise losses, and the NMS variants.
//!
//! Boxes are row-major `[N, 4]` slices in `(x1, y1, x2, y2)` order unless a format
//! says otherwise. Policy for invalid boxes (BOX-AREA): every kernel that reads xyxy
//! boxes rejects non-finite coordinates and inverted boxes (`x2 < x1` or `y2 < y1`)
//! with a `ValueError` naming the first bad box. Zero-width boxes are valid.

mod fusion;
pub mod geometry;
mod iou;
mod nms;
mod rotated;

pub use fusion::{non_maximum_weighted, numpy_sum, weighted_boxes_fusion, ConfType};
pub use iou::pairwise_iou_batched;
pub use iou::{box_iou_loss, pairwise_iou, IouKind, IouLoss, Reduction};
pub use nms::{batched_nms, matrix_nms, nms, soft_nms, MatrixKernel, SoftMethod};
pub use rotated::{batched_nms_rotated, box_iou_rotated, check_rotated_boxes, nms_rotated, Convention, OverlapMode};

use rayon::prelude::*;

use crate::buffer;
use crate::ensure;
use crate::error::{FerropsError, Result};
use crate::simd::{dispatch, SimdKernel};
use crate::Real;

/// Rows per parallel work item in row-wise box kernels; fixed so that the split is
/// the same for any thread count.
pub(crate) const ROWS_PER_TASK: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxFormat {
    Xyxy,
    Xywh,
    Cxcywh,
}

impl BoxFormat {
    pub fn parse(function: &'static str, argument: &'static str, name: &str) -> Result<Self> {
        match name {
            "xyxy" => Ok(BoxFormat::Xyxy),
            "xywh" => Ok(BoxFormat::Xywh),
            "cxcywh" => Ok(BoxFormat::Cxcywh),
            other => {
                Err(FerropsError::value(function, argument, "one of 'xyxy', 'xywh', 'cxcywh'", format!("'{other}'")))
            }
        }
    }
}

/// Checks that `boxes` holds whole rows of 4 and returns the row count.
pub fn box_count(function: &'static str, argument: &'static str, boxes_len: usize) -> Result<usize> {
    ensure!(
        boxes_len.is_multiple_of(4),
        FerropsError::value(
            function,
            argument,
            "a [N, 4] array of boxes",
            format!("{boxes_len} values, not a multiple of 4"),
        )
    );
    Ok(boxes_len / 4)
}

fn describe_box<T: Real>(index: usize, b: &[T]) -> String {
    format!("box {index} = [{}, {}, {}, {}]", b[0], b[1], b[2], b[3])
}

/// Every coordinate finite; returns the row count.
pub fn check_finite_boxes<T: Real>(function: &'static str, argument: &'static str, boxes: &[T]) -> Result<usize> {
    let n = box_count(function, argument, boxes.len())?;
    if let Some(i) = boxes.chunks_exact(4).position(|b| !b.iter().all(|v| v.is_finite())) {
        return Err(FerropsError::value(
            function,
            argument,
            "finite box coordinates",
            describe_box(i, &boxes[4 * i..4 * i + 4]),
        ));
    }
    Ok(n)
}

/// Are all boxes finite with `x1 <= x2` and `y1 <= y2`? Branch-free folds, so the
/// common all-valid case runs at memory speed; the error path finds the culprit.
struct AllValidXyxy<'a, T>(&'a [T]);

impl<T: Real> SimdKernel for AllValidXyxy<'_, T> {
    type Output = bool;
    #[inline(always)]
    fn run(self) -> bool {
        let finite = self.0.iter().fold(true, |ok, v| ok & (v.abs() < T::INFINITY));
        let ordered = self.0.chunks_exact(4).fold(true, |ok, b| ok & (b[0] <= b[2]) & (b[1] <= b[3]));
        finite & ordered
    }
}

/// Finite xyxy boxes with `x1 <= x2` and `y1 <= y2`; returns the row count.
pub fn check_xyxy_boxes<T: Real>(function: &'static str, argument: &'static str, boxes: &[T]) -> Result<usize> {
    let n = box_count(function, argument, boxes.len())?;
    if dispatch(AllValidXyxy(boxes)) {
        return Ok(n);
    }
    let bad = |b: &[T]| !(b.iter().all(|v| v.is_finite()) && b[0] <= b[2] && b[1] <= b[3]);
    let i = boxes.chunks_exact(4).position(bad).expect("the fold found an invalid box");
    Err(FerropsError::value(
        function,
        argument,
        "finite (x1, y1, x2, y2) boxes with x1 <= x2 and y1 <= y2",
        describe_box(i, &boxes[4 * i..4 * i + 4]),
    ))
}

/// Scores finite, one per box.
pub fn check_scores<T: Real>(function: &'static str, scores: &[T], n_boxes: usize) -> Result<()> {
    ensure!(
        scores.len() == n_boxes,
        FerropsError::value(
            function,
            "scores",
            format!("one score per box ({n_boxes})"),
            format!("{} scores", scores.len()),
        )
    );
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Err(FerropsError::value(function, "scores", "finite scores", format!("scores[{i}] = {}", scores[i])));
    }
    Ok(())
}

/// A threshold in [0, 1].
pub fn check_unit_interval(function: &'static str, argument: &'static str, value: f64) -> Result<()> {
    ensure!(
        (0.0..=1.0).contains(&value),
        FerropsError::value(function, argument, "a value in [0, 1]", format!("{value}"))
    );
    Ok(())
}

/// BOX-AREA: `(x2 - x1) * (y2 - y1)` per box.
pub fn box_area<T: Real>(boxes: &[T]) -> Result<Vec<T>> {
    let n = check_xyxy_boxes("box_area", "boxes", boxes)?;
    Ok(buffer::filled(n, |out| {
        out.par_chunks_mut(ROWS_PER_TASK).zip(boxes.par_chunks(4 * ROWS_PER_TASK)).for_each(|(out, rows)| {
            for (o, b) in out.iter_mut().zip(rows.chunks_exact(4)) {
                o.write(geometry::area([b[0], b[1], b[2], b[3]]));
            }
        })
    }))
}

/// BOX-CONVERT between xyxy, xywh and cxcywh.
pub fn box_convert<T: Real>(boxes: &[T], in_fmt: BoxFormat, out_fmt: BoxFormat) -> Result<Vec<T>> {
    check_finite_boxes("box_convert", "boxes", boxes)?;
    let half = T::from_f64(0.5);
    let to_xyxy = |b: &[T]| -> [T; 4] {
        match in_fmt {
            BoxFormat::Xyxy => [b[0], b[1], b[2], b[3]],
            BoxFormat::Xywh => [b[0], b[1], b[0] + b[2], b[1] + b[3]],
            BoxFormat::Cxcywh => {
                let (hw, hh) = (half * b[2], half * b[3]);
                [b[0] - hw, b[1] - hh, b[0] + hw, b[1] + hh]
            }
        }
    };
    let from_xyxy = |b: [T; 4]| -> [T; 4] {
        match out_fmt {
            BoxFormat::Xyxy => b,
            BoxFormat::Xywh => [b[0], b[1], b[2] - b[0], b[3] - b[1]],
            BoxFormat::Cxcywh => [(b[0] + b[2]) * half, (b[1] + b[3]) * half, b[2] - b[0], b[3] - b[1]],
        }
    };
    if in_fmt == out_fmt {
        return Ok(boxes.to_vec());
    }
    Ok(buffer::filled(boxes.len(), |out| {
        out.par_chunks_mut(4 * ROWS_PER_TASK).zip(boxes.par_chunks(4 * ROWS_PER_TASK)).for_each(|(out, rows)| {
            for (o, b) in out.chunks_exact_mut(4).zip(rows.chunks_exact(4)) {
                for (slot, v) in o.iter_mut().zip(from_xyxy(to_xyxy(b))) {
                    slot.write(v);
                }
            }
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn area_and_convert_round_trip() {
        let boxes = [0.0f64, 0.0, 2.0, 3.0, 1.0, 1.0, 1.0, 5.0];
        assert_eq!(box_area(&boxes).unwrap(), vec![6.0, 0.0]);
        for fmt in [BoxFormat::Xywh, BoxFormat::Cxcywh] {
            let there = box_convert(&boxes, BoxFormat::Xyxy, fmt).unwrap();
            assert_eq!(box_convert(&there, fmt, BoxFormat::Xyxy).unwrap(), boxes.to_vec());
        }
        assert_eq!(box_convert(&boxes, BoxFormat::Xyxy, BoxFormat::Cxcywh).unwrap()[..4], [1.0, 1.5, 2.0, 3.0]);
    }

    #[test]
    fn invalid_boxes_are_named() {
        let err = box_area(&[0.0f32, 0.0, 1.0, 1.0, 2.0, 0.0, 1.0, 1.0]).unwrap_err();
        assert!(err.to_string().contains("box 1 = [2, 0, 1, 1]"), "{err}");
        assert!(box_area(&[0.0f32, f32::NAN, 1.0, 1.0]).is_err());
        assert!(box_area(&[0.0f32; 5]).is_err());
        assert!(BoxFormat::parse("box_convert", "in_fmt", "xyz").is_err());
    }
}
