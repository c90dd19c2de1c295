"""MDP solvers against pymdptoolbox and SciPy (the cases of ``ferrops bench mdp``).

In the plain test run each side runs once, and the sweep case is checked against its
SciPy peer."""

from __future__ import annotations

import pytest

from benches.support import bench_params, run_side
from ferrops._bench import mdp

CASES = list(mdp.cases(quick=True))


@pytest.mark.parametrize("case, side", bench_params(CASES))
def test_mdp(benchmark, case, side):
    run_side(benchmark, case, side, tolerance=1e-9 if case.kernel == "value_iteration sweeps" else None)
