//! The similarity of one unit's detections and ground truth that matching
//! compares with the IoU thresholds: pycocotools' `computeIoU` and
//! `computeOks`, one arm per iouType (bbox: box IoU; segm: mask IoU;
//! keypoints: OKS, in `oks`). Another iouType is one more [`IouType`] and one
//! more [`Similarity`] arm.

use super::oks::Oks;
use crate::boxes::geometry::coco_iou;
use crate::detection::coco::{MaskColumn, Packed as Record};
use crate::mask::prepared::{self, Decoded, PreparedMask};

/// pycocotools' `iouType`s that ferrops evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IouType {
    Bbox,
    Segm,
    Keypoints,
}

impl IouType {
    /// The type named as pycocotools names it (`"bbox"`, `"segm"`, `"keypoints"`).
    pub fn from_name(name: &str) -> Option<IouType> {
        match name {
            "bbox" => Some(IouType::Bbox),
            "segm" => Some(IouType::Segm),
            "keypoints" => Some(IouType::Keypoints),
            _ => None,
        }
    }
}

/// What the similarity of a unit reads beyond its records, kept by the
/// evaluation so that a unit can be recomputed on demand.
#[derive(Debug, Clone)]
pub(super) enum Similarity {
    Bbox,
    /// The masks of the ground truth and of the detections, by record index.
    Segm {
        gt: MaskColumn,
        dt: MaskColumn,
    },
    Keypoints(Oks),
}

impl Similarity {
    /// This similarity with every value exact (what `ious` shows): matching
    /// may give a value surely below the lowest threshold as 0 (keypoints).
    pub(super) fn exact(&self) -> Similarity {
        match self {
            Similarity::Keypoints(oks) => Similarity::Keypoints(oks.exact()),
            other => other.clone(),
        }
    }

    /// Appends the `[D, G]` row-major similarity of `det` (best first) and `gt`
    /// (unit order) to `out`; nothing when either side is empty.
    /// `decoded` is a reused buffer for the masks' runs.
    #[inline]
    pub(super) fn fill(&self, det: &[Record], gt: &[Record], out: &mut Vec<f64>, decoded: &mut Decoded) {
        if gt.is_empty() || det.is_empty() {
            return;
        }
        match self {
            Similarity::Bbox => bbox_ious(det, gt, out),
            Similarity::Segm { gt: gt_masks, dt: dt_masks } => mask_ious(det, gt, dt_masks, gt_masks, out, decoded),
            Similarity::Keypoints(oks) => oks.similarities(det, gt, out),
        }
    }
}

/// Box IoU: the crowd rule and the `[x, y, w, h]` arithmetic are pycocotools'
/// ([`coco_iou`]).
#[inline]
fn bbox_ious(det: &[Record], gt: &[Record], out: &mut Vec<f64>) {
    for d in det {
        out.extend(gt.iter().map(|g| coco_iou(&d.bbox, &g.bbox, g.crowd)));
    }
}

/// Mask IoU, pycocotools' `maskUtils.iou(d, g, iscrowd)` ([`prepared::iou`]).
/// Evaluation checked that every record of its units has a mask.
fn mask<'a>(column: &'a MaskColumn, r: &Record) -> &'a PreparedMask {
    column[r.row as usize].as_ref().expect("checked by evaluate")
}

fn mask_ious(
    det: &[Record],
    gt: &[Record],
    dt_masks: &MaskColumn,
    gt_masks: &MaskColumn,
    out: &mut Vec<f64>,
    decoded: &mut Decoded,
) {
    // pycocotools' box gate first; the masks of no pair past it are not
    // decoded. Then the unit's other masks decoded once (ground truth first,
    // then detections) and those pairs' IoUs.
    let (start, n) = (out.len(), gt.len());
    for d in det {
        let dm = mask(dt_masks, d);
        out.extend(gt.iter().map(|g| prepared::gate(dm, mask(gt_masks, g), g.crowd)));
    }
    let gates = &out[start..];
    let gt_needed = (0..n).map(|j| gates.iter().skip(j).step_by(n).any(|&v| v > 0.0));
    let dt_needed = gates.chunks_exact(n).map(|row| row.iter().any(|&v| v > 0.0));
    let masks = gt
        .iter()
        .zip(gt_needed)
        .map(|(g, needed)| needed.then(|| mask(gt_masks, g)))
        .chain(det.iter().zip(dt_needed).map(|(d, needed)| needed.then(|| mask(dt_masks, d))));
    decoded.decode(masks);
    for (i, (d, row)) in det.iter().zip(out[start..].chunks_exact_mut(n)).enumerate() {
        let dm = mask(dt_masks, d);
        for (j, (g, value)) in gt.iter().zip(row).enumerate() {
            if *value > 0.0 {
                *value = prepared::iou_past_gate(dm, mask(gt_masks, g), decoded, n + i, j, g.crowd);
            }
        }
    }
}
