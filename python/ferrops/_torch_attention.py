"""PyTorch implementation of attention, for tensors on other devices (CUDA) and
``backend="torch"``. Written from the SPEC formulas (ATT-REF and the option
clauses), differentiable by autograd, and checked by the same spec tests as the
Rust kernels.

torch's own ``scaled_dot_product_attention`` runs when it computes exactly the
requested case (no window, softcap or ALiBi, no log-sum-exp wanted, and no row
that could see no key, where it returns NaN instead of ATT-MASK's 0); otherwise
an explicit computation in query chunks, so the score matrix held at once is at
most ``chunk x S`` per head.
"""

from __future__ import annotations

import math
from typing import Any

import torch

#: Query rows per chunk of the explicit path.
_CHUNK = 1024


def dense(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float,
    bottom_right: bool,
    window: tuple[int | None, int | None],
    softcap: float,
    alibi_slopes: torch.Tensor | None,
    mask: torch.Tensor | None,
    dropout_p: float,
    want_lse: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention over ``q [B, Hq, L, D]``, ``k [B, Hkv, S, D]``, ``v [B, Hkv, S, Dv]``.

    ``window = (left, right)`` in keys around query ``i``'s position (``i + S - L``
    when ``bottom_right``, else ``i``), None for unbounded; ``alibi_slopes [B, Hq]``;
    ``mask`` bool (True = attend) or additive, broadcastable to ``[B, Hq, L, S]``.
    Returns ``out [B, Hq, L, Dv]`` in ``q``'s dtype and ``lse [B, Hq, L]`` (float32,
    float64 for float64 inputs) when ``want_lse``.
    """
    B, Hq, L, _ = q.shape
    Hkv, S = k.shape[1], k.shape[2]
    left, right = window
    offset = S - L if bottom_right else 0
    plain = softcap == 0.0 and alibi_slopes is None and left is None and not want_lse
    every_row_sees_a_key = S > 0 and (right is None or offset + right >= 0)
    if plain and mask is None and every_row_sees_a_key and (right is None or (right == 0 and offset == 0)):
        return (
            torch.nn.functional.scaled_dot_product_attention(
                q, k, v, dropout_p=dropout_p, is_causal=right is not None, scale=scale, enable_gqa=Hq != Hkv
            ),
            None,
        )
    if dropout_p > 0.0:
        raise ValueError(
            "attention(): argument 'dropout_p': dropout is supported only where torch's "
            "scaled_dot_product_attention computes the case (no mask that can empty a row, "
            f"no window, softcap or ALiBi), got {dropout_p}"
        )
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    if S == 0:
        # No key at all: every row attends to nothing (ATT-MASK).
        out = q.new_zeros(B, Hq, L, v.shape[-1])
        return out, (q.new_full((B, Hq, L), -math.inf, dtype=compute) if want_lse else None)
    group = Hq // Hkv if Hkv else 1
    kf = k.to(compute).repeat_interleave(group, dim=1)
    vf = v.to(compute).repeat_interleave(group, dim=1)
    outs, lses = [], []
    keys = torch.arange(S, device=q.device)
    for i0 in range(0, L, _CHUNK):
        i1 = min(L, i0 + _CHUNK)
        qf = q[:, :, i0:i1].to(compute)
        s = torch.matmul(qf, kf.transpose(-1, -2)) * scale
        if softcap > 0.0:
            s = softcap * torch.tanh(s / softcap)
        pos = (torch.arange(i0, i1, device=q.device) + offset)[:, None]
        if alibi_slopes is not None:
            s = s - alibi_slopes.to(compute)[:, :, None, None] * (pos - keys[None, :]).abs().to(compute)
        allowed = torch.ones(i1 - i0, S, dtype=torch.bool, device=q.device)
        if left is not None:
            allowed &= keys[None, :] >= pos - left
        if right is not None:
            allowed &= keys[None, :] <= pos + right
        s = s.masked_fill(~allowed, -math.inf)
        if mask is not None:
            m = mask[..., i0:i1, :] if mask.shape[-2] != 1 else mask
            s = s.masked_fill(~m, -math.inf) if m.dtype == torch.bool else s + m.to(compute)
        row_max = s.amax(dim=-1, keepdim=True).detach()
        shift = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
        p = torch.exp(s - shift)
        total = p.sum(dim=-1, keepdim=True)
        o = torch.matmul(p, vf) / torch.where(total > 0, total, torch.ones_like(total))
        outs.append(o)
        if want_lse:
            lses.append((shift + torch.log(total)).squeeze(-1))
    lse: torch.Tensor | None
    if L == 0:
        out = q.new_zeros(B, Hq, 0, v.shape[-1], dtype=compute)
        lse = q.new_zeros(B, Hq, 0, dtype=compute)
    else:
        out = torch.cat(outs, dim=2)
        lse = torch.cat(lses, dim=2) if want_lse else None
    return out.to(q.dtype), lse


def sdpa(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    attn_mask: Any,
    dropout_p: float,
    is_causal: bool,
    scale: float,
) -> torch.Tensor:
    """``scaled_dot_product_attention`` on ``(..., H, L, E)`` tensors (heads already
    checked); leading dimensions are flattened into the batch."""
    lead = query.shape[:-3]
    Hq, L, E = query.shape[-3:]
    Hk, S = key.shape[-3], key.shape[-2]
    B = math.prod(lead)
    q = query.reshape(B, Hq, L, E)
    k = key.reshape(B, Hk, S, E)
    v = value.reshape(B, Hk, S, value.shape[-1])
    mask = None
    if attn_mask is not None:
        mask = attn_mask.to(query.device).broadcast_to((*lead, Hq, L, S)).reshape(B, Hq, L, S)
    out, _ = dense(
        q,
        k,
        v,
        scale=scale,
        bottom_right=False,
        window=(None, 0 if is_causal else None),
        softcap=0.0,
        alibi_slopes=None,
        mask=mask,
        dropout_p=dropout_p,
        want_lse=False,
    )
    return out.reshape(*lead, Hq, L, value.shape[-1])


def flash(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    scale: float,
    window: tuple[int | None, int | None],
    softcap: float,
    alibi_slopes: torch.Tensor | None,
    dropout_p: float,
    want_lse: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """FlashAttention layout ``[B, L, H, D]``; ``alibi_slopes [B, Hq]``; lse ``[B, Hq, L]``."""
    out, lse = dense(
        q.transpose(1, 2),
        k.transpose(1, 2),
        v.transpose(1, 2),
        scale=scale,
        bottom_right=True,
        window=window,
        softcap=softcap,
        alibi_slopes=alibi_slopes,
        mask=None,
        dropout_p=dropout_p,
        want_lse=want_lse,
    )
    return out.transpose(1, 2), lse


def flash_varlen(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_q: list[int],
    cu_k: list[int],
    *,
    scale: float,
    window: tuple[int | None, int | None],
    softcap: float,
    alibi_slopes: torch.Tensor | None,
    dropout_p: float,
    want_lse: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Packed ``[tokens, H, D]`` sequences, each alone (ATT-VARLEN); alibi ``[B, Hq]``, lse ``[Hq, total_q]``."""
    outs, lses = [], []
    for b in range(len(cu_q) - 1):
        qs, ks = slice(cu_q[b], cu_q[b + 1]), slice(cu_k[b], cu_k[b + 1])
        slopes = None if alibi_slopes is None else alibi_slopes[b : b + 1]
        o, lse = flash(
            q[None, qs],
            k[None, ks],
            v[None, ks],
            scale=scale,
            window=window,
            softcap=softcap,
            alibi_slopes=slopes,
            dropout_p=dropout_p,
            want_lse=want_lse,
        )
        outs.append(o[0])
        if lse is not None:
            lses.append(lse[0])
    compute = torch.float64 if q.dtype == torch.float64 else torch.float32
    out = torch.cat(outs, dim=0) if outs else q.new_zeros(0, q.shape[1], v.shape[-1])
    if not want_lse:
        return out, None
    lse = torch.cat(lses, dim=1) if lses else q.new_zeros(q.shape[1], 0, dtype=compute)
    return out, lse
