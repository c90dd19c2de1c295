//! The per-image stage of TIDE (Bolya et al. 2020), as the `tidecv` package
//! runs it (SPEC DET-TIDE): each image's detections (best score first, stable,
//! at most `max_dets`) matched greedily to same-class ground truth at IoU >=
//! `pos_thresh`; crowd ground truth as ignore regions (a detection inside one by
//! more than `pos_thresh` of its own area, of its class, is ignored); every
//! detection that is not a true positive classified as a localisation,
//! classification, duplicate, background or other ("both") error in tidecv's
//! order of tests, and unmatched ground truth no error can fix as missed.
//! IoU is of boxes (tidecv's `TIDE.BOX`) or of masks (`TIDE.MASK`: each
//! record's `annToRLE` mask, crowd regions over the detection's area, as
//! `pycocotools.mask.iou`).
//!
//! What it returns is what tidecv's AP bookkeeping replays: the AP data points
//! in push order, the errors in order with their original and fixed data
//! points, and the classes in the order tidecv first meets them. Images are
//! processed in parallel in fixed chunks and their outputs joined in image order,
//! so results do not depend on the thread count.

use rayon::prelude::*;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use crate::boxes::geometry::coco_iou;
use crate::detection::coco::{has_box, CocoDataset, MaskColumn};
use crate::detection::cocoeval::IouType;
use crate::error::{FerropsError, Result};
use crate::interrupt::Cancel;
use crate::mask::prepared::{self, Decoded, PreparedMask};

/// Images per parallel task.
const CHUNK: usize = 256;

/// Error kinds, in tidecv's `TIDE._error_types` order.
pub const CLASSIFICATION: u8 = 0;
pub const LOCALISATION: u8 = 1;
pub const BOTH: u8 = 2;
pub const DUPLICATE: u8 = 3;
pub const BACKGROUND: u8 = 4;
pub const MISSED: u8 = 5;

/// What fixing an error does: nothing, a true positive, or one ground truth fewer.
pub const FIX_NONE: u8 = 0;
pub const FIX_TRUE_POSITIVE: u8 = 1;
pub const FIX_MISSED: u8 = 2;

/// The parameters of one TIDE run.
pub struct TideParams {
    pub pos_thresh: f64,
    pub bg_thresh: f64,
    pub max_dets: usize,
    /// Box IoU or mask IoU (keypoints are refused).
    pub iou_type: IouType,
}

/// TIDE's data points and errors, as columns.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TideRun {
    /// AP data points in tidecv's push order: class, detection index, score, true positive.
    pub point_class: Vec<i64>,
    pub point_id: Vec<i64>,
    pub point_score: Vec<f64>,
    pub point_true: Vec<bool>,
    /// Errors in order: kind, the detection's (or missed ground truth's) index.
    pub error_kind: Vec<u8>,
    pub error_id: Vec<i64>,
    /// The original data point (a false positive), where the detection was not ignored.
    pub error_has_original: Vec<bool>,
    pub error_original_class: Vec<i64>,
    pub error_score: Vec<f64>,
    /// What fixing it does (`FIX_*`), and to which class.
    pub error_fix: Vec<u8>,
    pub error_fixed_class: Vec<i64>,
    /// Classes in the order tidecv first meets them, with their ground truth
    /// (not crowd) and their unmatched ground truth.
    pub classes: Vec<i64>,
    pub gt_positives: Vec<i64>,
    pub false_negatives: Vec<i64>,
}

/// One chunk's output; `touched` lists classes in meeting order (repeats kept).
#[derive(Default)]
struct Part {
    run: TideRun,
    touched: Vec<i64>,
    fn_classes: Vec<i64>,
    positive_classes: Vec<i64>,
}

#[derive(Clone, Copy, PartialEq)]
enum Used {
    No,
    Yes,
    Ignored,
}

/// Index and value of the first largest of `values` (NumPy's `argmax`).
fn argmax(values: impl Iterator<Item = f64>) -> (usize, f64) {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best
}

struct Records<'a> {
    data: &'a CocoDataset,
    /// Each record's mask, for mask IoU (checked valid for every record read).
    masks: Option<MaskColumn>,
}

impl Records<'_> {
    fn mask(&self, j: usize) -> &PreparedMask {
        self.masks.as_ref().and_then(|m| m[j].as_ref().ok()).expect("checked by tide_run")
    }
    fn class(&self, j: usize) -> i64 {
        self.data.annotations.category_id[j]
    }
    fn bbox(&self, j: usize) -> &[f64; 4] {
        &self.data.annotations.bbox[j]
    }
}

/// One image: tidecv's `_eval_image` (with `TIDEExample`). `decoded` is a
/// reused buffer for the image's masks.
fn image(
    gt: &Records,
    dt: &Records,
    gts: &[u32],
    preds: &[u32],
    p: &TideParams,
    out: &mut Part,
    decoded: &mut Decoded,
) {
    let truths: Vec<usize> = gts.iter().map(|&j| j as usize).filter(|&j| !gt.data.annotations.iscrowd[j]).collect();
    let regions: Vec<usize> = gts.iter().map(|&j| j as usize).filter(|&j| gt.data.annotations.iscrowd[j]).collect();
    for &g in &truths {
        out.touched.push(gt.class(g));
        out.positive_classes.push(gt.class(g));
    }
    let run = &mut out.run;
    let missed = |run: &mut TideRun, g: usize, class: i64| {
        run.error_kind.push(MISSED);
        run.error_id.push(g as i64);
        run.error_has_original.push(false);
        run.error_original_class.push(0);
        run.error_score.push(0.0);
        run.error_fix.push(FIX_MISSED);
        run.error_fixed_class.push(class);
    };
    if preds.is_empty() {
        for &g in &truths {
            out.fn_classes.push(gt.class(g));
            missed(run, g, gt.class(g));
        }
        return;
    }
    let scores = &dt.data.annotations.score;
    let mut order: Vec<usize> = preds.iter().map(|&d| d as usize).collect();
    order.sort_by(|&a, &b| scores[b].partial_cmp(&scores[a]).unwrap_or(std::cmp::Ordering::Equal));
    order.truncate(p.max_dets);
    let (nd, ng) = (order.len(), truths.len());
    // Masks decoded once per image: ground truth, crowd regions, detections.
    let with_masks = gt.masks.is_some() && dt.masks.is_some();
    if with_masks {
        let ground = truths.iter().chain(&regions).map(|&g| Some(gt.mask(g)));
        decoded.decode(ground.chain(order.iter().map(|&d| Some(dt.mask(d)))));
    }
    let decoded = &*decoded;
    // IoU of detection `d` (position in `order`) and ground truth `g` (record),
    // the `slot`-th of the image's ground truth then regions.
    let overlap = |d: usize, g: usize, slot: usize, crowd: bool| -> f64 {
        if with_masks {
            prepared::iou(dt.mask(order[d]), gt.mask(g), decoded, ng + regions.len() + d, slot, crowd)
        } else {
            coco_iou(dt.bbox(order[d]), gt.bbox(g), crowd)
        }
    };
    let iou: Vec<f64> =
        (0..nd).flat_map(|d| truths.iter().enumerate().map(move |(s, &g)| overlap(d, g, s, false))).collect();
    let same = |d: usize, g: usize| dt.class(order[d]) == gt.class(truths[g]);
    let cls_iou = |d: usize, g: usize| if same(d, g) { iou[d * ng + g] } else { 0.0 };
    let mut used = vec![Used::No; nd];
    let mut gt_used = vec![false; ng];
    if ng > 0 {
        let mut buffer: Vec<f64> = (0..nd * ng).map(|k| cls_iou(k / ng, k % ng)).collect();
        for d in 0..nd {
            let (g, v) = argmax(buffer[d * ng..(d + 1) * ng].iter().copied());
            if v >= p.pos_thresh {
                used[d] = Used::Yes;
                gt_used[g] = true;
                for row in buffer.chunks_exact_mut(ng) {
                    row[g] = 0.0;
                }
            }
        }
    }
    for (s, &r) in regions.iter().enumerate() {
        for (d, u) in used.iter_mut().enumerate() {
            if *u != Used::Yes && overlap(d, r, ng + s, true) > p.pos_thresh && gt.class(r) == dt.class(order[d]) {
                *u = Used::Ignored;
            }
        }
    }
    // BestGTMatch: per unused ground truth, the best-scoring error that could fix it.
    let mut usable = vec![false; ng];
    let mut best: Vec<(f64, usize)> = vec![(-1.0, usize::MAX); ng];
    let mut fixes: Vec<(usize, usize)> = Vec::new(); // (error position, ground truth)
    for d in 0..nd {
        let (id, class, score) = (order[d], dt.class(order[d]), scores[order[d]]);
        if used[d] != Used::Ignored {
            out.touched.push(class);
            run.point_class.push(class);
            run.point_id.push(id as i64);
            run.point_score.push(score);
            run.point_true.push(used[d] == Used::Yes);
        }
        if used[d] == Used::Yes {
            continue;
        }
        let row = |f: &dyn Fn(usize) -> f64| argmax((0..ng).map(f));
        let (kind, fixable) = if ng == 0 {
            (BACKGROUND, None)
        } else {
            let (g, v) = row(&|g| cls_iou(d, g));
            let (h, w) = row(&|g| if same(d, g) { 0.0 } else { iou[d * ng + g] });
            if p.bg_thresh <= v && v <= p.pos_thresh {
                (LOCALISATION, Some(g))
            } else if w >= p.pos_thresh {
                (CLASSIFICATION, Some(h))
            } else if row(&|g| if gt_used[g] { cls_iou(d, g) } else { 0.0 }).1 >= p.pos_thresh {
                (DUPLICATE, None)
            } else if row(&|g| iou[d * ng + g]).1 <= p.bg_thresh {
                (BACKGROUND, None)
            } else {
                (BOTH, None)
            }
        };
        run.error_kind.push(kind);
        run.error_id.push(id as i64);
        run.error_has_original.push(used[d] != Used::Ignored);
        run.error_original_class.push(class);
        run.error_score.push(score);
        run.error_fix.push(FIX_NONE);
        let fixed_class = if kind == CLASSIFICATION { gt.class(truths[fixable.unwrap_or(0)]) } else { class };
        run.error_fixed_class.push(fixed_class);
        if let Some(g) = fixable.filter(|&g| !gt_used[g]) {
            usable[g] = true;
            if best[g].0 < score {
                best[g] = (score, id);
            }
            fixes.push((run.error_kind.len() - 1, g));
        }
    }
    for (at, g) in fixes {
        if best[g].1 as i64 == run.error_id[at] {
            run.error_fix[at] = FIX_TRUE_POSITIVE;
        }
    }
    for (g, &t) in truths.iter().enumerate() {
        if !gt_used[g] {
            out.fn_classes.push(gt.class(t));
            if !usable[g] {
                missed(run, t, gt.class(t));
            }
        }
    }
}

/// TIDE's per-image stage over every image of `gt` (in file order), for
/// detections `dt` (coded like `gt`: results loaded against it).
/// Every record on an image TIDE reads has a mask; otherwise the error names
/// the first that has none, in file order.
fn check_masks(argument: &'static str, d: &CocoDataset, masks: &MaskColumn, by_image: &[Vec<u32>]) -> Result<()> {
    let bad = by_image.par_iter().flatten().filter(|&&j| masks[j as usize].is_err()).min();
    let Some(&j) = bad else { return Ok(()) };
    let j = j as usize;
    let why = masks[j].as_ref().err().map_or("", |why| why);
    Err(FerropsError::value(
        "tide",
        argument,
        "a segmentation annToRLE accepts for every record (mask mode)",
        format!("{}: annotations[{j}] (id {}) {why}", d.source, d.id_strings.describe(d.annotations.id[j])),
    ))
}

/// Every record on an image TIDE reads has a box (box mode; ground truth may
/// be mask-only, which pycocotools loads); otherwise the error names the first
/// without one, in file order, instead of comparing NaN boxes.
fn check_boxes(argument: &'static str, d: &CocoDataset, by_image: &[Vec<u32>]) -> Result<()> {
    let bad = by_image.par_iter().flatten().filter(|&&j| !has_box(&d.annotations.bbox[j as usize])).min();
    let Some(&j) = bad else { return Ok(()) };
    let j = j as usize;
    Err(FerropsError::value(
        "tide",
        argument,
        "a 'bbox' in every record (bbox mode)",
        format!("{}: annotations[{j}] (id {}) has no 'bbox'", d.source, d.id_strings.describe(d.annotations.id[j])),
    ))
}

pub fn tide_run(gt: &CocoDataset, dt: &CocoDataset, p: &TideParams, cancel: &Cancel) -> Result<TideRun> {
    const F: &str = "tide";
    for (name, v) in [("pos_threshold", p.pos_thresh), ("background_threshold", p.bg_thresh)] {
        if !v.is_finite() {
            return Err(FerropsError::value(F, name, "a finite number", v.to_string()));
        }
    }
    if let Some(i) = dt.first_without_score {
        return Err(FerropsError::value(F, "dt", "detections with a 'score' each", format!("annotations[{i}]")));
    }
    let recoded = dt.coded_like(&gt.id_strings);
    let dt = recoded.as_ref().unwrap_or(dt);
    let position: HashMap<i64, usize> = gt.image_ids.iter().enumerate().map(|(i, &id)| (id, i)).rev().collect();
    let group = |d: &CocoDataset| {
        let mut by_image: Vec<Vec<u32>> = vec![Vec::new(); gt.image_ids.len()];
        for (j, id) in d.annotations.image_id.iter().enumerate() {
            if let Some(&i) = position.get(id) {
                by_image[i].push(j as u32);
            }
        }
        by_image
    };
    let (gt_by_image, dt_by_image) = rayon::join(|| group(gt), || group(dt));
    let (gt_masks, dt_masks) = match p.iou_type {
        IouType::Bbox => {
            check_boxes("cocoGt", gt, &gt_by_image)?;
            check_boxes("cocoDt", dt, &dt_by_image)?;
            (None, None)
        }
        IouType::Segm => {
            let (gt_masks, dt_masks) = rayon::join(|| gt.masks(), || dt.masks());
            check_masks("cocoGt", gt, &gt_masks, &gt_by_image)?;
            check_masks("cocoDt", dt, &dt_masks, &dt_by_image)?;
            (Some(gt_masks), Some(dt_masks))
        }
        IouType::Keypoints => {
            return Err(FerropsError::value(F, "mode", "'bbox' or 'mask'", "keypoints"));
        }
    };
    let (gr, dr) = (Records { data: gt, masks: gt_masks }, Records { data: dt, masks: dt_masks });
    let num_images = gt.image_ids.len();
    let parts: Vec<Part> = (0..num_images.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            cancel.check(F)?;
            let mut part = Part::default();
            let mut decoded = Decoded::default();
            for i in c * CHUNK..((c + 1) * CHUNK).min(num_images) {
                image(&gr, &dr, &gt_by_image[i], &dt_by_image[i], p, &mut part, &mut decoded);
            }
            Ok(part)
        })
        .collect::<Result<_>>()?;
    let mut run = TideRun::default();
    let mut seen: HashSet<i64> = HashSet::default();
    let mut positives: HashMap<i64, i64> = HashMap::default();
    let mut negatives: HashMap<i64, i64> = HashMap::default();
    for part in parts {
        for c in part.touched {
            if seen.insert(c) {
                run.classes.push(c);
            }
        }
        for c in part.positive_classes {
            *positives.entry(c).or_default() += 1;
        }
        for c in part.fn_classes {
            *negatives.entry(c).or_default() += 1;
        }
        let r = part.run;
        run.point_class.extend(r.point_class);
        run.point_id.extend(r.point_id);
        run.point_score.extend(r.point_score);
        run.point_true.extend(r.point_true);
        run.error_kind.extend(r.error_kind);
        run.error_id.extend(r.error_id);
        run.error_has_original.extend(r.error_has_original);
        run.error_original_class.extend(r.error_original_class);
        run.error_score.extend(r.error_score);
        run.error_fix.extend(r.error_fix);
        run.error_fixed_class.extend(r.error_fixed_class);
    }
    run.gt_positives = run.classes.iter().map(|c| positives.get(c).copied().unwrap_or(0)).collect();
    run.false_negatives = run.classes.iter().map(|c| negatives.get(c).copied().unwrap_or(0)).collect();
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detection::coco::{parse_ground_truth, parse_results, Origin};
    use crate::parallel;

    fn datasets() -> (CocoDataset, CocoDataset) {
        let o = Origin { function: "t", argument: "t", source: "t" };
        let gt = br#"{"images":[{"id":1},{"id":2}],"categories":[{"id":1},{"id":2}],
          "annotations":[
            {"id":1,"image_id":1,"category_id":1,"bbox":[0,0,10,10],"area":100,"iscrowd":0},
            {"id":2,"image_id":1,"category_id":2,"bbox":[100,100,10,10],"area":100,"iscrowd":0},
            {"id":3,"image_id":2,"category_id":1,"bbox":[0,0,10,10],"area":100,"iscrowd":0},
            {"id":4,"image_id":2,"category_id":1,"bbox":[50,50,40,40],"area":1600,"iscrowd":1}]}"#;
        let gt = parse_ground_truth(gt, &o).unwrap();
        let dt = br#"[
            {"image_id":1,"category_id":1,"bbox":[0,0,10,10],"score":0.9},
            {"image_id":1,"category_id":1,"bbox":[0,0,10,10],"score":0.8},
            {"image_id":1,"category_id":2,"bbox":[0,0,10,10],"score":0.7},
            {"image_id":1,"category_id":1,"bbox":[0,0,10,3],"score":0.6},
            {"image_id":1,"category_id":1,"bbox":[300,300,5,5],"score":0.5},
            {"image_id":2,"category_id":2,"bbox":[0,0,10,10],"score":0.4},
            {"image_id":2,"category_id":1,"bbox":[60,60,10,10],"score":0.3}]"#;
        let dt = parse_results(dt, &gt, &o).unwrap();
        (gt, dt)
    }

    /// `datasets()` with sized images and each ground truth's box as its
    /// polygon; `first` replaces the first ground truth's segmentation.
    fn datasets_with_masks(first: &str) -> (CocoDataset, CocoDataset) {
        let (gt, dt) = datasets();
        let o = Origin { function: "t", argument: "t", source: "gt.json" };
        let records: Vec<String> = (0..gt.annotations.len())
            .map(|j| {
                let [x, y, w, h] = gt.annotations.bbox[j];
                let polygon = format!("[[{x},{y},{x},{},{},{},{},{y}]]", y + h, x + w, y + h, x + w);
                format!(
                    r#"{{"id":{},"image_id":{},"category_id":{},"bbox":[{x},{y},{w},{h}],"area":{},"iscrowd":{},
                        "segmentation":{}}}"#,
                    gt.annotations.id[j],
                    gt.annotations.image_id[j],
                    gt.annotations.category_id[j],
                    w * h,
                    u8::from(gt.annotations.iscrowd[j]),
                    if j == 0 { first } else { &polygon },
                )
            })
            .collect();
        let json = format!(
            r#"{{"images":[{{"id":1,"height":400,"width":400}},{{"id":2,"height":400,"width":400}}],
                "categories":[{{"id":1}},{{"id":2}}],"annotations":[{}]}}"#,
            records.join(",")
        );
        let masked = parse_ground_truth(json.as_bytes(), &o).unwrap();
        let results = parse_results(
            br#"[{"image_id":1,"category_id":1,"bbox":[0,0,10,10],"score":0.9},
            {"image_id":1,"category_id":1,"bbox":[0,0,10,10],"score":0.8},
            {"image_id":1,"category_id":2,"bbox":[0,0,10,10],"score":0.7},
            {"image_id":1,"category_id":1,"bbox":[0,0,10,3],"score":0.6},
            {"image_id":1,"category_id":1,"bbox":[300,300,5,5],"score":0.5},
            {"image_id":2,"category_id":2,"bbox":[0,0,10,10],"score":0.4},
            {"image_id":2,"category_id":1,"bbox":[60,60,10,10],"score":0.3}]"#,
            &masked,
            &o,
        )
        .unwrap();
        assert_eq!(results.annotations.bbox, dt.annotations.bbox);
        (masked, results)
    }

    #[test]
    fn masks_that_are_their_boxes_give_the_box_run_for_any_thread_count() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (gt, dt) = datasets_with_masks("[[0,0,0,10,10,10,10,0]]");
        let params = |iou_type| TideParams { pos_thresh: 0.5, bg_thresh: 0.1, max_dets: 100, iou_type };
        let boxes = tide_run(&gt, &dt, &params(IouType::Bbox), &Cancel::new()).unwrap();
        for threads in [1, 2] {
            parallel::set_num_threads(threads).unwrap();
            let masks = parallel::install(|| tide_run(&gt, &dt, &params(IouType::Segm), &Cancel::new())).unwrap();
            assert_eq!(masks, boxes);
        }
        // A mask elsewhere: the first detection no longer matches the first cat.
        let (gt, dt) = datasets_with_masks("[[200,200,200,210,210,210,210,200]]");
        let moved = tide_run(&gt, &dt, &params(IouType::Segm), &Cancel::new()).unwrap();
        assert!(!moved.point_true[0]);
        let (gt, dt) = datasets_with_masks("[[1,2,3]]");
        let err = tide_run(&gt, &dt, &params(IouType::Segm), &Cancel::new()).unwrap_err().to_string();
        assert!(err.contains("'cocoGt'") && err.contains("gt.json: annotations[0] (id 1) has a bad"), "{err}");
    }

    #[test]
    fn errors_follow_tidecv_s_tests_in_order() {
        let (gt, dt) = datasets();
        let p = TideParams { pos_thresh: 0.5, bg_thresh: 0.1, max_dets: 100, iou_type: IouType::Bbox };
        let run = tide_run(&gt, &dt, &p, &Cancel::new()).unwrap();
        // Image 1: a true positive, then a duplicate, a class error on the used
        // ground truth (nothing to fix), a localisation error (IoU 0.3, used
        // ground truth), background; the dog is missed. Image 2: a class error
        // that fixes the unused cat (it becomes usable, so no miss), and a
        // detection in the crowd region (ignored: no data point; background,
        // as nothing overlaps it).
        assert_eq!(run.point_id, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(run.point_true, vec![true, false, false, false, false, false]);
        assert_eq!(
            run.error_kind,
            vec![DUPLICATE, CLASSIFICATION, LOCALISATION, BACKGROUND, MISSED, CLASSIFICATION, BACKGROUND]
        );
        assert_eq!(run.error_id, vec![1, 2, 3, 4, 1, 5, 6]);
        assert_eq!(
            run.error_fix,
            vec![FIX_NONE, FIX_NONE, FIX_NONE, FIX_NONE, FIX_MISSED, FIX_TRUE_POSITIVE, FIX_NONE]
        );
        assert_eq!(run.error_fixed_class[5], 1);
        assert_eq!(run.error_has_original, vec![true, true, true, true, false, true, false]);
        assert_eq!(run.classes, vec![1, 2]);
        assert_eq!(run.gt_positives, vec![2, 1]);
        assert_eq!(run.false_negatives, vec![1, 1]);
    }

    #[test]
    fn the_same_for_one_and_two_threads() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (gt, dt) = datasets();
        let p = TideParams { pos_thresh: 0.5, bg_thresh: 0.1, max_dets: 3, iou_type: IouType::Bbox };
        let runs: Vec<TideRun> = [1, 2]
            .iter()
            .map(|&threads| {
                parallel::set_num_threads(threads).unwrap();
                parallel::install(|| tide_run(&gt, &dt, &p, &Cancel::new())).unwrap()
            })
            .collect();
        assert_eq!(runs[0], runs[1]);
        // Three detections kept in image 1; the crowd's detection has no point.
        assert_eq!(runs[0].point_id, vec![0, 1, 2, 5]);
    }
}
