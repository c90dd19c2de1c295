"""``MeanAveragePrecision``: torchmetrics' detection metric (``iou_type="bbox"``),
feeding :mod:`ferrops.coco` from per-image tensors, so its numbers are
torchmetrics' (which runs pycocotools) bit for bit before the final cast to float32."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt

from .. import _core
from .._dispatch import check_float, host_array
from .._errors import value_error
from ..coco import COCO, COCOeval

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1

if TYPE_CHECKING:
    import torch

BoxFormat = Literal["xyxy", "xywh", "cxcywh"]
Average = Literal["macro", "micro"]
#: One image's preds or target: names to tensors or arrays.
ImageDict = Mapping[str, npt.ArrayLike]


def _linspace_like_torch(start: float, end: float, steps: int) -> list[float]:
    """torchmetrics' default thresholds: ``torch.linspace`` in float32, as Python floats."""
    try:
        import torch
    except ImportError:
        return np.linspace(start, end, steps).astype(np.float32).astype(np.float64).tolist()
    return torch.linspace(start, end, steps).tolist()


# Not ferrops.boxes.box_convert, on purpose: torchmetrics converts with torchvision
# in the boxes' own dtype (float16 boxes in float16 arithmetic), where box_convert
# computes in float32 by ferrops' dtype rule; and box_convert refuses non-finite
# boxes at update(), where here the dataset built at compute() names the bad record.
# For finite float32/float64 boxes the two agree bit for bit.
def _to_xywh(boxes: np.ndarray, box_format: BoxFormat) -> np.ndarray:
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
        box_format: BoxFormat = "xyxy",
        iou_thresholds: list[float] | None = None,
        rec_thresholds: list[float] | None = None,
        max_detection_thresholds: list[int] | None = None,
        class_metrics: bool = False,
        average: Average = "macro",
    ) -> None:
        name = "MeanAveragePrecision"
        if iou_type != "bbox":
            raise value_error(name, "iou_type", "'bbox'", repr(iou_type))
        if box_format not in ("xyxy", "xywh", "cxcywh"):
            raise value_error(name, "box_format", "'xyxy', 'xywh' or 'cxcywh'", repr(box_format))
        if average not in ("macro", "micro"):
            raise value_error(name, "average", "'macro' or 'micro'", repr(average))
        for arg, value in (("iou_thresholds", iou_thresholds), ("rec_thresholds", rec_thresholds)):
            if value is not None and (not isinstance(value, list) or not value):
                raise value_error(name, arg, "None or a non-empty list of floats", repr(value))
            for threshold in value or ():
                # Checked here, not at compute(), where the error would come long after the
                # mistake. Any finite number, as torchmetrics (pycocotools caps IoU ones below 1).
                if not math.isfinite(check_float(name, arg, threshold)):
                    raise value_error(name, arg, "finite thresholds", repr(value))
        if max_detection_thresholds is not None and (
            not isinstance(max_detection_thresholds, list)
            or len(max_detection_thresholds) != 3
            or any(
                isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 1 <= m <= _INT32_MAX
                for m in max_detection_thresholds
            )
        ):
            # torchmetrics fails beyond int32 (it reports the thresholds as int32).
            expected = f"None or a list of 3 ints in [1, {_INT32_MAX}]"
            raise value_error(name, "max_detection_thresholds", expected, repr(max_detection_thresholds))
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
            k: [] for k in ("det_boxes", "det_scores", "det_labels", "gt_boxes", "gt_labels", "gt_crowds", "gt_area")
        }

    def state_dict(self) -> dict[str, list[np.ndarray]]:
        """The accumulated per-image arrays (picklable, for gathering across ranks)."""
        return {k: list(v) for k, v in self._state.items()}

    def merge_state(self, state: dict[str, list[np.ndarray]]) -> None:
        """Appends another metric's ``state_dict()`` (its images after ours)."""
        if set(state) != set(self._state):
            raise value_error("MeanAveragePrecision.merge_state", "state", f"keys {sorted(self._state)}", sorted(state))
        for k, v in state.items():
            self._state[k].extend(v)

    load_state_dict = merge_state

    def update(self, preds: Sequence[ImageDict], target: Sequence[ImageDict]) -> None:
        """Adds a batch: one preds dict and one target dict per image."""
        f = "MeanAveragePrecision.update"
        if not isinstance(preds, Sequence) or not isinstance(target, Sequence):
            raise ValueError(
                f"{f}(): arguments 'preds' and 'target': expected lists of dicts, got {type(preds).__name__} and {type(target).__name__}"
            )
        if len(preds) != len(target):
            raise value_error(f, "target", f"{len(preds)} images like preds", len(target))
        batch: dict[str, list[np.ndarray]] = {k: [] for k in self._state}
        for i, (p, t) in enumerate(zip(preds, target)):
            for which, item, keys in (("preds", p, ("boxes", "scores", "labels")), ("target", t, ("boxes", "labels"))):
                if not isinstance(item, dict) or any(k not in item for k in keys):
                    raise value_error(f, which, f"dicts with keys {list(keys)}", f"{item!r:.80} at index {i}")
            det_boxes = _to_xywh(self._box_array(f, "preds", i, p["boxes"]), self.box_format)
            det_scores = host_array(f, "preds", p["scores"]).reshape(-1)
            det_labels = host_array(f, "preds", p["labels"]).reshape(-1)
            gt_boxes = _to_xywh(self._box_array(f, "target", i, t["boxes"]), self.box_format)
            gt_labels = host_array(f, "target", t["labels"]).reshape(-1)
            gt_crowds = (
                host_array(f, "target", t["iscrowd"]).reshape(-1)
                if "iscrowd" in t
                else np.zeros(len(gt_labels), dtype=np.int64)
            )
            gt_area = (
                host_array(f, "target", t["area"]).reshape(-1)
                if "area" in t
                else np.zeros(len(gt_labels), dtype=np.float32)
            )
            if not (len(det_boxes) == len(det_scores) == len(det_labels)):
                raise ValueError(f"{f}(): argument 'preds': boxes, scores and labels of image {i} differ in length")
            if not (len(gt_boxes) == len(gt_labels) == len(gt_crowds) == len(gt_area)):
                raise ValueError(
                    f"{f}(): argument 'target': boxes, labels, iscrowd and area of image {i} differ in length"
                )
            for name, labels in (("preds", det_labels), ("target", gt_labels)):
                if labels.size and labels.dtype.kind not in "iu":
                    raise value_error(f, name, "integer labels", f"{labels.dtype} at index {i}")
                # torchmetrics reports classes as int32 and fails on larger labels.
                if labels.size and not (_INT32_MIN <= int(labels.min()) and int(labels.max()) <= _INT32_MAX):
                    expected = f"labels in [{_INT32_MIN}, {_INT32_MAX}] (int32, as torchmetrics reports classes)"
                    raise value_error(f, name, expected, f"{labels.min()}..{labels.max()} at index {i}")
            if det_scores.size and det_scores.dtype.kind != "f":
                raise value_error(f, "preds", "float scores", f"{det_scores.dtype} at index {i}")
            for key, value in zip(batch, (det_boxes, det_scores, det_labels, gt_boxes, gt_labels, gt_crowds, gt_area)):
                batch[key].append(value)
        for key, values in batch.items():
            self._state[key].extend(values)

    @staticmethod
    def _box_array(function: str, which: str, index: int, boxes: npt.ArrayLike) -> np.ndarray:
        array = host_array(function, which, boxes)
        if array.size == 0:
            return np.zeros((0, 4), dtype=array.dtype if array.dtype.kind == "f" else np.float32)
        if array.ndim != 2 or array.shape[1] != 4:
            raise value_error(function, which, "boxes of shape [N, 4]", f"{array.shape} at index {index}")
        if array.dtype.kind != "f":
            raise value_error(function, which, "float boxes", f"{array.dtype} at index {index}")
        return array

    def _datasets(self, average: Average) -> tuple[COCO, COCO]:
        s = self._state
        n = len(s["gt_labels"])
        det_labels = [np.zeros_like(x) for x in s["det_labels"]] if average == "micro" else s["det_labels"]
        gt_labels = [np.zeros_like(x) for x in s["gt_labels"]] if average == "micro" else s["gt_labels"]
        classes = [0] if average == "micro" else self._classes()
        image_ids = np.arange(n, dtype=np.int64)

        def cat(arrays: list[np.ndarray], dtype: type[np.generic], shape: tuple[int, ...] = ()) -> np.ndarray:
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

    def _evaluate(self, average: Average) -> COCOeval:
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

    def compute(self) -> dict[str, torch.Tensor | np.ndarray]:
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
                    per_class_mar = np.array(
                        [macro._summarize(0, maxDets=mdt[2], category=k) for k in range(len(classes))]
                    )
        out: dict[str, np.generic | np.ndarray] = {name: np.float32(v) for name, v in zip(names, stats)}
        out["map_per_class"] = per_class_map.astype(np.float32)
        out[f"mar_{mdt[2]}_per_class"] = per_class_mar.astype(np.float32)
        out["classes"] = np.asarray(classes, dtype=np.int32)
        return {k: self._output(v) for k, v in out.items()}

    def _output(self, value: object) -> torch.Tensor | np.ndarray:
        """torchmetrics' form: tensors (NumPy without torch), one-element ones squeezed."""
        array = np.asarray(value)
        if array.size == 1:
            array = array.reshape(())
        try:
            import torch
        except ImportError:
            return array
        return torch.from_numpy(np.array(array))
