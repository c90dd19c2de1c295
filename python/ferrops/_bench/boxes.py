"""Benchmark cases for the box family, against torchvision's CPU ops."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import numpy as np

import ferrops
from ferrops._bench import Case, max_abs_difference


def random_boxes(n: int, seed: int, image: float = 1024.0) -> np.ndarray:
    """``n`` float32 xyxy boxes: corners uniform over an ``image``-sized square,
    sides uniform in [16, 128] (detector-like sizes, many overlaps)."""
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, image, (n, 2))
    size = rng.uniform(16, 128, (n, 2))
    return np.concatenate([corner, corner + size], axis=1).astype(np.float32)


def distinct_scores(n: int, seed: int) -> np.ndarray:
    """A random permutation of distinct float32 scores in (0, 1), so NMS has one
    right answer whatever the tie rule."""
    rng = np.random.default_rng(seed)
    return ((rng.permutation(n) + 0.5) / n).astype(np.float32)


def _torchvision() -> Any:
    try:
        import torch
        import torchvision
    except ImportError:
        return None, None
    return torch, torchvision


def _same_twice(function: Callable[[Any, Any], Any], x: Any) -> Any:
    """``function(x, x)``: the peer's pairwise op of a set with itself."""
    return function(x, x)


def _peer(make: Callable[[Any, Any], Callable[[], Any]]) -> Callable[[], Any] | None:
    torch, tv = _torchvision()
    return None if tv is None else make(torch, tv)


def cases(quick: bool) -> Iterable[Case]:
    a = random_boxes(4000, 0)
    yield Case(
        "boxes",
        "box_iou",
        "4000 x 4000",
        lambda: ferrops.box_iou(a, a),
        "torchvision.ops.box_iou",
        _peer(lambda torch, tv: partial(_same_twice, tv.ops.box_iou, torch.from_numpy(a))),
        max_abs_difference,
        target=20,
        note=lambda s: f"{4000 * 4000 * 4 / s / 1e9:.1f} GB/s written",
    )
    for n, target in ((1000, 1.5), (50_000, 50)):
        boxes, scores = random_boxes(n, 1), distinct_scores(n, 2)
        yield Case(
            "boxes",
            "nms",
            f"{n} boxes, IoU 0.5",
            partial(ferrops.nms, boxes, scores, 0.5),
            "torchvision.ops.nms",
            _peer(
                partial(
                    lambda torch, tv, b, s: partial(tv.ops.nms, torch.from_numpy(b), torch.from_numpy(s), 0.5),
                    b=boxes,
                    s=scores,
                )
            ),
            max_abs_difference,
            target=target,
        )
    n = 50_000
    boxes, scores = random_boxes(n, 3), distinct_scores(n, 4)
    classes = np.random.default_rng(5).integers(0, 80, n)
    yield Case(
        "boxes",
        "batched_nms",
        f"{n} boxes, 80 classes",
        lambda: ferrops.batched_nms(boxes, scores, classes, 0.5),
        "torchvision.ops.batched_nms",
        _peer(
            lambda torch, tv: partial(
                tv.ops.batched_nms, torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), 0.5
            )
        ),
        max_abs_difference,
        target=10,
    )
    b1, b2 = random_boxes(100_000, 6), random_boxes(100_000, 7)
    yield Case(
        "boxes",
        "complete_box_iou_loss",
        "100000 pairs, mean",
        lambda: ferrops.complete_box_iou_loss(b1, b2, "mean"),
        "torchvision.ops.complete_box_iou_loss",
        _peer(
            lambda torch, tv: partial(tv.ops.complete_box_iou_loss, torch.from_numpy(b1), torch.from_numpy(b2), "mean")
        ),
        max_abs_difference,
    )
