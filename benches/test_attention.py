"""pytest-benchmark suite of the attention family: the cases of
``ferrops._bench.attention`` at small shapes (the issue's 4096-token shapes run in
``ferrops bench attention``), ferrops and its peer side by side (group = case).
In the default test run each case runs once and both results must agree to
float32 (bfloat16 for the bfloat16 case) accuracy."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from ferrops._bench import attention  # noqa: E402

CASES = {f"{c.kernel} {c.size}": c for c in attention.cases(quick=True, small=True)}


@pytest.fixture(params=list(CASES), scope="module")
def case(request):
    return CASES[request.param]


def test_ferrops(benchmark, case):
    benchmark.group = f"{case.kernel} {case.size}"
    ours = benchmark(case.ferrops)
    tolerance = 0.05 if "bf16" in case.size else 1e-3
    assert case.difference(ours, case.peer()) < tolerance


def test_peer(benchmark, case):
    benchmark.group = f"{case.kernel} {case.size}"
    benchmark(case.peer)
