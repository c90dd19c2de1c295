"""Results of an accumulated COCO evaluation: precision-recall curves, a plot of
them, and the AP of each category. Duck-typed: pycocotools' ``COCOeval`` keeps
the same ``eval`` dict, so it works as well as :class:`ferrops.coco.COCOeval`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypedDict

import numpy as np

from .._errors import type_error, value_error
from ..coco import COCOeval


class PrCurves(TypedDict):
    """What :func:`pr_curves` returns (a plain dict)."""

    recall: np.ndarray
    precision: np.ndarray
    scores: np.ndarray
    iou_thresholds: np.ndarray
    category_ids: list[int]


def pr_curves(coco_eval: COCOeval, *, area: str = "all", max_dets: int | None = None) -> PrCurves:
    """Precision-recall curves of an accumulated :class:`ferrops.coco.COCOeval`.

    Args:
        coco_eval: after ``evaluate()`` and ``accumulate()``.
        area: an ``areaRngLbl`` label ("all", "small", "medium", "large").
        max_dets: a ``maxDets`` value (default: the largest).

    Returns:
        dict: ``recall`` (ndarray[R], the recall thresholds), ``precision``
        (ndarray[T, R, K], -1 where a class has no ground truth), ``scores``
        (ndarray[T, R, K], the score threshold reaching each point),
        ``iou_thresholds`` (ndarray[T]) and ``category_ids`` (list[K]).
    """
    if not hasattr(coco_eval, "eval"):
        raise type_error("pr_curves", "coco_eval", "a COCOeval", type(coco_eval).__name__)
    if not coco_eval.eval:
        raise value_error("pr_curves", "coco_eval", "an accumulated COCOeval", "one without eval")
    p = coco_eval.eval["params"]
    labels = list(p.areaRngLbl)
    if area not in labels:
        raise value_error("pr_curves", "area", f"one of {labels}", repr(area))
    max_dets = max(p.maxDets) if max_dets is None else max_dets
    if max_dets not in list(p.maxDets):
        raise value_error("pr_curves", "max_dets", f"one of {list(p.maxDets)}", repr(max_dets))
    a, m = labels.index(area), list(p.maxDets).index(max_dets)
    return {
        "recall": np.asarray(p.recThrs, dtype=np.float64),
        "precision": coco_eval.eval["precision"][:, :, :, a, m],
        "scores": coco_eval.eval["scores"][:, :, :, a, m],
        "iou_thresholds": np.asarray(p.iouThrs, dtype=np.float64),
        "category_ids": list(p.catIds) if p.useCats else [-1],
    }


def plot_pr_curves(
    coco_eval: COCOeval,
    path: str | os.PathLike[str],
    *,
    iou_thresholds: Sequence[float] = (0.5, 0.75),
    category_ids: Sequence[int] | None = None,
    area: str = "all",
    max_dets: int | None = None,
) -> None:
    """Writes a PNG of precision against recall (needs matplotlib: ``pip install
    ferrops[plot]``).

    One panel per IoU threshold; in each, the curve averaged over the classes with
    ground truth, and one thin curve per class of ``category_ids`` (default: none
    when there are more than 10 classes, else all).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plot_pr_curves() needs matplotlib: pip install 'ferrops[plot]'") from exc
    curves = pr_curves(coco_eval, area=area, max_dets=max_dets)
    thresholds = curves["iou_thresholds"]
    cats = curves["category_ids"]
    if category_ids is None:
        category_ids = cats if len(cats) <= 10 else []
    missing = [c for c in category_ids if c not in cats]
    if missing:
        raise value_error("plot_pr_curves", "category_ids", "evaluated categories", missing)
    picked = []
    for thr in iou_thresholds:
        close = np.nonzero(np.isclose(thresholds, thr))[0]
        if len(close) == 0:
            raise ValueError(f"plot_pr_curves(): argument 'iou_thresholds': {thr} is not among {thresholds.tolist()}")
        picked.append(int(close[0]))
    fig, axes = plt.subplots(1, len(picked), figsize=(5 * len(picked), 4.5), squeeze=False)
    recall = curves["recall"]
    for ax, t in zip(axes[0], picked):
        precision = curves["precision"][t]  # [R, K]
        valid = precision[0] > -1
        if valid.any():
            ax.plot(recall, precision[:, valid].mean(axis=1), color="black", linewidth=2, label="mean")
        for c in category_ids:
            k = cats.index(c)
            if precision[0, k] > -1:
                ax.plot(recall, precision[:, k], linewidth=0.8, label=str(c))
        ax.set(
            title=f"IoU={thresholds[t]:.2f}, area={area}",
            xlabel="recall",
            ylabel="precision",
            xlim=(0, 1),
            ylim=(0, 1.01),
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")
    plt.close(fig)


def per_category_ap(coco_eval: COCOeval, *, area: str = "all", max_dets: int | None = None) -> dict[int, float]:
    """AP of each category of an accumulated :class:`ferrops.coco.COCOeval`: the
    mean of its precision over IoU and recall thresholds, as ``summarize()``
    averages the classes together (``ferrops coco-eval --json`` reports it).

    Args:
        coco_eval: after ``evaluate()`` and ``accumulate()``.
        area: an ``areaRngLbl`` label ("all", "small", "medium", "large").
        max_dets: a ``maxDets`` value (default: the largest).

    Returns:
        dict[int, float]: category id -> AP, -1.0 for a category without ground truth.
    """
    curves = pr_curves(coco_eval, area=area, max_dets=max_dets)
    precision = curves["precision"]  # [T, R, K]
    ap: dict[int, float] = {}
    for k, category_id in enumerate(curves["category_ids"]):
        valid = precision[:, :, k][precision[:, :, k] > -1]
        ap[int(category_id)] = float(np.mean(valid)) if valid.size else -1.0
    return ap
