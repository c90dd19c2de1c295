"""Benchmark cases for the box family, against torchvision's CPU ops, shapely
(rotated boxes) and ensemble-boxes (weighted boxes fusion)."""

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


def random_rotated(n: int, seed: int, image: float = 1024.0) -> np.ndarray:
    """``n`` float64 ``(cx, cy, w, h, angle)`` boxes: centres over an
    ``image``-sized square, sides in [16, 128], angles in degrees in [-180, 180)."""
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(0, image, (n, 2)), rng.uniform(16, 128, (n, 2)), rng.uniform(-180, 180, n)])


def _polygons(boxes: np.ndarray) -> Any:
    """shapely polygons of rotated boxes, from ferrops' own corner conversion."""
    import shapely

    return shapely.polygons(ferrops.box_convert(boxes, "cxcywhr", "xyxyxyxy").reshape(-1, 4, 2))


def _shapely_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The exact IoU matrix with shapely 2's vectorised polygon overlap (polygons built inside)."""
    import shapely

    pa, pb = _polygons(a)[:, None], _polygons(b)[None, :]
    inter = shapely.area(shapely.intersection(pa, pb))
    return inter / (shapely.area(pa) + shapely.area(pb) - inter)


def _shapely_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """A NumPy/shapely greedy rotated NMS (NMS-ROT): an STRtree finds the boxes a
    kept box can overlap, shapely computes their exact IoU."""
    import shapely

    polygons = _polygons(boxes)
    areas = shapely.area(polygons)
    tree = shapely.STRtree(polygons)
    suppressed = np.zeros(len(boxes), bool)
    keep = []
    for i in np.argsort(-scores, kind="stable"):
        if suppressed[i]:
            continue
        keep.append(i)
        near = tree.query(polygons[i])
        near = near[~suppressed[near] & (near != i)]
        inter = shapely.area(shapely.intersection(polygons[i], polygons[near]))
        suppressed[near[inter / (areas[i] + areas[near] - inter) >= threshold]] = True
    return np.array(keep, np.int64)


def _fusion_workload(
    seed: int, models: int = 3, n: int = 300, classes: int = 80
) -> tuple[list[Any], list[Any], list[Any]]:
    """``models`` jittered copies of ``n`` normalised boxes with random scores and labels."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 0.85, (n, 2))
    size = rng.uniform(0.02, 0.15, (n, 2))
    boxes, scores, labels = [], [], []
    for _ in range(models):
        b = np.concatenate([base, base + size], axis=1) + rng.normal(0, 0.005, (n, 4))
        boxes.append(np.clip(b, 0, 1).astype(np.float32))
        scores.append(rng.uniform(0.05, 1, n).astype(np.float32))
        labels.append(rng.integers(0, classes, n))
    return boxes, scores, labels


def _tuple_difference(a: Any, b: Any) -> float:
    return max(max_abs_difference(x, y) for x, y in zip(a, b))


def _ensemble_boxes() -> Any:
    try:
        import ensemble_boxes
    except ImportError:
        return None
    return ensemble_boxes


def _has_shapely() -> bool:
    try:
        import shapely  # noqa: F401
    except ImportError:
        return False
    return True


def rotated_cases() -> Iterable[Case]:
    """Rotated IoU and NMS against shapely, WBF against ensemble-boxes."""
    a, b = random_rotated(1000, 11), random_rotated(1000, 12)
    yield Case(
        "boxes",
        "box_iou_rotated",
        "1000 x 1000",
        lambda: ferrops.box_iou_rotated(a, b),
        "shapely 2 (vectorised exact IoU)",
        partial(_shapely_iou, a, b) if _has_shapely() else None,
        max_abs_difference,
        target=100,
    )
    n = 20_000
    boxes, scores = random_rotated(n, 13, image=8192.0), distinct_scores(n, 14).astype(np.float64)
    yield Case(
        "boxes",
        "nms_rotated",
        f"{n} boxes, IoU 0.5",
        lambda: ferrops.nms_rotated(boxes, scores, 0.5),
        "NumPy/shapely greedy (STRtree)",
        partial(_shapely_nms, boxes, scores, 0.5) if _has_shapely() else None,
        max_abs_difference,
        target=20,
    )
    fusion = _fusion_workload(15)
    package = _ensemble_boxes()
    yield Case(
        "boxes",
        "weighted_boxes_fusion",
        "3 models x 300 boxes, 80 classes",
        partial(ferrops.weighted_boxes_fusion, *fusion),
        "ensemble_boxes.weighted_boxes_fusion",
        None if package is None else partial(package.weighted_boxes_fusion, *fusion),
        _tuple_difference,
        target=50,
    )
    yield Case(
        "boxes",
        "non_maximum_weighted",
        "3 models x 300 boxes, 80 classes",
        partial(ferrops.non_maximum_weighted, *fusion),
        "ensemble_boxes.non_maximum_weighted",
        None if package is None else partial(package.non_maximum_weighted, *fusion),
        _tuple_difference,
        target=20,
    )


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
    batch1, batch2 = random_boxes(512 * 32, 16).reshape(512, 32, 4), random_boxes(512 * 32, 17).reshape(512, 32, 4)
    yield Case(
        "boxes",
        "box_iou",
        "[512, 32, 4] x [512, 32, 4]",
        lambda: ferrops.box_iou(batch1, batch2),
        "torchvision.ops.box_iou",
        _peer(lambda torch, tv: partial(tv.ops.box_iou, torch.from_numpy(batch1), torch.from_numpy(batch2))),
        max_abs_difference,
        target=2,
    )
    yield from rotated_cases()
