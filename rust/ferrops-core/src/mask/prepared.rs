//! Masks prepared once for many IoUs (`segm` evaluation, SPEC DET-COCO-SEGM):
//! each keeps its size, its box (pycocotools' gate), its area and its 1-runs as
//! pixel intervals, so that an IoU is a merge of two short interval lists
//! restricted to the columns both boxes cover, never a dense decode.

use super::rle::{area, to_bbox};
use super::Rle;
use crate::boxes::geometry::coco_iou;

/// One mask as the IoU reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedMask {
    pub h: u32,
    pub w: u32,
    /// pycocotools' `toBbox` of the mask.
    pub bbox: [f64; 4],
    /// pycocotools' `area` of the mask.
    pub area: u32,
    /// The 1-runs as `[start, end)` column-major pixel intervals, in order.
    pub ones: Box<[(u32, u32)]>,
}

impl PreparedMask {
    pub fn new(rle: &Rle) -> PreparedMask {
        let mut ones = Vec::with_capacity(rle.counts.len() / 2);
        let mut start = 0u32;
        for (j, &count) in rle.counts.iter().enumerate() {
            if j % 2 == 1 && count > 0 {
                ones.push((start, start + count));
            }
            start += count;
        }
        PreparedMask { h: rle.h, w: rle.w, bbox: to_bbox(rle), area: area(rle), ones: ones.into_boxed_slice() }
    }
}

/// Pixels in both masks among `[from, to)`, outside which one of them is 0.
fn intersection(a: &[(u32, u32)], b: &[(u32, u32)], from: u32, to: u32) -> u64 {
    let (mut i, mut j) = (a.partition_point(|r| r.1 <= from), b.partition_point(|r| r.1 <= from));
    let mut total = 0u64;
    while i < a.len() && j < b.len() {
        let (ra, rb) = (a[i], b[j]);
        if ra.0 >= to || rb.0 >= to {
            break;
        }
        let (lo, hi) = (ra.0.max(rb.0), ra.1.min(rb.1));
        if lo < hi {
            total += u64::from(hi - lo);
        }
        if ra.1 <= rb.1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    total
}

/// pycocotools' `rleIou` of a detection and a ground truth: the box IoU when it
/// is not positive (0), -1 for masks of different sizes, 0 when the masks do not
/// meet, else intersection over union, the union being the detection's area for
/// crowd ground truth. The same integers divided, so the same double.
pub fn iou(d: &PreparedMask, g: &PreparedMask, crowd: bool) -> f64 {
    let gate = coco_iou(&d.bbox, &g.bbox, crowd);
    if gate <= 0.0 {
        return gate;
    }
    if (d.h, d.w) != (g.h, g.w) {
        return -1.0;
    }
    // The columns both boxes cover (whole numbers: the boxes come from runs).
    let h = u64::from(d.h);
    let first_column = d.bbox[0].max(g.bbox[0]) as u64;
    let end_column = (d.bbox[0] + d.bbox[2]).min(g.bbox[0] + g.bbox[2]) as u64;
    let pixels = h * u64::from(d.w);
    let (from, to) = ((first_column * h).min(pixels) as u32, (end_column * h).min(pixels) as u32);
    let inter = intersection(&d.ones, &g.ones, from, to);
    if inter == 0 {
        return 0.0;
    }
    let union = if crowd { u64::from(d.area) } else { u64::from(d.area) + u64::from(g.area) - inter };
    inter as f64 / union as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::rle;
    use crate::test_rng::Lcg;

    #[test]
    fn prepared_iou_is_the_mask_module_s() {
        let mut rng = Lcg::new(7);
        let (h, w) = (13u32, 11u32);
        let masks: Vec<Rle> = (0..24)
            .map(|k| {
                let mut data = vec![0u8; (h * w) as usize];
                let (x0, y0) = (rng.below(u64::from(w)) as usize, rng.below(u64::from(h)) as usize);
                let (x1, y1) = (x0 + rng.below(6) as usize, y0 + rng.below(7) as usize);
                for x in x0..x1.min(w as usize) {
                    for y in y0..y1.min(h as usize) {
                        data[x * h as usize + y] = u8::from(k % 5 != 0 || rng.below(2) == 0);
                    }
                }
                rle::encode(&data, u64::from(h), u64::from(w), 1, rle::RunRule::ValueChange).unwrap().remove(0)
            })
            .collect();
        let prepared: Vec<PreparedMask> = masks.iter().map(PreparedMask::new).collect();
        for crowd in [false, true] {
            let flags = vec![crowd; masks.len()];
            let expected = rle::iou(&masks, &masks, &flags).unwrap();
            for (i, d) in prepared.iter().enumerate() {
                for (j, g) in prepared.iter().enumerate() {
                    assert_eq!(iou(d, g, crowd).to_bits(), expected[i * masks.len() + j].to_bits(), "{i} {j}");
                }
            }
        }
    }
}
