"""Semantic-segmentation metrics (SPEC SEG-*).

* :func:`confusion_matrix` counts ``(target, prediction)`` label pairs over any
  number of pixels, reading the labels in their own integer dtype (uint8 masks are
  not widened to int64 first). NumPy arrays and CPU tensors run in Rust; CUDA
  tensors stay on their device (``torch.bincount``).
* :func:`segmentation_metrics` turns a matrix into pixel accuracy, mean pixel
  accuracy, per-class IoU and Dice, mIoU, frequency-weighted IoU and mean Dice.
* :class:`SegmentationMetric` accumulates the matrix over a validation set
  (``update``/``compute``/``reset``/``merge``, and ``all_reduce`` across
  ``torch.distributed`` ranks).

Absent classes. A class that appears in neither the target nor the prediction
has IoU and Dice ``0 / 0``: it is NaN in the per-class arrays and left out of
``miou`` and ``mean_dice``; a class absent from the target has NaN pixel accuracy
and is left out of ``mean_pixel_accuracy``. A class predicted but absent from the
target keeps IoU 0 (a false positive is an error). Peers differ:

* torchmetrics (``MulticlassJaccardIndex``, ``average="macro"``) also leaves
  absent classes out of the mean, but its per-class values (``average=None``)
  report them as ``zero_division`` (0.0 by default), not NaN, and with an
  ``ignore_index`` inside ``[0, C)`` it drops that class from the average
  altogether. Here the matrix alone decides: the ignored class's row is empty,
  so its IoU is 0 when it was predicted on counted pixels and NaN otherwise.
* mmseg (``IoUMetric``) uses the same NaN convention and ``nanmean``, but bins
  labels with ``torch.histc``, which silently drops out-of-range labels; here a
  label outside ``[0, C)`` (other than ``ignore_index`` in the target) raises
  ``ValueError`` naming the value and its position.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from . import _core
from . import _dispatch as d
from ._dispatch import Array, ArrayLike, Backend
from ._errors import describe, type_error, value_error

# Kept for compatibility: receptive_field is layer geometry, not a segmentation
# metric, and lives in ferrops.layers now.
from .layers import LayerReceptiveField, receptive_field  # noqa: F401

if TYPE_CHECKING:
    import torch

__all__ = [
    "confusion_matrix",
    "segmentation_metrics",
    "SegmentationMetric",
    "all_reduce_confusion_matrix",
]


def _check_num_classes(function: str, num_classes: object) -> int:
    return d.check_int(function, "num_classes", num_classes, 1, "a class count >= 1")


def _check_ignore_index(function: str, ignore_index: object) -> int | None:
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise type_error(function, "ignore_index", "an int or None", type(ignore_index).__name__)
    return d.check_int(function, "ignore_index", ignore_index, d.INT64_MIN, "an int")


def _label_array(function: str, argument: str, x: object) -> np.ndarray:
    """``x`` as a flat, C-contiguous NumPy integer array in its own dtype (no copy
    when it already is one); bool is viewed as uint8."""
    if d.is_tensor(x):
        if x.dtype.is_floating_point or x.is_complex():
            raise type_error(function, argument, "integer class labels", describe(x))
    a = d.host_array(function, argument, x)
    if a.dtype.kind == "b":
        a = a.view(np.uint8)
    if a.dtype.kind not in "iu":
        raise type_error(function, argument, "integer class labels", describe(a))
    # ravel() is a view of a C-contiguous array; only strided (or byte-swapped) inputs are copied.
    return d.contiguous(function, argument, a, a.dtype.newbyteorder("=")).ravel()


def _label_tensor(function: str, argument: str, x: object, device: torch.device | None) -> torch.Tensor:
    """``x`` as an integer tensor in its own dtype on ``device`` (default: CPU)."""
    torch = d.torch_module()
    if d.is_tensor(x):
        if x.dtype.is_floating_point or x.is_complex():
            raise type_error(function, argument, "integer class labels", describe(x))
        t = x
    else:
        a = d.host_array(function, argument, x)
        if a.dtype.kind not in "iub":
            raise type_error(function, argument, "integer class labels", describe(a))
        t = torch.as_tensor(a if a.dtype.isnative else d.contiguous(function, argument, a, a.dtype.newbyteorder("=")))
    return t if device is None else t.to(device)


def confusion_matrix(
    target: ArrayLike, pred: ArrayLike, num_classes: int, ignore_index: int | None = None, *, backend: Backend = "auto"
) -> Array:
    """Confusion matrix of class labels (SEG-CM).

    ``n[i, j]`` counts the pixels whose target is ``i`` and prediction ``j``.
    Pixels whose target equals ``ignore_index`` are skipped, whatever their
    prediction. Every other target and prediction must lie in ``[0, C)``.

    Args:
        target (Tensor[*] | ndarray[*]): ground-truth labels, any integer dtype
            (uint8/16/32/64, int8/16/32/64; bool as 0/1), any shape.
        pred (Tensor[*] | ndarray[*]): predicted labels, same shape as ``target``,
            any integer dtype (it may differ from ``target``'s).
        num_classes (int): ``C >= 1``.
        ignore_index (int, optional): target value to skip (e.g. 255, -1, or a
            class in ``[0, C)`` whose row then stays empty).
        backend: "auto", "rust" or "torch".

    Returns:
        Tensor[C, C] | ndarray[C, C]: int64 counts, of the input's kind and device
        (CUDA tensors are counted on the device).

    Raises:
        TypeError: float or complex labels.
        ValueError: shapes differ, ``num_classes < 1``, or a label outside
            ``[0, C)``, naming the first offending value and its flat index.
    """
    f = "confusion_matrix"
    c = _check_num_classes(f, num_classes)
    ignore = _check_ignore_index(f, ignore_index)
    target_shape, pred_shape = d.shape_of(f, "target", target), d.shape_of(f, "pred", pred)
    if target_shape != pred_shape:
        raise value_error(f, "pred", f"the shape of target {list(target_shape)}", list(pred_shape))
    if d.select_backend(f, backend, target, pred) == "torch":
        device = d.device_of(target, pred)
        tt = _label_tensor(f, "target", target, device)
        tp = _label_tensor(f, "pred", pred, device)
        cm = d.torch_implementation("segmentation").confusion_matrix(tt, tp, c, ignore)
        return d.like(cm, target if d.is_tensor(target) else pred)
    t = _label_array(f, "target", target)
    p = _label_array(f, "pred", pred)
    cm = _core.confusion_matrix(t, p, c, ignore)
    return d.like(cm, target if d.is_tensor(target) else pred)


def _nan_mean(values: np.ndarray) -> float:
    """Mean over the non-NaN entries; NaN (and no warning) when there are none."""
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else math.nan


def _check_matrix(function: str, cm: ArrayLike) -> None:
    shape = d.shape_of(function, "cm", cm)
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] < 1:
        raise value_error(function, "cm", "a square [C, C] matrix with C >= 1", f"shape {list(shape)}")


def segmentation_metrics(cm: ArrayLike) -> dict[str, float | Array]:
    """Segmentation metrics of a confusion matrix (SEG-PA, SEG-MPA, SEG-IOU,
    SEG-FWIOU, SEG-DICE), computed in float64.

    Args:
        cm (Tensor[C, C] | ndarray[C, C]): counts, rows = target, columns =
            prediction (as from :func:`confusion_matrix`); non-negative, finite.

    Returns:
        dict with

        * ``pixel_accuracy``: ``sum_i n_ii / sum_ij n_ij``;
        * ``mean_pixel_accuracy``: mean over classes present in the target of
          ``n_ii / sum_j n_ij``;
        * ``iou`` (ndarray[C] | Tensor[C]): ``n_ii / (sum_j n_ij + sum_j n_ji - n_ii)``,
          NaN for a class in neither target nor prediction;
        * ``miou``: mean of the non-NaN ``iou``;
        * ``fwiou``: ``sum_i (sum_j n_ij / N) IoU_i`` over classes in the target;
        * ``dice`` (ndarray[C] | Tensor[C]): ``2 n_ii / (sum_j n_ij + sum_j n_ji)``, NaN as ``iou``;
        * ``mean_dice``: mean of the non-NaN ``dice``.

        Scalars are Python floats for a NumPy matrix, 0-d float64 tensors on the
        matrix's device for a tensor. An empty matrix (no counted pixel) gives NaN
        everywhere. See the module docstring for how this differs from
        torchmetrics and mmseg.
    """
    f = "segmentation_metrics"
    _check_matrix(f, cm)
    if d.is_tensor(cm):
        return d.torch_implementation("segmentation").segmentation_metrics(cm)
    m = d.host_array(f, "cm", cm)
    if m.dtype.kind not in "iufb":
        raise type_error(f, "cm", "real counts", describe(m))
    m = d.contiguous(f, "cm", m, np.dtype(np.float64))
    if not np.isfinite(m).all() or (m < 0).any():
        raise ValueError(f"{f}(): argument 'cm': expected finite, non-negative counts")
    diag = np.diag(m)
    support = m.sum(axis=1)  # pixels of each class in the target
    predicted = m.sum(axis=0)
    total = support.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        accuracy = diag / support
        iou = diag / (support + predicted - diag)
        dice = 2.0 * diag / (support + predicted)
        pixel_accuracy = diag.sum() / total if total > 0 else math.nan
    present = support > 0
    fwiou = float(np.sum(support[present] / total * iou[present])) if total > 0 else math.nan
    return {
        "pixel_accuracy": float(pixel_accuracy),
        "mean_pixel_accuracy": _nan_mean(accuracy),
        "iou": iou,
        "miou": _nan_mean(iou),
        "fwiou": fwiou,
        "dice": dice,
        "mean_dice": _nan_mean(dice),
    }


def all_reduce_confusion_matrix(cm: ArrayLike, group: torch.distributed.ProcessGroup | None = None) -> Array:
    """Sums a confusion matrix over the ranks of ``torch.distributed``.

    Args:
        cm (Tensor[C, C] | ndarray[C, C]): this rank's int64 counts.
        group: the process group (default: the world).

    Returns:
        Tensor[C, C] | ndarray[C, C]: the sum over ranks, of ``cm``'s kind (a
        tensor is reduced in place and returned). With the NCCL backend a NumPy
        or CPU matrix travels through the current CUDA device.
    """
    f = "all_reduce_confusion_matrix"
    torch = d.require_torch(f)
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(f"{f}(): torch.distributed is not initialised (call init_process_group first)")
    _check_matrix(f, cm)
    nccl = dist.get_backend(group) == "nccl"
    if d.is_tensor(cm):
        t = cm
        if nccl and t.device.type != "cuda":
            t = t.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
        if t is not cm:
            cm.copy_(t)
        return cm
    t = torch.from_numpy(np.ascontiguousarray(cm, dtype=np.int64)).clone()
    if nccl:
        t = t.to(torch.device("cuda", torch.cuda.current_device()))
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=group)
    return t.cpu().numpy()


class SegmentationMetric:
    """Accumulates a confusion matrix over batches and computes the metrics.

    The matrix takes the kind of the first batch after a reset: a NumPy array
    for NumPy inputs, a tensor on the batch's device for tensors (CUDA batches
    are counted without leaving the GPU); later batches are added to it.

    Args:
        num_classes (int): ``C >= 1``.
        ignore_index (int, optional): target value to skip (see :func:`confusion_matrix`).

    Example::

        metric = SegmentationMetric(19, ignore_index=255)
        for image, target in loader:
            metric.update(model(image).argmax(1), target)
        metric.all_reduce()          # under torch.distributed
        print(metric.compute()["miou"])
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        self.num_classes = _check_num_classes("SegmentationMetric", num_classes)
        self.ignore_index = _check_ignore_index("SegmentationMetric", ignore_index)
        self._matrix: Array | None = None

    def __repr__(self) -> str:
        return f"SegmentationMetric(num_classes={self.num_classes}, ignore_index={self.ignore_index})"

    @property
    def confusion_matrix(self) -> Array:
        """Tensor[C, C] | ndarray[C, C]: the int64 counts so far (zeros before any update)."""
        if self._matrix is None:
            return np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        return self._matrix

    def _add(self, cm: Array) -> None:
        if self._matrix is None:
            self._matrix = cm.clone() if d.is_tensor(cm) else np.array(cm, dtype=np.int64)
        elif d.is_tensor(self._matrix):
            torch = d.torch_module()
            self._matrix += torch.as_tensor(d.like(cm, self._matrix), device=self._matrix.device)
        else:
            self._matrix += d.like(cm, np.empty(0)) if d.is_tensor(cm) else cm

    def update(self, pred: ArrayLike, target: ArrayLike) -> None:
        """Adds a batch.

        Args:
            pred (Tensor[*] | ndarray[*]): predicted labels of ``target``'s shape;
                or scores/logits ``[N, C, *]`` (one more dimension than
                ``target``, float), reduced by ``argmax`` over dimension 1.
            target (Tensor[*] | ndarray[*]): ground-truth labels.
        """
        pred = self._labels_of(pred, target)
        self._add(confusion_matrix(target, pred, self.num_classes, self.ignore_index))

    def _labels_of(self, pred: ArrayLike, target: ArrayLike) -> ArrayLike:
        """Class labels of ``pred``: scores ``[N, C, *]`` of a ``[N, *]`` target are
        reduced by argmax; anything else is passed on (and checked) as labels."""
        if d.is_tensor(pred):
            floating = pred.dtype.is_floating_point
        else:
            pred = d.host_array("SegmentationMetric.update", "pred", pred)
            floating = pred.dtype.kind == "f"
        ps, ts = (
            d.shape_of("SegmentationMetric.update", "pred", pred),
            d.shape_of("SegmentationMetric.update", "target", target),
        )
        is_scores = len(ps) == len(ts) + 1 >= 2 and ps[1] == self.num_classes and ps[:1] + ps[2:] == ts
        if floating and is_scores:
            return pred.argmax(1) if d.is_tensor(pred) else np.argmax(pred, axis=1)
        return pred

    def compute(self) -> dict[str, float | Array]:
        """:func:`segmentation_metrics` of the matrix so far."""
        return segmentation_metrics(self.confusion_matrix)

    def reset(self) -> None:
        """Forgets every batch."""
        self._matrix = None

    def merge(self, other: SegmentationMetric) -> SegmentationMetric:
        """Adds another metric's counts (e.g. from another worker) to this one; returns self."""
        if not isinstance(other, SegmentationMetric):
            raise type_error("SegmentationMetric.merge", "other", "a SegmentationMetric", type(other).__name__)
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise value_error(
                "SegmentationMetric.merge",
                "other",
                f"num_classes={self.num_classes}, ignore_index={self.ignore_index}",
                f"num_classes={other.num_classes}, ignore_index={other.ignore_index}",
            )
        if other._matrix is not None:
            self._add(other._matrix)
        return self

    def all_reduce(self, group: torch.distributed.ProcessGroup | None = None) -> SegmentationMetric:
        """Sums the matrix over the ranks of ``torch.distributed`` (every rank must
        call it); returns self. See :func:`all_reduce_confusion_matrix`."""
        self._matrix = all_reduce_confusion_matrix(self.confusion_matrix, group)
        return self
