"""Soak (issue 19): memory stays flat over thousands of calls, for every family,
on the success path and on the error path (a leak in error handling is as real).

Each case warms up (allocator pools, the thread pool, lazy imports), then makes
`CALLS` calls, at most `BUDGET_S` seconds, and compares the resident set size.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import ferrops
from ferrops import coco, mdp

CALLS = 2000
WARM_UP = 200
BUDGET_S = 4.0
MAX_GROWTH_MIB = 4.0  # a leak of 2 KiB per call, or more, fails


def resident_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


rng = np.random.default_rng(0)
BOXES = rng.uniform(0, 50, (64, 4)).astype(np.float32)
BOXES[:, 2:] += BOXES[:, :2]
SCORES = rng.random(64).astype(np.float32)
FEATURES = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
ROIS = np.array([[0, 1, 1, 9, 9], [1, 2, 3, 12, 14]], np.float32)
Q = rng.standard_normal((1, 2, 16, 8)).astype(np.float32)
LABELS = rng.integers(0, 4, (32, 32))
P = rng.random((2, 6, 6)) + 0.1
P /= P.sum(axis=2, keepdims=True)
R = rng.standard_normal((6, 2))


def coco_round() -> Any:
    gt = coco.COCO()
    gt.dataset = {
        "images": [{"id": 1, "width": 100, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0}
        ],
        "categories": [{"id": 1}],
    }
    gt.createIndex()
    evaluation = coco.COCOeval(
        gt, gt.loadRes([{"image_id": 1, "category_id": 1, "bbox": [11, 10, 20, 20], "score": 0.9}]), "bbox"
    )
    evaluation.evaluate()
    evaluation.accumulate()
    return evaluation.eval["precision"]


def refused(call: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> None:
        with pytest.raises((ValueError, TypeError)):
            call()

    return run


FAMILIES: dict[str, Callable[[], Any]] = {
    "boxes": lambda: (ferrops.box_iou(BOXES, BOXES), ferrops.nms(BOXES, SCORES, 0.5), ferrops.soft_nms(BOXES, SCORES)),
    "boxes-errors": refused(lambda: ferrops.box_iou(BOXES[:, :3], BOXES)),
    "pooling": lambda: (
        ferrops.roi_align(FEATURES, ROIS, 3),
        ferrops.adaptive_avg_pool2d(FEATURES, 3),
        ferrops.spatial_pyramid_pool(FEATURES),
    ),
    "pooling-errors": refused(lambda: ferrops.max_pool2d(FEATURES, 0)),
    "attention": lambda: (
        ferrops.scaled_dot_product_attention(Q, Q, Q, is_causal=True),
        ferrops.flash_attn_func(Q, Q, Q),
    ),
    "attention-errors": refused(lambda: ferrops.scaled_dot_product_attention(Q, Q[..., :4], Q)),
    "segmentation": lambda: ferrops.segmentation_metrics(ferrops.confusion_matrix(LABELS, LABELS.T, 4)),
    "segmentation-errors": refused(lambda: ferrops.confusion_matrix(LABELS, LABELS[:3], 4)),
    "detection-voc": lambda: ferrops.voc_eval(np.zeros(64, np.int64), BOXES, SCORES, np.zeros(64, np.int64), BOXES),
    "detection-coco": coco_round,
    "mdp": lambda: (
        mdp.value_iteration(P, R, 0.9),
        mdp.policy_iteration(P, R, 0.9),
        mdp.mc_basic(P, R, 0.9, iterations=2),
    ),
    "mdp-errors": refused(lambda: mdp.value_iteration(P, R, 1.5)),
}


@pytest.mark.spec("BOX-IOU", "POOL-ROI", "ATT-REF", "SEG-CM", "DET-VOC10", "DET-COCO", "RL-BELLMAN")
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_memory_stays_flat_over_many_calls(family: str) -> None:
    call = FAMILIES[family]
    for _ in range(WARM_UP):
        call()
    before = resident_mib()
    start = time.monotonic()
    calls = 0
    while calls < CALLS and time.monotonic() - start < BUDGET_S:
        call()
        calls += 1
    growth = resident_mib() - before
    assert calls >= 200, f"only {calls} calls in {BUDGET_S} s: too few to see a leak"
    assert growth < MAX_GROWTH_MIB * calls / CALLS + 1.0, f"{family}: RSS grew {growth:.1f} MiB over {calls} calls"
