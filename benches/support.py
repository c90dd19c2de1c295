"""Helpers for the pytest-benchmark suites over the same cases as ``ferrops bench``.

``pytest benches --benchmark-enable`` times ferrops and its peer for each case
(grouped by case, so the report shows them side by side); the default test run
calls each once (``--benchmark-disable``) so a broken case fails CI.
"""

from __future__ import annotations

from typing import Any

import pytest

from ferrops._bench import Case


def bench_params(cases: list[Case]) -> list[Any]:
    """One parameter per (case, side): ferrops, and the peer when installed."""
    params = []
    for c in cases:
        ident = f"{c.kernel}[{c.size}]"
        params.append(pytest.param(c, "ferrops", id=f"{ident}-ferrops"))
        params.append(
            pytest.param(
                c,
                "peer",
                id=f"{ident}-{c.peer_name}",
                marks=pytest.mark.skipif(c.peer is None, reason=f"{c.peer_name} is not installed"),
            )
        )
    return params


def run_side(benchmark: Any, case: Case, side: str, tolerance: float | None = None) -> Any:
    """Times one side of ``case`` (group = the case) and returns its result. With a
    ``tolerance``, ferrops' result must be within it of the peer's, when the peer
    is installed: the default run calls each case once, so a wrong result fails CI."""
    benchmark.group = f"{case.kernel} {case.size}"
    benchmark.extra_info["peer"] = case.peer_name
    fn = case.ferrops if side == "ferrops" else case.peer
    result = benchmark(fn)
    if side == "ferrops" and tolerance is not None and case.peer is not None:
        difference = case.difference(result, case.peer())
        assert difference <= tolerance, f"{case.kernel} {case.size}: differs from {case.peer_name} by {difference}"
    return result
