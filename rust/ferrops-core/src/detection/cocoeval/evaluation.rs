//! The results of `evaluate`, kept per unit in chunks of flat buffers and
//! addressed as pycocotools' `evalImgs`; one unit's full `evaluateImg` entry or
//! IoU matrix is recomputed from the kept records on demand.

use rayon::prelude::*;

use super::buckets::Buckets;
use super::matching::{match_at, outside, Matching, Scratch};
use crate::detection::coco::Packed as Record;
use crate::ensure;
use crate::error::{FerropsError, Result};

/// Units per parallel task; fixed, so the work split is the same for any thread count.
pub(super) const CHUNK: usize = 512;

/// Where a unit's results lie in its chunk's buffers.
#[derive(Debug, Clone, Copy)]
pub(super) struct UnitSpan {
    /// The unit's index among all units.
    pub(super) unit: u32,
    pub(super) num_dt: u32,
    pub(super) scores_at: u32,
    pub(super) codes_at: u32,
    pub(super) positives_at: u32,
}

/// The results of [`CHUNK`] consecutive units, in flat buffers.
#[derive(Debug, Default)]
pub(super) struct Chunk {
    /// The units with ground truth or detections, in unit order (pycocotools'
    /// `None` entries are the units missing here).
    pub(super) units: Vec<UnitSpan>,
    /// Kept detections' scores, best first (stable), per unit.
    pub(super) scores: Vec<f64>,
    /// Per unit `[A, D, T]` outcomes.
    pub(super) codes: Vec<u8>,
    /// Per unit and area range, the ground truth not ignored.
    pub(super) positives: Vec<u32>,
}

impl Chunk {
    pub(super) fn shrink_to_fit(&mut self) {
        self.units.shrink_to_fit();
        self.scores.shrink_to_fit();
        self.codes.shrink_to_fit();
        self.positives.shrink_to_fit();
    }
}

/// One unit's results, borrowed from its chunk.
#[derive(Clone, Copy)]
pub(super) struct UnitView<'a> {
    pub(super) scores: &'a [f64],
    pub(super) codes: &'a [u8],
    pub(super) positives: &'a [u32],
}

/// The per-unit results of `evaluate`, addressed as pycocotools' `evalImgs`:
/// category-major, then area range, then image. Keeps the buckets (the records
/// evaluated, proportional to the data) so that
/// [`Evaluation::image_evaluations`] and [`Evaluation::unit_ious`] can redo one
/// unit's matching on demand.
#[derive(Debug)]
pub struct Evaluation {
    pub(super) num_images: usize,
    pub(super) num_areas: usize,
    pub(super) num_thresholds: usize,
    pub(super) num_units: usize,
    pub(super) chunks: Vec<Chunk>,
    pub(super) matching: Matching,
    pub(super) gt_buckets: Buckets,
    pub(super) dt_buckets: Buckets,
    /// With pooled categories (`use_cats == false`), the bucket slot of each
    /// category a unit pools, in pooling order (perhaps none).
    pub(super) pooled_slots: Option<Vec<usize>>,
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

    pub(super) fn unit(&self, u: usize) -> Option<UnitView<'_>> {
        let chunk = &self.chunks[u / CHUNK];
        let at = chunk.units.binary_search_by_key(&(u as u32), |span| span.unit).ok()?;
        Some(self.view(chunk, &chunk.units[at]))
    }

    /// The units with results among `range`, in order, visiting only those.
    pub(super) fn units_in(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = UnitView<'_>> {
        let chunks = &self.chunks[range.start / CHUNK..range.end.div_ceil(CHUNK).min(self.chunks.len())];
        chunks.iter().flat_map(move |chunk| {
            let (lo, hi) = (range.start as u32, range.end as u32);
            let first = chunk.units.partition_point(|span| span.unit < lo);
            chunk.units[first..].iter().take_while(move |span| span.unit < hi).map(move |span| self.view(chunk, span))
        })
    }

    /// The entry at pycocotools' flat `evalImgs` index: a unit and an area range.
    pub(super) fn unit_entry(&self, flat: usize) -> Option<(UnitView<'_>, usize)> {
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
    /// The units among `range` with records, ascending, with their records:
    /// those whose bucket has ground truth or detections, found by walking
    /// both lists of non-empty buckets together (every unit with pooled
    /// categories, whose records lie in several buckets, some perhaps empty).
    pub(super) fn units_with_records<'a>(
        &'a self,
        range: std::ops::Range<usize>,
        pooled_gt: &'a mut Vec<Record>,
        pooled_dt: &'a mut Vec<Record>,
        mut visit: impl FnMut(usize, &[Record], &[Record]) -> Result<()>,
    ) -> Result<()> {
        if self.pooled_slots.is_some() {
            for u in range {
                let (gts, dts) = self.unit_records(u, pooled_gt, pooled_dt);
                if !gts.is_empty() || !dts.is_empty() {
                    visit(u, gts, dts)?;
                }
            }
            return Ok(());
        }
        let (gt_keys, mut g) = self.gt_buckets.keys_in(range.clone());
        let (dt_keys, mut d) = self.dt_buckets.keys_in(range);
        let (gt_end, dt_end) = (g + gt_keys.len(), d + dt_keys.len());
        let (gt_first, dt_first) = (g, d);
        while g < gt_end || d < dt_end {
            let gt_key = if g < gt_end { gt_keys[g - gt_first] } else { u64::MAX };
            let dt_key = if d < dt_end { dt_keys[d - dt_first] } else { u64::MAX };
            let unit = gt_key.min(dt_key);
            let gts = if gt_key == unit { (g += 1, self.gt_buckets.slot(g - 1)).1 } else { &[] };
            let dts = if dt_key == unit { (d += 1, self.dt_buckets.slot(d - 1)).1 } else { &[] };
            visit(unit as usize, gts, dts)?;
        }
        Ok(())
    }

    pub(super) fn unit_records<'a>(
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
    pub(super) fn load_unit(&self, u: usize, scratch: &mut Scratch) -> bool {
        let (mut gts, mut dts) = (Vec::new(), Vec::new());
        let (gts, dts) = self.unit_records(u, &mut gts, &mut dts);
        if gts.is_empty() && dts.is_empty() {
            return false;
        }
        scratch.load(gts, dts, &self.matching);
        true
    }

    /// pycocotools' `evalImgs[start..stop]` (`evaluateImg`), recomputed in
    /// parallel; `None` where pycocotools has `None` (a unit without ground
    /// truth and detections).
    pub fn image_evaluations(&self, range: std::ops::Range<usize>) -> Result<Vec<Option<ImageEvaluation>>> {
        const F: &str = "COCOeval.evalImgs";
        ensure!(
            range.start <= range.end && range.end <= self.len(),
            FerropsError::value(
                F,
                "index",
                format!("indices in [0, {})", self.len()),
                format!("{}..{}", range.start, range.end),
            )
        );
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
        ensure!(
            u < self.num_units,
            FerropsError::value(F, "key", format!("a unit below {}", self.num_units), u.to_string())
        );
        let (mut gts, mut dts) = (Vec::new(), Vec::new());
        let (gts, dts) = self.unit_records(u, &mut gts, &mut dts);
        if gts.is_empty() || dts.is_empty() {
            return Ok(None);
        }
        let exact = Matching { similarity: self.matching.similarity.exact(), ..self.matching.clone() };
        let mut s = Scratch::default();
        s.load(gts, dts, &exact);
        let shape = (s.det.len(), s.gt.len());
        Ok(Some((std::mem::take(&mut s.ious), shape.0, shape.1)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::matching::{FALSE_POSITIVE, IGNORED, TRUE_POSITIVE};
    use super::super::{evaluate, test_datasets as datasets, EvalParams, IouType};
    use crate::interrupt::Cancel;

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
                iou_type: IouType::Bbox,
                kpt_oks_sigmas: &[],
            };
            let e = evaluate(&gt, &dt, &params, &Cancel::new()).unwrap();
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
    fn a_raised_token_stops_the_evaluation() {
        let (gt, dt) = datasets();
        let area_rngs = [[0.0, 1e10]];
        let params = EvalParams {
            img_ids: &[1, 2],
            cat_ids: &[1, 2],
            use_cats: true,
            iou_thrs: &[0.5],
            area_rngs: &area_rngs,
            max_det: 100,
            iou_type: IouType::Bbox,
            kpt_oks_sigmas: &[],
        };
        let cancel = Cancel::new();
        cancel.raise();
        match evaluate(&gt, &dt, &params, &cancel) {
            Err(err) => assert_eq!(err, crate::FerropsError::interrupted("COCOeval.evaluate")),
            Ok(_) => panic!("a raised token must stop the evaluation"),
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
            iou_type: IouType::Bbox,
            kpt_oks_sigmas: &[],
        };
        let e = evaluate(&gt, &dt, &params, &Cancel::new()).unwrap();
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
}
