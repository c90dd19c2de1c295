//! The similarity of one unit's detections and ground truth that matching
//! compares with the IoU thresholds: pycocotools' `computeIoU` for
//! `iouType='bbox'`. Mask IoU (`segm`) and keypoint OKS are further functions of
//! the same shape here, chosen where `Scratch::load` (in `matching`) calls this one.

use super::oks::Oks;
use crate::boxes::geometry::coco_iou;
use crate::detection::coco::Packed as Record;

/// The similarity an evaluation matches with (its iouType).
#[derive(Debug, Clone)]
pub(super) enum Similarity {
    Bbox,
    Keypoints(Oks),
}

impl Similarity {
    /// This similarity with every value exact (what `ious` shows).
    pub(super) fn exact(&self) -> Similarity {
        match self {
            Similarity::Bbox => Similarity::Bbox,
            Similarity::Keypoints(oks) => Similarity::Keypoints(oks.exact()),
        }
    }
}

/// Appends the `[D, G]` row-major similarity of `det` and `gt` to `out`.
#[inline]
pub(super) fn similarities(kind: &Similarity, det: &[Record], gt: &[Record], out: &mut Vec<f64>) {
    match kind {
        Similarity::Bbox => bbox_ious(det, gt, out),
        Similarity::Keypoints(oks) => oks.similarities(det, gt, out),
    }
}

/// Appends the `[D, G]` row-major bbox IoU of `det` (best first) and `gt` (unit
/// order) to `out`; nothing when there is no ground truth. The crowd rule and the
/// `[x, y, w, h]` arithmetic are pycocotools' ([`coco_iou`]).
#[inline]
pub(super) fn bbox_ious(det: &[Record], gt: &[Record], out: &mut Vec<f64>) {
    if gt.is_empty() {
        return;
    }
    for d in det {
        out.extend(gt.iter().map(|g| coco_iou(&d.bbox, &g.bbox, g.crowd)));
    }
}
