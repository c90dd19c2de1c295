"""Attention (SPEC section 3): tiled online-softmax attention on the CPU.

Three entry points share one Rust kernel that never builds the ``L x S`` score
matrix (ATT-ONLINE):

* :func:`scaled_dot_product_attention`: torch's semantics and ``(..., H, L, E)``
  layout (top-left causal, boolean masks True = attend, additive float masks).
* :func:`flash_attn_func`: FlashAttention-2's semantics and ``(B, L, H, D)`` layout
  (bottom-right causal, sliding windows, softcap, ALiBi, GQA/MQA by head counts).
* :func:`flash_attn_varlen_func`: the same on packed ``(tokens, H, D)`` sequences
  delimited by ``cu_seqlens`` (ATT-VARLEN): no padding, no mask.

A query row that may attend to no key returns 0 with log-sum-exp ``-inf``, never
NaN (ATT-MASK). dtypes: float32 and float64 compute in their own precision;
float16 is computed in float32; bfloat16 in float32 or on the CPU's bfloat16 dot
products (AVX-512 BF16, accumulating in float32; the default on AMD CPUs, see the
README); both are returned in their dtype; query, key and value must share one dtype (as in torch).
Tensors that require grad are differentiable through a Rust backward pass that recomputes the
probabilities from the saved log-sum-exp (ATT-BWD); NumPy callers get the
forward pass. CUDA tensors run a PyTorch implementation on their device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _core
from . import _dispatch as d
from ._dispatch import Array, ArrayLike, Backend
from ._errors import type_error, value_error

if TYPE_CHECKING:
    import torch

__all__ = ["scaled_dot_product_attention", "flash_attn_func", "flash_attn_varlen_func"]

_FLOAT_NAMES = ("float16", "bfloat16", "float32", "float64")


def _dtype_name(x: ArrayLike) -> str:
    return str(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype).replace("torch.", "")


def _check_float_inputs(function: str, named: Mapping[str, ArrayLike]) -> str:
    """All of query/key/value of one float dtype; returns its name."""
    names = {n: _dtype_name(x) for n, x in named.items()}
    for n, dt in names.items():
        if dt not in _FLOAT_NAMES:
            raise type_error(function, n, "a float16, bfloat16, float32 or float64 array or tensor", f"dtype {dt}")
    if len(set(names.values())) > 1:
        got = ", ".join(f"{n} {dt}" for n, dt in names.items())
        raise TypeError(f"{function}(): expected query, key and value of one dtype, got {got}")
    return next(iter(names.values()))


def _as_inputs(named: dict[str, ArrayLike]) -> dict[str, Array]:
    """NumPy inputs stay arrays (anything array-like becomes one); tensors stay tensors."""
    return {n: x if d.is_tensor(x) else np.asarray(x) for n, x in named.items()}


def _check_finite(function: str, **tensors: torch.Tensor) -> None:
    """The Rust path's rule on the PyTorch path too: non-finite query, key or value
    raise instead of turning into NaN output."""
    torch = d.torch_module()
    for name, t in tensors.items():
        bad = ~torch.isfinite(t.reshape(-1))
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0, 0])
            raise value_error(function, name, "finite values", f"{name}[{i}] = {t.reshape(-1)[i].item()}")


def _host_tensor(x: ArrayLike) -> torch.Tensor:
    """A tensor of ``x`` (NumPy arrays shared when writable; torch cannot share read-only memory)."""
    if d.is_tensor(x):
        return x
    torch = d.torch_module()
    a = np.asarray(x)
    return torch.from_numpy(np.ascontiguousarray(a) if a.flags.writeable else a.copy())


def _result(values: np.ndarray, reference: Array) -> Array:
    """``values`` in the kind, dtype and device of ``reference``."""
    if d.is_tensor(reference):
        torch = d.torch_module()
        return torch.from_numpy(values).to(device=reference.device, dtype=reference.dtype)
    return values.astype(reference.dtype, copy=False)


def _lse_result(values: np.ndarray, reference: Array) -> Array:
    """The log-sum-exp: float32 (float64 for float64 inputs), of the reference's kind."""
    if d.is_tensor(reference):
        torch = d.torch_module()
        return torch.from_numpy(values).to(reference.device)
    return values


def _check_scale(function: str, name: str, value: object, head_dim: int) -> float:
    if value is None:
        return 1.0 / math.sqrt(head_dim) if head_dim > 0 else 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise type_error(function, name, "a float or None", type(value).__name__)
    if not math.isfinite(value):
        raise value_error(function, name, "a finite number", repr(value))
    return float(value)


def _check_window(function: str, window_size: object) -> tuple[int | None, int | None]:
    if not (
        isinstance(window_size, (tuple, list))
        and len(window_size) == 2
        and all(isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w >= -1 for w in window_size)
    ):
        raise value_error(
            function, "window_size", "a pair (left, right) of ints >= -1 (-1 = unbounded)", repr(window_size)
        )
    left, right = window_size
    return None if left == -1 else int(left), None if right == -1 else int(right)


def _check_softcap(function: str, softcap: object) -> float:
    if isinstance(softcap, bool) or not isinstance(softcap, (int, float)):
        raise type_error(function, "softcap", "a float", type(softcap).__name__)
    if not (math.isfinite(softcap) and softcap >= 0):
        raise value_error(function, "softcap", "a finite number >= 0", repr(softcap))
    return float(softcap)


def _slopes(function: str, alibi_slopes: ArrayLike | None, batch: int, heads: int) -> np.ndarray | None:
    """ALiBi slopes as float64 ``[batch * heads]`` (``[heads]`` broadcast), or None."""
    if alibi_slopes is None:
        return None
    shape = d.shape_of(alibi_slopes)
    if shape not in ((heads,), (batch, heads)):
        raise value_error(function, "alibi_slopes", f"shape [{heads}] or [{batch}, {heads}]", list(shape))
    a = d.float_array(function, "alibi_slopes", alibi_slopes).astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise value_error(function, "alibi_slopes", "finite slopes", a.ravel().tolist())
    return np.broadcast_to(a, (batch, heads)).reshape(-1).copy()


def _options(
    function: str, layout: str, heads_q: int, heads_kv: int, dim_qk: int, dim_v: int, **kw: Any
) -> dict[str, Any]:
    options = dict(
        function=function,
        layout=layout,
        heads_q=heads_q,
        heads_kv=heads_kv,
        dim_qk=dim_qk,
        dim_v=dim_v,
        dense=None,
        cu_seqlens_q=None,
        cu_seqlens_k=None,
        scale=1.0,
        bottom_right=True,
        window_left=None,
        window_right=None,
        softcap=0.0,
        alibi_slopes=None,
        mask=None,
        mask_offsets=None,
        mask_row_stride=0,
        mask_col_stride=0,
    )
    options.update(kw)
    return options


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
        m = np.asarray(attn_mask)
        if m.dtype != np.bool_ and m.dtype.kind != "f":
            raise type_error(function, "attn_mask", "a bool or float mask", m.dtype)
    m = np.ascontiguousarray(m if m.dtype == np.bool_ else m.astype(compute))
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


def _kernel_arrays(options: dict[str, Any], q: Array, k: Array, v: Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Query, key and value as the float32/float64 arrays the Rust kernels read
    (float16 and bfloat16 upcast to float32)."""
    function = options["function"]
    return (
        d.kernel_array(function, "query", q),
        d.kernel_array(function, "key", k),
        d.kernel_array(function, "value", v),
    )


_AUTOGRAD_FUNCTION: Any = None


def _autograd_function() -> Any:
    """A ``torch.autograd.Function`` around the Rust kernels (built on first use, so
    this module imports without torch)."""
    global _AUTOGRAD_FUNCTION
    if _AUTOGRAD_FUNCTION is None:
        torch = d.require_torch("attention")
        function_base: Any = torch.autograd.Function

        class RustAttention(function_base):
            @staticmethod
            def forward(ctx: Any, q: Any, k: Any, v: Any, options: dict) -> Any:
                arrays = _kernel_arrays(options, q, k, v)
                out, lse = _core.attention_forward(arrays[0], arrays[1], arrays[2], options)
                ctx.arrays, ctx.out, ctx.lse, ctx.options = arrays, out, lse, options
                ctx.like = [(x.shape, x.dtype, x.device) for x in (q, k, v)]
                result = torch.from_numpy(out).to(device=q.device, dtype=q.dtype)
                lse_t = torch.from_numpy(lse)
                ctx.mark_non_differentiable(lse_t)
                return result, lse_t

            @staticmethod
            def backward(ctx: Any, grad_out: Any, _grad_lse: Any) -> Any:
                g = d.contiguous(d.float_array(ctx.options["function"], "grad", grad_out), ctx.out.dtype)
                aq, ak, av = ctx.arrays
                dq, dk, dv = _core.attention_backward(aq, ak, av, ctx.out, ctx.lse, g, ctx.options)
                grads = [
                    torch.from_numpy(gr).reshape(shape).to(device=device, dtype=dtype)
                    for gr, (shape, dtype, device) in zip((dq, dk, dv), ctx.like)
                ]
                return grads[0], grads[1], grads[2], None

        _AUTOGRAD_FUNCTION = RustAttention
    return _AUTOGRAD_FUNCTION


def _run_rust(q: Array, k: Array, v: Array, options: dict[str, Any]) -> tuple[Array, np.ndarray]:
    """The Rust kernel on contiguous inputs in the given layout; returns the flat
    output in the query's kind and dtype, and the flat ``[Hq, total_q]`` lse."""
    torch = d.torch_module()
    tensors = [x for x in (q, k, v) if d.is_tensor(x)]
    if tensors and torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        out, lse = _autograd_function().apply(q, k, v, options)
        return out, lse.numpy()
    if len(tensors) == 3 and all(t.dtype == torch.bfloat16 for t in tensors):
        # bfloat16 goes to Rust as its bits: the bfloat16 dot products read them
        # as they are, and widening in Rust, in parallel, costs less than
        # converting in torch first (more than a tenth of the kernel).
        bq, bk, bv = (np.ascontiguousarray(t.detach().cpu().view(torch.int16).numpy()).view(np.uint16) for t in tensors)
        out, lse = _core.attention_forward(bq, bk, bv, options)
        return torch.from_numpy(out.view(np.int16)).view(torch.bfloat16).to(q.device), lse
    aq, ak, av = _kernel_arrays(options, q, k, v)
    out, lse = _core.attention_forward(aq, ak, av, options)
    return _result(out, q), lse


# ----------------------------------------------------------------------------
# scaled_dot_product_attention


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
    named = _as_inputs({"query": query, "key": key, "value": value})
    query, key, value = named["query"], named["key"], named["value"]
    _check_float_inputs(f, named)
    qs, ks, vs = d.shape_of(query), d.shape_of(key), d.shape_of(value)
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
    if not 0.0 <= float(dropout_p) <= 1.0:
        raise value_error(f, "dropout_p", "a value in [0, 1]", repr(dropout_p))
    if is_causal and attn_mask is not None:
        raise ValueError(f"{f}(): expected attn_mask=None with is_causal=True (torch's rule), got a mask")
    scale = _check_scale(f, "scale", scale, qs[-1])
    L, S = qs[-2], ks[-2]
    full = (*qs[:-3], hq, L, S)
    if attn_mask is not None:
        mshape = d.shape_of(attn_mask)
        try:
            np.broadcast_shapes(mshape, full)
            ok = len(mshape) <= len(full) and np.broadcast_shapes(mshape, full) == full
        except ValueError:
            ok = False
        if not ok:
            raise value_error(f, "attn_mask", f"a shape broadcastable to {list(full)}", list(mshape))
    inputs = (query, key, value) if attn_mask is None else (query, key, value, attn_mask)
    if d.select_backend(f, backend, *inputs, rust_autograd=True) == "torch" or (
        attn_mask is not None and d.is_tensor(attn_mask) and attn_mask.requires_grad
    ):
        # A mask that requires grad: only the PyTorch path differentiates it.
        torch = d.require_torch(f)
        device = d.device_of(*inputs) or torch.device("cpu")
        q, k, v = (_host_tensor(x) for x in (query, key, value))
        q, k, v = q.to(device), k.to(device), v.to(device)
        _check_finite(f, query=q, key=k, value=v)
        mask = None
        if attn_mask is not None:
            mask = _host_tensor(attn_mask)
        out = d.torch_implementation("attention").sdpa(
            q, k, v, attn_mask=mask, dropout_p=float(dropout_p), is_causal=bool(is_causal), scale=scale
        )
        return d.like(out, query)
    if dropout_p > 0.0:
        raise value_error(
            f,
            "dropout_p",
            "0 on the Rust path (dropout runs only in the PyTorch implementation: CUDA tensors or backend='torch')",
            repr(dropout_p),
        )
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


# ----------------------------------------------------------------------------
# FlashAttention-2 API


def _flash_checks(
    function: str, q: Array, k: Array, v: Array, rank: int, softmax_scale: object, window_size: object, softcap: object
) -> tuple[float, tuple[int | None, int | None], float]:
    layout = "[B, L, H, D]" if rank == 4 else "[tokens, H, D]"
    qs, ks, vs = d.shape_of(q), d.shape_of(k), d.shape_of(v)
    for n, s in (("q", qs), ("k", ks), ("v", vs)):
        if len(s) != rank:
            raise value_error(function, n, f"{rank} dimensions {layout}", list(s))
    if ks[-1] != qs[-1]:
        raise value_error(function, "k", f"head dimension {qs[-1]} (q's)", ks[-1])
    if vs[:-1] != ks[:-1]:
        raise value_error(function, "v", f"shape [{', '.join(map(str, ks[:-1]))}, Dv] (k's but the last)", list(vs))
    if rank == 4 and ks[0] != qs[0]:
        raise value_error(function, "k", f"batch size {qs[0]} (q's)", ks[0])
    hq, hkv = qs[-2], ks[-2]
    if hkv == 0 and hq > 0 or hkv and hq % hkv:
        raise value_error(function, "k", f"a number of heads dividing q's {hq} (GQA/MQA)", hkv)
    scale = _check_scale(function, "softmax_scale", softmax_scale, qs[-1])
    return scale, _check_window(function, window_size), _check_softcap(function, softcap)


def _flash_torch(
    function: str, q: Array, k: Array, v: Array, alibi: np.ndarray | None, batch: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    torch = d.require_torch(function)
    device = d.device_of(q, k, v) or torch.device("cpu")
    q, k, v = (_host_tensor(x) for x in (q, k, v))
    slopes = None if alibi is None else torch.from_numpy(alibi.reshape(batch, -1)).to(device)
    return q.to(device), k.to(device), v.to(device), slopes


def flash_attn_func(
    q: ArrayLike,
    k: ArrayLike,
    v: ArrayLike,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    alibi_slopes: ArrayLike | None = None,
    return_lse: bool = False,
    *,
    backend: Backend = "auto",
) -> Array | tuple[Array, Array]:
    """FlashAttention-2's ``flash_attn_func`` (ATT-CAUSAL bottom-right, ATT-WINDOW,
    ATT-SOFTCAP, ATT-ALIBI, ATT-GQA).

    Args:
        q (Tensor[B, L, Hq, D] | ndarray): queries.
        k (Tensor[B, S, Hkv, D] | ndarray): keys; ``Hq % Hkv == 0`` (GQA/MQA).
        v (Tensor[B, S, Hkv, Dv] | ndarray): values.
        softmax_scale: multiplies ``q . k``; default ``1 / sqrt(D)``.
        causal: query ``i`` sees keys ``j <= i + S - L`` (bottom-right aligned).
        window_size: ``(left, right)``: query ``i`` sees keys in
            ``[i + S - L - left, i + S - L + right]``; -1 = unbounded.
        softcap: when > 0, scores become ``softcap * tanh(score / softcap)``.
        alibi_slopes (Tensor[Hq] | Tensor[B, Hq], optional): adds ``-slope * |i + S - L - j|``.
        return_lse: also return the log-sum-exp of each row.
        backend: "auto", "rust" or "torch".

    Returns:
        Tensor[B, L, Hq, Dv] | ndarray, and with ``return_lse`` ``lse (Tensor[B, Hq, L])``
        (float32; float64 for float64 inputs; ``-inf`` for rows that see no key).
    """
    f = "flash_attn_func"
    named = _as_inputs({"q": q, "k": k, "v": v})
    q, k, v = named["q"], named["k"], named["v"]
    _check_float_inputs(f, named)
    scale, window, cap = _flash_checks(f, q, k, v, 4, softmax_scale, window_size, softcap)
    if causal:
        window = (window[0], 0)
    B, L, hq, D = d.shape_of(q)
    S, hkv, Dv = d.shape_of(k)[1], d.shape_of(k)[2], d.shape_of(v)[3]
    alibi = _slopes(f, alibi_slopes, B, hq)
    if d.select_backend(f, backend, q, k, v, rust_autograd=True) == "torch":
        tq, tk, tv, slopes = _flash_torch(f, q, k, v, alibi, B)
        _check_finite(f, q=tq, k=tk, v=tv)
        out, lse = d.torch_implementation("attention").flash(
            tq, tk, tv, scale=scale, window=window, softcap=cap, alibi_slopes=slopes, want_lse=return_lse
        )
        return (d.like(out, q), d.like(lse, q)) if return_lse else d.like(out, q)
    options = _options(
        f,
        "token",
        hq,
        hkv,
        D,
        Dv,
        dense=(B, L, S),
        scale=scale,
        window_left=window[0],
        window_right=window[1],
        softcap=cap,
        alibi_slopes=alibi,
    )
    out, lse = _run_rust(q, k, v, options)
    out = out.reshape(B, L, hq, Dv)
    if not return_lse:
        return out
    return out, _lse_result(np.ascontiguousarray(lse.reshape(hq, B, L).transpose(1, 0, 2)), q)


def _cu_seqlens(function: str, name: str, cu: ArrayLike, total: int) -> np.ndarray:
    shape = d.shape_of(cu)
    if len(shape) != 1 or shape[0] < 1:
        raise value_error(function, name, "a 1-D array [B + 1]", f"shape {list(shape)}")
    a = d.index_array(function, name, cu)
    if a[0] != 0:
        raise value_error(function, name, "a first entry of 0", int(a[0]))
    if np.any(np.diff(a) < 0):
        i = int(np.nonzero(np.diff(a) < 0)[0][0]) + 1
        raise value_error(function, name, "non-decreasing offsets", f"{int(a[i])} after {int(a[i - 1])} at index {i}")
    if a[-1] != total:
        raise value_error(function, name, f"a last entry equal to the {total} packed tokens", int(a[-1]))
    return np.ascontiguousarray(a.astype(np.int32))


def flash_attn_varlen_func(
    q: ArrayLike,
    k: ArrayLike,
    v: ArrayLike,
    cu_seqlens_q: ArrayLike,
    cu_seqlens_k: ArrayLike,
    max_seqlen_q: int,
    max_seqlen_k: int,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    softcap: float = 0.0,
    alibi_slopes: ArrayLike | None = None,
    return_lse: bool = False,
    *,
    backend: Backend = "auto",
) -> Array | tuple[Array, Array]:
    """FlashAttention-2's ``flash_attn_varlen_func``: packed sequences (ATT-VARLEN),
    each attending only within itself, with :func:`flash_attn_func`'s options.

    Args:
        q (Tensor[total_q, Hq, D] | ndarray): the queries of all sequences, packed.
        k (Tensor[total_k, Hkv, D] | ndarray), v (Tensor[total_k, Hkv, Dv] | ndarray): keys, values.
        cu_seqlens_q (Tensor[B + 1] | ndarray): int offsets of each sequence's queries:
            starts at 0, non-decreasing, ends at ``total_q``.
        cu_seqlens_k (Tensor[B + 1] | ndarray): the same for keys.
        max_seqlen_q, max_seqlen_k: at least the longest sequence (as FlashAttention).
        softmax_scale, causal, window_size, softcap: as :func:`flash_attn_func`.
        alibi_slopes (Tensor[Hq] | Tensor[B, Hq], optional): per head or per sequence and head.
        return_lse: also return the log-sum-exp.

    Returns:
        Tensor[total_q, Hq, Dv] | ndarray, and with ``return_lse`` ``lse (Tensor[Hq, total_q])``.
    """
    f = "flash_attn_varlen_func"
    named = _as_inputs({"q": q, "k": k, "v": v})
    q, k, v = named["q"], named["k"], named["v"]
    _check_float_inputs(f, named)
    scale, window, cap = _flash_checks(f, q, k, v, 3, softmax_scale, window_size, softcap)
    if causal:
        window = (window[0], 0)
    total_q, hq, D = d.shape_of(q)
    total_k, hkv, Dv = d.shape_of(k)[0], d.shape_of(k)[1], d.shape_of(v)[2]
    cq = _cu_seqlens(f, "cu_seqlens_q", cu_seqlens_q, total_q)
    ck = _cu_seqlens(f, "cu_seqlens_k", cu_seqlens_k, total_k)
    if len(cq) != len(ck):
        raise value_error(f, "cu_seqlens_k", f"{len(cq)} entries (as cu_seqlens_q)", len(ck))
    for name, limit, cu in (("max_seqlen_q", max_seqlen_q, cq), ("max_seqlen_k", max_seqlen_k, ck)):
        longest = int(np.max(np.diff(cu))) if len(cu) > 1 else 0
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < longest:
            raise value_error(f, name, f"an int >= the longest sequence ({longest})", repr(limit))
    batch = len(cq) - 1
    alibi = _slopes(f, alibi_slopes, batch, hq)
    if d.select_backend(f, backend, q, k, v, rust_autograd=True) == "torch":
        tq, tk, tv, slopes = _flash_torch(f, q, k, v, alibi, batch)
        _check_finite(f, q=tq, k=tk, v=tv)
        out, lse = d.torch_implementation("attention").flash_varlen(
            tq,
            tk,
            tv,
            cq.tolist(),
            ck.tolist(),
            scale=scale,
            window=window,
            softcap=cap,
            alibi_slopes=slopes,
            want_lse=return_lse,
        )
        return (d.like(out, q), d.like(lse, q)) if return_lse else d.like(out, q)
    options = _options(
        f,
        "token",
        hq,
        hkv,
        D,
        Dv,
        cu_seqlens_q=cq,
        cu_seqlens_k=ck,
        scale=scale,
        window_left=window[0],
        window_right=window[1],
        softcap=cap,
        alibi_slopes=alibi,
    )
    out, lse = _run_rust(q, k, v, options)
    out = out.reshape(total_q, hq, Dv)
    if not return_lse:
        return out
    return out, _lse_result(lse.reshape(hq, total_q), q)
