"""The comparison behind ``ferrops bench``: each kernel family lists cases, each
case times ferrops and its peer side by side in the same process, on the same
data, and reports the speed-up and the largest difference between the results.

A family plugs in by adding its module to :data:`FAMILIES`; the module defines
``cases(quick: bool) -> Iterable[Case]``. ``quick`` keeps the sizes the issues
name but takes fewer samples. The pytest-benchmark suites in ``benches/`` reuse
the same cases.
"""

from __future__ import annotations

import importlib
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: family name -> module defining ``cases(quick)``.
FAMILIES: dict[str, str] = {
    "boxes": "ferrops._bench.boxes",
    "mdp": "ferrops._bench.mdp",
    "segmentation": "ferrops._bench.segmentation",
    "pooling": "ferrops._bench.pooling",
    "attention": "ferrops._bench.attention",
    "detection": "ferrops._bench.detection",
    "detection-scale": "ferrops._bench.detection_scale",
    "mask": "ferrops._bench.mask",
    "lvis": "ferrops._bench.lvis",
    "keypoints": "ferrops._bench.keypoints",
    "analysis": "ferrops._bench.analysis",
}


@dataclass(frozen=True)
class Case:
    family: str
    kernel: str
    size: str
    ferrops: Callable[[], Any]
    peer_name: str
    #: None when the peer library is not installed.
    peer: Callable[[], Any] | None
    #: Largest difference between the two results (0 when identical).
    difference: Callable[[Any, Any], float]
    #: The speed-up over the peer that the project aims for.
    target: float | None = None
    #: Extra columns for this row, e.g. throughput ("12.3 GB/s").
    note: Callable[[float], str] | None = None


@dataclass(frozen=True)
class Row:
    case: Case
    ferrops_s: float
    peer_s: float | None
    difference: float | None

    @property
    def speedup(self) -> float | None:
        return None if self.peer_s is None else self.peer_s / self.ferrops_s


def max_abs_difference(a: Any, b: Any) -> float:
    """Largest |a - b| over two array-likes (tensors included); inf if shapes differ."""
    a, b = _to_numpy(a), _to_numpy(b)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    both_nan = np.isnan(a.astype(np.float64)) & np.isnan(b.astype(np.float64))
    return float(np.max(np.where(both_nan, 0.0, diff)))


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        return (
            x.detach().cpu().float().numpy()
            if x.dtype.is_floating_point and x.dtype != _f64()
            else x.detach().cpu().numpy()
        )
    return np.asarray(x)


def _f64() -> Any:
    import torch

    return torch.float64


def measure(fn: Callable[[], Any], quick: bool) -> tuple[float, Any]:
    """Median seconds per call, and the last result.

    Calls are batched so one sample lasts at least ~20 ms (quick) or ~50 ms; slow
    calls are sampled fewer times so a run stays bounded.
    """
    start = time.perf_counter()
    result = fn()  # warm-up: caches, thread pools, lazy imports
    first = time.perf_counter() - start
    min_sample, samples, budget = (0.02, 3, 3.0) if quick else (0.05, 7, 15.0)
    number = max(1, int(min_sample / max(first, 1e-7)))
    times: list[float] = []
    spent = 0.0
    while len(times) < samples and (not times or spent < budget):
        t0 = time.perf_counter()
        for _ in range(number):
            result = fn()
        elapsed = time.perf_counter() - t0
        times.append(elapsed / number)
        spent += elapsed
    return statistics.median(times), result


def run_case(case: Case, quick: bool) -> Row:
    ferrops_s, ours = measure(case.ferrops, quick)
    if case.peer is None:
        return Row(case, ferrops_s, None, None)
    peer_s, theirs = measure(case.peer, quick)
    return Row(case, ferrops_s, peer_s, case.difference(ours, theirs))


def load_cases(families: Iterable[str], quick: bool) -> list[Case]:
    cases: list[Case] = []
    for family in families:
        if family not in FAMILIES:
            raise ValueError(f"ferrops bench: unknown family {family!r}; known: {', '.join(FAMILIES)}")
        cases.extend(importlib.import_module(FAMILIES[family]).cases(quick))
    return cases


def _format_time(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}"


def format_table(rows: list[Row]) -> str:
    header = "| kernel | size | ferrops | peer | peer time | speed-up | target | max abs diff | note |"
    lines = [header, "|" + "---|" * 9]
    for r in rows:
        c = r.case
        speedup = "n/a" if r.speedup is None else f"{r.speedup:.1f}x"
        target = "" if c.target is None else f">= {c.target:g}x"
        diff = "n/a" if r.difference is None else f"{r.difference:.3g}"
        note = c.note(r.ferrops_s) if c.note else ""
        lines.append(
            f"| {c.kernel} | {c.size} | {_format_time(r.ferrops_s)} | {c.peer_name} | "
            f"{_format_time(r.peer_s)} | {speedup} | {target} | {diff} | {note} |"
        )
    return "\n".join(lines)


def run(families: Iterable[str], quick: bool, echo: Callable[[str], None] = print) -> list[Row]:
    import ferrops

    echo(f"ferrops {ferrops.__version__}, SIMD {ferrops.simd_level()}, {ferrops.get_num_threads()} threads")
    echo(f"machine: {machine_description()}")
    cases = load_cases(families, quick)
    rows = []
    for case in cases:
        rows.append(run_case(case, quick))
    echo("")
    echo(format_table(rows))
    return rows
