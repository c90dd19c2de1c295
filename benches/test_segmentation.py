"""pytest-benchmark suite of the segmentation family: the cases of
``ferrops._bench.segmentation``, ferrops and its peer side by side (group = case).
In the default test run each case runs once and both results must agree."""

from __future__ import annotations

import pytest

from ferrops._bench import segmentation

CASES = {f"{c.kernel} {c.size}": c for c in segmentation.cases(quick=True)}


@pytest.fixture(params=list(CASES), scope="module")
def case(request):
    return CASES[request.param]


def test_ferrops(benchmark, case):
    benchmark.group = f"{case.kernel} {case.size}"
    ours = benchmark(case.ferrops)
    if case.peer is not None:
        assert case.difference(ours, case.peer()) == 0


def test_peer(benchmark, case):
    if case.peer is None:
        pytest.skip(f"{case.peer_name} is not installed")
    benchmark.group = f"{case.kernel} {case.size}"
    benchmark(case.peer)
