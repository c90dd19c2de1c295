"""``ferrops bench --levels``: every kernel of the chosen families timed at every
SIMD level this CPU supports, side by side with the automatic choice, so that a
level that loses on some microarchitecture shows up (and the per-kernel choice in
``rust/ferrops-core/src/simd.rs`` can be checked on each CPU it runs on).

The variants of one kernel are timed round-robin (scalar, avx2, ..., auto, then
again) and each keeps its fastest sample: a burst of load from other processes
then slows one sample of every variant instead of all samples of one, and the
minimum is the run least disturbed. The same cases as ``ferrops bench`` are used;
only the ferrops side of each is timed (layout variants of the peer, which time
the same ferrops call, are timed once).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ferrops import _core
from ferrops._bench import Case, _format_time, load_cases, machine_description, max_abs_difference

#: The SIMD levels, lowest first (``ferrops.SimdLevel``).
LEVELS: tuple[str, ...] = ("scalar", "avx2", "avx512")

#: The column of the automatic choice: what runs when no level is forced.
AUTO = "auto"

#: How much slower than the fastest level the automatic choice may be before the
#: table calls it out: the spread of repeated minima on a busy machine.
NOISE = 0.10


@dataclass(frozen=True)
class LevelRow:
    case: Case
    #: Fastest sample in seconds per call, per level and for :data:`AUTO`.
    seconds: dict[str, float]
    #: The level the automatic choice runs this kernel at on this CPU.
    picked: str
    #: Largest difference between a level's result and the automatic choice's.
    difference: float

    @property
    def fastest(self) -> str:
        levels = {level: s for level, s in self.seconds.items() if level != AUTO}
        return min(levels, key=levels.__getitem__)

    @property
    def auto_over_fastest(self) -> float:
        return self.seconds[AUTO] / self.seconds[self.fastest]


def supported_levels() -> list[str]:
    """The levels this CPU can run, lowest first."""
    return list(LEVELS[: LEVELS.index(_core.detected_simd_level()) + 1])


def _select(level: str) -> None:
    if level == AUTO:
        _core.reset_simd_level()
    else:
        _core.set_simd_level(level)  # type: ignore[arg-type]


def _calls_per_sample(fn: Callable[[], Any], min_sample: float) -> int:
    start = time.perf_counter()
    fn()
    return max(1, int(min_sample / max(time.perf_counter() - start, 1e-7)))


def time_levels(case: Case, levels: list[str], quick: bool) -> LevelRow:
    """Times ``case.ferrops`` at each level and at the automatic choice, round-robin."""
    rounds, min_sample = (3, 0.02) if quick else (7, 0.05)
    variants = [*levels, AUTO]
    results: dict[str, Any] = {}
    number: dict[str, int] = {}
    for variant in variants:  # warm-up, and the result each variant gives
        _select(variant)
        results[variant] = case.ferrops()
        number[variant] = _calls_per_sample(case.ferrops, min_sample)
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(rounds):
        for variant in variants:
            _select(variant)
            start = time.perf_counter()
            for _ in range(number[variant]):
                case.ferrops()
            best[variant] = min(best[variant], (time.perf_counter() - start) / number[variant])
    _select(AUTO)
    difference = max(result_difference(results[level], results[AUTO]) for level in levels)
    return LevelRow(case, best, _core.simd_auto_level(case.family), difference)


def result_difference(a: Any, b: Any) -> float:
    """Largest difference between two results of one kernel: arrays and tensors
    elementwise, dataclasses, dicts and sequences item by item, other values 0 if
    equal else inf."""
    if dataclasses.is_dataclass(a) and type(a) is type(b):
        names = [f.name for f in dataclasses.fields(a)]
        return result_difference([getattr(a, n) for n in names], [getattr(b, n) for n in names])
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return float("inf")
        return max((result_difference(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return float("inf")
        return max((result_difference(x, y) for x, y in zip(a, b)), default=0.0)
    if isinstance(a, (int, float, np.ndarray, np.generic)) or hasattr(a, "detach"):
        try:
            return max_abs_difference(a, b)
        except (TypeError, ValueError):
            pass
    try:
        return 0.0 if bool(a == b) else float("inf")
    except (TypeError, ValueError):  # an == without a single truth value
        return float("inf")


def unique_cases(cases: Iterable[Case]) -> list[Case]:
    """One case per ferrops call: rows that differ only in the peer are dropped."""
    seen: set[tuple[str, str, str]] = set()
    kept = []
    for case in cases:
        key = (case.family, case.kernel, case.size)
        if key not in seen:
            seen.add(key)
            kept.append(case)
    return kept


def format_table(rows: list[LevelRow], levels: list[str]) -> str:
    """Markdown: one column per level, the picked level's time in bold (``*``)."""
    header = ["family", "kernel", "size", *levels, AUTO, "fastest", "auto / fastest", "max diff vs auto"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = []
        for level in levels:
            text = _format_time(r.seconds[level])
            cells.append(f"**{text}** *" if level == r.picked else text)
        ratio = r.auto_over_fastest
        verdict = f"{ratio:.2f}" + ("" if ratio <= 1 + NOISE else " SLOWER")
        lines.append(
            f"| {r.case.family} | {r.case.kernel} | {r.case.size} | "
            + " | ".join(cells)
            + f" | {_format_time(r.seconds[AUTO])} ({r.picked}) | {r.fastest} | {verdict} | {r.difference:.3g} |"
        )
    return "\n".join(lines)


def run(families: Iterable[str], quick: bool, echo: Callable[[str], None] = print) -> list[LevelRow]:
    import ferrops

    levels = supported_levels()
    echo(f"ferrops {ferrops.__version__}, levels {', '.join(levels)}, {ferrops.get_num_threads()} threads")
    echo(f"machine: {machine_description()}")
    echo(f"auto: the level each kernel runs at when none is forced (marked *); SLOWER: over {NOISE:.0%} behind")
    rows = [time_levels(case, levels, quick) for case in unique_cases(load_cases(families, quick))]
    echo("")
    echo(format_table(rows, levels))
    return rows
