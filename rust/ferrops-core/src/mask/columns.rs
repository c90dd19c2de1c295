//! Masks laid out by column for IoU (MASK-IOU): the intersection of two masks
//! is summed column by column over the columns both cover.
//!
//! Instance masks (polygons, blobs) mostly hold one run of 1s per column, so
//! each column of a mask is kept as the rows `[start, end)` of that run, in two
//! flat arrays a pair of masks reads side by side; the column intersection is
//! then `max(min(end) - max(start), 0)`, a branch-free loop the compiler
//! vectorises. A column with several runs is marked (`start` [`SEVERAL`],
//! `end` 0, which makes the loop count 0 for it whatever the other mask holds)
//! and its runs are kept apart, merged exactly for the pairs that reach it.
//! Integer counts either way: the result is the same whatever the layout.

use crate::simd::{self, SimdKernel};

/// The `start` of a column holding several runs.
const SEVERAL: u32 = u32::MAX;

/// Where one mask's columns lie in the shared arrays.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    /// The first column holding a 1 (0 for an empty mask).
    first_column: u32,
    /// Columns from `first_column` to the last holding a 1.
    width: u32,
    /// Index of its first column in `start` / `end`.
    at: u32,
    /// Its columns of several runs: `several[several_at..several_at + several_len]`.
    several_at: u32,
    several_len: u32,
}

/// A column of several runs: `runs[runs_at..runs_at + runs_len]`, rows `[start, end)`.
#[derive(Debug, Clone, Copy)]
struct Several {
    column: u32,
    runs_at: u32,
    runs_len: u32,
}

/// The column layout of a list of masks, in reusable buffers.
#[derive(Debug, Default)]
pub struct ColumnRuns {
    spans: Vec<Span>,
    start: Vec<u32>,
    end: Vec<u32>,
    several: Vec<Several>,
    runs: Vec<(u32, u32)>,
}

impl ColumnRuns {
    /// Forgets every mask (keeping the buffers).
    pub fn clear(&mut self) {
        self.spans.clear();
        self.start.clear();
        self.end.clear();
        self.several.clear();
        self.runs.clear();
    }

    /// How many masks.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Appends a mask of `h` rows given by its run lengths (a 0-run first,
    /// column-major, summing to at most `h * w`; checked by whoever built it).
    pub fn push(&mut self, h: u32, mut counts: impl Iterator<Item = u32>) {
        let mut span = Span {
            first_column: 0,
            width: 0,
            at: self.start.len() as u32,
            several_at: self.several.len() as u32,
            several_len: 0,
        };
        if h == 0 {
            self.spans.push(span);
            return;
        }
        // The position as (column, row), moved run by run: a division only for
        // a run that reaches past the next column (most end in theirs or the next).
        let (mut column, mut row) = (0u32, 0u32);
        let h64 = u64::from(h);
        let advance = |column: &mut u32, row: &mut u32, by: u32| {
            let total = u64::from(*row) + u64::from(by);
            if total < h64 {
                *row = total as u32;
            } else if total < 2 * h64 {
                (*column, *row) = (*column + 1, (total - h64) as u32);
            } else {
                *column += (total / h64) as u32;
                *row = (total % h64) as u32;
            }
        };
        while let Some(zeros) = counts.next() {
            advance(&mut column, &mut row, zeros);
            let Some(ones) = counts.next() else { break };
            // The run's pieces, one per column it crosses.
            let mut left = ones;
            while left > 0 {
                let piece = left.min(h - row);
                self.add_piece(&mut span, column, row, row + piece);
                left -= piece;
                if left > 0 {
                    (column, row) = (column + 1, 0);
                } else {
                    advance(&mut column, &mut row, piece);
                }
            }
        }
        self.spans.push(span);
    }

    /// Records rows `[row_start, row_end)` of `column` (columns come in
    /// increasing order, pieces of a column top to bottom).
    #[inline(always)]
    fn add_piece(&mut self, span: &mut Span, column: u32, row_start: u32, row_end: u32) {
        if span.width == 0 {
            span.first_column = column;
        }
        let index = (column - span.first_column) as usize;
        if index == span.width as usize {
            // The common case: the next column.
            self.start.push(row_start);
            self.end.push(row_end);
            span.width += 1;
            return;
        }
        if index < span.width as usize {
            // A second (or later) run in this column: the column moves to `several`.
            let slot = span.at as usize + index;
            let last = self.several.last_mut().filter(|s| span.several_len > 0 && s.column == column);
            match last {
                Some(several) => several.runs_len += 1,
                None => {
                    self.several.push(Several { column, runs_at: self.runs.len() as u32, runs_len: 2 });
                    span.several_len += 1;
                    self.runs.push((self.start[slot], self.end[slot]));
                    (self.start[slot], self.end[slot]) = (SEVERAL, 0);
                }
            }
            self.runs.push((row_start, row_end));
            return;
        }
        // Columns without 1s up to this one, then this one.
        let empty = index - span.width as usize;
        self.start.extend(std::iter::repeat_n(0, empty));
        self.end.extend(std::iter::repeat_n(0, empty));
        self.start.push(row_start);
        self.end.push(row_end);
        span.width = index as u32 + 1;
    }

    /// The row intervals of the mask `span` places in `column`: those of
    /// `several` when given (that column's entry), else its single run if any
    /// (written to `one`).
    fn column_runs<'a>(
        &'a self,
        span: &Span,
        several: Option<&Several>,
        column: u32,
        one: &'a mut [(u32, u32); 1],
    ) -> &'a [(u32, u32)] {
        if let Some(s) = several {
            return &self.runs[s.runs_at as usize..(s.runs_at + s.runs_len) as usize];
        }
        if column < span.first_column || column >= span.first_column + span.width {
            return &[];
        }
        let slot = (span.at + column - span.first_column) as usize;
        one[0] = (self.start[slot], self.end[slot]);
        &one[..usize::from(one[0].0 < one[0].1)]
    }

    fn several_of(&self, span: &Span) -> &[Several] {
        &self.several[span.several_at as usize..(span.several_at + span.several_len) as usize]
    }

    /// Pixels set in both mask `i` of `self` and mask `j` of `other` (masks of
    /// the same height).
    #[inline]
    pub fn intersection(&self, i: usize, other: &ColumnRuns, j: usize) -> u64 {
        let (a, b) = (self.spans[i], other.spans[j]);
        let c0 = a.first_column.max(b.first_column);
        let c1 = (a.first_column + a.width).min(b.first_column + b.width);
        if c0 >= c1 || a.width == 0 || b.width == 0 {
            return 0;
        }
        let range = |s: &Span| (s.at + c0 - s.first_column) as usize..(s.at + c1 - s.first_column) as usize;
        let (ra, rb) = (range(&a), range(&b));
        let single = simd::dispatch(SingleRunColumns {
            start_a: &self.start[ra.clone()],
            end_a: &self.end[ra],
            start_b: &other.start[rb.clone()],
            end_b: &other.end[rb],
        });
        let mut total = u64::from(single);
        // Columns of several runs in either mask, in column order.
        let in_range = |list: &[Several]| {
            let from = list.partition_point(|s| s.column < c0);
            let to = list.partition_point(|s| s.column < c1);
            (from, to)
        };
        let (sa, sb) = (self.several_of(&a), other.several_of(&b));
        let ((mut p, pe), (mut q, qe)) = (in_range(sa), in_range(sb));
        let (mut one_a, mut one_b) = ([(0, 0)], [(0, 0)]);
        while p < pe || q < qe {
            let ca = if p < pe { sa[p].column } else { u32::MAX };
            let cb = if q < qe { sb[q].column } else { u32::MAX };
            let column = ca.min(cb);
            let several_a = (ca == column).then(|| &sa[p]);
            let several_b = (cb == column).then(|| &sb[q]);
            p += usize::from(several_a.is_some());
            q += usize::from(several_b.is_some());
            let runs_a = self.column_runs(&a, several_a, column, &mut one_a);
            let runs_b = other.column_runs(&b, several_b, column, &mut one_b);
            total += merged_intersection(runs_a, runs_b);
        }
        total
    }
}

/// The rows two sorted lists of disjoint row intervals share.
fn merged_intersection(a: &[(u32, u32)], b: &[(u32, u32)]) -> u64 {
    let (mut i, mut j, mut total) = (0, 0, 0u64);
    while i < a.len() && j < b.len() {
        let (ra, rb) = (a[i], b[j]);
        let (lo, hi) = (ra.0.max(rb.0), ra.1.min(rb.1));
        total += u64::from(hi.saturating_sub(lo));
        if ra.1 <= rb.1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    total
}

/// Sum over columns of the overlap of one run each: rows `[max(start), min(end))`.
struct SingleRunColumns<'a> {
    start_a: &'a [u32],
    end_a: &'a [u32],
    start_b: &'a [u32],
    end_b: &'a [u32],
}

impl SimdKernel for SingleRunColumns<'_> {
    type Output = u32;
    #[inline(always)]
    fn run(self) -> u32 {
        // A mask's total is below 2^32 (h * w is), so the u32 lanes cannot wrap.
        let mut total = 0u32;
        for (((&sa, &ea), &sb), &eb) in self.start_a.iter().zip(self.end_a).zip(self.start_b).zip(self.end_b) {
            let (lo, hi) = (sa.max(sb), ea.min(eb));
            total = total.wrapping_add(hi.max(lo) - lo);
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::rle;
    use crate::simd::{detected, set_level, SimdLevel};
    use crate::test_rng::Lcg;

    /// Random masks with several runs per column, runs across columns, empty
    /// columns and masks, wide enough for whole vectors: the column
    /// intersection is the dense count at every SIMD level.
    #[test]
    fn intersection_is_the_dense_count() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let mut rng = Lcg::new(11);
        for (h, w) in [(7u32, 9u32), (1, 12), (12, 1), (5, 5), (3, 70)] {
            let pixels = (h * w) as usize;
            let dense: Vec<Vec<u8>> = (0..30)
                .map(|k| {
                    let density = [0, 1, 3, 6, 8][k % 5];
                    (0..pixels).map(|_| u8::from(rng.below(8) < density)).collect()
                })
                .collect();
            let mut columns = ColumnRuns::default();
            for mask in &dense {
                let r = rle::encode(mask, u64::from(h), u64::from(w), 1, rle::RunRule::ValueChange).unwrap().remove(0);
                columns.push(h, r.counts.iter().copied());
            }
            for level in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
                set_level(level);
                for (i, a) in dense.iter().enumerate() {
                    for (j, b) in dense.iter().enumerate() {
                        let expected = a.iter().zip(b).filter(|(x, y)| **x == 1 && **y == 1).count() as u64;
                        assert_eq!(columns.intersection(i, &columns, j), expected, "{h}x{w} {i} {j} {level:?}");
                    }
                }
            }
        }
        set_level(detected());
    }
}
