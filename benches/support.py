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


def run_side(benchmark: Any, case: Case, side: str) -> None:
    benchmark.group = f"{case.kernel} {case.size}"
    benchmark.extra_info["peer"] = case.peer_name
    fn = case.ferrops if side == "ferrops" else case.peer
    benchmark(fn)
