"""pytest-benchmark suite for the pooling family: the cases of ``ferrops bench``
at small sizes (CI runs each once; ``ferrops bench pooling`` times the full ones).
Each case times ferrops and its peer in one group and checks they agree."""

from __future__ import annotations

import pytest

from ferrops._bench import pooling

CASES = list(pooling.cases(quick=True, small=True))
IDS = [f"{c.kernel}-{c.peer_name}".replace(" ", "_") for c in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_ferrops(benchmark, case):
    benchmark.group = f"pooling {case.kernel} {case.size}"
    result = benchmark(case.ferrops)
    if case.peer is not None:
        assert case.difference(result, case.peer()) < 1e-4


@pytest.mark.parametrize("case", [c for c in CASES if c.peer is not None], ids=[i for c, i in zip(CASES, IDS) if c.peer])
def test_peer(benchmark, case):
    benchmark.group = f"pooling {case.kernel} {case.size}"
    benchmark(case.peer)
