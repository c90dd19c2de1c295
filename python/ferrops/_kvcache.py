"""Attention over a key/value cache: FlashAttention-2's ``flash_attn_with_kvcache``
(SPEC section 3: ATT-KVCACHE, ATT-PAGED, ATT-SPLITKV).

The CPU path is a split-KV ("flash-decoding") Rust kernel that reads the cache in
its own layout, contiguous ``[B, S, Hkv, D]`` or paged ``[num_blocks, block_size,
Hkv, D]``, each key head once for all the query heads of its group; CUDA tensors
(or ``backend="torch"``) run a PyTorch implementation on their device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core
from . import _dispatch as d
from . import attention as _attention
from ._dispatch import Array, ArrayLike, Backend
from ._errors import describe, type_error, value_error

__all__ = ["flash_attn_with_kvcache"]

_FUNCTION = "flash_attn_with_kvcache"
_CACHE_DTYPES = ("float32", "bfloat16", "float16")
#: Positions per split when ``num_splits`` is 0 (the Rust kernel's DEFAULT_SPLIT).
_DEFAULT_SPLIT = 256


@dataclass
class KvPlan:
    """One call's checked shapes and options, shared by both paths."""

    batch: int
    len_q: int
    heads_q: int
    heads_kv: int
    dim_qk: int
    dim_v: int
    num_blocks: int
    block_size: int
    max_blocks: int
    #: ``[B, max_blocks]`` int32 (a contiguous cache: one block per sequence).
    block_table: np.ndarray
    #: ``[B]`` int32: keys after the append, and each sequence's first position.
    seqlens_k: np.ndarray
    key_starts: np.ndarray
    len_new: int
    scale: float
    window: tuple[int | None, int | None]
    softcap: float
    #: ``[B * Hq]`` float64, or None.
    alibi: np.ndarray | None
    #: ``[Lq, Lq]`` or ``[B, Lq, Lq]`` bool, or None.
    tree_mask: np.ndarray | None
    #: Positions per split; 0 = one split.
    split: int
    dtype: str


def _int_vector(argument: str, x: ArrayLike, length: int) -> np.ndarray:
    a = d.index_array(_FUNCTION, argument, x)
    if a.shape != (length,):
        raise value_error(_FUNCTION, argument, f"shape [{length}] (one per sequence)", list(a.shape))
    return a


def _int32(argument: str, a: np.ndarray) -> np.ndarray:
    """``a`` as int32; values outside int32 would wrap, so they are refused here."""
    if a.size and (a.min() < -(2**31) or a.max() >= 2**31):
        raise value_error(_FUNCTION, argument, "values that fit in int32", f"{a.min()} .. {a.max()}")
    return a.astype(np.int32)


def _plan(
    q: Array,
    k_cache: Array,
    v_cache: Array,
    k: Array | None,
    v: Array | None,
    cache_seqlens: Any,
    cache_batch_idx: Any,
    cache_leftpad: Any,
    block_table: Any,
    softmax_scale: object,
    causal: object,
    window_size: object,
    softcap: object,
    alibi_slopes: Any,
    num_splits: object,
    tree_mask: Any,
) -> KvPlan:
    f = _FUNCTION
    if (k is None) != (v is None):
        raise ValueError(f"{f}(): expected k and v together (or neither), got only {'k' if v is None else 'v'}")
    names: dict[str, Array] = {"q": q, "k_cache": k_cache, "v_cache": v_cache}
    if k is not None and v is not None:
        names |= {"k": k, "v": v}
    for n, x in names.items():
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise type_error(f, n, "an array or tensor", describe(x))
    dtypes = {n: str(x.dtype).replace("torch.", "") for n, x in names.items()}
    if len(set(dtypes.values())) > 1:
        got = ", ".join(f"{n} {dt}" for n, dt in dtypes.items())
        raise TypeError(f"{f}(): expected {', '.join(dtypes)} of one dtype, got {got}")
    if dtypes["k_cache"] not in _CACHE_DTYPES:
        raise type_error(f, "k_cache", "float32, bfloat16 or float16", f"dtype {dtypes['k_cache']}")
    qs, ks, vs = tuple(q.shape), tuple(k_cache.shape), tuple(v_cache.shape)
    for n, s in (("q", qs), ("k_cache", ks), ("v_cache", vs)):
        if len(s) != 4:
            raise value_error(f, n, "4 dimensions", list(s))
    batch, len_q, heads_q, dim = qs
    if ks[3] != dim:
        raise value_error(f, "k_cache", f"head dimension {dim} (q's)", ks[3])
    if vs[:3] != ks[:3]:
        raise value_error(f, "v_cache", f"shape [{', '.join(map(str, ks[:3]))}, Dv] (k_cache's but the last)", list(vs))
    heads_kv = ks[2]
    if heads_kv == 0 and heads_q > 0 or heads_kv and heads_q % heads_kv:
        raise value_error(f, "k_cache", f"a number of heads dividing q's {heads_q} (GQA/MQA)", heads_kv)
    len_new = 0
    if k is not None and v is not None:
        for n, x, last in (("k", k, dim), ("v", v, vs[3])):
            s = tuple(x.shape)
            if len(s) != 4 or s[0] != batch or s[2:] != (heads_kv, last):
                raise value_error(f, n, f"shape [{batch}, L_new, {heads_kv}, {last}]", list(s))
        if tuple(v.shape)[1] != tuple(k.shape)[1]:
            raise value_error(f, "v", f"{tuple(k.shape)[1]} new positions (k's)", tuple(v.shape)[1])
        len_new = int(tuple(k.shape)[1])
    if block_table is None:
        num_blocks, block_size, max_blocks = ks[0], ks[1], 1
        if cache_batch_idx is None:
            if ks[0] != batch:
                raise value_error(f, "k_cache", f"batch size {batch} (q's), or cache_batch_idx", ks[0])
            table = np.arange(batch, dtype=np.int64).reshape(batch, 1)
        else:
            table = _int_vector("cache_batch_idx", cache_batch_idx, batch).reshape(batch, 1)
            if table.size and (table.min() < 0 or table.max() >= ks[0]):
                raise value_error(f, "cache_batch_idx", f"indices in [0, {ks[0]})", table.ravel().tolist())
    else:
        if cache_batch_idx is not None:
            raise value_error(f, "cache_batch_idx", "None with a paged cache (block_table)", describe(cache_batch_idx))
        table = d.index_array(f, "block_table", block_table)
        if table.ndim != 2 or table.shape[0] != batch:
            raise value_error(f, "block_table", f"shape [{batch}, max_blocks]", list(table.shape))
        num_blocks, block_size, max_blocks = ks[0], ks[1], table.shape[1]
    capacity = block_size * max_blocks
    if cache_seqlens is None:
        before = np.full(batch, capacity, dtype=np.int64)
    elif isinstance(cache_seqlens, (int, np.integer)) and not isinstance(cache_seqlens, (bool, np.bool_)):
        before = np.full(batch, d.check_int(f, "cache_seqlens", cache_seqlens, 0, "a length >= 0"), dtype=np.int64)
    else:
        before = _int_vector("cache_seqlens", cache_seqlens, batch)
    starts = np.zeros(batch, np.int64) if cache_leftpad is None else _int_vector("cache_leftpad", cache_leftpad, batch)
    left, right = _attention._check_window(f, window_size)
    if d.check_bool(f, "causal", causal):
        right = 0
    splits = d.check_int(f, "num_splits", num_splits, 0, "an int >= 0 (0 = automatic)")
    longest = int((before + len_new - starts).max(initial=0))
    split = _DEFAULT_SPLIT if splits == 0 else 0 if splits == 1 else max(1, math.ceil(longest / splits))
    mask = None
    if tree_mask is not None:
        mask = np.asarray(d.host_array(f, "tree_mask", tree_mask))
        if mask.dtype != np.bool_:
            raise type_error(f, "tree_mask", "a bool array or tensor", f"dtype {mask.dtype}")
        if mask.shape not in ((len_q, len_q), (batch, len_q, len_q)):
            raise value_error(
                f, "tree_mask", f"shape [{len_q}, {len_q}] or [{batch}, {len_q}, {len_q}]", list(mask.shape)
            )
    return KvPlan(
        batch=batch,
        len_q=len_q,
        heads_q=heads_q,
        heads_kv=heads_kv,
        dim_qk=dim,
        dim_v=vs[3],
        num_blocks=num_blocks,
        block_size=block_size,
        max_blocks=max_blocks,
        block_table=_int32("block_table", table),
        seqlens_k=_int32("cache_seqlens", before + len_new),
        key_starts=_int32("cache_leftpad", starts),
        len_new=len_new,
        scale=_attention._check_scale(f, "softmax_scale", softmax_scale, dim),
        window=(left, right),
        softcap=_attention._check_softcap(f, softcap),
        alibi=_attention._slopes(f, alibi_slopes, batch, heads_q),
        tree_mask=mask,
        split=split,
        dtype=dtypes["k_cache"],
    )


def _cache_bits(argument: str, x: Array, dtype: str, written: bool) -> np.ndarray:
    """The cache's memory as the NumPy array the kernel reads (and, when
    ``written``, writes): float32, or the uint16 bits of bfloat16/float16. A cache
    that is written is never copied, so that appended keys land in the caller's
    cache; one that is only read is made contiguous if it is not."""
    if d.is_tensor(x):
        torch = d.torch_module()
        t = x.detach()
        if not t.is_contiguous():
            if written:
                raise value_error(_FUNCTION, argument, "a contiguous tensor (it is written in place)", "a strided view")
            t = t.contiguous()
        return t.numpy() if dtype == "float32" else t.view(torch.int16).numpy().view(np.uint16)
    a = np.asarray(x)
    if not a.flags.c_contiguous:
        if written:
            raise value_error(_FUNCTION, argument, "a contiguous array (it is written in place)", "a strided view")
        a = d.contiguous(_FUNCTION, argument, a, a.dtype)
    return a if dtype == "float32" else a.view(np.uint16)


def _new_bits(argument: str, x: Array, dtype: str) -> np.ndarray:
    """New keys or values in the cache's format, contiguous (a copy is fine)."""
    if d.is_tensor(x):
        torch = d.torch_module()
        t = x.detach().cpu().contiguous()
        return t.numpy() if dtype == "float32" else t.view(torch.int16).numpy().view(np.uint16)
    a = np.ascontiguousarray(x)
    return a if dtype == "float32" else a.view(np.uint16)


def _run_rust(
    q: Array, k_cache: Array, v_cache: Array, k: Array | None, v: Array | None, plan: KvPlan
) -> tuple[np.ndarray, np.ndarray]:
    q32 = d.contiguous(_FUNCTION, "q", d.float_array(_FUNCTION, "q", q), np.dtype(np.float32))
    left, right = plan.window
    options = {
        "function": _FUNCTION,
        "format": plan.dtype,
        "batch": plan.batch,
        "len_q": plan.len_q,
        "heads_q": plan.heads_q,
        "heads_kv": plan.heads_kv,
        "dim_qk": plan.dim_qk,
        "dim_v": plan.dim_v,
        "num_blocks": plan.num_blocks,
        "block_size": plan.block_size,
        "block_table": plan.block_table.reshape(-1),
        "max_blocks": plan.max_blocks,
        "seqlens_k": plan.seqlens_k,
        "key_starts": plan.key_starts,
        "scale": plan.scale,
        "window_left": left,
        "window_right": right,
        "softcap": plan.softcap,
        "alibi_slopes": plan.alibi,
        "tree_mask": None if plan.tree_mask is None else np.ascontiguousarray(plan.tree_mask).reshape(-1),
        "split": plan.split,
    }
    written = k is not None
    kc, vc = _cache_bits("k_cache", k_cache, plan.dtype, written), _cache_bits("v_cache", v_cache, plan.dtype, written)
    kn = None if k is None else _new_bits("k", k, plan.dtype)
    vn = None if v is None else _new_bits("v", v, plan.dtype)
    out, lse = _core.attention_kvcache(q32, kc, vc, kn, vn, options)
    out = out.reshape(plan.batch, plan.len_q, plan.heads_q, plan.dim_v)
    lse = np.ascontiguousarray(lse.reshape(plan.batch, plan.len_q, plan.heads_q).transpose(0, 2, 1))
    return out, lse


def _flash_lse_offset(plan: KvPlan) -> np.ndarray | None:
    """``[B, Hq, Lq]``: what flash-attn's LSE adds under causal ALiBi (ATT-ALIBI),
    judged against the cache's capacity as its kernel does; None when nothing."""
    capacity = plan.block_size * plan.max_blocks
    if plan.alibi is None or not _attention._flash_causal(plan.window, capacity):
        return None
    len_k = (plan.seqlens_k - plan.key_starts).astype(np.float64)
    position = np.arange(plan.len_q)[None, :] + (len_k - plan.len_q)[:, None]
    return plan.alibi.reshape(plan.batch, plan.heads_q)[:, :, None] * position[:, None, :]


def flash_attn_with_kvcache(
    q: ArrayLike,
    k_cache: ArrayLike,
    v_cache: ArrayLike,
    k: ArrayLike | None = None,
    v: ArrayLike | None = None,
    rotary_cos: ArrayLike | None = None,
    rotary_sin: ArrayLike | None = None,
    cache_seqlens: int | ArrayLike | None = None,
    cache_batch_idx: ArrayLike | None = None,
    cache_leftpad: ArrayLike | None = None,
    block_table: ArrayLike | None = None,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] | ArrayLike = (-1, -1),
    softcap: float = 0.0,
    rotary_interleaved: bool = True,
    alibi_slopes: ArrayLike | None = None,
    num_splits: int = 0,
    return_softmax_lse: bool = False,
    *,
    tree_mask: ArrayLike | None = None,
    return_lse: bool = False,
    backend: Backend = "auto",
) -> Any:
    """FlashAttention-2's ``flash_attn_with_kvcache``, with its positional order:
    attention of new queries over a key/value cache, after appending new keys and
    values to it in place (ATT-KVCACHE, ATT-PAGED, ATT-SPLITKV).

    Args:
        q (Tensor[B, Lq, Hq, D] | ndarray): queries (Lq = 1 when decoding).
        k_cache (Tensor[B_cache, S, Hkv, D] | Tensor[num_blocks, block_size, Hkv, D]):
            the key cache, contiguous (with ``block_table``: paged). float32, bfloat16 or
            float16, q's dtype; written in place when ``k`` is given, so then C-contiguous.
        v_cache (Tensor[..., Hkv, Dv]): the value cache, shaped as ``k_cache``.
        k (Tensor[B, L_new, Hkv, D], optional): new keys, written at positions
            ``cache_seqlens .. cache_seqlens + L_new - 1`` of each sequence before attending.
        v (Tensor[B, L_new, Hkv, Dv], optional): new values, with ``k``.
        rotary_cos, rotary_sin: must be None (rotary embeddings are not applied here:
            rotate q and k before the call).
        cache_seqlens (int | Tensor[B], optional): keys already in the cache per sequence
            (default: the whole cache). Each sequence attends to its first
            ``cache_seqlens + L_new`` positions.
        cache_batch_idx (Tensor[B], optional): the cache row of each sequence (contiguous
            cache only).
        cache_leftpad (Tensor[B], optional): the first cache position of each sequence.
        block_table (Tensor[B, max_blocks], optional): int32 block indices of a paged cache.
        softmax_scale: multiplies ``q . k``; default ``1 / sqrt(D)``.
        causal: query ``i`` sees keys ``j <= i + S_k - Lq`` (bottom-right aligned).
        window_size: ``(left, right)``: query ``i`` sees keys in ``[i + S_k - Lq - left,
            i + S_k - Lq + right]``; -1 = unbounded.
        softcap: when > 0, scores become ``softcap * tanh(score / softcap)``.
        rotary_interleaved: accepted for flash-attn's signature (no rotary here).
        alibi_slopes (Tensor[Hq] | Tensor[B, Hq], optional): adds ``-slope * |i + S_k - Lq - j|``.
        num_splits: keys are split into chunks merged by their log-sum-exp: 0 = chunks of
            256 positions (the same for any thread count), 1 = no split, n = n chunks.
        return_softmax_lse: also return the log-sum-exp.
        tree_mask (Tensor[Lq, Lq] | Tensor[B, Lq, Lq], optional): keyword-only, a ferrops
            extension for tree (speculative, Medusa-style) decoding: ``tree_mask[i, j]``
            says whether new token ``i`` may see new token ``j`` (the last ``Lq`` keys);
            earlier keys stay visible. It combines with ``causal`` and the window.
        return_lse: keyword-only, the same as ``return_softmax_lse`` (the name
            :func:`flash_attn_func` uses).
        backend: "auto", "rust" or "torch".

    Returns:
        Tensor[B, Lq, Hq, Dv] | ndarray of q's dtype; with ``return_softmax_lse``
        ``(out, softmax_lse)``, ``softmax_lse`` float32 ``[B, Hq, Lq]``. A row that sees no
        key (an empty cache and no new keys) is 0 with log-sum-exp ``-inf``.
    """
    f = _FUNCTION
    for name, value in (("rotary_cos", rotary_cos), ("rotary_sin", rotary_sin)):
        if value is not None:
            raise value_error(f, name, "None (rotate q and k before the call)", describe(value))
    d.check_bool(f, "rotary_interleaved", rotary_interleaved)
    want_lse = d.check_bool(f, "return_softmax_lse", return_softmax_lse) | d.check_bool(f, "return_lse", return_lse)
    named = {"q": q, "k_cache": k_cache, "v_cache": v_cache}
    arrays = [x if d.is_tensor(x) else d.host_array(f, n, x) for n, x in named.items()]
    new = [None if x is None else x if d.is_tensor(x) else d.host_array(f, n, x) for n, x in (("k", k), ("v", v))]
    plan = _plan(
        arrays[0], arrays[1], arrays[2], new[0], new[1],
        cache_seqlens, cache_batch_idx, cache_leftpad, block_table,
        softmax_scale, causal, window_size, softcap, alibi_slopes, num_splits, tree_mask,
    )  # fmt: skip
    inputs = (q, k_cache, v_cache, k, v)
    if d.select_backend(f, backend, *inputs) == "torch":
        torch_kv = d.torch_implementation("kvcache")
        out, lse = torch_kv.flash_attn_with_kvcache(arrays[0], arrays[1], arrays[2], new[0], new[1], plan)
    else:
        out_np, lse_np = _run_rust(arrays[0], arrays[1], arrays[2], new[0], new[1], plan)
        out, lse = _attention._result(out_np, arrays[0]), _attention._lse_result(lse_np, arrays[0])
    offset = _flash_lse_offset(plan)
    if want_lse and offset is not None:
        lse = _attention._shift_lse(lse, offset)
    return (out, lse) if want_lse else out


flash_attn_with_kvcache.__module__ = "ferrops.attention"
