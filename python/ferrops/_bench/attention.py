"""Benchmark cases for the attention family, against torch's CPU
``scaled_dot_product_attention`` (its flash kernel) on the same tensors.

The sizes are the issue's (B=1, H=8, L=S=4096, D=64; a packed batch of ~9k
tokens; forward+backward at L=2048; 32k tokens for memory), then the decoding
rows of ``attention_decode.py`` (issue 18). ``small=True`` (used
by ``benches/`` in the plain test run) shrinks every shape so CI stays fast.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import time
from collections.abc import Iterable
from functools import partial
from typing import Any

import numpy as np

import ferrops
from ferrops._bench import Case, max_abs_difference
from ferrops._bench.attention_decode import decode_cases


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


@functools.cache
def sgemm_gflops(n: int) -> float:
    """This machine's float32 matrix-product speed (``torch.mm``, n x n), the
    ceiling attention's two tile products are measured against."""
    torch = _torch()
    if torch is None:
        return float("nan")
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def _throughput(flops: float, sgemm_n: int) -> Any:
    def note(seconds: float) -> str:
        rate = flops / seconds / 1e9
        return f"{rate:.1f} GFLOP/s, {100 * rate / sgemm_gflops(sgemm_n):.0f}% of sgemm"

    return note


def _tensors(torch: Any, shape: tuple[int, ...], seed: int, dtype: Any = None) -> list[Any]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g, dtype=torch.float32).to(dtype or torch.float32) for _ in range(3)]


def _varlen_difference(lengths: list[int], heads: int) -> Any:
    """ferrops' packed output against torch's padded ``[B, H, Lmax, D]`` one, on
    the real tokens only (torch's padding rows are NaN)."""

    def difference(ours: Any, theirs: Any) -> float:
        rows, start = [], 0
        for b, n in enumerate(lengths):
            rows.append(theirs[b, :, :n].transpose(0, 1))
            start += n
        import torch

        return max_abs_difference(ours, torch.cat(rows, dim=0))

    return difference


def _grads_difference(ours: Any, theirs: Any) -> float:
    return max(max_abs_difference(a, b) for a, b in zip(ours, theirs))


def _peak_memory_mb(tokens: int, heads: int, dim: int) -> float:
    """Peak resident memory a causal ``flash_attn_func`` over ``tokens`` adds (output
    included), measured in a fresh interpreter with the peak reset just before the
    call (Linux ``/proc``)."""
    code = (
        "import numpy as np, ferrops\n"
        "def status(field):\n"
        "    with open('/proc/self/status') as f:\n"
        "        return next(int(line.split()[1]) for line in f if line.startswith(field))\n"
        f"q, k, v = (np.random.default_rng(s).standard_normal((1, {tokens}, {heads}, {dim}), dtype=np.float32) "
        "for s in range(3))\n"
        "before = status('VmRSS:')\n"
        # Resets the peak (VmHWM) to the current resident size.
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "ferrops.flash_attn_func(q, k, v, causal=True)\n"
        "print((status('VmHWM:') - before) / 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def cases(quick: bool, small: bool = False) -> Iterable[Case]:
    torch = _torch()
    if torch is None:
        return
    sdpa = torch.nn.functional.scaled_dot_product_attention
    L, H, D = (256, 2, 64) if small else (4096, 8, 64)
    sgemm_n = 512 if small else 4096
    for causal in (False, True):
        q, k, v = _tensors(torch, (1, H, L, D), 0)
        flops = 4 * H * L * L * D / (2 if causal else 1)
        yield Case(
            "attention",
            "scaled_dot_product_attention",
            f"fp32 B=1 H={H} L=S={L} D={D}{' causal' if causal else ''}",
            partial(ferrops.scaled_dot_product_attention, q, k, v, is_causal=causal),
            "torch SDPA (CPU flash)",
            partial(sdpa, q, k, v, is_causal=causal),
            max_abs_difference,
            target=1.0,
            note=_throughput(flops, sgemm_n),
        )
    qb, kb, vb = _tensors(torch, (1, H, L, D), 1, torch.bfloat16)
    yield Case(
        "attention",
        "scaled_dot_product_attention",
        f"bf16 B=1 H={H} L=S={L} D={D} causal",
        lambda: ferrops.scaled_dot_product_attention(qb, kb, vb, is_causal=True),
        "torch SDPA (CPU flash)",
        lambda: sdpa(qb, kb, vb, is_causal=True),
        max_abs_difference,
        target=1.0,
        note=_throughput(2 * H * L * L * D, sgemm_n),
    )

    # Packed variable-length batch vs what users do today: pad to the longest
    # sequence and pass a padding-and-causal mask.
    lengths = [160, 40, 96, 24, 120, 64, 8, 100] if small else [2048, 1536, 1024, 1792, 512, 896, 768, 384]
    total, longest = sum(lengths), max(lengths)
    cu = torch.tensor(np.cumsum([0, *lengths]), dtype=torch.int32)
    qp, kp, vp = _tensors(torch, (total, H, D), 2)
    padded = [torch.zeros(len(lengths), H, longest, D) for _ in range(3)]
    for b, (s, n) in enumerate(zip(cu[:-1].tolist(), lengths)):
        for dst, src in zip(padded, (qp, kp, vp)):
            dst[b, :, :n] = src[s : s + n].transpose(0, 1)
    valid = torch.arange(longest)[None, :] < torch.tensor(lengths)[:, None]
    causal_mask = torch.ones(longest, longest, dtype=torch.bool).tril()
    mask = (valid[:, None, None, :] & causal_mask[None, None]).contiguous()
    yield Case(
        "attention",
        "flash_attn_varlen_func",
        f"{len(lengths)} seqs, {total} tokens, H={H} D={D}, causal",
        lambda: ferrops.flash_attn_varlen_func(qp, kp, vp, cu, cu, longest, longest, causal=True),
        "torch SDPA, padded + mask",
        lambda: sdpa(*padded, attn_mask=mask),
        _varlen_difference(lengths, H),
        target=3.0,
        note=_throughput(sum(2 * H * n * n * D for n in lengths), sgemm_n),
    )

    # Forward + backward.
    Lb = 256 if small else 2048
    base = _tensors(torch, (1, H, Lb, D), 3)
    grad = torch.randn(1, H, Lb, D, generator=torch.Generator().manual_seed(4))

    def forward_backward(fn: Any) -> Any:
        def run() -> Any:
            q, k, v = (x.detach().requires_grad_() for x in base)
            fn(q, k, v, is_causal=True).backward(grad)
            return q.grad, k.grad, v.grad

        return run

    yield Case(
        "attention",
        "scaled_dot_product_attention fwd+bwd",
        f"fp32 B=1 H={H} L=S={Lb} D={D} causal",
        forward_backward(ferrops.scaled_dot_product_attention),
        "torch SDPA fwd+bwd",
        forward_backward(sdpa),
        _grads_difference,
        target=1.0,
        note=_throughput(3.5 * 2 * H * Lb * Lb * D, sgemm_n),
    )

    # Memory: a long causal sequence; the note reports the peak memory it adds.
    Lm, Hm = (2048, 2) if small else (32768, 2)
    qm, km, vm = _tensors(torch, (1, Lm, Hm, D), 5)
    peak = functools.lru_cache(maxsize=None)(lambda: _peak_memory_mb(Lm, Hm, D))
    yield Case(
        "attention",
        "flash_attn_func",
        f"fp32 {Lm} tokens, H={Hm} D={D}, causal (memory)",
        lambda: ferrops.flash_attn_func(qm, km, vm, causal=True),
        "torch SDPA (CPU flash)",
        lambda: sdpa(qm.transpose(1, 2), km.transpose(1, 2), vm.transpose(1, 2), is_causal=True).transpose(1, 2),
        max_abs_difference,
        note=lambda s: f"peak memory +{peak():.0f} MB (target < 200 MB)",
    )

    # Decoding over a key/value cache: bound by memory bandwidth.
    yield from decode_cases(torch, small)
