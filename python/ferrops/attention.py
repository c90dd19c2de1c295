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
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from . import _core
from . import _dispatch as d
from ._dispatch import Array, ArrayLike, Backend
from ._errors import describe, memory_error, type_error, value_error
from ._kvcache import flash_attn_with_kvcache as flash_attn_with_kvcache

if TYPE_CHECKING:
    import torch

__all__ = ["scaled_dot_product_attention", "flash_attn_func", "flash_attn_varlen_func"]

_FLOAT_NAMES = ("float16", "bfloat16", "float32", "float64")
#: The kernels' log-sum-exp is in base 2; this turns it into the public natural log.
_LN2 = math.log(2.0)


def _dtype_name(x: Array) -> str:
    return str(x.dtype).replace("torch.", "")


def _check_float_inputs(function: str, named: Mapping[str, Array]) -> str:
    """All of query/key/value of one float dtype; returns its name."""
    names = {n: _dtype_name(x) for n, x in named.items()}
    for n, dt in names.items():
        if dt not in _FLOAT_NAMES:
            raise type_error(function, n, "a float16, bfloat16, float32 or float64 array or tensor", f"dtype {dt}")
    if len(set(names.values())) > 1:
        got = ", ".join(f"{n} {dt}" for n, dt in names.items())
        raise TypeError(f"{function}(): expected query, key and value of one dtype, got {got}")
    return next(iter(names.values()))


def _as_inputs(function: str, named: dict[str, ArrayLike]) -> dict[str, Array]:
    """NumPy inputs stay arrays (anything array-like becomes one); tensors stay tensors."""
    return {n: x if d.is_tensor(x) else d.host_array(function, n, x) for n, x in named.items()}


def _check_finite(function: str, **tensors: torch.Tensor) -> None:
    """The Rust path's rule on the PyTorch path too: non-finite query, key or value
    raise instead of turning into NaN output."""
    torch = d.torch_module()
    for name, t in tensors.items():
        bad = ~torch.isfinite(t.reshape(-1))
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0, 0])
            raise value_error(function, name, "finite values", f"{name}[{i}] = {t.reshape(-1)[i].item()}")


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


def _host_tensor(function: str, argument: str, x: ArrayLike) -> torch.Tensor:
    """A tensor of ``x`` (NumPy arrays shared when writable; torch cannot share read-only memory)."""
    if d.is_tensor(x):
        return x
    torch = d.torch_module()
    a = d.host_array(function, argument, x)
    if a.flags.writeable:
        return torch.from_numpy(d.contiguous(function, argument, a, a.dtype))
    try:
        return torch.from_numpy(a.copy())
    except MemoryError:
        raise memory_error(function, argument, a.shape, a.dtype) from None


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
    """``(left, right)`` as a tuple, list, array or tensor of two ints >= -1 (flash-attn's
    tests pass tensors); -1 becomes None (unbounded)."""
    values = window_size.tolist() if hasattr(window_size, "tolist") else window_size
    if not (
        isinstance(values, (tuple, list))
        and len(values) == 2
        and all(isinstance(w, (int, np.integer)) and not isinstance(w, (bool, np.bool_)) and w >= -1 for w in values)
    ):
        raise value_error(
            function, "window_size", "a pair (left, right) of ints >= -1 (-1 = unbounded)", repr(window_size)
        )
    left, right = (int(w) for w in values)
    return None if left == -1 else left, None if right == -1 else right


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
    shape = d.shape_of(function, "alibi_slopes", alibi_slopes)
    if shape not in ((heads,), (batch, heads)):
        raise value_error(function, "alibi_slopes", f"shape [{heads}] or [{batch}, {heads}]", list(shape))
    a = d.contiguous(
        function, "alibi_slopes", d.float_array(function, "alibi_slopes", alibi_slopes), np.dtype(np.float64)
    )
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
                out, lse2 = _core.attention_forward(arrays[0], arrays[1], arrays[2], options)
                ctx.arrays, ctx.out, ctx.lse2, ctx.options = arrays, out, lse2, options
                ctx.like = [(x.shape, x.dtype, x.device) for x in (q, k, v)]
                result = torch.from_numpy(out).to(device=q.device, dtype=q.dtype)
                lse2_t = torch.from_numpy(lse2)
                ctx.mark_non_differentiable(lse2_t)
                return result, lse2_t

            @staticmethod
            def backward(ctx: Any, grad_out: Any, _grad_lse: Any) -> Any:
                function = ctx.options["function"]
                g = d.contiguous(function, "grad", d.float_array(function, "grad", grad_out), ctx.out.dtype)
                aq, ak, av = ctx.arrays
                dq, dk, dv = _core.attention_backward(aq, ak, av, ctx.out, ctx.lse2, g, ctx.options)
                grads = [
                    torch.from_numpy(gr).reshape(shape).to(device=device, dtype=dtype)
                    for gr, (shape, dtype, device) in zip((dq, dk, dv), ctx.like)
                ]
                return grads[0], grads[1], grads[2], None

        _AUTOGRAD_FUNCTION = RustAttention
    return _AUTOGRAD_FUNCTION


def _run_rust(q: Array, k: Array, v: Array, options: dict[str, Any]) -> tuple[Array, np.ndarray]:
    """The Rust kernel on contiguous inputs in the given layout; returns the flat
    output in the query's kind and dtype, and the flat ``[Hq, total_q]`` lse (natural
    log: the kernels return it in base 2, the unit the backward pass recomputes the
    probabilities in, exactly)."""
    torch = d.torch_module()
    tensors = [x for x in (q, k, v) if d.is_tensor(x)]
    if tensors and torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        out, lse2 = _autograd_function().apply(q, k, v, options)
        return out, lse2.numpy() * _LN2
    if len(tensors) == 3 and all(t.dtype == torch.bfloat16 for t in tensors):
        # bfloat16 goes to Rust as its bits: the bfloat16 dot products read them
        # as they are, and widening in Rust, in parallel, costs less than
        # converting in torch first (more than a tenth of the kernel).
        bq, bk, bv = (np.ascontiguousarray(t.detach().cpu().view(torch.int16).numpy()).view(np.uint16) for t in tensors)
        out, lse2 = _core.attention_forward(bq, bk, bv, options)
        return torch.from_numpy(out.view(np.int16)).view(torch.bfloat16).to(q.device), lse2 * _LN2
    aq, ak, av = _kernel_arrays(options, q, k, v)
    out, lse2 = _core.attention_forward(aq, ak, av, options)
    return _result(out, q), lse2 * _LN2


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


# ----------------------------------------------------------------------------
# FlashAttention-2 API


def _flash_checks(
    function: str, q: Array, k: Array, v: Array, rank: int, softmax_scale: object, window_size: object, softcap: object
) -> tuple[float, tuple[int | None, int | None], float]:
    layout = "[B, L, H, D]" if rank == 4 else "[tokens, H, D]"
    qs, ks, vs = d.shape_of(function, "q", q), d.shape_of(function, "k", k), d.shape_of(function, "v", v)
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


def _flash_flags(
    function: str,
    dropout_p: object,
    causal: object,
    deterministic: object,
    return_attn_probs: object,
    return_lse: object,
) -> tuple[float, bool, bool, bool]:
    """``(dropout_p, causal, return_attn_probs, return_lse)`` checked. ``deterministic``
    is checked and otherwise has no effect: every path here is deterministic."""
    dropout = d.check_unit_interval(function, "dropout_p", dropout_p)
    causal = d.check_bool(function, "causal", causal)
    d.check_bool(function, "deterministic", deterministic)
    probs = d.check_bool(function, "return_attn_probs", return_attn_probs)
    lse = d.check_bool(function, "return_lse", return_lse)
    if probs and lse:
        raise ValueError(
            f"{function}(): expected one of return_attn_probs (out, softmax_lse, S_dmask) and "
            "return_lse (out, softmax_lse), got both"
        )
    if probs and dropout > 0.0:
        raise value_error(
            function, "dropout_p", "0 with return_attn_probs (the dropout pattern S_dmask is not kept)", repr(dropout_p)
        )
    return dropout, causal, probs, lse


def _refuse_rust_dropout(function: str, dropout_p: float) -> None:
    if dropout_p > 0.0:
        raise value_error(
            function,
            "dropout_p",
            "0 on the Rust path (dropout runs only in the PyTorch implementation: CUDA tensors or backend='torch')",
            repr(dropout_p),
        )


def _flash_causal(window: tuple[int | None, int | None], seqlen_k: int) -> bool:
    """Whether flash-attn's kernel runs this call as causal: right window 0 and no
    left limit, a left window of at least ``seqlen_k`` (its ``max_seqlen_k`` for
    varlen) counting as none, as flash-attn clamps it."""
    left, right = window
    return right == 0 and (left is None or left >= seqlen_k)


def _alibi_causal_lse_offset(alibi: np.ndarray, heads: int, cu_q: np.ndarray, cu_k: np.ndarray) -> np.ndarray:
    """``[heads, total_q]``: what flash-attn's causal LSE adds to ATT-REF's with the
    ATT-ALIBI bias. Under causal masking its kernel adds ``+slope * j`` instead of
    ``-slope * |i + S - L - j|``: the same bias less ``slope * (i + S - L)`` on every
    key row ``i`` sees, so outputs agree and the LSE is larger by that constant."""
    len_q, len_k = np.diff(cu_q), np.diff(cu_k)
    seq = np.repeat(np.arange(len(len_q)), len_q)
    position = np.arange(int(cu_q[-1])) - cu_q[:-1][seq] + (len_k - len_q)[seq]
    return (alibi.reshape(-1, heads)[seq] * position[:, None].astype(np.float64)).T


_Lse = TypeVar("_Lse", np.ndarray, "torch.Tensor")


def _shift_lse(lse: _Lse, offset: np.ndarray) -> _Lse:
    """``lse + offset`` added in float64, rounded once to the lse's dtype (-inf stays)."""
    if d.is_tensor(lse):
        torch = d.torch_module()
        return (lse.double() + torch.from_numpy(offset).to(lse.device)).to(lse.dtype)
    return (lse.astype(np.float64) + offset).astype(lse.dtype)


def _flash_result(out: Array, lse: Array, q: Array, return_attn_probs: bool, return_lse: bool) -> Any:
    if return_attn_probs:
        # flash-attn returns S_dmask only with dropout; without it an empty tensor
        # of q's dtype, as here.
        return out, lse, _result(np.empty((0,), dtype=np.float32), q)
    return (out, lse) if return_lse else out


def _flash_torch(
    function: str, q: Array, k: Array, v: Array, alibi: np.ndarray | None, batch: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    torch = d.require_torch(function)
    device = d.device_of(q, k, v) or torch.device("cpu")
    q, k, v = (_host_tensor(function, n, x) for n, x in (("q", q), ("k", k), ("v", v)))
    slopes = None if alibi is None else torch.from_numpy(alibi.reshape(batch, -1)).to(device)
    return q.to(device), k.to(device), v.to(device), slopes


def flash_attn_func(
    q: ArrayLike,
    k: ArrayLike,
    v: ArrayLike,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] | ArrayLike = (-1, -1),
    softcap: float = 0.0,
    alibi_slopes: ArrayLike | None = None,
    deterministic: bool = False,
    return_attn_probs: bool = False,
    *,
    return_lse: bool = False,
    backend: Backend = "auto",
) -> Any:
    """FlashAttention-2's ``flash_attn_func``, with its positional order (ATT-CAUSAL
    bottom-right, ATT-WINDOW, ATT-SOFTCAP, ATT-ALIBI, ATT-GQA).

    Args:
        q (Tensor[B, L, Hq, D] | ndarray): queries.
        k (Tensor[B, S, Hkv, D] | ndarray): keys; ``Hq % Hkv == 0`` (GQA/MQA).
        v (Tensor[B, S, Hkv, Dv] | ndarray): values.
        dropout_p: must be 0 except on the PyTorch path (CUDA tensors, ``backend="torch"``),
            where it runs when torch's own SDPA computes the case.
        softmax_scale: multiplies ``q . k``; default ``1 / sqrt(D)``.
        causal: query ``i`` sees keys ``j <= i + S - L`` (bottom-right aligned).
        window_size: ``(left, right)`` (tuple, list, array or tensor): query ``i`` sees
            keys in ``[i + S - L - left, i + S - L + right]``; -1 = unbounded.
        softcap: when > 0, scores become ``softcap * tanh(score / softcap)``.
        alibi_slopes (Tensor[Hq] | Tensor[B, Hq], optional): adds ``-slope * |i + S - L - j|``.
        deterministic: accepted for flash-attn's signature; every path is deterministic.
        return_attn_probs: also return ``softmax_lse`` and ``S_dmask``, as flash-attn.
            ``S_dmask`` is what flash-attn returns without dropout: an empty ``[0]``
            tensor of q's dtype (flash-attn fills it only when ``dropout_p > 0``).
        return_lse: keyword-only: also return ``softmax_lse`` alone (a 2-tuple).
        backend: "auto", "rust" or "torch".

    Returns:
        Tensor[B, L, Hq, Dv] | ndarray; with ``return_attn_probs`` ``(out, softmax_lse,
        S_dmask)``, with ``return_lse`` ``(out, softmax_lse)``. ``softmax_lse
        (Tensor[B, Hq, L])`` is float32 (float64 for float64 inputs), ``-inf`` for rows
        that see no key (flash-attn's kernel writes ``+inf`` there). With causal
        masking and ALiBi it is flash-attn's: the log-sum-exp of the scores plus
        ``slope * j`` (ATT-ALIBI's bias less the row constant ``slope * (i + S - L)``).
    """
    f = "flash_attn_func"
    dropout, causal, probs, want_lse = _flash_flags(f, dropout_p, causal, deterministic, return_attn_probs, return_lse)
    named = _as_inputs(f, {"q": q, "k": k, "v": v})
    q, k, v = named["q"], named["k"], named["v"]
    _check_float_inputs(f, named)
    scale, window, cap = _flash_checks(f, q, k, v, 4, softmax_scale, window_size, softcap)
    if causal:
        window = (window[0], 0)
    B, L, hq, D = q.shape
    S, hkv, Dv = k.shape[1], k.shape[2], v.shape[3]
    alibi = _slopes(f, alibi_slopes, B, hq)
    lse_wanted = probs or want_lse
    offset = None
    if lse_wanted and alibi is not None and _flash_causal(window, S):
        cu_q, cu_k = np.arange(B + 1) * L, np.arange(B + 1) * S
        offset = _alibi_causal_lse_offset(alibi, hq, cu_q, cu_k).reshape(hq, B, L).transpose(1, 0, 2)
    if d.select_backend(f, backend, q, k, v, rust_autograd=True) == "torch":
        tq, tk, tv, slopes = _flash_torch(f, q, k, v, alibi, B)
        _check_finite(f, q=tq, k=tk, v=tv)
        out_t, lse_t = d.torch_implementation("attention").flash(
            tq,
            tk,
            tv,
            scale=scale,
            window=window,
            softcap=cap,
            alibi_slopes=slopes,
            dropout_p=dropout,
            want_lse=lse_wanted,
        )
        if not lse_wanted:
            return d.like(out_t, q)
        lse_t = lse_t if offset is None else _shift_lse(lse_t, offset)
        return _flash_result(d.like(out_t, q), d.like(lse_t, q), q, probs, want_lse)
    _refuse_rust_dropout(f, dropout)
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
    if not lse_wanted:
        return out
    lse = np.ascontiguousarray(lse.reshape(hq, B, L).transpose(1, 0, 2))
    lse = lse if offset is None else _shift_lse(lse, offset)
    return _flash_result(out, _lse_result(lse, q), q, probs, want_lse)


def _cu_seqlens(function: str, name: str, cu: ArrayLike, total: int) -> np.ndarray:
    shape = d.shape_of(function, name, cu)
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
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] | ArrayLike = (-1, -1),
    softcap: float = 0.0,
    alibi_slopes: ArrayLike | None = None,
    deterministic: bool = False,
    return_attn_probs: bool = False,
    block_table: ArrayLike | None = None,
    *,
    return_lse: bool = False,
    backend: Backend = "auto",
) -> Any:
    """FlashAttention-2's ``flash_attn_varlen_func``, with its positional order: packed
    sequences (ATT-VARLEN), each attending only within itself, with
    :func:`flash_attn_func`'s options.

    Args:
        q (Tensor[total_q, Hq, D] | ndarray): the queries of all sequences, packed.
        k (Tensor[total_k, Hkv, D] | ndarray), v (Tensor[total_k, Hkv, Dv] | ndarray): keys, values.
        cu_seqlens_q (Tensor[B + 1] | ndarray): int offsets of each sequence's queries:
            starts at 0, non-decreasing, ends at ``total_q``.
        cu_seqlens_k (Tensor[B + 1] | ndarray): the same for keys.
        max_seqlen_q, max_seqlen_k: at least the longest sequence (as FlashAttention).
        dropout_p, softmax_scale, causal, window_size, softcap, deterministic,
            return_attn_probs: as :func:`flash_attn_func`.
        alibi_slopes (Tensor[Hq] | Tensor[B, Hq], optional): per head or per sequence and head.
        block_table: must be None (a paged KV cache is not supported).
        return_lse: keyword-only: also return the log-sum-exp alone.

    Returns:
        Tensor[total_q, Hq, Dv] | ndarray; with ``return_attn_probs`` ``(out, softmax_lse,
        S_dmask)``, with ``return_lse`` ``(out, softmax_lse)``; ``softmax_lse``
        ``[Hq, total_q]`` follows :func:`flash_attn_func`'s rules (flash-attn decides
        causality with ``max_seqlen_k``, and so does this function).
    """
    f = "flash_attn_varlen_func"
    dropout, causal, probs, want_lse = _flash_flags(f, dropout_p, causal, deterministic, return_attn_probs, return_lse)
    if block_table is not None:
        raise value_error(f, "block_table", "None (a paged KV cache is not supported)", describe(block_table))
    named = _as_inputs(f, {"q": q, "k": k, "v": v})
    q, k, v = named["q"], named["k"], named["v"]
    _check_float_inputs(f, named)
    scale, window, cap = _flash_checks(f, q, k, v, 3, softmax_scale, window_size, softcap)
    if causal:
        window = (window[0], 0)
    total_q, hq, D = q.shape
    total_k, hkv, Dv = k.shape[0], k.shape[1], v.shape[2]
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
    lse_wanted = probs or want_lse
    offset = None
    if lse_wanted and alibi is not None and _flash_causal(window, int(max_seqlen_k)):
        offset = _alibi_causal_lse_offset(alibi, hq, cq, ck)
    if d.select_backend(f, backend, q, k, v, rust_autograd=True) == "torch":
        tq, tk, tv, slopes = _flash_torch(f, q, k, v, alibi, batch)
        _check_finite(f, q=tq, k=tk, v=tv)
        out_t, lse_t = d.torch_implementation("attention").flash_varlen(
            tq,
            tk,
            tv,
            cq.tolist(),
            ck.tolist(),
            scale=scale,
            window=window,
            softcap=cap,
            alibi_slopes=slopes,
            dropout_p=dropout,
            want_lse=lse_wanted,
        )
        if not lse_wanted:
            return d.like(out_t, q)
        lse_t = lse_t if offset is None else _shift_lse(lse_t, offset)
        return _flash_result(d.like(out_t, q), d.like(lse_t, q), q, probs, want_lse)
    _refuse_rust_dropout(f, dropout)
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
    if not lse_wanted:
        return out
    lse = lse.reshape(hq, total_q)
    lse = lse if offset is None else _shift_lse(lse, offset)
    return _flash_result(out, _lse_result(lse, q), q, probs, want_lse)
