//! One unit's greedy matching, as pycocotools' `evaluateImg`: the unit's
//! detections and ground truth loaded with their similarity matrix, the ground
//! truth ordered for an area range, and the matching at one IoU threshold.

use super::similarity::Similarity;
use crate::detection::coco::Packed as Record;
use crate::mask::prepared::Decoded;

/// A detection's outcome at one IoU threshold.
pub(super) const FALSE_POSITIVE: u8 = 0;
pub(super) const TRUE_POSITIVE: u8 = 1;
pub(super) const IGNORED: u8 = 2;

/// What matching reads of the parameters, kept by the evaluation so that a
/// unit's full results can be recomputed on demand.
#[derive(Debug, Clone)]
pub(super) struct Matching {
    pub(super) iou_thrs: Vec<f64>,
    pub(super) area_rngs: Vec<[f64; 2]>,
    pub(super) max_det: usize,
    pub(super) similarity: Similarity,
}

/// Outside an area range; both ends are inside.
#[inline]
pub(super) fn outside(rng: [f64; 2], area: f64) -> bool {
    area < rng[0] || area > rng[1]
}

/// Highest first; -0.0 and 0.0 tie as in NumPy (scores are finite: checked on load).
#[inline]
pub(super) fn descending(a: f64, b: f64) -> std::cmp::Ordering {
    b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal)
}

/// Reused buffers of one task: one unit at a time.
#[derive(Default)]
pub(super) struct Scratch {
    /// (score, position in the unit) of the unit's kept detections, best first (stable).
    pub(super) dts: Vec<(f64, u32)>,
    pub(super) det: Vec<Record>,
    /// Ground truth in unit order, and in matching order for one area range
    /// (not ignored first).
    pub(super) gt: Vec<Record>,
    pub(super) sorted_gt: Vec<Record>,
    /// `[D, G]` IoU, columns in unit order and in matching order.
    pub(super) ious: Vec<f64>,
    pub(super) sorted_ious: Vec<f64>,
    /// Per ground truth in matching order, the id of the detection matched to it
    /// at the current threshold (0: none).
    pub(super) matched_by: Vec<i64>,
    /// Per threshold, how many of the unit's IoUs reach it, and the first
    /// threshold whose matching is the same.
    pub(super) levels: Vec<usize>,
    pub(super) same_as: Vec<usize>,
    /// The unit's decoded masks (segm).
    pub(super) decoded: Decoded,
}

impl Scratch {
    /// pycocotools' `computeIoU`: the unit's detections sorted by score (stable)
    /// and cut to `max_det`, its ground truth in unit order, their `[D, G]` IoU
    /// (empty when either side is).
    pub(super) fn load(&mut self, gts: &[Record], dts: &[Record], matching: &Matching) {
        self.dts.clear();
        self.dts.extend(dts.iter().enumerate().map(|(d, record)| (record.score, d as u32)));
        self.dts.sort_by(|a, b| descending(a.0, b.0));
        self.dts.truncate(matching.max_det);
        self.det.clear();
        self.det.extend(self.dts.iter().map(|&(_, d)| dts[d as usize]));
        self.gt.clear();
        self.gt.extend_from_slice(gts);
        self.ious.clear();
        matching.similarity.fill(&self.det, &self.gt, &mut self.ious, &mut self.decoded);
        self.matched_by.clear();
        self.matched_by.resize(self.gt.len(), 0);
    }

    /// Orders the ground truth for one area range as pycocotools' `evaluateImg`
    /// does: not ignored (crowd or outside the range) first, each group in unit
    /// order; the IoU columns follow. Returns how many are not ignored.
    pub(super) fn order_for_area(&mut self, rng: [f64; 2]) -> usize {
        let ignored = |g: &Record| g.ignore || outside(rng, g.area);
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
pub(super) fn effective_threshold(thr: f64) -> f64 {
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
pub(super) fn match_at(
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
