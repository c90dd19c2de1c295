//! Encoding, decoding and measuring run-length masks (MASK-RLE, MASK-AREA,
//! MASK-BBOX, MASK-MERGE, MASK-IOU). Batches run on ferrops' pool, one mask or one
//! row of the IoU matrix per task; each result depends on its own inputs only, so
//! it is the same for any thread count.

use rayon::prelude::*;

use super::columns::ColumnRuns;
use super::Rle;
use crate::boxes::geometry::coco_iou;
use crate::buffer;
use crate::ensure;
use crate::error::{FerropsError, Result};

/// How a pixel's byte starts a new run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunRule {
    /// pycocotools' rule: a run ends wherever the byte value changes (so 1 next to
    /// 2 ends a run too; masks are expected to hold 0 and 1).
    ValueChange,
    /// Any non-zero byte is foreground (boolean masks, `mask_iou`).
    NonZero,
}

const LANES: usize = 8;

fn broadcast(byte: u8) -> u64 {
    u64::from(byte) * 0x0101_0101_0101_0101
}

/// The index of the first byte at or after `start` that ends the run of `value`.
fn run_end(data: &[u8], start: usize, value: u8, rule: RunRule) -> usize {
    let mut i = start;
    let differs = |b: u8| match rule {
        RunRule::ValueChange => b != value,
        RunRule::NonZero => (b != 0) != (value != 0),
    };
    // Eight bytes at a time: a word whose marker bits are all clear holds no end.
    while i + LANES <= data.len() {
        let word = u64::from_le_bytes(data[i..i + LANES].try_into().expect("eight bytes"));
        let marker = match (rule, value) {
            (RunRule::NonZero, v) if v != 0 => {
                // High bit of each zero byte (the lowest flagged byte is exact).
                word.wrapping_sub(broadcast(1)) & !word & broadcast(0x80)
            }
            _ => word ^ broadcast(value),
        };
        if marker != 0 {
            return i + marker.trailing_zeros() as usize / 8;
        }
        i += LANES;
    }
    while i < data.len() && !differs(data[i]) {
        i += 1;
    }
    i
}

/// The run lengths of one mask of `pixels` bytes read in memory order.
pub fn runs_of(data: &[u8], rule: RunRule) -> Vec<u32> {
    let mut counts = Vec::new();
    let mut value = 0u8;
    let mut start = 0;
    loop {
        let end = run_end(data, start, value, rule);
        counts.push((end - start) as u32);
        if end == data.len() {
            return counts;
        }
        value = data[end];
        start = end;
    }
}

/// Encodes `n` column-major masks of `[h, w]` stored one after the other
/// (`[H, W, N]` in Fortran order), one task per mask.
pub fn encode(data: &[u8], h: u64, w: u64, n: usize, rule: RunRule) -> Result<Vec<Rle>> {
    let (h, w) = super::checked_size("encode", "bimask", h, w)?;
    let pixels = h as usize * w as usize;
    ensure!(
        data.len() == pixels * n,
        FerropsError::value("encode", "bimask", format!("{} bytes", pixels * n), format!("{} bytes", data.len()))
    );
    if pixels == 0 {
        return Ok((0..n).map(|_| Rle { h, w, counts: vec![0] }).collect());
    }
    Ok(data.par_chunks(pixels).map(|mask| Rle { h, w, counts: runs_of(mask, rule) }).collect())
}

/// Encodes `n` row-major masks (`[N, H, W]` in C order) by transposing each into
/// column-major order first, in tiles that stay in cache.
pub fn encode_row_major(data: &[u8], h: u64, w: u64, n: usize, rule: RunRule) -> Result<Vec<Rle>> {
    let (h32, w32) = super::checked_size("encode", "bimask", h, w)?;
    let (h, w) = (h32 as usize, w32 as usize);
    ensure!(
        data.len() == h * w * n,
        FerropsError::value("encode", "bimask", format!("{} bytes", h * w * n), format!("{} bytes", data.len()))
    );
    if h * w == 0 {
        return Ok((0..n).map(|_| Rle { h: h32, w: w32, counts: vec![0] }).collect());
    }
    const TILE: usize = 64;
    Ok(data
        .par_chunks(h * w)
        .map(|mask| {
            let mut columns = vec![0u8; h * w];
            for y0 in (0..h).step_by(TILE) {
                for x0 in (0..w).step_by(TILE) {
                    for y in y0..(y0 + TILE).min(h) {
                        for x in x0..(x0 + TILE).min(w) {
                            columns[x * h + y] = mask[y * w + x];
                        }
                    }
                }
            }
            Rle { h: h32, w: w32, counts: runs_of(&columns, rule) }
        })
        .collect())
}

/// Decodes masks of one size into `[H, W, N]` Fortran-order bytes (0 and 1).
pub fn decode(rles: &[Rle]) -> Result<Vec<u8>> {
    let Some(first) = rles.first() else {
        return Ok(Vec::new());
    };
    for (i, r) in rles.iter().enumerate() {
        ensure!(
            (r.h, r.w) == (first.h, first.w),
            FerropsError::value(
                "decode",
                "rleObjs",
                format!("masks of one size ([{}, {}], the first's)", first.h, first.w),
                format!("size [{}, {}] at index {i}", r.h, r.w),
            )
        );
    }
    let pixels = first.pixels() as usize;
    buffer::try_filled("decode", "the masks", &[rles.len(), pixels], |out| {
        if pixels == 0 {
            return;
        }
        out.par_chunks_mut(pixels).zip(rles.par_iter()).for_each(|(mask, rle)| {
            let mut start = 0;
            for (j, &count) in rle.counts.iter().enumerate() {
                let end = start + count as usize;
                mask[start..end].fill(std::mem::MaybeUninit::new((j % 2) as u8));
                start = end;
            }
        });
    })
}

/// Foreground pixels: the sum of the 1-runs (pycocotools' `rleArea`).
pub fn area(rle: &Rle) -> u32 {
    rle.counts.iter().skip(1).step_by(2).fold(0u32, |a, &c| a.wrapping_add(c))
}

/// `[x, y, width, height]` of the mask, computed as pycocotools' `rleToBbox` does:
/// from the first and last pixel of each 1-run, a run spanning two columns taking
/// the whole height, and a trailing unpaired run ignored. Zero-length runs take
/// part as they do there (with the same 32-bit wrap-around).
pub fn to_bbox(rle: &Rle) -> [f64; 4] {
    let (h, w) = (rle.h, rle.w);
    let m = rle.counts.len() / 2 * 2;
    if m == 0 || h == 0 {
        return [0.0; 4];
    }
    let (mut xs, mut ys, mut xe, mut ye) = (w, h, 0u32, 0u32);
    let (mut cc, mut xp) = (0u32, 0u32);
    for (j, &count) in rle.counts[..m].iter().enumerate() {
        cc = cc.wrapping_add(count);
        let t = cc.wrapping_sub((j % 2) as u32);
        let y = t % h;
        let x = (t - y) / h;
        if j % 2 == 0 {
            xp = x;
        } else if xp < x {
            ys = 0;
            ye = h - 1;
        }
        xs = xs.min(x);
        xe = xe.max(x);
        ys = ys.min(y);
        ye = ye.max(y);
    }
    [f64::from(xs), f64::from(ys), f64::from(xe.wrapping_sub(xs).wrapping_add(1)), f64::from(ye - ys + 1)]
}

/// The runs of `rle` as (value, length) segments of positive length.
fn segments(counts: &[u32]) -> impl Iterator<Item = (bool, u64)> + '_ {
    counts.iter().enumerate().filter(|(_, &c)| c > 0).map(|(j, &c)| (j % 2 == 1, u64::from(c)))
}

/// Walks two masks of equal size run by run and calls `visit(a, b, length)` for
/// each stretch where both values stay the same.
fn walk_pair(a: &[u32], b: &[u32], mut visit: impl FnMut(bool, bool, u64)) {
    let (mut sa, mut sb) = (segments(a), segments(b));
    let (mut ca, mut cb) = (sa.next(), sb.next());
    while let (Some((va, la)), Some((vb, lb))) = (ca, cb) {
        let step = la.min(lb);
        visit(va, vb, step);
        ca = if la == step { sa.next() } else { Some((va, la - step)) };
        cb = if lb == step { sb.next() } else { Some((vb, lb - step)) };
    }
}

/// Canonical run lengths of a sequence of (value, length) stretches: starting
/// with a 0-run (0 long when the mask starts with 1), neighbours merged.
fn canonical(stretches: impl Iterator<Item = (bool, u64)>) -> Vec<u32> {
    let mut counts = Vec::new();
    let (mut value, mut length) = (false, 0u64);
    for (v, l) in stretches {
        if v != value {
            counts.push(length as u32);
            (value, length) = (v, 0);
        }
        length += l;
    }
    counts.push(length as u32);
    counts
}

/// Union (or intersection) of masks of one size, as pycocotools' `rleMerge`: no
/// masks give an empty `[0, 0]` mask, one mask is returned as it is.
pub fn merge(rles: &[Rle], intersect: bool) -> Result<Rle> {
    let Some(first) = rles.first() else {
        return Ok(Rle { h: 0, w: 0, counts: Vec::new() });
    };
    let mut merged = first.clone();
    for (i, r) in rles.iter().enumerate().skip(1) {
        ensure!(
            (r.h, r.w) == (first.h, first.w),
            FerropsError::value(
                "merge",
                "rleObjs",
                format!("masks of one size ([{}, {}], the first's)", first.h, first.w),
                format!("size [{}, {}] at index {i}", r.h, r.w),
            )
        );
        let mut stretches = Vec::new();
        walk_pair(&merged.counts, &r.counts, |a, b, l| {
            stretches.push((if intersect { a && b } else { a || b }, l));
        });
        merged.counts = canonical(stretches.into_iter());
    }
    Ok(merged)
}

/// One side of an IoU matrix as the IoU reads it: each mask's box (the gate)
/// and area, and the masks by column.
struct Side<'a> {
    rles: &'a [Rle],
    box_area: Vec<([f64; 4], u64)>,
    columns: ColumnRuns,
}

impl<'a> Side<'a> {
    fn new(rles: &'a [Rle]) -> Side<'a> {
        let (box_area, columns) = rayon::join(
            || rles.par_iter().map(|r| (to_bbox(r), u64::from(area(r)))).collect(),
            || {
                let mut columns = ColumnRuns::default();
                for r in rles {
                    columns.push(r.h, r.counts.iter().copied());
                }
                columns
            },
        );
        Side { rles, box_area, columns }
    }
}

/// The mask IoU of detection `i` and ground truth `j`, pycocotools' `rleIou`:
/// 0 when the boxes do not overlap or the masks do not intersect, -1 when the
/// sizes differ, and for a crowd ground truth the intersection over the
/// detection's area. The union is `|d| + |g| - |d & g|`, the same integer
/// pycocotools counts run by run.
fn rle_iou_one(dt: &Side, i: usize, gt: &Side, j: usize, crowd: bool) -> f64 {
    let ((d_box, d_area), (g_box, g_area)) = (dt.box_area[i], gt.box_area[j]);
    let gate = coco_iou(&d_box, &g_box, crowd);
    if gate <= 0.0 {
        return gate;
    }
    let (d, g) = (&dt.rles[i], &gt.rles[j]);
    if (d.h, d.w) != (g.h, g.w) {
        return -1.0;
    }
    let inter = dt.columns.intersection(i, &gt.columns, j);
    if inter == 0 {
        return 0.0;
    }
    let union = if crowd { d_area } else { d_area + g_area - inter };
    inter as f64 / union as f64
}

fn check_crowd(function: &'static str, n: usize, iscrowd: &[bool]) -> Result<()> {
    ensure!(
        iscrowd.len() == n,
        FerropsError::value(
            function,
            "iscrowd",
            format!("one flag per ground truth ({n})"),
            format!("{} flags", iscrowd.len()),
        )
    );
    Ok(())
}

/// `[m, n]` (row-major) mask IoU of `m` detections against `n` ground truths.
pub fn iou(dt: &[Rle], gt: &[Rle], iscrowd: &[bool]) -> Result<Vec<f64>> {
    check_crowd("iou", gt.len(), iscrowd)?;
    let (d_side, g_side) = rayon::join(|| Side::new(dt), || Side::new(gt));
    let n = gt.len();
    buffer::try_filled("iou", "the IoU matrix", &[dt.len(), n], |out| {
        if n == 0 {
            return;
        }
        out.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
            for (j, slot) in row.iter_mut().enumerate() {
                slot.write(rle_iou_one(&d_side, i, &g_side, j, iscrowd[j]));
            }
        });
    })
}

/// `[m, n]` (row-major) IoU of `[x, y, w, h]` boxes, pycocotools' `bbIou`.
pub fn box_iou(dt: &[[f64; 4]], gt: &[[f64; 4]], iscrowd: &[bool]) -> Result<Vec<f64>> {
    check_crowd("iou", gt.len(), iscrowd)?;
    let n = gt.len();
    buffer::try_filled("iou", "the IoU matrix", &[dt.len(), n], |out| {
        if n == 0 {
            return;
        }
        out.par_chunks_mut(n).zip(dt.par_iter()).for_each(|(row, d)| {
            for ((slot, g), &crowd) in row.iter_mut().zip(gt).zip(iscrowd) {
                slot.write(coco_iou(d, g, crowd));
            }
        });
    })
}
