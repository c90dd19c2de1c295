//! Non-maximum suppression: greedy (NMS-GREEDY), per class (NMS-BATCHED), soft
//! (NMS-SOFT) and matrix (NMS-MATRIX).
//!
//! Greedy NMS keeps a box unless a kept box of higher rank overlaps it with IoU
//! strictly above the threshold. Only boxes that intersect can exceed a
//! non-negative threshold, so instead of comparing each box with every kept box (torchvision's
//! quadratic loop), large inputs put kept boxes into a uniform grid and compare a
//! box only with the kept boxes in the cells it covers. The result is the same as
//! the quadratic walk, pair for pair: same IoU arithmetic, same order.

use std::marker::PhantomData;

use rayon::prelude::*;

use super::geometry::{area, iou, iou_with_areas};
use super::{check_scores, check_unit_interval, check_xyxy_boxes};
use crate::ensure;
use crate::error::{FerropsError, Result};
use crate::interrupt::Cancel;
use crate::simd::{dispatch, SimdKernel};
use crate::Real;

/// Below this many boxes the plain walk over all kept boxes beats building a grid
/// (measured: the grid already wins at 1,000 detector-like boxes).
const GRID_MIN_BOXES: usize = 256;
/// A box spanning more grid cells than this is kept in a separate list that every
/// query scans, so that huge boxes do not make inserts and queries slow.
const MAX_CELLS_PER_BOX: usize = 16;
/// The greedy walk looks at its [`Cancel`] token once per this many boxes: a
/// few microseconds of the usual walk, and well under a second where every box
/// is kept and compared with up to millions of kept boxes (RUN-INTERRUPT).
const CHECK_BOXES: usize = 256;

/// Indices sorted by score, descending; ties keep the lower index first. The sort
/// key (inverted score key, index) is unique, so the order does not depend on the
/// sort algorithm or the thread count; sorting plain integer pairs avoids an
/// indirect score lookup per comparison.
pub(super) fn rank_by_score<T: Real>(scores: &[T], subset: impl Iterator<Item = u32>) -> Vec<u32> {
    let mut keyed: Vec<(u64, u32)> = subset.map(|i| (!scores[i as usize].total_order_key(), i)).collect();
    if keyed.len() > 16384 {
        keyed.par_sort_unstable();
    } else {
        keyed.sort_unstable();
    }
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// Kept boxes in structure-of-arrays form, so the overlap test runs across lanes.
#[derive(Default)]
struct KeptBoxes<T> {
    x1: Vec<T>,
    y1: Vec<T>,
    x2: Vec<T>,
    y2: Vec<T>,
    area: Vec<T>,
}

impl<T: Real> KeptBoxes<T> {
    fn push(&mut self, b: [T; 4], area: T) {
        self.x1.push(b[0]);
        self.y1.push(b[1]);
        self.x2.push(b[2]);
        self.y2.push(b[3]);
        self.area.push(area);
    }
}

/// Does any kept box overlap `b` with IoU > threshold? Same arithmetic as
/// torchvision's CPU kernel: `inter / (area_kept + area_b - inter)`.
#[inline(always)]
fn any_overlap<T: Real>(k: &KeptBoxes<T>, b: [T; 4], area_b: T, threshold: T) -> bool {
    // Blocks of 16 keep the loop vectorised while still exiting early.
    let n = k.x1.len();
    let mut start = 0;
    while start < n {
        let end = (start + 16).min(n);
        // Zipped slices of one length: no bounds checks, so the block vectorises.
        let hit = k.x1[start..end]
            .iter()
            .zip(&k.y1[start..end])
            .zip(&k.x2[start..end])
            .zip(&k.y2[start..end])
            .zip(&k.area[start..end])
            .fold(false, |hit, ((((&x1, &y1), &x2), &y2), &area_k)| {
                hit | overlap_exceeds([x1, y1, x2, y2], area_k, b, area_b, threshold)
            });
        if hit {
            return true;
        }
        start = end;
    }
    false
}

fn box_at<T: Real>(boxes: &[T], i: u32) -> [T; 4] {
    let i = i as usize * 4;
    [boxes[i], boxes[i + 1], boxes[i + 2], boxes[i + 3]]
}

/// The greedy walk over `order` (boxes by rank); returns the kept boxes in walk
/// order, or `Interrupted` (naming `function`) once `cancel` is raised.
fn greedy_keep<T: Real>(
    function: &'static str,
    boxes: &[T],
    order: &[u32],
    threshold: f64,
    limit: usize,
    cancel: &Cancel,
) -> Result<Vec<u32>> {
    let threshold = T::floor_from_f64(threshold);
    if limit == 0 {
        return Ok(Vec::new());
    }
    if order.len() < GRID_MIN_BOXES {
        // Fewer boxes than one check's worth: nothing to interrupt.
        Ok(dispatch(PlainWalk { boxes, order, threshold, limit }))
    } else {
        let grid = Grid::new(boxes, order);
        dispatch(GridWalk { grid, boxes, order, threshold, limit, function, cancel })
    }
}

/// Compares each box with every kept box: best for a few hundred boxes.
struct PlainWalk<'a, T> {
    boxes: &'a [T],
    order: &'a [u32],
    threshold: T,
    /// The walk stops once it has kept this many boxes.
    limit: usize,
}

impl<T: Real> SimdKernel for PlainWalk<'_, T> {
    type Output = Vec<u32>;
    #[inline(always)]
    fn run(self) -> Vec<u32> {
        let mut kept_boxes = KeptBoxes::default();
        let mut kept = Vec::new();
        for &i in self.order {
            let b = box_at(self.boxes, i);
            let area_b = area(b);
            if !any_overlap(&kept_boxes, b, area_b, self.threshold) {
                kept_boxes.push(b, area_b);
                kept.push(i);
                if kept.len() == self.limit {
                    break;
                }
            }
        }
        kept
    }
}

/// A uniform grid over the boxes' extent holding kept boxes per cell.
struct Grid<T> {
    x0: f64,
    y0: f64,
    inv_cell: f64,
    nx: usize,
    ny: usize,
    _coordinates: PhantomData<T>,
}

impl<T: Real> Grid<T> {
    fn new(boxes: &[T], order: &[u32]) -> Grid<T> {
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        let (mut sum_w, mut sum_h) = (0.0f64, 0.0f64);
        for &i in order {
            let b = box_at(boxes, i);
            x0 = x0.min(b[0].to_f64());
            y0 = y0.min(b[1].to_f64());
            x1 = x1.max(b[2].to_f64());
            y1 = y1.max(b[3].to_f64());
            sum_w += (b[2] - b[0]).to_f64();
            sum_h += (b[3] - b[1]).to_f64();
        }
        let n = order.len() as f64;
        let (width, height) = ((x1 - x0).max(f64::MIN_POSITIVE), (y1 - y0).max(f64::MIN_POSITIVE));
        // Cells about the size of a typical box: a box then covers ~4 cells and a
        // cell holds few kept boxes. At most ~2 cells per box, to bound memory.
        let typical = (sum_w / n).max(sum_h / n);
        let mut cell = if typical > 0.0 { typical } else { width.max(height) };
        while (width / cell).ceil() * (height / cell).ceil() > 2.0 * n + 1.0 {
            cell *= 2.0;
        }
        let nx = ((width / cell).ceil() as usize).max(1);
        let ny = ((height / cell).ceil() as usize).max(1);
        Grid { x0, y0, inv_cell: 1.0 / cell, nx, ny, _coordinates: PhantomData }
    }

    fn cell_range(&self, lo: T, hi: T, origin: f64, cells: usize) -> (usize, usize) {
        let to_cell = |v: T| (((v.to_f64() - origin) * self.inv_cell).floor().max(0.0) as usize).min(cells - 1);
        (to_cell(lo), to_cell(hi))
    }
}

/// Kept boxes per cell, in blocks of [`LANES`] boxes (structure of arrays, so a
/// block is tested in one vector pass), linked newest first. All blocks of all
/// cells live in one `Vec`: one allocation instead of one per cell.
const LANES: usize = 8;
const NO_BLOCK: u32 = u32::MAX;

struct CellBlock<T> {
    x1: [T; LANES],
    y1: [T; LANES],
    x2: [T; LANES],
    y2: [T; LANES],
    area: [T; LANES],
    next: u32,
}

impl<T: Real> CellBlock<T> {
    /// Unused lanes hold the point box (0, 0, 0, 0): its intersection with any box
    /// is 0, so it never exceeds a threshold >= 0.
    fn empty(next: u32) -> Self {
        let zero = [T::ZERO; LANES];
        CellBlock { x1: zero, y1: zero, x2: zero, y2: zero, area: zero, next }
    }

    #[inline(always)]
    fn any_overlap(&self, b: [T; 4], area_b: T, threshold: T) -> bool {
        (0..LANES).fold(false, |hit, l| {
            hit | overlap_exceeds([self.x1[l], self.y1[l], self.x2[l], self.y2[l]], self.area[l], b, area_b, threshold)
        })
    }
}

struct GridWalk<'a, T> {
    grid: Grid<T>,
    boxes: &'a [T],
    order: &'a [u32],
    threshold: T,
    limit: usize,
    function: &'static str,
    cancel: &'a Cancel,
}

impl<T: Real> SimdKernel for GridWalk<'_, T> {
    type Output = Result<Vec<u32>>;
    #[inline(always)]
    fn run(self) -> Result<Vec<u32>> {
        let GridWalk { grid, boxes, order, threshold, limit, function, cancel } = self;
        let cells = grid.nx * grid.ny;
        let mut head = vec![NO_BLOCK; cells];
        let mut fill = vec![0u8; cells];
        let mut blocks: Vec<CellBlock<T>> = Vec::new();
        let mut large = KeptBoxes::default();
        // Every kept box: a query box covering more cells than there are kept boxes
        // scans this list instead of its cells.
        let mut all = KeptBoxes::default();
        let mut kept = Vec::new();
        for (n, &i) in order.iter().enumerate() {
            if n % CHECK_BOXES == 0 {
                cancel.check(function)?;
            }
            let b = box_at(boxes, i);
            let area_b = area(b);
            let (cx0, cx1) = grid.cell_range(b[0], b[2], grid.x0, grid.nx);
            let (cy0, cy1) = grid.cell_range(b[1], b[3], grid.y0, grid.ny);
            let covered = (cx1 - cx0 + 1) * (cy1 - cy0 + 1);
            let cell_overlaps = |cell: usize| {
                let mut block = head[cell];
                while block != NO_BLOCK {
                    let cb = &blocks[block as usize];
                    if cb.any_overlap(b, area_b, threshold) {
                        return true;
                    }
                    block = cb.next;
                }
                false
            };
            let suppressed = if covered > all.x1.len() {
                any_overlap(&all, b, area_b, threshold)
            } else {
                any_overlap(&large, b, area_b, threshold)
                    || (cy0..=cy1).any(|cy| (cx0..=cx1).any(|cx| cell_overlaps(cy * grid.nx + cx)))
            };
            if suppressed {
                continue;
            }
            kept.push(i);
            if kept.len() == limit {
                break;
            }
            all.push(b, area_b);
            if covered > MAX_CELLS_PER_BOX {
                large.push(b, area_b);
                continue;
            }
            for cy in cy0..=cy1 {
                for cx in cx0..=cx1 {
                    let cell = cy * grid.nx + cx;
                    if head[cell] == NO_BLOCK || fill[cell] as usize == LANES {
                        blocks.push(CellBlock::empty(head[cell]));
                        head[cell] = (blocks.len() - 1) as u32;
                        fill[cell] = 0;
                    }
                    let (cb, lane) = (&mut blocks[head[cell] as usize], fill[cell] as usize);
                    (cb.x1[lane], cb.y1[lane], cb.x2[lane], cb.y2[lane], cb.area[lane]) =
                        (b[0], b[1], b[2], b[3], area_b);
                    fill[cell] += 1;
                }
            }
        }
        Ok(kept)
    }
}

/// Does kept box `k` overlap `b` with IoU > threshold? The one pair test of
/// [`any_overlap`] and [`CellBlock::any_overlap`].
#[inline(always)]
fn overlap_exceeds<T: Real>(k: [T; 4], area_k: T, b: [T; 4], area_b: T, threshold: T) -> bool {
    iou_with_areas(k, area_k, b, area_b) > threshold
}

/// NMS-GREEDY: kept indices in descending score order, at most `max_output` of
/// them (the walk stops there: NMS-TOPK). This and the other NMS functions stop
/// with `Interrupted` once `cancel` is raised (RUN-INTERRUPT).
pub fn nms<T: Real>(
    boxes: &[T],
    scores: &[T],
    iou_threshold: f64,
    max_output: Option<usize>,
    cancel: &Cancel,
) -> Result<Vec<i64>> {
    let n = check_xyxy_boxes("nms", "boxes", boxes)?;
    check_scores("nms", scores, n)?;
    check_unit_interval("nms", "iou_threshold", iou_threshold)?;
    check_index_range("nms", n)?;
    let order = rank_by_score(scores, 0..n as u32);
    let limit = max_output.unwrap_or(usize::MAX);
    Ok(greedy_keep("nms", boxes, &order, iou_threshold, limit, cancel)?.into_iter().map(i64::from).collect())
}

fn check_index_range(function: &'static str, n: usize) -> Result<()> {
    ensure!(n <= u32::MAX as usize, FerropsError::value(function, "boxes", "at most 2^32 - 1 boxes", format!("{n}")));
    Ok(())
}

fn check_class_ids(function: &'static str, idxs: &[i64], n: usize) -> Result<()> {
    ensure!(
        idxs.len() == n,
        FerropsError::value(function, "idxs", format!("one class id per box ({n})"), format!("{} ids", idxs.len()))
    );
    Ok(())
}

/// All indices by descending score, and the same indices grouped by class id
/// (groups in ascending class order, each by descending score).
pub(super) fn rank_within_classes<T: Real>(scores: &[T], idxs: &[i64]) -> (Vec<u32>, Vec<Vec<u32>>) {
    let order = rank_by_score(scores, 0..scores.len() as u32);
    let mut classes = idxs.to_vec();
    classes.sort_unstable();
    classes.dedup();
    let mut groups = vec![Vec::new(); classes.len()];
    for &i in &order {
        let class = classes.binary_search(&idxs[i as usize]).expect("every id is in the list");
        groups[class].push(i);
    }
    (order, groups)
}

/// NMS-BATCHED: greedy NMS within each class id; kept indices by descending score
/// (ties: lower index first), at most `max_output` of them (each class's walk
/// stops there). Classes run in parallel.
pub fn batched_nms<T: Real>(
    boxes: &[T],
    scores: &[T],
    idxs: &[i64],
    iou_threshold: f64,
    max_output: Option<usize>,
    cancel: &Cancel,
) -> Result<Vec<i64>> {
    let n = check_xyxy_boxes("batched_nms", "boxes", boxes)?;
    check_scores("batched_nms", scores, n)?;
    check_class_ids("batched_nms", idxs, n)?;
    check_unit_interval("batched_nms", "iou_threshold", iou_threshold)?;
    check_index_range("batched_nms", n)?;
    let (order, groups) = rank_within_classes(scores, idxs);
    let limit = max_output.unwrap_or(usize::MAX);
    let kept_per_class: Vec<Vec<u32>> = groups
        .par_iter()
        .map(|group| greedy_keep("batched_nms", boxes, group, iou_threshold, limit, cancel))
        .collect::<Result<_>>()?;
    let mut kept = vec![false; n];
    for i in kept_per_class.into_iter().flatten() {
        kept[i as usize] = true;
    }
    Ok(order.into_iter().filter(|&i| kept[i as usize]).take(limit).map(i64::from).collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftMethod {
    Linear,
    Gaussian,
}

impl SoftMethod {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "linear" => Ok(SoftMethod::Linear),
            "gaussian" => Ok(SoftMethod::Gaussian),
            other => Err(FerropsError::value("soft_nms", "method", "'linear' or 'gaussian'", format!("'{other}'"))),
        }
    }
}

/// NMS-SOFT (Bodla et al. 2017, mmcv's rescoring): returns the selected indices in
/// selection order and their scores at selection. A box whose score is below
/// `score_threshold`, at the start or after a rescoring, is dropped (mmcv only
/// tests rescored boxes; a box that starts below the threshold is not kept here).
pub fn soft_nms<T: Real>(
    boxes: &[T],
    scores: &[T],
    iou_threshold: f64,
    sigma: f64,
    score_threshold: f64,
    method: SoftMethod,
    cancel: &Cancel,
) -> Result<(Vec<i64>, Vec<T>)> {
    let n = check_xyxy_boxes("soft_nms", "boxes", boxes)?;
    check_scores("soft_nms", scores, n)?;
    check_unit_interval("soft_nms", "iou_threshold", iou_threshold)?;
    check_index_range("soft_nms", n)?;
    ensure!(
        sigma.is_finite() && sigma > 0.0,
        FerropsError::value("soft_nms", "sigma", "a finite value > 0", format!("{sigma}"))
    );
    ensure!(
        score_threshold.is_finite(),
        FerropsError::value("soft_nms", "score_threshold", "a finite value", format!("{score_threshold}"))
    );
    let overlap_threshold = T::floor_from_f64(iou_threshold);
    let min_score = T::from_f64(score_threshold);
    let inv_sigma = T::from_f64(1.0 / sigma);
    let mut current = scores.to_vec();
    let mut live: Vec<u32> = (0..n as u32).filter(|&i| scores[i as usize] >= min_score).collect();
    let (mut keep, mut kept_scores) = (Vec::new(), Vec::new());
    while !live.is_empty() {
        // One selection rescores every live box: O(N) work between two looks.
        cancel.check("soft_nms")?;
        // Highest current score; ties go to the lower index.
        let best = (0..live.len())
            .max_by(|&p, &q| {
                let (a, b) = (live[p] as usize, live[q] as usize);
                current[a].total_cmp(&current[b]).then(b.cmp(&a))
            })
            .expect("live is not empty");
        let i = live.swap_remove(best);
        keep.push(i64::from(i));
        kept_scores.push(current[i as usize]);
        let selected = box_at(boxes, i);
        for &j in &live {
            let o = iou(selected, box_at(boxes, j));
            let weight = match method {
                SoftMethod::Linear if o > overlap_threshold => T::ONE - o,
                SoftMethod::Linear => T::ONE,
                SoftMethod::Gaussian => (-(o * o) * inv_sigma).exp(),
            };
            current[j as usize] *= weight;
        }
        live.retain(|&j| current[j as usize] >= min_score);
    }
    Ok((keep, kept_scores))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatrixKernel {
    Linear,
    Gaussian,
}

impl MatrixKernel {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "linear" => Ok(MatrixKernel::Linear),
            "gaussian" => Ok(MatrixKernel::Gaussian),
            other => Err(FerropsError::value("matrix_nms", "kernel", "'gaussian' or 'linear'", format!("'{other}'"))),
        }
    }
}

/// NMS-MATRIX (SOLOv2): the decayed score of every box, in input order. Within a
/// class, with boxes by descending score, `decay_j = min(1, min_{i<j} f(IoU_ij) /
/// f(comp_i))`, `comp_i = max_{h<i} IoU_hi`; the 1 is what SOLOv2's full-matrix
/// minimum contributes through its zero entries. A 0/0 ratio (an exact duplicate of
/// an exact duplicate, linear kernel) imposes no bound: the earlier duplicate
/// already decays the box to 0.
pub fn matrix_nms<T: Real>(
    boxes: &[T],
    scores: &[T],
    idxs: Option<&[i64]>,
    kernel: MatrixKernel,
    sigma: f64,
    cancel: &Cancel,
) -> Result<Vec<T>> {
    let n = check_xyxy_boxes("matrix_nms", "boxes", boxes)?;
    check_scores("matrix_nms", scores, n)?;
    check_index_range("matrix_nms", n)?;
    if let Some(idxs) = idxs {
        check_class_ids("matrix_nms", idxs, n)?;
    }
    ensure!(
        kernel != MatrixKernel::Gaussian || (sigma.is_finite() && sigma > 0.0),
        FerropsError::value("matrix_nms", "sigma", "a finite value > 0", format!("{sigma}"))
    );
    let groups = match idxs {
        Some(idxs) => rank_within_classes(scores, idxs).1,
        None => vec![rank_by_score(scores, 0..n as u32)],
    };
    let sigma = T::from_f64(sigma);
    let f = |x: T| match kernel {
        MatrixKernel::Gaussian => (-sigma * x * x).exp(),
        MatrixKernel::Linear => T::ONE - x,
    };
    let mut decayed = scores.to_vec();
    for order in &groups {
        let ranked_iou = |p: usize, q: usize| iou(box_at(boxes, order[p]), box_at(boxes, order[q]));
        // Each row below is O(N) work: a raised token skips the rows not yet done
        // and stops the call after the pass.
        let compensation: Vec<T> = (0..order.len())
            .into_par_iter()
            .map(|i| {
                if cancel.is_raised() {
                    return T::ZERO;
                }
                (0..i).map(|h| ranked_iou(h, i)).fold(T::ZERO, |m, v| m.max_fast(v))
            })
            .collect();
        cancel.check("matrix_nms")?;
        let comp_f: Vec<T> = compensation.iter().map(|&c| f(c)).collect();
        let decay: Vec<T> = (0..order.len())
            .into_par_iter()
            .map(|j| {
                if cancel.is_raised() {
                    return T::ONE;
                }
                (0..j).fold(T::ONE, |m, i| {
                    let ratio = f(ranked_iou(i, j)) / comp_f[i];
                    if ratio < m {
                        ratio
                    } else {
                        m
                    }
                })
            })
            .collect();
        cancel.check("matrix_nms")?;
        for (p, &i) in order.iter().enumerate() {
            decayed[i as usize] = scores[i as usize] * decay[p];
        }
    }
    Ok(decayed)
}

#[cfg(test)]
#[path = "nms_tests.rs"]
mod tests;
