//! Bindings of `ferrops_core::attention`. The Python layer checks shapes, puts
//! the tensors in one of the two layouts as C-contiguous float32/float64 arrays of
//! one dtype, broadcasts the mask to per-(batch, head) offsets, and reshapes the
//! flat results.

use ferrops_core::attention::{
    self, bf16, Attention, AttnFloat, Batch, CacheValues, KvCacheAttention, Layout, Mask, MaskValues,
};
use ferrops_core::FerropsError;
use numpy::{Element, PyReadonlyArray1, PyReadonlyArrayDyn, PyReadwriteArrayDyn};
use pyo3::prelude::*;
use pyo3::IntoPyObjectExt;

use crate::convert::{contiguous, extract_array, for_float_dtype, owned1, slice1};
use crate::error::BindingResult;
use crate::run::run_kernel_interruptible;

/// The options of one call, as the Python layer passes them.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct Options<'py> {
    /// The public function, named in the core's errors (shapes, values).
    function: String,
    /// "head" (`[B, H, L, D]`) or "token" (`[tokens, H, D]`).
    layout: String,
    heads_q: usize,
    heads_kv: usize,
    dim_qk: usize,
    dim_v: usize,
    /// `(batch, len_q, len_k)` for dense batches.
    dense: Option<(usize, usize, usize)>,
    cu_seqlens_q: Option<PyReadonlyArray1<'py, i32>>,
    cu_seqlens_k: Option<PyReadonlyArray1<'py, i32>>,
    scale: f64,
    bottom_right: bool,
    window_left: Option<usize>,
    window_right: Option<usize>,
    softcap: f64,
    alibi_slopes: Option<PyReadonlyArray1<'py, f64>>,
    /// A bool array or an array of the tensors' dtype (any shape, contiguous).
    mask: Option<Bound<'py, PyAny>>,
    mask_offsets: Option<PyReadonlyArray1<'py, usize>>,
    mask_row_stride: usize,
    mask_col_stride: usize,
}

/// Extracted arrays the [`Attention`] borrows from.
struct Held<'py, T: Element> {
    mask_bool: Option<PyReadonlyArrayDyn<'py, bool>>,
    mask_add: Option<PyReadonlyArrayDyn<'py, T>>,
}

fn hold<'py, T: Element>(function: &'static str, o: &Options<'py>) -> BindingResult<Held<'py, T>> {
    let mut held = Held { mask_bool: None, mask_add: None };
    if let Some(mask) = &o.mask {
        if let Ok(b) = mask.extract::<PyReadonlyArrayDyn<'py, bool>>() {
            held.mask_bool = Some(b);
        } else {
            held.mask_add =
                Some(extract_array(function, "attn_mask", "a bool mask or one of the query's dtype", mask)?);
        }
    }
    Ok(held)
}

fn describe<'a, T: AttnFloat + Element>(
    function: &'static str,
    o: &'a Options<'_>,
    held: &'a Held<'_, T>,
) -> BindingResult<Attention<'a, T>> {
    let layout = match o.layout.as_str() {
        "head" => Layout::HeadMajor,
        "token" => Layout::TokenMajor,
        other => {
            return Err(FerropsError::value(function, "layout", "'head' or 'token'", format!("'{other}'")).into());
        }
    };
    let batch = match (&o.dense, &o.cu_seqlens_q, &o.cu_seqlens_k) {
        (Some((batch, len_q, len_k)), None, None) => Batch::Dense { batch: *batch, len_q: *len_q, len_k: *len_k },
        (None, Some(cq), Some(ck)) => Batch::Packed {
            cu_seqlens_q: slice1(function, "cu_seqlens_q", cq)?,
            cu_seqlens_k: slice1(function, "cu_seqlens_k", ck)?,
        },
        _ => {
            return Err(
                FerropsError::value(function, "batch", "dense lengths or both cu_seqlens", "neither or a mix").into()
            );
        }
    };
    let alibi_slopes = match &o.alibi_slopes {
        Some(a) => Some(slice1(function, "alibi_slopes", a)?),
        None => None,
    };
    let values = match (&held.mask_bool, &held.mask_add) {
        (Some(b), _) => Some(MaskValues::Bool(contiguous(function, "attn_mask", b)?)),
        (None, Some(a)) => Some(MaskValues::Additive(contiguous(function, "attn_mask", a)?)),
        (None, None) => None,
    };
    let mask = match (values, &o.mask_offsets) {
        (Some(values), Some(offsets)) => Some(Mask {
            values,
            offsets: slice1(function, "attn_mask", offsets)?,
            row_stride: o.mask_row_stride,
            col_stride: o.mask_col_stride,
        }),
        (None, _) => None,
        (Some(_), None) => {
            return Err(FerropsError::value(function, "attn_mask", "offsets with the mask", "none").into());
        }
    };
    Ok(Attention {
        function: o.function.clone().into(),
        layout,
        batch,
        heads_q: o.heads_q,
        heads_kv: o.heads_kv,
        dim_qk: o.dim_qk,
        dim_v: o.dim_v,
        scale: o.scale,
        bottom_right: o.bottom_right,
        window_left: o.window_left,
        window_right: o.window_right,
        softcap: o.softcap,
        alibi_slopes,
        mask,
    })
}

/// Returns `(out, lse)` flat: `out` in the query's layout with `dim_v` columns,
/// `lse` (base 2: `LSE / ln 2`) as `[heads_q, total_q]`. float32/float64 arrays, or bfloat16 bits as
/// uint16 arrays (see [`bfloat16_forward`]).
#[pyfunction]
fn attention_forward<'py>(
    py: Python<'py>,
    query: &Bound<'py, PyAny>,
    key: &Bound<'py, PyAny>,
    value: &Bound<'py, PyAny>,
    options: Options<'py>,
) -> BindingResult<(Py<PyAny>, Py<PyAny>)> {
    // Conversion errors name this binding: the Python layer hands it contiguous
    // arrays of one dtype, so they only arise when `_core` is called directly.
    let function = "attention_forward";
    if let Ok(q) = query.extract::<PyReadonlyArrayDyn<'py, u16>>() {
        return bfloat16_forward(py, function, q, key, value, options);
    }
    for_float_dtype!(function, "query", query, T => {
        let (q, k, v): (PyReadonlyArrayDyn<T>, PyReadonlyArrayDyn<T>, PyReadonlyArrayDyn<T>) =
            (query.extract()?, key.extract()?, value.extract()?);
        let (q, k, v) = (contiguous(function, "query", &q)?, contiguous(function, "key", &k)?, contiguous(function, "value", &v)?);
        let held = hold::<T>(function, &options)?;
        let att = describe(function, &options, &held)?;
        let (out, lse) =
            run_kernel_interruptible(py, att.work(), |cancel| attention::attention_forward(&att, q, k, v, cancel))?;
        Ok((owned1(py, out).into_py_any(py)?, owned1(py, lse).into_py_any(py)?))
    })
}

/// bfloat16 inputs arrive as their bits (uint16 arrays); the output is bfloat16
/// bits and `lse` float32 (see `ferrops_core::attention::bf16`).
fn bfloat16_forward<'py>(
    py: Python<'py>,
    function: &'static str,
    query: PyReadonlyArrayDyn<'py, u16>,
    key: &Bound<'py, PyAny>,
    value: &Bound<'py, PyAny>,
    options: Options<'py>,
) -> BindingResult<(Py<PyAny>, Py<PyAny>)> {
    const BITS: &str = "bfloat16 bits (uint16) like the query";
    let k: PyReadonlyArrayDyn<u16> = extract_array(function, "key", BITS, key)?;
    let v: PyReadonlyArrayDyn<u16> = extract_array(function, "value", BITS, value)?;
    let (q, k, v) =
        (contiguous(function, "query", &query)?, contiguous(function, "key", &k)?, contiguous(function, "value", &v)?);
    let held = hold::<f32>(function, &options)?;
    let att = describe(function, &options, &held)?;
    let (out, lse) =
        run_kernel_interruptible(py, att.work(), |cancel| bf16::attention_forward_bf16(&att, q, k, v, cancel))?;
    Ok((owned1(py, out).into_py_any(py)?, owned1(py, lse).into_py_any(py)?))
}

/// The backward pass's five tile products against the forward's two, and its
/// recomputed softmax: about 3 forward passes of work.
const BACKWARD_WORK: u128 = 3;

/// Returns `(dq, dk, dv)` flat, in the layouts of `query`, `key`, `value`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn attention_backward<'py>(
    py: Python<'py>,
    query: &Bound<'py, PyAny>,
    key: &Bound<'py, PyAny>,
    value: &Bound<'py, PyAny>,
    out: &Bound<'py, PyAny>,
    lse: &Bound<'py, PyAny>,
    grad_out: &Bound<'py, PyAny>,
    options: Options<'py>,
) -> BindingResult<(Py<PyAny>, Py<PyAny>, Py<PyAny>)> {
    // As in `attention_forward`: conversion errors name the binding.
    let function = "attention_backward";
    for_float_dtype!(function, "query", query, T => {
        let arrays: Vec<PyReadonlyArrayDyn<T>> = [query, key, value, out, lse, grad_out]
            .iter()
            .map(|a| a.extract())
            .collect::<PyResult<_>>()?;
        let names = ["query", "key", "value", "out", "lse", "grad_out"];
        let s: Vec<&[T]> = arrays.iter().zip(names).map(|(a, n)| contiguous(function, n, a)).collect::<PyResult<_>>()?;
        let held = hold::<T>(function, &options)?;
        let att = describe(function, &options, &held)?;
        let (dq, dk, dv) = run_kernel_interruptible(py, BACKWARD_WORK * att.work(), |cancel| {
            attention::attention_backward(&att, s[0], s[1], s[2], s[3], s[4], s[5], cancel)
        })?;
        Ok((owned1(py, dq).into_py_any(py)?, owned1(py, dk).into_py_any(py)?, owned1(py, dv).into_py_any(py)?))
    })
}

/// The options of one `attention_kvcache` call, as `ferrops._kvcache` passes them.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct KvOptions<'py> {
    function: String,
    /// The caches' dtype: "float32", "bfloat16" or "float16" (both of the last as
    /// their uint16 bits).
    format: String,
    batch: usize,
    len_q: usize,
    heads_q: usize,
    heads_kv: usize,
    dim_qk: usize,
    dim_v: usize,
    num_blocks: usize,
    block_size: usize,
    block_table: PyReadonlyArray1<'py, i32>,
    max_blocks: usize,
    seqlens_k: PyReadonlyArray1<'py, i32>,
    key_starts: PyReadonlyArray1<'py, i32>,
    scale: f64,
    window_left: Option<usize>,
    window_right: Option<usize>,
    softcap: f64,
    alibi_slopes: Option<PyReadonlyArray1<'py, f64>>,
    tree_mask: Option<PyReadonlyArray1<'py, bool>>,
    split: usize,
}

fn kv_describe<'a>(function: &'static str, o: &'a KvOptions<'_>) -> BindingResult<KvCacheAttention<'a>> {
    Ok(KvCacheAttention {
        function: o.function.clone().into(),
        batch: o.batch,
        len_q: o.len_q,
        heads_q: o.heads_q,
        heads_kv: o.heads_kv,
        dim_qk: o.dim_qk,
        dim_v: o.dim_v,
        num_blocks: o.num_blocks,
        block_size: o.block_size,
        block_table: slice1(function, "block_table", &o.block_table)?,
        max_blocks: o.max_blocks,
        seqlens_k: slice1(function, "cache_seqlens", &o.seqlens_k)?,
        key_starts: slice1(function, "cache_leftpad", &o.key_starts)?,
        scale: o.scale,
        window_left: o.window_left,
        window_right: o.window_right,
        softcap: o.softcap,
        alibi_slopes: match &o.alibi_slopes {
            Some(a) => Some(slice1(function, "alibi_slopes", a)?),
            None => None,
        },
        tree_mask: match &o.tree_mask {
            Some(m) => Some(slice1(function, "tree_mask", m)?),
            None => None,
        },
        split: o.split,
    })
}

/// Attention of float32 queries `[B, Lq, Hq, D]` over a paged cache (a
/// contiguous one is one block per sequence), after writing `k_new`/`v_new` into
/// it in place when given. Returns `(out, lse)` flat: `out` float32 `[B, Lq, Hq,
/// Dv]`, `lse` (natural log) float32 `[B, Lq, Hq]`.
#[pyfunction]
#[pyo3(signature = (query, k_cache, v_cache, k_new, v_new, options))]
fn attention_kvcache<'py>(
    py: Python<'py>,
    query: PyReadonlyArrayDyn<'py, f32>,
    k_cache: &Bound<'py, PyAny>,
    v_cache: &Bound<'py, PyAny>,
    k_new: Option<&Bound<'py, PyAny>>,
    v_new: Option<&Bound<'py, PyAny>>,
    options: KvOptions<'py>,
) -> BindingResult<(Py<PyAny>, Py<PyAny>)> {
    let function = "attention_kvcache";
    let q = contiguous(function, "query", &query)?;
    let att = kv_describe(function, &options)?;
    let new = match (k_new, v_new) {
        (Some(k), Some(v)) => Some((k, v)),
        (None, None) => None,
        _ => return Err(FerropsError::value(function, "k", "k and v together", "only one of them").into()),
    };
    let (out, lse) = match options.format.as_str() {
        "float32" => kvcache_run::<f32>(py, &att, q, (k_cache, v_cache), new, |s| CacheValues::F32(s))?,
        "bfloat16" => kvcache_run::<u16>(py, &att, q, (k_cache, v_cache), new, |s| CacheValues::Bf16(s))?,
        "float16" => kvcache_run::<u16>(py, &att, q, (k_cache, v_cache), new, |s| CacheValues::F16(s))?,
        other => {
            let expected = "'float32', 'bfloat16' or 'float16'";
            return Err(FerropsError::value(function, "format", expected, format!("'{other}'")).into());
        }
    };
    Ok((owned1(py, out).into_py_any(py)?, owned1(py, lse).into_py_any(py)?))
}

type Pair<'a, 'py> = (&'a Bound<'py, PyAny>, &'a Bound<'py, PyAny>);

fn kvcache_run<'py, E: Element + Copy + Send + Sync>(
    py: Python<'py>,
    att: &KvCacheAttention,
    q: &[f32],
    (k_cache, v_cache): Pair<'_, 'py>,
    new: Option<Pair<'_, 'py>>,
    wrap: for<'s> fn(&'s [E]) -> CacheValues<'s>,
) -> BindingResult<(Vec<f32>, Vec<f32>)> {
    const SAME: &str = "an array of the cache's format";
    let function = "attention_kvcache";
    let Some((k_new, v_new)) = new else {
        let k: PyReadonlyArrayDyn<E> = extract_array(function, "k_cache", SAME, k_cache)?;
        let v: PyReadonlyArrayDyn<E> = extract_array(function, "v_cache", SAME, v_cache)?;
        let (k, v) = (contiguous(function, "k_cache", &k)?, contiguous(function, "v_cache", &v)?);
        return Ok(run_kernel_interruptible(py, att.work(), |cancel| {
            attention::kvcache_attention(att, q, wrap(k), wrap(v), cancel)
        })?);
    };
    let k_new: PyReadonlyArrayDyn<E> = extract_array(function, "k", SAME, k_new)?;
    let v_new: PyReadonlyArrayDyn<E> = extract_array(function, "v", SAME, v_new)?;
    let (k_new, v_new) = (contiguous(function, "k", &k_new)?, contiguous(function, "v", &v_new)?);
    let mut k: PyReadwriteArrayDyn<E> = extract_array(function, "k_cache", "a writeable array", k_cache)?;
    let mut v: PyReadwriteArrayDyn<E> = extract_array(function, "v_cache", "a writeable array", v_cache)?;
    let strided = || FerropsError::value(function, "k_cache", "a contiguous array", "a strided view");
    let k = k.as_slice_mut().map_err(|_| strided())?;
    let v = v.as_slice_mut().map_err(|_| strided())?;
    Ok(run_kernel_interruptible(py, att.work(), |cancel| {
        attention::kvcache_append(att, q, (&mut *k, &mut *v), (k_new, v_new))?;
        attention::kvcache_attention(att, q, wrap(k), wrap(v), cancel)
    })?)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(attention_kvcache, m)?)?;
    m.add_function(wrap_pyfunction!(attention_forward, m)?)?;
    m.add_function(wrap_pyfunction!(attention_backward, m)?)?;
    Ok(())
}
