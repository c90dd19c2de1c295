//! Rotated boxes (BOX-ROT-IOU, NMS-ROT): `(cx, cy, w, h, angle)` rows, the angle
//! counter-clockwise on screen (x right, y down), detectron2's convention: the
//! corner at local `(w/2, h/2)` lands at `(cx + cos a * w/2 + sin a * h/2,
//! cy - sin a * w/2 + cos a * h/2)`. [`Convention`] turns degrees or radians,
//! counter-clockwise or clockwise (mmcv's default), into that.
//!
//! The overlap of two rectangles is computed exactly: one rectangle, as a convex
//! polygon, is clipped by the four half-planes of the other (Sutherland-Hodgman),
//! all in float64 with coordinates taken relative to the midpoint of the two
//! centres, so that far-from-origin and near-parallel pairs keep their digits.
//! Pairs whose circumscribed circles do not meet are skipped (overlap 0).

use rayon::prelude::*;

use super::nms::{rank_by_score, rank_within_classes};
use super::{check_unit_interval, ROWS_PER_TASK};
use crate::buffer;
use crate::ensure;
use crate::error::{FerropsError, Result};
use crate::interrupt::Cancel;
use crate::Real;

/// How the caller's angles read: unit and direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Convention {
    /// Radians per caller unit, signed: negative for clockwise angles.
    to_ccw_radians: f64,
}

impl Convention {
    pub fn parse(function: &'static str, angle_unit: &str, clockwise: bool) -> Result<Self> {
        let scale = match angle_unit {
            "deg" => std::f64::consts::PI / 180.0,
            "rad" => 1.0,
            other => {
                return Err(FerropsError::value(function, "angle_unit", "'deg' or 'rad'", format!("'{other}'")));
            }
        };
        Ok(Convention { to_ccw_radians: if clockwise { -scale } else { scale } })
    }
}

/// IoU or intersection over the first box's area (mmcv's "iof").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlapMode {
    Iou,
    Iof,
}

impl OverlapMode {
    pub fn parse(function: &'static str, name: &str) -> Result<Self> {
        match name {
            "iou" => Ok(OverlapMode::Iou),
            "iof" => Ok(OverlapMode::Iof),
            other => Err(FerropsError::value(function, "mode", "'iou' or 'iof'", format!("'{other}'"))),
        }
    }
}

/// A rectangle as its centre and two half-axis vectors: `u` (half the width,
/// along the box's x axis) and `v` (half the height).
#[derive(Debug, Clone, Copy)]
struct Rect {
    centre: [f64; 2],
    u: [f64; 2],
    v: [f64; 2],
    area: f64,
    /// The circumscribed circle's radius.
    radius: f64,
}

impl Rect {
    fn new<T: Real>(b: &[T], convention: Convention) -> Rect {
        let (w, h) = (b[2].to_f64(), b[3].to_f64());
        let (sin, cos) = (b[4].to_f64() * convention.to_ccw_radians).sin_cos();
        Rect {
            centre: [b[0].to_f64(), b[1].to_f64()],
            u: [cos * 0.5 * w, -sin * 0.5 * w],
            v: [sin * 0.5 * h, cos * 0.5 * h],
            area: w * h,
            radius: 0.5 * w.hypot(h),
        }
    }
}

/// Every value finite, widths and heights >= 0; returns the row count.
pub fn check_rotated_boxes<T: Real>(function: &'static str, argument: &'static str, boxes: &[T]) -> Result<usize> {
    ensure!(
        boxes.len().is_multiple_of(5),
        FerropsError::value(
            function,
            argument,
            "a [N, 5] array of (cx, cy, w, h, angle) boxes",
            format!("{} values, not a multiple of 5", boxes.len())
        )
    );
    let bad = |b: &[T]| !(b.iter().all(|v| v.is_finite()) && b[2] >= T::ZERO && b[3] >= T::ZERO);
    if let Some(i) = boxes.chunks_exact(5).position(bad) {
        let b = &boxes[5 * i..5 * i + 5];
        return Err(FerropsError::value(
            function,
            argument,
            "finite (cx, cy, w, h, angle) boxes with w >= 0 and h >= 0",
            format!("box {i} = [{}, {}, {}, {}, {}]", b[0], b[1], b[2], b[3], b[4]),
        ));
    }
    Ok(boxes.len() / 5)
}

fn rects<T: Real>(boxes: &[T], convention: Convention) -> Vec<Rect> {
    boxes.chunks_exact(5).map(|b| Rect::new(b, convention)).collect()
}

/// Up to 8 vertices: a convex quadrilateral cut by 4 half-planes.
type Polygon = ([[f64; 2]; 8], usize);

/// Keeps the part of `polygon` where `dot(p - centre, axis) <= |axis|^2`, i.e.
/// on the near side of the edge that `axis` points at.
#[inline(always)]
fn clip(polygon: &Polygon, centre: [f64; 2], axis: [f64; 2]) -> Polygon {
    let limit = axis[0] * axis[0] + axis[1] * axis[1];
    let inside = |p: [f64; 2]| limit - ((p[0] - centre[0]) * axis[0] + (p[1] - centre[1]) * axis[1]);
    let (points, n) = polygon;
    let mut out = ([[0.0; 2]; 8], 0usize);
    let mut push = |p: [f64; 2]| {
        // A convex quadrilateral cut by 4 lines has at most 8 vertices; the
        // guard keeps a rounding-made extra vertex from indexing out of bounds.
        if out.1 < 8 {
            out.0[out.1] = p;
            out.1 += 1;
        }
    };
    for k in 0..*n {
        let (p, q) = (points[k], points[(k + 1) % n]);
        let (fp, fq) = (inside(p), inside(q));
        if fp >= 0.0 {
            push(p);
        }
        if (fp >= 0.0) != (fq >= 0.0) {
            let t = fp / (fp - fq);
            push([p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]);
        }
    }
    out
}

/// The area of `a ∩ b` (the exact polygon overlap, to float64 rounding).
fn intersection_area(a: &Rect, b: &Rect) -> f64 {
    let (dx, dy) = (a.centre[0] - b.centre[0], a.centre[1] - b.centre[1]);
    let reach = a.radius + b.radius;
    if dx * dx + dy * dy >= reach * reach || a.area == 0.0 || b.area == 0.0 {
        return 0.0;
    }
    if a.centre == b.centre && a.u == b.u && a.v == b.v {
        // The same rectangle: exactly its area (clipping would round), so that a
        // duplicate has IoU 1 and is suppressed even at `iou_threshold=1`.
        return a.area;
    }
    // Relative to the midpoint of the centres: a at +d/2, b at -d/2.
    let (ca, cb) = ([0.5 * dx, 0.5 * dy], [-0.5 * dx, -0.5 * dy]);
    let corner = |s: f64, t: f64| [ca[0] + s * a.u[0] + t * a.v[0], ca[1] + s * a.u[1] + t * a.v[1]];
    let mut polygon: Polygon = ([[0.0; 2]; 8], 4);
    polygon.0[..4].copy_from_slice(&[corner(1.0, 1.0), corner(-1.0, 1.0), corner(-1.0, -1.0), corner(1.0, -1.0)]);
    for axis in [b.u, [-b.u[0], -b.u[1]], b.v, [-b.v[0], -b.v[1]]] {
        polygon = clip(&polygon, cb, axis);
        if polygon.1 < 3 {
            return 0.0;
        }
    }
    let (points, n) = polygon;
    let twice: f64 =
        (0..n).map(|k| points[k][0] * points[(k + 1) % n][1] - points[(k + 1) % n][0] * points[k][1]).sum();
    // The overlap cannot exceed either box; rounding can push it a hair above.
    (0.5 * twice.abs()).min(a.area).min(b.area)
}

/// BOX-ROT-IOU for one pair. A zero-area box overlaps nothing (0), as in
/// detectron2 and mmcv (which cut off below an area of 1e-14).
#[inline]
fn overlap(a: &Rect, b: &Rect, mode: OverlapMode) -> f64 {
    let inter = intersection_area(a, b);
    if inter == 0.0 {
        return 0.0;
    }
    match mode {
        OverlapMode::Iou => inter / (a.area + b.area - inter),
        OverlapMode::Iof => inter / a.area,
    }
}

/// `[N, M]` (or, `aligned`, `[N]`) overlaps of rotated boxes `a` (`[N, 5]`) and
/// `b` (`[M, 5]`), row-major.
pub fn box_iou_rotated<T: Real>(
    a: &[T],
    b: &[T],
    mode: OverlapMode,
    aligned: bool,
    convention: Convention,
) -> Result<Vec<T>> {
    const NAME: &str = "box_iou_rotated";
    let n = check_rotated_boxes(NAME, "boxes1", a)?;
    let m = check_rotated_boxes(NAME, "boxes2", b)?;
    let (ra, rb) = (rects(a, convention), rects(b, convention));
    if aligned {
        ensure!(
            n == m,
            FerropsError::value(NAME, "boxes2", format!("as many boxes as boxes1 ({n}) when aligned"), format!("{m}"))
        );
        return Ok(buffer::filled(n, |out| {
            out.par_chunks_mut(ROWS_PER_TASK).enumerate().for_each(|(t, out)| {
                for (k, o) in out.iter_mut().enumerate() {
                    let i = t * ROWS_PER_TASK + k;
                    o.write(T::from_f64(overlap(&ra[i], &rb[i], mode)));
                }
            })
        }));
    }
    if n == 0 || m == 0 {
        return Ok(Vec::new());
    }
    // Rows per task: about 64k pairs, whatever the thread count.
    let rows_per_task = (65_536 / m).max(1);
    buffer::try_filled(NAME, "the output", &[n, m], |out| {
        out.par_chunks_mut(rows_per_task * m).enumerate().for_each(|(t, out)| {
            for (k, row) in out.chunks_exact_mut(m).enumerate() {
                let x = &ra[t * rows_per_task + k];
                for (o, y) in row.iter_mut().zip(&rb) {
                    o.write(T::from_f64(overlap(x, y, mode)));
                }
            }
        })
    })
}

/// A uniform grid of kept boxes' circumscribed squares: a candidate is compared
/// only with kept boxes whose squares share a cell with its own.
struct CircleGrid {
    origin: [f64; 2],
    inv_cell: f64,
    nx: usize,
    ny: usize,
    cells: Vec<Vec<u32>>,
    /// Kept boxes that cover more than [`MAX_CELLS`] cells: every query scans them.
    large: Vec<u32>,
}

const MAX_CELLS: usize = 16;

impl CircleGrid {
    fn new(rects: &[Rect], order: &[u32]) -> CircleGrid {
        let (mut lo, mut hi) = ([f64::MAX; 2], [f64::MIN; 2]);
        let mut sum_diameter = 0.0;
        for &i in order {
            let r = &rects[i as usize];
            for d in 0..2 {
                lo[d] = lo[d].min(r.centre[d] - r.radius);
                hi[d] = hi[d].max(r.centre[d] + r.radius);
            }
            sum_diameter += 2.0 * r.radius;
        }
        let n = order.len().max(1) as f64;
        let extent = (hi[0] - lo[0]).max(hi[1] - lo[1]).max(f64::MIN_POSITIVE);
        let mut cell = (sum_diameter / n).max(extent / 1024.0).max(f64::MIN_POSITIVE);
        while ((hi[0] - lo[0]) / cell).ceil() * ((hi[1] - lo[1]) / cell).ceil() > 2.0 * n + 1.0 {
            cell *= 2.0;
        }
        let nx = (((hi[0] - lo[0]) / cell).ceil() as usize).max(1);
        let ny = (((hi[1] - lo[1]) / cell).ceil() as usize).max(1);
        CircleGrid { origin: lo, inv_cell: 1.0 / cell, nx, ny, cells: vec![Vec::new(); nx * ny], large: Vec::new() }
    }

    /// The cells `r`'s circumscribed square covers: `(x0, x1, y0, y1)`, inclusive.
    fn span(&self, r: &Rect) -> (usize, usize, usize, usize) {
        let cell = |v: f64, d: usize, count: usize| {
            (((v - self.origin[d]) * self.inv_cell).floor().max(0.0) as usize).min(count - 1)
        };
        (
            cell(r.centre[0] - r.radius, 0, self.nx),
            cell(r.centre[0] + r.radius, 0, self.nx),
            cell(r.centre[1] - r.radius, 1, self.ny),
            cell(r.centre[1] + r.radius, 1, self.ny),
        )
    }
}

/// The greedy walk of NMS-ROT over `order`: a box is dropped when its IoU with a
/// kept box is >= `threshold` (detectron2, mmcv and torchvision compare with
/// `>=`). Kept boxes in walk order.
fn rotated_greedy_keep(
    function: &'static str,
    rects: &[Rect],
    order: &[u32],
    threshold: f64,
    cancel: &Cancel,
) -> Result<Vec<u32>> {
    if threshold <= 0.0 || order.is_empty() {
        // Every IoU is >= 0: the best box suppresses all others.
        return Ok(order.iter().take(1).copied().collect());
    }
    let mut grid = CircleGrid::new(rects, order);
    let mut kept = Vec::new();
    let mut stamp = vec![u32::MAX; rects.len()];
    for (n, &i) in order.iter().enumerate() {
        if n % 256 == 0 {
            cancel.check(function)?;
        }
        let r = &rects[i as usize];
        let (x0, x1, y0, y1) = grid.span(r);
        let mut hit = |k: u32| {
            // A kept box in several of the cells is compared once.
            if stamp[k as usize] == i {
                return false;
            }
            stamp[k as usize] = i;
            overlap(&rects[k as usize], r, OverlapMode::Iou) >= threshold
        };
        let cells = &grid.cells;
        let suppressed = grid.large.iter().any(|&k| hit(k))
            || (y0..=y1).any(|cy| (x0..=x1).any(|cx| cells[cy * grid.nx + cx].iter().any(|&k| hit(k))));
        if suppressed {
            continue;
        }
        kept.push(i);
        if (x1 - x0 + 1) * (y1 - y0 + 1) > MAX_CELLS {
            grid.large.push(i);
        } else {
            for cy in y0..=y1 {
                for cx in x0..=x1 {
                    grid.cells[cy * grid.nx + cx].push(i);
                }
            }
        }
    }
    Ok(kept)
}

fn check_scores_and_threshold<T: Real>(function: &'static str, scores: &[T], n: usize, threshold: f64) -> Result<()> {
    super::check_scores(function, scores, n)?;
    check_unit_interval(function, "iou_threshold", threshold)?;
    ensure!(n <= u32::MAX as usize, FerropsError::value(function, "boxes", "at most 2^32 - 1 boxes", format!("{n}")));
    Ok(())
}

/// NMS-ROT: kept indices by descending score (ties: lower index first).
pub fn nms_rotated<T: Real>(
    boxes: &[T],
    scores: &[T],
    iou_threshold: f64,
    convention: Convention,
    cancel: &Cancel,
) -> Result<Vec<i64>> {
    let n = check_rotated_boxes("nms_rotated", "boxes", boxes)?;
    check_scores_and_threshold("nms_rotated", scores, n, iou_threshold)?;
    let order = rank_by_score(scores, 0..n as u32);
    let rects = rects(boxes, convention);
    Ok(rotated_greedy_keep("nms_rotated", &rects, &order, iou_threshold, cancel)?.into_iter().map(i64::from).collect())
}

/// NMS-ROT per class id; kept indices by descending score (ties: lower index first).
pub fn batched_nms_rotated<T: Real>(
    boxes: &[T],
    scores: &[T],
    idxs: &[i64],
    iou_threshold: f64,
    convention: Convention,
    cancel: &Cancel,
) -> Result<Vec<i64>> {
    const NAME: &str = "batched_nms_rotated";
    let n = check_rotated_boxes(NAME, "boxes", boxes)?;
    check_scores_and_threshold(NAME, scores, n, iou_threshold)?;
    ensure!(
        idxs.len() == n,
        FerropsError::value(NAME, "idxs", format!("one class id per box ({n})"), format!("{} ids", idxs.len()))
    );
    let (order, groups) = rank_within_classes(scores, idxs);
    let rects = rects(boxes, convention);
    let kept_per_class: Vec<Vec<u32>> = groups
        .par_iter()
        .map(|group| rotated_greedy_keep(NAME, &rects, group, iou_threshold, cancel))
        .collect::<Result<_>>()?;
    let mut kept = vec![false; n];
    for i in kept_per_class.into_iter().flatten() {
        kept[i as usize] = true;
    }
    Ok(order.into_iter().filter(|&i| kept[i as usize]).map(i64::from).collect())
}

#[cfg(test)]
#[path = "rotated_tests.rs"]
mod tests;
