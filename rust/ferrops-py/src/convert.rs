//! Argument conversion shared by every binding: float dtype dispatch, checked
//! views of NumPy arrays, and owned results handed to NumPy without a copy.
//!
//! The helpers return `PyResult`, which a binding's `?` takes whether the binding
//! returns `PyResult` or [`BindingResult`](crate::error::BindingResult); their own
//! errors are [`FerropsError`]s raised through [`BindingError`] like the core's.

use ferrops_core::FerropsError;
use numpy::ndarray::{Array1, Array2};
use numpy::{
    Element, IntoPyArray, PyArray1, PyArray2, PyArrayDescrMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use crate::error::BindingError;

/// The float element types kernels are compiled for. The Python layer casts every
/// other dtype to one of these before calling in.
pub enum FloatDtype {
    F32,
    F64,
}

/// What `obj` is, for a TypeError: its dtype if it is a NumPy array, else its type.
fn kind_of(obj: &Bound<'_, PyAny>) -> String {
    match obj.cast::<PyUntypedArray>() {
        Ok(array) => array.dtype().to_string(),
        Err(_) => type_name(obj),
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_default()
}

/// `obj` as a NumPy array of any dtype.
pub fn untyped_array<'a, 'py>(
    function: &'static str,
    argument: &'static str,
    obj: &'a Bound<'py, PyAny>,
) -> PyResult<&'a Bound<'py, PyUntypedArray>> {
    match obj.cast::<PyUntypedArray>() {
        Ok(array) => Ok(array),
        Err(_) => {
            Err(BindingError::from(FerropsError::type_(function, argument, "a NumPy array", type_name(obj))).into())
        }
    }
}

/// `obj` extracted as the typed array view `A`; when it is not one (another dtype,
/// rank or type), a TypeError saying `expected` and what `obj` is instead.
pub fn extract_array<'a, 'py, A: FromPyObject<'a, 'py>>(
    function: &'static str,
    argument: &'static str,
    expected: &'static str,
    obj: &'a Bound<'py, PyAny>,
) -> PyResult<A> {
    match obj.extract() {
        Ok(array) => Ok(array),
        Err(_) => Err(BindingError::from(FerropsError::type_(function, argument, expected, kind_of(obj))).into()),
    }
}

pub fn float_dtype(function: &'static str, argument: &'static str, obj: &Bound<'_, PyAny>) -> PyResult<FloatDtype> {
    let py = obj.py();
    let dtype = untyped_array(function, argument, obj)?.dtype();
    if dtype.is_equiv_to(&numpy::dtype::<f32>(py)) {
        Ok(FloatDtype::F32)
    } else if dtype.is_equiv_to(&numpy::dtype::<f64>(py)) {
        Ok(FloatDtype::F64)
    } else {
        Err(BindingError::from(FerropsError::type_(function, argument, "float32 or float64", dtype.to_string())).into())
    }
}

/// Runs `$body` with the type alias `$t` bound to the element type (f32 or f64)
/// of the array `$obj`, so one generic body serves both kernel dtypes.
macro_rules! for_float_dtype {
    ($function:expr, $argument:expr, $obj:expr, $t:ident => $body:expr) => {
        match $crate::convert::float_dtype($function, $argument, $obj)? {
            $crate::convert::FloatDtype::F32 => {
                type $t = f32;
                $body
            }
            $crate::convert::FloatDtype::F64 => {
                type $t = f64;
                $body
            }
        }
    };
}
pub(crate) use for_float_dtype;

/// A C-contiguous array's data.
pub fn contiguous<'a, T: Element, D: numpy::ndarray::Dimension>(
    function: &'static str,
    argument: &'static str,
    array: &'a numpy::PyReadonlyArray<'_, T, D>,
) -> PyResult<&'a [T]> {
    match array.as_slice() {
        Ok(data) => Ok(data),
        Err(_) => {
            Err(BindingError::from(FerropsError::value(function, argument, "a contiguous array", "a strided view"))
                .into())
        }
    }
}

/// A C-contiguous 1-D array's data.
pub fn slice1<'a, T: Element>(
    function: &'static str,
    argument: &'static str,
    array: &'a PyReadonlyArray1<'_, T>,
) -> PyResult<&'a [T]> {
    contiguous(function, argument, array)
}

/// A C-contiguous `[N, width]` array's data, row-major.
pub fn slice2<'a, T: Element>(
    function: &'static str,
    argument: &'static str,
    width: usize,
    array: &'a PyReadonlyArray2<'_, T>,
) -> PyResult<&'a [T]> {
    let shape = array.shape();
    if shape[1] != width {
        let got = format!("shape {shape:?}");
        return Err(
            BindingError::from(FerropsError::value(function, argument, format!("an [N, {width}] array"), got)).into()
        );
    }
    contiguous(function, argument, array)
}

pub fn owned1<T: Element>(py: Python<'_>, values: Vec<T>) -> Bound<'_, PyArray1<T>> {
    Array1::from_vec(values).into_pyarray(py)
}

pub fn owned2<T: Element>(py: Python<'_>, values: Vec<T>, rows: usize, columns: usize) -> Bound<'_, PyArray2<T>> {
    Array2::from_shape_vec((rows, columns), values).expect("the kernel returned rows x columns values").into_pyarray(py)
}
