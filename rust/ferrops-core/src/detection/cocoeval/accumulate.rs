//! pycocotools' `COCOeval.accumulate`: the precision/recall/score arrays, one
//! output category per task.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::evaluation::{Evaluation, UnitView};
use super::matching::{descending, FALSE_POSITIVE, TRUE_POSITIVE};
use crate::ensure;
use crate::error::{FerropsError, Result};

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

/// pycocotools' `eval` arrays, category-major (C-order `[K, T, R, A, M]` and
/// `[K, T, A, M]`: pycocotools' `[T, R, K, A, M]` with the K axis moved first, so
/// that each category is one slice): `precision` and `scores` `[T, R, K, A, M]`,
/// `recall` `[T, K, A, M]`, -1 where a setting has no ground truth.
pub struct Accumulated {
    pub precision: Vec<f64>,
    pub recall: Vec<f64>,
    pub scores: Vec<f64>,
    pub shape: [usize; 5],
}

/// The cells of one output category, its slice of the category-major output:
/// `[T, R, A, M]` precision and scores, `[T, A, M]` recall (the output's A and
/// M), -1 where a cell has no ground truth.
struct CategoryBlock<'a> {
    precision: &'a mut [f64],
    scores: &'a mut [f64],
    recall: &'a mut [f64],
}

impl CategoryBlock<'_> {
    /// Copies cell `(a, from)` onto cell `(a, to)`.
    fn copy_cell(&mut self, p: &AccumulateParams, a: usize, (from, to): (usize, usize)) {
        let (run, at) = (p.num_areas * p.num_max_dets, a * p.num_max_dets);
        for values in [&mut *self.precision, &mut *self.scores, &mut *self.recall] {
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
        ensure!(
            flat < evaluation.len(),
            FerropsError::value(
                "COCOeval.accumulate",
                "p",
                "parameters whose imgIds, catIds and areaRng match those evaluate() ran with",
                format!("an index {flat} past the {} evaluated entries", evaluation.len()),
            )
        );
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
    block: &mut CategoryBlock,
) -> Result<()> {
    let mut entries = Vec::new();
    let mut s = AccScratch::default();
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
                    accumulate_cell(evaluation, p, positives, &mut s, (a, m), block);
                    computed.push((s.picks.len(), m));
                }
            }
        }
    }
    Ok(())
}

/// pycocotools' `COCOeval.accumulate`.
pub fn accumulate(evaluation: &Evaluation, p: &AccumulateParams) -> Result<Accumulated> {
    if let Some(r) = p.rec_thrs.iter().find(|r| r.is_nan()) {
        return Err(FerropsError::value("COCOeval.accumulate", "params.recThrs", "numbers", r.to_string()));
    }
    let (t_n, r_n) = (evaluation.num_thresholds, p.rec_thrs.len());
    let (k_n, a_n, m_n) = (p.num_categories, p.num_areas, p.num_max_dets);
    ensure!(
        p.k_list.len() <= k_n && p.a_list.len() <= a_n && p.m_list.len() <= m_n,
        FerropsError::value("COCOeval.accumulate", "p", "index lists no longer than K, A, M", "longer lists")
    );
    let all_images = p.i_list.len() == evaluation.num_images && p.i_list.iter().enumerate().all(|(n, &i)| n == i);
    // Category-major, each category's cells one contiguous slice its task fills
    // in place (no per-category buffers to copy out): -1 where no ground truth.
    let run = a_n * m_n;
    let (per_k, per_k_recall) = (t_n * r_n * run, t_n * run);
    let f = "COCOeval.accumulate";
    let mut precision = crate::buffer::try_filled(f, "precision", &[k_n, per_k], |o| o.fill(MaybeUninit::new(-1.0)))?;
    let mut scores = crate::buffer::try_filled(f, "scores", &[k_n, per_k], |o| o.fill(MaybeUninit::new(-1.0)))?;
    let mut recall = crate::buffer::try_filled(f, "recall", &[k_n, per_k_recall], |o| o.fill(MaybeUninit::new(-1.0)))?;
    if per_k > 0 && per_k_recall > 0 {
        precision
            .par_chunks_mut(per_k)
            .zip(scores.par_chunks_mut(per_k))
            .zip(recall.par_chunks_mut(per_k_recall))
            .take(p.k_list.len())
            .enumerate()
            .map(|(k, ((precision, scores), recall))| {
                accumulate_category(evaluation, p, k, all_images, &mut CategoryBlock { precision, scores, recall })
            })
            .collect::<Result<()>>()?;
    }
    Ok(Accumulated { precision, recall, scores, shape: [t_n, r_n, k_n, a_n, m_n] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detection::coco::CocoDataset;
    use crate::detection::cocoeval::{evaluate, test_datasets as datasets, EvalParams, IouType};
    use crate::interrupt::Cancel;

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
            iou_type: IouType::Bbox,
            kpt_oks_sigmas: &[],
        };
        let e = evaluate(gt, dt, &params, &Cancel::new()).unwrap();
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
    fn hand_checked_recall_and_precision() {
        let (gt, dt) = datasets();
        let out = run(&gt, &dt);
        let [t_n, _, _, a_n, m_n] = out.shape;
        assert_eq!(out.shape, [10, 101, 2, 4, 3]);
        // Category-major: category k's recall is [T, A, M] at k * T * A * M.
        // Category 2 has only crowd ground truth: -1 everywhere.
        assert!((0..t_n).all(|t| out.recall[((t_n + t) * a_n) * m_n + 2] == -1.0));
        // Category 1, area all, maxDets 100, IoU 0.5: 3 ground truth, detections by
        // score 0.9 (TP), 0.9 (TP), 0.8 (FP), 0.1 (TP, IoU 100/110).
        let recall = out.recall[2];
        assert_eq!(recall, 1.0);
        let p_at = |r: usize| out.precision[r * a_n * m_n + 2];
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
