"""Average precision of rotated (oriented) boxes (SPEC section 1: DET-ROT), for
DOTA-style results: COCO's AP over IoU 0.50:0.95 and the DOTA devkit's VOC07 AP50,
with the overlaps of :func:`ferrops.box_iou_rotated`.

Input: one entry per image, ground truth ``{"boxes": [G, 5], "labels": [G]}``
(optionally ``"ignore": [G]`` bools, DOTA's ``difficult``) and detections
``{"boxes": [D, 5], "scores": [D], "labels": [D]}``; boxes are ``(cx, cy, w, h,
angle)`` in the convention of ``angle_unit``/``clockwise`` (see
:mod:`ferrops.boxes`). DOTA's 8-number polygons convert with
``ferrops.box_convert(polygons, "xyxyxyxy", "cxcywhr")``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._boxes_rotated import AngleUnit, _check_options, box_iou_rotated
from .._dispatch import check_int, contiguous, host_array
from .._errors import describe, type_error, value_error

_FUNCTION = "evaluate_rotated"
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def _field(entry: Mapping[str, Any], key: str, image: int, argument: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in entry:
        raise value_error(_FUNCTION, argument, f"a '{key}' entry for image {image}", sorted(entry))
    a = host_array(_FUNCTION, argument, entry[key])
    if a.size == 0:
        a = a.reshape((0,) + shape[1:])
    if a.ndim != len(shape) or (len(shape) == 2 and a.shape[1] != shape[1]):
        want = "[N, 5]" if len(shape) == 2 else "[N]"
        raise value_error(_FUNCTION, argument, f"'{key}' of shape {want} for image {image}", list(a.shape))
    return a


def _match_coco(iou: np.ndarray, ignore: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """pycocotools' greedy matching for one image and class: detections (rows, by
    descending score) take the best still-free ground truth with IoU >= threshold,
    non-ignored ground truth first. Returns (matched, matched_an_ignored) per detection."""
    d, g = iou.shape
    gt_order = np.argsort(ignore, kind="stable")
    taken = np.zeros(g, bool)
    matched = np.zeros(d, bool)
    to_ignored = np.zeros(d, bool)
    for i in range(d):
        best, best_iou = -1, min(threshold, 1 - 1e-10)
        for j in gt_order:
            if taken[j]:
                continue
            if best > -1 and not ignore[best] and ignore[j]:
                break
            if iou[i, j] < best_iou:
                continue
            best, best_iou = j, iou[i, j]
        if best > -1:
            taken[best] = True
            matched[i] = True
            to_ignored[i] = ignore[best]
    return matched, to_ignored


def _match_dota(iou: np.ndarray, ignore: np.ndarray, tp: list[bool], fp: list[bool]) -> None:
    """The DOTA devkit's rule for one image and class, detections by descending
    score: the best-overlapping ground truth, hit if IoU > 0.5 and not yet taken
    (a second hit is a false positive); a hit on difficult ground truth counts as
    neither."""
    taken = np.zeros(iou.shape[1], bool)
    for i in range(iou.shape[0]):
        best = int(np.argmax(iou[i])) if iou.shape[1] else -1
        if best < 0 or iou[i, best] <= 0.5:
            tp.append(False)
            fp.append(True)
        elif ignore[best]:
            tp.append(False)
            fp.append(False)
        else:
            tp.append(not taken[best])
            fp.append(bool(taken[best]))
            taken[best] = True


def _coco_ap(scores: np.ndarray, tp: np.ndarray, positives: int) -> float:
    """101-point interpolated AP (pycocotools' accumulate) of detections pooled over images."""
    if positives == 0:
        return -1.0
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    tps = np.cumsum(tp[order])
    fps = np.cumsum(~tp[order])
    recall = tps / positives
    precision = np.maximum.accumulate((tps / (tps + fps + np.spacing(1)))[::-1])[::-1]
    at = np.searchsorted(recall, _RECALL_POINTS, side="left")
    return float(np.where(at < len(precision), precision[np.minimum(at, len(precision) - 1)], 0.0).mean())


def _voc07_ap(scores: np.ndarray, tp: np.ndarray, fp: np.ndarray, positives: int) -> float:
    """The DOTA devkit's AP: 11-point interpolation (VOC07) over pooled detections."""
    if positives == 0:
        return -1.0
    order = np.argsort(-scores, kind="stable")
    tps, fps = np.cumsum(tp[order]), np.cumsum(fp[order])
    recall = tps / positives
    precision = tps / np.maximum(tps + fps, np.finfo(np.float64).eps)
    return float(
        sum((precision[recall >= t].max() if (recall >= t).any() else 0.0) for t in np.arange(0.0, 1.1, 0.1)) / 11.0
    )


def evaluate_rotated(
    detections: Sequence[Mapping[str, Any]],
    ground_truths: Sequence[Mapping[str, Any]],
    *,
    iou_thresholds: Sequence[float] | None = None,
    max_detections: int = 100,
    angle_unit: AngleUnit = "deg",
    clockwise: bool = False,
) -> dict[str, Any]:
    """COCO-style mAP of rotated boxes, plus the DOTA devkit's VOC07 AP50 (DET-ROT).

    Per image and class, detections (top ``max_detections`` by score) are matched
    greedily to ground truth as pycocotools does, with :func:`box_iou_rotated`
    overlaps; ignored (``difficult``) ground truth neither rewards nor punishes a
    detection matched to it and does not count as a positive. AP is pycocotools'
    101-point interpolated precision; a class without positives is left out of
    the means. ``map_50_voc07`` follows the DOTA devkit instead: each detection,
    by descending score over all images, is checked against its best-overlapping
    ground truth (IoU > 0.5; a second hit on it is a false positive), AP by VOC07's
    11 points.

    Args:
        detections (list of dict): per image, ``boxes`` [D, 5], ``scores`` [D], ``labels`` [D].
        ground_truths (list of dict): per image, ``boxes`` [G, 5], ``labels`` [G],
            optional ``ignore`` [G].
        iou_thresholds (list of float | None): default 0.50:0.05:0.95.
        max_detections (int): per image and class.

    Returns:
        dict: ``map`` (mean over thresholds and classes), ``map_50``, ``map_75``,
        ``map_per_class`` ({label: AP over thresholds}), ``map_50_voc07`` and
        ``ap_50_voc07_per_class``.
    """
    for argument, value in (("detections", detections), ("ground_truths", ground_truths)):
        if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
            raise type_error(_FUNCTION, argument, "a list of dicts, one per image", type(value).__name__)
        for k, entry in enumerate(value):
            if not isinstance(entry, Mapping):
                raise type_error(_FUNCTION, argument, f"a dict for image {k}", type(entry).__name__)
    per_image = check_int(_FUNCTION, "max_detections", max_detections, 1, "a positive count")
    clockwise = _check_options(_FUNCTION, angle_unit, clockwise)
    if len(detections) != len(ground_truths):
        raise value_error(
            _FUNCTION, "detections", f"one entry per image ({len(ground_truths)})", f"{len(detections)} entries"
        )
    thresholds = COCO_IOU_THRESHOLDS
    if iou_thresholds is not None:
        thresholds = host_array(_FUNCTION, "iou_thresholds", iou_thresholds)
        if thresholds.dtype.kind not in "fiu":
            raise type_error(_FUNCTION, "iou_thresholds", "numbers", describe(iou_thresholds))
        thresholds = contiguous(_FUNCTION, "iou_thresholds", thresholds, np.dtype(np.float64))
    if thresholds.ndim != 1 or not np.all((thresholds >= 0) & (thresholds <= 1)):
        raise value_error(_FUNCTION, "iou_thresholds", "values in [0, 1]", thresholds.tolist())
    images = []
    for k, (det, gt) in enumerate(zip(detections, ground_truths)):
        gt_boxes = _field(gt, "boxes", k, "ground_truths", (0, 5))
        gt_labels = _field(gt, "labels", k, "ground_truths", (0,))
        ignore = np.asarray(gt.get("ignore", np.zeros(len(gt_labels), bool)), bool).reshape(-1)
        dt_boxes = _field(det, "boxes", k, "detections", (0, 5))
        dt_scores = _field(det, "scores", k, "detections", (0,)).astype(np.float64)
        dt_labels = _field(det, "labels", k, "detections", (0,))
        if not (len(gt_boxes) == len(gt_labels) == len(ignore)):
            raise value_error(_FUNCTION, "ground_truths", f"boxes, labels and ignore of one length (image {k})", "")
        if not (len(dt_boxes) == len(dt_scores) == len(dt_labels)):
            raise value_error(_FUNCTION, "detections", f"boxes, scores and labels of one length (image {k})", "")
        images.append((gt_boxes, gt_labels, ignore, dt_boxes, dt_scores, dt_labels))
    classes = sorted(set().union(*({*np.unique(i[1]).tolist(), *np.unique(i[5]).tolist()} for i in images)))
    coco = np.full((len(classes), len(thresholds)), -1.0)
    voc = np.full(len(classes), -1.0)
    for c, label in enumerate(classes):
        # Per threshold: the pooled scores and hits of the detections that count
        # (a detection matched to ignored ground truth depends on the threshold).
        scores: list[list[np.ndarray]] = [[] for _ in thresholds]
        hits: list[list[np.ndarray]] = [[] for _ in thresholds]
        voc_scores: list[np.ndarray] = []
        voc_tp: list[bool] = []
        voc_fp: list[bool] = []
        positives = 0
        for gt_boxes, gt_labels, ignore, dt_boxes, dt_scores, dt_labels in images:
            g, chosen = gt_labels == label, np.flatnonzero(dt_labels == label)
            chosen = chosen[np.argsort(-dt_scores[chosen], kind="mergesort")][:per_image]
            gb, ig = gt_boxes[g], ignore[g]
            positives += int((~ig).sum())
            iou = box_iou_rotated(dt_boxes[chosen], gb, angle_unit=angle_unit, clockwise=clockwise)
            iou = np.asarray(iou, np.float64).reshape(len(chosen), len(gb))
            for t, threshold in enumerate(thresholds):
                matched, to_ignored = _match_coco(iou, ig, float(threshold))
                scores[t].append(dt_scores[chosen][~to_ignored])
                hits[t].append(matched[~to_ignored])
            voc_scores.append(dt_scores[chosen])
            _match_dota(iou, ig, voc_tp, voc_fp)
        coco[c] = [
            _coco_ap(np.concatenate(scores[t]), np.concatenate(hits[t]), positives) for t in range(len(thresholds))
        ]
        voc[c] = _voc07_ap(np.concatenate(voc_scores), np.array(voc_tp, bool), np.array(voc_fp, bool), positives)
    return _summary(classes, thresholds, coco, voc)


def _summary(classes: list[Any], thresholds: np.ndarray, coco: np.ndarray, voc: np.ndarray) -> dict[str, Any]:
    def mean(values: np.ndarray) -> float:
        valid = values[values > -1]
        return float(valid.mean()) if valid.size else -1.0

    def at(threshold: float) -> float:
        hits = np.flatnonzero(np.isclose(thresholds, threshold))
        return mean(coco[:, hits[0]]) if hits.size else -1.0

    per_class = {label: mean(coco[c]) for c, label in enumerate(classes)}
    return {
        "map": mean(coco.reshape(-1)) if coco.size else -1.0,
        "map_50": at(0.5),
        "map_75": at(0.75),
        "map_per_class": per_class,
        "map_50_voc07": mean(voc),
        "ap_50_voc07_per_class": {label: float(voc[c]) for c, label in enumerate(classes)},
    }
