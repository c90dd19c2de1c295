//! lvis-api's `LVISEval.evaluate` and `accumulate` for bbox, run by the COCO
//! evaluation (`cocoeval::evaluate`, `cocoeval::accumulate`): lvis-api's
//! matching and accumulation are pycocotools' without crowd ground truth and
//! without a per-unit detection cap, so what differs is only which records take
//! part and which are ignored, and that is settled here, before the COCO code
//! runs:
//!
//! * ground truth and detections with `area` outside `(0, inf)` are left out
//!   (lvis-api's `get_ann_ids` filter), as are detections of a category neither
//!   present on their image nor in its `neg_category_ids` (the federated rule);
//! * no ground truth is crowd (lvis-api's IoU passes `iscrowd = 0`);
//! * a ground truth with `ignore` set, and a detection of a category in its
//!   image's `not_exhaustive_category_ids`, get area `+inf`: outside every area
//!   range (upper ends must be finite), so the ground truth is ignored and the
//!   detection, when unmatched, is ignored, exactly lvis-api's two rules (area is
//!   read for nothing else);
//! * every detection of a unit is kept (lvis-api cuts per image in `LVISResults`).

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::federated::{labels_by_image, LvisGroundTruth};
use crate::detection::coco::{Annotations, CocoDataset, Packed};
use crate::detection::cocoeval::{self, AccumulateParams, EvalParams, Evaluation};
use crate::error::{FerropsError, Result};
use crate::interrupt::Cancel;

const F: &str = "LVISEval.evaluate";

/// What `evaluate` reads of lvis-api's `Params` (image ids sorted and unique).
pub struct LvisParams<'a> {
    pub img_ids: &'a [i64],
    pub cat_ids: &'a [i64],
    pub iou_thrs: &'a [f64],
    /// `[lo, hi]` per area range, both ends inclusive, `hi` finite.
    pub area_rngs: &'a [[f64; 2]],
}

/// The records of `d` at `keep`, with `area_of(record)` as their area and no crowd.
fn subset(d: &CocoDataset, keep: &[u32], area_of: impl Fn(usize) -> f64) -> CocoDataset {
    let a = &d.annotations;
    let at = |j: &u32| *j as usize;
    let annotations = Annotations {
        id: keep.iter().map(|j| a.id[at(j)]).collect(),
        image_id: keep.iter().map(|j| a.image_id[at(j)]).collect(),
        category_id: keep.iter().map(|j| a.category_id[at(j)]).collect(),
        bbox: keep.iter().map(|j| a.bbox[at(j)]).collect(),
        area: keep.iter().map(|j| area_of(at(j))).collect(),
        iscrowd: vec![false; keep.len()],
        score: keep.iter().map(|j| a.score[at(j)]).collect(),
    };
    let packed = (0..keep.len())
        .map(|r| Packed {
            bbox: annotations.bbox[r],
            area: annotations.area[r],
            score: annotations.score[r],
            id: annotations.id[r],
            crowd: false,
        })
        .collect();
    CocoDataset {
        image_ids: d.image_ids.clone(),
        category_ids: d.category_ids.clone(),
        annotations,
        packed,
        first_without_score: None,
        id_strings: d.id_strings.clone(),
    }
}

fn check_params(gt: &LvisGroundTruth, params: &LvisParams) -> Result<()> {
    if let Some(r) = params.area_rngs.iter().find(|r| r[1] == f64::INFINITY) {
        return Err(FerropsError::value(
            F,
            "params.area_rng",
            "[lo, hi] pairs with a finite hi (lvis-api's upper end is 1e10)",
            format!("{r:?}"),
        ));
    }
    let known: HashSet<i64> = gt.coco.image_ids.iter().copied().collect();
    if let Some(i) = params.img_ids.iter().find(|i| !known.contains(i)) {
        return Err(FerropsError::value(F, "params.img_ids", "image ids of the ground truth", i.to_string()));
    }
    let mut seen = HashSet::default();
    if let Some(c) = params.cat_ids.iter().find(|&&c| !seen.insert(c)) {
        return Err(FerropsError::value(F, "params.cat_ids", "distinct category ids", format!("{c} repeated")));
    }
    let mut ids = HashSet::default();
    if let Some(j) = gt.coco.annotations.id.iter().position(|&id| !ids.insert(id)) {
        return Err(FerropsError::value(
            F,
            "lvis_gt",
            "distinct annotation ids",
            format!("{}: annotations[{j}] repeats id {}", gt.source, gt.coco.annotations.id[j]),
        ));
    }
    Ok(())
}

/// lvis-api's `LVISEval.evaluate` for bbox: the per (category, image) matching,
/// addressed like pycocotools' `evalImgs` (category, area range, image).
pub fn evaluate(gt: &LvisGroundTruth, dt: &CocoDataset, params: &LvisParams, cancel: &Cancel) -> Result<Evaluation> {
    let federated = gt.federated(F)?;
    check_params(gt, params)?;
    let labels = labels_by_image(&gt.coco, federated);
    let images: HashSet<i64> = params.img_ids.iter().copied().collect();
    let categories: HashSet<i64> = params.cat_ids.iter().copied().collect();
    let taken = |area: f64, image: i64, category: i64| {
        area > 0.0 && area < f64::INFINITY && images.contains(&image) && categories.contains(&category)
    };
    let g = &gt.coco.annotations;
    let gt_keep: Vec<u32> =
        (0..g.len()).filter(|&j| taken(g.area[j], g.image_id[j], g.category_id[j])).map(|j| j as u32).collect();
    // The categories present on each image (lvis-api's `img_pl`).
    let present: HashSet<(i64, i64)> =
        gt_keep.iter().map(|&j| (g.image_id[j as usize], g.category_id[j as usize])).collect();
    let gt_eval = subset(&gt.coco, &gt_keep, |j| if gt.ignore[j] { f64::INFINITY } else { g.area[j] });

    let d = &dt.annotations;
    let mut dt_keep = Vec::with_capacity(d.len());
    let mut not_exhaustive = vec![false; d.len()];
    // A category's place in an image's short lists: looked up per detection.
    let mut listed: HashMap<i64, (HashSet<i64>, HashSet<i64>)> = HashMap::default();
    for j in 0..d.len() {
        let (image, category) = (d.image_id[j], d.category_id[j]);
        if !taken(d.area[j], image, category) {
            continue;
        }
        let (negative, unexhausted) = listed.entry(image).or_insert_with(|| {
            let l = labels[&image];
            (l.neg_category_ids.iter().copied().collect(), l.not_exhaustive_category_ids.iter().copied().collect())
        });
        if !negative.contains(&category) && !present.contains(&(image, category)) {
            continue;
        }
        not_exhaustive[j] = unexhausted.contains(&category);
        dt_keep.push(j as u32);
    }
    let dt_eval = subset(dt, &dt_keep, |j| if not_exhaustive[j] { f64::INFINITY } else { d.area[j] });
    let coco_params = EvalParams {
        img_ids: params.img_ids,
        cat_ids: params.cat_ids,
        use_cats: true,
        iou_thrs: params.iou_thrs,
        area_rngs: params.area_rngs,
        max_det: usize::MAX,
    };
    cocoeval::evaluate(&gt_eval, &dt_eval, &coco_params, cancel)
}

/// lvis-api's `accumulate`: `precision` `[T, R, K, A]` and `recall` `[T, K, A]`
/// (C order), -1 where a (category, area range) has no ground truth that counts.
pub fn accumulate(
    evaluation: &Evaluation,
    num_categories: usize,
    num_images: usize,
    num_areas: usize,
    rec_thrs: &[f64],
) -> Result<(Vec<f64>, Vec<f64>)> {
    let k_list: Vec<usize> = (0..num_categories).collect();
    let a_list: Vec<usize> = (0..num_areas).collect();
    let i_list: Vec<usize> = (0..num_images).collect();
    let p = AccumulateParams {
        k_list: &k_list,
        a_list: &a_list,
        m_list: &[usize::MAX],
        i_list: &i_list,
        num_categories,
        num_areas,
        num_max_dets: 1,
        rec_thrs,
    };
    let out = cocoeval::accumulate(evaluation, &p)?;
    Ok((out.precision, out.recall))
}
