"""Detection metrics (SPEC section 2): VOC average precision, a torchmetrics-style
``MeanAveragePrecision``, and COCO precision-recall curves with a plot helper.

The COCO evaluation itself is :mod:`ferrops.coco` (a drop-in for pycocotools);
``MeanAveragePrecision`` feeds it from tensors, so its numbers are torchmetrics'
(which runs pycocotools) bit for bit before the final cast to float32.
"""

from __future__ import annotations

import contextlib
import io
import os
from typing import Any, Literal, Sequence

import numpy as np

from . import _core
from .coco import COCO, COCOeval

__all__ = ["voc_ap", "voc_eval", "MeanAveragePrecision", "pr_curves", "plot_pr_curves"]


def _vector(function: str, name: str, x: Any, dtype: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    array = np.asarray(x)
    if array.ndim != 1:
        raise ValueError(f"{function}(): argument '{name}': expected a 1-D array, got shape {array.shape}")
    if array.size and array.dtype.kind not in ("biu" if dtype is bool else "fiub"):
        raise TypeError(f"{function}(): argument '{name}': expected numbers, got dtype {array.dtype}")
    if dtype is np.int64 and array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ValueError(f"{function}(): argument '{name}': expected integer ids, got non-integer values")
    return np.ascontiguousarray(array, dtype=dtype)


def _boxes(function: str, name: str, x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    array = np.asarray(x)
    if array.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{function}(): argument '{name}': expected an [N, 4] array, got shape {array.shape}")
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{function}(): argument '{name}': expected numbers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float64)


def voc_ap(recall: Any, precision: Any, use_07_metric: bool = False) -> float:
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
        raise ValueError(f"voc_ap(): argument 'precision': expected {r.shape[0]} values like recall, got {p.shape[0]}")
    return float(_core.voc_ap(r, p, bool(use_07_metric)))


def voc_eval(
    det_image_ids: Any,
    det_boxes: Any,
    det_scores: Any,
    gt_image_ids: Any,
    gt_boxes: Any,
    gt_difficult: Any = None,
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
        raise ValueError(f"voc_eval(): argument 'det_boxes': expected {len(di)} boxes and scores, got {len(db)} and {len(ds)}")
    if not (len(gi) == len(gb) == len(gd)):
        raise ValueError(f"voc_eval(): argument 'gt_boxes': expected {len(gi)} boxes and flags, got {len(gb)} and {len(gd)}")
    if not np.isfinite(float(iou_threshold)):
        raise ValueError(f"voc_eval(): argument 'iou_threshold': expected a finite number, got {iou_threshold}")
    rec, prec = _core.voc_eval(di, db, ds, gi, gb, gd, float(iou_threshold), 1.0 if use_legacy_coordinate else 0.0)
    if len(gd) - int(gd.sum()) == 0:
        return rec, prec, float("nan")
    return rec, prec, float(_core.voc_ap(rec, prec, bool(use_07_metric)))


# -- COCO precision-recall curves ---------------------------------------------------------


def pr_curves(coco_eval: COCOeval, *, area: str = "all", max_dets: int | None = None) -> dict[str, Any]:
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
    # Duck-typed: pycocotools' COCOeval keeps the same ``eval`` dict.
    if not hasattr(coco_eval, "eval"):
        raise TypeError(f"pr_curves(): argument 'coco_eval': expected a COCOeval, got {type(coco_eval).__name__}")
    if not coco_eval.eval:
        raise ValueError("pr_curves(): argument 'coco_eval': expected an accumulated COCOeval, got one without eval")
    p = coco_eval.eval["params"]
    labels = list(p.areaRngLbl)
    if area not in labels:
        raise ValueError(f"pr_curves(): argument 'area': expected one of {labels}, got {area!r}")
    max_dets = max(p.maxDets) if max_dets is None else max_dets
    if max_dets not in list(p.maxDets):
        raise ValueError(f"pr_curves(): argument 'max_dets': expected one of {list(p.maxDets)}, got {max_dets!r}")
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
    path: str | os.PathLike,
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
        raise ValueError(f"plot_pr_curves(): argument 'category_ids': expected evaluated categories, got {missing}")
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
        ax.set(title=f"IoU={thresholds[t]:.2f}, area={area}", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.01))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")
    plt.close(fig)


# -- torchmetrics-style metric -------------------------------------------------------------


def _linspace_like_torch(start: float, end: float, steps: int) -> list[float]:
    """torchmetrics' default thresholds: ``torch.linspace`` in float32, as Python floats."""
    try:
        import torch
    except ImportError:
        return np.linspace(start, end, steps).astype(np.float32).astype(np.float64).tolist()
    return torch.linspace(start, end, steps).tolist()


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _to_xywh(boxes: np.ndarray, box_format: str) -> np.ndarray:
    """torchvision's ``box_convert(..., out_fmt="xywh")`` in the boxes' own dtype."""
    if box_format == "xywh" or boxes.size == 0:
        return boxes
    if box_format == "cxcywh":
        cx, cy, w, h = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
        half = boxes.dtype.type(0.5)
        boxes = np.stack([cx - half * w, cy - half * h, cx + half * w, cy + half * h], axis=1)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)


class MeanAveragePrecision:
    """COCO mAP/mAR over batches of tensors, like ``torchmetrics.detection.MeanAveragePrecision``
    (``iou_type="bbox"``) and with its numbers.

    Args:
        iou_type: "bbox" (the only type supported).
        box_format: "xyxy", "xywh" or "cxcywh".
        iou_thresholds, rec_thresholds: lists of floats (default COCO's, as
            torchmetrics builds them).
        max_detection_thresholds: three ints (default ``[1, 10, 100]``).
        class_metrics: also ``map_per_class`` and ``mar_{max}_per_class``.
        average: "macro" (per class, then averaged) or "micro" (classes pooled).

    ``update(preds, target)`` takes lists (one entry per image) of dicts: preds
    ``boxes`` (Tensor[N, 4]), ``scores`` (Tensor[N]), ``labels`` (Tensor[N]);
    target ``boxes`` (Tensor[M, 4]), ``labels`` (Tensor[M]), optional ``iscrowd``
    and ``area`` (Tensor[M]). ``compute()`` returns ``map, map_50, map_75,
    map_small, map_medium, map_large, mar_1, mar_10, mar_100, mar_small,
    mar_medium, mar_large, map_per_class, mar_100_per_class, classes`` as float32
    tensors (``classes`` int32; NumPy arrays when torch is not installed). Inputs
    may be tensors on any device or NumPy arrays.

    Distributed evaluation: the state is plain per-image NumPy arrays. Gather every
    rank's ``state_dict()`` and merge them in rank order into one metric; the
    result equals one process seeing the images in that order::

        states = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(states, metric.state_dict())
        merged = MeanAveragePrecision(**same_arguments)
        for state in states:
            merged.merge_state(state)
        result = merged.compute()  # on every rank, or only on rank 0
    """

    def __init__(
        self,
        iou_type: Literal["bbox"] = "bbox",
        box_format: Literal["xyxy", "xywh", "cxcywh"] = "xyxy",
        iou_thresholds: list[float] | None = None,
        rec_thresholds: list[float] | None = None,
        max_detection_thresholds: list[int] | None = None,
        class_metrics: bool = False,
        average: Literal["macro", "micro"] = "macro",
    ) -> None:
        name = "MeanAveragePrecision"
        if iou_type != "bbox":
            raise ValueError(f"{name}(): argument 'iou_type': expected 'bbox', got {iou_type!r}")
        if box_format not in ("xyxy", "xywh", "cxcywh"):
            raise ValueError(f"{name}(): argument 'box_format': expected 'xyxy', 'xywh' or 'cxcywh', got {box_format!r}")
        if average not in ("macro", "micro"):
            raise ValueError(f"{name}(): argument 'average': expected 'macro' or 'micro', got {average!r}")
        for arg, value in (("iou_thresholds", iou_thresholds), ("rec_thresholds", rec_thresholds)):
            if value is not None and (not isinstance(value, list) or not value):
                raise ValueError(f"{name}(): argument '{arg}': expected None or a non-empty list of floats, got {value!r}")
        if max_detection_thresholds is not None and (
            not isinstance(max_detection_thresholds, list)
            or len(max_detection_thresholds) != 3
            or any(isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1 for m in max_detection_thresholds)
        ):
            raise ValueError(
                f"{name}(): argument 'max_detection_thresholds': expected None or a list of 3 positive ints, "
                f"got {max_detection_thresholds!r}"
            )
        self.iou_type = iou_type
        self.box_format = box_format
        self.iou_thresholds = iou_thresholds or _linspace_like_torch(0.5, 0.95, round((0.95 - 0.5) / 0.05) + 1)
        self.rec_thresholds = rec_thresholds or _linspace_like_torch(0.0, 1.0, round(1.0 / 0.01) + 1)
        self.max_detection_thresholds = sorted(int(m) for m in (max_detection_thresholds or [1, 10, 100]))
        self.class_metrics = bool(class_metrics)
        self.average = average
        self.reset()

    def reset(self) -> None:
        """Forgets every update."""
        self._state: dict[str, list[np.ndarray]] = {
            k: []
            for k in ("det_boxes", "det_scores", "det_labels", "gt_boxes", "gt_labels", "gt_crowds", "gt_area")
        }

    def state_dict(self) -> dict[str, list[np.ndarray]]:
        """The accumulated per-image arrays (picklable, for gathering across ranks)."""
        return {k: list(v) for k, v in self._state.items()}

    def merge_state(self, state: dict[str, list[np.ndarray]]) -> None:
        """Appends another metric's ``state_dict()`` (its images after ours)."""
        if set(state) != set(self._state):
            raise ValueError(f"MeanAveragePrecision.merge_state(): argument 'state': expected keys {sorted(self._state)}, got {sorted(state)}")
        for k, v in state.items():
            self._state[k].extend(v)

    load_state_dict = merge_state

    def update(self, preds: Sequence[dict[str, Any]], target: Sequence[dict[str, Any]]) -> None:
        """Adds a batch: one preds dict and one target dict per image."""
        f = "MeanAveragePrecision.update"
        if not isinstance(preds, Sequence) or not isinstance(target, Sequence):
            raise ValueError(f"{f}(): arguments 'preds' and 'target': expected lists of dicts, got {type(preds).__name__} and {type(target).__name__}")
        if len(preds) != len(target):
            raise ValueError(f"{f}(): argument 'target': expected {len(preds)} images like preds, got {len(target)}")
        batch: dict[str, list[np.ndarray]] = {k: [] for k in self._state}
        for i, (p, t) in enumerate(zip(preds, target)):
            for which, item, keys in (("preds", p, ("boxes", "scores", "labels")), ("target", t, ("boxes", "labels"))):
                if not isinstance(item, dict) or any(k not in item for k in keys):
                    raise ValueError(f"{f}(): argument '{which}': expected dicts with keys {list(keys)}, got {item!r:.80} at index {i}")
            det_boxes = _to_xywh(self._box_array(f, "preds", i, p["boxes"]), self.box_format)
            det_scores = _numpy(p["scores"]).reshape(-1)
            det_labels = _numpy(p["labels"]).reshape(-1)
            gt_boxes = _to_xywh(self._box_array(f, "target", i, t["boxes"]), self.box_format)
            gt_labels = _numpy(t["labels"]).reshape(-1)
            gt_crowds = _numpy(t["iscrowd"]).reshape(-1) if "iscrowd" in t else np.zeros(len(gt_labels), dtype=np.int64)
            gt_area = _numpy(t["area"]).reshape(-1) if "area" in t else np.zeros(len(gt_labels), dtype=np.float32)
            if not (len(det_boxes) == len(det_scores) == len(det_labels)):
                raise ValueError(f"{f}(): argument 'preds': boxes, scores and labels of image {i} differ in length")
            if not (len(gt_boxes) == len(gt_labels) == len(gt_crowds) == len(gt_area)):
                raise ValueError(f"{f}(): argument 'target': boxes, labels, iscrowd and area of image {i} differ in length")
            for name, labels in (("preds", det_labels), ("target", gt_labels)):
                if labels.size and labels.dtype.kind not in "iu":
                    raise ValueError(f"{f}(): argument '{name}': expected integer labels, got {labels.dtype} at index {i}")
            if det_scores.size and det_scores.dtype.kind != "f":
                raise ValueError(f"{f}(): argument 'preds': expected float scores, got {det_scores.dtype} at index {i}")
            for key, value in zip(
                batch, (det_boxes, det_scores, det_labels, gt_boxes, gt_labels, gt_crowds, gt_area)
            ):
                batch[key].append(value)
        for key, values in batch.items():
            self._state[key].extend(values)

    @staticmethod
    def _box_array(function: str, which: str, index: int, boxes: Any) -> np.ndarray:
        array = _numpy(boxes)
        if array.size == 0:
            return np.zeros((0, 4), dtype=array.dtype if array.dtype.kind == "f" else np.float32)
        if array.ndim != 2 or array.shape[1] != 4:
            raise ValueError(f"{function}(): argument '{which}': expected boxes of shape [N, 4], got {array.shape} at index {index}")
        if array.dtype.kind != "f":
            raise ValueError(f"{function}(): argument '{which}': expected float boxes, got {array.dtype} at index {index}")
        return array

    def _datasets(self, average: str) -> tuple[COCO, COCO]:
        s = self._state
        n = len(s["gt_labels"])
        det_labels = [np.zeros_like(x) for x in s["det_labels"]] if average == "micro" else s["det_labels"]
        gt_labels = [np.zeros_like(x) for x in s["gt_labels"]] if average == "micro" else s["gt_labels"]
        classes = [0] if average == "micro" else self._classes()
        image_ids = np.arange(n, dtype=np.int64)

        def cat(arrays: list[np.ndarray], dtype: Any, shape: tuple[int, ...] = ()) -> np.ndarray:
            return np.concatenate([a.astype(dtype) for a in arrays]) if arrays else np.zeros((0, *shape), dtype=dtype)

        gt_counts = np.array([len(x) for x in gt_labels], dtype=np.int64)
        gt_boxes = cat(s["gt_boxes"], np.float64, (4,))
        # A positive area given with the target is used, else the box area.
        given_area = cat(s["gt_area"], np.float64)
        area = np.where(given_area > 0, given_area, gt_boxes[:, 2] * gt_boxes[:, 3])
        gt = COCO._from_rust(
            _core.coco_ground_truth_from_arrays(
                image_ids,
                np.asarray(classes, dtype=np.int64),
                np.arange(1, int(gt_counts.sum()) + 1, dtype=np.int64),
                np.repeat(image_ids, gt_counts),
                cat(gt_labels, np.int64),
                np.ascontiguousarray(gt_boxes),
                np.ascontiguousarray(area),
                cat(s["gt_crowds"], np.int64) != 0,
                "<MeanAveragePrecision target>",
            )
        )
        det_counts = np.array([len(x) for x in det_labels], dtype=np.int64)
        dt = COCO._from_rust(
            _core.coco_results_from_arrays(
                gt._data,
                np.repeat(image_ids, det_counts),
                cat(det_labels, np.int64),
                np.ascontiguousarray(cat(s["det_boxes"], np.float64, (4,))),
                cat(s["det_scores"], np.float64),
                None,
                "<MeanAveragePrecision preds>",
            ),
            results_of=gt,
        )
        return gt, dt

    def _classes(self) -> list[int]:
        labels = self._state["det_labels"] + self._state["gt_labels"]
        return np.unique(np.concatenate(labels)).astype(np.int64).tolist() if labels else []

    def _evaluate(self, average: str) -> COCOeval:
        gt, dt = self._datasets(average)
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.iouThrs = np.array(self.iou_thresholds, dtype=np.float64)
        ev.params.recThrs = np.array(self.rec_thresholds, dtype=np.float64)
        ev.params.maxDets = list(self.max_detection_thresholds)
        with contextlib.redirect_stdout(io.StringIO()):
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return ev

    def compute(self) -> dict[str, Any]:
        """The metrics over every image seen since the last ``reset()``."""
        mdt = self.max_detection_thresholds
        names = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
                 f"mar_{mdt[0]}", f"mar_{mdt[1]}", f"mar_{mdt[2]}", "mar_small", "mar_medium", "mar_large"]  # fmt: skip
        classes = self._classes()
        if not self._state["gt_labels"]:
            stats = [-1.0] * 12
            per_class_map = per_class_mar = np.array([-1.0])
        else:
            ev = self._evaluate(self.average)
            stats = list(ev.stats)
            per_class_map = per_class_mar = np.array([-1.0])
            if self.class_metrics:
                macro = ev if self.average == "macro" else self._evaluate("macro")
                with contextlib.redirect_stdout(io.StringIO()):
                    per_class_map = np.array([macro._summarize(1, category=k) for k in range(len(classes))])
                    per_class_mar = np.array([macro._summarize(0, maxDets=mdt[2], category=k) for k in range(len(classes))])
        out = {name: np.float32(v) for name, v in zip(names, stats)}
        out["map_per_class"] = per_class_map.astype(np.float32)
        out[f"mar_{mdt[2]}_per_class"] = per_class_mar.astype(np.float32)
        out["classes"] = np.asarray(classes, dtype=np.int32)
        return {k: self._output(v) for k, v in out.items()}

    def _output(self, value: Any) -> Any:
        """torchmetrics' form: tensors (NumPy without torch), one-element ones squeezed."""
        array = np.asarray(value)
        if array.size == 1:
            array = array.reshape(())
        try:
            import torch
        except ImportError:
            return array
        return torch.from_numpy(np.array(array))
