//! lvis-api's `LVISResults`: detection results checked against their ground
//! truth and cut as lvis-api cuts them: at most `max_dets` per image (the best
//! scores of an image that has more), and, for Fixed AP (Dave et al. 2021), at
//! most `max_dets_per_cat` per category over the whole set, as that paper's
//! reference script cuts them before `LVISResults(..., max_dets=-1)`.
//! What `segm` evaluation reads (the segmentations as written, the masks of
//! mask results) follows each kept record.

use std::sync::{Arc, OnceLock};

use rustc_hash::FxHashMap as HashMap;

use crate::detection::coco::{Annotations, CocoDataset, Packed};
use crate::error::{FerropsError, Result};

/// Results as `LVISResults` holds them: the records kept, renumbered `1..=M`,
/// and where each stood in the input (for error messages and the records' views).
#[derive(Debug, Clone, Default)]
pub struct LvisResults {
    pub dataset: CocoDataset,
    /// Per kept record, its index in the input list.
    pub source_rows: Vec<u32>,
}

/// The cuts `LVISResults` applies; `None` keeps every detection.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResultLimits {
    /// lvis-api's `max_dets` (per image; 300 by default there).
    pub per_image: Option<usize>,
    /// Fixed AP's top-k per category (10,000 in the paper).
    pub per_category: Option<usize>,
}

/// Positions grouped by `key` in order of first appearance; groups longer than
/// `limit` sorted by score, best first (stable), and cut to `limit`. With
/// `sort_all`, every group is sorted (the Fixed AP script sorts each category).
fn grouped_top(order: &[u32], key: &[i64], score: &[f64], limit: usize, sort_all: bool) -> Vec<u32> {
    // Group of each position (numbered by first appearance), then a counting
    // sort by group that keeps the order within each.
    let mut slot: HashMap<i64, u32> = HashMap::default();
    let groups: Vec<u32> = order
        .iter()
        .map(|&j| {
            let next = slot.len() as u32;
            *slot.entry(key[j as usize]).or_insert(next)
        })
        .collect();
    let mut starts = vec![0usize; slot.len() + 1];
    for &g in &groups {
        starts[g as usize + 1] += 1;
    }
    for g in 0..slot.len() {
        starts[g + 1] += starts[g];
    }
    let mut grouped = vec![0u32; order.len()];
    let mut cursor = starts.clone();
    for (&j, &g) in order.iter().zip(&groups) {
        grouped[cursor[g as usize]] = j;
        cursor[g as usize] += 1;
    }
    let mut out = Vec::with_capacity(order.len());
    for g in 0..slot.len() {
        let group = &mut grouped[starts[g]..starts[g + 1]];
        if sort_all || group.len() > limit {
            // Scores are finite (checked on load): a total order, Python's. Stable.
            group.sort_by(|&a, &b| score[b as usize].partial_cmp(&score[a as usize]).expect("finite scores"));
            out.extend_from_slice(&group[..group.len().min(limit)]);
        } else {
            out.extend_from_slice(group);
        }
    }
    out
}

/// Moves the entries at `order` (distinct positions) out of `column`.
fn take_at<T>(column: Vec<T>, order: &[u32]) -> Vec<T> {
    let mut slots: Vec<Option<T>> = column.into_iter().map(Some).collect();
    order.iter().map(|&j| slots[j as usize].take().expect("distinct positions")).collect()
}

/// `results` (as the COCO parser reads a results list: ids `1..=N` in input
/// order; box results with `area = w * h`, mask results with the mask's area
/// and box, as `LVISResults` picks by the first record) checked to name
/// categories of `gt`, then cut by `limits` and renumbered `1..=M` in their new
/// order, as `LVISResults` does.
pub fn limit_results(
    results: CocoDataset,
    gt: &CocoDataset,
    limits: ResultLimits,
    function: &'static str,
    source: &str,
) -> Result<LvisResults> {
    let a = &results.annotations;
    let categories: rustc_hash::FxHashSet<i64> = gt.category_ids.iter().copied().collect();
    if let Some(j) = a.category_id.iter().position(|c| !categories.contains(c)) {
        return Err(FerropsError::value(
            function,
            "results",
            "detections of the ground truth's categories",
            format!("{source}: results[{j}] has category_id {}, which is not a category of the ground truth", {
                a.category_id[j]
            }),
        ));
    }
    if let Some(i) = results.first_without_score {
        return Err(FerropsError::value(
            function,
            "results",
            "detections with a 'score' each",
            format!("{source}: results[{i}] has no 'score'"),
        ));
    }
    let mut order: Vec<u32> = (0..a.len() as u32).collect();
    if let Some(k) = limits.per_category {
        order = grouped_top(&order, &a.category_id, &a.score, k, true);
    }
    if let Some(k) = limits.per_image {
        order = grouped_top(&order, &a.image_id, &a.score, k, false);
    }
    let pick = |column: &[f64]| -> Vec<f64> { order.iter().map(|&j| column[j as usize]).collect() };
    let annotations = Annotations {
        id: (1..=order.len() as i64).collect(),
        image_id: order.iter().map(|&j| a.image_id[j as usize]).collect(),
        category_id: order.iter().map(|&j| a.category_id[j as usize]).collect(),
        bbox: order.iter().map(|&j| a.bbox[j as usize]).collect(),
        area: pick(&a.area),
        iscrowd: vec![false; order.len()],
        score: pick(&a.score),
        ..Default::default()
    };
    let CocoDataset {
        image_ids,
        category_ids,
        annotations: parsed,
        id_strings,
        image_sizes,
        box_segmentation,
        source: parsed_from,
        masks,
        ..
    } = results;
    let annotations = Annotations { segmentation: take_at(parsed.segmentation, &order), ..annotations };
    // Mask results carry their masks, converted when parsed.
    let masks = match masks.into_inner() {
        Some(column) => OnceLock::from(Arc::new(take_at(Arc::unwrap_or_clone(column), &order))),
        None => OnceLock::new(),
    };
    let packed = (0..order.len())
        .map(|r| Packed {
            bbox: annotations.bbox[r],
            area: annotations.area[r],
            score: annotations.score[r],
            id: annotations.id[r],
            row: r as u32,
            ..Default::default()
        })
        .collect();
    let dataset = CocoDataset {
        image_ids,
        category_ids,
        annotations,
        packed,
        id_strings,
        image_sizes,
        box_segmentation,
        source: parsed_from,
        masks,
        ..Default::default()
    };
    Ok(LvisResults { dataset, source_rows: order })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detection::coco::{parse_ground_truth, parse_results, Origin};

    #[test]
    fn cuts_per_image_and_per_category_as_lvis_api_and_the_fixed_ap_script() {
        let o = Origin { function: "t", argument: "t", source: "t" };
        let gt = parse_ground_truth(br#"{"images":[{"id":1},{"id":2}],"categories":[{"id":1},{"id":2}]}"#, &o).unwrap();
        let dt = br#"[{"image_id":1,"category_id":1,"bbox":[0,0,1,1],"score":0.1},
            {"image_id":2,"category_id":1,"bbox":[0,0,1,1],"score":0.5},
            {"image_id":1,"category_id":2,"bbox":[0,0,1,1],"score":0.9},
            {"image_id":1,"category_id":1,"bbox":[0,0,1,1],"score":0.9}]"#;
        let dt = parse_results(dt, &gt, &o).unwrap();
        let scores = |limits| limit_results(dt.clone(), &gt, limits, "t", "t").unwrap().dataset.annotations.score;
        // Grouped by image (first appearance); image 1 has 3 > 2: sorted (stable) and cut.
        assert_eq!(scores(ResultLimits { per_image: Some(2), per_category: None }), vec![0.9, 0.9, 0.5]);
        assert_eq!(scores(ResultLimits { per_image: Some(3), per_category: None }), vec![0.1, 0.9, 0.9, 0.5]);
        // Per category (first appearance), each sorted and cut.
        assert_eq!(scores(ResultLimits { per_image: None, per_category: Some(2) }), vec![0.9, 0.5, 0.9]);
        let cut = limit_results(dt.clone(), &gt, ResultLimits::default(), "t", "t").unwrap();
        assert_eq!(cut.dataset.annotations.id, vec![1, 2, 3, 4]);
        let cut = limit_results(dt, &gt, ResultLimits { per_image: Some(2), per_category: None }, "t", "t").unwrap();
        assert_eq!(cut.source_rows, vec![2, 3, 1]);
        let bad = parse_results(br#"[{"image_id":1,"category_id":7,"bbox":[0,0,1,1],"score":1}]"#, &gt, &o).unwrap();
        let err = limit_results(bad, &gt, ResultLimits::default(), "LVISResults", "dt.json").unwrap_err();
        assert!(err.to_string().contains("dt.json: results[0] has category_id 7"), "{err}");
    }
}
