"""pytest-benchmark suite of COCO keypoint evaluation: the pipeline (load,
loadRes, evaluate, accumulate, summarize) of ferrops and each installed peer.

CI runs it on 300 images; ``ferrops bench keypoints`` runs the issue's 5,000
images and reports peak memory. ferrops is timed once.
"""

from __future__ import annotations

import numpy as np
import pytest

from benches.support import run_side
from ferrops._bench import keypoints

CI_IMAGES = 300


@pytest.fixture(scope="module")
def cases():
    return {case.peer_name: case for case in keypoints.cases(quick=True, num_images=CI_IMAGES, with_memory=False)}


def test_ferrops(benchmark, cases):
    stats = run_side(benchmark, next(iter(cases.values())), "ferrops")
    assert stats.shape == (10,)


@pytest.mark.parametrize("peer", keypoints.PEERS)
def test_peer(benchmark, cases, peer):
    case = cases[peer]
    if case.peer is None:
        pytest.skip(f"{peer} is not installed")
    theirs = run_side(benchmark, case, "peer")
    # The summary stats agree with every peer (OKS may differ in last bits, not the matching).
    assert np.allclose(case.ferrops(), theirs, rtol=0, atol=1e-12)
