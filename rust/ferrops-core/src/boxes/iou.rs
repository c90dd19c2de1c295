//! The IoU family (BOX-IOU, BOX-GIOU, BOX-DIOU, BOX-CIOU): `[N, M]` matrices and
//! `[N]` elementwise losses (GIoU, DIoU and CIoU only, as torchvision), both on the
//! shared arithmetic of [`super::geometry`].

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::geometry::{self, aspect_angle, centre_distance_squared, ciou_aspect_penalty, enclosing_size, intersection};
use super::{check_xyxy_boxes, ROWS_PER_TASK};
use crate::buffer;
use crate::ensure;
use crate::error::{FerropsError, Result};
use crate::simd::{dispatch, SimdKernel};
use crate::Real;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IouKind {
    Iou,
    Generalized,
    Distance,
    Complete,
}

impl IouKind {
    /// `"iou"`, `"giou"`, `"diou"` or `"ciou"`.
    pub fn parse(function: &'static str, name: &str) -> Result<Self> {
        match name {
            "iou" => Ok(IouKind::Iou),
            "giou" => Ok(IouKind::Generalized),
            "diou" => Ok(IouKind::Distance),
            "ciou" => Ok(IouKind::Complete),
            other => {
                Err(FerropsError::value(function, "kind", "one of 'iou', 'giou', 'diou', 'ciou'", format!("'{other}'")))
            }
        }
    }

    fn function_name(self) -> &'static str {
        match self {
            IouKind::Iou => "box_iou",
            IouKind::Generalized => "generalized_box_iou",
            IouKind::Distance => "distance_box_iou",
            IouKind::Complete => "complete_box_iou",
        }
    }
}

/// The elementwise losses torchvision has (and ferrops exposes): there is no
/// plain IoU loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IouLoss {
    Generalized,
    Distance,
    Complete,
}

impl IouLoss {
    /// `"giou"`, `"diou"` or `"ciou"`.
    pub fn parse(function: &'static str, name: &str) -> Result<Self> {
        match name {
            "giou" => Ok(IouLoss::Generalized),
            "diou" => Ok(IouLoss::Distance),
            "ciou" => Ok(IouLoss::Complete),
            other => Err(FerropsError::value(function, "kind", "one of 'giou', 'diou', 'ciou'", format!("'{other}'"))),
        }
    }

    fn function_name(self) -> &'static str {
        match self {
            IouLoss::Generalized => "generalized_box_iou_loss",
            IouLoss::Distance => "distance_box_iou_loss",
            IouLoss::Complete => "complete_box_iou_loss",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    None,
    Mean,
    Sum,
}

impl Reduction {
    pub fn parse(function: &'static str, name: &str) -> Result<Self> {
        match name {
            "none" => Ok(Reduction::None),
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            other => {
                Err(FerropsError::value(function, "reduction", "one of 'none', 'mean', 'sum'", format!("'{other}'")))
            }
        }
    }
}

/// The second operand of the matrix kernels in structure-of-arrays form, so the
/// inner loop over it reads contiguous lanes.
struct BoxColumns<T> {
    x1: Vec<T>,
    y1: Vec<T>,
    x2: Vec<T>,
    y2: Vec<T>,
    area: Vec<T>,
    /// atan(w / h), only for CIoU (computed once per box, not once per pair).
    aspect: Vec<T>,
}

impl<T: Real> BoxColumns<T> {
    fn new(boxes: &[T], with_aspect: bool) -> Self {
        let n = boxes.len() / 4;
        let mut c = BoxColumns {
            x1: Vec::with_capacity(n),
            y1: Vec::with_capacity(n),
            x2: Vec::with_capacity(n),
            y2: Vec::with_capacity(n),
            area: Vec::with_capacity(n),
            aspect: Vec::with_capacity(if with_aspect { n } else { 0 }),
        };
        for b in boxes.chunks_exact(4) {
            c.x1.push(b[0]);
            c.y1.push(b[1]);
            c.x2.push(b[2]);
            c.y2.push(b[3]);
            let b = [b[0], b[1], b[2], b[3]];
            c.area.push(geometry::area(b));
            if with_aspect {
                c.aspect.push(aspect_angle(b));
            }
        }
        c
    }
}

/// One pair's value. `KIND` is an `IouKind` discriminant, a constant so that each
/// kind's loop is compiled without the branches of the others.
#[inline(always)]
fn pair_value<T: Real, const KIND: u8>(a: [T; 4], area_a: T, aspect_a: T, b: [T; 4], area_b: T, aspect_b: T) -> T {
    let eps = T::from_f64(1e-7);
    let inter = intersection(a, b);
    let union = geometry::union(area_a, area_b, inter);
    let iou = inter / union;
    if KIND == IouKind::Iou as u8 {
        return iou;
    }
    let (ew, eh) = enclosing_size(a, b);
    if KIND == IouKind::Generalized as u8 {
        let enclosing = ew * eh;
        return iou - (enclosing - union) / enclosing;
    }
    let diagonal2 = ew * ew + eh * eh + eps;
    let diou = iou - centre_distance_squared(a, b) / diagonal2;
    if KIND == IouKind::Distance as u8 {
        return diou;
    }
    diou - ciou_aspect_penalty(iou, aspect_a - aspect_b, eps)
}

struct MatrixRows<'a, T, const KIND: u8> {
    rows: &'a [T],
    first_row: usize,
    aspect_rows: &'a [T],
    cols: &'a BoxColumns<T>,
    out: &'a mut [MaybeUninit<T>],
}

impl<T: Real, const KIND: u8> SimdKernel for MatrixRows<'_, T, KIND> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let c = self.cols;
        let m = c.x1.len();
        let with_aspect = KIND == IouKind::Complete as u8;
        for (r, (a, out_row)) in self.rows.chunks_exact(4).zip(self.out.chunks_exact_mut(m)).enumerate() {
            let a = [a[0], a[1], a[2], a[3]];
            let area_a = geometry::area(a);
            let aspect_a = if with_aspect { self.aspect_rows[self.first_row + r] } else { T::ZERO };
            // Zipped slices of one length: no bounds checks, so the loop vectorises.
            let lanes =
                out_row.iter_mut().zip(&c.x1[..m]).zip(&c.y1[..m]).zip(&c.x2[..m]).zip(&c.y2[..m]).zip(&c.area[..m]);
            if with_aspect {
                for ((((((o, &x1), &y1), &x2), &y2), &area_b), &aspect_b) in lanes.zip(&c.aspect[..m]) {
                    o.write(pair_value::<T, KIND>(a, area_a, aspect_a, [x1, y1, x2, y2], area_b, aspect_b));
                }
            } else {
                for (((((o, &x1), &y1), &x2), &y2), &area_b) in lanes {
                    o.write(pair_value::<T, KIND>(a, area_a, aspect_a, [x1, y1, x2, y2], area_b, T::ZERO));
                }
            }
        }
    }
}

fn fill_matrix<T: Real, const KIND: u8>(a: &[T], cols: &BoxColumns<T>, aspect_a: &[T], out: &mut [MaybeUninit<T>]) {
    let m = cols.x1.len();
    // ~64k outputs per task: big enough to amortise scheduling, small enough to
    // balance two cores on the smallest matrices that are worth threads.
    let rows_per_task = (65536 / m.max(1)).clamp(1, ROWS_PER_TASK);
    out.par_chunks_mut(rows_per_task * m).enumerate().for_each(|(t, out)| {
        let first_row = t * rows_per_task;
        let rows = &a[4 * first_row..4 * (first_row + out.len() / m)];
        dispatch(MatrixRows::<T, KIND> { rows, first_row, aspect_rows: aspect_a, cols, out });
    });
}

/// `[N, M]` matrix of the chosen IoU variant between `a` (`[N, 4]`) and `b` (`[M, 4]`),
/// row-major. Torchvision's formulas (and its `eps = 1e-7` for DIoU/CIoU); two
/// degenerate boxes with a zero union give NaN, as there.
pub fn pairwise_iou<T: Real>(kind: IouKind, a: &[T], b: &[T]) -> Result<Vec<T>> {
    let name = kind.function_name();
    let n = check_xyxy_boxes(name, "boxes1", a)?;
    let m = check_xyxy_boxes(name, "boxes2", b)?;
    if n == 0 || m == 0 {
        return Ok(Vec::new());
    }
    let with_aspect = kind == IouKind::Complete;
    let cols = BoxColumns::new(b, with_aspect);
    let aspect_a = if with_aspect { BoxColumns::new(a, true).aspect } else { Vec::new() };
    // The one box output whose size the caller does not already hold in memory.
    let out = buffer::try_filled(name, "the output", &[n, m], |out| match kind {
        IouKind::Iou => fill_matrix::<T, { IouKind::Iou as u8 }>(a, &cols, &aspect_a, out),
        IouKind::Generalized => fill_matrix::<T, { IouKind::Generalized as u8 }>(a, &cols, &aspect_a, out),
        IouKind::Distance => fill_matrix::<T, { IouKind::Distance as u8 }>(a, &cols, &aspect_a, out),
        IouKind::Complete => fill_matrix::<T, { IouKind::Complete as u8 }>(a, &cols, &aspect_a, out),
    })?;
    Ok(out)
}

/// BOX-BATCH: `[B, N, M]` matrices of `a` (`[B, N, 4]`) and `b` (`[B, M, 4]`),
/// one [`pairwise_iou`] per batch element in one call (many small matrices
/// would otherwise pay a Python round trip each). Batch elements run in
/// parallel; each matrix is the same bits as [`pairwise_iou`]'s.
pub fn pairwise_iou_batched<T: Real>(kind: IouKind, a: &[T], b: &[T], batch: usize) -> Result<Vec<T>> {
    let name = kind.function_name();
    let rows_a = check_xyxy_boxes(name, "boxes1", a)?;
    let rows_b = check_xyxy_boxes(name, "boxes2", b)?;
    ensure!(
        batch > 0 && rows_a.is_multiple_of(batch) && rows_b.is_multiple_of(batch),
        FerropsError::value(
            name,
            "boxes1",
            format!("[B, N, 4] and [B, M, 4] boxes with B = {batch}"),
            format!("{rows_a} and {rows_b} rows")
        )
    );
    let (n, m) = (rows_a / batch, rows_b / batch);
    if n == 0 || m == 0 {
        return Ok(Vec::new());
    }
    buffer::try_filled(name, "the output", &[batch, n, m], |out| {
        out.par_chunks_mut(n * m).enumerate().for_each(|(k, out)| {
            let (a, b) = (&a[4 * n * k..4 * n * (k + 1)], &b[4 * m * k..4 * m * (k + 1)]);
            let with_aspect = kind == IouKind::Complete;
            let cols = BoxColumns::new(b, with_aspect);
            let aspect_a = if with_aspect { BoxColumns::new(a, true).aspect } else { Vec::new() };
            match kind {
                IouKind::Iou => fill_matrix::<T, { IouKind::Iou as u8 }>(a, &cols, &aspect_a, out),
                IouKind::Generalized => fill_matrix::<T, { IouKind::Generalized as u8 }>(a, &cols, &aspect_a, out),
                IouKind::Distance => fill_matrix::<T, { IouKind::Distance as u8 }>(a, &cols, &aspect_a, out),
                IouKind::Complete => fill_matrix::<T, { IouKind::Complete as u8 }>(a, &cols, &aspect_a, out),
            }
        })
    })
}

/// One task's rows of an elementwise loss. `KIND` is an `IouLoss` discriminant,
/// as in [`pair_value`].
struct LossRows<'a, T, const KIND: u8> {
    p: &'a [T],
    g: &'a [T],
    eps: T,
    out: &'a mut [MaybeUninit<T>],
}

impl<T: Real, const KIND: u8> SimdKernel for LossRows<'_, T, KIND> {
    type Output = ();
    #[inline(always)]
    fn run(self) {
        let eps = self.eps;
        for ((o, p), g) in self.out.iter_mut().zip(self.p.chunks_exact(4)).zip(self.g.chunks_exact(4)) {
            let (p, g) = ([p[0], p[1], p[2], p[3]], [g[0], g[1], g[2], g[3]]);
            let inter = intersection(p, g);
            let union = geometry::union(geometry::area(p), geometry::area(g), inter);
            let iou = inter / (union + eps);
            let (ew, eh) = enclosing_size(p, g);
            let loss = if KIND == IouLoss::Generalized as u8 {
                let enclosing = ew * eh;
                T::ONE - (iou - (enclosing - union) / (enclosing + eps))
            } else {
                let diagonal2 = ew * ew + eh * eh + eps;
                let diou_loss = T::ONE - iou + centre_distance_squared(p, g) / diagonal2;
                if KIND == IouLoss::Distance as u8 {
                    diou_loss
                } else {
                    diou_loss + ciou_aspect_penalty(iou, aspect_angle(g) - aspect_angle(p), eps)
                }
            };
            o.write(loss);
        }
    }
}

/// Elementwise loss `1 - variant(boxes1[i], boxes2[i])`, torchvision's
/// `*_box_iou_loss` formulas: unlike the matrices, IoU there is
/// `inter / (union + eps)` and GIoU's enclosing area gets `+ eps` too, so that
/// degenerate pairs give finite losses.
pub fn box_iou_loss<T: Real>(kind: IouLoss, a: &[T], b: &[T], eps: f64, reduction: Reduction) -> Result<Vec<T>> {
    let name = kind.function_name();
    let n = check_xyxy_boxes(name, "boxes1", a)?;
    let m = check_xyxy_boxes(name, "boxes2", b)?;
    ensure!(
        n == m,
        FerropsError::value(name, "boxes2", format!("as many boxes as boxes1 ({n})"), format!("{m} boxes"))
    );
    ensure!(eps.is_finite() && eps >= 0.0, FerropsError::value(name, "eps", "a finite value >= 0", format!("{eps}")));
    let eps = T::from_f64(eps);
    let losses = buffer::filled(n, |out| {
        out.par_chunks_mut(ROWS_PER_TASK).enumerate().for_each(|(t, out)| {
            let first = t * ROWS_PER_TASK;
            let (p, g) = (&a[4 * first..4 * (first + out.len())], &b[4 * first..4 * (first + out.len())]);
            match kind {
                IouLoss::Generalized => dispatch(LossRows::<T, { IouLoss::Generalized as u8 }> { p, g, eps, out }),
                IouLoss::Distance => dispatch(LossRows::<T, { IouLoss::Distance as u8 }> { p, g, eps, out }),
                IouLoss::Complete => dispatch(LossRows::<T, { IouLoss::Complete as u8 }> { p, g, eps, out }),
            }
        })
    });
    Ok(match reduction {
        Reduction::None => losses,
        // A sequential sum in a fixed order: the same bits for any thread count.
        Reduction::Sum => vec![losses.iter().copied().sum()],
        Reduction::Mean if n == 0 => vec![T::from_f64(f64::NAN)],
        Reduction::Mean => vec![losses.iter().copied().sum::<T>() / T::from_f64(n as f64)],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::{detected, set_level, SimdLevel};
    use crate::test_rng::Lcg;

    fn random_boxes(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Lcg::new(seed);
        let mut next = move || rng.unit_f32();
        (0..n)
            .flat_map(|_| {
                let (x, y, w, h) = (next() * 100.0, next() * 100.0, next() * 30.0, next() * 30.0);
                [x, y, x + w, y + h]
            })
            .collect()
    }

    #[test]
    fn iou_of_known_pairs() {
        let a = [0.0f64, 0.0, 2.0, 2.0];
        let b = [1.0f64, 1.0, 3.0, 3.0];
        let iou = pairwise_iou(IouKind::Iou, &a, &b).unwrap()[0];
        assert!((iou - 1.0 / 7.0).abs() < 1e-15);
        let giou = pairwise_iou(IouKind::Generalized, &a, &b).unwrap()[0];
        assert!((giou - (1.0 / 7.0 - 2.0 / 9.0)).abs() < 1e-15);
        let diou = pairwise_iou(IouKind::Distance, &a, &b).unwrap()[0];
        assert!((diou - (1.0 / 7.0 - 2.0 / (18.0 + 1e-7))).abs() < 1e-15);
        // Same aspect ratio: CIoU equals DIoU.
        let ciou = pairwise_iou(IouKind::Complete, &a, &b).unwrap()[0];
        assert_eq!(ciou, diou);
    }

    #[test]
    fn every_simd_level_and_thread_count_gives_the_same_bits() {
        let _guard = crate::GLOBAL_SETTINGS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let a = random_boxes(37, 1);
        let b = random_boxes(1001, 2);
        for kind in [IouKind::Iou, IouKind::Generalized, IouKind::Distance, IouKind::Complete] {
            let mut seen = Vec::new();
            for level in [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512] {
                set_level(level);
                for threads in [1, 2] {
                    crate::parallel::set_num_threads(threads).unwrap();
                    let m = crate::parallel::install(|| pairwise_iou(kind, &a, &b).unwrap());
                    seen.push(m.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
                }
            }
            set_level(detected());
            assert!(seen.windows(2).all(|w| w[0] == w[1]), "{kind:?}");
        }
    }

    #[test]
    fn losses_reduce_and_validate() {
        let a = [0.0f64, 0.0, 2.0, 2.0, 0.0, 0.0, 1.0, 1.0];
        let b = [1.0f64, 1.0, 3.0, 3.0, 0.0, 0.0, 1.0, 1.0];
        let none = box_iou_loss(IouLoss::Generalized, &a, &b, 1e-7, Reduction::None).unwrap();
        assert!(none[1].abs() < 1e-6);
        let sum = box_iou_loss(IouLoss::Generalized, &a, &b, 1e-7, Reduction::Sum).unwrap();
        assert_eq!(sum, vec![none[0] + none[1]]);
        assert!(box_iou_loss(IouLoss::Distance, &a, &b[..4], 1e-7, Reduction::None).is_err());
        assert!(Reduction::parse("f", "avg").is_err());
        assert!(IouLoss::parse("box_iou_loss", "iou").is_err());
        assert_eq!(IouKind::parse("pairwise_iou", "ciou").unwrap(), IouKind::Complete);
    }
}
