//! lvis-api's `LVISEval.evaluate` and `accumulate` for bbox and segm, run by
//! the COCO evaluation (`cocoeval::evaluate`, `cocoeval::accumulate`):
//! lvis-api's matching and accumulation are pycocotools' without crowd ground
//! truth and without a per-unit detection cap, so what differs is only which
//! records take part and which are ignored, and that is settled here, before
//! the COCO code runs:
//!
//! * ground truth and detections with `area` outside `(0, inf)` are left out
//!   (lvis-api's `get_ann_ids` filter), as are detections of a category neither
//!   present on their image nor in its `neg_category_ids` (the federated rule);
//! * no ground truth is crowd (lvis-api's IoU passes `iscrowd = 0`, for boxes
//!   and masks alike);
//! * a ground truth with `ignore` set, and a detection of a category in its
//!   image's `not_exhaustive_category_ids`, get area `+inf`: outside every area
//!   range (upper ends must be finite), so the ground truth is ignored and the
//!   detection, when unmatched, is ignored, exactly lvis-api's two rules (area is
//!   read for nothing else);
//! * every detection of a unit is kept (lvis-api cuts per image in `LVISResults`);
//! * for segm, the masks are the COCO dataset's (`annToRLE` of each record on
//!   its image, as lvis-api's `ann_to_rle`), made for every record lvis-api
//!   converts (those passing the first rule) and handed to the COCO evaluation
//!   with the records.
//!
//! The COCO evaluation gets every record at its row (a record taking no part
//! in a unit it never visits), so the masks are the datasets' own, not copies.

use rayon::prelude::*;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::federated::{labels_by_image, LvisGroundTruth};
use super::results::LvisResults;
use crate::detection::coco::{Annotations, CocoDataset, MaskColumn, Packed};
use crate::detection::cocoeval::{self, AccumulateParams, EvalParams, Evaluation, IouType};
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
    /// Box IoU or mask IoU (lvis-api's `bbox`, `segm`).
    pub iou_type: IouType,
}

/// Where a record that takes no part is put: no (category, image) unit the
/// COCO evaluation visits (positions count from 0), so it skips the record.
const NO_UNIT: (i64, i64) = (-1, -1);

/// The records of `d`, each with `area_of(record)` as its area, no crowd, and
/// `unit_of(record)` as its (category, image) ids ([`NO_UNIT`] for the records
/// taking no part), and `masks` where given. Every record stays at its row, so
/// the masks of `d` serve as they are (shared, not copied).
fn for_coco(
    d: &CocoDataset,
    area_of: impl Fn(usize) -> f64 + Sync,
    unit_of: impl Fn(usize) -> (i64, i64) + Sync,
    masks: Option<MaskColumn>,
) -> CocoDataset {
    let a = &d.annotations;
    let n = a.len();
    let (category_id, image_id) = (0..n).into_par_iter().with_min_len(4096).map(&unit_of).unzip();
    let annotations = Annotations {
        id: a.id.clone(),
        image_id,
        category_id,
        bbox: a.bbox.clone(),
        area: (0..n).into_par_iter().with_min_len(4096).map(&area_of).collect(),
        iscrowd: vec![false; n],
        score: a.score.clone(),
        ..Default::default()
    };
    let packed = (0..n)
        .into_par_iter()
        .with_min_len(4096)
        .map(|r| Packed {
            bbox: annotations.bbox[r],
            area: annotations.area[r],
            score: annotations.score[r],
            id: annotations.id[r],
            row: r as u32,
            ..Default::default()
        })
        .collect();
    let dataset = CocoDataset { annotations, packed, ..Default::default() };
    if let Some(column) = masks {
        dataset.masks.set(column).expect("a new dataset has no masks");
    }
    dataset
}

/// The masks of `d`'s records that `wanted` marks (by record), every one of
/// them valid; otherwise the error names the first bad record (`name(j)`)
/// and says what is wrong.
fn masks_of(
    d: &CocoDataset,
    wanted: &[bool],
    argument: &'static str,
    source: &str,
    name: impl Fn(usize) -> String,
) -> Result<MaskColumn> {
    let column = d.masks_where(wanted);
    let bad = (0..wanted.len())
        .into_par_iter()
        .with_min_len(4096)
        .filter(|&j| wanted[j])
        .find_map_first(|j| column[j].as_ref().err().map(|why| (j, why)));
    if let Some((j, why)) = bad {
        return Err(FerropsError::value(
            F,
            argument,
            "a segmentation lvis-api's ann_to_rle accepts for every record evaluated",
            format!("{source}: {} {why}", name(j)),
        ));
    }
    Ok(column)
}

fn check_params(gt: &LvisGroundTruth, params: &LvisParams) -> Result<()> {
    if params.iou_type == IouType::Keypoints {
        return Err(FerropsError::value(F, "params.iou_type", "'bbox' or 'segm'", "'keypoints'"));
    }
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

/// The COCO evaluation of the (category, image) pairs holding records, laid
/// out as `K` categories of `width` images (see [`evaluate`]).
pub struct LvisEvaluation {
    evaluation: Evaluation,
    num_categories: usize,
    /// The categories with ground truth (the others' arrays are -1 throughout).
    with_ground_truth: Vec<usize>,
    width: usize,
    num_areas: usize,
}

impl LvisEvaluation {
    pub fn num_thresholds(&self) -> usize {
        self.evaluation.num_thresholds()
    }
}

/// lvis-api's `LVISEval.evaluate` for bbox and segm: the per (category, image) matching.
///
/// lvis-api visits every (category, image) pair, and with 1,203 categories
/// nearly all are empty. Here a category's pairs that hold ground truth or
/// detections are numbered in image order, and the COCO evaluation sees
/// category `k`'s `n`-th such pair as its image `n`: `K` categories of `width`
/// images, `width` the most pairs any category holds. Each unit holds the same
/// records in the same order as lvis-api's pair, and `accumulate` reads a
/// category's units in lvis-api's image order (the missing ones are its
/// `None` entries).
pub fn evaluate(
    gt: &LvisGroundTruth,
    results: &LvisResults,
    params: &LvisParams,
    cancel: &Cancel,
) -> Result<LvisEvaluation> {
    let dt = &results.dataset;
    let federated = gt.federated(F)?;
    check_params(gt, params)?;
    let labels = labels_by_image(&gt.coco, federated);
    let image_pos: HashMap<i64, u32> = params.img_ids.iter().enumerate().map(|(i, &id)| (id, i as u32)).collect();
    let category_pos: HashMap<i64, u32> = params.cat_ids.iter().enumerate().map(|(k, &id)| (id, k as u32)).collect();
    // The unit key of a record taking part: (category position, image position).
    let key = |area: f64, image: i64, category: i64| -> Option<u64> {
        if !(area > 0.0 && area < f64::INFINITY) {
            return None;
        }
        let (i, k) = (*image_pos.get(&image)?, *category_pos.get(&category)?);
        Some(u64::from(k) << 32 | u64::from(i))
    };
    let g = &gt.coco.annotations;
    let gt_keys: Vec<Option<u64>> = (0..g.len())
        .into_par_iter()
        .with_min_len(4096)
        .map(|j| key(g.area[j], g.image_id[j], g.category_id[j]))
        .collect();
    // The categories present on each image (lvis-api's `img_pl`).
    let present: HashSet<u64> = gt_keys.iter().flatten().copied().collect();

    let d = &dt.annotations;
    // Per detection: its unit if it takes part, and whether its category is
    // not exhaustive on its image (records apart: in parallel).
    let (dt_keys, not_exhaustive): (Vec<Option<u64>>, Vec<bool>) = (0..d.len())
        .into_par_iter()
        .with_min_len(4096)
        .map(|j| {
            let Some(unit) = key(d.area[j], d.image_id[j], d.category_id[j]) else { return (None, false) };
            // An image lists a few categories: a scan beats hashing.
            let (l, category) = (labels[&d.image_id[j]], d.category_id[j]);
            if !present.contains(&unit) && !l.neg_category_ids.contains(&category) {
                return (None, false);
            }
            (Some(unit), l.not_exhaustive_category_ids.contains(&category))
        })
        .unzip();
    let mut units: Vec<u64> = gt_keys.iter().chain(&dt_keys).flatten().copied().collect();
    units.sort_unstable();
    units.dedup();
    // Each category's pairs are consecutive in `units`: the n-th is its image n.
    let num_categories = params.cat_ids.len();
    let mut first_unit = vec![0usize; num_categories + 1];
    for &unit in &units {
        first_unit[(unit >> 32) as usize + 1] += 1;
    }
    let width = first_unit.iter().copied().max().unwrap_or(0);
    for k in 0..num_categories {
        first_unit[k + 1] += first_unit[k];
    }
    let unit_of = |unit: u64| {
        let k = (unit >> 32) as usize;
        let n = units.binary_search(&unit).expect("a unit of a kept record") - first_unit[k];
        (k as i64, n as i64)
    };
    // lvis-api converts the masks of every record passing the area and id
    // filter, the detections the federated rule then leaves out included.
    let (gt_masks, dt_masks) = if params.iou_type == IouType::Segm {
        let gt_wanted: Vec<bool> = gt_keys.iter().map(Option::is_some).collect();
        let dt_wanted: Vec<bool> = (0..d.len())
            .into_par_iter()
            .with_min_len(4096)
            .map(|j| key(d.area[j], d.image_id[j], d.category_id[j]).is_some())
            .collect();
        let (gt_masks, dt_masks) = rayon::join(
            || masks_of(&gt.coco, &gt_wanted, "lvis_gt", &gt.source, |j| format!("annotations[{j}] (id {})", g.id[j])),
            || {
                let name = |j: usize| format!("results[{}] (id {})", results.source_rows[j], d.id[j]);
                masks_of(dt, &dt_wanted, "lvis_dt", &dt.source, name)
            },
        );
        (Some(gt_masks?), Some(dt_masks?))
    } else {
        (None, None)
    };
    let gt_eval = for_coco(
        &gt.coco,
        |j| if gt.ignore[j] { f64::INFINITY } else { g.area[j] },
        |j| gt_keys[j].map_or(NO_UNIT, unit_of),
        gt_masks,
    );
    let dt_eval = for_coco(
        dt,
        |j| if not_exhaustive[j] { f64::INFINITY } else { d.area[j] },
        |j| dt_keys[j].map_or(NO_UNIT, unit_of),
        dt_masks,
    );
    let image_ids: Vec<i64> = (0..width as i64).collect();
    let category_ids: Vec<i64> = (0..num_categories as i64).collect();
    let coco_params = EvalParams {
        img_ids: &image_ids,
        cat_ids: &category_ids,
        use_cats: true,
        iou_thrs: params.iou_thrs,
        area_rngs: params.area_rngs,
        max_det: usize::MAX,
        iou_type: params.iou_type,
        kpt_oks_sigmas: &[],
    };
    let evaluation = cocoeval::evaluate(&gt_eval, &dt_eval, &coco_params, cancel)?;
    let mut with_ground_truth: Vec<usize> = gt_keys.iter().flatten().map(|&unit| (unit >> 32) as usize).collect();
    with_ground_truth.sort_unstable();
    with_ground_truth.dedup();
    Ok(LvisEvaluation { evaluation, num_categories, with_ground_truth, width, num_areas: params.area_rngs.len() })
}

/// Categories per COCO accumulation: a batch's output (`[T, R, BATCH, A]`,
/// about 2 MB with scores) is copied into place before the next runs, so the
/// memory beyond the result is one batch's, not a second and third copy of it.
const BATCH: usize = 64;

/// lvis-api's `accumulate`: `precision` `[T, R, K, A]` and `recall` `[T, K, A]`
/// (C order), -1 where a (category, area range) has no ground truth that counts.
/// The COCO accumulation runs on batches of [`BATCH`] categories with ground
/// truth, each in parallel over its categories, and each batch's rows are
/// copied into place; the categories without ground truth stay -1.
pub fn accumulate(e: &LvisEvaluation, rec_thrs: &[f64]) -> Result<(Vec<f64>, Vec<f64>)> {
    const F: &str = "LVISEval.accumulate";
    let (num_cats, num_areas) = (e.num_categories, e.num_areas);
    let (num_thr, num_rec) = (e.evaluation.num_thresholds(), rec_thrs.len());
    let row = num_cats * num_areas;
    let minus_one = |out: &mut [std::mem::MaybeUninit<f64>]| out.fill(std::mem::MaybeUninit::new(-1.0));
    let mut precision = crate::buffer::try_filled(F, "the precision array", &[num_thr, num_rec, row], minus_one)?;
    let mut recall = crate::buffer::try_filled(F, "the recall array", &[num_thr, row], minus_one)?;
    let a_list: Vec<usize> = (0..num_areas).collect();
    let i_list: Vec<usize> = (0..e.width).collect();
    for k_list in e.with_ground_truth.chunks(BATCH) {
        let p = AccumulateParams {
            k_list,
            a_list: &a_list,
            m_list: &[usize::MAX],
            i_list: &i_list,
            num_categories: k_list.len(),
            num_areas,
            num_max_dets: 1,
            rec_thrs,
        };
        // Category-major `[k, T, R, A, 1]` and `[k, T, A, 1]`, slot `s` holding
        // category `k_list[s]`: each slot's runs of A cells go to column `k`.
        let batch = cocoeval::accumulate(&e.evaluation, &p)?;
        let areas = num_areas.max(1);
        for (out, values) in [(&mut precision, &batch.precision), (&mut recall, &batch.recall)] {
            let per_category = values.len() / k_list.len().max(1);
            for (&k, block) in k_list.iter().zip(values.chunks_exact(per_category.max(1))) {
                for (line, cells) in block.chunks_exact(areas).enumerate() {
                    out[line * row + k * num_areas..][..num_areas].copy_from_slice(cells);
                }
            }
        }
    }
    Ok((precision, recall))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detection::coco::{parse_results, Origin};
    use crate::detection::lvis::{limit_results, parse_lvis_ground_truth, ResultLimits};

    const ORIGIN: Origin = Origin { function: "LVIS", argument: "annotation_path", source: "gt.json" };

    /// Image 1 holds category 1 (not exhaustive) and lists 2 as negative; image 2
    /// lists 1 as negative. Category 2 has no ground truth. `segmentation` is
    /// the ground truth's.
    fn run(dt: &[u8], iou_type: IouType, segmentation: &str) -> Result<(Vec<f64>, Vec<f64>)> {
        let gt = format!(
            r#"{{"images":[{{"id":1,"height":100,"width":100,"neg_category_ids":[2],"not_exhaustive_category_ids":[1]}},
                         {{"id":2,"height":100,"width":100,"neg_category_ids":[1],"not_exhaustive_category_ids":[]}}],
            "categories":[{{"id":1,"frequency":"r"}},{{"id":2,"frequency":"f"}}],
            "annotations":[{{"id":1,"image_id":1,"category_id":1,"bbox":[0,0,10,10],"area":100,
                            "segmentation":{segmentation}}}]}}"#
        );
        let gt = parse_lvis_ground_truth(gt.as_bytes(), &ORIGIN).unwrap();
        let origin = Origin { function: "LVISResults", argument: "results", source: "dt.json" };
        let dt = parse_results(dt, &gt.coco, &origin).unwrap();
        let dt = limit_results(dt, &gt.coco, ResultLimits::default(), "t", "t").unwrap();
        let params =
            LvisParams { img_ids: &[1, 2], cat_ids: &[1, 2], iou_thrs: &[0.5], area_rngs: &[[0.0, 1e10]], iou_type };
        let e = evaluate(&gt, &dt, &params, &Cancel::new())?;
        accumulate(&e, &[0.0, 0.5, 1.0])
    }

    const SQUARE: &str = "[[0,0,0,10,10,10,10,0]]";

    #[test]
    fn federated_rules_and_the_same_bits_for_any_thread_count() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let dt = br#"[{"image_id":1,"category_id":1,"bbox":[50,50,10,10],"score":0.9},
            {"image_id":1,"category_id":1,"bbox":[0,0,10,10],"score":0.8},
            {"image_id":2,"category_id":1,"bbox":[0,0,10,10],"score":0.7},
            {"image_id":2,"category_id":2,"bbox":[0,0,10,10],"score":0.95}]"#;
        for iou_type in [IouType::Bbox, IouType::Segm] {
            crate::parallel::set_num_threads(1).unwrap();
            let one = crate::parallel::install(|| run(dt, iou_type, SQUARE)).unwrap();
            crate::parallel::set_num_threads(2).unwrap();
            let (precision, recall) = crate::parallel::install(|| run(dt, iou_type, SQUARE)).unwrap();
            assert_eq!((&one.0, &one.1), (&precision, &recall));
            // [T=1, R=3, K=2, A=1]: category 1's unmatched 0.9 is ignored (not
            // exhaustive), the TP at 0.8 gives precision 1 until the negative image's
            // FP at 0.7; category 2 has no ground truth (its detection on image 2 is
            // not even negative there): -1. The same for masks: the detections'
            // masks are their boxes' polygons, the ground truth's its box.
            let eps = f64::EPSILON;
            assert_eq!(precision, vec![1.0 / (1.0 + eps), -1.0, 1.0 / (1.0 + eps), -1.0, 1.0 / (1.0 + eps), -1.0]);
            assert_eq!(recall, vec![1.0, -1.0]);
        }
    }

    #[test]
    fn masks_decide_segm_and_bad_segmentations_name_their_record() {
        // A detection whose box matches the ground truth's but whose mask misses it.
        let dt = br#"[{"image_id":1,"category_id":1,"bbox":[0,0,10,10],"score":0.8,
                       "segmentation":[[50,50,50,60,60,60,60,50]]}]"#;
        assert_eq!(run(dt, IouType::Bbox, SQUARE).unwrap().1, vec![1.0, -1.0]);
        assert_eq!(run(dt, IouType::Segm, SQUARE).unwrap().1, vec![0.0, -1.0]);
        let err = run(dt, IouType::Segm, "[[0,0,3]]").unwrap_err().to_string();
        assert!(err.contains("'lvis_gt'") && err.contains("gt.json: annotations[0] (id 1) has a bad"), "{err}");
        // Left out by the federated rule (category 2 is neither present nor
        // negative on image 2), and yet converted, as lvis-api does.
        let dt = br#"[{"image_id":1,"category_id":1,"bbox":[0,0,10,10],"score":0.8},
                      {"image_id":2,"category_id":2,"bbox":[0,0,10,10],"score":0.8,"segmentation":[[1,2]]}]"#;
        let err = run(dt, IouType::Segm, SQUARE).unwrap_err().to_string();
        assert!(err.contains("'lvis_dt'") && err.contains("dt.json: results[1] (id 2) has a bad"), "{err}");
        assert!(run(dt, IouType::Bbox, SQUARE).is_ok());
        assert!(run(dt, IouType::Keypoints, SQUARE).unwrap_err().to_string().contains("iou_type"));
    }
}
