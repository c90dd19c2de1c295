//! Bindings of `ferrops_core::detection`: COCO datasets held in Rust (the Python
//! `COCO` object keeps a handle), the bbox evaluation and VOC AP.

use std::collections::HashMap;
use std::sync::Arc;

use ferrops_core::detection::coco::json_tokens::{Decoded, JsonStr, JsonToken, JsonTokens};
use ferrops_core::detection::coco::{self, CocoDataset, GroundTruthColumns, Origin, ResultColumns};
use ferrops_core::detection::cocoeval::{self, AccumulateParams, EvalParams, Evaluation, IouType};
use ferrops_core::detection::tide::{tide_run, TideParams};
use ferrops_core::detection::voc::{self, VocClass};
use ferrops_core::FerropsError;
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{IntoPyArray, PyArray1, PyArray2, PyArrayDyn, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString};

use crate::convert::{owned1, owned2, slice1, slice2};
use crate::error::BindingResult;
use crate::run::{run_kernel, run_kernel_interruptible};

/// A parsed COCO dataset (ground truth or bbox results), read-only.
#[pyclass(frozen, module = "ferrops._core")]
pub struct CocoData {
    inner: Arc<CocoDataset>,
}

#[pymethods]
impl CocoData {
    fn __len__(&self) -> usize {
        self.inner.annotations.len()
    }

    /// Image ids in file order (int64).
    fn image_ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        owned1(py, self.inner.image_ids.clone()).into_any()
    }

    /// The string ids: string `k` is the id whose code is `-2**63 + k`.
    fn id_strings(&self) -> Vec<String> {
        self.inner.id_strings.strings().iter().map(|s| s.to_string()).collect()
    }

    /// Category ids in file order (int64).
    fn category_ids<'py>(&self, py: Python<'py>) -> Bound<'py, PyAny> {
        owned1(py, self.inner.category_ids.clone()).into_any()
    }

    /// The annotations as columns: id, image_id, category_id (int64), bbox
    /// (float64 [N, 4] xywh), area, score (float64, NaN where absent), iscrowd (bool).
    fn columns<'py>(&self, py: Python<'py>) -> BindingResult<Bound<'py, PyDict>> {
        let a = &self.inner.annotations;
        let out = PyDict::new(py);
        out.set_item("id", owned1(py, a.id.clone()))?;
        out.set_item("image_id", owned1(py, a.image_id.clone()))?;
        out.set_item("category_id", owned1(py, a.category_id.clone()))?;
        out.set_item("bbox", owned2(py, a.bbox.iter().flatten().copied().collect(), a.len(), 4))?;
        out.set_item("area", owned1(py, a.area.clone()))?;
        out.set_item("iscrowd", owned1(py, a.iscrowd.clone()))?;
        out.set_item("score", owned1(py, a.score.clone()))?;
        if a.keypoints.any() {
            // CSR: record j's keypoints are values[ends[j - 1]:ends[j]] where present[j].
            let csr = a.keypoints.csr();
            out.set_item("keypoints_values", owned1(py, csr.values))?;
            out.set_item("keypoints_ends", owned1(py, csr.ends.iter().map(|&e| e as i64).collect()))?;
            out.set_item("keypoints_present", owned1(py, csr.present))?;
        }
        Ok(out)
    }

    /// Whether the first record has a `segmentation` (what `loadRes` and the
    /// CLI go by): mask results keep only their masks, box results what was written.
    #[getter]
    fn leads_with_segmentation(&self) -> bool {
        let d = &self.inner;
        let mask_results = !d.box_segmentation && d.masks.get().is_some_and(|m| !m.is_empty());
        mask_results || d.annotations.segmentation.first().is_some_and(Option::is_some)
    }

    /// Whether the first record has `keypoints` (what the CLI goes by when
    /// the results lead with no segmentation).
    #[getter]
    fn leads_with_keypoints(&self) -> bool {
        self.inner.annotations.keypoints.get(0).is_some()
    }
}

/// A JSON string as Python's `json` makes it (lone surrogates included).
fn py_string<'py>(py: Python<'py>, s: JsonStr<'_>) -> PyResult<Bound<'py, PyAny>> {
    match s.decode() {
        Decoded::Text(text) => Ok(PyString::new(py, &text).into_any()),
        Decoded::WithSurrogates(bytes) => PyBytes::new(py, &bytes).call_method1("decode", ("utf-8", "surrogatepass")),
    }
}

/// An array or object being filled, with an object's pending key.
enum Open<'py> {
    List(Bound<'py, PyList>),
    Dict(Bound<'py, PyDict>, Option<Bound<'py, PyAny>>),
}

/// A whole JSON text as the Python objects `json.loads` would make, read by the
/// reader that judges COCO files (so `dataset` agrees with the load); errors
/// name `function`, `argument` and `source`.
#[pyfunction]
fn coco_load_json<'py>(
    py: Python<'py>,
    json: &[u8],
    source: &str,
    function: String,
    argument: String,
) -> BindingResult<Bound<'py, PyAny>> {
    let mut tokens = JsonTokens::new(json);
    let mut open: Vec<Open<'py>> = Vec::new();
    // Keys repeat in every record: one Python string per distinct key, as json's memo.
    let mut keys: HashMap<&[u8], Bound<'py, PyAny>> = HashMap::new();
    let int = py.import("builtins")?.getattr("int")?;
    loop {
        let token = tokens.next().map_err(|e| {
            FerropsError::value(function.clone(), argument.clone(), "JSON", format!("{source}: invalid JSON ({e})"))
        })?;
        let value: Bound<'py, PyAny> = match token {
            None => unreachable!("the reader ends after the top-level value"),
            Some(JsonToken::ArrayStart) => {
                open.push(Open::List(PyList::empty(py)));
                continue;
            }
            Some(JsonToken::ObjectStart) => {
                open.push(Open::Dict(PyDict::new(py), None));
                continue;
            }
            Some(JsonToken::Key(k)) => {
                let key = match keys.get(k.raw) {
                    Some(key) if !k.escaped => key.clone(),
                    _ => {
                        let key = py_string(py, k)?;
                        if !k.escaped {
                            keys.insert(k.raw, key.clone());
                        }
                        key
                    }
                };
                if let Some(Open::Dict(_, pending)) = open.last_mut() {
                    *pending = Some(key);
                }
                continue;
            }
            Some(JsonToken::ArrayEnd | JsonToken::ObjectEnd) => match open.pop().expect("a container is open") {
                Open::List(list) => list.into_any(),
                Open::Dict(dict, _) => dict.into_any(),
            },
            Some(JsonToken::Str(s)) => py_string(py, s)?,
            Some(JsonToken::Int(v)) => PyInt::new(py, v).into_any(),
            Some(JsonToken::BigInt(text)) => int.call1((text,))?,
            Some(JsonToken::Float(v)) => PyFloat::new(py, v).into_any(),
            Some(JsonToken::Bool(v)) => PyBool::new(py, v).to_owned().into_any(),
            Some(JsonToken::Null) => py.None().into_bound(py),
        };
        match open.last_mut() {
            None => return Ok(value),
            Some(Open::List(list)) => list.append(value)?,
            Some(Open::Dict(dict, pending)) => dict.set_item(pending.take().expect("a key precedes a value"), value)?,
        }
    }
}

fn wrap(dataset: CocoDataset) -> CocoData {
    CocoData { inner: Arc::new(dataset) }
}

/// Parses ground-truth COCO JSON; `source` names the file in error messages.
#[pyfunction]
fn coco_parse_ground_truth(py: Python<'_>, json: &[u8], source: &str) -> BindingResult<CocoData> {
    let origin = Origin { function: "COCO", argument: "annotation_file", source };
    Ok(wrap(run_kernel(py, || coco::parse_ground_truth(json, &origin))?))
}

/// Parses a bbox results JSON list against its ground truth (`loadRes`).
#[pyfunction]
fn coco_parse_results(py: Python<'_>, json: &[u8], ground_truth: &CocoData, source: &str) -> BindingResult<CocoData> {
    let origin = Origin { function: "COCO.loadRes", argument: "resFile", source };
    let gt = &ground_truth.inner;
    Ok(wrap(run_kernel(py, || coco::parse_results(json, gt, &origin))?))
}

/// bbox results from columns (`loadRes` of an `[N, 7]` array).
#[pyfunction]
#[pyo3(signature = (ground_truth, image_id, category_id, bbox, score, area, source))]
#[allow(clippy::too_many_arguments)]
fn coco_results_from_arrays(
    py: Python<'_>,
    ground_truth: &CocoData,
    image_id: PyReadonlyArray1<'_, i64>,
    category_id: PyReadonlyArray1<'_, i64>,
    bbox: PyReadonlyArray2<'_, f64>,
    score: PyReadonlyArray1<'_, f64>,
    area: Option<PyReadonlyArray1<'_, f64>>,
    source: &str,
) -> BindingResult<CocoData> {
    const F: &str = "COCO.loadRes";
    let area = area.as_ref().map(|a| slice1(F, "resFile", a)).transpose()?;
    let columns = ResultColumns {
        image_id: slice1(F, "resFile", &image_id)?,
        category_id: slice1(F, "resFile", &category_id)?,
        bbox: slice2(F, "resFile", 4, &bbox)?,
        score: slice1(F, "resFile", &score)?,
        area,
    };
    let origin = Origin { function: F, argument: "resFile", source };
    let gt = &ground_truth.inner;
    Ok(wrap(run_kernel(py, || coco::results_from_columns(&columns, gt, &origin))?))
}

/// Ground truth from columns (used by `MeanAveragePrecision`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn coco_ground_truth_from_arrays(
    py: Python<'_>,
    image_ids: PyReadonlyArray1<'_, i64>,
    category_ids: PyReadonlyArray1<'_, i64>,
    id: PyReadonlyArray1<'_, i64>,
    image_id: PyReadonlyArray1<'_, i64>,
    category_id: PyReadonlyArray1<'_, i64>,
    bbox: PyReadonlyArray2<'_, f64>,
    area: PyReadonlyArray1<'_, f64>,
    iscrowd: PyReadonlyArray1<'_, bool>,
    source: &str,
) -> BindingResult<CocoData> {
    const F: &str = "COCO";
    let columns = GroundTruthColumns {
        image_ids: slice1(F, "annotation_file", &image_ids)?,
        category_ids: slice1(F, "annotation_file", &category_ids)?,
        id: slice1(F, "annotation_file", &id)?,
        image_id: slice1(F, "annotation_file", &image_id)?,
        category_id: slice1(F, "annotation_file", &category_id)?,
        bbox: slice2(F, "annotation_file", 4, &bbox)?,
        area: slice1(F, "annotation_file", &area)?,
        iscrowd: slice1(F, "annotation_file", &iscrowd)?,
    };
    let origin = Origin { function: F, argument: "annotation_file", source };
    Ok(wrap(run_kernel(py, || coco::ground_truth_from_columns(&columns, &origin))?))
}

/// The per-(category, area, image) results of `evaluate`, consumed by
/// `accumulate`; pycocotools' `evalImgs` entries and `ious` matrices are
/// recomputed from it on demand.
#[pyclass(frozen, module = "ferrops._core")]
pub struct CocoEvaluation {
    inner: Evaluation,
}

/// One `evalImgs` entry's arrays: `(dtIds, gtIds, dtMatches [T, D], gtMatches
/// [T, G], dtScores, gtIgnore [G] int64, dtIgnore [T, D] bool)`.
type EntryArrays<'py> = (
    Vec<i64>,
    Vec<i64>,
    Bound<'py, PyArray2<f64>>,
    Bound<'py, PyArray2<f64>>,
    Vec<f64>,
    Bound<'py, PyArray1<i64>>,
    Bound<'py, PyArray2<bool>>,
);

#[pymethods]
impl CocoEvaluation {
    /// pycocotools' `len(evalImgs)`.
    fn __len__(&self) -> usize {
        self.inner.len()
    }

    #[getter]
    fn num_thresholds(&self) -> usize {
        self.inner.num_thresholds()
    }

    /// `evalImgs[start:stop]` (computed in parallel): `None` or the entry's arrays.
    fn entries<'py>(&self, py: Python<'py>, start: usize, stop: usize) -> BindingResult<Vec<Option<EntryArrays<'py>>>> {
        let e = &self.inner;
        let found = run_kernel(py, || e.image_evaluations(start..stop))?;
        let t = e.num_thresholds();
        Ok(found
            .into_iter()
            .map(|entry| {
                entry.map(|x| {
                    let (d, g) = (x.dt_ids.len(), x.gt_ids.len());
                    (
                        x.dt_ids,
                        x.gt_ids,
                        owned2(py, x.dt_matches, t, d),
                        owned2(py, x.gt_matches, t, g),
                        x.dt_scores,
                        owned1(py, x.gt_ignore.into_iter().map(i64::from).collect()),
                        owned2(py, x.dt_ignore, t, d),
                    )
                })
            })
            .collect())
    }

    /// pycocotools' `ious[imgId, catId]` of unit `unit` (`k * I + i`, or `i`
    /// with pooled categories): `[D, G]`, or `None` for its empty list.
    fn unit_ious<'py>(&self, py: Python<'py>, unit: usize) -> BindingResult<Option<Bound<'py, PyArray2<f64>>>> {
        let e = &self.inner;
        let found = run_kernel(py, || e.unit_ious(unit))?;
        Ok(found.map(|(values, d, g)| owned2(py, values, d, g)))
    }
}

#[pyfunction]
#[pyo3(signature = (ground_truth, detections, img_ids, cat_ids, use_cats, iou_thrs, area_rngs, max_det, iou_type = "bbox", kpt_oks_sigmas = None))]
#[allow(clippy::too_many_arguments)]
fn coco_evaluate(
    py: Python<'_>,
    ground_truth: &CocoData,
    detections: &CocoData,
    img_ids: PyReadonlyArray1<'_, i64>,
    cat_ids: PyReadonlyArray1<'_, i64>,
    use_cats: bool,
    iou_thrs: PyReadonlyArray1<'_, f64>,
    area_rngs: PyReadonlyArray2<'_, f64>,
    max_det: usize,
    iou_type: &str,
    kpt_oks_sigmas: Option<PyReadonlyArray1<'_, f64>>,
) -> BindingResult<CocoEvaluation> {
    const F: &str = "COCOeval.evaluate";
    let iou_type = IouType::from_name(iou_type).ok_or_else(|| {
        FerropsError::value(F, "params.iouType", "'bbox', 'segm' or 'keypoints'", format!("{iou_type:?}"))
    })?;
    let area_rngs: Vec<[f64; 2]> =
        slice2(F, "params.areaRng", 2, &area_rngs)?.chunks_exact(2).map(|r| [r[0], r[1]]).collect();
    let params = EvalParams {
        img_ids: slice1(F, "params.imgIds", &img_ids)?,
        cat_ids: slice1(F, "params.catIds", &cat_ids)?,
        use_cats,
        iou_thrs: slice1(F, "params.iouThrs", &iou_thrs)?,
        area_rngs: &area_rngs,
        max_det,
        iou_type,
        kpt_oks_sigmas: match &kpt_oks_sigmas {
            Some(sigmas) => slice1(F, "params.kpt_oks_sigmas", sigmas)?,
            None => &[],
        },
    };
    let (gt, dt) = (&ground_truth.inner, &detections.inner);
    // About 300 ns of matching per record and threshold (5,000 images, 136k
    // records: ~40 ms), so sets of a few thousand records stay on the free path;
    // masks cost more (their conversion and IoU): counted as ten thresholds more.
    let records = (gt.annotations.len() + dt.annotations.len()) as u128;
    let masks = if iou_type == IouType::Segm { 10 } else { 0 };
    let work = records * (params.iou_thrs.len().max(1) + masks) as u128 * 30;
    let inner = run_kernel_interruptible(py, work, |cancel| cocoeval::evaluate(gt, dt, &params, cancel))?;
    Ok(CocoEvaluation { inner })
}

type Float64Array<'py> = Bound<'py, PyArrayDyn<f64>>;

fn shaped<'py>(py: Python<'py>, values: Vec<f64>, shape: &[usize]) -> Bound<'py, PyArrayDyn<f64>> {
    ArrayD::from_shape_vec(IxDyn(shape), values).expect("the kernel returned a full array").into_pyarray(py)
}

/// `(precision [K,T,R,A,M], recall [K,T,A,M], scores [K,T,R,A,M])`: category
/// first (pycocotools' arrays with the K axis moved first; Python moves it back
/// as a view).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn coco_accumulate<'py>(
    py: Python<'py>,
    evaluation: &CocoEvaluation,
    k_list: Vec<usize>,
    a_list: Vec<usize>,
    m_list: Vec<usize>,
    i_list: Vec<usize>,
    num_categories: usize,
    num_areas: usize,
    num_max_dets: usize,
    rec_thrs: PyReadonlyArray1<'_, f64>,
) -> BindingResult<(Float64Array<'py>, Float64Array<'py>, Float64Array<'py>)> {
    let params = AccumulateParams {
        k_list: &k_list,
        a_list: &a_list,
        m_list: &m_list,
        i_list: &i_list,
        num_categories,
        num_areas,
        num_max_dets,
        rec_thrs: slice1("COCOeval.accumulate", "params.recThrs", &rec_thrs)?,
    };
    let e = &evaluation.inner;
    let out = run_kernel(py, || cocoeval::accumulate(e, &params))?;
    let [t, r, k, a, m] = out.shape;
    Ok((
        shaped(py, out.precision, &[k, t, r, a, m]),
        shaped(py, out.recall, &[k, t, a, m]),
        shaped(py, out.scores, &[k, t, r, a, m]),
    ))
}

#[pyfunction]
fn voc_ap(
    py: Python<'_>,
    recall: PyReadonlyArray1<'_, f64>,
    precision: PyReadonlyArray1<'_, f64>,
    use_07_metric: bool,
) -> BindingResult<f64> {
    let r = slice1("voc_ap", "recall", &recall)?;
    let p = slice1("voc_ap", "precision", &precision)?;
    Ok(run_kernel(py, || voc::voc_ap(r, p, use_07_metric))?)
}

/// `(recall, precision)` of one class, detections in score order.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn voc_eval<'py>(
    py: Python<'py>,
    det_image_ids: PyReadonlyArray1<'_, i64>,
    det_boxes: PyReadonlyArray2<'_, f64>,
    det_scores: PyReadonlyArray1<'_, f64>,
    gt_image_ids: PyReadonlyArray1<'_, i64>,
    gt_boxes: PyReadonlyArray2<'_, f64>,
    gt_difficult: PyReadonlyArray1<'_, bool>,
    iou_threshold: f64,
    pixel_offset: f64,
) -> BindingResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    const F: &str = "voc_eval";
    let class = VocClass {
        det_image_ids: slice1(F, "det_image_ids", &det_image_ids)?,
        det_boxes: slice2(F, "det_boxes", 4, &det_boxes)?,
        det_scores: slice1(F, "det_scores", &det_scores)?,
        gt_image_ids: slice1(F, "gt_image_ids", &gt_image_ids)?,
        gt_boxes: slice2(F, "gt_boxes", 4, &gt_boxes)?,
        gt_difficult: slice1(F, "gt_difficult", &gt_difficult)?,
    };
    let (rec, prec) = run_kernel(py, || voc::voc_eval(&class, iou_threshold, pixel_offset))?;
    Ok((owned1(py, rec).into_any(), owned1(py, prec).into_any()))
}

/// TIDE's per-image stage (`ferrops.coco.analysis.tide`): its data points,
/// errors and classes as a dict of arrays.
#[pyfunction]
fn coco_tide<'py>(
    py: Python<'py>,
    ground_truth: &CocoData,
    detections: &CocoData,
    pos_thresh: f64,
    bg_thresh: f64,
    max_dets: usize,
    mode: &str,
) -> BindingResult<Bound<'py, PyDict>> {
    let (gt, dt) = (&ground_truth.inner, &detections.inner);
    // tidecv's modes: TIDE.BOX is "bbox", TIDE.MASK is "mask".
    let iou_type = match mode {
        "bbox" => IouType::Bbox,
        "mask" => IouType::Segm,
        other => return Err(FerropsError::value("tide", "mode", "'bbox' or 'mask'", format!("{other:?}")).into()),
    };
    let params = TideParams { pos_thresh, bg_thresh, max_dets, iou_type };
    let work = (gt.annotations.len() + dt.annotations.len()) as u128 * 200;
    let r = run_kernel_interruptible(py, work, |cancel| tide_run(gt, dt, &params, cancel))?;
    let out = PyDict::new(py);
    out.set_item("point_class", owned1(py, r.point_class))?;
    out.set_item("point_id", owned1(py, r.point_id))?;
    out.set_item("point_score", owned1(py, r.point_score))?;
    out.set_item("point_true", owned1(py, r.point_true))?;
    out.set_item("error_kind", owned1(py, r.error_kind))?;
    out.set_item("error_id", owned1(py, r.error_id))?;
    out.set_item("error_has_original", owned1(py, r.error_has_original))?;
    out.set_item("error_original_class", owned1(py, r.error_original_class))?;
    out.set_item("error_score", owned1(py, r.error_score))?;
    out.set_item("error_fix", owned1(py, r.error_fix))?;
    out.set_item("error_fixed_class", owned1(py, r.error_fixed_class))?;
    out.set_item("classes", owned1(py, r.classes))?;
    out.set_item("gt_positives", owned1(py, r.gt_positives))?;
    out.set_item("false_negatives", owned1(py, r.false_negatives))?;
    Ok(out)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CocoData>()?;
    m.add_class::<CocoEvaluation>()?;
    m.add_function(wrap_pyfunction!(coco_load_json, m)?)?;
    m.add_function(wrap_pyfunction!(coco_parse_ground_truth, m)?)?;
    m.add_function(wrap_pyfunction!(coco_parse_results, m)?)?;
    m.add_function(wrap_pyfunction!(coco_results_from_arrays, m)?)?;
    m.add_function(wrap_pyfunction!(coco_ground_truth_from_arrays, m)?)?;
    m.add_function(wrap_pyfunction!(coco_evaluate, m)?)?;
    m.add_function(wrap_pyfunction!(coco_accumulate, m)?)?;
    m.add_function(wrap_pyfunction!(coco_tide, m)?)?;
    m.add_function(wrap_pyfunction!(voc_ap, m)?)?;
    m.add_function(wrap_pyfunction!(voc_eval, m)?)?;
    Ok(())
}
