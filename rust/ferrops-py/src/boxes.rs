//! Bindings of `ferrops_core::boxes`. Arguments arrive as C-contiguous float32 or
//! float64 arrays of one dtype (the Python layer casts them).

use ferrops_core::boxes::{
    self, BoxFormat, ConfType, Convention, IouKind, IouLoss, MatrixKernel, OverlapMode, Reduction, SoftMethod,
};
use ferrops_core::Real;
use numpy::{Element, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

use crate::convert::{for_float_dtype, owned1, owned2, slice1, slice2};
use crate::error::BindingResult;
use crate::run::{run_kernel, run_kernel_interruptible};

fn boxes_arg<'py, T: Element>(obj: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArray2<'py, T>> {
    obj.extract()
}

fn vector_arg<'py, T: Element>(obj: &Bound<'py, PyAny>) -> PyResult<PyReadonlyArray1<'py, T>> {
    obj.extract()
}

#[pyfunction]
fn box_area<'py>(py: Python<'py>, boxes: &Bound<'py, PyAny>) -> BindingResult<Py<PyAny>> {
    for_float_dtype!("box_area", "boxes", boxes, T => {
        let b = boxes_arg::<T>(boxes)?;
        let b = slice2("box_area", "boxes", 4, &b)?;
        let out = run_kernel(py, || boxes::box_area(b))?;
        Ok(owned1(py, out).into_py_any(py)?)
    })
}

#[pyfunction]
fn box_convert<'py>(
    py: Python<'py>,
    boxes: &Bound<'py, PyAny>,
    in_fmt: &str,
    out_fmt: &str,
) -> BindingResult<Py<PyAny>> {
    let from = BoxFormat::parse("box_convert", "in_fmt", in_fmt)?;
    let to = BoxFormat::parse("box_convert", "out_fmt", out_fmt)?;
    for_float_dtype!("box_convert", "boxes", boxes, T => {
        let b = boxes_arg::<T>(boxes)?;
        let b = slice2("box_convert", "boxes", 4, &b)?;
        let out = run_kernel(py, || boxes::box_convert(b, from, to))?;
        Ok(owned2(py, out, b.len() / 4, 4).into_py_any(py)?)
    })
}

/// `kind` is one of "iou", "giou", "diou", "ciou".
#[pyfunction]
fn pairwise_iou<'py>(
    py: Python<'py>,
    kind: &str,
    boxes1: &Bound<'py, PyAny>,
    boxes2: &Bound<'py, PyAny>,
) -> BindingResult<Py<PyAny>> {
    let kind = IouKind::parse("pairwise_iou", kind)?;
    for_float_dtype!("pairwise_iou", "boxes1", boxes1, T => {
        let (a, b) = (boxes_arg::<T>(boxes1)?, boxes_arg::<T>(boxes2)?);
        let (a, b) = (slice2("pairwise_iou", "boxes1", 4, &a)?, slice2("pairwise_iou", "boxes2", 4, &b)?);
        let out = run_kernel(py, || boxes::pairwise_iou(kind, a, b))?;
        Ok(owned2(py, out, a.len() / 4, b.len() / 4).into_py_any(py)?)
    })
}

/// Elementwise GIoU/DIoU/CIoU loss (`kind` "giou", "diou" or "ciou"); a reduced
/// loss comes back as a 1-element array.
#[pyfunction]
fn box_iou_loss<'py>(
    py: Python<'py>,
    kind: &str,
    boxes1: &Bound<'py, PyAny>,
    boxes2: &Bound<'py, PyAny>,
    reduction: &str,
    eps: f64,
) -> BindingResult<Py<PyAny>> {
    let kind = IouLoss::parse("box_iou_loss", kind)?;
    let reduction = Reduction::parse("box_iou_loss", reduction)?;
    for_float_dtype!("box_iou_loss", "boxes1", boxes1, T => {
        let (a, b) = (boxes_arg::<T>(boxes1)?, boxes_arg::<T>(boxes2)?);
        let (a, b) = (slice2("box_iou_loss", "boxes1", 4, &a)?, slice2("box_iou_loss", "boxes2", 4, &b)?);
        let out = run_kernel(py, || boxes::box_iou_loss(kind, a, b, eps, reduction))?;
        Ok(owned1(py, out).into_py_any(py)?)
    })
}

/// The greedy walks' work in elementary steps: sorting and walking a box costs
/// about 64 of them on detector-like inputs (50,000 boxes in about 10 ms), so
/// the usual sizes (up to 65,536 boxes) run on the free path and millions of
/// boxes are interruptible. (A walk that keeps every box, all overlapping at
/// `iou_threshold=1`, is quadratic: 60,000 such boxes take about 1.4 s.)
fn greedy_work(boxes: usize) -> u128 {
    boxes as u128 * 64
}

/// Soft NMS rescores every live box after each selection: about 4 steps per
/// `n^2` (20,000 boxes in 1.6 s), so up to 1,024 boxes take the free path.
fn soft_work(boxes: usize) -> u128 {
    boxes as u128 * boxes as u128 * 4
}

/// Matrix NMS's two triangular passes each take an IoU and a kernel value per
/// pair: about 32 steps per `n^2` (20,000 boxes in 8 s on 2 threads).
fn matrix_work(boxes: usize) -> u128 {
    boxes as u128 * boxes as u128 * 32
}

fn boxes_and_scores<'a, T: Element + Real>(
    function: &'static str,
    b: &'a PyReadonlyArray2<'_, T>,
    s: &'a PyReadonlyArray1<'_, T>,
) -> PyResult<(&'a [T], &'a [T])> {
    Ok((slice2(function, "boxes", 4, b)?, slice1(function, "scores", s)?))
}

#[pyfunction]
#[pyo3(signature = (boxes, scores, iou_threshold, max_output=None))]
fn nms<'py>(
    py: Python<'py>,
    boxes: &Bound<'py, PyAny>,
    scores: &Bound<'py, PyAny>,
    iou_threshold: f64,
    max_output: Option<usize>,
) -> BindingResult<Py<PyAny>> {
    for_float_dtype!("nms", "boxes", boxes, T => {
        let (b, s) = (boxes_arg::<T>(boxes)?, vector_arg::<T>(scores)?);
        let (b, s) = boxes_and_scores("nms", &b, &s)?;
        let work = greedy_work(s.len());
        let keep = run_kernel_interruptible(py, work, |cancel| boxes::nms(b, s, iou_threshold, max_output, cancel))?;
        Ok(owned1(py, keep).into_py_any(py)?)
    })
}

#[pyfunction]
#[pyo3(signature = (boxes, scores, idxs, iou_threshold, max_output=None))]
fn batched_nms<'py>(
    py: Python<'py>,
    boxes: &Bound<'py, PyAny>,
    scores: &Bound<'py, PyAny>,
    idxs: PyReadonlyArray1<'py, i64>,
    iou_threshold: f64,
    max_output: Option<usize>,
) -> BindingResult<Py<PyAny>> {
    let classes = slice1("batched_nms", "idxs", &idxs)?;
    for_float_dtype!("batched_nms", "boxes", boxes, T => {
        let (b, s) = (boxes_arg::<T>(boxes)?, vector_arg::<T>(scores)?);
        let (b, s) = boxes_and_scores("batched_nms", &b, &s)?;
        let work = greedy_work(s.len());
        let keep = run_kernel_interruptible(py, work, |cancel| {
            boxes::batched_nms(b, s, classes, iou_threshold, max_output, cancel)
        })?;
        Ok(owned1(py, keep).into_py_any(py)?)
    })
}

/// Returns `(keep: int64[K], scores: float[K])`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn soft_nms<'py>(
    py: Python<'py>,
    boxes: &Bound<'py, PyAny>,
    scores: &Bound<'py, PyAny>,
    iou_threshold: f64,
    sigma: f64,
    score_threshold: f64,
    method: &str,
) -> BindingResult<(Py<PyAny>, Py<PyAny>)> {
    let method = SoftMethod::parse(method)?;
    for_float_dtype!("soft_nms", "boxes", boxes, T => {
        let (b, s) = (boxes_arg::<T>(boxes)?, vector_arg::<T>(scores)?);
        let (b, s) = boxes_and_scores("soft_nms", &b, &s)?;
        let (keep, kept_scores) = run_kernel_interruptible(py, soft_work(s.len()), |cancel| {
            boxes::soft_nms(b, s, iou_threshold, sigma, score_threshold, method, cancel)
        })?;
        Ok((owned1(py, keep).into_py_any(py)?, owned1(py, kept_scores).into_py_any(py)?))
    })
}

#[pyfunction]
#[pyo3(signature = (boxes, scores, idxs, kernel, sigma))]
fn matrix_nms<'py>(
    py: Python<'py>,
    boxes: &Bound<'py, PyAny>,
    scores: &Bound<'py, PyAny>,
    idxs: Option<PyReadonlyArray1<'py, i64>>,
    kernel: &str,
    sigma: f64,
) -> BindingResult<Py<PyAny>> {
    let kernel = MatrixKernel::parse(kernel)?;
    let classes = match &idxs {
        Some(i) => Some(slice1("matrix_nms", "idxs", i)?),
        None => None,
    };
    for_float_dtype!("matrix_nms", "boxes", boxes, T => {
        let (b, s) = (boxes_arg::<T>(boxes)?, vector_arg::<T>(scores)?);
        let (b, s) = boxes_and_scores("matrix_nms", &b, &s)?;
        let out = run_kernel_interruptible(py, matrix_work(s.len()), |cancel| {
            boxes::matrix_nms(b, s, classes, kernel, sigma, cancel)
        })?;
        Ok(owned1(py, out).into_py_any(py)?)
    })
}

/// `[B * N, 4]` and `[B * M, 4]` boxes give the flat `[B * N * M]` matrices.
#[pyfunction]
fn pairwise_iou_batched<'py>(
    py: Python<'py>,
    kind: &str,
    boxes1: &Bound<'py, PyAny>,
    boxes2: &Bound<'py, PyAny>,
    batch: usize,
) -> BindingResult<Py<PyAny>> {
    let kind = IouKind::parse("pairwise_iou", kind)?;
    for_float_dtype!("pairwise_iou", "boxes1", boxes1, T => {
        let (a, b) = (boxes_arg::<T>(boxes1)?, boxes_arg::<T>(boxes2)?);
        let (a, b) = (slice2("pairwise_iou", "boxes1", 4, &a)?, slice2("pairwise_iou", "boxes2", 4, &b)?);
        let out = run_kernel(py, || boxes::pairwise_iou_batched(kind, a, b, batch))?;
        Ok(owned1(py, out).into_py_any(py)?)
    })
}

/// Rotated overlaps: `[N, M]`, or `[N]` when `aligned`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn box_iou_rotated<'py>(
    py: Python<'py>,
    boxes1: &Bound<'py, PyAny>,
    boxes2: &Bound<'py, PyAny>,
    mode: &str,
    aligned: bool,
    angle_unit: &str,
    clockwise: bool,
) -> BindingResult<Py<PyAny>> {
    const NAME: &str = "box_iou_rotated";
    let mode = OverlapMode::parse(NAME, mode)?;
    let convention = Convention::parse(NAME, angle_unit, clockwise)?;
    for_float_dtype!(NAME, "boxes1", boxes1, T => {
        let (a, b) = (boxes_arg::<T>(boxes1)?, boxes_arg::<T>(boxes2)?);
        let (a, b) = (slice2(NAME, "boxes1", 5, &a)?, slice2(NAME, "boxes2", 5, &b)?);
        let out = run_kernel(py, || boxes::box_iou_rotated(a, b, mode, aligned, convention))?;
        if aligned {
            Ok(owned1(py, out).into_py_any(py)?)
        } else {
            Ok(owned2(py, out, a.len() / 5, b.len() / 5).into_py_any(py)?)
        }
    })
}

/// A rotated pair's polygon clipping is ~16 greedy steps' worth of work.
fn rotated_work(boxes: usize) -> u128 {
    greedy_work(boxes) * 16
}

#[pyfunction]
fn nms_rotated<'py>(
    py: Python<'py>,
    boxes: &Bound<'py, PyAny>,
    scores: &Bound<'py, PyAny>,
    iou_threshold: f64,
    angle_unit: &str,
    clockwise: bool,
) -> BindingResult<Py<PyAny>> {
    let convention = Convention::parse("nms_rotated", angle_unit, clockwise)?;
    for_float_dtype!("nms_rotated", "boxes", boxes, T => {
        let (b, s) = (boxes_arg::<T>(boxes)?, vector_arg::<T>(scores)?);
        let (b, s) = (slice2("nms_rotated", "boxes", 5, &b)?, slice1("nms_rotated", "scores", &s)?);
        let keep = run_kernel_interruptible(py, rotated_work(s.len()), |cancel| {
            boxes::nms_rotated(b, s, iou_threshold, convention, cancel)
        })?;
        Ok(owned1(py, keep).into_py_any(py)?)
    })
}

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn batched_nms_rotated<'py>(
    py: Python<'py>,
    boxes: &Bound<'py, PyAny>,
    scores: &Bound<'py, PyAny>,
    idxs: PyReadonlyArray1<'py, i64>,
    iou_threshold: f64,
    angle_unit: &str,
    clockwise: bool,
) -> BindingResult<Py<PyAny>> {
    const NAME: &str = "batched_nms_rotated";
    let convention = Convention::parse(NAME, angle_unit, clockwise)?;
    let classes = slice1(NAME, "idxs", &idxs)?;
    for_float_dtype!(NAME, "boxes", boxes, T => {
        let (b, s) = (boxes_arg::<T>(boxes)?, vector_arg::<T>(scores)?);
        let (b, s) = (slice2(NAME, "boxes", 5, &b)?, slice1(NAME, "scores", &s)?);
        let keep = run_kernel_interruptible(py, rotated_work(s.len()), |cancel| {
            boxes::batched_nms_rotated(b, s, classes, iou_threshold, convention, cancel)
        })?;
        Ok(owned1(py, keep).into_py_any(py)?)
    })
}

/// WBF's clustering and rescaling over prepared rows (`[K, 8]` float64, see
/// `ferrops_core::boxes::weighted_boxes_fusion`); returns the fused `[C, 8]` rows.
#[pyfunction]
fn weighted_boxes_fusion<'py>(
    py: Python<'py>,
    rows: PyReadonlyArray2<'py, f64>,
    group_ends: PyReadonlyArray1<'py, i64>,
    weights: PyReadonlyArray1<'py, f64>,
    iou_thr: f64,
    conf_type: &str,
    allows_overflow: bool,
) -> BindingResult<Py<PyAny>> {
    const NAME: &str = "weighted_boxes_fusion";
    let conf = ConfType::parse(conf_type)?;
    let r = slice2(NAME, "rows", 8, &rows)?;
    let ends: Vec<usize> = slice1(NAME, "group_ends", &group_ends)?.iter().map(|&e| e.max(0) as usize).collect();
    let w = slice1(NAME, "weights", &weights)?;
    let out = run_kernel(py, || boxes::weighted_boxes_fusion(r, &ends, w, iou_thr, conf, allows_overflow))?;
    let clusters = out.len() / 8;
    Ok(owned2(py, out, clusters, 8).into_py_any(py)?)
}

/// NMW's clustering and weighting over prepared rows (as for
/// `weighted_boxes_fusion`); returns the fused `[C, 6]` float32 rows.
#[pyfunction]
fn non_maximum_weighted<'py>(
    py: Python<'py>,
    rows: PyReadonlyArray2<'py, f64>,
    group_ends: PyReadonlyArray1<'py, i64>,
    iou_thr: f64,
) -> BindingResult<Py<PyAny>> {
    const NAME: &str = "non_maximum_weighted";
    let r = slice2(NAME, "rows", 8, &rows)?;
    let ends: Vec<usize> = slice1(NAME, "group_ends", &group_ends)?.iter().map(|&e| e.max(0) as usize).collect();
    let out = run_kernel(py, || boxes::non_maximum_weighted(r, &ends, iou_thr))?;
    let clusters = out.len() / 6;
    Ok(owned2(py, out, clusters, 6).into_py_any(py)?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(pairwise_iou_batched, m)?)?;
    m.add_function(wrap_pyfunction!(box_iou_rotated, m)?)?;
    m.add_function(wrap_pyfunction!(nms_rotated, m)?)?;
    m.add_function(wrap_pyfunction!(batched_nms_rotated, m)?)?;
    m.add_function(wrap_pyfunction!(weighted_boxes_fusion, m)?)?;
    m.add_function(wrap_pyfunction!(non_maximum_weighted, m)?)?;
    m.add_function(wrap_pyfunction!(box_area, m)?)?;
    m.add_function(wrap_pyfunction!(box_convert, m)?)?;
    m.add_function(wrap_pyfunction!(pairwise_iou, m)?)?;
    m.add_function(wrap_pyfunction!(box_iou_loss, m)?)?;
    m.add_function(wrap_pyfunction!(nms, m)?)?;
    m.add_function(wrap_pyfunction!(batched_nms, m)?)?;
    m.add_function(wrap_pyfunction!(soft_nms, m)?)?;
    m.add_function(wrap_pyfunction!(matrix_nms, m)?)?;
    Ok(())
}
