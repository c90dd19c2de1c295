//! The COCO bbox evaluation, bit for bit pycocotools' `COCOeval` (SPEC DET-COCO),
//! quirks included: crowd ground truth matched repeatedly with IoU = inter / det
//! area, ignored ground truth sorted last, stable sorts by score, both ends of an
//! area range inclusive, a ground truth with id 0 treated as "no match", the
//! right-to-left precision envelope and `searchsorted(side="left")` at the recall
//! thresholds, unreached recall points left at 0.
//!
//! [`evaluate`] matches the (category, image) units in parallel, in fixed chunks
//! of [`CHUNK`] units; a chunk keeps, per unit, the kept detections' scores and
//! one byte per (area range, detection, threshold): true positive, false positive
//! or ignored. No IoU matrix outlives its unit. [`accumulate`] builds the
//! precision/recall/score arrays one category per task. Every unit and cell is
//! computed by one task from its own data, so results do not depend on the
//! thread count.
//!
//! pycocotools' per-entry dicts (`evalImgs`) and IoU matrices (`ious`) are not
//! kept: [`Evaluation::image_evaluations`] and [`Evaluation::unit_ious`] redo one
//! unit's matching from the kept buckets when asked, with the same code.

use std::mem::MaybeUninit;

use rayon::prelude::*;
use rustc_hash::FxHashMap as HashMap;

use super::coco::{CocoDataset, Packed as Record};
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

/// Units per parallel task; fixed, so the work split is the same for any thread count.
const CHUNK: usize = 512;

/// Where a unit's results lie in its chunk's buffers.
#[derive(Debug, Clone, Copy)]
struct UnitSpan {
    /// The unit's index among all units.
    unit: u32,
    num_dt: u32,
    scores_at: u32,
    codes_at: u32,
    positives_at: u32,
}

/// The results of [`CHUNK`] consecutive units, in flat buffers.
#[derive(Debug, Default)]
struct Chunk {
    /// The units with ground truth or detections, in unit order (pycocotools'
    /// `None` entries are the units missing here).
    units: Vec<UnitSpan>,
    /// Kept detections' scores, best first (stable), per unit.
    scores: Vec<f64>,
    /// Per unit `[A, D, T]` outcomes.
    codes: Vec<u8>,
    /// Per unit and area range, the ground truth not ignored.
    positives: Vec<u32>,
}

/// One unit's results, borrowed from its chunk.
#[derive(Clone, Copy)]
struct UnitView<'a> {
    scores: &'a [f64],
    codes: &'a [u8],
    positives: &'a [u32],
}

/// The records of each (category, image) bucket, CSR: bucket `b` holds
/// `records[offsets[b]..offsets[b + 1]]`, copies of the dataset's records laid
/// out bucket by bucket, so that matching reads them in order.
#[derive(Debug, Default)]
struct Buckets {
    offsets: Vec<u32>,
    records: Vec<Record>,
}

impl Buckets {
    fn get(&self, b: usize) -> &[Record] {
        &self.records[self.offsets[b] as usize..self.offsets[b + 1] as usize]
    }
}

/// What matching reads of the parameters, kept by the evaluation so that a
/// unit's full results can be recomputed on demand.
#[derive(Debug, Clone)]
struct Matching {
    iou_thrs: Vec<f64>,
    area_rngs: Vec<[f64; 2]>,
    max_det: usize,
}

/// The per-unit results of `evaluate`, addressed as pycocotools' `evalImgs`:
/// category-major, then area range, then image. Keeps the buckets (the records
/// evaluated, proportional to the data) so that
/// [`Evaluation::image_evaluations`] and [`Evaluation::unit_ious`] can redo one
/// unit's matching on demand.
#[derive(Debug)]
pub struct Evaluation {
    num_images: usize,
    num_areas: usize,
    num_thresholds: usize,
    num_units: usize,
    chunks: Vec<Chunk>,
    matching: Matching,
    gt_buckets: Buckets,
    dt_buckets: Buckets,
    /// With pooled categories (`use_cats == false`), the bucket slot of each
    /// category a unit pools, in pooling order (perhaps none).
    pooled_slots: Option<Vec<usize>>,
}

/// pycocotools' `evaluateImg` result for one (category, area range, image)
/// entry of `evalImgs`: detections best first (at most maxDet), ground truth in
/// matching order (not ignored first).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageEvaluation {
    pub category: usize,
    pub area: usize,
    pub image: usize,
    pub dt_ids: Vec<i64>,
    pub gt_ids: Vec<i64>,
    /// `[T, D]`: the id of the matched ground truth, 0 where unmatched.
    pub dt_matches: Vec<f64>,
    /// `[T, G]`: the id of the matching detection, 0 where unmatched.
    pub gt_matches: Vec<f64>,
    pub dt_scores: Vec<f64>,
    /// `[G]`.
    pub gt_ignore: Vec<bool>,
    /// `[T, D]`.
    pub dt_ignore: Vec<bool>,
}

impl Evaluation {
    pub fn num_thresholds(&self) -> usize {
        self.num_thresholds
    }

    /// pycocotools' `len(evalImgs)`.
    pub fn len(&self) -> usize {
        self.num_units * self.num_areas
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn view<'a>(&self, chunk: &'a Chunk, span: &UnitSpan) -> UnitView<'a> {
        let d = span.num_dt as usize;
        let (s, c, p) = (span.scores_at as usize, span.codes_at as usize, span.positives_at as usize);
        UnitView {
            scores: &chunk.scores[s..s + d],
            codes: &chunk.codes[c..c + self.num_areas * d * self.num_thresholds],
            positives: &chunk.positives[p..p + self.num_areas],
        }
    }

    fn unit(&self, u: usize) -> Option<UnitView<'_>> {
        let chunk = &self.chunks[u / CHUNK];
        let at = chunk.units.binary_search_by_key(&(u as u32), |span| span.unit).ok()?;
        Some(self.view(chunk, &chunk.units[at]))
    }

    /// The units with results among `range`, in order, visiting only those.
    fn units_in(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = UnitView<'_>> {
        let chunks = &self.chunks[range.start / CHUNK..range.end.div_ceil(CHUNK).min(self.chunks.len())];
        chunks.iter().flat_map(move |chunk| {
            let (lo, hi) = (range.start as u32, range.end as u32);
            let first = chunk.units.partition_point(|span| span.unit < lo);
            chunk.units[first..].iter().take_while(move |span| span.unit < hi).map(move |span| self.view(chunk, span))
        })
    }

    /// The entry at pycocotools' flat `evalImgs` index: a unit and an area range.
    fn unit_entry(&self, flat: usize) -> Option<(UnitView<'_>, usize)> {
        let (k, a, i) = self.decode(flat);
        self.unit(k * self.num_images + i).map(|u| (u, a))
    }

    /// (category, area range, image) of a flat `evalImgs` index.
    fn decode(&self, flat: usize) -> (usize, usize, usize) {
        let per_category = self.num_areas * self.num_images;
        let (k, rest) = (flat / per_category, flat % per_category);
        (k, rest / self.num_images, rest % self.num_images)
    }

    /// The ground truth and detections of unit `u` (pooled over the categories
    /// without `use_cats`), in pycocotools' order.
    fn unit_records<'a>(
        &'a self,
        u: usize,
        gts: &'a mut Vec<Record>,
        dts: &'a mut Vec<Record>,
    ) -> (&'a [Record], &'a [Record]) {
        let Some(pooled_slots) = &self.pooled_slots else {
            return (self.gt_buckets.get(u), self.dt_buckets.get(u));
        };
        gts.clear();
        dts.clear();
        for &slot in pooled_slots {
            gts.extend_from_slice(self.gt_buckets.get(slot * self.num_images + u));
            dts.extend_from_slice(self.dt_buckets.get(slot * self.num_images + u));
        }
        (gts, dts)
    }

    /// Unit `u` loaded into `scratch`; `false` when it has no ground truth and no detections.
    fn load_unit(&self, u: usize, scratch: &mut Scratch) -> bool {
        let (mut gts, mut dts) = (Vec::new(), Vec::new());
        let (gts, dts) = self.unit_records(u, &mut gts, &mut dts);
        if gts.is_empty() && dts.is_empty() {
            return false;
        }
        scratch.load(gts, dts, self.matching.max_det);
        true
    }

    /// pycocotools' `evalImgs[start..stop]` (`evaluateImg`), recomputed in
    /// parallel; `None` where pycocotools has `None` (a unit without ground
    /// truth and detections).
    pub fn image_evaluations(&self, range: std::ops::Range<usize>) -> Result<Vec<Option<ImageEvaluation>>> {
        const F: &str = "COCOeval.evalImgs";
        if range.start > range.end || range.end > self.len() {
            return Err(FerropsError::value(
                F,
                "index",
                format!("indices in [0, {})", self.len()),
                format!("{}..{}", range.start, range.end),
            ));
        }
        Ok(range.into_par_iter().with_min_len(64).map_init(Scratch::default, |s, flat| self.details(flat, s)).collect())
    }

    fn details(&self, flat: usize, s: &mut Scratch) -> Option<ImageEvaluation> {
        let (category, area, image) = self.decode(flat);
        if !self.load_unit(category * self.num_images + image, s) {
            return None;
        }
        let rng = self.matching.area_rngs[area];
        let not_ignored = s.order_for_area(rng);
        let (num_thr, num_dt, num_gt) = (self.num_thresholds, s.det.len(), s.gt.len());
        let mut dt_matches = vec![0.0; num_thr * num_dt];
        let mut gt_matches = vec![0.0; num_thr * num_gt];
        let mut dt_ignore = vec![false; num_thr * num_dt];
        // pycocotools matches only when the IoU matrix is not empty.
        if num_dt > 0 && num_gt > 0 {
            for (t, &thr) in self.matching.iou_thrs.iter().enumerate() {
                let Scratch { det, sorted_gt, sorted_ious, matched_by, .. } = &mut *s;
                matched_by.fill(0);
                match_at(det, sorted_gt, not_ignored, sorted_ious, thr, matched_by, |d, matched| {
                    if let Some(g) = matched {
                        dt_matches[t * num_dt + d] = sorted_gt[g].id as f64;
                        dt_ignore[t * num_dt + d] = g >= not_ignored;
                    }
                });
                for (out, &by) in gt_matches[t * num_gt..(t + 1) * num_gt].iter_mut().zip(matched_by.iter()) {
                    *out = by as f64;
                }
            }
        }
        // Detections outside the area range and matched to no ground truth (id 0
        // counts as none) are ignored.
        for (d, det) in s.det.iter().enumerate() {
            if outside(rng, det.area) {
                for t in 0..num_thr {
                    dt_ignore[t * num_dt + d] |= dt_matches[t * num_dt + d] == 0.0;
                }
            }
        }
        Some(ImageEvaluation {
            category,
            area,
            image,
            dt_ids: s.det.iter().map(|d| d.id).collect(),
            gt_ids: s.sorted_gt.iter().map(|g| g.id).collect(),
            dt_matches,
            gt_matches,
            dt_scores: s.dts.iter().map(|&(score, _)| score).collect(),
            gt_ignore: (0..num_gt).map(|g| g >= not_ignored).collect(),
            dt_ignore,
        })
    }

    /// pycocotools' `ious[imgId, catId]` for unit `u` (`k * I + i`, or `i` with
    /// pooled categories): `[D, G]` row-major, detections best first, ground
    /// truth in unit order; `None` where pycocotools has an empty list (no
    /// detections or no ground truth).
    pub fn unit_ious(&self, u: usize) -> Result<Option<(Vec<f64>, usize, usize)>> {
        const F: &str = "COCOeval.ious";
        if u >= self.num_units {
            return Err(FerropsError::value(F, "key", format!("a unit below {}", self.num_units), u.to_string()));
        }
        let mut s = Scratch::default();
        if !self.load_unit(u, &mut s) || s.det.is_empty() || s.gt.is_empty() {
            return Ok(None);
        }
        let shape = (s.det.len(), s.gt.len());
        Ok(Some((std::mem::take(&mut s.ious), shape.0, shape.1)))
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

/// Outside an area range; both ends are inside.
#[inline]
fn outside(rng: [f64; 2], area: f64) -> bool {
    area < rng[0] || area > rng[1]
}

/// Highest first; -0.0 and 0.0 tie as in NumPy (scores are finite: checked on load).
#[inline]
fn descending(a: f64, b: f64) -> std::cmp::Ordering {
    b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal)
}

/// pycocotools' `loadAnns(getAnnIds(...))` resolves each annotation through its
/// id, so a repeated id stands for the last record carrying it. `None` when ids
/// are unique (always for `loadRes` results, whose ids count up).
fn last_record_of_each_id(ids: &[i64]) -> Option<Vec<u32>> {
    if ids.windows(2).all(|w| w[0] < w[1]) {
        return None;
    }
    let mut last: HashMap<i64, u32> = HashMap::with_capacity_and_hasher(ids.len(), Default::default());
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
fn buckets(dataset: &CocoDataset, img_ids: &[i64], distinct_cats: &HashMap<i64, usize>, filter_cats: bool) -> Buckets {
    let ann = &dataset.annotations;
    let num_images = img_ids.len();
    let image_pos: HashMap<i64, usize> = img_ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let bucket_of = |r: usize| -> Option<u32> {
        let i = *image_pos.get(&ann.image_id[r])?;
        let c = *distinct_cats.get(&ann.category_id[r])?;
        Some((c * num_images + i) as u32)
    };
    // (bucket, record) in visiting order.
    let placed: Vec<(u32, u32)> = match last_record_of_each_id(&ann.id) {
        // Each record stands for itself, and a bucket holds one image's records:
        // file order is `getAnnIds`' order within every bucket.
        None => (0..ann.len()).filter_map(|j| Some((bucket_of(j)?, j as u32))).collect(),
        // A repeated id stands for the last record carrying it, which may lie in
        // another image: visit in `getAnnIds`' order, images first.
        Some(resolve) => {
            let positions: Vec<Option<usize>> = ann.image_id.iter().map(|id| image_pos.get(id).copied()).collect();
            let mut starts = vec![0usize; num_images + 1];
            for &i in positions.iter().flatten() {
                starts[i + 1] += 1;
            }
            for i in 0..num_images {
                starts[i + 1] += starts[i];
            }
            let mut by_image = vec![0u32; starts[num_images]];
            for (j, position) in positions.iter().enumerate() {
                if let Some(i) = *position {
                    by_image[starts[i]] = j as u32;
                    starts[i] += 1;
                }
            }
            by_image
                .iter()
                .filter(|&&j| !filter_cats || distinct_cats.contains_key(&ann.category_id[j as usize]))
                .filter_map(|&j| {
                    let r = resolve[j as usize];
                    Some((bucket_of(r as usize)?, r))
                })
                .collect()
        }
    };
    // Counting sort by bucket keeps each bucket's visiting order; the records
    // are read in that order and written bucket by bucket.
    let num_buckets = distinct_cats.len() * num_images;
    let mut offsets = vec![0u32; num_buckets + 1];
    for &(b, _) in &placed {
        offsets[b as usize + 1] += 1;
    }
    for b in 0..num_buckets {
        offsets[b + 1] += offsets[b];
    }
    let mut cursor = offsets.clone();
    let records = crate::buffer::filled(placed.len(), |out| {
        for &(b, r) in &placed {
            out[cursor[b as usize] as usize] = std::mem::MaybeUninit::new(dataset.packed[r as usize]);
            cursor[b as usize] += 1;
        }
    });
    Buckets { offsets, records }
}

fn check_params(params: &EvalParams) -> Result<()> {
    if params.max_det == 0 {
        return Err(FerropsError::value("COCOeval.evaluate", "params.maxDets", "positive integers", "0"));
    }
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

/// Reused buffers of one task: one unit at a time.
#[derive(Default)]
struct Scratch {
    /// (score, position in the unit) of the unit's kept detections, best first (stable).
    dts: Vec<(f64, u32)>,
    det: Vec<Record>,
    /// Ground truth in unit order, and in matching order for one area range
    /// (not ignored first).
    gt: Vec<Record>,
    sorted_gt: Vec<Record>,
    /// `[D, G]` IoU, columns in unit order and in matching order.
    ious: Vec<f64>,
    sorted_ious: Vec<f64>,
    /// Per ground truth in matching order, the id of the detection matched to it
    /// at the current threshold (0: none).
    matched_by: Vec<i64>,
    /// Per threshold, how many of the unit's IoUs reach it, and the first
    /// threshold whose matching is the same.
    levels: Vec<usize>,
    same_as: Vec<usize>,
}

impl Scratch {
    /// pycocotools' `computeIoU`: the unit's detections sorted by score (stable)
    /// and cut to `max_det`, its ground truth in unit order, their `[D, G]` IoU
    /// (empty when either side is).
    fn load(&mut self, gts: &[Record], dts: &[Record], max_det: usize) {
        self.dts.clear();
        self.dts.extend(dts.iter().enumerate().map(|(d, record)| (record.score, d as u32)));
        self.dts.sort_by(|a, b| descending(a.0, b.0));
        self.dts.truncate(max_det);
        self.det.clear();
        self.det.extend(self.dts.iter().map(|&(_, d)| dts[d as usize]));
        self.gt.clear();
        self.gt.extend_from_slice(gts);
        self.ious.clear();
        if !self.gt.is_empty() {
            for d in &self.det {
                self.ious.extend(self.gt.iter().map(|g| bbox_iou(&d.bbox, &g.bbox, g.crowd)));
            }
        }
        self.matched_by.clear();
        self.matched_by.resize(self.gt.len(), 0);
    }

    /// Orders the ground truth for one area range as pycocotools' `evaluateImg`
    /// does: not ignored (crowd or outside the range) first, each group in unit
    /// order; the IoU columns follow. Returns how many are not ignored.
    fn order_for_area(&mut self, rng: [f64; 2]) -> usize {
        let ignored = |g: &Record| g.crowd || outside(rng, g.area);
        self.sorted_gt.clear();
        self.sorted_gt.extend(self.gt.iter().filter(|g| !ignored(g)));
        let not_ignored = self.sorted_gt.len();
        self.sorted_gt.extend(self.gt.iter().filter(|g| ignored(g)));
        self.sorted_ious.clear();
        if !self.gt.is_empty() {
            for row in self.ious.chunks_exact(self.gt.len()) {
                self.sorted_ious.extend(row.iter().zip(&self.gt).filter(|(_, g)| !ignored(g)).map(|(v, _)| *v));
                self.sorted_ious.extend(row.iter().zip(&self.gt).filter(|(_, g)| ignored(g)).map(|(v, _)| *v));
            }
        }
        not_ignored
    }
}

/// The IoU a match must reach at threshold `thr`: pycocotools' `min([t, 1 - 1e-10])`.
#[inline]
fn effective_threshold(thr: f64) -> f64 {
    if 1.0 - 1e-10 < thr {
        1.0 - 1e-10
    } else {
        thr
    }
}

/// pycocotools' greedy matching at one IoU threshold: each detection, best
/// first, takes the unmatched (or crowd) ground truth of highest IoU at or above
/// the threshold, never leaving ground truth that counts for an ignored one.
/// Calls `outcome(detection, matched ground truth)` for each detection and
/// records the matches in `matched_by` (cleared by the caller).
#[inline]
fn match_at(
    det: &[Record],
    sorted_gt: &[Record],
    not_ignored: usize,
    sorted_ious: &[f64],
    thr: f64,
    matched_by: &mut [i64],
    mut outcome: impl FnMut(usize, Option<usize>),
) {
    let num_gt = sorted_gt.len();
    for (di, d) in det.iter().enumerate() {
        let mut best = effective_threshold(thr);
        let mut matched: Option<usize> = None;
        if num_gt > 0 {
            let row = &sorted_ious[di * num_gt..(di + 1) * num_gt];
            for s in 0..num_gt {
                if matched_by[s] > 0 && !sorted_gt[s].crowd {
                    continue;
                }
                // Matched to ground truth that counts: ignored ones cannot replace it.
                if matched.is_some_and(|m| m < not_ignored) && s >= not_ignored {
                    break;
                }
                if row[s] < best {
                    continue;
                }
                best = row[s];
                matched = Some(s);
            }
        }
        if let Some(s) = matched {
            matched_by[s] = d.id;
        }
        outcome(di, matched);
    }
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
    let mut distinct_cats: HashMap<i64, usize> = HashMap::default();
    for &c in params.cat_ids {
        let next = distinct_cats.len();
        distinct_cats.entry(c).or_insert(next);
    }
    let (gt_buckets, dt_buckets) = rayon::join(
        || buckets(gt, params.img_ids, &distinct_cats, params.use_cats),
        || buckets(dt, params.img_ids, &distinct_cats, params.use_cats),
    );
    let num_units = if params.use_cats { distinct_cats.len() * num_images } else { num_images };
    let pooled_slots = (!params.use_cats).then(|| params.cat_ids.iter().map(|c| distinct_cats[c]).collect());
    let matching =
        Matching { iou_thrs: params.iou_thrs.to_vec(), area_rngs: params.area_rngs.to_vec(), max_det: params.max_det };
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
            for u in c * CHUNK..((c + 1) * CHUNK).min(num_units) {
                let (gts, dts) = e.unit_records(u, &mut pooled_gt, &mut pooled_dt);
                if gts.is_empty() && dts.is_empty() {
                    continue;
                }
                scratch.load(gts, dts, e.matching.max_det);
                evaluate_unit(u, &e.matching, &mut scratch, &mut chunk);
            }
            chunk
        })
        .collect();
    evaluation.chunks = chunks;
    Ok(evaluation)
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

/// The cells of one output category, laid out as its slice of the output:
/// `[T, R, A, M]` precision and scores, `[T, A, M]` recall (the output's A and
/// M), -1 where a cell has no ground truth. One block per category keeps a
/// task's writes in a small buffer, and the output is then written in order,
/// `A * M` values at a time.
struct CategoryBlock {
    k: usize,
    precision: Vec<f64>,
    scores: Vec<f64>,
    recall: Vec<f64>,
}

impl CategoryBlock {
    fn new(k: usize, p: &AccumulateParams, num_thr: usize) -> Self {
        let per_threshold = p.num_areas * p.num_max_dets;
        let values = num_thr * p.rec_thrs.len() * per_threshold;
        CategoryBlock {
            k,
            precision: vec![-1.0; values],
            scores: vec![-1.0; values],
            recall: vec![-1.0; num_thr * per_threshold],
        }
    }

    /// Copies cell `(a, from)` onto cell `(a, to)`.
    fn copy_cell(&mut self, p: &AccumulateParams, a: usize, (from, to): (usize, usize)) {
        let (run, at) = (p.num_areas * p.num_max_dets, a * p.num_max_dets);
        for values in [&mut self.precision, &mut self.scores, &mut self.recall] {
            for cells in values.chunks_exact_mut(run) {
                cells[at + to] = cells[at + from];
            }
        }
    }
}

/// Reused buffers of one accumulate task.
#[derive(Default)]
struct AccScratch {
    /// (score, position in `codes`, detection index in its unit), stably sorted
    /// by score.
    sorted: Vec<(f64, u32, u32)>,
    /// The `[T]` outcomes of the gathered detections, in concatenation order: a
    /// small contiguous copy, so the score-ordered walks stay in cache.
    codes: Vec<u8>,
    /// The units `sorted` was built from (their score slices), to reuse the sort
    /// across area ranges that read the same units.
    sorted_units: Vec<*const f64>,
    /// The picks of one maxDets value, in the same order.
    picks: Vec<(f64, u32, u32)>,
    /// Per threshold: the positions of the true positives and their precision.
    tp_at: Vec<Vec<(u32, f64)>>,
    /// Suffix maxima of those precisions (the right-to-left envelope).
    envelope: Vec<f64>,
    /// Per recall threshold, the true-positive count that reaches it.
    counts: Vec<u64>,
}

/// Gathers the entries of one (category, area) pair, as pycocotools indexes
/// `evalImgs`; `None` when no entry has ground truth that counts.
fn gather<'e>(
    evaluation: &'e Evaluation,
    p: &AccumulateParams,
    k0: usize,
    a0: usize,
    entries: &mut Vec<(UnitView<'e>, usize)>,
) -> Result<Option<u64>> {
    let (num_images, num_areas) = (evaluation.num_images, evaluation.num_areas);
    entries.clear();
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
        // Within the (k0, a0) block the unit is found without decoding `flat`.
        let entry = if i < num_images && a0 < num_areas {
            evaluation.unit(k0 * num_images + i).map(|u| (u, a0))
        } else {
            evaluation.unit_entry(flat)
        };
        if let Some(entry) = entry {
            entries.push(entry);
        }
    }
    let positives: u64 = entries.iter().map(|(u, a)| u64::from(u.positives[*a])).sum();
    Ok((!entries.is_empty() && positives > 0).then_some(positives))
}

/// For each recall threshold, the least true-positive count `v` whose recall
/// `v / npig` (pycocotools' division) reaches it, capped at `none` (a count no
/// cell reaches: one more than its detections). Division by a positive number is
/// monotone, so the count is found from the rounded guess `ceil(thr * npig)` in a
/// step or two, not by bisection; it depends only on `npig`, so one (category,
/// area) pair computes it once for every threshold and maxDets.
fn counts_reaching(rec_thrs: &[f64], positives: u64, none: u64, out: &mut Vec<u64>) {
    let npig = positives as f64;
    out.clear();
    out.extend(rec_thrs.iter().map(|&thr| {
        let guess = (thr * npig).ceil();
        let mut v = if guess <= 0.0 {
            0
        } else if guess >= none as f64 {
            none
        } else {
            guess as u64
        };
        while v > 0 && ((v - 1) as f64 / npig) >= thr {
            v -= 1;
        }
        while v < none && (v as f64 / npig) < thr {
            v += 1;
        }
        v
    }));
}

/// One cell from the picks of its maxDets value (`s.picks`, sorted by score).
///
/// pycocotools computes `rc = tp / npig` and `pr = tp / (tp + fp + eps)` at every
/// detection, takes the right-to-left maximum of `pr` and reads it at
/// `searchsorted(rc, recThrs, "left")`. The same numbers with less work: `rc` only
/// grows at true positives, so the index found for a recall threshold is the
/// first detection (index 0) or a true positive, found from the least true
/// positive count whose `count / npig` reaches the threshold (`s.counts`, from
/// [`counts_reaching`]); and `pr` only grows at true positives, so the envelope
/// at a true positive is the largest `pr` of the true positives from there on (at
/// index 0 without a true positive `pr` is 0).
fn accumulate_cell(
    evaluation: &Evaluation,
    p: &AccumulateParams,
    positives: u64,
    s: &mut AccScratch,
    (a, m): (usize, usize),
    block: &mut CategoryBlock,
) {
    let (num_thr, num_rec, nd) = (evaluation.num_thresholds, p.rec_thrs.len(), s.picks.len());
    s.tp_at.resize_with(num_thr, Vec::new);
    s.tp_at.iter_mut().for_each(Vec::clear);
    let mut fp = vec![0u32; num_thr];
    for (j, &(_, position, _)) in s.picks.iter().enumerate() {
        let at = position as usize * num_thr;
        let row = &s.codes[at..at + num_thr];
        // Branch-free false-positive counts; true positives are rare, handled apart.
        let mut any_tp = false;
        for (count, &code) in fp.iter_mut().zip(row) {
            *count += u32::from(code == FALSE_POSITIVE);
            any_tp |= code == TRUE_POSITIVE;
        }
        if any_tp {
            for (t, _) in row.iter().enumerate().filter(|(_, &code)| code == TRUE_POSITIVE) {
                let tp = (s.tp_at[t].len() + 1) as f64;
                let precision = tp / (f64::from(fp[t]) + tp + f64::EPSILON);
                s.tp_at[t].push((j as u32, precision));
            }
        }
    }
    let (num_areas, num_max_dets) = (p.num_areas, p.num_max_dets);
    let at = |t: usize, r: usize| ((t * num_rec + r) * num_areas + a) * num_max_dets + m;
    let npig = positives as f64;
    for t in 0..num_thr {
        let tps = &s.tp_at[t];
        let total = tps.len();
        block.recall[(t * num_areas + a) * num_max_dets + m] = if nd > 0 { total as f64 / npig } else { 0.0 };
        s.envelope.clear();
        s.envelope.resize(total, 0.0);
        let mut best = f64::NEG_INFINITY;
        for q in (0..total).rev() {
            best = if tps[q].1 > best { tps[q].1 } else { best };
            s.envelope[q] = best;
        }
        // Recall points from the first one not reached on stay at 0.
        let reached = if nd == 0 { 0 } else { s.counts.iter().position(|&c| c > total as u64).unwrap_or(num_rec) };
        for (r, &count) in s.counts.iter().enumerate() {
            let (precision, score) = if r < reached {
                match count as usize {
                    0 => (s.envelope.first().copied().unwrap_or(0.0), s.picks[0].0),
                    v => (s.envelope[v - 1], s.picks[tps[v - 1].0 as usize].0),
                }
            } else {
                (0.0, 0.0)
            };
            block.precision[at(t, r)] = precision;
            block.scores[at(t, r)] = score;
        }
    }
}

/// All cells of one output category: per area range one gather and one stable
/// sort at the largest maxDets (reused while the area ranges read the same
/// units); each maxDets keeps its detections in that order, which is the order a
/// stable sort of that subset gives.
fn accumulate_category(
    evaluation: &Evaluation,
    p: &AccumulateParams,
    k: usize,
    all_images: bool,
) -> Result<CategoryBlock> {
    let mut entries = Vec::new();
    let mut s = AccScratch::default();
    let mut block = CategoryBlock::new(k, p, evaluation.num_thresholds);
    let widest = p.m_list.iter().copied().max().unwrap_or(0);
    let k0 = p.k_list[k];
    // The usual case (every evaluated image, in order): a category's units are the
    // same for each area range, so they are looked up once.
    let num_images = evaluation.num_images;
    let units: Option<Vec<UnitView>> = (all_images && k0 * num_images < evaluation.num_units)
        .then(|| evaluation.units_in(k0 * num_images..(k0 + 1) * num_images).collect());
    for a in 0..p.a_list.len() {
        let a0 = p.a_list[a];
        let positives = match &units {
            Some(units) if a0 < evaluation.num_areas => {
                entries.clear();
                entries.extend(units.iter().map(|&u| (u, a0)));
                let positives: u64 = units.iter().map(|u| u64::from(u.positives[a0])).sum();
                (!entries.is_empty() && positives > 0).then_some(positives)
            }
            _ => gather(evaluation, p, k0, a0, &mut entries)?,
        };
        let Some(positives) = positives else { continue };
        let same_units = s.sorted_units.len() == entries.len()
            && s.sorted_units.iter().zip(&entries).all(|(&ptr, (u, _))| std::ptr::eq(ptr, u.scores.as_ptr()));
        let num_thr = evaluation.num_thresholds;
        s.codes.clear();
        for (u, area) in &entries {
            let kept = u.scores.len().min(widest);
            let at = area * u.scores.len() * num_thr;
            s.codes.extend_from_slice(&u.codes[at..at + kept * num_thr]);
        }
        if !same_units {
            s.sorted.clear();
            for (u, _) in &entries {
                let base = s.sorted.len() as u32;
                s.sorted.extend(
                    u.scores.iter().take(widest).enumerate().map(|(d, &score)| (score, base + d as u32, d as u32)),
                );
            }
            s.sorted.sort_by(|x, y| descending(x.0, y.0));
            s.sorted_units.clear();
            s.sorted_units.extend(entries.iter().map(|(u, _)| u.scores.as_ptr()));
        }
        counts_reaching(p.rec_thrs, positives, s.sorted.len() as u64 + 1, &mut s.counts);
        // (picks, maxDets slot) of the cells computed for this area range. Picks
        // only grow with maxDets, so as many picks are the same picks, and the
        // same cell (usually maxDets 10 and 100: few units have more than 10).
        let mut computed: Vec<(usize, usize)> = Vec::with_capacity(p.m_list.len());
        for (m, &max_det) in p.m_list.iter().enumerate() {
            s.picks.clear();
            s.picks.extend(s.sorted.iter().filter(|pick| (pick.2 as usize) < max_det));
            match computed.iter().find(|&&(picks, _)| picks == s.picks.len()) {
                Some(&(_, from)) => block.copy_cell(p, a, (from, m)),
                None => {
                    accumulate_cell(evaluation, p, positives, &mut s, (a, m), &mut block);
                    computed.push((s.picks.len(), m));
                }
            }
        }
    }
    Ok(block)
}

/// pycocotools' `COCOeval.accumulate`.
pub fn accumulate(evaluation: &Evaluation, p: &AccumulateParams) -> Result<Accumulated> {
    if let Some(r) = p.rec_thrs.iter().find(|r| r.is_nan()) {
        return Err(FerropsError::value("COCOeval.accumulate", "params.recThrs", "numbers", r.to_string()));
    }
    let (t_n, r_n) = (evaluation.num_thresholds, p.rec_thrs.len());
    let (k_n, a_n, m_n) = (p.num_categories, p.num_areas, p.num_max_dets);
    if p.k_list.len() > k_n || p.a_list.len() > a_n || p.m_list.len() > m_n {
        return Err(FerropsError::value(
            "COCOeval.accumulate",
            "p",
            "index lists no longer than K, A, M",
            "longer lists",
        ));
    }
    let all_images = p.i_list.len() == evaluation.num_images && p.i_list.iter().enumerate().all(|(n, &i)| n == i);
    let blocks: Vec<CategoryBlock> = (0..p.k_list.len())
        .into_par_iter()
        .map(|k| accumulate_category(evaluation, p, k, all_images))
        .collect::<Result<_>>()?;

    let mut by_category: Vec<Option<&CategoryBlock>> = vec![None; k_n];
    for block in &blocks {
        by_category[block.k] = Some(block);
    }
    // Each output row of `K * A * M` values is the categories' `A * M` runs in
    // order (-1 for a category without a block); one task per threshold.
    let run = a_n * m_n;
    let assemble = |rows: usize, value_of: fn(&CategoryBlock) -> &[f64]| {
        let slab = rows * k_n * run;
        crate::buffer::filled(t_n * slab, |out| {
            out.par_chunks_mut(slab.max(1)).enumerate().for_each(|(t, part)| {
                for (row, dest) in part.chunks_exact_mut((k_n * run).max(1)).enumerate() {
                    let from = (t * rows + row) * run;
                    for (dest, block) in dest.chunks_exact_mut(run.max(1)).zip(&by_category) {
                        match block {
                            Some(block) => {
                                for (d, &v) in dest.iter_mut().zip(&value_of(block)[from..from + run]) {
                                    *d = MaybeUninit::new(v);
                                }
                            }
                            None => dest.fill(MaybeUninit::new(-1.0)),
                        }
                    }
                }
            })
        })
    };
    let precision = assemble(r_n, |block| &block.precision);
    let scores = assemble(r_n, |block| &block.scores);
    let recall = assemble(1, |block| &block.recall);
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
        let params = EvalParams {
            img_ids: &[1, 2],
            cat_ids: &[1, 2],
            use_cats: true,
            iou_thrs: &iou_thrs,
            area_rngs: &area_rngs,
            max_det: 100,
        };
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
        let [t_n, _, k_n, a_n, m_n] = out.shape;
        assert_eq!(out.shape, [10, 101, 2, 4, 3]);
        // Category 2 has only crowd ground truth: -1 everywhere.
        assert!((0..t_n).all(|t| out.recall[((t * k_n + 1) * a_n) * m_n + 2] == -1.0));
        // Category 1, area all, maxDets 100, IoU 0.5: 3 ground truth, detections by
        // score 0.9 (TP), 0.9 (TP), 0.8 (FP), 0.1 (TP, IoU 100/110).
        let recall = out.recall[2];
        assert_eq!(recall, 1.0);
        let p_at = |r: usize| out.precision[r * k_n * a_n * m_n + 2];
        // 1 / (1 + eps) at the first detection, lifted to 2 / 2 by the envelope.
        assert_eq!(p_at(0), 1.0);
        assert_eq!(p_at(100), 3.0 / (4.0 + f64::EPSILON));
    }

    #[test]
    fn counts_reaching_equal_a_search_over_every_count() {
        let mut thresholds: Vec<f64> = (0..=100).map(|i| i as f64 / 100.0).collect();
        thresholds.extend((0..=100).map(|i| 0.01 * i as f64));
        thresholds.extend([-1.0, -0.0, 1e-300, 0.999_999_999_999, 1.0 + 1e-15, 1.5, 1e300]);
        let mut counts = Vec::new();
        for positives in [1u64, 2, 3, 7, 10, 49, 100, 101, 333, 1000, 4097] {
            // `none` below and above `positives`: tp can exceed npig when a detection id is not positive.
            for none in [positives / 2 + 1, positives + 1, 3 * positives + 1] {
                counts_reaching(&thresholds, positives, none, &mut counts);
                let npig = positives as f64;
                for (&thr, &count) in thresholds.iter().zip(&counts) {
                    let least = (0..none).find(|&v| v as f64 / npig >= thr).unwrap_or(none);
                    assert_eq!(count, least, "thr {thr} npig {npig} none {none}");
                }
            }
        }
    }

    #[test]
    fn image_evaluations_agree_with_the_outcomes_accumulate_reads() {
        let (gt, dt) = datasets();
        let iou_thrs: Vec<f64> = (0..10).map(|i| 0.5 + 0.05 * i as f64).collect();
        let area_rngs = [[0.0, 1e10], [0.0, 1024.0], [1024.0, 9216.0], [9216.0, 1e10]];
        for use_cats in [true, false] {
            let params = EvalParams {
                img_ids: &[1, 2],
                cat_ids: &[1, 2],
                use_cats,
                iou_thrs: &iou_thrs,
                area_rngs: &area_rngs,
                max_det: 100,
            };
            let e = evaluate(&gt, &dt, &params).unwrap();
            let entries = e.image_evaluations(0..e.len()).unwrap();
            assert_eq!(entries.len(), e.len());
            for (flat, entry) in entries.iter().enumerate() {
                let (Some(x), Some((unit, a))) = (entry, e.unit_entry(flat)) else {
                    assert!(entry.is_none() && e.unit_entry(flat).is_none(), "entry {flat}");
                    continue;
                };
                let (t_n, d_n) = (iou_thrs.len(), x.dt_ids.len());
                assert_eq!(x.dt_scores, unit.scores);
                assert_eq!(x.gt_ignore.iter().filter(|&&ignored| !ignored).count() as u32, unit.positives[a]);
                for d in 0..d_n {
                    for t in 0..t_n {
                        let (matched, ignored) = (x.dt_matches[t * d_n + d] != 0.0, x.dt_ignore[t * d_n + d]);
                        let code = unit.codes[(a * d_n + d) * t_n + t];
                        let expected = if ignored {
                            IGNORED
                        } else if matched {
                            TRUE_POSITIVE
                        } else {
                            FALSE_POSITIVE
                        };
                        assert_eq!(code, expected, "entry {flat} detection {d} threshold {t}");
                    }
                }
            }
        }
    }

    #[test]
    fn hand_checked_image_evaluation_and_ious() {
        let (gt, dt) = datasets();
        let area_rngs = [[0.0, 1e10]];
        let params = EvalParams {
            img_ids: &[1, 2],
            cat_ids: &[1, 2],
            use_cats: true,
            iou_thrs: &[0.5, 0.95],
            area_rngs: &area_rngs,
            max_det: 100,
        };
        let e = evaluate(&gt, &dt, &params).unwrap();
        // Category 2 (k = 1), image 2 (i = 1): one crowd ground truth (id 3) and a
        // detection inside it (IoU 1 by the detection's area), ignored when matched.
        let x = e.image_evaluations(3..4).unwrap().pop().unwrap().unwrap();
        assert_eq!((x.category, x.area, x.image), (1, 0, 1));
        assert_eq!((x.dt_ids, x.gt_ids), (vec![3], vec![3]));
        assert_eq!(x.dt_matches, vec![3.0, 3.0]);
        assert_eq!(x.gt_matches, vec![3.0, 3.0]);
        assert_eq!((x.gt_ignore, x.dt_ignore), (vec![true], vec![true, true]));
        // Category 1, image 1: ground truth 1 and 2, detections 1 and 2 (ties keep file order).
        let x = e.image_evaluations(0..1).unwrap().pop().unwrap().unwrap();
        assert_eq!((x.dt_ids, x.gt_ids, x.dt_scores), (vec![1, 2], vec![1, 2], vec![0.9, 0.9]));
        // IoU 0.9 and 1560/1640: matched at 0.5, not at 0.95.
        assert_eq!(x.dt_matches, vec![1.0, 2.0, 0.0, 2.0]);
        assert_eq!(x.gt_matches, vec![1.0, 2.0, 0.0, 2.0]);
        let (ious, d, g) = e.unit_ious(0).unwrap().unwrap();
        assert_eq!((d, g), (2, 2));
        assert_eq!(ious, vec![0.9, 0.0, 0.0, 1560.0 / 1640.0]);
        // Unit (category 2, image 1) is empty: pycocotools' None and [].
        assert!(e.image_evaluations(2..3).unwrap()[0].is_none());
        assert!(e.unit_ious(2).unwrap().is_none());
        assert!(e.image_evaluations(0..5).is_err());
        assert!(e.unit_ious(4).is_err());
    }

    #[test]
    fn same_bits_for_any_thread_count() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let (gt, dt) = datasets();
        crate::parallel::set_num_threads(1).unwrap();
        let one = crate::parallel::install(|| run(&gt, &dt));
        crate::parallel::set_num_threads(2).unwrap();
        let two = crate::parallel::install(|| run(&gt, &dt));
        assert_eq!(
            one.precision.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            two.precision.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(one.scores, two.scores);
        assert_eq!(one.recall, two.recall);
    }
}
