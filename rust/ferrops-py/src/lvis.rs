//! Bindings of `ferrops_core::detection::lvis`: an LVIS ground truth and its
//! results held in Rust (the Python `LVIS` / `LVISResults` keep a handle), and
//! lvis-api's bbox and segm evaluation.

use std::sync::Arc;

use ferrops_core::detection::coco::{self, CocoDataset, Origin};
use ferrops_core::detection::cocoeval::IouType;
use ferrops_core::detection::lvis::{self, LvisGroundTruth, LvisParams, LvisResults, ResultLimits};
use ferrops_core::FerropsError;
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert::{owned1, owned2, slice1, slice2};
use crate::error::BindingResult;
use crate::run::{run_kernel, run_kernel_interruptible};

/// The annotation columns of a dataset: id, image_id, category_id (int64), bbox
/// (float64 [N, 4] xywh), area, score (float64, NaN where absent).
fn columns<'py>(py: Python<'py>, d: &CocoDataset) -> BindingResult<Bound<'py, PyDict>> {
    let a = &d.annotations;
    let out = PyDict::new(py);
    out.set_item("id", owned1(py, a.id.clone()))?;
    out.set_item("image_id", owned1(py, a.image_id.clone()))?;
    out.set_item("category_id", owned1(py, a.category_id.clone()))?;
    out.set_item("bbox", owned2(py, a.bbox.iter().flatten().copied().collect(), a.len(), 4))?;
    out.set_item("area", owned1(py, a.area.clone()))?;
    out.set_item("score", owned1(py, a.score.clone()))?;
    Ok(out)
}

/// A parsed LVIS ground truth, read-only.
#[pyclass(frozen, module = "ferrops._core")]
pub struct LvisData {
    inner: Arc<LvisGroundTruth>,
}

#[pymethods]
impl LvisData {
    fn __len__(&self) -> usize {
        self.inner.coco.annotations.len()
    }

    /// Image ids in file order (int64).
    fn image_ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        owned1(py, self.inner.coco.image_ids.clone()).into_any()
    }

    /// Category ids in file order (int64).
    fn category_ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        owned1(py, self.inner.coco.category_ids.clone()).into_any()
    }

    /// Per category in file order: 0 rare, 1 common, 2 frequent; raises the
    /// ground truth's federated-field error when `frequency` is missing.
    fn frequencies<'py>(&self, py: Python<'py>) -> BindingResult<Bound<'py, PyAny>> {
        let federated = self.inner.federated("LVISEval")?;
        Ok(owned1(py, federated.frequency.iter().map(|&f| f as i64).collect()).into_any())
    }

    fn columns<'py>(&self, py: Python<'py>) -> BindingResult<Bound<'py, PyDict>> {
        columns(py, &self.inner.coco)
    }
}

/// Detection results cut as `LVISResults` cuts them, read-only.
#[pyclass(frozen, module = "ferrops._core")]
pub struct LvisResultsData {
    inner: Arc<LvisResults>,
}

#[pymethods]
impl LvisResultsData {
    fn __len__(&self) -> usize {
        self.inner.dataset.annotations.len()
    }

    /// The columns, and `source_row` (int64): each record's index in the input list.
    fn columns<'py>(&self, py: Python<'py>) -> BindingResult<Bound<'py, PyDict>> {
        let out = columns(py, &self.inner.dataset)?;
        out.set_item("source_row", owned1(py, self.inner.source_rows.iter().map(|&j| i64::from(j)).collect()))?;
        Ok(out)
    }

    /// Whether some record carries a `segmentation` (mask results, or box
    /// results with masks beside).
    #[getter]
    fn has_segmentation(&self) -> bool {
        let d = &self.inner.dataset;
        d.masks.get().is_some() || d.annotations.segmentation.iter().any(Option::is_some)
    }
}

/// Parses an LVIS ground-truth JSON; `source` names the file in error messages.
#[pyfunction]
fn lvis_parse_ground_truth(py: Python<'_>, json: &[u8], source: &str) -> BindingResult<LvisData> {
    let origin = Origin { function: "LVIS", argument: "annotation_path", source };
    let inner = run_kernel(py, || lvis::parse_lvis_ground_truth(json, &origin))?;
    Ok(LvisData { inner: Arc::new(inner) })
}

/// Parses a results JSON list (box or mask results, as `LVISResults` reads
/// them) against its ground truth and cuts it (`None`: no cut).
#[pyfunction]
fn lvis_parse_results(
    py: Python<'_>,
    json: &[u8],
    ground_truth: &LvisData,
    source: &str,
    max_dets: Option<usize>,
    max_dets_per_cat: Option<usize>,
) -> BindingResult<LvisResultsData> {
    const F: &str = "LVISResults";
    let origin = Origin { function: F, argument: "results", source };
    let gt = &ground_truth.inner.coco;
    let limits = ResultLimits { per_image: max_dets, per_category: max_dets_per_cat };
    let inner = run_kernel(py, || {
        let parsed = coco::parse_results(json, gt, &origin)?;
        lvis::limit_results(parsed, gt, limits, F, source)
    })?;
    Ok(LvisResultsData { inner: Arc::new(inner) })
}

/// The per-(category, area, image) results of `evaluate`, consumed by `accumulate`.
#[pyclass(frozen, module = "ferrops._core")]
pub struct LvisEvaluation {
    inner: lvis::LvisEvaluation,
    shape: (usize, usize),
}

/// A binding mirrors lvis-api's `Params` fields, one argument each.
#[allow(clippy::too_many_arguments)]
#[pyfunction]
fn lvis_evaluate(
    py: Python<'_>,
    ground_truth: &LvisData,
    detections: &LvisResultsData,
    img_ids: PyReadonlyArray1<'_, i64>,
    cat_ids: PyReadonlyArray1<'_, i64>,
    iou_thrs: PyReadonlyArray1<'_, f64>,
    area_rngs: PyReadonlyArray2<'_, f64>,
    iou_type: &str,
) -> BindingResult<LvisEvaluation> {
    const F: &str = "LVISEval.evaluate";
    // Keypoints are refused by the core, with the others.
    let iou_type = IouType::from_name(iou_type)
        .ok_or_else(|| FerropsError::value(F, "params.iou_type", "'bbox' or 'segm'", format!("{iou_type:?}")))?;
    let area_rngs: Vec<[f64; 2]> =
        slice2(F, "params.area_rng", 2, &area_rngs)?.chunks_exact(2).map(|r| [r[0], r[1]]).collect();
    let params = LvisParams {
        img_ids: slice1(F, "params.img_ids", &img_ids)?,
        cat_ids: slice1(F, "params.cat_ids", &cat_ids)?,
        iou_thrs: slice1(F, "params.iou_thrs", &iou_thrs)?,
        area_rngs: &area_rngs,
        iou_type,
    };
    let (gt, dt) = (&ground_truth.inner, &detections.inner);
    // As the COCO evaluation: ~300 ns of matching per record and threshold.
    let records = (gt.coco.annotations.len() + dt.dataset.annotations.len()) as u128;
    let work = records * params.iou_thrs.len().max(1) as u128 * 30;
    let inner = run_kernel_interruptible(py, work, |cancel| lvis::evaluate(gt, dt, &params, cancel))?;
    let shape = (params.cat_ids.len(), area_rngs.len());
    Ok(LvisEvaluation { inner, shape })
}

type Float64Array<'py> = Bound<'py, PyArrayDyn<f64>>;

fn shaped<'py>(py: Python<'py>, values: Vec<f64>, shape: &[usize]) -> Float64Array<'py> {
    ArrayD::from_shape_vec(IxDyn(shape), values).expect("the kernel returned a full array").into_pyarray(py)
}

/// `(precision [T, R, K, A], recall [T, K, A])`.
#[pyfunction]
fn lvis_accumulate<'py>(
    py: Python<'py>,
    evaluation: &LvisEvaluation,
    rec_thrs: PyReadonlyArray1<'_, f64>,
) -> BindingResult<(Float64Array<'py>, Float64Array<'py>)> {
    let rec_thrs = slice1("LVISEval.accumulate", "params.rec_thrs", &rec_thrs)?;
    let (k, a) = evaluation.shape;
    let e = &evaluation.inner;
    let t = e.num_thresholds();
    let (precision, recall) = run_kernel(py, || lvis::accumulate(e, rec_thrs))?;
    Ok((shaped(py, precision, &[t, rec_thrs.len(), k, a]), shaped(py, recall, &[t, k, a])))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<LvisData>()?;
    m.add_class::<LvisResultsData>()?;
    m.add_class::<LvisEvaluation>()?;
    m.add_function(wrap_pyfunction!(lvis_parse_ground_truth, m)?)?;
    m.add_function(wrap_pyfunction!(lvis_parse_results, m)?)?;
    m.add_function(wrap_pyfunction!(lvis_evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(lvis_accumulate, m)?)?;
    Ok(())
}
