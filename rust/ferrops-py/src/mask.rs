//! Bindings of `ferrops_core::mask` (the `ferrops.mask` module). RLE objects
//! arrive as Python lists of `{"size": [h, w], "counts": ...}` dicts and are read
//! here, their compressed strings parsed in parallel inside the kernel call; masks
//! and boxes arrive as flat contiguous arrays the Python layer prepared. Results
//! go back as lists of dicts whose `counts` are `bytes`, as pycocotools returns.

use ferrops_core::mask::rle::{self, RunRule};
use ferrops_core::mask::{compress_all, parse_all, polygon, RleInput};
use ferrops_core::FerropsError;
use numpy::PyReadonlyArray1;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyList, PyString};
use pyo3::IntoPyObjectExt;

use crate::convert::{owned1, owned2, slice1};
use crate::error::BindingResult;
use crate::run::run_kernel;

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_default()
}

/// `[h, w]`: two non-negative integers.
fn read_size(function: &'static str, argument: &str, obj: &Bound<'_, PyAny>) -> BindingResult<(u64, u64)> {
    let expected = "'size' of two non-negative integers [h, w]";
    let size: Vec<i64> =
        obj.extract().map_err(|_| FerropsError::type_(function, argument.to_string(), expected, type_name(obj)))?;
    match size[..] {
        [h, w] if h >= 0 && w >= 0 => Ok((h as u64, w as u64)),
        _ => Err(FerropsError::value(function, argument.to_string(), expected, format!("{size:?}")).into()),
    }
}

fn read_rle(function: &'static str, argument: &str, obj: &Bound<'_, PyAny>) -> BindingResult<RleInput> {
    let expected = "an RLE dict {'size': [h, w], 'counts': bytes | str | list of ints}";
    let dict = obj
        .cast::<PyDict>()
        .map_err(|_| FerropsError::type_(function, argument.to_string(), expected, type_name(obj)))?;
    let (Some(size), Some(counts)) = (dict.get_item("size")?, dict.get_item("counts")?) else {
        return Err(
            FerropsError::value(function, argument.to_string(), expected, "a dict without 'size' or 'counts'").into()
        );
    };
    let (h, w) = read_size(function, &format!("{argument}['size']"), &size)?;
    if let Ok(bytes) = counts.cast::<PyBytes>() {
        return Ok(RleInput::Compressed { h, w, counts: bytes.as_bytes().to_vec() });
    }
    if let Ok(text) = counts.cast::<PyString>() {
        return Ok(RleInput::Compressed { h, w, counts: text.to_str()?.as_bytes().to_vec() });
    }
    let counts_argument = format!("{argument}['counts']");
    let values: Vec<i64> = counts.extract().map_err(|_| {
        FerropsError::type_(
            function,
            counts_argument.clone(),
            "bytes, str or a list of run lengths",
            type_name(&counts),
        )
    })?;
    let counts =
        values.iter().map(|&c| u32::try_from(c)).collect::<Result<Vec<u32>, _>>().map_err(|_| {
            FerropsError::value(function, counts_argument, "run lengths in [0, 2**32)", "a value outside")
        })?;
    Ok(RleInput::Uncompressed { h, w, counts })
}

/// Reads a list of RLE dicts (their structure only; [`parse`] checks the runs).
fn read_rles(function: &'static str, argument: &'static str, list: &Bound<'_, PyList>) -> BindingResult<Vec<RleInput>> {
    list.iter().enumerate().map(|(i, obj)| read_rle(function, &format!("{argument}[{i}]"), &obj)).collect()
}

/// `{"size": [h, w], "counts": bytes}` dicts of compressed strings.
fn to_dicts<'py>(py: Python<'py>, rles: &[(u32, u32, Vec<u8>)]) -> BindingResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    // Each dict gets its own size list, of int objects made once per size
    // (masks of a call mostly share one).
    let (mut ints, mut ints_size): (Option<[Bound<'py, PyAny>; 2]>, (u32, u32)) = (None, (0, 0));
    for (h, w, counts) in rles {
        if ints.is_none() || ints_size != (*h, *w) {
            (ints, ints_size) = (Some([h.into_bound_py_any(py)?, w.into_bound_py_any(py)?]), (*h, *w));
        }
        let ints = ints.as_ref().expect("set above");
        let dict = PyDict::new(py);
        dict.set_item(intern!(py, "size"), PyList::new(py, ints)?)?;
        dict.set_item(intern!(py, "counts"), PyBytes::new(py, counts))?;
        list.append(dict)?;
    }
    Ok(list)
}

/// Encodes `n` masks of `[h, w]` held in `data` (column-major masks one after
/// the other, or row-major ones when `row_major`).
#[pyfunction]
#[pyo3(signature = (data, h, w, n, row_major, nonzero))]
fn mask_encode<'py>(
    py: Python<'py>,
    data: PyReadonlyArray1<'py, u8>,
    h: u64,
    w: u64,
    n: usize,
    row_major: bool,
    nonzero: bool,
) -> BindingResult<Bound<'py, PyList>> {
    let bytes = slice1("encode", "bimask", &data)?;
    let rule = if nonzero { RunRule::NonZero } else { RunRule::ValueChange };
    let out = run_kernel(py, || {
        let rles =
            if row_major { rle::encode_row_major(bytes, h, w, n, rule) } else { rle::encode(bytes, h, w, n, rule) }?;
        Ok(compress_all(rles))
    })?;
    to_dicts(py, &out)
}

/// `(flat masks, h, w)`: the `[H, W, N]` Fortran-order bytes of the masks.
#[pyfunction]
fn mask_decode<'py>(py: Python<'py>, rles: &Bound<'py, PyList>) -> BindingResult<(Py<PyAny>, u32, u32)> {
    let raw = read_rles("decode", "rleObjs", rles)?;
    let (out, h, w) = run_kernel(py, || {
        let rles = parse_all("decode", "rleObjs", raw)?;
        let (h, w) = rles.first().map_or((0, 0), |r| (r.h, r.w));
        Ok((rle::decode(&rles)?, h, w))
    })?;
    Ok((owned1(py, out).into_py_any(py)?, h, w))
}

#[pyfunction]
fn mask_area<'py>(py: Python<'py>, rles: &Bound<'py, PyList>) -> BindingResult<Py<PyAny>> {
    let raw = read_rles("area", "rleObjs", rles)?;
    let out = run_kernel(py, || Ok(parse_all("area", "rleObjs", raw)?.iter().map(rle::area).collect::<Vec<u32>>()))?;
    Ok(owned1(py, out).into_py_any(py)?)
}

#[pyfunction]
fn mask_to_bbox<'py>(py: Python<'py>, rles: &Bound<'py, PyList>) -> BindingResult<Py<PyAny>> {
    let raw = read_rles("toBbox", "rleObjs", rles)?;
    let out = run_kernel(py, || {
        Ok(parse_all("toBbox", "rleObjs", raw)?.iter().flat_map(rle::to_bbox).collect::<Vec<f64>>())
    })?;
    let n = out.len() / 4;
    Ok(owned2(py, out, n, 4).into_py_any(py)?)
}

#[pyfunction]
fn mask_merge<'py>(py: Python<'py>, rles: &Bound<'py, PyList>, intersect: bool) -> BindingResult<Bound<'py, PyAny>> {
    let raw = read_rles("merge", "rleObjs", rles)?;
    let out = run_kernel(py, || {
        let merged = rle::merge(&parse_all("merge", "rleObjs", raw)?, intersect)?;
        Ok(compress_all(vec![merged]))
    })?;
    Ok(to_dicts(py, &out)?.get_item(0)?)
}

/// `[m, n]` IoU of RLE lists.
#[pyfunction]
fn mask_iou<'py>(
    py: Python<'py>,
    dt: &Bound<'py, PyList>,
    gt: &Bound<'py, PyList>,
    iscrowd: PyReadonlyArray1<'py, bool>,
) -> BindingResult<Py<PyAny>> {
    let (raw_dt, raw_gt) = (read_rles("iou", "dt", dt)?, read_rles("iou", "gt", gt)?);
    let crowd = slice1("iou", "iscrowd", &iscrowd)?;
    let (m, n) = (raw_dt.len(), raw_gt.len());
    let out = run_kernel(py, || rle::iou(&parse_all("iou", "dt", raw_dt)?, &parse_all("iou", "gt", raw_gt)?, crowd))?;
    Ok(owned2(py, out, m, n).into_py_any(py)?)
}

fn boxes_of(values: &[f64]) -> Vec<[f64; 4]> {
    values.chunks_exact(4).map(|b| [b[0], b[1], b[2], b[3]]).collect()
}

/// `[m, n]` IoU of `[x, y, w, h]` boxes given flat (4 values per box).
#[pyfunction]
fn mask_box_iou<'py>(
    py: Python<'py>,
    dt: PyReadonlyArray1<'py, f64>,
    gt: PyReadonlyArray1<'py, f64>,
    iscrowd: PyReadonlyArray1<'py, bool>,
) -> BindingResult<Py<PyAny>> {
    let (d, g) = (boxes_of(slice1("iou", "dt", &dt)?), boxes_of(slice1("iou", "gt", &gt)?));
    let crowd = slice1("iou", "iscrowd", &iscrowd)?;
    let (m, n) = (d.len(), g.len());
    let out = run_kernel(py, || rle::box_iou(&d, &g, crowd))?;
    Ok(owned2(py, out, m, n).into_py_any(py)?)
}

/// `[N, M]` IoU of two sets of dense masks of `pixels` bytes each (non-zero is
/// foreground), read in memory order as masks of `[h, w]`.
#[pyfunction]
#[pyo3(signature = (a, b, h, w))]
fn mask_dense_iou<'py>(
    py: Python<'py>,
    a: PyReadonlyArray1<'py, u8>,
    b: PyReadonlyArray1<'py, u8>,
    h: u64,
    w: u64,
) -> BindingResult<Py<PyAny>> {
    let (a, b) = (slice1("mask_iou", "masks_a", &a)?, slice1("mask_iou", "masks_b", &b)?);
    let pixels = (h * w).max(1) as usize;
    let (m, n) = (a.len() / pixels, b.len() / pixels);
    let out = run_kernel(py, || {
        let ra = rle::encode(a, h, w, m, RunRule::NonZero)?;
        let rb = rle::encode(b, h, w, n, RunRule::NonZero)?;
        rle::iou(&ra, &rb, &vec![false; n])
    })?;
    Ok(owned2(py, out, m, n).into_py_any(py)?)
}

/// Rasterises a list of polygons (each a sequence of at least 6 numbers, even
/// in count), read here straight from the Python objects.
#[pyfunction]
fn mask_from_polygons<'py>(
    py: Python<'py>,
    polygons: &Bound<'py, PyList>,
    h: u64,
    w: u64,
) -> BindingResult<Bound<'py, PyList>> {
    const F: &str = "frPyObjects";
    let mut coords: Vec<f64> = Vec::new();
    let mut offsets = vec![0usize];
    for (i, polygon) in polygons.iter().enumerate() {
        let not_a_polygon = || {
            FerropsError::type_(
                F,
                format!("pyobj[{i}]"),
                "a polygon [x0, y0, x1, y1, ...] of numbers",
                type_name(&polygon),
            )
        };
        let start = coords.len();
        if let Ok(list) = polygon.cast::<PyList>() {
            // Lists of floats straight into `coords`: no array or Vec per polygon.
            coords.reserve(list.len());
            for item in list.iter() {
                let value = match item.cast::<PyFloat>() {
                    Ok(float) => float.value(),
                    Err(_) => item.extract::<f64>().map_err(|_| not_a_polygon())?,
                };
                coords.push(value);
            }
        } else if let Ok(array) = polygon.extract::<PyReadonlyArray1<'py, f64>>() {
            coords.extend_from_slice(slice1(F, "pyobj", &array)?);
        } else {
            let xy: Vec<f64> = polygon.extract().map_err(|_| not_a_polygon())?;
            coords.extend_from_slice(&xy);
        }
        let len = coords.len() - start;
        if len < 6 || len % 2 == 1 {
            let got = format!("{len} coordinates");
            let expected = "a polygon of at least 3 points (an even count >= 6)";
            return Err(FerropsError::value(F, format!("pyobj[{i}]"), expected, got).into());
        }
        offsets.push(coords.len());
    }
    let out = run_kernel(py, || polygon::from_polygons_compressed(F, "pyobj", &coords, &offsets, h, w))?;
    to_dicts(py, &out)
}

#[pyfunction]
fn mask_from_boxes<'py>(
    py: Python<'py>,
    boxes: PyReadonlyArray1<'py, f64>,
    h: u64,
    w: u64,
) -> BindingResult<Bound<'py, PyList>> {
    let boxes = slice1("frPyObjects", "pyobj", &boxes)?;
    let out = run_kernel(py, || Ok(compress_all(polygon::from_boxes("frPyObjects", "pyobj", boxes, h, w)?)))?;
    to_dicts(py, &out)
}

/// Compresses uncompressed RLE dicts (list `counts`; compressed ones pass through
/// checked and re-written).
#[pyfunction]
fn mask_compress<'py>(py: Python<'py>, rles: &Bound<'py, PyList>) -> BindingResult<Bound<'py, PyList>> {
    let raw = read_rles("frPyObjects", "pyobj", rles)?;
    let out = run_kernel(py, || Ok(compress_all(parse_all("frPyObjects", "pyobj", raw)?)))?;
    to_dicts(py, &out)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(mask_encode, m)?)?;
    m.add_function(wrap_pyfunction!(mask_decode, m)?)?;
    m.add_function(wrap_pyfunction!(mask_area, m)?)?;
    m.add_function(wrap_pyfunction!(mask_to_bbox, m)?)?;
    m.add_function(wrap_pyfunction!(mask_merge, m)?)?;
    m.add_function(wrap_pyfunction!(mask_iou, m)?)?;
    m.add_function(wrap_pyfunction!(mask_box_iou, m)?)?;
    m.add_function(wrap_pyfunction!(mask_dense_iou, m)?)?;
    m.add_function(wrap_pyfunction!(mask_from_polygons, m)?)?;
    m.add_function(wrap_pyfunction!(mask_from_boxes, m)?)?;
    m.add_function(wrap_pyfunction!(mask_compress, m)?)?;
    Ok(())
}
