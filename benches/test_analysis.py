"""pytest-benchmark suite of the COCO analyses: TIDE against tidecv on the
detection bench's bbox set (300 images in CI; ``ferrops bench analysis`` runs
5,000). The AP and every dAP must equal tidecv's."""

from __future__ import annotations

import numpy as np
import pytest

from benches.support import run_side
from ferrops._bench import analysis

CI_IMAGES = 300


@pytest.fixture(scope="module")
def case():
    return analysis.cases(quick=True, num_images=CI_IMAGES)[0]


def test_ferrops(benchmark, case):
    result = run_side(benchmark, case, "ferrops")
    assert result.shape == (9,)


def test_tidecv(benchmark, case):
    if case.peer is None:
        pytest.skip("tidecv is not installed")
    theirs = run_side(benchmark, case, "peer")
    assert np.array_equal(case.ferrops(), theirs)
