//! Polygon and box rasterisation, pixel for pixel what pycocotools' `rleFrPoly`
//! gives (MASK-POLY).
//!
//! pycocotools scales the vertices by 5 and rounds them, walks every edge one
//! step per unit of its longer axis (the shorter coordinate rounded), and keeps
//! the steps where the scaled x crosses a pixel column's centre line: each gives
//! the first row of a run boundary in that column. The boundaries, sorted as
//! column-major pixel indices, are the runs. Here the same points come out of the
//! same arithmetic, but each edge is visited only at the steps that cross a column
//! inside the image (one per column, found by a formula or a short search of the
//! monotone step sequence), so a huge coordinate costs no time or memory while the
//! result stays the same.

use super::Rle;
use crate::ensure;
use crate::error::{FerropsError, Name, Result};

const SCALE: f64 = 5.0;

/// Coordinates whose scaled value fits a C `int` (pycocotools' type): beyond
/// this its arithmetic is undefined.
pub const MAX_ABS_COORDINATE: f64 = (i32::MAX as f64 - 1.0) / SCALE;

/// C's `(int)x` as x86 computes it: truncation toward zero, and the "integer
/// indefinite" value `INT_MIN` for NaN and out-of-range values (a degenerate edge
/// of one point has slope 0/0 in pycocotools, and its y comes out as `INT_MIN`).
#[inline]
fn c_int(x: f64) -> i64 {
    if x.is_nan() || x >= 2147483648.0 || x <= -2147483649.0 {
        i64::from(i32::MIN)
    } else {
        // `as` truncates toward zero (and compiles to one instruction, where
        // `f64::trunc` is a libm call on baseline x86-64).
        x as i64
    }
}

/// Where the boundary points go: column-major indices `x * h + y`, with the
/// column `x` of each kept beside it for [`sorted_cuts`].
struct Boundary {
    h: i64,
    w: i64,
    indices: Vec<u32>,
    columns: Vec<u32>,
}

impl Boundary {
    /// One step of the walk, from `(u0, v0)` to `(u1, v1)` (scaled coordinates).
    /// pycocotools computes `xd = (x + 0.5) / 5 - 0.5` and keeps the step when
    /// `xd` is a whole number, then `ceil(clamp((min(v) + 0.5) / 5 - 0.5, 0, h))`.
    /// Both are `(x - 2) / 5` in exact arithmetic, and the float results are
    /// exact where that is whole and at least 0.2 away from a whole number
    /// otherwise, so the integer forms below give the same answers.
    #[inline]
    fn step(&mut self, u0: i64, v0: i64, u1: i64, v1: i64) {
        if u0 == u1 {
            return;
        }
        let x = if u1 < u0 { u1 } else { u1 - 1 } - 2;
        if x < 0 || x % 5 != 0 || x / 5 > self.w - 1 {
            return;
        }
        self.cut(x / 5, v1.min(v0));
    }

    /// The cut of column `n` (in `0..w`) by a step whose smaller `v` is `v_min`.
    #[inline]
    fn cut(&mut self, n: i64, v_min: i64) {
        let y = ceil_div5(v_min - 2).clamp(0, self.h);
        // At most (w - 1) * h + h = h * w, which fits 32 bits (checked_size).
        self.indices.push((n * self.h + y) as u32);
        self.columns.push(n as u32);
    }
}

/// One edge's walk: `point(d)` for `d` in `0..=len`, its stepping coordinate
/// moving by one per step and the other rounded.
struct Edge {
    steep: bool,
    flip: bool,
    len: i64,
    xs: i64,
    ys: i64,
    slope: f64,
    /// Steps per unit of x on a steep edge (`1 / slope`, for the guesses of
    /// [`Edge::first_near`]: one division per edge rather than per column).
    steps_per_x: f64,
}

impl Edge {
    #[inline]
    fn new(x0: i64, y0: i64, x1: i64, y1: i64) -> Edge {
        let (dx, dy) = ((x1 - x0).abs(), (y1 - y0).abs());
        let steep = dx < dy;
        let flip = (!steep && x0 > x1) || (steep && y0 > y1);
        let (xs, ys, xe, ye) = if flip { (x1, y1, x0, y0) } else { (x0, y0, x1, y1) };
        let (len, slope) = if steep { (dy, (xe - xs) as f64 / dy as f64) } else { (dx, (ye - ys) as f64 / dx as f64) };
        let steps_per_x = if steep { dy as f64 / (xe - xs) as f64 } else { 0.0 };
        Edge { steep, flip, len, xs, ys, slope, steps_per_x }
    }

    /// `(u, v)` of step `d` (scaled x, scaled y).
    #[inline]
    fn point(&self, d: i64) -> (i64, i64) {
        let t = if self.flip { self.len - d } else { d };
        let rounded = |start: i64| c_int(start as f64 + self.slope * t as f64 + 0.5);
        if self.steep {
            (rounded(self.xs), t + self.ys)
        } else {
            (t + self.xs, rounded(self.ys))
        }
    }

    /// `v` of step `d` alone ([`Edge::point`]'s second value).
    #[inline]
    fn v(&self, d: i64) -> i64 {
        let t = if self.flip { self.len - d } else { d };
        if self.steep {
            t + self.ys
        } else {
            c_int(self.ys as f64 + self.slope * t as f64 + 0.5)
        }
    }

    /// The first `d` in `lo..=self.len` where `pred(u(d))` holds, `u` being
    /// monotone in `d` and `pred` switching from false to true at most once.
    fn first(&self, lo: i64, pred: impl Fn(i64) -> bool) -> i64 {
        let (mut lo, mut hi) = (lo, self.len + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.point(mid).0) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    /// [`Edge::first`] for the threshold of column `n` on a steep edge, started
    /// from the real-valued crossing of `x = 5 n + 2.5` and corrected by a few
    /// exact steps; a bisection when the guess is far off.
    #[inline]
    fn first_near(&self, lo: i64, n: i64, pred: impl Fn(i64) -> bool) -> i64 {
        let t = (5.0 * n as f64 + 2.5 - self.xs as f64) * self.steps_per_x;
        let d = if self.flip { self.len as f64 - t } else { t };
        // Any nearby integer will do: the loop below corrects it exactly.
        let mut guess = (d as i64).clamp(lo, self.len + 1);
        for _ in 0..4 {
            if guess > lo && pred(self.point(guess - 1).0) {
                guess -= 1;
            } else if guess <= self.len && !pred(self.point(guess).0) {
                guess += 1;
            } else {
                return guess;
            }
        }
        self.first(lo, pred)
    }

    /// Feeds every step `(d - 1, d)` of the edge that cuts a column `n` in
    /// `0..columns`. Such a step has its smaller end's x (less one when x grows)
    /// at `5 n + 2`: going right it is the first step reaching `u >= 5 n + 3`,
    /// going left the first reaching `u <= 5 n + 2`, and u is monotone along the
    /// edge. So each column is one search (a formula when u moves every step),
    /// and the steps in between, which cut nothing, are never visited.
    fn walk(&self, columns: i64, out: &mut Boundary) {
        if self.len == 0 {
            return;
        }
        let (u_start, u_end) = (self.point(0).0, self.point(self.len).0);
        let increasing = u_start <= u_end;
        // Columns whose threshold the edge passes strictly after its first point.
        let (first_column, last_column) = if increasing {
            (ceil_div5(u_start + 1 - 3), floor_div5(u_end - 3))
        } else {
            (ceil_div5(u_end - 2), floor_div5(u_start - 1 - 2))
        };
        let (first_column, last_column) = (first_column.max(0), last_column.min(columns - 1));
        if first_column > last_column {
            return;
        }
        // The step (d - 1, d) cuts column n (its smaller x is 5 n + 2, u moving by
        // one), so only its rows are needed: `Boundary::step`'s tests all pass.
        let mut emit = |n: i64, d: i64| out.cut(n, self.v(d - 1).min(self.v(d)));
        let mut from = 1;
        // Columns in the order the edge meets them.
        for k in 0..=last_column - first_column {
            let n = if increasing { first_column + k } else { last_column - k };
            let d = match (self.steep, increasing) {
                // u moves by one every step: u(d) = u_start +- d.
                (false, true) => 5 * n + 3 - u_start,
                (false, false) => u_start - (5 * n + 2),
                (true, true) => self.first_near(from, n, |u| u >= 5 * n + 3),
                (true, false) => self.first_near(from, n, |u| u <= 5 * n + 2),
            };
            if (1..=self.len).contains(&d) {
                emit(n, d);
                from = d;
            }
        }
    }
}

/// Added to a dividend to make it non-negative: a multiple of 5 above any
/// scaled coordinate's magnitude (under 2^32), so that [`floor_div5`] and
/// [`ceil_div5`] are one unsigned division by a constant (a multiply and a
/// shift), where `div_euclid` adds sign fix-ups.
const DIV5_OFFSET: i64 = 5 << 40;

/// `floor(a / 5)` for `|a| < 2^40`.
#[inline]
fn floor_div5(a: i64) -> i64 {
    ((a + DIV5_OFFSET) as u64 / 5) as i64 - (DIV5_OFFSET / 5)
}

/// `ceil(a / 5)` for `|a| < 2^40`.
#[inline]
fn ceil_div5(a: i64) -> i64 {
    floor_div5(a + 4)
}

/// Checks the coordinates of one polygon: finite and within
/// [`MAX_ABS_COORDINATE`].
fn check_coordinates(function: &Name, argument: &Name, index: usize, xy: &[f64]) -> Result<()> {
    for (i, &c) in xy.iter().enumerate() {
        ensure!(
            c.is_finite() && c.abs() <= MAX_ABS_COORDINATE,
            FerropsError::value(
                function.clone(),
                argument.clone(),
                format!("finite coordinates within +-{MAX_ABS_COORDINATE:.0}"),
                format!("{c} at coordinate {i} of polygon {index}"),
            )
        );
    }
    Ok(())
}

/// Rasterises one polygon `[x0, y0, x1, y1, ...]` (an odd last value is ignored,
/// as pycocotools does) into a mask of `[h, w]` and hands its run lengths to
/// `then`. The coordinates must have been checked ([`check_coordinates`]).
fn rasterise<T>(xy: &[f64], h: u32, w: u32, then: impl FnOnce(&[u32]) -> T) -> T {
    SCRATCH.with(|scratch| {
        let scratch = &mut *scratch.borrow_mut();
        rasterise_with(scratch, xy, h, w);
        then(&scratch.counts)
    })
}

/// The buffers of one rasterisation, kept per thread: a polygon needs six,
/// and masks come by the thousand.
#[derive(Default)]
struct Scratch {
    vertices: Vec<(i64, i64)>,
    indices: Vec<u32>,
    columns: Vec<u32>,
    next: Vec<usize>,
    sorted: Vec<u32>,
    counts: Vec<u32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Leaves the run lengths of the mask in `scratch.counts`.
fn rasterise_with(scratch: &mut Scratch, xy: &[f64], h: u32, w: u32) {
    let k = xy.len() / 2;
    let scaled = |c: f64| c_int(SCALE * c + 0.5);
    let vertices = &mut scratch.vertices;
    vertices.clear();
    vertices.extend((0..=k).map(|j| (scaled(xy[2 * (j % k)]), scaled(xy[2 * (j % k) + 1]))));
    // Room for every cut: an edge cuts each column it spans once, plus a joining step.
    let capacity: i64 = vertices.windows(2).map(|e| ((e[1].0 - e[0].0).abs() / 5 + 2).min(i64::from(w) + 2)).sum();
    let capacity = capacity as usize;
    let (mut indices, mut columns) = (std::mem::take(&mut scratch.indices), std::mem::take(&mut scratch.columns));
    indices.clear();
    columns.clear();
    indices.reserve(capacity);
    columns.reserve(capacity);
    let mut out = Boundary { h: i64::from(h), w: i64::from(w), indices, columns };
    let columns = i64::from(w);
    let mut last_point: Option<(i64, i64)> = None;
    for e in vertices.windows(2) {
        let ((x0, y0), (x1, y1)) = (e[0], e[1]);
        let edge = Edge::new(x0, y0, x1, y1);
        let first = edge.point(0);
        if let Some(p) = last_point {
            out.step(p.0, p.1, first.0, first.1);
        }
        edge.walk(columns, &mut out);
        last_point = Some(edge.point(edge.len));
    }
    let mut cuts = std::mem::take(&mut scratch.sorted);
    sorted_cuts(&out.indices, &out.columns, &mut scratch.next, &mut cuts);
    (scratch.indices, scratch.columns) = (out.indices, out.columns);
    cuts.push(h * w);
    // Run lengths between the sorted cuts; a zero-length run means a boundary met
    // twice, so the run after it joins the one before (pycocotools' rule, which
    // drops a zero-length last run).
    let counts = &mut scratch.counts;
    counts.clear();
    counts.reserve(cuts.len());
    counts.push(cuts[0]);
    let (mut previous, mut joining) = (cuts[0], false);
    for &cut in &cuts[1..] {
        let length = cut - previous;
        previous = cut;
        if joining {
            *counts.last_mut().expect("counts start with one run") += length;
            joining = false;
        } else if length > 0 {
            counts.push(length);
        } else {
            joining = true;
        }
    }
    scratch.sorted = cuts;
}

/// `indices` in increasing order (into `sorted`; `next` a buffer), by a
/// counting sort on their columns and an
/// insertion sort inside each column (which holds a few cuts: two per crossing
/// of the outline). An index `x * h + y` lies in `[x * h, (x + 1) * h]`, so
/// ordering by column first and index second is ordering by index.
fn sorted_cuts(indices: &[u32], columns: &[u32], next: &mut Vec<usize>, sorted: &mut Vec<u32>) {
    sorted.clear();
    if columns.is_empty() {
        return;
    }
    // One pass, inlined (`Iterator::min`/`max` compile to a call per element here).
    let (mut lo, mut hi) = (u32::MAX, 0);
    for &c in columns {
        (lo, hi) = (lo.min(c), hi.max(c));
    }
    // `next[c]`: where column `lo + c`'s next cut goes; once all are placed it is
    // the end of that column's bucket. One buffer for starts and ends.
    let buckets = (hi - lo) as usize + 1;
    next.clear();
    next.resize(buckets + 1, 0);
    for &c in columns {
        next[(c - lo) as usize + 1] += 1;
    }
    for k in 1..next.len() {
        next[k] += next[k - 1];
    }
    // One more slot for the closing cut `h * w` the caller appends.
    sorted.reserve(indices.len() + 1);
    sorted.resize(indices.len(), 0u32);
    for (&index, &c) in indices.iter().zip(columns) {
        let slot = &mut next[(c - lo) as usize];
        sorted[*slot] = index;
        *slot += 1;
    }
    let mut start = 0;
    for &end in &next[..buckets] {
        let column = &mut sorted[start..end];
        for i in 1..column.len() {
            let mut j = i;
            while j > 0 && column[j - 1] > column[j] {
                column.swap(j - 1, j);
                j -= 1;
            }
        }
        start = end;
    }
}

/// Rasterises polygons into masks of `[h, w]`, one task per polygon. Polygon `i`
/// holds the coordinates `coords[offsets[i]..offsets[i + 1]]`.
pub fn from_polygons(
    function: impl Into<Name>,
    argument: impl Into<Name>,
    coords: &[f64],
    offsets: &[usize],
    h: u64,
    w: u64,
) -> Result<Vec<Rle>> {
    from_polygons_then(function, argument, coords, offsets, h, w, |h, w, counts| Rle { h, w, counts: counts.to_vec() })
}

/// [`from_polygons`] with each mask compressed (MASK-COUNTS) in the task that
/// rasterised it: `(h, w, counts)`.
pub fn from_polygons_compressed(
    function: impl Into<Name>,
    argument: impl Into<Name>,
    coords: &[f64],
    offsets: &[usize],
    h: u64,
    w: u64,
) -> Result<Vec<(u32, u32, Vec<u8>)>> {
    from_polygons_then(function, argument, coords, offsets, h, w, |h, w, counts| (h, w, super::codec::compress(counts)))
}

fn from_polygons_then<T: Send>(
    function: impl Into<Name>,
    argument: impl Into<Name>,
    coords: &[f64],
    offsets: &[usize],
    h: u64,
    w: u64,
    then: impl Fn(u32, u32, &[u32]) -> T + Sync,
) -> Result<Vec<T>> {
    use rayon::prelude::*;
    let (function, argument) = (function.into(), argument.into());
    let (h, w) = super::checked_size(function.clone(), "h, w", h, w)?;
    ensure!(
        !offsets.is_empty() && offsets.windows(2).all(|p| p[0] <= p[1]) && offsets[offsets.len() - 1] <= coords.len(),
        FerropsError::value(function, argument, "increasing polygon offsets within the coordinates", "others")
    );
    let polygons: Vec<&[f64]> = offsets.windows(2).map(|p| &coords[p[0]..p[1]]).collect();
    for (i, xy) in polygons.iter().enumerate() {
        check_coordinates(&function, &argument, i, xy)?;
    }
    let one = |xy: &&[f64]| {
        if xy.len() < 2 {
            then(h, w, &[h * w])
        } else {
            rasterise(xy, h, w, |counts| then(h, w, counts))
        }
    };
    // A few parts (an annotation's) cost less than a parallel task each.
    if polygons.len() < 8 {
        return Ok(polygons.iter().map(one).collect());
    }
    Ok(polygons.par_iter().map(one).collect())
}

/// Rasterises `[x, y, width, height]` boxes (`boxes` holds 4 values per box) as
/// the polygons of their corners, as pycocotools' `rleFrBbox`.
pub fn from_boxes(
    function: impl Into<Name>,
    argument: impl Into<Name>,
    boxes: &[f64],
    h: u64,
    w: u64,
) -> Result<Vec<Rle>> {
    let corners: Vec<f64> = boxes
        .chunks_exact(4)
        .flat_map(|b| {
            let (xs, ys) = (b[0], b[1]);
            let (xe, ye) = (xs + b[2], ys + b[3]);
            [xs, ys, xs, ye, xe, ye, xe, ys]
        })
        .collect();
    let offsets: Vec<usize> = (0..=boxes.len() / 4).map(|i| 8 * i).collect();
    from_polygons(function, argument, &corners, &offsets, h, w)
}

#[cfg(test)]
mod tests {
    use super::{ceil_div5, floor_div5};

    #[test]
    fn division_by_five_matches_euclidean_division_over_the_coordinate_range() {
        // Scaled coordinates and the values derived from them stay within
        // +-(2^31 + a few); well beyond that is checked too.
        let edges = [0i64, 1 << 31, (1 << 31) + 7, 1 << 33, 5 << 33, (1 << 39) - 3];
        let values = (-1000..=1000).chain(edges.iter().flat_map(|&e| (-12..=12).flat_map(move |d| [e + d, -e + d])));
        for a in values {
            assert_eq!(floor_div5(a), a.div_euclid(5), "floor({a} / 5)");
            assert_eq!(ceil_div5(a), -(-a).div_euclid(5), "ceil({a} / 5)");
        }
    }
}
