//! The similarity of one unit's detections and ground truth that matching
//! compares with the IoU thresholds: pycocotools' `computeIoU` for
//! `iouType='bbox'`. Mask IoU (`segm`) and keypoint OKS are further functions of
//! the same shape here, chosen where `Scratch::load` (in `matching`) calls this one.

use crate::boxes::geometry::coco_iou;
use crate::detection::coco::Packed as Record;

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
