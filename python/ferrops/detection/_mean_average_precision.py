"""``MeanAveragePrecision``: torchmetrics' detection metric (boxes and masks),
feeding :mod:`ferrops.coco` from per-image tensors, so its numbers are
torchmetrics' (which runs pycocotools) bit for bit before the final cast to float32."""

from __future__ import annotations

import contextlib
import copy
import io
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from .. import _core
from .._dispatch import check_bool, check_float, host_array
from .._errors import value_error
from ..coco import COCO, COCOeval
from ._map_masks import IouType, check_iou_type, coco_datasets, encode_masks, mask_areas
from ._map_sync import gathered_state

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1

BoxFormat = Literal["xyxy", "xywh", "cxcywh"]
Average = Literal["macro", "micro"]
Backend = Literal["pycocotools", "faster_coco_eval"]
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
    (same arguments in the same order, same defaults) and with its numbers.

    Args:
        box_format: "xyxy", "xywh" or "cxcywh".
        iou_type: "bbox", "segm" (instance masks) or a tuple (or list) of both; with a
            tuple every output but ``classes`` is prefixed ``bbox_`` / ``segm_``.
        iou_thresholds, rec_thresholds: lists of floats (default COCO's, as
            torchmetrics builds them).
        max_detection_thresholds: three ints (default ``[1, 10, 100]``).
        class_metrics: also ``map_per_class`` and ``mar_{max}_per_class``.
        extended_summary: also ``ious`` (a dict ``(image_index, class_id) ->
            Tensor[D, G]`` float32 IoU matrix, ``[]`` where the image has no
            detection or no target of the class), ``precision`` (float64
            ``Tensor[T, R, K, A, M]``), ``recall`` (``Tensor[T, K, A, M]``) and
            ``scores`` (``Tensor[T, R, K, A, M]``): pycocotools' ``ious`` and
            ``eval`` arrays (T IoU thresholds, R recall thresholds, K classes,
            A = 4 areas, M max detections), prefixed as the rest.
        average: "macro" (per class, then averaged) or "micro" (classes pooled).
        backend: "pycocotools" or "faster_coco_eval", accepted for torchmetrics'
            sake: both give ferrops' evaluation, which is pycocotools' bit for bit.
        sync_on_compute: inside an initialised torch.distributed process group,
            ``compute()`` gathers every rank's images first (as torchmetrics).
        process_group: the group to gather over (default: the world).
        dist_sync_fn: replaces ``torch.distributed.all_gather_object`` as
            ``dist_sync_fn(state, group) -> list of every rank's state``.

    The last three are keyword-only, as torchmetrics' ``Metric`` keyword
    arguments (its others, such as ``compute_on_cpu``, are not taken).

    ``update(preds, target)`` takes lists (one entry per image) of dicts: preds
    ``boxes`` (Tensor[N, 4], for "bbox"), ``masks`` (bool Tensor[N, H, W], for
    "segm"), ``scores`` (Tensor[N]), ``labels`` (Tensor[N]); target ``boxes``
    (Tensor[M, 4]) and/or ``masks`` (bool Tensor[M, H, W]), ``labels``
    (Tensor[M]), optional ``iscrowd`` and ``area`` (Tensor[M]). Masks are kept
    run-length encoded, and the segm evaluation compares them by RLE IoU, as
    pycocotools does. As there, with ``iou_type="segm"`` an image without masks
    is left out (its detections count nowhere), and a target's area is its
    mask's unless a positive ``area`` is given (with a tuple, for both types).
    ``compute()`` returns ``map, map_50, map_75, map_small, map_medium,
    map_large, mar_1, mar_10, mar_100, mar_small, mar_medium, mar_large,
    map_per_class, mar_100_per_class, classes`` as float32 tensors (``classes``
    int32; NumPy arrays when torch is not installed), one-element ones squeezed
    as torchmetrics does. Inputs may be tensors on any device or NumPy arrays;
    the state lives on the host, so ``to(device)`` changes nothing. Calling the
    metric (``forward``) adds the batch and returns the metrics of that batch
    alone, as torchmetrics' ``forward``.

    Distributed evaluation: with a torch.distributed process group initialised,
    ``compute()`` (on every rank) gathers the ranks' images with
    ``all_gather_object`` and evaluates them all; the ranks' own states are left
    as they were. Images are taken in torchmetrics' order: the first image of
    each rank in rank order, then the second ones, and so on (the dataset's order
    under a ``DistributedSampler``). ``sync_on_compute=False`` evaluates the
    local images only; ``state_dict()`` / ``merge_state()`` merge states by hand.
    """

    def __init__(
        self,
        box_format: BoxFormat = "xyxy",
        iou_type: IouType | tuple[IouType, ...] = "bbox",
        iou_thresholds: list[float] | None = None,
        rec_thresholds: list[float] | None = None,
        max_detection_thresholds: list[int] | None = None,
        class_metrics: bool = False,
        extended_summary: bool = False,
        average: Average = "macro",
        backend: Backend = "pycocotools",
        *,
        sync_on_compute: bool = True,
        process_group: Any = None,
        dist_sync_fn: Callable[[Any, Any], list[Any]] | None = None,
    ) -> None:
        name = "MeanAveragePrecision"
        if box_format not in ("xyxy", "xywh", "cxcywh"):
            raise value_error(name, "box_format", "'xyxy', 'xywh' or 'cxcywh'", repr(box_format))
        self.iou_type = check_iou_type(name, iou_type)
        if average not in ("macro", "micro"):
            raise value_error(name, "average", "'macro' or 'micro'", repr(average))
        if backend not in ("pycocotools", "faster_coco_eval"):
            raise value_error(name, "backend", "'pycocotools' or 'faster_coco_eval'", repr(backend))
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
        self.box_format = box_format
        self.iou_thresholds = iou_thresholds or _linspace_like_torch(0.5, 0.95, round((0.95 - 0.5) / 0.05) + 1)
        self.rec_thresholds = rec_thresholds or _linspace_like_torch(0.0, 1.0, round(1.0 / 0.01) + 1)
        self.max_detection_thresholds = sorted(int(m) for m in (max_detection_thresholds or [1, 10, 100]))
        self.class_metrics = check_bool(name, "class_metrics", class_metrics)
        self.extended_summary = check_bool(name, "extended_summary", extended_summary)
        self.average = average
        self.backend = backend
        self.sync_on_compute = check_bool(name, "sync_on_compute", sync_on_compute)
        self.process_group = process_group
        self.dist_sync_fn = dist_sync_fn
        self.reset()

    def reset(self) -> None:
        """Forgets every update."""
        keys = ["det_boxes", "det_masks", "det_scores", "det_labels"]
        keys += ["gt_boxes", "gt_masks", "gt_labels", "gt_crowds", "gt_area"]
        self._state: dict[str, list[Any]] = {k: [] for k in keys}

    def state_dict(self) -> dict[str, list[Any]]:
        """The accumulated per-image arrays (picklable, for gathering across ranks)."""
        return {k: list(v) for k, v in self._state.items()}

    def merge_state(self, state: dict[str, list[Any]] | MeanAveragePrecision) -> None:
        """Appends another metric's images after ours: the metric or its ``state_dict()``
        (torchmetrics' ``merge_state`` refuses this metric, whose ``full_state_update``
        is set)."""
        if isinstance(state, MeanAveragePrecision):
            state = state.state_dict()
        if not isinstance(state, dict) or set(state) != set(self._state):
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            expected = f"a MeanAveragePrecision or a dict with keys {sorted(self._state)}"
            raise value_error("MeanAveragePrecision.merge_state", "state", expected, got)
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
        batch: dict[str, list[Any]] = {k: [] for k in self._state}
        boxes, masks = "bbox" in self.iou_type, "segm" in self.iou_type
        needed = (["boxes"] if boxes else []) + (["masks"] if masks else [])
        for i, (p, t) in enumerate(zip(preds, target)):
            for which, item, keys in (("preds", p, [*needed, "scores", "labels"]), ("target", t, [*needed, "labels"])):
                if not isinstance(item, dict) or any(k not in item for k in keys):
                    raise value_error(f, which, f"dicts with keys {list(keys)}", f"{item!r:.80} at index {i}")
            det_scores = host_array(f, "preds", p["scores"]).reshape(-1)
            det_labels = host_array(f, "preds", p["labels"]).reshape(-1)
            gt_labels = host_array(f, "target", t["labels"]).reshape(-1)
            no_boxes = np.zeros((0, 4), dtype=np.float32)
            det_boxes = _to_xywh(self._box_array(f, "preds", i, p["boxes"]), self.box_format) if boxes else no_boxes
            gt_boxes = _to_xywh(self._box_array(f, "target", i, t["boxes"]), self.box_format) if boxes else no_boxes
            det_masks = encode_masks(f, "preds", i, p["masks"], len(det_labels)) if masks else ()
            gt_masks = encode_masks(f, "target", i, t["masks"], len(gt_labels)) if masks else ()
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
            if not (len(det_scores) == len(det_labels) and (not boxes or len(det_boxes) == len(det_labels))):
                raise ValueError(f"{f}(): argument 'preds': boxes, scores and labels of image {i} differ in length")
            if not (
                len(gt_labels) == len(gt_crowds) == len(gt_area) and (not boxes or len(gt_boxes) == len(gt_labels))
            ):
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
            image = {
                "det_boxes": det_boxes,
                "det_masks": det_masks,
                "det_scores": det_scores,
                "det_labels": det_labels,
                "gt_boxes": gt_boxes,
                "gt_masks": gt_masks,
                "gt_labels": gt_labels,
                "gt_crowds": gt_crowds,
                "gt_area": gt_area,
            }
            for key, value in image.items():
                batch[key].append(value)
        for key, values in batch.items():
            self._state[key].extend(values)

    def forward(self, preds: Sequence[ImageDict], target: Sequence[ImageDict]) -> dict[str, Any]:
        """Adds a batch, as ``update``, and returns the metrics of that batch alone
        (never synchronised across ranks, as torchmetrics' ``forward``)."""
        batch = copy.copy(self)
        batch.sync_on_compute = False
        batch.reset()  # a fresh state of its own; ours is untouched until the batch is valid
        batch.update(preds, target)
        self.merge_state(batch.state_dict())
        return batch.compute()

    __call__ = forward

    def to(self, *args: Any, **kwargs: Any) -> MeanAveragePrecision:
        """Returns the metric itself: its state is host arrays whatever the device
        (torchmetrics' ``metric.to(device)`` lines keep working)."""
        return self

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

    def _datasets(self, s: dict[str, list[Any]], average: Average) -> tuple[COCO, COCO]:
        """The box evaluation's datasets, built in Rust from the state's arrays."""
        n = len(s["gt_labels"])
        det_labels = [np.zeros_like(x) for x in s["det_labels"]] if average == "micro" else s["det_labels"]
        gt_labels = [np.zeros_like(x) for x in s["gt_labels"]] if average == "micro" else s["gt_labels"]
        classes = [0] if average == "micro" else _classes(s)
        image_ids = np.arange(n, dtype=np.int64)

        def cat(arrays: list[np.ndarray], dtype: type[np.generic], shape: tuple[int, ...] = ()) -> np.ndarray:
            return np.concatenate([a.astype(dtype) for a in arrays]) if arrays else np.zeros((0, *shape), dtype=dtype)

        gt_counts = np.array([len(x) for x in gt_labels], dtype=np.int64)
        gt_boxes = cat(s["gt_boxes"], np.float64, (4,))
        # A positive area given with the target is used, else the box area (the
        # mask area when masks are evaluated too, as torchmetrics does).
        given_area = cat(s["gt_area"], np.float64)
        fallback = cat(mask_areas(s["gt_masks"]), np.float64) if "segm" in self.iou_type else None
        area = np.where(given_area > 0, given_area, gt_boxes[:, 2] * gt_boxes[:, 3] if fallback is None else fallback)
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

    def _evaluate(self, s: dict[str, list[Any]], average: Average, iou_type: IouType) -> COCOeval | None:
        """The evaluation of one type, or None where torchmetrics reports -1: no
        images on a side (for "segm" alone: no image with masks)."""
        with contextlib.redirect_stdout(io.StringIO()):
            if iou_type == "bbox":
                if not s["gt_labels"]:
                    return None
                gt, dt = self._datasets(s, average)
            else:
                gt, dt = coco_datasets(s, self.iou_type, average)
                if not gt.dataset["images"] or not dt.dataset["images"]:
                    return None
            ev = COCOeval(gt, dt, iouType=iou_type)
            ev.params.iouThrs = np.array(self.iou_thresholds, dtype=np.float64)
            ev.params.recThrs = np.array(self.rec_thresholds, dtype=np.float64)
            ev.params.maxDets = list(self.max_detection_thresholds)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return ev

    def _metrics(self, s: dict[str, list[Any]], iou_type: IouType, classes: list[int]) -> dict[str, Any]:
        """One type's outputs, unprefixed."""
        mdt = self.max_detection_thresholds
        names = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
                 f"mar_{mdt[0]}", f"mar_{mdt[1]}", f"mar_{mdt[2]}", "mar_small", "mar_medium", "mar_large"]  # fmt: skip
        ev = self._evaluate(s, self.average, iou_type)
        if ev is None:  # torchmetrics gives no per-class entries then
            return {name: np.float32(-1.0) for name in names}
        out: dict[str, Any] = {name: np.float32(v) for name, v in zip(names, ev.stats)}
        if self.extended_summary:
            # As torchmetrics: pycocotools' IoU matrices (in float32; [] where a side
            # is empty) and its accumulated arrays (float64), of the main evaluation.
            out["ious"] = {
                key: ious if isinstance(ious, list) else ious.astype(np.float32) for key, ious in ev.ious.items()
            }
            out.update({key: ev.eval[key] for key in ("precision", "recall", "scores")})
        per_class_map = per_class_mar = np.array([-1.0])
        if self.class_metrics:
            macro = ev if self.average == "macro" else self._evaluate(s, "macro", iou_type)
            assert macro is not None  # the same images as ev's
            with contextlib.redirect_stdout(io.StringIO()):
                per_class_map = np.array([macro._summarize(1, category=k) for k in range(len(classes))])
                per_class_mar = np.array([macro._summarize(0, maxDets=mdt[2], category=k) for k in range(len(classes))])
        out["map_per_class"] = per_class_map.astype(np.float32)
        out[f"mar_{mdt[2]}_per_class"] = per_class_mar.astype(np.float32)
        return out

    def compute(self) -> dict[str, Any]:
        """The metrics over every image seen since the last ``reset()`` (on every
        rank's images when synchronised, see the class docstring)."""
        s = gathered_state(self._state, self.sync_on_compute, self.process_group, self.dist_sync_fn)
        classes = _classes(s)
        out: dict[str, Any] = {}
        for iou_type in self.iou_type:
            prefix = "" if len(self.iou_type) == 1 else f"{iou_type}_"
            out.update({prefix + k: v for k, v in self._metrics(s, iou_type, classes).items()})
        out["classes"] = np.asarray(classes, dtype=np.int32)
        return {k: self._output(v) for k, v in out.items()}

    def _output(self, value: object) -> Any:
        """torchmetrics' form: tensors (NumPy without torch), one-element ones squeezed;
        within the ``ious`` dict too (its ``[]`` stay lists)."""
        if isinstance(value, dict):
            return {key: v if isinstance(v, list) else self._output(v) for key, v in value.items()}
        array = np.asarray(value)
        if array.size == 1:
            array = array.reshape(())
        try:
            import torch
        except ImportError:
            return array
        return torch.from_numpy(np.array(array))


def _classes(s: dict[str, list[Any]]) -> list[int]:
    labels = s["det_labels"] + s["gt_labels"]
    return np.unique(np.concatenate(labels)).astype(np.int64).tolist() if labels else []
