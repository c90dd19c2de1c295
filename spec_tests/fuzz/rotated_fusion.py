"""Drivers of the rotated-box kernels (BOX-ROT, DET-ROT) and of box fusion
(WBF, WBF-NMW). Rotated IoU is checked against shapely's polygon overlap in float64,
box fusion against ensemble-boxes."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from .driver import Driver, array_of, assert_close, seeds, values_of
from .values import array_mutations, bool_mutations, choice_mutations, float_mutations, int_mutations, opaque_mutations


def random_rotated(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(cx, cy, w, h, angle in degrees)``, a few degenerate (zero-size) boxes."""
    centre = rng.uniform(0, 60, (n, 2))
    size = rng.uniform(0, 30, (n, 2)) * (rng.random((n, 1)) > 0.05)
    angle = rng.uniform(-180, 180, (n, 1))
    return np.concatenate([centre, size, angle], axis=1).astype(np.float32)


def polygon(box: np.ndarray) -> Any:
    from shapely.geometry import Polygon

    cx, cy, w, h, a = (float(v) for v in box)
    c, s = np.cos(np.radians(a)), np.sin(np.radians(a))
    corners = [(dx * w / 2, dy * h / 2) for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    # Counter-clockwise on screen (y down): BOX-ROT-FORMAT.
    return Polygon([(cx + x * c + y * s, cy - x * s + y * c) for x, y in corners])


def rotated_iou_oracle(kwargs: dict[str, Any], result: Any) -> None:
    got = array_of(result, kwargs)
    b1, b2 = (np.asarray(kwargs[k], np.float64).reshape(-1, 5) for k in ("boxes1", "boxes2"))
    assert got.shape == (len(b1), len(b2)), got.shape
    expected = np.zeros((len(b1), len(b2)))
    for i, p in enumerate(b1):
        for j, q in enumerate(b2):
            a, b = polygon(p), polygon(q)
            inter = a.intersection(b).area
            union = a.area + b.area - inter
            expected[i, j] = inter / union if union > 0 else 0.0
    # Nearly degenerate overlaps differ in the clipping's rounding: compare loosely.
    assert_close(got, expected, rtol=1e-3, atol=2e-3)


def unit_interval_sane(kwargs: dict[str, Any], result: Any) -> None:
    values = np.asarray(values_of(result), np.float64)
    # ultralytics' probiou is 1 - sqrt(1 - exp(-B) + eps): down to 1 - sqrt(1 + eps).
    eps = kwargs.get("eps", 0.0)
    low = 1 - np.sqrt(1 + float(eps)) if isinstance(eps, (int, float)) and 0 <= eps < 1e300 else -np.inf
    slack = 1e-6 * max(1.0, abs(low)) if np.isfinite(low) else 0.0  # float32 results
    assert np.all((values >= low - slack) & (values <= 1 + 1e-6) | np.isnan(values)), values


@st.composite
def rotated_pair(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    return {
        "boxes1": random_rotated(rng, draw(st.integers(0, 5))),
        "boxes2": random_rotated(rng, draw(st.integers(0, 5))),
    }


@st.composite
def rotated_scored(draw: Any, classes: bool = False) -> dict[str, Any]:
    rng = draw(seeds())
    n = draw(st.integers(0, 10))
    kwargs: dict[str, Any] = {"boxes": random_rotated(rng, n), "scores": rng.random(n).astype(np.float32)}
    if classes:
        kwargs["idxs"] = rng.integers(0, 3, n)
    kwargs["iou_threshold"] = draw(st.sampled_from([0.0, 0.3, 0.5, 1.0]))
    return kwargs


def nms_oracle(kwargs: dict[str, Any], result: Any) -> None:
    """Greedy NMS over `box_iou_rotated` (BOX-ROT), classes apart for the batched form."""
    from ferrops import box_iou_rotated

    boxes, scores = np.asarray(kwargs["boxes"], np.float32), np.asarray(kwargs["scores"], np.float64)
    classes = np.asarray(kwargs.get("idxs", np.zeros(len(scores), np.int64)))
    iou = box_iou_rotated(boxes, boxes).astype(np.float64)
    kept: list[int] = []
    for i in np.argsort(-scores, kind="stable"):
        # Suppressed at IoU >= threshold, as detectron2's rotated kernels (NMS-ROT).
        if all(classes[k] != classes[i] or iou[k, i] < kwargs["iou_threshold"] for k in kept):
            kept.append(int(i))
    got = array_of(result, kwargs)
    assert got.dtype == np.int64, got.dtype
    assert got.tolist() == kept, (got.tolist(), kept)


def convert_sane(kwargs: dict[str, Any], result: Any) -> None:
    n = np.shape(kwargs["boxes"])[0]
    width = {"cxcywhr": 5, "xywhr": 5, "xyxyxyxy": 8}
    assert np.shape(values_of(result)) == (n, width.get(kwargs["out_fmt"], np.shape(values_of(result))[1])), result


@st.composite
def convert_args(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    return {
        "boxes": random_rotated(rng, draw(st.integers(0, 5))),
        "in_fmt": "cxcywhr",
        "out_fmt": draw(st.sampled_from(["cxcywhr", "xywhr", "xyxyxyxy"])),
    }


def convert_oracle(kwargs: dict[str, Any], result: Any) -> None:
    got = array_of(result, kwargs).astype(np.float64)
    boxes = np.asarray(kwargs["boxes"], np.float64)
    if kwargs["out_fmt"] == "xyxyxyxy":
        assert_close(got.reshape(-1, 4, 2).mean(axis=1), boxes[:, :2], 1e-4, 1e-3)
    else:  # cxcywhr, or xywhr: the same size and angle
        assert_close(
            got[:, 2:] if kwargs["out_fmt"] == "xywhr" else got,
            boxes[:, 2:] if kwargs["out_fmt"] == "xywhr" else boxes,
            1e-5,
            1e-4,
        )


@st.composite
def fusion_args(draw: Any, wbf: bool = True) -> dict[str, Any]:
    rng = draw(seeds())
    models = draw(st.integers(1, 3))
    boxes, scores, labels = [], [], []
    for _ in range(models):
        n = draw(st.integers(0, 6))
        corner = rng.uniform(0, 0.7, (n, 2))
        boxes.append(np.concatenate([corner, corner + rng.uniform(0, 0.3, (n, 2))], axis=1))
        scores.append(rng.random(n))
        labels.append(rng.integers(0, 3, n))
    kwargs: dict[str, Any] = {
        "boxes_list": boxes,
        "scores_list": scores,
        "labels_list": labels,
        "weights": draw(st.sampled_from([None, list(range(1, models + 1))])),
        "iou_thr": draw(st.sampled_from([0.3, 0.55, 0.9])),
        "skip_box_thr": draw(st.sampled_from([0.0, 0.2])),
    }
    if wbf:
        kwargs["conf_type"] = draw(st.sampled_from(["avg", "max", "box_and_model_avg", "absent_model_aware_avg"]))
    return kwargs


def fusion_oracle(name: str) -> Any:
    def oracle(kwargs: dict[str, Any], result: Any) -> None:
        """ensemble-boxes, the peer, on the same lists."""
        import ensemble_boxes as peer

        boxes, scores, labels = (np.asarray(v) for v in result)
        assert boxes.shape == (len(scores), 4) and labels.shape == scores.shape, (boxes.shape, scores.shape)
        their = getattr(peer, name)(**kwargs)
        # The peer's order among equal scores is its sort's: compare as sorted rows.
        ours_rows = np.column_stack([scores, labels, boxes]).astype(np.float64)
        their_rows = np.column_stack([their[1], their[2], their[0]]).astype(np.float64)
        assert ours_rows.shape == their_rows.shape, (ours_rows.shape, their_rows.shape)
        key = lambda rows: rows[np.lexsort(rows.T[::-1])]  # noqa: E731
        assert_close(key(ours_rows), key(their_rows), rtol=1e-5, atol=1e-6)

    return oracle


def fusion_sane(kwargs: dict[str, Any], result: Any) -> None:
    boxes, scores, labels = (np.asarray(v) for v in result)
    assert boxes.ndim == 2 and boxes.shape == (len(scores), 4) and labels.shape == scores.shape, result


fusion_mutations = {
    "boxes_list": [*opaque_mutations(), *array_mutations()],
    "scores_list": [*opaque_mutations(), *array_mutations()],
    "labels_list": [*opaque_mutations(), *array_mutations(floats=False)],
    "weights": [*opaque_mutations(), *array_mutations(optional=True)],
    "iou_thr": float_mutations(),
    "skip_box_thr": float_mutations(),
}


@st.composite
def rotated_eval_args(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    detections, ground_truths = [], []
    for _ in range(draw(st.integers(0, 3))):
        d, g = draw(st.integers(0, 4)), draw(st.integers(0, 4))
        gt = random_rotated(rng, g)
        detections.append(
            {
                "boxes": np.concatenate([gt, random_rotated(rng, max(d - g, 0))])[:d] + 0.5,
                "scores": rng.random(d),
                "labels": rng.integers(0, 2, d),
            }
        )
        ground_truths.append({"boxes": gt, "labels": rng.integers(0, 2, g), "ignore": rng.random(g) < 0.2})
    return {
        "detections": detections,
        "ground_truths": ground_truths,
        "iou_thresholds": draw(st.sampled_from([None, [0.5], [0.3, 0.7]])),
    }


def rotated_eval_sane(kwargs: dict[str, Any], result: Any) -> None:
    assert isinstance(result, dict) and {"map", "map_50", "map_50_voc07"} <= set(result), result
    for key in ("map", "map_50_voc07"):
        value = result[key]
        assert np.isnan(value) or -1 <= value <= 1, result


rotated_conventions = {"angle_unit": choice_mutations(), "clockwise": bool_mutations()}
nms_mutations = {
    "boxes": array_mutations(),
    "scores": array_mutations(),
    "iou_threshold": float_mutations(),
    **rotated_conventions,
    "backend": choice_mutations(),
}

ROTATED = {
    "ferrops.box_iou_rotated": Driver(
        "ferrops:box_iou_rotated",
        rotated_pair(),
        {
            "boxes1": array_mutations(),
            "boxes2": array_mutations(),
            "mode": choice_mutations(),
            "aligned": bool_mutations(),
            **rotated_conventions,
            "backend": choice_mutations(),
        },
        ("box_iou_rotated",),
        oracle=rotated_iou_oracle,
        sane=unit_interval_sane,
    ),
    "ferrops.probiou": Driver(
        "ferrops:probiou",
        rotated_pair(),
        {
            "boxes1": array_mutations(),
            "boxes2": array_mutations(),
            "aligned": bool_mutations(),
            "eps": float_mutations(),
            **rotated_conventions,
        },
        ("probiou",),
        sane=unit_interval_sane,
    ),
    "ferrops.nms_rotated": Driver(
        "ferrops:nms_rotated", rotated_scored(), nms_mutations, ("nms_rotated",), oracle=nms_oracle
    ),
    "ferrops.batched_nms_rotated": Driver(
        "ferrops:batched_nms_rotated",
        rotated_scored(classes=True),
        {**nms_mutations, "idxs": array_mutations(floats=False)},
        ("batched_nms_rotated",),
        oracle=nms_oracle,
    ),
    "ferrops.box_convert_rotated": Driver(
        "ferrops:box_convert_rotated",
        convert_args(),
        {"boxes": array_mutations(), "in_fmt": choice_mutations(), "out_fmt": choice_mutations()},
        ("box_convert_rotated",),
        oracle=convert_oracle,
        sane=convert_sane,
    ),
    "ferrops.evaluate_rotated": Driver(
        "ferrops:evaluate_rotated",
        rotated_eval_args(),
        {
            "detections": opaque_mutations(),
            "ground_truths": opaque_mutations(),
            "iou_thresholds": [*opaque_mutations(), *array_mutations(optional=True)],
            "max_detections": int_mutations(),
            **rotated_conventions,
        },
        ("evaluate_rotated",),
        sane=rotated_eval_sane,
    ),
}

FUSION = {
    "ferrops.weighted_boxes_fusion": Driver(
        "ferrops:weighted_boxes_fusion",
        fusion_args(),
        {**fusion_mutations, "conf_type": choice_mutations(), "allows_overflow": bool_mutations()},
        ("weighted_boxes_fusion",),
        oracle=fusion_oracle("weighted_boxes_fusion"),
        sane=fusion_sane,
    ),
    "ferrops.non_maximum_weighted": Driver(
        "ferrops:non_maximum_weighted",
        fusion_args(wbf=False),
        fusion_mutations,
        ("non_maximum_weighted",),
        oracle=fusion_oracle("non_maximum_weighted"),
        sane=fusion_sane,
    ),
}
