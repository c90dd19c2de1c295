"""pytest-benchmark suite of the detection family: the COCO pipeline (load,
loadRes, evaluate, accumulate, summarize) of ferrops and each installed peer,
for bbox and for segm.

CI runs it on 300 images (pycocotools needs tens of seconds on the 5,000-image
set); ``ferrops bench detection`` runs the full size and reports peak memory.
Every case times the same ferrops pipeline, so ferrops is timed once.
"""

from __future__ import annotations

import numpy as np
import pytest

from benches.support import run_side
from ferrops._bench import detection

CI_IMAGES = 300


@pytest.fixture(scope="module")
def cases():
    rows = detection.cases(quick=True, num_images=CI_IMAGES, with_memory=False, iou_types=("bbox",))
    return {case.peer_name: case for case in rows}


@pytest.fixture(scope="module")
def segm_cases():
    rows = detection.cases(quick=True, num_images=CI_IMAGES, with_memory=False, iou_types=("segm",))
    return {case.peer_name: case for case in rows}


def test_ferrops(benchmark, cases):
    stats = run_side(benchmark, next(iter(cases.values())), "ferrops")
    assert stats.shape == (12,)


@pytest.mark.parametrize("peer", detection.PEERS)
def test_peer(benchmark, cases, peer):
    case = cases[peer]
    if case.peer is None:
        pytest.skip(f"{peer} is not installed")
    theirs = run_side(benchmark, case, "peer")
    ours = case.ferrops()
    # pycocotools is the reference, bit for bit; faster-coco-eval differs in the last bits.
    if peer == "pycocotools":
        assert np.array_equal(ours, theirs)
    else:
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_ferrops_segm(benchmark, segm_cases):
    stats = run_side(benchmark, next(iter(segm_cases.values())), "ferrops")
    assert stats.shape == (12,)


@pytest.mark.parametrize("peer", detection.PEERS)
def test_peer_segm(benchmark, segm_cases, peer):
    case = segm_cases[peer]
    if case.peer is None:
        pytest.skip(f"{peer} is not installed")
    theirs = run_side(benchmark, case, "peer")
    ours = case.ferrops()
    if peer == "pycocotools":
        assert np.array_equal(ours, theirs)
    else:
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
