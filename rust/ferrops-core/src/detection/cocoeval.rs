//! The COCO bbox evaluation, bit for bit pycocotools' `COCOeval` (SPEC DET-COCO),
//! quirks included: crowd ground truth matched repeatedly with IoU = inter / det
//! area, ignored ground truth sorted last, stable sorts by score, both ends of an
//! area range inclusive, a ground truth with id 0 treated as "no match", the
//! right-to-left precision envelope and `searchsorted(side="left")` at the recall
//! thresholds, unreached recall points left at 0.
//!
//! [`evaluate`] matches each (category, image) unit in parallel and keeps, per
//! area range, one byte per detection and threshold (true positive, false
//! positive or ignored); no IoU matrix outlives its unit. [`accumulate`] builds
//! the precision/recall/score arrays, one (category, area, maxDets) cell per task.
//! Every unit and cell is computed by one task from its own data, so results do
//! not depend on the thread count.

use std::collections::HashMap;

use rayon::prelude::*;

use super::coco::CocoDataset;
use crate::error::{FerropsError, Result};

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
}

/// A detection's outcome at one IoU threshold.
const FALSE_POSITIVE: u8 = 0;
const TRUE_POSITIVE: u8 = 1;
const IGNORED: u8 = 2;

/// One (category, image) unit that has ground truth or detections.
#[derive(Debug)]
struct UnitEval {
    /// Scores of the kept detections, best first (stable).
    scores: Vec<f64>,
    /// Per area range: `[T, D]` outcomes and the count of ground truth not ignored.
    areas: Vec<(Vec<u8>, usize)>,
}

/// The per-unit results of `evaluate`, laid out as pycocotools' `evalImgs`:
/// category-major, then area range, then image.
#[derive(Debug)]
pub struct Evaluation {
    num_images: usize,
    num_areas: usize,
    num_thresholds: usize,
    /// Indexed `k * num_images + i`; `None` where the unit has neither ground
    /// truth nor detections.
    units: Vec<Option<UnitEval>>,
}

impl Evaluation {
    pub fn num_thresholds(&self) -> usize {
        self.num_thresholds
    }

    /// pycocotools' `len(evalImgs)`.
    pub fn len(&self) -> usize {
        self.units.len() * self.num_areas
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn num_images(&self) -> usize {
        self.num_images
    }

    pub fn num_areas(&self) -> usize {
        self.num_areas
    }

    /// The entry at pycocotools' flat `evalImgs` index.
    fn entry(&self, flat: usize) -> Option<(&UnitEval, usize)> {
        let per_category = self.num_areas * self.num_images;
        let (k, rest) = (flat / per_category, flat % per_category);
        let (a, i) = (rest / self.num_images, rest % self.num_images);
        self.units[k * self.num_images + i].as_ref().map(|u| (u, a))
    }
}

/// pycocotools' bbox IoU (`maskApi.c` `bbIou`) of one detection and one ground
/// truth, `[x, y, w, h]` boxes; for crowd ground truth the union is the
/// detection's area.
#[inline]
fn bbox_iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
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

/// Highest first; -0.0 and 0.0 tie as in NumPy (scores are finite: checked on load).
#[inline]
fn descending(a: f64, b: f64) -> std::cmp::Ordering {
    b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal)
}

/// Sorts indices by score, highest first, ties in input order (NumPy's stable
/// argsort of `-score`).
fn sort_by_score_desc(indices: &mut [u32], score: &[f64]) {
    indices.sort_by(|&a, &b| descending(score[a as usize], score[b as usize]));
}

/// pycocotools' `loadAnns(getAnnIds(...))` resolves each annotation through its
/// id, so a repeated id stands for the last record carrying it.
fn last_record_of_each_id(ids: &[i64]) -> Option<Vec<u32>> {
    let mut last: HashMap<i64, u32> = HashMap::with_capacity(ids.len());
    for (j, &id) in ids.iter().enumerate() {
        last.insert(id, j as u32);
    }
    if last.len() == ids.len() {
        return None;
    }
    Some(ids.iter().map(|id| last[id]).collect())
}

/// pycocotools' `_prepare`: the records of each (category, image) bucket in the
/// order `getAnnIds` lists them (images in `img_ids` order, file order within
/// an image). Buckets are indexed `c * num_images + i`, `c` the position of the
/// category among `distinct_cats`.
fn buckets(
    dataset: &CocoDataset,
    img_ids: &[i64],
    distinct_cats: &HashMap<i64, usize>,
    filter_cats: bool,
) -> Vec<Vec<u32>> {
    let ann = &dataset.annotations;
    let num_images = img_ids.len();
    let image_pos: HashMap<i64, usize> = img_ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let mut per_image: Vec<Vec<u32>> = vec![Vec::new(); num_images];
    for (j, image_id) in ann.image_id.iter().enumerate() {
        if let Some(&i) = image_pos.get(image_id) {
            per_image[i].push(j as u32);
        }
    }
    let resolve = last_record_of_each_id(&ann.id);
    let mut out = vec![Vec::new(); distinct_cats.len() * num_images];
    for records in &per_image {
        for &j in records {
            if filter_cats && !distinct_cats.contains_key(&ann.category_id[j as usize]) {
                continue;
            }
            let r = resolve.as_ref().map_or(j, |map| map[j as usize]) as usize;
            if let (Some(&i), Some(&c)) = (image_pos.get(&ann.image_id[r]), distinct_cats.get(&ann.category_id[r])) {
                out[c * num_images + i].push(r as u32);
            }
        }
    }
    out
}

fn check_params(params: &EvalParams) -> Result<()> {
    if params.max_det == 0 {
        return Err(FerropsError::value("COCOeval.evaluate", "params.maxDets", "positive integers", "0"));
    }
    if let Some(t) = params.iou_thrs.iter().find(|t| !t.is_finite()) {
        return Err(FerropsError::value("COCOeval.evaluate", "params.iouThrs", "finite numbers", t.to_string()));
    }
    if let Some(r) = params.area_rngs.iter().find(|r| r.iter().any(|v| v.is_nan())) {
        return Err(FerropsError::value("COCOeval.evaluate", "params.areaRng", "[lo, hi] pairs of numbers", format!("{r:?}")));
    }
    Ok(())
}

/// Matches one unit's detections to its ground truth at every threshold and area
/// range (pycocotools' `computeIoU` + `evaluateImg`).
fn evaluate_unit(gt: &CocoDataset, dt: &CocoDataset, gts: &[u32], dts: &[u32], params: &EvalParams) -> Option<UnitEval> {
    if gts.is_empty() && dts.is_empty() {
        return None;
    }
    let (g_ann, d_ann) = (&gt.annotations, &dt.annotations);
    let mut dts = dts.to_vec();
    sort_by_score_desc(&mut dts, &d_ann.score);
    dts.truncate(params.max_det);
    let (num_dt, num_gt, num_thr) = (dts.len(), gts.len(), params.iou_thrs.len());

    let ious: Vec<f64> = if num_dt > 0 && num_gt > 0 {
        let mut m = Vec::with_capacity(num_dt * num_gt);
        for &d in &dts {
            let db = &d_ann.bbox[d as usize];
            m.extend(gts.iter().map(|&g| bbox_iou(db, &g_ann.bbox[g as usize], g_ann.iscrowd[g as usize])));
        }
        m
    } else {
        Vec::new()
    };

    let mut areas = Vec::with_capacity(params.area_rngs.len());
    let mut order: Vec<usize> = Vec::with_capacity(num_gt);
    let mut ignored: Vec<bool> = Vec::with_capacity(num_gt);
    let mut matched_by: Vec<i64> = vec![0; num_gt];
    for rng in params.area_rngs {
        let outside = |area: f64| area < rng[0] || area > rng[1];
        let gt_ignored = |g: usize| g_ann.iscrowd[gts[g] as usize] || outside(g_ann.area[gts[g] as usize]);
        order.clear();
        order.extend((0..num_gt).filter(|&g| !gt_ignored(g)));
        let not_ignored = order.len();
        order.extend((0..num_gt).filter(|&g| gt_ignored(g)));
        ignored.clear();
        ignored.extend((0..num_gt).map(|s| s >= not_ignored));

        let mut outcomes = vec![FALSE_POSITIVE; num_thr * num_dt];
        for (t, &thr) in params.iou_thrs.iter().enumerate() {
            matched_by.iter_mut().for_each(|m| *m = 0);
            for (di, &d) in dts.iter().enumerate() {
                let row = &ious[di * num_gt..(di + 1) * num_gt];
                let mut best = if 1.0 - 1e-10 < thr { 1.0 - 1e-10 } else { thr };
                let mut matched: Option<usize> = None;
                if !ious.is_empty() {
                    for s in 0..num_gt {
                        let g = order[s];
                        if matched_by[s] > 0 && !g_ann.iscrowd[gts[g] as usize] {
                            continue;
                        }
                        if matched.is_some_and(|m| !ignored[m]) && ignored[s] {
                            break;
                        }
                        if row[g] < best {
                            continue;
                        }
                        best = row[g];
                        matched = Some(s);
                    }
                }
                let d = d as usize;
                let dt_outside = outside(d_ann.area[d]);
                outcomes[t * num_dt + di] = match matched {
                    Some(s) => {
                        matched_by[s] = d_ann.id[d];
                        let gt_id = g_ann.id[gts[order[s]] as usize];
                        if ignored[s] || (gt_id == 0 && dt_outside) {
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
            }
        }
        areas.push((outcomes, not_ignored));
    }
    let scores = dts.iter().map(|&d| d_ann.score[d as usize]).collect();
    Some(UnitEval { scores, areas })
}

/// pycocotools' `COCOeval.evaluate` for bbox: per (category, image) matching.
pub fn evaluate(gt: &CocoDataset, dt: &CocoDataset, params: &EvalParams) -> Result<Evaluation> {
    check_params(params)?;
    if let Some(i) = dt.first_without_score {
        return Err(FerropsError::value(
            "COCOeval.evaluate",
            "cocoDt",
            "detections with a 'score' each",
            format!("annotations[{i}] (id {}) without 'score'", dt.annotations.id[i]),
        ));
    }
    let num_images = params.img_ids.len();
    let mut distinct_cats: HashMap<i64, usize> = HashMap::new();
    for &c in params.cat_ids {
        let next = distinct_cats.len();
        distinct_cats.entry(c).or_insert(next);
    }
    let gt_buckets = buckets(gt, params.img_ids, &distinct_cats, params.use_cats);
    let dt_buckets = buckets(dt, params.img_ids, &distinct_cats, params.use_cats);

    let units: Vec<Option<UnitEval>> = if params.use_cats {
        (0..distinct_cats.len() * num_images)
            .into_par_iter()
            .with_min_len(64)
            .map(|u| evaluate_unit(gt, dt, &gt_buckets[u], &dt_buckets[u], params))
            .collect()
    } else {
        let pooled = |from: &Vec<Vec<u32>>, i: usize| -> Vec<u32> {
            params.cat_ids.iter().flat_map(|c| from[distinct_cats[c] * num_images + i].iter().copied()).collect()
        };
        (0..num_images)
            .into_par_iter()
            .with_min_len(16)
            .map(|i| evaluate_unit(gt, dt, &pooled(&gt_buckets, i), &pooled(&dt_buckets, i), params))
            .collect()
    };
    Ok(Evaluation { num_images, num_areas: params.area_rngs.len(), num_thresholds: params.iou_thrs.len(), units })
}

/// Which evaluated entries `accumulate` reads, computed as pycocotools does from
/// the current and the evaluated parameters.
pub struct AccumulateParams<'a> {
    /// For each output category slot `k`, the evaluated category index.
    pub k_list: &'a [usize],
    pub a_list: &'a [usize],
    /// maxDets values (not indices), one per output slot.
    pub m_list: &'a [usize],
    pub i_list: &'a [usize],
    /// Output sizes: K, A, M (at least the list lengths).
    pub num_categories: usize,
    pub num_areas: usize,
    pub num_max_dets: usize,
    pub rec_thrs: &'a [f64],
}

/// pycocotools' `eval` arrays, C-order: `precision` and `scores` `[T, R, K, A, M]`,
/// `recall` `[T, K, A, M]`, -1 where a setting has no ground truth.
pub struct Accumulated {
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    pub scores: Vec<f64>,
    pub shape: [usize; 5],
}

struct Cell {
    precision: Vec<f64>,
    scores: Vec<f64>,
    recall: Vec<f64>,
}

fn accumulate_cell(evaluation: &Evaluation, p: &AccumulateParams, k0: usize, a0: usize, max_det: usize) -> Result<Option<Cell>> {
    let (num_images, num_areas) = (evaluation.num_images, evaluation.num_areas);
    let mut entries: Vec<(&UnitEval, usize)> = Vec::new();
    for &i in p.i_list {
        let flat = k0 * num_areas * num_images + a0 * num_images + i;
        if flat >= evaluation.len() {
            return Err(FerropsError::value(
                "COCOeval.accumulate",
                "p",
                "parameters whose imgIds, catIds and areaRng match those evaluate() ran with",
                format!("an index {flat} past the {} evaluated entries", evaluation.len()),
            ));
        }
        if let Some(entry) = evaluation.entry(flat) {
            entries.push(entry);
        }
    }
    if entries.is_empty() {
        return Ok(None);
    }
    let positives: usize = entries.iter().map(|(u, a)| u.areas[*a].1).sum();
    if positives == 0 {
        return Ok(None);
    }
    // (entry, detection) pairs in concatenation order, then stably by score.
    let mut picks: Vec<(u32, u32)> = Vec::new();
    for (e, (u, _)) in entries.iter().enumerate() {
        picks.extend((0..u.scores.len().min(max_det)).map(|d| (e as u32, d as u32)));
    }
    let score_of = |&(e, d): &(u32, u32)| entries[e as usize].0.scores[d as usize];
    picks.sort_by(|x, y| descending(score_of(x), score_of(y)));
    let sorted_scores: Vec<f64> = picks.iter().map(score_of).collect();

    let (num_thr, num_rec, nd) = (evaluation.num_thresholds, p.rec_thrs.len(), picks.len());
    let mut cell = Cell { precision: vec![0.0; num_thr * num_rec], scores: vec![0.0; num_thr * num_rec], recall: vec![0.0; num_thr] };
    let (mut rc, mut pr) = (Vec::with_capacity(nd), Vec::with_capacity(nd));
    for t in 0..num_thr {
        rc.clear();
        pr.clear();
        let (mut tp, mut fp) = (0.0f64, 0.0f64);
        for &(e, d) in &picks {
            let (u, a) = entries[e as usize];
            let num_dt = u.scores.len();
            match u.areas[a].0[t * num_dt + d as usize] {
                TRUE_POSITIVE => tp += 1.0,
                FALSE_POSITIVE => fp += 1.0,
                _ => {}
            }
            rc.push(tp / positives as f64);
            pr.push(tp / (fp + tp + f64::EPSILON));
        }
        cell.recall[t] = rc.last().copied().unwrap_or(0.0);
        for i in (1..nd).rev() {
            if pr[i] > pr[i - 1] {
                pr[i - 1] = pr[i];
            }
        }
        // NumPy's searchsorted(rc, recThrs, side="left"); the first recall
        // threshold past the last detection ends the fill (pycocotools' bare
        // `except`), later ones stay 0 even if reachable.
        for (r, &thr) in p.rec_thrs.iter().enumerate() {
            let pi = rc.partition_point(|&x| x < thr);
            if pi >= nd {
                break;
            }
            cell.precision[t * num_rec + r] = pr[pi];
            cell.scores[t * num_rec + r] = sorted_scores[pi];
        }
    }
    Ok(Some(cell))
}

/// pycocotools' `COCOeval.accumulate`.
pub fn accumulate(evaluation: &Evaluation, p: &AccumulateParams) -> Result<Accumulated> {
    if let Some(r) = p.rec_thrs.iter().find(|r| r.is_nan()) {
        return Err(FerropsError::value("COCOeval.accumulate", "params.recThrs", "numbers", r.to_string()));
    }
    let (t_n, r_n) = (evaluation.num_thresholds, p.rec_thrs.len());
    let (k_n, a_n, m_n) = (p.num_categories, p.num_areas, p.num_max_dets);
    if p.k_list.len() > k_n || p.a_list.len() > a_n || p.m_list.len() > m_n {
        return Err(FerropsError::value("COCOeval.accumulate", "p", "index lists no longer than K, A, M", "longer lists"));
    }
    let combos: Vec<(usize, usize, usize)> = (0..p.k_list.len())
        .flat_map(|k| (0..p.a_list.len()).flat_map(move |a| (0..p.m_list.len()).map(move |m| (k, a, m))))
        .collect();
    let cells: Vec<Option<Cell>> = combos
        .par_iter()
        .map(|&(k, a, m)| accumulate_cell(evaluation, p, p.k_list[k], p.a_list[a], p.m_list[m]))
        .collect::<Result<_>>()?;

    let mut precision = vec![-1.0; t_n * r_n * k_n * a_n * m_n];
    let mut scores = precision.clone();
    let mut recall = vec![-1.0; t_n * k_n * a_n * m_n];
    for (&(k, a, m), cell) in combos.iter().zip(&cells) {
        let Some(cell) = cell else { continue };
        for t in 0..t_n {
            recall[((t * k_n + k) * a_n + a) * m_n + m] = cell.recall[t];
            for r in 0..r_n {
                let at = (((t * r_n + r) * k_n + k) * a_n + a) * m_n + m;
                precision[at] = cell.precision[t * r_n + r];
                scores[at] = cell.scores[t * r_n + r];
            }
        }
    }
    Ok(Accumulated { precision, recall, scores, shape: [t_n, r_n, k_n, a_n, m_n] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detection::coco::{parse_ground_truth, parse_results, Origin};

    fn datasets() -> (CocoDataset, CocoDataset) {
        let gt = br#"{"images":[{"id":1},{"id":2}],"categories":[{"id":1},{"id":2}],
          "annotations":[
            {"id":1,"image_id":1,"category_id":1,"bbox":[0,0,10,10],"area":100,"iscrowd":0},
            {"id":2,"image_id":1,"category_id":1,"bbox":[20,20,40,40],"area":1600,"iscrowd":0},
            {"id":3,"image_id":2,"category_id":2,"bbox":[0,0,100,100],"area":10000,"iscrowd":1},
            {"id":4,"image_id":2,"category_id":1,"bbox":[5,5,10,10],"area":100,"iscrowd":0}]}"#;
        let o = Origin { function: "t", argument: "t", source: "t" };
        let gt = parse_ground_truth(gt, &o).unwrap();
        let dt = br#"[
            {"image_id":1,"category_id":1,"bbox":[0,0,10,9],"score":0.9},
            {"image_id":1,"category_id":1,"bbox":[21,20,40,40],"score":0.9},
            {"image_id":2,"category_id":2,"bbox":[10,10,5,5],"score":0.3},
            {"image_id":2,"category_id":1,"bbox":[50,50,10,10],"score":0.8},
            {"image_id":2,"category_id":1,"bbox":[5,5,10,11],"score":0.1}]"#;
        let dt = parse_results(dt, &gt, &o).unwrap();
        (gt, dt)
    }

    fn run(gt: &CocoDataset, dt: &CocoDataset) -> Accumulated {
        let iou_thrs: Vec<f64> = (0..10).map(|i| 0.5 + 0.05 * i as f64).collect();
        let rec_thrs: Vec<f64> = (0..101).map(|i| i as f64 / 100.0).collect();
        let area_rngs = [[0.0, 1e10], [0.0, 1024.0], [1024.0, 9216.0], [9216.0, 1e10]];
        let params = EvalParams { img_ids: &[1, 2], cat_ids: &[1, 2], use_cats: true, iou_thrs: &iou_thrs, area_rngs: &area_rngs, max_det: 100 };
        let e = evaluate(gt, dt, &params).unwrap();
        let acc = AccumulateParams {
            k_list: &[0, 1],
            a_list: &[0, 1, 2, 3],
            m_list: &[1, 10, 100],
            i_list: &[0, 1],
            num_categories: 2,
            num_areas: 4,
            num_max_dets: 3,
            rec_thrs: &rec_thrs,
        };
        accumulate(&e, &acc).unwrap()
    }

    #[test]
    fn crowd_iou_uses_detection_area() {
        assert_eq!(bbox_iou(&[10.0, 10.0, 5.0, 5.0], &[0.0, 0.0, 100.0, 100.0], true), 1.0);
        assert_eq!(bbox_iou(&[0.0, 0.0, 2.0, 2.0], &[1.0, 0.0, 2.0, 2.0], false), 2.0 / 6.0);
        assert_eq!(bbox_iou(&[0.0, 0.0, 1.0, 1.0], &[1.0, 0.0, 2.0, 2.0], false), 0.0);
    }

    #[test]
    fn hand_checked_recall_and_precision() {
        let (gt, dt) = datasets();
        let out = run(&gt, &dt);
        let [t_n, r_n, k_n, a_n, m_n] = out.shape;
        assert_eq!(out.shape, [10, 101, 2, 4, 3]);
        // Category 2 has only crowd ground truth: -1 everywhere.
        assert!((0..t_n).all(|t| out.recall[((t * k_n + 1) * a_n) * m_n + 2] == -1.0));
        // Category 1, area all, maxDets 100, IoU 0.5: 3 ground truth, detections by
        // score 0.9 (TP), 0.9 (TP), 0.8 (FP), 0.1 (TP, IoU 100/110).
        let recall = out.recall[(0 * k_n * a_n) * m_n + 2];
        assert_eq!(recall, 1.0);
        let p_at = |r: usize| out.precision[((r * k_n) * a_n) * m_n + 2];
        // 1 / (1 + eps) at the first detection, lifted to 2 / 2 by the envelope.
        assert_eq!(p_at(0), 1.0);
        assert_eq!(p_at(100), 3.0 / (4.0 + f64::EPSILON));
        let _ = r_n;
    }

    #[test]
    fn same_bits_for_any_thread_count() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (gt, dt) = datasets();
        crate::parallel::set_num_threads(1).unwrap();
        let one = crate::parallel::install(|| run(&gt, &dt));
        crate::parallel::set_num_threads(2).unwrap();
        let two = crate::parallel::install(|| run(&gt, &dt));
        assert_eq!(one.precision.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), two.precision.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        assert_eq!(one.scores, two.scores);
        assert_eq!(one.recall, two.recall);
    }
}
