"""pytest-benchmark suite over the MDP family's bench cases (``ferrops._bench.mdp``).

``pytest benches/test_mdp.py --benchmark-enable`` times ferrops; ``ferrops bench
mdp`` prints it beside the peers. In the plain test run each case runs once, and
the sweep case is checked against its SciPy peer.
"""

from __future__ import annotations

import pytest

from ferrops._bench import mdp as mdp_cases

CASES = {case.kernel: case for case in mdp_cases.cases(quick=True)}


@pytest.mark.parametrize("kernel", list(CASES))
def test_mdp_bench(benchmark, kernel):
    case = CASES[kernel]
    result = benchmark(case.ferrops)
    if kernel == "value_iteration sweeps" and case.peer is not None:
        assert case.difference(result, case.peer()) < 1e-9
