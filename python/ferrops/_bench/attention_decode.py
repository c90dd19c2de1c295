"""Decoding benchmark cases of the attention family (``flash_attn_with_kvcache``),
yielded by ``ferrops._bench.attention.cases``.

Decoding one token reads the whole cache once, so its bound is memory
bandwidth: every row prints the KV bytes it reads, the time the machine's
measured read bandwidth needs for them, and the share of that bandwidth reached
(target: 60%). The bandwidth is measured here, in the same process, with as
many threads as ferrops uses, each summing its share of an array far larger
than the last-level cache (NumPy's reductions release the GIL). The peer is torch's SDPA with ``enable_gqa`` on the same cache (for a paged
cache, after gathering its pages, as a torch user must).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np

import ferrops
from ferrops._bench import Case, max_abs_difference

#: Issue 18's model shape: grouped-query attention, 32 query heads over 8 KV heads.
HEADS_Q, HEADS_KV, DIM = 32, 8, 128
#: The decoding target: this share of the measured read bandwidth.
BANDWIDTH_TARGET = 0.6


@functools.cache
def read_bandwidth_gbs(threads: int | None = None, megabytes: int = 512) -> float:
    """Bytes per second (GB/s) the machine streams from memory with ``threads``
    threads (default: ferrops' own count), each summing its share of a
    ``megabytes`` array: best of 5 rounds."""
    if threads is None:
        threads = ferrops.get_num_threads()
    data = np.ones(megabytes * (1 << 20) // 4, dtype=np.float32)
    parts = np.array_split(data, threads)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(np.sum, parts))
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            list(pool.map(np.sum, parts))
            best = min(best, time.perf_counter() - t0)
    return data.nbytes / best / 1e9


def _bandwidth_note(kv_bytes: int) -> Any:
    def note(seconds: float) -> str:
        bandwidth = read_bandwidth_gbs()
        rate = kv_bytes / seconds / 1e9
        bound_ms = kv_bytes / bandwidth / 1e6
        return (
            f"KV {kv_bytes / 1e6:.0f} MB: {rate:.1f} GB/s, {100 * rate / bandwidth:.0f}% of the measured "
            f"{bandwidth:.1f} GB/s ({ferrops.get_num_threads()}-thread read; bound {bound_ms:.1f} ms; "
            f"target {100 * BANDWIDTH_TARGET:.0f}%)"
        )

    return note


def _out_difference(ours: Any, theirs: Any) -> float:
    """ferrops' ``[B, 1, Hq, D]`` against SDPA's ``[B, Hq, 1, D]``."""
    return max_abs_difference(ours, theirs.transpose(1, 2))


def _paged(torch: Any, cache: Any, block_size: int, seed: int) -> tuple[Any, Any]:
    """``cache [B, S, H, D]`` as shuffled blocks: ``(blocks, block_table int32)``."""
    batch, length = cache.shape[:2]
    per = length // block_size
    order = torch.randperm(batch * per, generator=torch.Generator().manual_seed(seed)).reshape(batch, per)
    blocks = torch.empty((batch * per, block_size) + tuple(cache.shape[2:]), dtype=cache.dtype)
    blocks[order.reshape(-1)] = cache.reshape((batch * per, block_size) + tuple(cache.shape[2:]))
    return blocks, order.to(torch.int32)


def _sdpa(sdpa: Any, q: Any, k_cache: Any, v_cache: Any) -> Any:
    """torch's SDPA on the cache as it lies (``[B, S, H, D]`` viewed as ``[B, H, S, D]``)."""
    return sdpa(q.transpose(1, 2), k_cache.transpose(1, 2), v_cache.transpose(1, 2), enable_gqa=True)


def _gathered_sdpa(sdpa: Any, q: Any, k_blocks: Any, v_blocks: Any, table: Any) -> Any:
    """What a torch user does with a paged cache: gather each sequence's blocks, then SDPA."""
    k_cache, v_cache = (blocks[table.long()].flatten(1, 2) for blocks in (k_blocks, v_blocks))
    return _sdpa(sdpa, q, k_cache, v_cache)


def decode_cases(torch: Any, small: bool) -> Iterable[Case]:
    sdpa = torch.nn.functional.scaled_dot_product_attention
    generator = torch.Generator().manual_seed(18)
    rows: list[tuple[str, Any, int, int, int]] = [
        ("fp32", torch.float32, 1, 8192, 0),
        ("fp32", torch.float32, 8, 4096, 0),
        ("bf16", torch.bfloat16, 1, 8192, 0),
        ("bf16", torch.bfloat16, 8, 4096, 0),
        ("fp32", torch.float32, 1, 32768, 0),
        ("fp32", torch.float32, 8, 4096, 16),
        ("fp32", torch.float32, 8, 4096, 256),
    ]
    for name, dtype, batch, length, block_size in rows:
        if small:
            batch, length = min(batch, 2), length // 16
        q = torch.randn(batch, 1, HEADS_Q, DIM, generator=generator).to(dtype)
        k_cache, v_cache = (torch.randn(batch, length, HEADS_KV, DIM, generator=generator).to(dtype) for _ in "kv")
        kv_bytes = 2 * k_cache.numel() * k_cache.element_size()
        context = f"{length // 1024}k" if length % 1024 == 0 else str(length)
        size = f"decode {name} B={batch} {context} ctx, Hq={HEADS_Q} Hkv={HEADS_KV} D={DIM}"
        if block_size:
            size += f", paged block {block_size} shuffled"
            k_blocks, table = _paged(torch, k_cache, block_size, 1)
            v_blocks, _ = _paged(torch, v_cache, block_size, 1)
            ours = partial(
                ferrops.flash_attn_with_kvcache, q, k_blocks, v_blocks, cache_seqlens=length, block_table=table
            )
            peer = partial(_gathered_sdpa, sdpa, q, k_blocks, v_blocks, table)
            peer_name = "gather pages + torch SDPA (enable_gqa)"
        else:
            ours = partial(ferrops.flash_attn_with_kvcache, q, k_cache, v_cache, cache_seqlens=length)
            peer = partial(_sdpa, sdpa, q, k_cache, v_cache)
            peer_name = "torch SDPA (enable_gqa)"
        yield Case(
            "attention",
            "flash_attn_with_kvcache",
            size,
            ours,
            peer_name,
            peer,
            _out_difference,
            target=5.0,
            note=_bandwidth_note(kv_bytes),
        )
