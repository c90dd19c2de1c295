"""``scaled_dot_product_attention``: torch's semantics and ``(..., H, L, E)`` layout
(ATT-REF, ATT-MASK, ATT-CAUSAL top-left, ATT-GQA), re-exported by
:mod:`ferrops.attention`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _dispatch as d
from ._attention_args import _as_inputs, _check_finite, _check_float_inputs, _check_scale, _dtype_name, _host_tensor
from ._attention_rust import _options, _refuse_rust_dropout, _run_rust
from ._dispatch import Array, ArrayLike, Backend
from ._errors import type_error, value_error


def _check_mask_values(function: str, attn_mask: ArrayLike) -> None:
    """A float mask may hold -inf ("never attend") but not +inf or NaN, which would
    silently give zeros or drop the key (ATT-MASK)."""
    if d.is_tensor(attn_mask):
        if not attn_mask.dtype.is_floating_point:
            return
        flat = attn_mask.detach().reshape(-1)
        torch = d.torch_module()
        bad = torch.isnan(flat) | torch.isposinf(flat)
        if not bool(bad.any()):
            return
        i = int(torch.nonzero(bad)[0, 0])
        value = flat[i].item()
    else:
        a = d.host_array(function, "attn_mask", attn_mask)
        if a.dtype.kind != "f":
            return
        flat_a = a.reshape(-1)
        bad_a = np.isnan(flat_a) | np.isposinf(flat_a)
        if not bad_a.any():
            return
        i = int(np.flatnonzero(bad_a)[0])
        value = flat_a[i].item()
    raise value_error(
        function, "attn_mask", "a bool mask or float values < +inf (-inf = never attend)", f"attn_mask[{i}] = {value}"
    )


def _mask_options(function: str, attn_mask: ArrayLike, full: tuple[int, ...], compute: np.dtype) -> dict[str, Any]:
    """The mask as a contiguous array plus per-(batch, head) offsets and strides of
    its broadcast to ``full = (*batch, H, L, S)`` (no copy of the broadcast)."""
    if d.is_tensor(attn_mask):
        torch = d.torch_module()
        t = attn_mask.detach().cpu()
        if t.dtype != torch.bool and not t.dtype.is_floating_point:
            raise type_error(function, "attn_mask", "a bool or float mask", t.dtype)
        m = t.numpy() if t.dtype == torch.bool else t.to(torch.float64).numpy()
    else:
        m = d.host_array(function, "attn_mask", attn_mask)
        if m.dtype != np.bool_ and m.dtype.kind != "f":
            raise type_error(function, "attn_mask", "a bool or float mask", m.dtype)
    m = d.contiguous(function, "attn_mask", m, m.dtype if m.dtype == np.bool_ else compute)
    try:
        view = np.broadcast_to(m, full)
    except ValueError:
        raise value_error(function, "attn_mask", f"a shape broadcastable to {list(full)}", list(m.shape)) from None
    strides = [s // m.itemsize for s in view.strides]
    lead = full[:-2]
    offsets = np.zeros(lead, dtype=np.uintp)
    for axis, (n, stride) in enumerate(zip(lead, strides)):
        shape = [1] * len(lead)
        shape[axis] = n
        offsets = offsets + (np.arange(n, dtype=np.uintp) * np.uintp(stride)).reshape(shape)
    return dict(
        mask=m,
        mask_offsets=np.ascontiguousarray(offsets.reshape(-1)),
        mask_row_stride=strides[-2],
        mask_col_stride=strides[-1],
    )


def scaled_dot_product_attention(
    query: ArrayLike,
    key: ArrayLike,
    value: ArrayLike,
    attn_mask: ArrayLike | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    *,
    backend: Backend = "auto",
) -> Array:
    """``torch.nn.functional.scaled_dot_product_attention`` (ATT-REF, ATT-MASK,
    ATT-CAUSAL top-left, ATT-GQA).

    Args:
        query (Tensor[..., Hq, L, E] | ndarray): queries.
        key (Tensor[..., Hkv, S, E] | ndarray): keys; ``Hkv == Hq`` unless ``enable_gqa``.
        value (Tensor[..., Hkv, S, Ev] | ndarray): values.
        attn_mask (Tensor | ndarray, optional): broadcastable to ``[..., Hq, L, S]``;
            bool (True = may attend) or float (added to the scores).
        dropout_p: must be 0 except on the PyTorch path (CUDA tensors, ``backend="torch"``).
        is_causal: query ``i`` sees keys ``j <= i``; exclusive with ``attn_mask``.
        scale: multiplies ``q . k``; default ``1 / sqrt(E)``.
        enable_gqa: query head ``h`` uses key/value head ``h // (Hq / Hkv)``.
        backend: "auto", "rust" or "torch".

    Returns:
        Tensor[..., Hq, L, Ev] | ndarray: of the query's dtype. Rows that may attend
        to no key are 0.
    """
    f = "scaled_dot_product_attention"
    is_causal = d.check_bool(f, "is_causal", is_causal)
    enable_gqa = d.check_bool(f, "enable_gqa", enable_gqa)
    dropout_p = d.check_unit_interval(f, "dropout_p", dropout_p)
    named = _as_inputs(f, {"query": query, "key": key, "value": value})
    query, key, value = named["query"], named["key"], named["value"]
    _check_float_inputs(f, named)
    qs, ks, vs = d.shape_of(f, "query", query), d.shape_of(f, "key", key), d.shape_of(f, "value", value)
    for n, s in (("query", qs), ("key", ks), ("value", vs)):
        if len(s) < 3:
            raise value_error(f, n, "at least 3 dimensions (..., H, L, E)", list(s))
    if ks[-1] != qs[-1]:
        raise value_error(f, "key", f"head dimension {qs[-1]} (the query's)", ks[-1])
    if vs[:-1] != ks[:-1]:
        raise value_error(f, "value", f"shape [{', '.join(map(str, ks[:-1]))}, Ev] (the key's but the last)", list(vs))
    if ks[:-3] != qs[:-3]:
        raise value_error(f, "key", f"batch dimensions {list(qs[:-3])} (the query's)", list(ks[:-3]))
    hq, hkv = qs[-3], ks[-3]
    if enable_gqa:
        if hkv == 0 or hq % hkv:
            raise value_error(f, "key", f"a number of heads dividing the query's {hq} (enable_gqa)", hkv)
    elif hkv != hq:
        raise value_error(f, "key", f"{hq} heads (the query's; set enable_gqa for fewer)", hkv)
    if is_causal and attn_mask is not None:
        raise ValueError(f"{f}(): expected attn_mask=None with is_causal=True (torch's rule), got a mask")
    scale = _check_scale(f, "scale", scale, qs[-1])
    L, S = qs[-2], ks[-2]
    full = (*qs[:-3], hq, L, S)
    if attn_mask is not None:
        mshape = d.shape_of(f, "attn_mask", attn_mask)
        try:
            np.broadcast_shapes(mshape, full)
            ok = len(mshape) <= len(full) and np.broadcast_shapes(mshape, full) == full
        except ValueError:
            ok = False
        if not ok:
            raise value_error(f, "attn_mask", f"a shape broadcastable to {list(full)}", list(mshape))
        _check_mask_values(f, attn_mask)
    inputs = (query, key, value) if attn_mask is None else (query, key, value, attn_mask)
    if d.select_backend(f, backend, *inputs, rust_autograd=True) == "torch" or (
        attn_mask is not None and d.is_tensor(attn_mask) and attn_mask.requires_grad
    ):
        # A mask that requires grad: only the PyTorch path differentiates it.
        torch = d.require_torch(f)
        device = d.device_of(*inputs) or torch.device("cpu")
        q, k, v = (_host_tensor(f, n, x) for n, x in named.items())
        q, k, v = q.to(device), k.to(device), v.to(device)
        _check_finite(f, query=q, key=k, value=v)
        mask = None
        if attn_mask is not None:
            mask = _host_tensor(f, "attn_mask", attn_mask)
        out = d.torch_implementation("attention").sdpa(
            q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale
        )
        return d.like(out, query)
    _refuse_rust_dropout(f, dropout_p)
    batch = math.prod(qs[:-3])
    compute = np.dtype(np.float64) if _dtype_name(query) == "float64" else np.dtype(np.float32)
    extra = {} if attn_mask is None else _mask_options(f, attn_mask, full, compute)
    options = _options(
        f,
        "head",
        hq,
        hkv,
        qs[-1],
        vs[-1],
        dense=(batch, L, S),
        scale=scale,
        bottom_right=False,
        window_right=0 if is_causal else None,
        **extra,
    )
    out, _ = _run_rust(query, key, value, options)
    return out.reshape(*qs[:-1], vs[-1])
