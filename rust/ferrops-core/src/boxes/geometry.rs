//! The geometry of axis-aligned boxes, written once: area, intersection, union,
//! IoU, the enclosing box and the centre distance used by GIoU/DIoU/CIoU.
//!
//! Every function is `#[inline(always)]` and written in the exact operation order
//! its callers had inline, so the hot loops that call them (IoU matrices, losses,
//! NMS) compile to the same code and give the same bits. Boxes are
//! `[x1, y1, x2, y2]` unless a function says otherwise; `min_fast`/`max_fast`
//! assume no NaN (box kernels check their inputs first).
//!
//! Two callers follow reference implementations whose arithmetic really differs,
//! and have named functions here rather than a copy in their modules:
//! [`coco_iou`] (pycocotools' `bbIou`: `[x, y, w, h]` boxes, 0 for disjoint boxes
//! before any division, the crowd rule) and [`pixel_iou`] (the VOC devkit's `+ 1`
//! pixel widths).

use crate::Real;

/// `(x2 - x1) * (y2 - y1)`.
#[inline(always)]
pub fn area<T: Real>(b: [T; 4]) -> T {
    (b[2] - b[0]) * (b[3] - b[1])
}

/// The area of `a ∩ b`, 0 when they do not overlap.
#[inline(always)]
pub fn intersection<T: Real>(a: [T; 4], b: [T; 4]) -> T {
    let w = (a[2].min_fast(b[2]) - a[0].max_fast(b[0])).max_fast(T::ZERO);
    let h = (a[3].min_fast(b[3]) - a[1].max_fast(b[1])).max_fast(T::ZERO);
    w * h
}

/// The area of `a ∪ b` from the two areas and their intersection.
#[inline(always)]
pub fn union<T: Real>(area_a: T, area_b: T, inter: T) -> T {
    area_a + area_b - inter
}

/// IoU with both areas already known (kernels that compare one box with many
/// compute each area once): `inter / (area_a + area_b - inter)`, torchvision's
/// order. Two degenerate boxes with a zero union give NaN, as there.
#[inline(always)]
pub fn iou_with_areas<T: Real>(a: [T; 4], area_a: T, b: [T; 4], area_b: T) -> T {
    let inter = intersection(a, b);
    inter / union(area_a, area_b, inter)
}

/// IoU of two boxes (BOX-IOU): [`iou_with_areas`] with the areas computed after
/// the intersection, the order the NMS kernels have always used.
#[inline(always)]
pub fn iou<T: Real>(a: [T; 4], b: [T; 4]) -> T {
    let inter = intersection(a, b);
    inter / union(area(a), area(b), inter)
}

/// Width and height of the smallest box enclosing `a` and `b`.
#[inline(always)]
pub fn enclosing_size<T: Real>(a: [T; 4], b: [T; 4]) -> (T, T) {
    let w = a[2].max_fast(b[2]) - a[0].min_fast(b[0]);
    let h = a[3].max_fast(b[3]) - a[1].min_fast(b[1]);
    (w, h)
}

/// Squared distance between the centres of `a` and `b`. Each centre is halved
/// before the difference (`(x1 + x2) * 0.5`), torchvision's order.
#[inline(always)]
pub fn centre_distance_squared<T: Real>(a: [T; 4], b: [T; 4]) -> T {
    let half = T::from_f64(0.5);
    let dx = (a[0] + a[2]) * half - (b[0] + b[2]) * half;
    let dy = (a[1] + a[3]) * half - (b[1] + b[3]) * half;
    dx * dx + dy * dy
}

/// `atan(w / h)`, the box's angle that CIoU compares.
#[inline(always)]
pub fn aspect_angle<T: Real>(b: [T; 4]) -> T {
    ((b[2] - b[0]) / (b[3] - b[1])).atan()
}

/// 4 / pi^2, the CIoU aspect-ratio weight.
const CIOU_V_SCALE: f64 = 4.0 / (std::f64::consts::PI * std::f64::consts::PI);

/// CIoU's aspect-ratio penalty `alpha * v`, with `v = 4 / pi^2 * d^2` for the
/// difference `d` of the two boxes' [`aspect_angle`]s and
/// `alpha = v / (1 - iou + v + eps)`.
#[inline(always)]
pub fn ciou_aspect_penalty<T: Real>(iou: T, angle_difference: T, eps: T) -> T {
    let d = angle_difference;
    let v = T::from_f64(CIOU_V_SCALE) * d * d;
    let alpha = v / (T::ONE - iou + v + eps);
    alpha * v
}

/// pycocotools' bbox IoU (`maskApi.c` `bbIou`) of a detection `d` and a ground
/// truth `g`, both `[x, y, w, h]`. It differs from [`iou`] on purpose, to match
/// pycocotools bit for bit: right edges are `x + w` and areas `w * h` as given
/// (not recomputed from corners); disjoint or touching boxes give 0 before any
/// division (so two empty boxes give 0, not NaN); and against crowd ground truth
/// the union is the detection's own area (a detection inside a crowd region
/// scores IoU 1).
#[inline]
pub fn coco_iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    let w = (d[2] + d[0]).min(g[2] + g[0]) - d[0].max(g[0]);
    if w <= 0.0 {
        return 0.0;
    }
    let h = (d[3] + d[1]).min(g[3] + g[1]) - d[1].max(g[1]);
    if h <= 0.0 {
        return 0.0;
    }
    let inter = w * h;
    let det_area = d[2] * d[3];
    let union = if crowd { det_area } else { det_area + g[2] * g[3] - inter };
    inter / union
}

/// The PASCAL VOC devkit's IoU of `d` and `g` (xyxy): widths and heights are
/// `x2 - x1 + pixel_offset`. With `pixel_offset = 1` boxes are inclusive pixel
/// index ranges (the old devkit's convention: a box from pixel 0 to pixel 9 is 10
/// wide); 0 gives the continuous IoU of [`iou`]. A separate function rather than
/// an offset in [`intersection`], because adding even a zero offset is an extra
/// rounding step the continuous kernels must not take.
#[inline]
pub fn pixel_iou(d: &[f64], g: &[f64], pixel_offset: f64) -> f64 {
    let iw = (d[2].min(g[2]) - d[0].max(g[0]) + pixel_offset).max(0.0);
    let ih = (d[3].min(g[3]) - d[1].max(g[1]) + pixel_offset).max(0.0);
    let inter = iw * ih;
    let union = (d[2] - d[0] + pixel_offset) * (d[3] - d[1] + pixel_offset)
        + (g[2] - g[0] + pixel_offset) * (g[3] - g[1] + pixel_offset)
        - inter;
    inter / union
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_overlapping_and_disjoint_boxes() {
        let (a, b) = ([0.0f64, 0.0, 2.0, 2.0], [1.0f64, 1.0, 3.0, 3.0]);
        assert_eq!(area(a), 4.0);
        assert_eq!(intersection(a, b), 1.0);
        assert_eq!(iou(a, b), 1.0 / 7.0);
        assert_eq!(iou(a, [5.0, 5.0, 6.0, 6.0]), 0.0);
        assert_eq!(enclosing_size(a, b), (3.0, 3.0));
        assert_eq!(centre_distance_squared(a, b), 2.0);
        assert!(iou([1.0f32, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]).is_nan());
    }

    #[test]
    fn crowd_iou_uses_detection_area() {
        assert_eq!(coco_iou(&[10.0, 10.0, 5.0, 5.0], &[0.0, 0.0, 100.0, 100.0], true), 1.0);
        assert_eq!(coco_iou(&[0.0, 0.0, 2.0, 2.0], &[1.0, 0.0, 2.0, 2.0], false), 2.0 / 6.0);
        assert_eq!(coco_iou(&[0.0, 0.0, 1.0, 1.0], &[1.0, 0.0, 2.0, 2.0], false), 0.0);
        assert_eq!(coco_iou(&[1.0, 1.0, 0.0, 0.0], &[1.0, 1.0, 0.0, 0.0], false), 0.0);
    }

    #[test]
    fn pixel_offset_widens_boxes() {
        let (d, g) = ([0.0, 0.0, 9.0, 9.0], [0.0, 0.0, 9.0, 4.0]);
        assert_eq!(pixel_iou(&d, &g, 1.0), 50.0 / 100.0);
        assert_eq!(pixel_iou(&d, &g, 0.0), iou(d, g));
    }
}
