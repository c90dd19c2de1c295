//! The keypoints of a dataset's records (`keypoints`, `num_keypoints`), kept
//! beside the other columns for keypoint evaluation (OKS), and the box
//! pycocotools' `loadRes` derives from a keypoint result.

use super::checks::Origin;
use crate::error::Result;

/// `num_keypoints` of a record that has none.
pub const NO_COUNT: f64 = f64::NAN;

/// The records' keypoints: record `j`'s list as scanned (`[x0, y0, v0, x1,
/// ...]`, `None` where absent) and its `num_keypoints` (NaN where absent). The
/// lists are moved here from the parsed records, never copied: the keypoint
/// values are the bulk of a keypoint file, and copying them into one column
/// (twice: per piece, then all pieces) was a fifth of loading it. Both columns
/// are empty when no record has either key (bbox-only data pays nothing).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Keypoints {
    lists: Vec<Option<Vec<f64>>>,
    num_keypoints: Vec<f64>,
}

/// [`Keypoints`] as one CSR column: record `j` holds `values[ends[j - 1]..ends[j]]`
/// where `present[j]`.
pub struct KeypointsCsr {
    pub values: Vec<f64>,
    pub ends: Vec<usize>,
    pub present: Vec<bool>,
}

impl Keypoints {
    /// Whether any record has keypoints or a keypoint count.
    pub fn any(&self) -> bool {
        !self.lists.is_empty()
    }

    /// Record `j`'s keypoints; `None` where it has none.
    #[inline]
    pub fn get(&self, j: usize) -> Option<&[f64]> {
        self.lists.get(j)?.as_deref()
    }

    /// Record `j`'s `num_keypoints` (NaN where absent).
    pub fn count(&self, j: usize) -> f64 {
        self.num_keypoints.get(j).copied().unwrap_or(NO_COUNT)
    }

    /// The keypoints as one CSR column (what the Python view reads).
    pub fn csr(&self) -> KeypointsCsr {
        let mut values = Vec::with_capacity(self.lists.iter().flatten().map(Vec::len).sum());
        let mut ends = Vec::with_capacity(self.lists.len());
        for list in &self.lists {
            values.extend_from_slice(list.as_deref().unwrap_or_default());
            ends.push(values.len());
        }
        KeypointsCsr { values, ends, present: self.lists.iter().map(Option::is_some).collect() }
    }

    /// Appends record `row` (this part's count of records before it); the
    /// records before the first with keypoints are filled in only then.
    pub(super) fn push(&mut self, row: usize, keypoints: Option<Vec<f64>>, num_keypoints: Option<f64>) {
        if self.lists.is_empty() {
            if keypoints.is_none() && num_keypoints.is_none() {
                return;
            }
            self.pad_to(row);
        }
        self.lists.push(keypoints);
        self.num_keypoints.push(num_keypoints.unwrap_or(NO_COUNT));
    }

    /// Room for `rows` more records (the columns then grow without copies).
    pub(super) fn reserve(&mut self, rows: usize) {
        self.lists.reserve(rows);
        self.num_keypoints.reserve(rows);
    }

    /// Records without keypoints up to `rows` records.
    fn pad_to(&mut self, rows: usize) {
        self.lists.resize(rows, None);
        self.num_keypoints.resize(rows, NO_COUNT);
    }

    /// The parts one after the other, each of `lengths[p]` records.
    pub(super) fn concat(parts: Vec<Keypoints>, lengths: &[usize]) -> Keypoints {
        if parts.iter().all(|p| !p.any()) {
            return Keypoints::default();
        }
        let mut all = Keypoints::default();
        all.reserve(lengths.iter().sum());
        for (part, &len) in parts.into_iter().zip(lengths) {
            let rows = all.lists.len();
            all.lists.extend(part.lists);
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
        let csr = all.csr();
        assert_eq!(
            (csr.values, csr.ends, csr.present),
            (vec![1.0, 2.0, 2.0], vec![0, 3, 3, 3], vec![false, true, false, false])
        );
    }

    #[test]
    fn keypoint_box_spans_every_point() {
        let (b, area) = keypoint_box(&[3.0, 4.0, 2.0, 0.0, 0.0, 0.0, 5.0, 10.0, 1.0]);
        assert_eq!(b, [0.0, 0.0, 5.0, 10.0]);
        assert_eq!(area, 50.0);
    }
}
