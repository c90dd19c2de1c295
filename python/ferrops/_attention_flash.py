"""FlashAttention-2's API: ``flash_attn_func`` on ``(B, L, H, D)`` and
``flash_attn_varlen_func`` on packed sequences (ATT-CAUSAL bottom-right,
ATT-WINDOW, ATT-SOFTCAP, ATT-ALIBI, ATT-GQA, ATT-VARLEN), re-exported by
:mod:`ferrops.attention`. Its option checks and log-sum-exp conventions are
shared with ``flash_attn_with_kvcache``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from . import _dispatch as d
from ._attention_args import (
    _as_inputs,
    _check_finite,
    _check_float_inputs,
    _check_scale,
    _host_tensor,
    _lse_result,
    _result,
)
from ._attention_rust import _options, _refuse_rust_dropout, _run_rust
from ._dispatch import Array, ArrayLike, Backend
from ._errors import describe, type_error, value_error

if TYPE_CHECKING:
    import torch


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
