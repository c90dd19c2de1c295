//! pycocotools' `COCOeval.evaluate` for bbox, segm and keypoints: every (category, image) unit
//! matched in parallel, in fixed chunks of units.

use rayon::prelude::*;
use rustc_hash::FxHashMap as HashMap;

use super::buckets::{buckets, Buckets};
use super::evaluation::{Chunk, Evaluation, UnitSpan, CHUNK};
use super::matching::{
    effective_threshold, match_at, outside, Matching, Scratch, FALSE_POSITIVE, IGNORED, TRUE_POSITIVE,
};
use super::oks::Oks;
use super::similarity::{IouType, Similarity};
use crate::detection::coco::{has_box, CocoDataset, IdStrings, MaskColumn};
use crate::ensure;
use crate::error::{FerropsError, Result};
use crate::interrupt::Cancel;

/// What `evaluate` needs of pycocotools' `Params` (after its normalisation:
/// unique sorted image ids, unique sorted category ids when `use_cats`).
pub struct EvalParams<'a> {
    pub img_ids: &'a [i64],
    /// With `use_cats == false`, the ground truth and detections of these
    /// categories are pooled per image, in this order (repeats included).
    pub cat_ids: &'a [i64],
    pub use_cats: bool,
    pub iou_thrs: &'a [f64],
    /// `[lo, hi]` per area range, both ends inclusive.
    pub area_rngs: &'a [[f64; 2]],
    /// The largest maxDets: detections kept per unit, best scores first.
    pub max_det: usize,
    /// What "IoU" means: of boxes, of masks, or keypoint OKS.
    pub iou_type: IouType,
    /// pycocotools' `params.kpt_oks_sigmas`, one per keypoint (read for
    /// keypoints only).
    pub kpt_oks_sigmas: &'a [f64],
}

fn check_params(params: &EvalParams) -> Result<()> {
    ensure!(params.max_det != 0, FerropsError::value("COCOeval.evaluate", "params.maxDets", "positive integers", "0"));
    if let Some(t) = params.iou_thrs.iter().find(|t| !t.is_finite()) {
        return Err(FerropsError::value("COCOeval.evaluate", "params.iouThrs", "finite numbers", t.to_string()));
    }
    if let Some(r) = params.area_rngs.iter().find(|r| r.iter().any(|v| v.is_nan())) {
        return Err(FerropsError::value(
            "COCOeval.evaluate",
            "params.areaRng",
            "[lo, hi] pairs of numbers",
            format!("{r:?}"),
        ));
    }
    Ok(())
}

/// Matches one unit's detections to its ground truth at every threshold and area
/// range (pycocotools' `computeIoU` + `evaluateImg`), appending its outcomes to
/// `chunk`.
fn evaluate_unit(unit: usize, params: &Matching, scratch: &mut Scratch, chunk: &mut Chunk) {
    let (num_dt, num_gt, num_thr) = (scratch.det.len(), scratch.gt.len(), params.iou_thrs.len());
    chunk.units.push(UnitSpan {
        unit: unit as u32,
        num_dt: num_dt as u32,
        scores_at: chunk.scores.len() as u32,
        codes_at: chunk.codes.len() as u32,
        positives_at: chunk.positives.len() as u32,
    });
    chunk.scores.extend(scratch.dts.iter().map(|&(score, _)| score));
    if num_gt == 0 {
        // Nothing to match: each detection is a false positive, or ignored
        // outside the area range, at every threshold.
        for &rng in &params.area_rngs {
            chunk.positives.push(0);
            for d in &scratch.det {
                let code = if outside(rng, d.area) { IGNORED } else { FALSE_POSITIVE };
                chunk.codes.extend(std::iter::repeat_n(code, num_thr));
            }
        }
        return;
    }
    // The matching sees a threshold only through which IoUs reach it (every
    // other comparison is between IoUs), so thresholds reached by the same number
    // of the unit's IoUs match alike: each such group is matched once per area
    // range and the others copy its outcomes.
    let Scratch { ious, levels, same_as, .. } = &mut *scratch;
    levels.clear();
    levels.extend(params.iou_thrs.iter().map(|&thr| ious.iter().filter(|&&v| v >= effective_threshold(thr)).count()));
    same_as.clear();
    same_as.extend((0..num_thr).map(|t| levels.iter().position(|&level| level == levels[t]).unwrap_or(t)));
    for &rng in &params.area_rngs {
        let not_ignored = scratch.order_for_area(rng);
        chunk.positives.push(not_ignored as u32);
        let codes_at = chunk.codes.len();
        chunk.codes.resize(codes_at + num_dt * num_thr, FALSE_POSITIVE);
        let codes = &mut chunk.codes[codes_at..];
        let Scratch { det, sorted_gt, sorted_ious, matched_by, same_as, .. } = &mut *scratch;
        for (t, &thr) in params.iou_thrs.iter().enumerate() {
            if same_as[t] != t {
                for row in codes.chunks_exact_mut(num_thr) {
                    row[t] = row[same_as[t]];
                }
                continue;
            }
            matched_by.fill(0);
            match_at(det, sorted_gt, not_ignored, sorted_ious, thr, matched_by, |di, matched| {
                let dt_outside = outside(rng, det[di].area);
                codes[di * num_thr + t] = match matched {
                    Some(s) => {
                        let gt_id = sorted_gt[s].id;
                        if s >= not_ignored || (gt_id == 0 && dt_outside) {
                            IGNORED
                        } else if gt_id != 0 {
                            TRUE_POSITIVE
                        } else {
                            FALSE_POSITIVE
                        }
                    }
                    None if dt_outside => IGNORED,
                    None => FALSE_POSITIVE,
                };
            });
        }
    }
}

/// Every record evaluation reaches has a mask (pycocotools converts those
/// only); otherwise the error names the first such record in file order.
/// `compared` marks the records whose masks `masks` holds; the others are
/// checked without rasterising.
fn check_masks(
    argument: &'static str,
    d: &CocoDataset,
    masks: &MaskColumn,
    buckets: &Buckets,
    compared: Option<&[bool]>,
) -> Result<()> {
    let sizes = if compared.is_some() { d.image_sizes_by_id() } else { Default::default() };
    let problem = |j: usize| -> Option<Box<str>> {
        match compared {
            Some(rows) if !rows[j] => d.mask_problem(j, &sizes),
            _ => masks[j].as_ref().err().cloned(),
        }
    };
    let bad = buckets.records().par_iter().filter(|r| problem(r.row as usize).is_some()).map(|r| r.row).min();
    let Some(row) = bad else {
        return Ok(());
    };
    let j = row as usize;
    let why = problem(j).expect("found above");
    Err(FerropsError::value(
        "COCOeval.evaluate",
        argument,
        "a segmentation pycocotools' annToRLE accepts for every record evaluated",
        format!("{}: annotations[{j}] (id {}) {why}", d.source, d.id_strings.describe(d.annotations.id[j])),
    ))
}

/// Every record evaluation reaches has a `bbox` (pycocotools reads the boxes
/// of both sides for bbox, the ground truth's for keypoints); otherwise the
/// error names the first record without one, in file order.
fn check_boxes(argument: &'static str, d: &CocoDataset, buckets: &Buckets) -> Result<()> {
    let Some(j) = buckets.records().par_iter().filter(|r| !has_box(&r.bbox)).map(|r| r.row as usize).min() else {
        return Ok(());
    };
    Err(FerropsError::value(
        "COCOeval.evaluate",
        argument,
        "a 'bbox' in every record evaluated (segm evaluates records without one)",
        format!("{}: annotations[{j}] (id {}) has no 'bbox'", d.source, d.id_strings.describe(d.annotations.id[j])),
    ))
}

/// Per ground-truth record, whether a unit compares it with a detection: a
/// bucket's records where the unit (the bucket; with pooled categories, its
/// image) has detections.
fn compared_ground_truth(
    gt: &CocoDataset,
    gt_buckets: &Buckets,
    dt_buckets: &Buckets,
    num_images: usize,
    use_cats: bool,
) -> Vec<bool> {
    let mut image_has_detections = vec![false; num_images];
    if !use_cats {
        for (b, _) in dt_buckets.iter() {
            image_has_detections[b % num_images] = true;
        }
    }
    let mut compared = vec![false; gt.annotations.len()];
    for (b, records) in gt_buckets.iter() {
        let has_detections =
            if use_cats { !dt_buckets.get(b).is_empty() } else { image_has_detections[b % num_images] };
        if has_detections {
            for r in records {
                compared[r.row as usize] = true;
            }
        }
    }
    compared
}

/// pycocotools' `COCOeval.evaluate` (bbox, segm, keypoints): per (category, image) matching.
/// `cancel` is looked at once per (image, category) unit (RUN-INTERRUPT).
pub fn evaluate(gt: &CocoDataset, dt: &CocoDataset, params: &EvalParams, cancel: &Cancel) -> Result<Evaluation> {
    check_params(params)?;
    if let Some(i) = dt.first_without_score {
        return Err(FerropsError::value(
            "COCOeval.evaluate",
            "cocoDt",
            "detections with a 'score' each",
            format!("annotations[{i}] (id {}) without 'score'", dt.id_strings.describe(dt.annotations.id[i])),
        ));
    }
    // pycocotools stores matched annotation ids in float arrays, and fails on a
    // string id ("could not convert string to float"): refused up front.
    for (argument, d) in [("cocoGt", gt), ("cocoDt", dt)] {
        if let Some(j) = d.annotations.id.iter().position(|&id| IdStrings::is_string_code(id)) {
            return Err(FerropsError::value(
                "COCOeval.evaluate",
                argument,
                "integer annotation ids (pycocotools keeps matched ids in float arrays)",
                format!("annotations[{j}] with id {}", d.id_strings.describe(d.annotations.id[j])),
            ));
        }
    }
    // Before the detections are recoded below: the dataset keeps its
    // converted masks.
    let dt_masks = (params.iou_type == IouType::Segm).then(|| dt.masks());
    // Python codes the parameters' string ids as the ground truth does, then
    // the detections' own strings: the detections are coded alike.
    let recoded = dt.coded_like(&gt.id_strings);
    let dt = recoded.as_ref().unwrap_or(dt);
    let num_images = params.img_ids.len();
    let mut distinct_cats: HashMap<i64, usize> = HashMap::default();
    for &c in params.cat_ids {
        let next = distinct_cats.len();
        distinct_cats.entry(c).or_insert(next);
    }
    let (mut gt_buckets, dt_buckets) = rayon::join(
        || buckets(gt, params.img_ids, &distinct_cats, params.use_cats),
        || buckets(dt, params.img_ids, &distinct_cats, params.use_cats),
    );
    let num_units = if params.use_cats { distinct_cats.len() * num_images } else { num_images };
    let pooled_slots = (!params.use_cats).then(|| params.cat_ids.iter().map(|c| distinct_cats[c]).collect());
    if params.iou_type != IouType::Segm {
        check_boxes("cocoGt", gt, &gt_buckets)?;
    }
    if params.iou_type == IouType::Bbox {
        check_boxes("cocoDt", dt, &dt_buckets)?;
    }
    let similarity = match (params.iou_type, dt_masks) {
        (IouType::Segm, Some(dt_masks)) => {
            // Ground truth no detection is compared with is checked, not
            // rasterised (unless the dataset has its masks already).
            let compared = gt
                .masks
                .get()
                .is_none()
                .then(|| compared_ground_truth(gt, &gt_buckets, &dt_buckets, num_images, params.use_cats));
            let gt_masks = compared.as_ref().map_or_else(|| gt.masks(), |rows| gt.masks_where(rows));
            check_masks("cocoGt", gt, &gt_masks, &gt_buckets, compared.as_deref())?;
            check_masks("cocoDt", dt, &dt_masks, &dt_buckets, None)?;
            Similarity::Segm { gt: gt_masks, dt: dt_masks }
        }
        (IouType::Keypoints, _) => {
            let floor = params.iou_thrs.iter().map(|&t| effective_threshold(t)).fold(f64::INFINITY, f64::min);
            let oks = Oks::new(params.kpt_oks_sigmas, gt, dt, if floor.is_finite() { floor } else { 0.0 })?;
            oks.prepare(&mut gt_buckets, &dt_buckets, &gt.id_strings)?;
            Similarity::Keypoints(oks)
        }
        _ => Similarity::Bbox,
    };
    let matching = Matching {
        iou_thrs: params.iou_thrs.to_vec(),
        area_rngs: params.area_rngs.to_vec(),
        max_det: params.max_det,
        similarity,
    };
    let mut evaluation = Evaluation {
        num_images,
        num_areas: params.area_rngs.len(),
        num_thresholds: params.iou_thrs.len(),
        num_units,
        chunks: Vec::new(),
        matching,
        gt_buckets,
        dt_buckets,
        pooled_slots,
    };
    let e = &evaluation;
    let chunks: Vec<Chunk> = (0..num_units.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut chunk = Chunk::default();
            let mut scratch = Scratch::default();
            let (mut pooled_gt, mut pooled_dt) = (Vec::new(), Vec::new());
            let units = c * CHUNK..((c + 1) * CHUNK).min(num_units);
            e.units_with_records(units, &mut pooled_gt, &mut pooled_dt, |u, gts, dts| {
                // One relaxed load per non-empty (image, category) unit: a unit is
                // microseconds of matching at least, and a crowded one can take many.
                cancel.check("COCOeval.evaluate")?;
                scratch.load(gts, dts, &e.matching);
                evaluate_unit(u, &e.matching, &mut scratch, &mut chunk);
                Ok(())
            })?;
            // Kept until the evaluation is dropped: without the room the
            // buffers grew into (up to half of each).
            chunk.shrink_to_fit();
            Ok(chunk)
        })
        .collect::<Result<_>>()?;
    evaluation.chunks = chunks;
    Ok(evaluation)
}
