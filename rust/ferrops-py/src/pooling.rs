//! Bindings of `ferrops_core::pooling`. Inputs arrive as C-contiguous float32 or
//! float64 NCHW arrays (the Python layer casts them); gradients and regions in the
//! input's dtype.

use ferrops_core::pooling::{self, PoolMode, Shape};
use ferrops_core::{ensure, FerropsError};
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{Element, IntoPyArray, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

use crate::convert::{extract_array, for_float_dtype};
use crate::error::BindingResult;
use crate::run::run_kernel;

/// A C-contiguous array of element type `T` (the dtype of the function's first
/// array) and its shape.
fn array<'py, T: Element>(
    function: &'static str,
    argument: &'static str,
    obj: &Bound<'py, PyAny>,
) -> BindingResult<PyReadonlyArrayDyn<'py, T>> {
    let array: PyReadonlyArrayDyn<'py, T> =
        extract_array(function, argument, "an array of the dtype the kernel takes here", obj)?;
    ensure!(array.is_c_contiguous(), FerropsError::value(function, argument, "a contiguous array", "a strided view"));
    Ok(array)
}

fn nchw(function: &'static str, argument: &'static str, dims: &[usize]) -> BindingResult<Shape> {
    match dims {
        &[n, c, h, w] => Ok(Shape::new([n, c, h, w])),
        _ => Err(FerropsError::value(function, argument, "a 4-D [N, C, H, W] array", format!("shape {dims:?}")).into()),
    }
}

fn data<'a, T: Element>(array: &'a PyReadonlyArrayDyn<'_, T>) -> &'a [T] {
    array.as_slice().expect("checked to be C-contiguous")
}

fn owned<T: Element>(py: Python<'_>, values: Vec<T>, dims: &[usize]) -> BindingResult<Py<PyAny>> {
    let array = ArrayD::from_shape_vec(IxDyn(dims), values).expect("the kernel returned a value per output element");
    Ok(array.into_pyarray(py).into_py_any(py)?)
}

#[pyfunction]
fn max_pool2d<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    kernel_size: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> BindingResult<Py<PyAny>> {
    for_float_dtype!("max_pool2d", "input", x, T => {
        let a_array = array::<T>("max_pool2d", "input", x)?;
        let a = data(&a_array);
        let s = nchw("max_pool2d", "input", a_array.shape())?;
        let (out, [oh, ow]) = run_kernel(py, || pooling::max_pool2d(a, s, kernel_size, stride, padding))?;
        owned(py, out, &[s.n, s.c, oh, ow])
    })
}

#[pyfunction]
fn max_pool2d_backward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    kernel_size: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    grad_output: &Bound<'py, PyAny>,
) -> BindingResult<Py<PyAny>> {
    const F: &str = "max_pool2d_backward";
    for_float_dtype!("max_pool2d_backward", "input", x, T => {
        let a_array = array::<T>(F, "input", x)?;
        let a = data(&a_array);
        let g_array = array::<T>(F, "grad_output", grad_output)?;
        let g = data(&g_array);
        let s = nchw(F, "input", a_array.shape())?;
        let out = run_kernel(py, || pooling::max_pool2d_backward(a, s, kernel_size, stride, padding, g))?;
        owned(py, out, a_array.shape())
    })
}

#[pyfunction]
fn sppf<'py>(py: Python<'py>, x: &Bound<'py, PyAny>, kernel_size: usize) -> BindingResult<Py<PyAny>> {
    for_float_dtype!("sppf", "input", x, T => {
        let a_array = array::<T>("sppf", "input", x)?;
        let a = data(&a_array);
        let s = nchw("sppf", "input", a_array.shape())?;
        let out = run_kernel(py, || pooling::sppf(a, s, kernel_size))?;
        owned(py, out, &[s.n, 4 * s.c, s.h, s.w])
    })
}

#[pyfunction]
fn sppf_backward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    kernel_size: usize,
    grad_output: &Bound<'py, PyAny>,
) -> BindingResult<Py<PyAny>> {
    const F: &str = "sppf_backward";
    for_float_dtype!("sppf_backward", "input", x, T => {
        let a_array = array::<T>(F, "input", x)?;
        let a = data(&a_array);
        let g_array = array::<T>(F, "grad_output", grad_output)?;
        let g = data(&g_array);
        let s = nchw(F, "input", a_array.shape())?;
        let out = run_kernel(py, || pooling::sppf_backward(a, s, kernel_size, g))?;
        owned(py, out, a_array.shape())
    })
}

/// `mode` is "max" or "avg".
#[pyfunction]
fn adaptive_pool2d<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    output_size: [usize; 2],
    mode: &str,
) -> BindingResult<Py<PyAny>> {
    const F: &str = "adaptive_pool2d";
    let m = PoolMode::parse(F, mode)?;
    for_float_dtype!("adaptive_pool2d", "input", x, T => {
        let a_array = array::<T>(F, "input", x)?;
        let a = data(&a_array);
        let s = nchw(F, "input", a_array.shape())?;
        let out = run_kernel(py, || pooling::adaptive_pool2d(a, s, output_size, m))?;
        owned(py, out, &[s.n, s.c, output_size[0], output_size[1]])
    })
}

/// Returns `(values, indices)`, indices int64 flat in each plane.
#[pyfunction]
fn adaptive_max_pool2d_with_indices<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    output_size: [usize; 2],
) -> BindingResult<(Py<PyAny>, Py<PyAny>)> {
    const F: &str = "adaptive_max_pool2d";
    for_float_dtype!("adaptive_max_pool2d", "input", x, T => {
        let a_array = array::<T>(F, "input", x)?;
        let a = data(&a_array);
        let s = nchw(F, "input", a_array.shape())?;
        let (values, indices) = run_kernel(py, || pooling::adaptive_max_pool2d_with_indices(a, s, output_size))?;
        let dims = [s.n, s.c, output_size[0], output_size[1]];
        Ok((owned(py, values, &dims)?, owned(py, indices, &dims)?))
    })
}

#[pyfunction]
fn adaptive_pool2d_backward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    output_size: [usize; 2],
    mode: &str,
    grad_output: &Bound<'py, PyAny>,
) -> BindingResult<Py<PyAny>> {
    const F: &str = "adaptive_pool2d_backward";
    let m = PoolMode::parse(F, mode)?;
    for_float_dtype!("adaptive_pool2d_backward", "input", x, T => {
        let a_array = array::<T>(F, "input", x)?;
        let a = data(&a_array);
        let g_array = array::<T>(F, "grad_output", grad_output)?;
        let g = data(&g_array);
        let s = nchw(F, "input", a_array.shape())?;
        let out = run_kernel(py, || pooling::adaptive_pool2d_backward(a, s, output_size, m, g))?;
        owned(py, out, a_array.shape())
    })
}

#[pyfunction]
fn spatial_pyramid_pool<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    levels: Vec<usize>,
    mode: &str,
) -> BindingResult<Py<PyAny>> {
    const F: &str = "spatial_pyramid_pool";
    let m = PoolMode::parse(F, mode)?;
    for_float_dtype!("spatial_pyramid_pool", "input", x, T => {
        let a_array = array::<T>(F, "input", x)?;
        let a = data(&a_array);
        let s = nchw(F, "input", a_array.shape())?;
        let out = run_kernel(py, || pooling::spatial_pyramid_pool(a, s, &levels, m))?;
        let features = s.c * levels.iter().map(|n| n * n).sum::<usize>();
        owned(py, out, &[s.n, features])
    })
}

#[pyfunction]
fn spatial_pyramid_pool_backward<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    levels: Vec<usize>,
    mode: &str,
    grad_output: &Bound<'py, PyAny>,
) -> BindingResult<Py<PyAny>> {
    const F: &str = "spatial_pyramid_pool_backward";
    let m = PoolMode::parse(F, mode)?;
    for_float_dtype!("spatial_pyramid_pool_backward", "input", x, T => {
        let a_array = array::<T>(F, "input", x)?;
        let a = data(&a_array);
        let g_array = array::<T>(F, "grad_output", grad_output)?;
        let g = data(&g_array);
        let s = nchw(F, "input", a_array.shape())?;
        let out = run_kernel(py, || pooling::spatial_pyramid_pool_backward(a, s, &levels, m, g))?;
        owned(py, out, a_array.shape())
    })
}

/// `boxes` is `[K, 5]` `(batch_index, x1, y1, x2, y2)` in the input's dtype.
#[pyfunction]
fn roi_pool<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    boxes: &Bound<'py, PyAny>,
    output_size: [usize; 2],
    spatial_scale: f64,
) -> BindingResult<Py<PyAny>> {
    const F: &str = "roi_pool";
    for_float_dtype!("roi_pool", "input", x, T => {
        let a_array = array::<T>(F, "input", x)?;
        let a = data(&a_array);
        let r_array = array::<T>(F, "boxes", boxes)?;
        let r = data(&r_array);
        let s = nchw(F, "input", a_array.shape())?;
        let values = run_kernel(py, || pooling::roi_pool(a, s, r, output_size, spatial_scale))?;
        owned(py, values, &[r.len() / 5, s.c, output_size[0], output_size[1]])
    })
}

/// [`roi_pool`] and each bin's arg max (flat in its plane, -1 when none): `(values, argmax)`.
#[pyfunction]
fn roi_pool_with_argmax<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    boxes: &Bound<'py, PyAny>,
    output_size: [usize; 2],
    spatial_scale: f64,
) -> BindingResult<(Py<PyAny>, Py<PyAny>)> {
    const F: &str = "roi_pool";
    for_float_dtype!("roi_pool", "input", x, T => {
        let a_array = array::<T>(F, "input", x)?;
        let a = data(&a_array);
        let r_array = array::<T>(F, "boxes", boxes)?;
        let r = data(&r_array);
        let s = nchw(F, "input", a_array.shape())?;
        let (values, argmax) = run_kernel(py, || pooling::roi_pool_with_argmax(a, s, r, output_size, spatial_scale))?;
        let dims = [r.len() / 5, s.c, output_size[0], output_size[1]];
        Ok((owned(py, values, &dims)?, owned(py, argmax, &dims)?))
    })
}

#[pyfunction]
fn roi_pool_backward<'py>(
    py: Python<'py>,
    grad_output: &Bound<'py, PyAny>,
    argmax: &Bound<'py, PyAny>,
    boxes: &Bound<'py, PyAny>,
    input_shape: [usize; 4],
    output_size: [usize; 2],
) -> BindingResult<Py<PyAny>> {
    const F: &str = "roi_pool_backward";
    for_float_dtype!("roi_pool_backward", "grad_output", grad_output, T => {
        let g_array = array::<T>(F, "grad_output", grad_output)?;
        let g = data(&g_array);
        let i_array = array::<i64>(F, "argmax", argmax)?;
        let i = data(&i_array);
        let r_array = array::<T>(F, "boxes", boxes)?;
        let r = data(&r_array);
        let s = Shape::new(input_shape);
        let out = run_kernel(py, || pooling::roi_pool_backward(g, i, r, s, output_size))?;
        owned(py, out, &input_shape)
    })
}

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn roi_align<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    boxes: &Bound<'py, PyAny>,
    output_size: [usize; 2],
    spatial_scale: f64,
    sampling_ratio: i64,
    aligned: bool,
) -> BindingResult<Py<PyAny>> {
    const F: &str = "roi_align";
    for_float_dtype!("roi_align", "input", x, T => {
        let a_array = array::<T>(F, "input", x)?;
        let a = data(&a_array);
        let r_array = array::<T>(F, "boxes", boxes)?;
        let r = data(&r_array);
        let s = nchw(F, "input", a_array.shape())?;
        let out = run_kernel(py, || {
            pooling::roi_align(a, s, r, output_size, spatial_scale, sampling_ratio, aligned)
        })?;
        owned(py, out, &[r.len() / 5, s.c, output_size[0], output_size[1]])
    })
}

#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn roi_align_backward<'py>(
    py: Python<'py>,
    grad_output: &Bound<'py, PyAny>,
    boxes: &Bound<'py, PyAny>,
    input_shape: [usize; 4],
    output_size: [usize; 2],
    spatial_scale: f64,
    sampling_ratio: i64,
    aligned: bool,
) -> BindingResult<Py<PyAny>> {
    const F: &str = "roi_align_backward";
    for_float_dtype!("roi_align_backward", "grad_output", grad_output, T => {
        let g_array = array::<T>(F, "grad_output", grad_output)?;
        let g = data(&g_array);
        let r_array = array::<T>(F, "boxes", boxes)?;
        let r = data(&r_array);
        let s = Shape::new(input_shape);
        let out = run_kernel(py, || {
            pooling::roi_align_backward(g, r, s, output_size, spatial_scale, sampling_ratio, aligned)
        })?;
        owned(py, out, &input_shape)
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(max_pool2d, m)?)?;
    m.add_function(wrap_pyfunction!(max_pool2d_backward, m)?)?;
    m.add_function(wrap_pyfunction!(sppf, m)?)?;
    m.add_function(wrap_pyfunction!(sppf_backward, m)?)?;
    m.add_function(wrap_pyfunction!(adaptive_pool2d, m)?)?;
    m.add_function(wrap_pyfunction!(adaptive_max_pool2d_with_indices, m)?)?;
    m.add_function(wrap_pyfunction!(adaptive_pool2d_backward, m)?)?;
    m.add_function(wrap_pyfunction!(spatial_pyramid_pool, m)?)?;
    m.add_function(wrap_pyfunction!(spatial_pyramid_pool_backward, m)?)?;
    m.add_function(wrap_pyfunction!(roi_pool, m)?)?;
    m.add_function(wrap_pyfunction!(roi_pool_with_argmax, m)?)?;
    m.add_function(wrap_pyfunction!(roi_pool_backward, m)?)?;
    m.add_function(wrap_pyfunction!(roi_align, m)?)?;
    m.add_function(wrap_pyfunction!(roi_align_backward, m)?)?;
    Ok(())
}
