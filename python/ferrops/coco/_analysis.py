"""Analyses people run after mAP (SPEC DET-ANALYSIS): the per-category AP/AR
table, precision / recall / F1 at a score threshold with the F1-maximising
threshold per category, and a detection confusion matrix.

The table and the F1 analysis read an evaluated ``COCOeval`` (its ``eval``
arrays and ``evalImgs``) and so work for any iouType it evaluates; the
confusion matrix matches boxes or masks across classes itself."""

from __future__ import annotations

from typing import Any, Literal, cast

import numpy as np

from .. import mask as mask_api
from .._dispatch import check_float, host_array
from .._errors import describe, type_error, value_error
from ._dataset import COCO
from ._eval import COCOeval
from ._params import Params


def _evaluated(function: str, coco_eval: object, accumulated: bool = True) -> COCOeval:
    if not isinstance(coco_eval, COCOeval):
        raise type_error(function, "coco_eval", "a ferrops.coco.COCOeval", type(coco_eval).__name__)
    if accumulated and not coco_eval.eval:
        raise value_error(function, "coco_eval", "a COCOeval after evaluate() and accumulate()", "no eval arrays")
    if coco_eval._evaluation is None:
        raise value_error(function, "coco_eval", "a COCOeval after evaluate()", "no evaluation")
    return coco_eval


def _category_names(coco_eval: COCOeval, cat_ids: list[Any]) -> list[str]:
    gt = coco_eval.cocoGt
    names = []
    for c in cat_ids:
        cats = gt.cats if gt is not None else {}
        names.append(str(cats.get(c, {}).get("name", c)))
    return names


def _mean_valid(values: np.ndarray) -> float:
    """pycocotools' summary mean: over the entries > -1, -1 where there are none."""
    valid = values[values > -1]
    return -1.0 if valid.size == 0 else float(np.mean(valid))


def per_category(coco_eval: COCOeval) -> list[dict[str, Any]]:
    """One row per category of ``params.catIds``: pycocotools' summary values
    restricted to it.

    Args:
        coco_eval (COCOeval): after ``evaluate()`` and ``accumulate()``.

    Returns:
        list[dict]: ``category_id``, ``name``, ``AP`` (IoU ``.50:.95``), ``AP50``,
        ``AP75``, ``AP_<area>`` for each area label but "all", ``AR`` (all at the
        largest maxDets), -1 where a category has no ground truth.
    """
    ev = _evaluated("per_category", coco_eval)
    p = ev.eval["params"]
    precision, recall = ev.eval["precision"], ev.eval["recall"]
    thresholds = np.asarray(p.iouThrs)
    a_all = list(p.areaRngLbl).index("all") if "all" in p.areaRngLbl else 0
    m = len(p.maxDets) - 1
    cat_ids = [c.item() if isinstance(c, np.generic) else c for c in (p.catIds if p.useCats else [-1])]
    rows = []
    for k, (cat_id, name) in enumerate(zip(cat_ids, _category_names(ev, cat_ids))):
        row: dict[str, Any] = {"category_id": cat_id, "name": name}
        row["AP"] = _mean_valid(precision[:, :, k, a_all, m])
        for label, thr in (("AP50", 0.5), ("AP75", 0.75)):
            t = np.where(thresholds == thr)[0]
            row[label] = _mean_valid(precision[t, :, k, a_all, m]) if t.size else -1.0
        for a, label in enumerate(p.areaRngLbl):
            if a != a_all:
                row[f"AP_{label}"] = _mean_valid(precision[:, :, k, a, m])
        row["AR"] = _mean_valid(recall[:, k, a_all, m])
        rows.append(row)
    return rows


def per_category_table(coco_eval: COCOeval) -> str:
    """:func:`per_category` as a text table (values in %)."""
    rows = per_category(coco_eval)
    if not rows:
        return "(no categories)"
    columns = [c for c in rows[0] if c not in ("category_id", "name")]
    width = max(8, *(len(r["name"]) for r in rows))
    lines = [f"{'category':<{width}s} " + " ".join(f"{c:>9s}" for c in columns)]
    for r in rows:
        values = " ".join(f"{100 * r[c]:9.2f}" if r[c] >= 0 else f"{'-':>9s}" for c in columns)
        lines.append(f"{r['name']:<{width}s} {values}")
    return "\n".join(lines)


def _outcomes(ev: COCOeval, k: int, t: int, a: int, max_det: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Category ``k``'s kept detections at threshold ``t``, area range ``a``: their
    scores and whether each is a true positive (ignored ones dropped), and the
    ground truth not ignored."""
    p = cast(Params, ev._paramsEval)  # set by evaluate()
    num_images, num_areas = len(p.imgIds), len(p.areaRng)
    start = (k * num_areas + a) * num_images
    scores, positives, num_gt = [], [], 0
    for entry in ev.evalImgs[start : start + num_images]:
        if entry is None:
            continue
        kept = slice(0, max_det)
        s = np.asarray(entry["dtScores"][kept], dtype=np.float64)
        matched = np.asarray(entry["dtMatches"])[t, kept] != 0
        ignored = np.asarray(entry["dtIgnore"])[t, kept].astype(bool)
        scores.append(s[~ignored])
        positives.append(matched[~ignored])
        num_gt += int(np.count_nonzero(~np.asarray(entry["gtIgnore"], dtype=bool)))
    if not scores:
        return np.zeros(0), np.zeros(0, dtype=bool), num_gt
    return np.concatenate(scores), np.concatenate(positives), num_gt


def precision_recall_f1(
    coco_eval: COCOeval, score_threshold: float = 0.5, iou_threshold: float = 0.5, area: str = "all"
) -> list[dict[str, Any]]:
    """Precision, recall and F1 of each category at a score threshold, and the
    score threshold that maximises its F1.

    A detection counts when its score is at least ``score_threshold``; true and
    false positives are pycocotools' matches at ``iou_threshold`` (one of
    ``params.iouThrs``) within the area range ``area``, among each image's
    ``maxDets[-1]`` best detections; ignored detections and ground truth (crowd,
    outside the range) count neither way.

    Returns:
        list[dict]: per category ``category_id``, ``name``, ``tp``, ``fp``,
        ``num_gt``, ``precision``, ``recall``, ``f1`` (NaN where undefined), and
        ``best_threshold``, ``best_f1`` (the lowest score kept at the F1 maximum;
        NaN without true positives).
    """
    ev = _evaluated("precision_recall_f1", coco_eval, accumulated=False)
    s_thr = check_float("precision_recall_f1", "score_threshold", score_threshold)
    i_thr = check_float("precision_recall_f1", "iou_threshold", iou_threshold)
    p = cast(Params, ev._paramsEval)  # set by evaluate()
    t = np.where(np.asarray(p.iouThrs) == i_thr)[0]
    if t.size == 0:
        raise value_error("precision_recall_f1", "iou_threshold", f"one of params.iouThrs {list(p.iouThrs)}", i_thr)
    if area not in p.areaRngLbl:
        raise value_error("precision_recall_f1", "area", f"one of {list(p.areaRngLbl)}", repr(area))
    a = list(p.areaRngLbl).index(area)
    cat_ids = [c.item() if isinstance(c, np.generic) else c for c in (p.catIds if p.useCats else [-1])]
    rows = []
    for k, (cat_id, name) in enumerate(zip(cat_ids, _category_names(ev, cat_ids))):
        scores, positive, num_gt = _outcomes(ev, k, int(t[0]), a, int(p.maxDets[-1]))
        kept = scores >= s_thr
        tp, fp = int(np.count_nonzero(positive & kept)), int(np.count_nonzero(~positive & kept))
        precision = tp / (tp + fp) if tp + fp else float("nan")
        recall = tp / num_gt if num_gt else float("nan")
        f1 = 2 * tp / (2 * tp + fp + (num_gt - tp)) if tp else (0.0 if tp + fp + num_gt else float("nan"))
        best_threshold, best_f1 = float("nan"), float("nan")
        if positive.any() and num_gt:
            order = np.argsort(-scores, kind="mergesort")
            ordered = scores[order]
            tps = np.cumsum(positive[order])
            fps = np.arange(1, len(order) + 1) - tps
            # A threshold keeps every detection of its score: read at each tie group's end.
            ends = np.flatnonzero(np.append(ordered[1:] != ordered[:-1], True))
            f1s = 2 * tps[ends] / (2 * tps[ends] + fps[ends] + (num_gt - tps[ends]))
            best = int(np.argmax(f1s))
            best_threshold, best_f1 = float(ordered[ends[best]]), float(f1s[best])
        rows.append(
            {
                "category_id": cat_id,
                "name": name,
                "tp": tp,
                "fp": fp,
                "num_gt": num_gt,
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "best_threshold": best_threshold,
                "best_f1": best_f1,
            }
        )
    return rows


def _box_iou(d: np.ndarray, g: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """pycocotools' ``[x, y, w, h]`` IoU ``[D, G]`` (crowd: over the detection's area)."""
    w = np.minimum(d[:, None, 2] + d[:, None, 0], g[None, :, 2] + g[None, :, 0]) - np.maximum(
        d[:, None, 0], g[None, :, 0]
    )
    h = np.minimum(d[:, None, 3] + d[:, None, 1], g[None, :, 3] + g[None, :, 1]) - np.maximum(
        d[:, None, 1], g[None, :, 1]
    )
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    det_area = (d[:, 2] * d[:, 3])[:, None]
    union = np.where(crowd[None, :], det_area, det_area + (g[:, 2] * g[:, 3])[None, :] - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / union, 0.0)


def _mask_iou(dataset: COCO, rows: np.ndarray, other: COCO, other_rows: np.ndarray, crowd: bool) -> np.ndarray:
    """pycocotools' mask IoU ``[D, G]`` of the records ``rows`` of ``dataset`` and
    ``other_rows`` of ``other`` (crowd: over the first one's area), each mask
    ``annToRLE`` of the record."""
    d = [dataset.annToRLE(dataset.dataset["annotations"][j]) for j in rows.tolist()]
    g = [other.annToRLE(other.dataset["annotations"][j]) for j in other_rows.tolist()]
    return np.asarray(mask_api.iou(d, g, [int(crowd)] * len(g)), dtype=np.float64).reshape(len(d), len(g))


def confusion_matrix(
    cocoGt: COCO,  # noqa: N803
    cocoDt: COCO,  # noqa: N803
    iou_threshold: float = 0.5,
    score_threshold: float = 0.25,
    iou_type: Literal["bbox", "segm"] = "bbox",
) -> tuple[np.ndarray, list[Any]]:
    """A detection confusion matrix over the ground truth's categories plus background.

    Per image, detections scoring at least ``score_threshold`` are paired with
    ground truth of any class by IoU (at least ``iou_threshold``), greedily from
    the highest IoU, each used once. A pair counts in ``[gt class, detected
    class]``; unmatched ground truth in ``[gt class, background]``; unmatched
    detections in ``[background, detected class]``, except those inside a crowd
    region of their class (IoU over their own area at least ``iou_threshold``),
    which are not counted. Crowd ground truth is not a row entry. IoU is of
    boxes (``iou_type="bbox"``) or of masks (``"segm"``: each record's
    ``annToRLE``, as ``COCOeval`` compares them).

    Returns:
        (ndarray[K + 1, K + 1] int64, list): counts, rows ground truth and columns
        detections, the last row and column background; and the K category ids
        (the ground truth's, in the order of their codes: sorted integer ids).
    """
    for name, value in (("cocoGt", cocoGt), ("cocoDt", cocoDt)):
        if not isinstance(value, COCO):
            raise type_error("confusion_matrix", name, "a ferrops.coco.COCO", type(value).__name__)
    i_thr = check_float("confusion_matrix", "iou_threshold", iou_threshold)
    s_thr = check_float("confusion_matrix", "score_threshold", score_threshold)
    if iou_type not in ("bbox", "segm"):
        raise value_error("confusion_matrix", "iou_type", "'bbox' or 'segm'", repr(iou_type))

    def overlap(d: np.ndarray, g: np.ndarray, crowd: bool) -> np.ndarray:
        if iou_type == "segm":
            return _mask_iou(cocoDt, d, cocoGt, g, crowd)
        return _box_iou(dt["bbox"][d], gt["bbox"][g], np.full(len(g), crowd))

    gt, dt = cocoGt._data.columns(), cocoDt._data.columns()
    codes = np.unique(cocoGt._data.category_ids())
    cat_ids = cocoGt._ids(codes)
    k = len(codes)
    background = k
    gt_class = np.searchsorted(codes, gt["category_id"])
    dt_class = np.searchsorted(codes, dt["category_id"])
    gt_known = (gt_class < k) & (codes[np.minimum(gt_class, k - 1)] == gt["category_id"]) if k else gt_class < 0
    dt_known = (dt_class < k) & (codes[np.minimum(dt_class, k - 1)] == dt["category_id"]) if k else dt_class < 0
    if not dt_known.all():
        bad = int(np.flatnonzero(~dt_known)[0])
        raise value_error("confusion_matrix", "cocoDt", "detections of the ground truth's categories", f"result {bad}")
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    keep = dt["score"] >= s_thr
    if iou_type == "bbox":
        # mask-only ground truth loads (as in pycocotools) with NaN boxes
        for name, columns, rows in (("cocoGt", gt, np.flatnonzero(gt_known)), ("cocoDt", dt, np.flatnonzero(keep))):
            boxless = rows[np.isnan(columns["bbox"][rows, 0])]
            if len(boxless):
                got = f"annotations[{int(boxless[0])}] has no 'bbox'"
                raise value_error("confusion_matrix", name, "a 'bbox' in every record (iou_type='bbox')", got)
    gt_rows = np.flatnonzero(gt_known)
    dt_rows = np.flatnonzero(keep)
    images = np.union1d(gt["image_id"][gt_rows], dt["image_id"][dt_rows])
    gt_by = _group(gt["image_id"][gt_rows], images)
    dt_by = _group(dt["image_id"][dt_rows], images)
    for i in range(len(images)):
        g, d = gt_rows[gt_by[i]], dt_rows[dt_by[i]]
        crowd = gt["iscrowd"][g].astype(bool)
        solid, regions = g[~crowd], g[crowd]
        det_used = np.zeros(len(d), dtype=bool)
        gt_used = np.zeros(len(solid), dtype=bool)
        if len(d) and len(solid):
            iou = overlap(d, solid, False)
            di, gi = np.nonzero(iou >= i_thr)
            for n in np.argsort(-iou[di, gi], kind="stable"):
                x, y = di[n], gi[n]
                if det_used[x] or gt_used[y]:
                    continue
                det_used[x] = gt_used[y] = True
                matrix[gt_class[solid[y]], dt_class[d[x]]] += 1
        np.add.at(matrix[:, background], gt_class[solid[~gt_used]], 1)
        left = d[~det_used]
        if len(left) and len(regions):
            inside = overlap(left, regions, True) >= i_thr
            inside &= dt_class[left][:, None] == gt_class[regions][None, :]
            left = left[~inside.any(axis=1)]
        np.add.at(matrix[background], dt_class[left], 1)
    return matrix, cat_ids


def _group(image_ids: np.ndarray, images: np.ndarray) -> list[np.ndarray]:
    """Row positions per image of ``images`` (file order within an image)."""
    where = np.searchsorted(images, image_ids)
    order = np.argsort(where, kind="stable")
    bounds = np.searchsorted(where[order], np.arange(len(images) + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(len(images))]


def confusion_matrix_table(matrix: np.ndarray, labels: list[str]) -> str:
    """A confusion matrix as text: rows ground truth, columns detections."""
    if not isinstance(labels, (list, tuple)):
        raise type_error("confusion_matrix_table", "labels", "a list of names", type(labels).__name__)
    names = [*(str(n) for n in labels), "background"]
    counts = host_array("confusion_matrix_table", "matrix", matrix)
    if counts.dtype.kind not in "iu":
        raise type_error("confusion_matrix_table", "matrix", "integer counts", describe(matrix))
    if counts.shape != (len(names), len(names)):
        expected = f"shape [{len(names)}, {len(names)}] (the labels and background)"
        raise value_error("confusion_matrix_table", "matrix", expected, list(counts.shape))
    matrix = counts
    width = max(10, *(len(n) for n in names))
    lines = [" " * width + " " + " ".join(f"{n[:width]:>{width}s}" for n in names)]
    for name, row in zip(names, matrix):
        lines.append(f"{name:<{width}s} " + " ".join(f"{v:>{width}d}" for v in row))
    return "\n".join(lines)
