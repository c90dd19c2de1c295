"""pytest-benchmark suite of ``ferrops.mask``: the cases of ``ferrops._bench.mask``,
ferrops and pycocotools side by side (group = case). In the default test run each
case runs once and both results must agree exactly."""

from __future__ import annotations

import pytest

from benches.support import bench_params, run_side
from ferrops._bench import mask

CASES = list(mask.cases(quick=True))

# pycocotools' decode warns under NumPy 2 (its __array__ lacks `copy`).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.mark.parametrize("case, side", bench_params(CASES))
def test_mask(benchmark, case, side):
    run_side(benchmark, case, side, tolerance=0)
