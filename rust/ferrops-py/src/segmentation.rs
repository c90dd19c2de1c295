//! Bindings of `ferrops_core::segmentation`. Label arrays arrive flat and
//! C-contiguous in their own integer dtype (the Python layer ravels them and
//! views bool as uint8); no dtype conversion happens here.

use ferrops_core::segmentation::{self, Labels};
use ferrops_core::FerropsError;
use numpy::{PyArrayDescrMethods, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

use crate::convert::{owned2, slice1, untyped_array};
use crate::error::BindingResult;
use crate::run::run_kernel;

/// A borrowed NumPy label array of one of the integer dtypes the core reads.
enum LabelArray<'py> {
    U8(PyReadonlyArray1<'py, u8>),
    I8(PyReadonlyArray1<'py, i8>),
    U16(PyReadonlyArray1<'py, u16>),
    I16(PyReadonlyArray1<'py, i16>),
    U32(PyReadonlyArray1<'py, u32>),
    I32(PyReadonlyArray1<'py, i32>),
    U64(PyReadonlyArray1<'py, u64>),
    I64(PyReadonlyArray1<'py, i64>),
}

impl<'py> LabelArray<'py> {
    fn extract(function: &'static str, argument: &'static str, obj: &Bound<'py, PyAny>) -> BindingResult<Self> {
        let py = obj.py();
        let array = untyped_array(function, argument, obj)?;
        let dtype = array.dtype();
        macro_rules! try_dtype {
            ($($t:ty => $variant:ident),*) => {$(
                if dtype.is_equiv_to(&numpy::dtype::<$t>(py)) {
                    return Ok(LabelArray::$variant(obj.extract()?));
                }
            )*};
        }
        try_dtype!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, u64 => U64, i64 => I64);
        Err(FerropsError::type_(
            function,
            argument,
            "an integer label array (int8/16/32/64 or uint8/16/32/64)",
            format!("dtype {dtype}"),
        )
        .into())
    }

    fn labels(&self, function: &'static str, argument: &'static str) -> BindingResult<Labels<'_>> {
        Ok(match self {
            LabelArray::U8(a) => Labels::U8(slice1(function, argument, a)?),
            LabelArray::I8(a) => Labels::I8(slice1(function, argument, a)?),
            LabelArray::U16(a) => Labels::U16(slice1(function, argument, a)?),
            LabelArray::I16(a) => Labels::I16(slice1(function, argument, a)?),
            LabelArray::U32(a) => Labels::U32(slice1(function, argument, a)?),
            LabelArray::I32(a) => Labels::I32(slice1(function, argument, a)?),
            LabelArray::U64(a) => Labels::U64(slice1(function, argument, a)?),
            LabelArray::I64(a) => Labels::I64(slice1(function, argument, a)?),
        })
    }
}

/// `[C, C]` int64 confusion matrix of two flat label arrays of equal length.
#[pyfunction]
#[pyo3(signature = (target, pred, num_classes, ignore_index))]
fn confusion_matrix<'py>(
    py: Python<'py>,
    target: &Bound<'py, PyAny>,
    pred: &Bound<'py, PyAny>,
    num_classes: usize,
    ignore_index: Option<i64>,
) -> BindingResult<Py<PyAny>> {
    const F: &str = "confusion_matrix";
    let (t, p) = (LabelArray::extract(F, "target", target)?, LabelArray::extract(F, "pred", pred)?);
    let (t, p) = (t.labels(F, "target")?, p.labels(F, "pred")?);
    let out = run_kernel(py, || segmentation::confusion_matrix(t, p, num_classes, ignore_index))?;
    Ok(owned2(py, out, num_classes, num_classes).into_py_any(py)?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(confusion_matrix, m)?)?;
    Ok(())
}
