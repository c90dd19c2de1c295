"""PASCAL VOC evaluation (SPEC DET-PR, DET-VOC07, DET-VOC10): ``voc_ap`` and
``voc_eval``, over the Rust core's ``detection::voc``."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .. import _core
from .._dispatch import check_bool, check_float, contiguous, host_array
from .._errors import type_error, value_error

#: What the VOC functions take for an array: a NumPy array, a tensor, or nested lists.
ArrayLike = npt.ArrayLike


def _vector(function: str, name: str, x: object, dtype: type[np.generic | bool]) -> np.ndarray:
    array = host_array(function, name, x)
    if array.ndim != 1:
        raise value_error(function, name, "a 1-D array", f"shape {array.shape}")
    if array.size and array.dtype.kind not in ("biu" if dtype is bool else "fiub"):
        raise type_error(function, name, "numbers", f"dtype {array.dtype}")
    # Contiguous before any check: a broadcast view too large to copy is refused
    # here, naming the argument, not by a temporary of the checks.
    array = contiguous(function, name, array, array.dtype)
    float_ids = dtype is np.int64 and array.dtype.kind == "f"
    if float_ids and (not np.all(np.isfinite(array)) or np.any(array != np.round(array))):
        raise value_error(function, name, "integer ids", "non-integer values")
    return contiguous(function, name, array, np.dtype(dtype))


def _boxes(function: str, name: str, x: object) -> np.ndarray:
    array = host_array(function, name, x)
    if array.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise value_error(function, name, "an [N, 4] array", f"shape {array.shape}")
    if array.dtype.kind not in "fiu":
        raise type_error(function, name, "numbers", f"dtype {array.dtype}")
    boxes = contiguous(function, name, array, np.dtype(np.float64))
    bad = ~np.isfinite(boxes).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        values = ", ".join(f"{v:g}" for v in boxes[i])
        raise value_error(function, name, "finite box coordinates", f"box {i} = [{values}]")
    return boxes


def _without_nan(function: str, name: str, values: np.ndarray) -> None:
    # The core checks both curves in one test and names recall for either.
    nan = np.isnan(values)
    if nan.any():
        raise value_error(function, name, "values without NaN", f"NaN at index {int(np.argmax(nan))}")


def voc_ap(recall: ArrayLike, precision: ArrayLike, use_07_metric: bool = False) -> float:
    """VOC average precision of one class from its precision-recall curve.

    Args:
        recall (ndarray[N]): recall after each detection, in score order.
        precision (ndarray[N]): precision after each detection.
        use_07_metric: the VOC2007 11-point AP (DET-VOC07): the mean over ``t``
            in ``0, 0.1, ..., 1`` of ``max(precision[recall >= t])`` (0 where none).
            Otherwise the all-point AP of VOC2010+ (DET-VOC10): the area under the
            monotone precision envelope, summed where recall changes.

    Returns:
        float: the AP.
    """
    r = _vector("voc_ap", "recall", recall, np.float64)
    p = _vector("voc_ap", "precision", precision, np.float64)
    if r.shape != p.shape:
        raise value_error("voc_ap", "precision", f"{r.shape[0]} values like recall", p.shape[0])
    _without_nan("voc_ap", "recall", r)
    _without_nan("voc_ap", "precision", p)
    return float(_core.voc_ap(r, p, check_bool("voc_ap", "use_07_metric", use_07_metric)))


def voc_eval(
    det_image_ids: ArrayLike,
    det_boxes: ArrayLike,
    det_scores: ArrayLike,
    gt_image_ids: ArrayLike,
    gt_boxes: ArrayLike,
    gt_difficult: ArrayLike | None = None,
    *,
    iou_threshold: float = 0.5,
    use_07_metric: bool = False,
    use_legacy_coordinate: bool = True,
) -> tuple[np.ndarray, np.ndarray, float]:
    """PASCAL VOC evaluation of one class (DET-PR, DET-VOC07, DET-VOC10).

    Detections are taken by score, highest first (ties in input order). Each is
    compared with the ground truth of highest IoU in its image: above
    ``iou_threshold`` and not yet matched, a true positive; already matched, a
    false positive; "difficult", neither. Below the threshold, or in an image
    without ground truth of the class, a false positive.

    Args:
        det_image_ids (ndarray[D]): image id of each detection (integers).
        det_boxes (ndarray[D, 4]): ``(x1, y1, x2, y2)`` boxes.
        det_scores (ndarray[D]): confidences.
        gt_image_ids (ndarray[G]): image id of each ground-truth box.
        gt_boxes (ndarray[G, 4]): ``(x1, y1, x2, y2)`` boxes.
        gt_difficult (ndarray[G], optional): "difficult" flags (default none).
        iou_threshold: a match needs IoU strictly above it (VOC: 0.5).
        use_07_metric: 11-point AP (VOC2007) instead of the all-point AP.
        use_legacy_coordinate: the devkit's pixel convention, widths ``x2 - x1 + 1``
            (the numbers of the original VOC code); ``False`` for continuous
            coordinates (BOX-IOU).

    Returns:
        (ndarray[D], ndarray[D], float): recall and precision after each detection
        in score order, and the AP. Recall is NaN (and AP NaN) when the class has
        no non-difficult ground truth.
    """
    f = "voc_eval"
    di = _vector(f, "det_image_ids", det_image_ids, np.int64)
    db = _boxes(f, "det_boxes", det_boxes)
    ds = _vector(f, "det_scores", det_scores, np.float64)
    gi = _vector(f, "gt_image_ids", gt_image_ids, np.int64)
    gb = _boxes(f, "gt_boxes", gt_boxes)
    gd = np.zeros(len(gi), dtype=bool) if gt_difficult is None else _vector(f, "gt_difficult", gt_difficult, bool)
    if not (len(di) == len(db) == len(ds)):
        raise value_error(f, "det_boxes", f"{len(di)} boxes and scores", f"{len(db)} and {len(ds)}")
    if not (len(gi) == len(gb) == len(gd)):
        raise value_error(f, "gt_boxes", f"{len(gi)} boxes and flags", f"{len(gb)} and {len(gd)}")
    threshold = check_float(f, "iou_threshold", iou_threshold)
    if not np.isfinite(threshold):
        raise value_error(f, "iou_threshold", "a finite number", iou_threshold)
    use_07 = check_bool(f, "use_07_metric", use_07_metric)
    offset = 1.0 if check_bool(f, "use_legacy_coordinate", use_legacy_coordinate) else 0.0
    rec, prec = _core.voc_eval(di, db, ds, gi, gb, gd, threshold, offset)
    if len(gd) - int(gd.sum()) == 0:
        return rec, prec, float("nan")
    return rec, prec, float(_core.voc_ap(rec, prec, use_07))
