//! Masks prepared once for many IoUs (`segm` evaluation, SPEC DET-COCO-SEGM):
//! each keeps its size, its box (pycocotools' gate), its area and its runs in
//! pycocotools' compressed form (about 2 bytes a run: the masks of a dataset
//! stay small). The masks an IoU matrix needs are decoded by column into a
//! reused buffer ([`Decoded`], a [`ColumnRuns`]); an IoU then sums the columns
//! both masks cover, never a dense decode.

use super::codec::{compress, for_each_run};
use super::columns::ColumnRuns;
use super::rle::{area, to_bbox};
use super::Rle;
use crate::boxes::geometry::coco_iou;

/// One mask as the IoU reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedMask {
    pub h: u32,
    pub w: u32,
    /// pycocotools' `toBbox` of the mask.
    pub bbox: [f64; 4],
    /// pycocotools' `area` of the mask.
    pub area: u32,
    /// The runs, compressed (MASK-COUNTS); checked when the mask was built.
    counts: Box<[u8]>,
}

impl PreparedMask {
    pub fn new(rle: &Rle) -> PreparedMask {
        PreparedMask::with_compressed(rle, compress(&rle.counts))
    }

    /// The mask of `rle`, whose compressed string the caller has (`rle` was
    /// decompressed from it).
    pub fn with_compressed(rle: &Rle, compressed: Vec<u8>) -> PreparedMask {
        // Runs of positive length (the first aside) have pycocotools' box from
        // their 1-runs; zero-length runs take part in its box, so such masks go
        // through `to_bbox` itself.
        let bbox = if rle.h > 0 && rle.counts.iter().skip(1).all(|&c| c > 0) {
            box_of_runs(&rle.counts, rle.h)
        } else {
            to_bbox(rle)
        };
        PreparedMask { h: rle.h, w: rle.w, bbox, area: area(rle), counts: compressed.into_boxed_slice() }
    }

    /// The mask of a compressed string of size `[h, w]` (taken as its
    /// compressed form), checked and measured in one pass without decoding
    /// it; `Err` gives the string back where it needs [`decompress`] (a fault,
    /// whose message that gives) or [`to_bbox`] (a run of 0 length after the
    /// first, which counts in pycocotools' box).
    ///
    /// [`decompress`]: super::codec::decompress
    pub fn from_compressed(counts: Vec<u8>, h: u64, w: u64) -> Result<PreparedMask, Vec<u8>> {
        let Ok((h, w)) = super::checked_size("", "", h, w) else {
            return Err(counts);
        };
        let mut summary = RunSummary::new(h);
        if h == 0
            || for_each_run(&counts, |count| summary.add(count)).is_err()
            || summary.zero_run
            || summary.position != u64::from(h) * u64::from(w)
        {
            return Err(counts);
        }
        let bbox = summary.bbox();
        Ok(PreparedMask { h, w, bbox, area: summary.area, counts: counts.into_boxed_slice() })
    }

    /// The run lengths, from the compressed string (no checks: it was checked).
    fn runs(&self) -> Runs<'_> {
        Runs { s: &self.counts, at: 0, before: [0, 0], m: 0 }
    }
}

/// The run lengths of a compressed string checked when its mask was built
/// (`codec::decompress` judged it), read without checks or allocation.
struct Runs<'a> {
    s: &'a [u8],
    at: usize,
    /// The last two runs (a run from the fourth on is a difference from the
    /// run two back).
    before: [i64; 2],
    m: usize,
}

impl Iterator for Runs<'_> {
    type Item = u32;

    #[inline]
    fn next(&mut self) -> Option<u32> {
        if self.at >= self.s.len() {
            return None;
        }
        let (mut x, mut shift) = (0i64, 0u32);
        loop {
            let c = i64::from(self.s[self.at] - 48);
            self.at += 1;
            x |= (c & 0x1f) << shift;
            shift += 5;
            if c & 0x20 == 0 {
                if c & 0x10 != 0 {
                    x |= -1i64 << shift;
                }
                break;
            }
        }
        if self.m > 2 {
            x += self.before[0];
        }
        self.before = [self.before[1], x];
        self.m += 1;
        Some(x as u32)
    }
}

/// The masks one IoU matrix needs, decoded by column into one reused buffer.
#[derive(Debug, Default)]
pub struct Decoded {
    columns: ColumnRuns,
}

impl Decoded {
    /// Decodes `masks` in order (replacing what was there); a `None` holds its
    /// place as an empty mask (one no IoU will read).
    pub fn decode<'a>(&mut self, masks: impl Iterator<Item = Option<&'a PreparedMask>>) {
        self.columns.clear();
        for mask in masks {
            match mask {
                Some(mask) => self.columns.push(mask.h, mask.runs()),
                None => self.columns.push(0, std::iter::empty()),
            }
        }
    }
}

/// Area and box of a mask gathered run by run ([`PreparedMask::from_compressed`];
/// the box as [`box_of_runs`] finds it).
struct RunSummary {
    h: u32,
    /// Pixels before the next run.
    position: u64,
    runs: usize,
    area: u32,
    /// A run of 0 length after the first.
    zero_run: bool,
    first: Option<u32>,
    last_end: u32,
    ys: u32,
    ye: u32,
}

impl RunSummary {
    fn new(h: u32) -> RunSummary {
        RunSummary { h, position: 0, runs: 0, area: 0, zero_run: false, first: None, last_end: 0, ys: h, ye: 0 }
    }

    #[inline]
    fn add(&mut self, count: u32) {
        let start = self.position;
        self.position += u64::from(count);
        self.zero_run |= count == 0 && self.runs > 0;
        let is_ones = self.runs % 2 == 1;
        self.runs += 1;
        // Past h * w (< 2**32) the mask is refused: nothing below matters then.
        if !is_ones || count == 0 || self.position > u64::from(u32::MAX) || self.h == 0 {
            return;
        }
        let (start, end, h) = (start as u32, self.position as u32, self.h);
        self.area = self.area.wrapping_add(count);
        self.first.get_or_insert(start);
        self.last_end = end;
        if self.ys > 0 || self.ye < h - 1 {
            let column_start = start / h * h;
            if end > column_start + h {
                (self.ys, self.ye) = (0, h - 1);
            } else {
                self.ys = self.ys.min(start - column_start);
                self.ye = self.ye.max(end - 1 - column_start);
            }
        }
    }

    fn bbox(&self) -> [f64; 4] {
        let Some(first) = self.first else {
            return [0.0; 4];
        };
        let (xs, xe) = (first / self.h, (self.last_end - 1) / self.h);
        [f64::from(xs), f64::from(self.ys), f64::from(xe - xs + 1), f64::from(self.ye - self.ys + 1)]
    }
}

/// `toBbox` from the 1-runs' first and last pixels (a run across columns
/// spans the whole height), one division per run where `to_bbox` takes four.
fn box_of_runs(counts: &[u32], h: u32) -> [f64; 4] {
    let (mut first, mut last_end) = (None, 0u32);
    let (mut ys, mut ye) = (h, 0u32);
    let mut start = 0u32;
    for (j, &count) in counts.iter().enumerate() {
        if j % 2 == 1 && count > 0 {
            let end = start + count;
            first.get_or_insert(start);
            last_end = end;
            if ys > 0 || ye < h - 1 {
                let column_start = start / h * h;
                if end > column_start + h {
                    (ys, ye) = (0, h - 1);
                } else {
                    ys = ys.min(start - column_start);
                    ye = ye.max(end - 1 - column_start);
                }
            }
        }
        start = start.wrapping_add(count);
    }
    let Some(first) = first else {
        return [0.0; 4];
    };
    let (xs, xe) = (first / h, (last_end - 1) / h);
    [f64::from(xs), f64::from(ys), f64::from(xe - xs + 1), f64::from(ye - ys + 1)]
}

/// pycocotools' `rleIou` of a detection and a ground truth: the box IoU when it
/// is not positive (0), -1 for masks of different sizes, 0 when the masks do not
/// meet, else intersection over union, the union being the detection's area for
/// crowd ground truth. The same integers divided, so the same double.
/// `d` and `g` are masks `i` and `j` of `decoded`.
pub fn iou(d: &PreparedMask, g: &PreparedMask, decoded: &Decoded, i: usize, j: usize, crowd: bool) -> f64 {
    let gate = gate(d, g, crowd);
    if gate <= 0.0 {
        return gate;
    }
    iou_past_gate(d, g, decoded, i, j, crowd)
}

/// The box IoU [`iou`] starts from: the IoU itself where not positive.
#[inline]
pub fn gate(d: &PreparedMask, g: &PreparedMask, crowd: bool) -> f64 {
    coco_iou(&d.bbox, &g.bbox, crowd)
}

/// [`iou`] of a pair whose [`gate`] is positive.
pub fn iou_past_gate(d: &PreparedMask, g: &PreparedMask, decoded: &Decoded, i: usize, j: usize, crowd: bool) -> f64 {
    if (d.h, d.w) != (g.h, g.w) {
        return -1.0;
    }
    let inter = decoded.columns.intersection(i, &decoded.columns, j);
    if inter == 0 {
        return 0.0;
    }
    let union = if crowd { u64::from(d.area) } else { u64::from(d.area) + u64::from(g.area) - inter };
    inter as f64 / union as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::rle;
    use crate::test_rng::Lcg;

    #[test]
    fn prepared_iou_is_the_mask_module_s() {
        let mut rng = Lcg::new(7);
        let (h, w) = (13u32, 11u32);
        let masks: Vec<Rle> = (0..24)
            .map(|k| {
                let mut data = vec![0u8; (h * w) as usize];
                let (x0, y0) = (rng.below(u64::from(w)) as usize, rng.below(u64::from(h)) as usize);
                let (x1, y1) = (x0 + rng.below(6) as usize, y0 + rng.below(7) as usize);
                for x in x0..x1.min(w as usize) {
                    for y in y0..y1.min(h as usize) {
                        data[x * h as usize + y] = u8::from(k % 5 != 0 || rng.below(2) == 0);
                    }
                }
                rle::encode(&data, u64::from(h), u64::from(w), 1, rle::RunRule::ValueChange).unwrap().remove(0)
            })
            .collect();
        let prepared: Vec<PreparedMask> = masks.iter().map(PreparedMask::new).collect();
        let mut decoded = Decoded::default();
        decoded.decode(prepared.iter().map(Some));
        for (p, m) in prepared.iter().zip(&masks) {
            assert_eq!(p.bbox, rle::to_bbox(m));
        }
        // Zero-length runs take part in pycocotools' box.
        for counts in [vec![5, 0, 3, 2, 2], vec![1, 6, 5], vec![0, 2, 9, 1], vec![12], vec![0, 12], vec![2, 1, 1, 1, 7]]
        {
            let m = Rle { h: 4, w: 3, counts };
            assert_eq!(PreparedMask::new(&m).bbox, rle::to_bbox(&m), "{:?}", m.counts);
        }
        for (p, m) in prepared.iter().zip(&masks) {
            let measured = PreparedMask::from_compressed(m.to_compressed(), u64::from(h), u64::from(w));
            assert_eq!(measured.as_ref(), Ok(p));
        }
        // A run of 0 length, a fault, a wrong total: left to the checked decoder.
        for (s, size) in [(&b"0003"[..], (1, 3)), (b"0", (1, 3)), (b"3o", (1, 3)), (b"12", (1, 4)), (b"3", (1, 3))] {
            let measured = PreparedMask::from_compressed(s.to_vec(), size.0, size.1);
            assert_eq!(measured.is_ok(), s == b"3", "{s:?}");
        }
        for crowd in [false, true] {
            let flags = vec![crowd; masks.len()];
            let expected = rle::iou(&masks, &masks, &flags).unwrap();
            for (i, d) in prepared.iter().enumerate() {
                for (j, g) in prepared.iter().enumerate() {
                    let value = iou(d, g, &decoded, i, j, crowd);
                    assert_eq!(value.to_bits(), expected[i * masks.len() + j].to_bits(), "{i} {j}");
                }
            }
        }
    }
}
