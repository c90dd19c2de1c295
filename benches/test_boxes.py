"""Box kernels against torchvision.ops (the cases of ``ferrops bench boxes``)."""

from __future__ import annotations

import pytest

from benches.support import bench_params, run_side
from ferrops._bench import boxes

CASES = list(boxes.cases(quick=True))


@pytest.mark.parametrize("case, side", bench_params(CASES))
def test_boxes(benchmark, case, side):
    run_side(benchmark, case, side)
