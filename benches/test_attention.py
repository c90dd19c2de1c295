"""pytest-benchmark suite of the attention family: the cases of
``ferrops._bench.attention`` at small shapes (the issue's 4096-token shapes run in
``ferrops bench attention``), ferrops and its peer side by side (group = case).
In the default test run each case runs once and both results must agree to
float32 (bfloat16 for the bfloat16 case) accuracy."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from benches.support import bench_params, run_side  # noqa: E402
from ferrops._bench import attention  # noqa: E402

CASES = list(attention.cases(quick=True, small=True))


@pytest.mark.parametrize("case, side", bench_params(CASES))
def test_attention(benchmark, case, side):
    run_side(benchmark, case, side, tolerance=0.05 if "bf16" in case.size else 1e-3)
