//! Weighted boxes fusion (WBF, Solovyev et al. 2021), number for number the
//! `ensemble_boxes` package's `weighted_boxes_fusion`: the clustering walk and
//! the confidence rescaling. The caller (the Python layer) does the per-model
//! checks and clipping and both score sorts, with NumPy's own `argsort` so that
//! ties fall exactly as in the package.
//!
//! Rows are `[label, score * weight, weight, model, x1, y1, x2, y2]` in float64.
//! The package builds a fused box in a float32 array, so a cluster of two or more
//! boxes has its label, score, weight and coordinates rounded to float32 (each
//! coordinate accumulator after every addition, as NumPy's in-place `+=` does);
//! a cluster of one box keeps the float64 row. Both are reproduced here.

use crate::ensure;
use crate::error::{FerropsError, Result};

/// How a cluster's confidence is formed (the package's `conf_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfType {
    Avg,
    Max,
    BoxAndModelAvg,
    AbsentModelAwareAvg,
}

impl ConfType {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "avg" => Ok(ConfType::Avg),
            "max" => Ok(ConfType::Max),
            "box_and_model_avg" => Ok(ConfType::BoxAndModelAvg),
            "absent_model_aware_avg" => Ok(ConfType::AbsentModelAwareAvg),
            other => Err(FerropsError::value(
                "weighted_boxes_fusion",
                "conf_type",
                "one of 'avg', 'max', 'box_and_model_avg', 'absent_model_aware_avg'",
                format!("'{other}'"),
            )),
        }
    }
}

/// NumPy's float64 `sum` (its pairwise summation: 8 running sums per block of
/// up to 128 values, halves above that), so that sums of weights round as there.
pub fn numpy_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        a.iter().fold(0.0, |s, &v| s + v)
    } else if n <= 128 {
        let mut r = [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]];
        let whole = n - n % 8;
        for block in a[8..whole].chunks_exact(8) {
            for (acc, &v) in r.iter_mut().zip(block) {
                *acc += v;
            }
        }
        let mut s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &a[whole..] {
            s += v;
        }
        s
    } else {
        let mut half = n / 2;
        half -= half % 8;
        numpy_sum(&a[..half]) + numpy_sum(&a[half..])
    }
}

/// One cluster: its member rows and the running sums the package's
/// `get_weighted_box` recomputes (identical prefix by prefix).
struct Cluster {
    members: Vec<usize>,
    coordinates: [f32; 4],
    confidence: f64,
    weight: f64,
    max_confidence: f64,
    /// The row the matching compares against: the member's own while alone, the
    /// float32 fused box after.
    fused: [f64; 8],
}

impl Cluster {
    fn new(index: usize, row: &[f64]) -> Cluster {
        let mut cluster = Cluster {
            members: Vec::new(),
            coordinates: [0.0; 4],
            confidence: 0.0,
            weight: 0.0,
            max_confidence: f64::NEG_INFINITY,
            fused: [0.0; 8],
        };
        cluster.add(index, row);
        cluster.fused.copy_from_slice(row);
        cluster
    }

    fn add(&mut self, index: usize, row: &[f64]) {
        self.members.push(index);
        for (acc, &v) in self.coordinates.iter_mut().zip(&row[4..8]) {
            *acc = (f64::from(*acc) + row[1] * v) as f32;
        }
        self.confidence += row[1];
        self.weight += row[2];
        self.max_confidence = self.max_confidence.max(row[1]);
    }

    fn refuse(&mut self, label: f64, conf: ConfType) {
        let score = match conf {
            ConfType::Max => self.max_confidence,
            _ => self.confidence / self.members.len() as f64,
        };
        self.fused[0] = f64::from(label as f32);
        self.fused[1] = f64::from(score as f32);
        self.fused[2] = f64::from(self.weight as f32);
        self.fused[3] = -1.0;
        for (slot, &acc) in self.fused[4..].iter_mut().zip(&self.coordinates) {
            *slot = f64::from((f64::from(acc) / self.confidence) as f32);
        }
    }
}

/// The package's `bb_iou_array` for one pair, in its operation order.
fn iou(a: &[f64], b: &[f64]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area_a = (a[2] - a[0]) * (a[3] - a[1]);
    let area_b = (b[2] - b[0]) * (b[3] - b[1]);
    inter / (area_a + area_b - inter)
}

/// The cluster `row` joins: NumPy's `argmax` over the IoUs (first maximum, a
/// NaN wins), -1 for another label, and a match only above `iou_thr`.
fn best_match(clusters: &[Cluster], row: &[f64], iou_thr: f64) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (k, c) in clusters.iter().enumerate() {
        let o = if c.fused[0] != row[0] { -1.0 } else { iou(&c.fused[4..], &row[4..]) };
        if o.is_nan() {
            return Some(k);
        }
        if best.is_none_or(|(_, b)| o > b) {
            best = Some((k, o));
        }
    }
    best.filter(|&(_, o)| o > iou_thr).map(|(k, _)| k)
}

/// WBF over `rows` (`[K, 8]`, see the module doc), whose label groups end at
/// `group_ends` and are each sorted by descending score. `weights` has one
/// entry per model. Returns the fused rows `[C, 8]`, group by group, clusters in
/// creation order, scores rescaled (the caller sorts them).
pub fn weighted_boxes_fusion(
    rows: &[f64],
    group_ends: &[usize],
    weights: &[f64],
    iou_thr: f64,
    conf: ConfType,
    allows_overflow: bool,
) -> Result<Vec<f64>> {
    const NAME: &str = "weighted_boxes_fusion";
    ensure!(
        rows.len().is_multiple_of(8),
        FerropsError::value(NAME, "rows", "a [K, 8] array", format!("{} values", rows.len()))
    );
    let k = rows.len() / 8;
    ensure!(
        group_ends.windows(2).all(|w| w[0] <= w[1]) && group_ends.last().is_none_or(|&e| e == k),
        FerropsError::value(NAME, "group_ends", format!("ascending ends up to {k}"), format!("{group_ends:?}"))
    );
    let models = weights.len();
    ensure!(
        (0..k).all(|i| (rows[8 * i + 3] as usize) < models && rows[8 * i + 3] >= 0.0),
        FerropsError::value(NAME, "rows", format!("model indices below {models}"), "an index out of range")
    );
    let weight_sum = numpy_sum(weights);
    let weight_max = weights.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let row = |i: usize| &rows[8 * i..8 * i + 8];
    let mut out = Vec::new();
    let mut start = 0;
    for &end in group_ends {
        let mut clusters: Vec<Cluster> = Vec::new();
        for i in start..end {
            let r = row(i);
            match best_match(&clusters, r, iou_thr) {
                Some(c) => {
                    let label = row(clusters[c].members[0])[0];
                    clusters[c].add(i, r);
                    clusters[c].refuse(label, conf);
                }
                None => clusters.push(Cluster::new(i, r)),
            }
        }
        for c in &clusters {
            let mut fused = c.fused;
            let count = c.members.len() as f64;
            fused[1] = match conf {
                ConfType::BoxAndModelAvg => {
                    let by_model = fused[1] * count / fused[2];
                    let present = present_models(&c.members, rows, models);
                    let first_weights: Vec<f64> = present.iter().map(|&(_, first)| row(first)[2]).collect();
                    by_model * numpy_sum(&first_weights) / weight_sum
                }
                ConfType::AbsentModelAwareAvg => {
                    let present = present_models(&c.members, rows, models);
                    let absent: Vec<f64> =
                        (0..models).filter(|m| present.iter().all(|&(p, _)| p != *m)).map(|m| weights[m]).collect();
                    fused[1] * count / (fused[2] + numpy_sum(&absent))
                }
                ConfType::Max => fused[1] / weight_max,
                ConfType::Avg if !allows_overflow => fused[1] * (models.min(c.members.len()) as f64) / weight_sum,
                ConfType::Avg => fused[1] * count / weight_sum,
            };
            out.extend_from_slice(&fused);
        }
        start = end;
    }
    Ok(out)
}

/// Non-maximum weighted fusion (NMW, Zhou et al. 2017), number for number the
/// package's `non_maximum_weighted`, over the same rows as
/// [`weighted_boxes_fusion`] (weights already divided by their maximum). A box
/// joins the cluster whose *first* box it overlaps most, above `iou_thr` (the
/// first such cluster on ties); a cluster's box is the mean of its members
/// weighted by `score * IoU with the first box`, accumulated in float32 as the
/// package's array is. Returns `[C, 6]` float32 rows `[label, score, x1, y1, x2,
/// y2]`, group by group, clusters in creation order (the caller sorts them).
pub fn non_maximum_weighted(rows: &[f64], group_ends: &[usize], iou_thr: f64) -> Result<Vec<f32>> {
    const NAME: &str = "non_maximum_weighted";
    ensure!(
        rows.len().is_multiple_of(8),
        FerropsError::value(NAME, "rows", "a [K, 8] array", format!("{} values", rows.len()))
    );
    let k = rows.len() / 8;
    ensure!(
        group_ends.windows(2).all(|w| w[0] <= w[1]) && group_ends.last().is_none_or(|&e| e == k),
        FerropsError::value(NAME, "group_ends", format!("ascending ends up to {k}"), format!("{group_ends:?}"))
    );
    let row = |i: usize| &rows[8 * i..8 * i + 8];
    let mut out = Vec::new();
    let mut start = 0;
    for &end in group_ends {
        // Each cluster's members, the first one its main box.
        let mut clusters: Vec<Vec<usize>> = Vec::new();
        for i in start..end {
            let r = row(i);
            let (mut best, mut best_iou) = (None, iou_thr);
            for (c, members) in clusters.iter().enumerate() {
                let main = row(members[0]);
                if main[0] != r[0] {
                    continue;
                }
                let o = iou(&main[4..], &r[4..]);
                if o > best_iou {
                    (best, best_iou) = (Some(c), o);
                }
            }
            match best {
                Some(c) => clusters[c].push(i),
                None => clusters.push(vec![i]),
            }
        }
        for members in &clusters {
            let main = row(members[0]);
            let mut coordinates = [0.0f32; 4];
            let mut confidence = 0.0f64;
            for &m in members {
                let b = row(m);
                let weight = b[1] * iou(&b[4..], &main[4..]);
                for (acc, &v) in coordinates.iter_mut().zip(&b[4..8]) {
                    *acc = (f64::from(*acc) + weight * v) as f32;
                }
                confidence += weight;
            }
            out.extend_from_slice(&[main[0] as f32, main[1] as f32]);
            out.extend(coordinates.iter().map(|&acc| (f64::from(acc) / confidence) as f32));
        }
        start = end;
    }
    Ok(out)
}

/// The models present in a cluster, ascending, each with its first member row
/// (NumPy's `unique(..., return_index=True)`).
fn present_models(members: &[usize], rows: &[f64], models: usize) -> Vec<(usize, usize)> {
    let mut first = vec![usize::MAX; models];
    for &i in members {
        let m = rows[8 * i + 3] as usize;
        if first[m] == usize::MAX {
            first[m] = i;
        }
    }
    first.into_iter().enumerate().filter(|&(_, i)| i != usize::MAX).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_sum_blocks() {
        let a: Vec<f64> = (0..300).map(|i| 0.1 * i as f64).collect();
        let direct: f64 = a.iter().sum();
        assert!((numpy_sum(&a) - direct).abs() < 1e-9);
        assert_eq!(numpy_sum(&[1.0, 2.0]), 3.0);
    }

    #[test]
    fn two_overlapping_boxes_fuse() {
        let rows = [
            0.0, 0.9, 1.0, 0.0, 0.1, 0.1, 0.5, 0.5, //
            0.0, 0.6, 1.0, 1.0, 0.12, 0.1, 0.5, 0.52, //
            0.0, 0.5, 1.0, 1.0, 0.7, 0.7, 0.9, 0.9,
        ];
        let out = weighted_boxes_fusion(&rows, &[3], &[1.0, 1.0], 0.55, ConfType::Avg, false).unwrap();
        assert_eq!(out.len(), 16);
        assert_eq!(out[1], f64::from(0.75f32) * 2.0 / 2.0);
        assert_eq!(out[8 + 1], 0.5 * 1.0 / 2.0);
        let x1 = ((0.9 * 0.1) as f32 as f64 + 0.6 * 0.12) as f32 as f64 / 1.5;
        assert_eq!(out[4], f64::from(x1 as f32));
    }
}
