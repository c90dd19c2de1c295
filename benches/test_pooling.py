"""pytest-benchmark suite for the pooling family: the cases of ``ferrops bench``
at small sizes (CI runs each once; ``ferrops bench pooling`` times the full ones).
Each case times ferrops and its peer in one group and checks they agree."""

from __future__ import annotations

import pytest

from benches.support import bench_params, run_side
from ferrops._bench import pooling

CASES = list(pooling.cases(quick=True, small=True))


@pytest.mark.parametrize("case, side", bench_params(CASES))
def test_pooling(benchmark, case, side):
    run_side(benchmark, case, side, tolerance=1e-4)
