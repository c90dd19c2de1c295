//! Object keypoint similarity (OKS): pycocotools' `computeOks`, the similarity
//! of `iouType='keypoints'`, with its arithmetic in NumPy's order (the per-point
//! terms, then NumPy's pairwise sum of their exponentials), and the checks and
//! ignore rule (`num_keypoints == 0`) of its `_prepare`.
//!
//! NumPy's `exp` is the one difference left: on CPUs with AVX-512 it is Intel
//! SVML's vector exp, which rounds about one value in twenty the other way from
//! the C library's (used here, and by NumPy elsewhere); an OKS may then differ
//! in its last bit from pycocotools'.

use std::sync::Arc;

use super::buckets::Buckets;
use crate::detection::coco::{CocoDataset, IdStrings, Keypoints, Packed as Record};
use crate::error::{FerropsError, Result};

const F: &str = "COCOeval.evaluate";

/// Beyond this, `exp(-e)` is 0 in double precision (below half the smallest
/// subnormal, e^-745.1332...).
const UNDERFLOW: f64 = 745.2;

/// What OKS reads: `(2 sigma)^2` per keypoint, and both datasets' keypoints
/// (indexed by the records' `index`).
#[derive(Debug)]
struct OksData {
    variances: Vec<f64>,
    gt: Arc<Keypoints>,
    dt: Arc<Keypoints>,
    /// See [`Oks::term_bound`].
    term_bounds: Vec<f64>,
}

/// The OKS of an evaluation. Matching only asks whether an OKS reaches a
/// threshold, so a pair whose OKS is surely below `floor` (the lowest
/// threshold) is given 0 without its exponentials; `ious` asks for
/// [`Oks::exact`] values.
#[derive(Debug, Clone)]
pub(super) struct Oks {
    data: Arc<OksData>,
    floor: f64,
}

impl Oks {
    /// `sigmas`: pycocotools' `params.kpt_oks_sigmas`, one per keypoint;
    /// `floor`: the lowest OKS matching compares with (no pruning at or below 0).
    pub(super) fn new(sigmas: &[f64], gt: &CocoDataset, dt: &CocoDataset, floor: f64) -> Result<Oks> {
        if sigmas.is_empty() || sigmas.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(FerropsError::value(
                F,
                "params.kpt_oks_sigmas",
                "one positive finite sigma per keypoint",
                format!("{sigmas:?}"),
            ));
        }
        let data = OksData {
            variances: sigmas.iter().map(|s| (s * 2.0) * (s * 2.0)).collect(),
            gt: gt.annotations.keypoints.clone(),
            dt: dt.annotations.keypoints.clone(),
            term_bounds: term_bounds(),
        };
        Ok(Oks { data: Arc::new(data), floor })
    }

    /// The same OKS without pruning: every value as pycocotools computes it.
    pub(super) fn exact(&self) -> Oks {
        Oks { data: Arc::clone(&self.data), floor: f64::NEG_INFINITY }
    }

    /// Checks the evaluated records (ground truth with `keypoints` and
    /// `num_keypoints`, detections with `keypoints`, one triple per sigma;
    /// the first bad record in file order is named) and marks the ground truth
    /// with `num_keypoints == 0` ignored, as pycocotools' `_prepare` does.
    pub(super) fn prepare(&self, gt: &mut Buckets, dt: &Buckets, strings: &IdStrings) -> Result<()> {
        let numbers = 3 * self.data.variances.len();
        let describe = |r: &Record| format!("annotations[{}] (id {})", r.row, strings.describe(r.id));
        let mismatch = |argument: &'static str, r: &Record, len: usize| {
            FerropsError::value(
                F,
                "params.kpt_oks_sigmas",
                format!("one sigma per keypoint: {numbers} keypoint numbers per record"),
                format!(
                    "{} sigmas, and {argument} {} has {len} keypoint numbers ({} keypoints)",
                    self.data.variances.len(),
                    describe(r),
                    len / 3
                ),
            )
        };
        let first = |records: &[Record], bad: &dyn Fn(&Record) -> bool| {
            records.iter().filter(|r| bad(r)).min_by_key(|r| r.row).copied()
        };
        let gt_bad = |r: &Record| {
            self.data.gt.get(r.row as usize).is_none_or(|k| k.len() != numbers)
                || self.data.gt.count(r.row as usize).is_nan()
        };
        if let Some(r) = first(gt.records(), &gt_bad) {
            let j = r.row as usize;
            return Err(match self.data.gt.get(j) {
                Some(k) if k.len() != numbers => mismatch("cocoGt", &r, k.len()),
                Some(_) => missing("cocoGt", "num_keypoints", describe(&r)),
                None => missing("cocoGt", "keypoints", describe(&r)),
            });
        }
        let dt_bad = |r: &Record| self.data.dt.get(r.row as usize).is_none_or(|k| k.len() != numbers);
        if let Some(r) = first(dt.records(), &dt_bad) {
            return Err(match self.data.dt.get(r.row as usize) {
                Some(k) => mismatch("cocoDt", &r, k.len()),
                None => missing("cocoDt", "keypoints", describe(&r)),
            });
        }
        for r in gt.records_mut() {
            r.ignore |= self.data.gt.count(r.row as usize) == 0.0;
        }
        Ok(())
    }

    /// An upper bound on the exponential of a term whose estimate is
    /// `estimate`: the term is at least `estimate * (1 - ESTIMATE_ERROR)`, and
    /// exp(-e) is at most exp(-j / STEPS_PER_UNIT) for e at least that.
    #[inline]
    fn term_bound(&self, estimate: f64) -> f64 {
        let step = (estimate * (1.0 - ESTIMATE_ERROR) * STEPS_PER_UNIT) as usize;
        self.data.term_bounds[step.min(self.data.term_bounds.len() - 1)]
    }

    /// Appends the `[D, G]` row-major OKS of `det` (best first) and `gt` (unit
    /// order) to `out`; nothing when there is no ground truth. Records were
    /// checked by [`Oks::prepare`].
    pub(super) fn similarities(&self, det: &[Record], gt: &[Record], out: &mut Vec<f64>) {
        if gt.is_empty() || det.is_empty() {
            return;
        }
        let base = out.len();
        out.resize(base + det.len() * gt.len(), 0.0);
        let variances = &self.data.variances;
        let mut terms = Vec::with_capacity(variances.len());
        // The ground truth's visible points: (index, x, y, variance).
        let mut points: Vec<(usize, f64, f64, f64)> = Vec::with_capacity(variances.len());
        let mut weights = Vec::with_capacity(variances.len());
        for (g, truth) in gt.iter().enumerate() {
            let gk = self.data.gt.get(truth.row as usize).expect("checked by prepare");
            points.clear();
            points.extend(
                gk.chunks_exact(3)
                    .zip(variances)
                    .enumerate()
                    .filter(|(_, (p, _))| p[2] > 0.0)
                    .map(|(k, (p, &v))| (k, p[0], p[1], v)),
            );
            let b = &truth.bbox;
            let (x0, x1) = (b[0] - b[2], b[0] + b[2] * 2.0);
            let (y0, y1) = (b[1] - b[3], b[1] + b[3] * 2.0);
            // Without visible ground-truth points: the distance outside the
            // ground truth's box grown by its size, at every point.
            let outside_box = |p: &[f64]| {
                let dx = (x0 - p[0]).max(0.0) + (p[0] - x1).max(0.0);
                let dy = (y0 - p[1]).max(0.0) + (p[1] - y1).max(0.0);
                dx * dx + dy * dy
            };
            // pycocotools adds np.spacing(1) to the area.
            let scale = truth.area + f64::EPSILON;
            let estimate = self.floor > 0.0 && estimate_weights(variances, scale, &mut weights);
            for (d, found) in det.iter().enumerate() {
                let dk = self.data.dt.get(found.row as usize).expect("checked by prepare");
                if estimate {
                    // Most pairs are different people, far below the floor:
                    // told apart by a bound on their OKS from the terms'
                    // estimates, without the exact terms' divisions and
                    // exponentials.
                    let bound = if points.is_empty() {
                        dk.chunks_exact(3).zip(&weights).map(|(p, w)| self.term_bound(outside_box(p) * w)).sum::<f64>()
                    } else {
                        points
                            .iter()
                            .map(|&(k, x, y, _)| {
                                let (dx, dy) = (dk[3 * k] - x, dk[3 * k + 1] - y);
                                self.term_bound((dx * dx + dy * dy) * weights[k])
                            })
                            .sum::<f64>()
                    };
                    let count = if points.is_empty() { variances.len() } else { points.len() };
                    if bound / count as f64 * (1.0 + 1e-12) < self.floor {
                        continue;
                    }
                }
                terms.clear();
                // `/ 2.0` as `* 0.5`: the same rounding of the same exact value.
                if points.is_empty() {
                    terms.extend(dk.chunks_exact(3).zip(variances).map(|(p, var)| outside_box(p) / var / scale * 0.5));
                } else {
                    terms.extend(points.iter().map(|&(k, x, y, var)| {
                        let (dx, dy) = (dk[3 * k] - x, dk[3 * k + 1] - y);
                        (dx * dx + dy * dy) / var / scale * 0.5
                    }));
                }
                let nearest = terms.iter().fold(f64::INFINITY, |m, &e| m.min(e));
                if self.floor > 0.0 && surely_below(nearest, self.floor) {
                    continue;
                }
                for e in terms.iter_mut() {
                    // exp(-e) rounds to 0 below -745.14: no call.
                    *e = if *e > UNDERFLOW { 0.0 } else { (-*e).exp() };
                }
                out[base + d * gt.len() + g] = numpy_sum(&terms) / terms.len() as f64;
            }
        }
    }
}

/// A bound on the relative error of a term's estimate `d2 * weight` (six
/// roundings at most, about 7e-16) against the exact `d2 / var / scale / 2`
/// (two), with a wide margin: `estimate * (1 - ESTIMATE_ERROR)` is never above
/// the exact term. So the mean of the terms' bounds bounds the OKS (its sum
/// and division round within 1e-12 of it): below the floor, the pair cannot
/// match at any threshold.
const ESTIMATE_ERROR: f64 = 1e-14;

/// The steps of [`Oks::term_bound`]'s table per unit of a term, and the
/// table's length (terms beyond 16 bound their exponential by e^-16).
const STEPS_PER_UNIT: f64 = 8.0;
const TERM_BOUNDS: usize = 129;

/// `exp(-j / STEPS_PER_UNIT)` for each step `j`, rounded up (the C library's
/// exp is within an ulp; 1e-12 is far above that).
fn term_bounds() -> Vec<f64> {
    (0..TERM_BOUNDS).map(|j| (-(j as f64) / STEPS_PER_UNIT).exp() * (1.0 + 1e-12)).collect()
}

/// Whether a pair whose smallest term is `nearest` cannot reach `floor`: each
/// term's exponential is at most exp(-nearest) (within an ulp), and so is their
/// mean (within n + 2 roundings).
#[inline]
fn surely_below(nearest: f64, floor: f64) -> bool {
    (-nearest).exp() * (1.0 + 1e-12) < floor
}

/// Fills `weights` with `1 / (2 var scale)` per keypoint, the factor that makes
/// a squared distance an estimate of its term; false where a weight is not a
/// positive normal number (a tiny sigma or a non-positive area: the bound of
/// [`ESTIMATE_ERROR`] needs neither underflow nor overflow), and the pair is
/// then judged by its exact terms only.
fn estimate_weights(variances: &[f64], scale: f64, weights: &mut Vec<f64>) -> bool {
    let half_inverse_scale = 0.5 / scale;
    weights.clear();
    weights.extend(variances.iter().map(|var| (1.0 / var) * half_inverse_scale));
    weights.iter().all(|w| w.is_normal() && *w > 0.0)
}

fn missing(argument: &'static str, key: &str, record: String) -> FerropsError {
    let expected = match argument {
        "cocoGt" => "ground truth with 'keypoints' and 'num_keypoints' (iouType 'keypoints')",
        _ => "detections with 'keypoints' (iouType 'keypoints')",
    };
    FerropsError::value(F, argument, expected, format!("{record} without '{key}'"))
}

/// `np.sum` of a contiguous float64 array: NumPy's pairwise summation (eight
/// accumulators in blocks of up to 128 values, halves above that).
fn numpy_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        return a.iter().fold(0.0, |s, &v| s + v);
    }
    if n <= 128 {
        let mut r: [f64; 8] = a[..8].try_into().expect("eight values");
        let whole = n - n % 8;
        for block in a[8..whole].chunks_exact(8) {
            for (acc, &v) in r.iter_mut().zip(block) {
                *acc += v;
            }
        }
        let mut sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &a[whole..] {
            sum += v;
        }
        return sum;
    }
    let half = n / 2;
    let half = half - half % 8;
    numpy_sum(&a[..half]) + numpy_sum(&a[half..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detection::coco::{parse_ground_truth, parse_results, Origin};
    use crate::detection::cocoeval::{evaluate, EvalParams, IouType};
    use crate::interrupt::Cancel;
    use crate::parallel;

    #[test]
    fn oks_by_hand_and_for_one_and_two_threads() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let o = Origin { function: "t", argument: "t", source: "t" };
        // Person 1: one visible point of two; person 2: none visible (box rule).
        let gt = br#"{"images":[{"id":1}],"categories":[{"id":1}],"annotations":[
            {"id":1,"image_id":1,"category_id":1,"bbox":[0,0,10,10],"area":50,"keypoints":[4,4,2,0,0,0],"num_keypoints":1},
            {"id":2,"image_id":1,"category_id":1,"bbox":[100,100,10,10],"area":80,"keypoints":[0,0,0,0,0,0],"num_keypoints":2}]}"#;
        let gt = parse_ground_truth(gt, &o).unwrap();
        let dt = br#"[{"image_id":1,"category_id":1,"keypoints":[5,6,1,9,9,1],"score":0.9},
                      {"image_id":1,"category_id":1,"keypoints":[125,100,1,60,115,1],"score":0.8}]"#;
        let dt = parse_results(dt, &gt, &o).unwrap();
        let sigmas = [0.5, 0.25];
        let params = EvalParams {
            img_ids: &[1],
            cat_ids: &[1],
            use_cats: true,
            iou_thrs: &[0.5, 0.75],
            area_rngs: &[[0.0, 1e10]],
            max_det: 20,
            iou_type: IouType::Keypoints,
            kpt_oks_sigmas: &sigmas,
        };
        let var = |s: f64| (s * 2.0) * (s * 2.0);
        let term =
            |dx: f64, dy: f64, s: f64, area: f64| (-((dx * dx + dy * dy) / var(s) / (area + f64::EPSILON) / 2.0)).exp();
        // [D, G]: detections best first, persons in file order. Person 1 by its
        // visible point; person 2 by the distance outside [90, 120] x [90, 120].
        let expected = vec![
            term(1.0, 2.0, 0.5, 50.0),
            (term(85.0, 84.0, 0.5, 80.0) + term(81.0, 81.0, 0.25, 80.0)) / 2.0,
            term(121.0, 96.0, 0.5, 50.0),
            (term(5.0, 0.0, 0.5, 80.0) + term(30.0, 0.0, 0.25, 80.0)) / 2.0,
        ];
        let mut results = Vec::new();
        for threads in [1, 2] {
            parallel::set_num_threads(threads).unwrap();
            let e = parallel::install(|| evaluate(&gt, &dt, &params, &Cancel::new())).unwrap();
            let (ious, d, g) = e.unit_ious(0).unwrap().unwrap();
            assert_eq!((d, g), (2, 2));
            assert_eq!(ious, expected);
            results.push((ious, e.image_evaluations(0..1).unwrap()));
        }
        assert_eq!(results[0], results[1]);
    }

    #[test]
    fn pruned_pairs_are_only_those_surely_below_the_floor() {
        // Random people (some without visible points), areas from zero to huge,
        // sigmas from tiny to large: every pair the matching OKS gives as 0
        // without computing it has an exact OKS below the floor, and every
        // other pair has its exact value.
        let o = Origin { function: "t", argument: "t", source: "t" };
        let mut rng = crate::test_rng::Lcg::new(7);
        let mut uniform = move |hi: f64| rng.unit_f64() * hi;
        let point = |u: &mut dyn FnMut(f64) -> f64, visible: bool| {
            format!("{:.2},{:.2},{}", u(200.0), u(200.0), if visible { 2 } else { 0 })
        };
        let (mut gts, mut dts) = (Vec::new(), Vec::new());
        for j in 0..40 {
            let visible = j % 5 != 0;
            let kp: Vec<String> = (0..3)
                .map(|_| {
                    let shown = visible && uniform(1.0) < 0.7;
                    point(&mut uniform, shown)
                })
                .collect();
            let area = [0.0, 1e-300, 3.0, 5000.0, 1e300][j % 5];
            gts.push(format!(
                r#"{{"id":{},"image_id":1,"category_id":1,"bbox":[{:.1},{:.1},40,60],"area":{area},"keypoints":[{}],"num_keypoints":3}}"#,
                j + 1,
                uniform(150.0),
                uniform(150.0),
                kp.join(",")
            ));
        }
        for _ in 0..40 {
            let kp: Vec<String> = (0..3).map(|_| point(&mut uniform, true)).collect();
            dts.push(format!(r#"{{"image_id":1,"category_id":1,"keypoints":[{}],"score":0.5}}"#, kp.join(",")));
        }
        let gt_json =
            format!(r#"{{"images":[{{"id":1}}],"categories":[{{"id":1}}],"annotations":[{}]}}"#, gts.join(","));
        let gt = parse_ground_truth(gt_json.as_bytes(), &o).unwrap();
        let dt = parse_results(format!("[{}]", dts.join(",")).as_bytes(), &gt, &o).unwrap();
        let categories = [(1, 0)].into_iter().collect();
        for sigmas in [[0.025, 0.079, 0.107], [1e-160, 0.05, 0.05], [3.0, 0.5, 1e-5]] {
            let floor = 0.5;
            let oks = Oks::new(&sigmas, &gt, &dt, floor).unwrap();
            let mut gt_buckets = super::super::buckets::buckets(&gt, &[1], &categories, true);
            let dt_buckets = super::super::buckets::buckets(&dt, &[1], &categories, true);
            oks.prepare(&mut gt_buckets, &dt_buckets, &gt.id_strings).unwrap();
            let (gt_records, dt_records) = (gt_buckets.records(), dt_buckets.records());
            let (mut pruned, mut exact) = (Vec::new(), Vec::new());
            oks.similarities(dt_records, gt_records, &mut pruned);
            oks.exact().similarities(dt_records, gt_records, &mut exact);
            for (p, e) in pruned.iter().zip(&exact) {
                assert!(p.to_bits() == e.to_bits() || (*p == 0.0 && *e < floor), "{p} vs {e} ({sigmas:?})");
            }
        }
    }

    #[test]
    fn numpy_sum_is_pairwise() {
        // Eight lanes, then the tail in order: the exact sum differs from a
        // left-to-right one for these values.
        let mut a = vec![1.0; 9];
        a[0] = 1e16;
        let sequential = a.iter().fold(0.0, |s, &v| s + v);
        let pairwise = ((1e16 + 1.0) + (1.0 + 1.0)) + ((1.0 + 1.0) + (1.0 + 1.0)) + 1.0;
        assert_eq!(numpy_sum(&a), pairwise);
        assert_ne!(numpy_sum(&a), sequential);
        assert_eq!(numpy_sum(&[0.5; 300]), 150.0);
        assert_eq!(numpy_sum(&[]), 0.0);
    }
}
