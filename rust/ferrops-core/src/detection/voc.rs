//! PASCAL VOC average precision (SPEC DET-PR, DET-VOC07, DET-VOC10): the
//! per-class matching of the VOC devkit and its two AP rules.

use std::collections::HashMap;

use crate::boxes::geometry::pixel_iou;
use crate::ensure;
use crate::error::{FerropsError, Result};

/// DET-VOC07: mean over `t = 0, 0.1, ..., 1` (as `i * 0.1`, the devkit's
/// `np.arange`) of the best precision at recall >= t, 0 where none.
fn ap_11_point(recall: &[f64], precision: &[f64]) -> f64 {
    let mut ap = 0.0;
    for i in 0..11 {
        let t = i as f64 * 0.1;
        let best = recall
            .iter()
            .zip(precision)
            .filter(|(r, _)| **r >= t)
            .map(|(_, p)| *p)
            .fold(None, |acc: Option<f64>, p| Some(acc.map_or(p, |a| if p > a { p } else { a })));
        ap += best.unwrap_or(0.0) / 11.0;
    }
    ap
}

/// DET-VOC10: area under the precision envelope, summed where recall changes.
fn ap_all_point(recall: &[f64], precision: &[f64]) -> f64 {
    let n = recall.len();
    let mut mrec = Vec::with_capacity(n + 2);
    mrec.push(0.0);
    mrec.extend_from_slice(recall);
    mrec.push(1.0);
    let mut mpre = Vec::with_capacity(n + 2);
    mpre.push(0.0);
    mpre.extend_from_slice(precision);
    mpre.push(0.0);
    for i in (1..mpre.len()).rev() {
        if mpre[i] > mpre[i - 1] {
            mpre[i - 1] = mpre[i];
        }
    }
    (0..mrec.len() - 1).filter(|&i| mrec[i + 1] != mrec[i]).map(|i| (mrec[i + 1] - mrec[i]) * mpre[i + 1]).sum()
}

/// VOC average precision of one class from its recall/precision curve.
pub fn voc_ap(recall: &[f64], precision: &[f64], use_07_metric: bool) -> Result<f64> {
    ensure!(
        recall.len() == precision.len(),
        FerropsError::value(
            "voc_ap",
            "precision",
            format!("{} values, as many as recall", recall.len()),
            precision.len().to_string(),
        )
    );
    ensure!(
        !recall.iter().chain(precision).any(|v| v.is_nan()),
        FerropsError::value("voc_ap", "recall", "values without NaN", "NaN")
    );
    Ok(if use_07_metric { ap_11_point(recall, precision) } else { ap_all_point(recall, precision) })
}

/// One class's detections and ground truth; boxes `[N, 4]` xyxy row-major.
pub struct VocClass<'a> {
    pub det_image_ids: &'a [i64],
    pub det_boxes: &'a [f64],
    pub det_scores: &'a [f64],
    pub gt_image_ids: &'a [i64],
    pub gt_boxes: &'a [f64],
    pub gt_difficult: &'a [bool],
}

/// DET-PR with VOC matching: detections by score (highest first, ties in input
/// order); each is compared with the ground truth of highest IoU in its image
/// (the first on ties); IoU > threshold and not yet taken: TP; taken: FP;
/// difficult: neither; below the threshold or an image without ground truth: FP.
/// Returns `(recall, precision)` per detection in that order; recall is NaN when
/// no ground truth is non-difficult.
pub fn voc_eval(class: &VocClass, iou_threshold: f64, pixel_offset: f64) -> Result<(Vec<f64>, Vec<f64>)> {
    let (nd, ng) = (class.det_image_ids.len(), class.gt_image_ids.len());
    ensure!(
        class.det_boxes.len() == 4 * nd && class.det_scores.len() == nd,
        FerropsError::value("voc_eval", "det_boxes", format!("[{nd}, 4] boxes and {nd} scores"), "other lengths")
    );
    ensure!(
        class.gt_boxes.len() == 4 * ng && class.gt_difficult.len() == ng,
        FerropsError::value(
            "voc_eval",
            "gt_boxes",
            format!("[{ng}, 4] boxes and {ng} difficult flags"),
            "other lengths",
        )
    );
    if let Some(i) = class.det_scores.iter().position(|s| s.is_nan()) {
        return Err(FerropsError::value("voc_eval", "det_scores", "scores without NaN", format!("NaN at index {i}")));
    }
    let mut by_image: HashMap<i64, Vec<usize>> = HashMap::new();
    for (g, id) in class.gt_image_ids.iter().enumerate() {
        by_image.entry(*id).or_default().push(g);
    }
    let positives = class.gt_difficult.iter().filter(|d| !**d).count() as f64;
    let mut order: Vec<usize> = (0..nd).collect();
    order.sort_by(|&a, &b| class.det_scores[b].partial_cmp(&class.det_scores[a]).unwrap_or(std::cmp::Ordering::Equal));
    let mut taken = vec![false; ng];
    let (mut tp, mut fp) = (0.0f64, 0.0f64);
    let (mut recall, mut precision) = (Vec::with_capacity(nd), Vec::with_capacity(nd));
    for d in order {
        let dbox = &class.det_boxes[4 * d..4 * d + 4];
        let mut best: Option<(f64, usize)> = None;
        for &g in by_image.get(&class.det_image_ids[d]).map_or(&[][..], |v| v.as_slice()) {
            let iou = pixel_iou(dbox, &class.gt_boxes[4 * g..4 * g + 4], pixel_offset);
            if best.is_none_or(|(b, _)| iou > b) {
                best = Some((iou, g));
            }
        }
        match best {
            Some((iou, g)) if iou > iou_threshold => {
                if !class.gt_difficult[g] {
                    if taken[g] {
                        fp += 1.0;
                    } else {
                        taken[g] = true;
                        tp += 1.0;
                    }
                }
            }
            _ => fp += 1.0,
        }
        recall.push(tp / positives);
        precision.push(tp / (tp + fp).max(f64::EPSILON));
    }
    Ok((recall, precision))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_ap() {
        // recall 0.5, 0.5, 1.0 with precision 1, 0.5, 2/3.
        let r = [0.5, 0.5, 1.0];
        let p = [1.0, 0.5, 2.0 / 3.0];
        assert_eq!(voc_ap(&r, &p, false).unwrap(), 0.5 * 1.0 + 0.5 * (2.0 / 3.0));
        let expected: f64 = (0..11).map(|i| if i <= 5 { 1.0 / 11.0 } else { (2.0 / 3.0) / 11.0 }).sum();
        assert!((voc_ap(&r, &p, true).unwrap() - expected).abs() < 1e-15);
        assert_eq!(voc_ap(&[], &[], false).unwrap(), 0.0);
    }

    #[test]
    fn difficult_neither_tp_nor_fp() {
        let class = VocClass {
            det_image_ids: &[1, 1, 1],
            det_boxes: &[0.0, 0.0, 10.0, 10.0, 20.0, 20.0, 30.0, 30.0, 0.0, 0.0, 10.0, 10.0],
            det_scores: &[0.9, 0.8, 0.7],
            gt_image_ids: &[1, 1],
            gt_boxes: &[0.0, 0.0, 10.0, 10.0, 20.0, 20.0, 30.0, 30.0],
            gt_difficult: &[false, true],
        };
        let (rec, prec) = voc_eval(&class, 0.5, 1.0).unwrap();
        assert_eq!(rec, vec![1.0, 1.0, 1.0]);
        assert_eq!(prec, vec![1.0, 1.0, 0.5]);
    }
}
