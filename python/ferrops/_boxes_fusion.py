"""Weighted boxes fusion (SPEC section 1: WBF) and non-maximum weighted fusion
(WBF-NMW), re-exported by :mod:`ferrops.boxes`.

``weighted_boxes_fusion`` returns what ``ensemble_boxes.weighted_boxes_fusion``
returns, number for number: the same per-box checks (coordinates clipped to
[0, 1] and swapped corners fixed, with the package's warnings; zero-area boxes
skipped), the same clustering walk and float32 rounding of fused boxes (in
Rust), and NumPy's own ``argsort`` for both of its score sorts, so that tied
scores come out in the package's order.

Deliberate differences: where the package prints a message and exits the
interpreter (a boxes/scores/labels length mismatch, an unknown ``conf_type``)
this raises ``ValueError``; weights of the wrong length raise instead of being
replaced by ones with a printed warning; NaN scores or coordinates raise.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np

from . import _core
from . import _dispatch as d
from ._dispatch import ArrayLike
from ._errors import describe, type_error, value_error

ConfType = Literal["avg", "max", "box_and_model_avg", "absent_model_aware_avg"]
_CONF_TYPES = ("avg", "max", "box_and_model_avg", "absent_model_aware_avg")
_FUNCTION = "weighted_boxes_fusion"

# The package's warning texts, in its check order.
_CLIP_WARNINGS = (
    "X1 < 0 in box. Set it to 0.",
    "X1 > 1 in box. Set it to 1. Check that you normalize boxes in [0, 1] range.",
    "X2 < 0 in box. Set it to 0.",
    "X2 > 1 in box. Set it to 1. Check that you normalize boxes in [0, 1] range.",
    "Y1 < 0 in box. Set it to 0.",
    "Y1 > 1 in box. Set it to 1. Check that you normalize boxes in [0, 1] range.",
    "Y2 < 0 in box. Set it to 0.",
    "Y2 > 1 in box. Set it to 1. Check that you normalize boxes in [0, 1] range.",
)


def _model_boxes(
    function: str, t: int, boxes: ArrayLike, scores: ArrayLike, labels: ArrayLike, thr: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model ``t``'s checked boxes ``[K, 4]`` (float64), scores and labels, without
    those scored below ``thr`` (compared in the scores' own dtype, as the package's
    NumPy scalars compare)."""
    b = d.host_array(function, "boxes_list", boxes)
    s = d.host_array(function, "scores_list", scores)
    lab = d.host_array(function, "labels_list", labels)
    n = b.shape[0] if b.ndim else 0
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] < 4:
        raise value_error(function, "boxes_list", f"[N, 4] boxes for model {t}", list(b.shape))
    for name, v in (("scores_list", s), ("labels_list", lab)):
        if v.ndim != 1 or v.shape[0] != n:
            raise value_error(function, name, f"{n} values for model {t} (one per box)", list(v.shape))
    for name, v in (("scores_list", s), ("labels_list", lab)):
        if v.dtype.kind not in "fiub":
            raise value_error(function, name, "real numbers", f"{v.dtype} values for model {t}")
    if np.isnan(s).any() if s.dtype.kind == "f" else False:
        raise value_error(function, "scores_list", "scores that are not NaN", f"a NaN score for model {t}")
    keep = ~(s < thr)
    coords = b[keep, :4].astype(np.float64)
    if not np.isfinite(coords).all():
        raise value_error(function, "boxes_list", "finite coordinates", f"a non-finite box for model {t}")
    return coords, s[keep].astype(np.float64), lab[keep].astype(np.float64)


def _prefiltered_rows(coords: np.ndarray, scores: np.ndarray, labels: np.ndarray, model: np.ndarray) -> np.ndarray:
    """The package's prefiltered rows ``[label, score, weight (filled later),
    model, x1, y1, x2, y2]``: corners swapped and clipped to [0, 1] with its
    warnings, zero-area boxes skipped."""
    x1, y1, x2, y2 = coords.T
    if (x2 < x1).any():
        warnings.warn("X2 < X1 value in box. Swap them.", stacklevel=4)
        x1, x2 = np.minimum(x1, x2), np.maximum(x1, x2)
    if (y2 < y1).any():
        warnings.warn("Y2 < Y1 value in box. Swap them.", stacklevel=4)
        y1, y2 = np.minimum(y1, y2), np.maximum(y1, y2)
    columns = [x1, x2, y1, y2]
    for k, v in enumerate(columns):
        if (v < 0).any():
            warnings.warn(_CLIP_WARNINGS[2 * k], stacklevel=4)
        if (v > 1).any():
            warnings.warn(_CLIP_WARNINGS[2 * k + 1], stacklevel=4)
        columns[k] = np.clip(v, 0.0, 1.0)
    x1, x2, y1, y2 = columns
    nonzero = (x2 - x1) * (y2 - y1) != 0.0
    if not nonzero.all():
        for original in coords[~nonzero]:
            warnings.warn(f"Zero area box skipped: {original}.", stacklevel=4)
    rows = np.empty((int(nonzero.sum()), 8))
    rows[:, 0] = np.trunc(labels[nonzero])
    rows[:, 1] = scores[nonzero]
    rows[:, 3] = model[nonzero]
    rows[:, 4] = x1[nonzero]
    rows[:, 5] = y1[nonzero]
    rows[:, 6] = x2[nonzero]
    rows[:, 7] = y2[nonzero]
    return rows


def _descending(scores: np.ndarray) -> np.ndarray:
    """The package's ``argsort()[::-1]`` order."""
    return scores.argsort()[::-1]


def _prepared_rows(
    function: str,
    boxes_list: Sequence[ArrayLike],
    scores_list: Sequence[ArrayLike],
    labels_list: Sequence[ArrayLike],
    weights: Sequence[float] | ArrayLike | None,
    skip_box_thr: float,
    weights_by_max: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The checked, prefiltered rows with ``score * weight`` and the weights
    (divided by their maximum where ``weights_by_max``, as the package's NMW does)."""
    lists = {"boxes_list": boxes_list, "scores_list": scores_list, "labels_list": labels_list}
    for name, value in lists.items():
        if not hasattr(value, "__len__") or isinstance(value, (str, bytes)):
            raise value_error(function, name, "a list with one entry per model", type(value).__name__)
    models = len(boxes_list)
    for name in ("scores_list", "labels_list"):
        if len(lists[name]) != models:
            raise value_error(
                function, name, f"one entry per model of boxes_list ({models})", f"{len(lists[name])} entries"
            )
    if weights is None:
        weight_array = np.ones(models)
    else:
        weight_array = d.host_array(function, "weights", weights)
        if weight_array.dtype.kind not in "fiub":
            raise type_error(function, "weights", "numbers", describe(weights))
        weight_array = d.contiguous(function, "weights", weight_array, np.dtype(np.float64))
        if weight_array.shape != (models,):
            raise value_error(function, "weights", f"one weight per model ({models})", list(weight_array.shape))
        if not np.isfinite(weight_array).all():
            raise value_error(function, "weights", "finite weights", weight_array.tolist())
    if weights_by_max and models:
        weight_array = weight_array / weight_array.max()
    threshold = d.check_float(function, "skip_box_thr", skip_box_thr)
    parts = [_model_boxes(function, t, *m, threshold) for t, m in enumerate(zip(boxes_list, scores_list, labels_list))]
    if not parts:
        return np.empty((0, 8)), weight_array
    coords, scores, labels = (np.concatenate(columns) for columns in zip(*parts))
    model = np.repeat(np.arange(models), [len(p[1]) for p in parts])
    rows = _prefiltered_rows(coords, scores, labels, model)
    rows[:, 1] *= weight_array[rows[:, 3].astype(np.intp)]
    rows[:, 2] = weight_array[rows[:, 3].astype(np.intp)]
    return rows, weight_array


def weighted_boxes_fusion(
    boxes_list: Sequence[ArrayLike],
    scores_list: Sequence[ArrayLike],
    labels_list: Sequence[ArrayLike],
    weights: Sequence[float] | ArrayLike | None = None,
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
    conf_type: ConfType = "avg",
    allows_overflow: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted boxes fusion of several models' detections (WBF), equal to
    ``ensemble_boxes.weighted_boxes_fusion``.

    Within each label, boxes are walked by descending ``score * weight``; a box
    joins the cluster whose fused box it overlaps most if that IoU is above
    ``iou_thr``, else starts a cluster. A cluster's box is the score-weighted mean
    of its members; its score is rescaled by ``conf_type``.

    Args:
        boxes_list (list of ndarray[N_t, 4]): per model, ``(x1, y1, x2, y2)`` boxes
            normalised to [0, 1] (clipped there, with a warning).
        scores_list (list of ndarray[N_t]): per model, box scores.
        labels_list (list of ndarray[N_t]): per model, box labels (truncated to int).
        weights (list of float | None): per model; None: all 1.
        iou_thr (float): IoU above which a box joins a cluster.
        skip_box_thr (float): boxes with a lower score are dropped.
        conf_type: "avg", "max", "box_and_model_avg" or "absent_model_aware_avg".
        allows_overflow (bool): with "avg", let scores exceed 1 when a cluster has
            more boxes than there are models.

    Returns:
        (ndarray[K, 4], ndarray[K], ndarray[K]) float64: fused boxes, scores and
        labels, by descending score.
    """
    if conf_type not in _CONF_TYPES:
        raise value_error(_FUNCTION, "conf_type", f"one of {_CONF_TYPES}", repr(conf_type))
    rows, weight_array = _prepared_rows(_FUNCTION, boxes_list, scores_list, labels_list, weights, skip_box_thr, False)
    iou = d.check_float(_FUNCTION, "iou_thr", iou_thr)
    overflow = d.check_bool(_FUNCTION, "allows_overflow", allows_overflow)
    if rows.shape[0] == 0:
        return np.zeros((0, 4)), np.zeros((0,)), np.zeros((0,))
    ordered, ends = _group_by_label(rows)
    fused = _core.weighted_boxes_fusion(ordered, ends, weight_array, iou, conf_type, overflow)
    fused = fused[_descending(fused[:, 1])]
    return fused[:, 4:], fused[:, 1], fused[:, 0]


def non_maximum_weighted(
    boxes_list: Sequence[ArrayLike],
    scores_list: Sequence[ArrayLike],
    labels_list: Sequence[ArrayLike],
    weights: Sequence[float] | ArrayLike | None = None,
    iou_thr: float = 0.55,
    skip_box_thr: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-maximum weighted fusion (WBF-NMW, Zhou et al. 2017), equal to
    ``ensemble_boxes.non_maximum_weighted``.

    Within each label, boxes by descending ``score * weight / max(weights)``; a box
    joins the cluster whose first box it overlaps most above ``iou_thr``, else
    starts one. A cluster keeps its first box's score; its box is the mean of its
    members weighted by ``score * IoU with the first box``.

    Args:
        boxes_list, scores_list, labels_list, weights, iou_thr, skip_box_thr: as
            :func:`weighted_boxes_fusion`.

    Returns:
        (ndarray[K, 4], ndarray[K], ndarray[K]) float32 (the package's dtype):
        fused boxes, scores and labels, by descending score.
    """
    function = "non_maximum_weighted"
    rows, _ = _prepared_rows(function, boxes_list, scores_list, labels_list, weights, skip_box_thr, True)
    iou = d.check_float(function, "iou_thr", iou_thr)
    if rows.shape[0] == 0:
        return np.zeros((0, 4)), np.zeros((0,)), np.zeros((0,))
    ordered, ends = _group_by_label(rows)
    fused = _core.non_maximum_weighted(ordered, ends, iou)
    fused = fused[_descending(fused[:, 1])]
    return fused[:, 2:], fused[:, 1], fused[:, 0]


def _group_by_label(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows grouped by label (labels in order of first appearance, as the
    package's dict), each group in the package's ``argsort()[::-1]`` order.

    One stable sort does it where a label has no tied scores (the descending
    order is then unique); a label with ties gets NumPy's own per-label argsort.
    """
    labels, first, inverse = np.unique(rows[:, 0], return_index=True, return_inverse=True)
    rank = np.empty(len(labels), np.intp)
    rank[np.argsort(first, kind="stable")] = np.arange(len(labels))
    group = rank[inverse.reshape(-1)]
    order = np.lexsort((-rows[:, 1], group))
    grouped = rows[order]
    group_sorted = group[order]
    ends = np.flatnonzero(np.diff(group_sorted)) + 1
    ends = np.append(ends, len(order)).astype(np.int64)
    same = (np.diff(grouped[:, 1]) == 0) & (np.diff(group_sorted) == 0)
    if same.any():
        starts = np.concatenate([[0], ends[:-1]])
        for g in np.unique(group_sorted[1:][same]):
            lo, hi = int(starts[g]), int(ends[g])
            members = rows[group == g]
            grouped[lo:hi] = members[_descending(members[:, 1])]
    return np.ascontiguousarray(grouped), ends
