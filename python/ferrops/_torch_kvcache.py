"""PyTorch implementation of :func:`ferrops.flash_attn_with_kvcache` (CUDA tensors,
``backend="torch"``), written from the SPEC formulas (ATT-REF, ATT-KVCACHE,
ATT-PAGED): the pages of each sequence are gathered, the scores computed in
float32 on the tensors' device. Imported lazily, so ``import ferrops`` never
imports torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from . import _dispatch as d
from ._errors import value_error

if TYPE_CHECKING:
    from ._kvcache import KvPlan

_FUNCTION = "flash_attn_with_kvcache"


def _tensor(x: Any) -> torch.Tensor:
    """A tensor of ``x``, sharing a NumPy array's memory (appends land in it)."""
    return x if d.is_tensor(x) else torch.from_numpy(np.asarray(x))


def _check_values(plan: KvPlan) -> None:
    """The checks the Rust kernel makes on the lengths and the block table, so
    that nothing here indexes outside the cache."""
    capacity = plan.block_size * plan.max_blocks
    for b in range(plan.batch):
        length, start = int(plan.seqlens_k[b]), int(plan.key_starts[b])
        if not 0 <= length <= capacity:
            raise value_error(
                _FUNCTION,
                "cache_seqlens",
                f"lengths (appended keys included) in [0, {capacity}], the cache's positions",
                f"{length} for sequence {b}",
            )
        if not 0 <= start <= length - plan.len_new:
            raise value_error(_FUNCTION, "cache_leftpad", f"a start in [0, {length - plan.len_new}]", start)
        used = plan.block_table[b, : -(-length // plan.block_size)]
        bad = np.flatnonzero((used < 0) | (used >= plan.num_blocks))
        if bad.size:
            raise value_error(
                _FUNCTION,
                "block_table",
                f"block indices in [0, {plan.num_blocks})",
                f"{used[bad[0]]} at [{b}, {bad[0]}]",
            )


def _rows(table: torch.Tensor, block_size: int, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(block, offset) of cache positions of one sequence."""
    return table[positions // block_size], positions % block_size


def flash_attn_with_kvcache(
    q: Any, k_cache: Any, v_cache: Any, k: Any, v: Any, plan: KvPlan
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out [B, Lq, Hq, Dv] of q's dtype, lse float32 [B, Hq, Lq])``; appends ``k``, ``v``."""
    _check_values(plan)
    q, k_cache, v_cache = _tensor(q), _tensor(k_cache), _tensor(v_cache)
    device = q.device
    table = torch.from_numpy(plan.block_table.astype(np.int64)).to(device)
    if k is not None and v is not None:
        k, v = _tensor(k).to(device), _tensor(v).to(device)
        new = torch.arange(plan.len_new, device=device)
        for b in range(plan.batch):
            blocks, offsets = _rows(table[b], plan.block_size, int(plan.seqlens_k[b]) - plan.len_new + new)
            k_cache[blocks, offsets] = k[b].to(k_cache.dtype)
            v_cache[blocks, offsets] = v[b].to(v_cache.dtype)
    group = plan.heads_q // max(plan.heads_kv, 1)
    out = torch.zeros(plan.batch, plan.len_q, plan.heads_q, plan.dim_v, dtype=torch.float32, device=device)
    lse = torch.full((plan.batch, plan.heads_q, plan.len_q), float("-inf"), dtype=torch.float32, device=device)
    left, right = plan.window
    mask = None if plan.tree_mask is None else torch.from_numpy(np.ascontiguousarray(plan.tree_mask)).to(device)
    slopes = None if plan.alibi is None else torch.from_numpy(plan.alibi).to(device).reshape(plan.batch, -1)
    for b in range(plan.batch):
        start, length = int(plan.key_starts[b]), int(plan.seqlens_k[b])
        len_k = length - start
        if len_k == 0 or plan.len_q == 0:
            continue
        blocks, offsets = _rows(table[b], plan.block_size, torch.arange(start, length, device=device))
        keys = k_cache[blocks, offsets].float().repeat_interleave(group, dim=1)
        values = v_cache[blocks, offsets].float().repeat_interleave(group, dim=1)
        scores = torch.einsum("ihd,jhd->hij", q[b].float(), keys) * plan.scale
        if plan.softcap > 0:
            scores = plan.softcap * torch.tanh(scores / plan.softcap)
        position = torch.arange(plan.len_q, device=device)[:, None] + (len_k - plan.len_q)
        key = torch.arange(len_k, device=device)[None, :]
        if slopes is not None:
            distance = (position - key).abs().double()
            scores = (scores.double() - slopes[b][:, None, None] * distance).float()
        allowed = torch.ones(plan.len_q, len_k, dtype=torch.bool, device=device)
        if left is not None:
            allowed &= key >= position - left
        if right is not None:
            allowed &= key <= position + right
        if mask is not None:
            tree = mask if mask.dim() == 2 else mask[b]
            first_new = len_k - plan.len_q
            new_cols = key[0] >= first_new
            cols = (key[0] - first_new).clamp(min=0)
            allowed &= ~new_cols[None, :] | tree[:, cols]
        scores = scores.masked_fill(~allowed, float("-inf"))
        row_lse = torch.logsumexp(scores, dim=-1)
        probs = torch.exp(scores - row_lse.nan_to_num(neginf=0.0)[..., None])
        out[b] = torch.einsum("hij,jhd->ihd", probs, values)
        lse[b] = row_lse
    return out.to(q.dtype), lse
