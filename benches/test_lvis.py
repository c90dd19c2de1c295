"""pytest-benchmark suite of the LVIS evaluation (bbox and segm): the pipeline
(load, LVISResults, evaluate, accumulate, summarize) of ferrops, lvis-api and hotcoco.

CI runs it on 250 images (a twentieth of the 5,000-image set: lvis-api needs
~90 s on the full one); ``ferrops bench lvis`` runs the full size and reports
peak memory. Every case times the same ferrops pipeline, so ferrops is timed once.
"""

from __future__ import annotations

import numpy as np
import pytest

from benches.support import run_side
from ferrops._bench import lvis

CI_IMAGES = 250


@pytest.fixture(scope="module")
def cases():
    return {
        (case.kernel.split()[1], case.peer_name): case
        for case in lvis.cases(quick=False, num_images=CI_IMAGES, with_memory=False)
    }


@pytest.mark.parametrize("iou_type", lvis.IOU_TYPES)
def test_ferrops(benchmark, cases, iou_type):
    stats = run_side(benchmark, cases[iou_type, lvis.PEERS[0]], "ferrops")
    assert stats.shape == (len(lvis.AP_KEYS),)


@pytest.mark.parametrize("iou_type", lvis.IOU_TYPES)
@pytest.mark.parametrize("peer", lvis.PEERS)
def test_peer(benchmark, cases, peer, iou_type):
    case = cases[iou_type, peer]
    if case.peer is None:
        pytest.skip(f"{peer} is not installed")
    theirs = run_side(benchmark, case, "peer")
    ours = case.ferrops()
    # lvis-api is the reference, bit for bit; hotcoco's numbers are reported, not required.
    if peer == "lvis-api":
        assert np.array_equal(ours, theirs)
    else:
        assert theirs.shape == ours.shape
