"""pytest-benchmark suite of the segmentation family: the cases of
``ferrops._bench.segmentation``, ferrops and its peer side by side (group = case).
In the default test run each case runs once and both results must agree exactly."""

from __future__ import annotations

import pytest

from benches.support import bench_params, run_side
from ferrops._bench import segmentation

CASES = list(segmentation.cases(quick=True))


@pytest.mark.parametrize("case, side", bench_params(CASES))
def test_segmentation(benchmark, case, side):
    run_side(benchmark, case, side, tolerance=0)
