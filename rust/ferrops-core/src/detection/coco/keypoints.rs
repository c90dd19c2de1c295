//! The keypoints of a dataset's records (`keypoints`, `num_keypoints`), kept
//! beside the other columns for keypoint evaluation (OKS), and the box
//! pycocotools' `loadRes` derives from a keypoint result.

use super::checks::Origin;
use crate::error::Result;

/// `num_keypoints` of a record that has none.
pub const NO_COUNT: f64 = f64::NAN;

/// The records' keypoints, CSR: record `j` holds `values[ends[j - 1]..ends[j]]`
/// (`[x0, y0, v0, x1, ...]`) and `num_keypoints[j]` (NaN where absent). Both
/// lists are empty when no record has either key (bbox-only data pays nothing).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Keypoints {
    pub values: Vec<f64>,
    pub ends: Vec<usize>,
    pub num_keypoints: Vec<f64>,
    /// Per record, whether it has a `keypoints` list at all.
    pub present: Vec<bool>,
}

impl Keypoints {
    /// Whether any record has keypoints or a keypoint count.
    pub fn any(&self) -> bool {
        !self.ends.is_empty()
    }

    /// Record `j`'s keypoints; `None` where it has none.
    pub fn get(&self, j: usize) -> Option<&[f64]> {
        if !self.present.get(j).copied().unwrap_or(false) {
            return None;
        }
        let start = if j == 0 { 0 } else { self.ends[j - 1] };
        Some(&self.values[start..self.ends[j]])
    }

    /// Record `j`'s `num_keypoints` (NaN where absent).
    pub fn count(&self, j: usize) -> f64 {
        self.num_keypoints.get(j).copied().unwrap_or(NO_COUNT)
    }

    /// Appends record `row` (this part's count of records before it); the
    /// records before the first with keypoints are filled in only then.
    pub(super) fn push(&mut self, row: usize, keypoints: Option<Vec<f64>>, num_keypoints: Option<f64>) {
        if self.ends.is_empty() {
            if keypoints.is_none() && num_keypoints.is_none() {
                return;
            }
            self.pad_to(row);
        }
        self.present.push(keypoints.is_some());
        if let Some(k) = keypoints {
            self.values.extend_from_slice(&k);
        }
        self.ends.push(self.values.len());
        self.num_keypoints.push(num_keypoints.unwrap_or(NO_COUNT));
    }

    /// Room for `values` more numbers of `rows` more records (the columns
    /// then grow without copies).
    pub(super) fn reserve(&mut self, values: usize, rows: usize) {
        self.values.reserve(values);
        self.ends.reserve(rows);
        self.present.reserve(rows);
        self.num_keypoints.reserve(rows);
    }

    /// Records without keypoints up to `rows` records.
    fn pad_to(&mut self, rows: usize) {
        let end = self.values.len();
        self.ends.resize(rows, end);
        self.present.resize(rows, false);
        self.num_keypoints.resize(rows, NO_COUNT);
    }

    /// The parts one after the other, each of `lengths[p]` records.
    pub(super) fn concat(parts: Vec<Keypoints>, lengths: &[usize]) -> Keypoints {
        if parts.iter().all(|p| !p.any()) {
            return Keypoints::default();
        }
        let rows: usize = lengths.iter().sum();
        let mut all = Keypoints::default();
        all.reserve(parts.iter().map(|p| p.values.len()).sum(), rows);
        for (part, &len) in parts.into_iter().zip(lengths) {
            let (base, rows) = (all.values.len(), all.ends.len());
            all.values.extend_from_slice(&part.values);
            all.ends.extend(part.ends.iter().map(|e| e + base));
            all.present.extend_from_slice(&part.present);
            all.num_keypoints.extend_from_slice(&part.num_keypoints);
            all.pad_to(rows + len);
        }
        all
    }
}

/// A `keypoints` list must hold `(x, y, v)` triples of finite numbers.
pub(super) fn check_keypoints(origin: &Origin, expected: &str, record: &dyn Fn() -> String, k: &[f64]) -> Result<()> {
    if !k.len().is_multiple_of(3) {
        return Err(origin
            .error(expected, format!("{} has 'keypoints' of {} numbers, not (x, y, v) triples", record(), k.len())));
    }
    if k.iter().any(|v| !v.is_finite()) {
        return Err(origin.error(expected, format!("{} has non-finite 'keypoints'", record())));
    }
    Ok(())
}

/// pycocotools' `loadRes` for keypoint results: the box spanned by every
/// keypoint (visible or not), `[x0, y0, x1 - x0, y1 - y0]`, and its area
/// `(x1 - x0) * (y1 - y0)`.
pub(super) fn keypoint_box(k: &[f64]) -> ([f64; 4], f64) {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for p in k.chunks_exact(3) {
        (x0, x1) = (x0.min(p[0]), x1.max(p[0]));
        (y0, y1) = (y0.min(p[1]), y1.max(p[1]));
    }
    ([x0, y0, x1 - x0, y1 - y0], (x1 - x0) * (y1 - y0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_concatenate_with_their_records_without_keypoints() {
        let mut a = Keypoints::default();
        a.push(0, None, None);
        a.push(1, Some(vec![1.0, 2.0, 2.0]), Some(1.0));
        let mut b = Keypoints::default();
        b.push(0, None, None);
        let mut c = Keypoints::default();
        c.push(0, None, Some(0.0));
        let all = Keypoints::concat(vec![a, b, c], &[2, 1, 1]);
        assert_eq!(all.get(0), None);
        assert_eq!(all.get(1), Some(&[1.0, 2.0, 2.0][..]));
        assert_eq!(all.get(2), None);
        assert_eq!(all.get(3), None);
        assert_eq!(all.count(3), 0.0);
        assert!(all.count(0).is_nan());
        assert!(!Keypoints::concat(vec![Keypoints::default()], &[5]).any());
    }

    #[test]
    fn keypoint_box_spans_every_point() {
        let (b, area) = keypoint_box(&[3.0, 4.0, 2.0, 0.0, 0.0, 0.0, 5.0, 10.0, 1.0]);
        assert_eq!(b, [0.0, 0.0, 5.0, 10.0]);
        assert_eq!(area, 50.0);
    }
}
