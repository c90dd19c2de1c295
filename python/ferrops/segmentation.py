"""Semantic-segmentation metrics (SPEC SEG-*) and the receptive-field calculator (RF).

* :func:`confusion_matrix` counts ``(target, prediction)`` label pairs over any
  number of pixels, reading the labels in their own integer dtype (uint8 masks are
  not widened to int64 first). NumPy arrays and CPU tensors run in Rust; CUDA
  tensors stay on their device (``torch.bincount``).
* :func:`segmentation_metrics` turns a matrix into pixel accuracy, mean pixel
  accuracy, per-class IoU and Dice, mIoU, frequency-weighted IoU and mean Dice.
* :class:`SegmentationMetric` accumulates the matrix over a validation set
  (``update``/``compute``/``reset``/``merge``, and ``all_reduce`` across
  ``torch.distributed`` ranks).
* :func:`receptive_field` gives each layer's receptive field, jump and start.

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
import operator
from typing import Any, NamedTuple, Sequence

import numpy as np

from . import _core
from . import _dispatch as d

__all__ = [
    "confusion_matrix",
    "segmentation_metrics",
    "SegmentationMetric",
    "all_reduce_confusion_matrix",
    "receptive_field",
    "LayerReceptiveField",
]


def _torch_impl() -> Any:
    from . import _torch_segmentation

    return _torch_segmentation


def _check_num_classes(function: str, num_classes: object) -> int:
    return d.check_int(function, "num_classes", num_classes, 1, "a class count >= 1")


def _check_ignore_index(function: str, ignore_index: object) -> int | None:
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise TypeError(
            f"{function}(): argument 'ignore_index': expected an int or None, got {type(ignore_index).__name__}"
        )
    return d.check_int(function, "ignore_index", ignore_index, d.INT64_MIN, "an int")


def _shape(x: object) -> tuple[int, ...]:
    return tuple(getattr(x, "shape", np.shape(x)))


def _label_array(function: str, argument: str, x: object) -> np.ndarray:
    """``x`` as a flat, C-contiguous NumPy integer array in its own dtype (no copy
    when it already is one); bool is viewed as uint8."""
    if d.is_tensor(x):
        if x.dtype.is_floating_point or x.is_complex():
            raise TypeError(f"{function}(): argument '{argument}': expected integer class labels, got {d._describe(x)}")
        a = x.detach().cpu().numpy()
    else:
        a = np.asarray(x)
    if a.dtype.kind == "b":
        a = a.view(np.uint8)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{function}(): argument '{argument}': expected integer class labels, got {d._describe(a)}")
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    # ravel() is a view of a C-contiguous array; only strided inputs are copied.
    return np.ascontiguousarray(a).ravel()


def _label_tensor(function: str, argument: str, x: object, device: Any) -> Any:
    """``x`` as an integer tensor in its own dtype on ``device`` (default: CPU)."""
    torch = d.torch_module()
    if d.is_tensor(x):
        if x.dtype.is_floating_point or x.is_complex():
            raise TypeError(f"{function}(): argument '{argument}': expected integer class labels, got {d._describe(x)}")
        t = x
    else:
        a = np.asarray(x)
        if a.dtype.kind not in "iub":
            raise TypeError(f"{function}(): argument '{argument}': expected integer class labels, got {d._describe(a)}")
        t = torch.as_tensor(a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("=")))
    return t if device is None else t.to(device)


def confusion_matrix(
    target: Any, pred: Any, num_classes: int, ignore_index: int | None = None, *, backend: str = "auto"
) -> Any:
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
    if _shape(target) != _shape(pred):
        raise ValueError(
            f"{f}(): argument 'pred': expected the shape of target {list(_shape(target))}, got {list(_shape(pred))}"
        )
    if d.select_backend(f, backend, target, pred) == "torch":
        device = d.device_of(target, pred)
        t = _label_tensor(f, "target", target, device)
        p = _label_tensor(f, "pred", pred, device)
        cm = _torch_impl().confusion_matrix(t, p, c, ignore)
        return d.like(cm, target if d.is_tensor(target) else pred)
    t = _label_array(f, "target", target)
    p = _label_array(f, "pred", pred)
    cm = _core.confusion_matrix(t, p, c, ignore)
    return d.like(cm, target if d.is_tensor(target) else pred)


def _nan_mean(values: np.ndarray) -> float:
    """Mean over the non-NaN entries; NaN (and no warning) when there are none."""
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else math.nan


def _check_matrix(function: str, cm: Any) -> None:
    shape = _shape(cm)
    if len(shape) != 2 or shape[0] != shape[1] or shape[0] < 1:
        raise ValueError(f"{function}(): argument 'cm': expected a square [C, C] matrix with C >= 1, got shape {list(shape)}")


def segmentation_metrics(cm: Any) -> dict[str, Any]:
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
        return _torch_impl().segmentation_metrics(cm)
    m = np.asarray(cm)
    if m.dtype.kind not in "iufb":
        raise TypeError(f"{f}(): argument 'cm': expected real counts, got {d._describe(m)}")
    m = m.astype(np.float64)
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


def all_reduce_confusion_matrix(cm: Any, group: Any = None) -> Any:
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
        self._matrix: Any = None

    def __repr__(self) -> str:
        return f"SegmentationMetric(num_classes={self.num_classes}, ignore_index={self.ignore_index})"

    @property
    def confusion_matrix(self) -> Any:
        """Tensor[C, C] | ndarray[C, C]: the int64 counts so far (zeros before any update)."""
        if self._matrix is None:
            return np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        return self._matrix

    def _add(self, cm: Any) -> None:
        if self._matrix is None:
            self._matrix = cm.clone() if d.is_tensor(cm) else np.array(cm, dtype=np.int64)
        elif d.is_tensor(self._matrix):
            torch = d.torch_module()
            self._matrix += torch.as_tensor(d.like(cm, self._matrix), device=self._matrix.device)
        else:
            self._matrix += d.like(cm, np.empty(0)) if d.is_tensor(cm) else cm

    def update(self, pred: Any, target: Any) -> None:
        """Adds a batch.

        Args:
            pred (Tensor[*] | ndarray[*]): predicted labels of ``target``'s shape;
                or scores/logits ``[N, C, *]`` (one more dimension than
                ``target``, float), reduced by ``argmax`` over dimension 1.
            target (Tensor[*] | ndarray[*]): ground-truth labels.
        """
        pred = self._labels_of(pred, target)
        self._add(confusion_matrix(target, pred, self.num_classes, self.ignore_index))

    def _labels_of(self, pred: Any, target: Any) -> Any:
        """Class labels of ``pred``: scores ``[N, C, *]`` of a ``[N, *]`` target are
        reduced by argmax; anything else is passed on (and checked) as labels."""
        if d.is_tensor(pred):
            floating = pred.dtype.is_floating_point
        else:
            pred = np.asarray(pred)
            floating = pred.dtype.kind == "f"
        ps, ts = _shape(pred), _shape(target)
        is_scores = len(ps) == len(ts) + 1 >= 2 and ps[1] == self.num_classes and ps[:1] + ps[2:] == ts
        if floating and is_scores:
            return pred.argmax(1) if d.is_tensor(pred) else np.argmax(pred, axis=1)
        return pred

    def compute(self) -> dict[str, Any]:
        """:func:`segmentation_metrics` of the matrix so far."""
        return segmentation_metrics(self.confusion_matrix)

    def reset(self) -> None:
        """Forgets every batch."""
        self._matrix = None

    def merge(self, other: "SegmentationMetric") -> "SegmentationMetric":
        """Adds another metric's counts (e.g. from another worker) to this one; returns self."""
        if not isinstance(other, SegmentationMetric):
            raise TypeError(f"SegmentationMetric.merge(): argument 'other': expected a SegmentationMetric, got {type(other).__name__}")
        if (other.num_classes, other.ignore_index) != (self.num_classes, self.ignore_index):
            raise ValueError(
                "SegmentationMetric.merge(): argument 'other': expected "
                f"num_classes={self.num_classes}, ignore_index={self.ignore_index}, got "
                f"num_classes={other.num_classes}, ignore_index={other.ignore_index}"
            )
        if other._matrix is not None:
            self._add(other._matrix)
        return self

    def all_reduce(self, group: Any = None) -> "SegmentationMetric":
        """Sums the matrix over the ranks of ``torch.distributed`` (every rank must
        call it); returns self. See :func:`all_reduce_confusion_matrix`."""
        self._matrix = all_reduce_confusion_matrix(self.confusion_matrix, group)
        return self


class LayerReceptiveField(NamedTuple):
    """One layer of :func:`receptive_field`'s result: the layer's parameters and,
    at its output, the receptive field ``rf`` (input pixels), the ``jump`` (input
    pixels between neighbouring outputs) and ``start`` (centre of the first
    output's field, in input pixel coordinates where pixel 0 spans [0, 1])."""

    name: str
    kernel: Any
    stride: Any
    padding: Any
    dilation: Any
    rf: Any
    jump: Any
    start: Any


def _as_int(function: str, where: str, v: object) -> int:
    try:
        return operator.index(v)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{function}(): {where}: expected ints, got {v!r}") from None


def _layer_from_module(module: Any) -> tuple[Any, Any, Any, Any] | None:
    """(kernel, stride, padding, dilation) of a conv/pool module, None for others."""
    import torch.nn as nn

    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    pool = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.LPPool1d, nn.LPPool2d)
    uncovered = (
        nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
        nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
        nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
        nn.FractionalMaxPool2d, nn.FractionalMaxPool3d,
    )
    if isinstance(module, uncovered):
        # Their window depends on the input size (or is random): no fixed k, s, p.
        raise ValueError(
            "receptive_field(): argument 'layers': expected convolution and pooling layers with a fixed "
            f"kernel, stride and padding (pass the feature extractor, e.g. model.features), got {type(module).__name__}"
        )
    if isinstance(module, conv):
        if isinstance(module.padding, str):
            if module.padding == "valid":
                padding: Any = 0
            else:  # "same" (stride 1): torch pads d (k - 1) in total, the smaller half first
                padding = tuple(dd * (k - 1) // 2 for k, dd in zip(module.kernel_size, module.dilation))
        else:
            padding = module.padding
        return module.kernel_size, module.stride, padding, module.dilation
    if isinstance(module, pool):
        stride = module.stride if module.stride is not None else module.kernel_size
        dilation = getattr(module, "dilation", 1)
        return module.kernel_size, stride, getattr(module, "padding", 0), dilation
    return None


def receptive_field(layers: Any) -> list[LayerReceptiveField]:
    """Receptive field of stacked convolution/pooling layers (RF).

    With kernel ``k``, stride ``s``, padding ``p``, dilation ``d`` and
    ``k' = d (k - 1) + 1``: ``jump_l = jump_{l-1} s``, ``rf_l = rf_{l-1} +
    (k' - 1) jump_{l-1}``, ``start_l = start_{l-1} + ((k' - 1) / 2 - p) jump_{l-1}``,
    from ``rf_0 = 1``, ``jump_0 = 1``, ``start_0 = 0.5``.

    Args:
        layers: either a sequence of ``(kernel, stride[, padding[, dilation]])``
            tuples (padding 0 and dilation 1 by default; each entry an int or a
            per-axis tuple), or a ``torch.nn.Module`` whose Conv/MaxPool/AvgPool/
            LPPool submodules, in registration order (``named_modules()``), are
            the layers. Other modules count as pointwise and are skipped (ReLU,
            BatchNorm, Dropout...); adaptive and fractional pooling and
            transposed convolutions raise ``ValueError`` (no fixed window).

    Returns:
        list[LayerReceptiveField]: one entry per layer. ``rf`` and ``jump`` are
        ints, ``start`` a float; they are per-axis tuples when some layer has
        different values along different axes.
    """
    f = "receptive_field"
    specs: list[tuple[str, Any, Any, Any, Any]] = []
    if d.is_tensor(layers):
        raise TypeError(f"{f}(): argument 'layers': expected layer tuples or a torch.nn.Module, got a tensor")
    torch = d.torch_module()
    if torch is not None and isinstance(layers, torch.nn.Module):
        for name, module in layers.named_modules():
            spec = _layer_from_module(module)
            if spec is not None:
                specs.append((name or type(module).__name__, *spec))
    else:
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Sequence):
            raise TypeError(f"{f}(): argument 'layers': expected a sequence of (kernel, stride, padding, dilation) tuples or a torch.nn.Module, got {type(layers).__name__}")
        for i, layer in enumerate(layers):
            if not isinstance(layer, (tuple, list)) or not 2 <= len(layer) <= 4:
                raise ValueError(f"{f}(): argument 'layers': expected (kernel, stride[, padding[, dilation]]) tuples, got layers[{i}] = {layer!r}")
            k, s, p, dd = tuple(layer) + (0, 1)[len(layer) - 2 :]
            specs.append((str(i), k, s, p, dd))

    def axes(v: Any) -> tuple[Any, ...]:
        return tuple(v) if isinstance(v, (tuple, list)) else (v,)

    ndim = max((len(axes(v)) for spec in specs for v in spec[1:]), default=1)
    rf, jump, start = [1] * ndim, [1] * ndim, [0.5] * ndim
    rows: list[tuple[str, list[Any], list[int], list[int], list[float]]] = []
    for name, *params in specs:
        per_axis = []
        for what, v in zip(("kernel", "stride", "padding", "dilation"), params):
            vs = axes(v)
            if len(vs) not in (1, ndim):
                raise ValueError(f"{f}(): layer {name}: expected {what} with 1 or {ndim} values, got {v!r}")
            vs = vs * ndim if len(vs) == 1 else vs
            vs = tuple(_as_int(f, f"layer {name} {what}", x) for x in vs)
            low = 0 if what == "padding" else 1
            if any(x < low for x in vs):
                raise ValueError(f"{f}(): layer {name}: expected {what} >= {low}, got {v!r}")
            per_axis.append(vs)
        k, s, p, dl = per_axis
        for a in range(ndim):
            k_eff = dl[a] * (k[a] - 1) + 1
            start[a] = start[a] + ((k_eff - 1) / 2 - p[a]) * jump[a]
            rf[a] = rf[a] + (k_eff - 1) * jump[a]
            jump[a] = jump[a] * s[a]
        rows.append((name, per_axis, list(rf), list(jump), list(start)))
    uniform = all(len(set(vs)) == 1 for _, per_axis, *_ in rows for vs in per_axis)

    def out(v: Sequence[Any]) -> Any:
        return v[0] if uniform else tuple(v)

    return [
        LayerReceptiveField(name, *(out(vs) for vs in per_axis), out(r), out(j), out(st))
        for name, per_axis, r, j, st in rows
    ]
