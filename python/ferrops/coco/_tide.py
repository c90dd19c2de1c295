"""The TIDE error breakdown (SPEC DET-TIDE), equal to the ``tidecv`` package's
numbers: its per-image matching and error classification run in Rust
(``_core.coco_tide``); this module replays tidecv's AP bookkeeping (its own
101-point AP per class, classes in the order it meets them, fixed errors first
and true positives after) on those data points."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .. import _core
from .._dispatch import check_float, check_int
from .._errors import type_error, value_error
from ._dataset import COCO

#: tidecv's error types, in its order, by short name.
MAIN_ERRORS = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")
SPECIAL_ERRORS = ("FalsePos", "FalseNeg")
_FIX_TRUE_POSITIVE, _FIX_MISSED = 1, 2
_RECALL_POINTS = np.array([x / 100 for x in range(101)])


@dataclass
class TideResult:
    """What tidecv's ``TIDE.summarize()`` prints for one run.

    Attributes:
        ap (float): tidecv's mAP at ``pos_threshold`` (its 101-point AP, in %).
        main_errors (dict[str, float]): dAP of fixing each error type alone
            (``Cls``, ``Loc``, ``Both``, ``Dupe``, ``Bkg``, ``Miss``), at least 0.
        special_errors (dict[str, float]): dAP of perfect precision (``FalsePos``)
            and perfect recall (``FalseNeg``).
        counts (dict[str, int]): errors of each main type.
        mode (str): what was compared, "bbox" or "mask".
    """

    ap: float
    main_errors: dict[str, float]
    special_errors: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)
    mode: str = "bbox"

    def table(self) -> str:
        """The dAP tables as text."""
        rows = [f"{self.mode} AP: {self.ap:.2f}", "", "Main errors (dAP)"]
        rows.append("  ".join(f"{name:>6s}" for name in MAIN_ERRORS))
        rows.append("  ".join(f"{self.main_errors[name]:6.2f}" for name in MAIN_ERRORS))
        rows += ["", "Special errors (dAP)"]
        rows.append("  ".join(f"{name:>8s}" for name in SPECIAL_ERRORS))
        rows.append("  ".join(f"{self.special_errors[name]:8.2f}" for name in SPECIAL_ERRORS))
        return "\n".join(rows)


def _class_ap(scores: np.ndarray, correct: np.ndarray, num_gt: int) -> float:
    """tidecv's ``APDataObject.get_ap``: precision envelope read at the 101
    recall points (``searchsorted`` left), averaged, in %."""
    if num_gt == 0:
        return 0
    order = np.argsort(-scores, kind="stable")
    num_true = np.cumsum(correct[order])
    precision = num_true / np.arange(1, len(order) + 1)
    recall = num_true / num_gt
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    at = np.searchsorted(recall, _RECALL_POINTS, side="left")
    y = [float(precision[i]) if i < len(precision) else 0 for i in at.tolist()]
    return sum(y) / len(y) * 100


def _mean_ap(
    classes: np.ndarray, scores: np.ndarray, correct: np.ndarray, class_order: list[int], num_gt: dict[int, int]
) -> float:
    """tidecv's ``ClassedAPDataObject.get_mAP``: data points grouped by class (in
    push order within a class), the mean over classes in ``class_order`` that
    have data points or ground truth."""
    order = np.argsort(classes, kind="stable")
    sorted_classes = classes[order]
    keys, starts = np.unique(sorted_classes, return_index=True)
    spans = dict(zip(keys.tolist(), zip(starts.tolist(), [*starts[1:].tolist(), len(order)])))
    aps = []
    for k in class_order:
        lo, hi = spans.get(k, (0, 0))
        if hi == lo and num_gt.get(k, 0) == 0:
            continue
        points = order[lo:hi]
        aps.append(_class_ap(scores[points], correct[points], num_gt.get(k, 0)))
    if not aps:  # tidecv divides by zero here
        raise value_error("tide", "cocoGt", "ground truth or detections to evaluate", "neither in any category")
    return sum(aps) / len(aps)


class _Replay:
    """tidecv's ``TIDERun.fix_errors`` over the Rust stage's columns."""

    def __init__(self, run: dict[str, np.ndarray]) -> None:
        self.run = run
        self.classes = run["classes"].tolist()
        self.num_gt = dict(zip(self.classes, run["gt_positives"].tolist()))
        true_points = run["point_true"]
        self.tp_class = run["point_class"][true_points]
        self.tp_score = run["point_score"][true_points]
        self.kind = run["error_kind"]

    def original_ap(self) -> float:
        r = self.run
        return _mean_ap(r["point_class"], r["point_score"], r["point_true"], self.classes, self.num_gt)

    def fixed_ap(
        self,
        selected: np.ndarray,
        transform: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
        false_negatives: bool = False,
    ) -> float:
        r = self.run
        fix = r["error_fix"]
        as_tp = selected & (fix == _FIX_TRUE_POSITIVE)
        as_fp = ~selected & r["error_has_original"]
        pushed = as_tp | as_fp
        error_class = np.where(as_tp, r["error_fixed_class"], r["error_original_class"])[pushed]
        num_gt = dict(self.num_gt)
        for k in r["error_fixed_class"][selected & (fix == _FIX_MISSED)].tolist():
            num_gt[k] -= 1
        if false_negatives:
            for k, n in zip(self.classes, r["false_negatives"].tolist()):
                num_gt[k] -= n
        # Classes first met among the pushed errors, then the run's others.
        first = list(dict.fromkeys(error_class.tolist()))
        class_order = first + [k for k in self.classes if k not in set(first)]
        classes = np.concatenate([error_class, self.tp_class])
        scores = np.concatenate([r["error_score"][pushed], self.tp_score])
        correct = np.concatenate([as_tp[pushed], np.ones(len(self.tp_class), dtype=bool)])
        if transform is not None:
            scores = transform(scores, correct)
        return _mean_ap(classes, scores, correct, class_order, num_gt)


def tide(
    cocoGt: COCO,  # noqa: N803
    cocoDt: COCO,  # noqa: N803
    pos_threshold: float = 0.5,
    background_threshold: float = 0.1,
    max_dets: int = 100,
    mode: Literal["bbox", "mask"] = "bbox",
) -> TideResult:
    """The TIDE error breakdown of detections, as ``tidecv`` computes it
    (``TIDE(pos_threshold, background_threshold).evaluate(gt, dt, mode=mode)``
    then ``get_main_errors()`` / ``get_special_errors()``).

    Args:
        cocoGt (COCO): ground truth (crowd annotations are ignore regions).
        cocoDt (COCO): detections (``cocoGt.loadRes``).
        pos_threshold (float): IoU of a true positive (tidecv's 0.5).
        background_threshold (float): IoU below which a detection is background (0.1).
        max_dets (int): detections kept per image, best first (100).
        mode (str): "bbox" (tidecv's ``TIDE.BOX``: box IoU) or "mask"
            (``TIDE.MASK``: IoU of the records' masks, each ``annToRLE`` of its
            segmentation on its image; a malformed one is a ``ValueError``
            naming the record).

    Returns:
        TideResult: AP, dAP per main and special error type, error counts.
    """
    for name, value in (("cocoGt", cocoGt), ("cocoDt", cocoDt)):
        if not isinstance(value, COCO):
            raise type_error("tide", name, "a ferrops.coco.COCO", type(value).__name__)
    pos = check_float("tide", "pos_threshold", pos_threshold)
    bg = check_float("tide", "background_threshold", background_threshold)
    kept = check_int("tide", "max_dets", max_dets, 1, "a positive count")
    run: dict[str, Any] = _core.coco_tide(cocoGt._data, cocoDt._data, pos, bg, kept, mode)
    replay = _Replay(run)
    ap = replay.original_ap()
    main = {}
    for code, name in enumerate(MAIN_ERRORS):
        main[name] = max(replay.fixed_ap(replay.kind == code) - ap, 0)
    none = np.zeros(len(replay.kind), dtype=bool)
    special = {
        "FalsePos": replay.fixed_ap(none, transform=lambda s, c: c.astype(np.float64)) - ap,
        "FalseNeg": replay.fixed_ap(none, false_negatives=True) - ap,
    }
    counts = {name: int(np.count_nonzero(replay.kind == code)) for code, name in enumerate(MAIN_ERRORS)}
    return TideResult(ap=ap, main_errors=main, special_errors=special, counts=counts, mode=mode)
