"""Box kernels (SPEC section 1), with ``torchvision.ops`` names and semantics.

Boxes are ``(x1, y1, x2, y2)`` unless a format says otherwise. Every function
takes NumPy arrays or tensors and returns the input's kind (see
:mod:`ferrops._dispatch` for the backend and dtype rules: results are float64 when
an input is float64, else float32).

Invalid boxes (BOX-AREA policy): non-finite coordinates and inverted boxes
(``x2 < x1`` or ``y2 < y1``) raise ``ValueError`` naming the first bad box;
zero-width boxes are valid. Two zero-area boxes have IoU ``0 / 0 = NaN`` in the
matrices, as in torchvision (the losses add ``eps`` and stay finite).

Gradients: the Rust kernels are forward-only; with tensors that require grad the
PyTorch implementation runs (``backend="auto"``), so autograd keeps working.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import numpy as np

from . import _core
from . import _dispatch as d
from ._dispatch import Array, ArrayLike, Backend
from ._errors import value_error

if TYPE_CHECKING:
    import torch

__all__ = [
    "box_area",
    "box_convert",
    "box_iou",
    "generalized_box_iou",
    "distance_box_iou",
    "complete_box_iou",
    "generalized_box_iou_loss",
    "distance_box_iou_loss",
    "complete_box_iou_loss",
    "nms",
    "batched_nms",
    "soft_nms",
    "matrix_nms",
]

BoxFormat = Literal["xyxy", "xywh", "cxcywh"]
Reduction = Literal["none", "mean", "sum"]
SoftNmsMethod = Literal["linear", "gaussian"]
MatrixNmsKernel = Literal["gaussian", "linear"]
#: The pairwise kinds of ``_core.pairwise_iou`` and ``_core.box_iou_loss``.
IouKind = Literal["iou", "giou", "diou", "ciou"]
_FORMATS = ("xyxy", "xywh", "cxcywh")


def _rust_floats(function: str, named: dict[str, ArrayLike]) -> list[np.ndarray]:
    arrays = [d.float_array(function, name, x) for name, x in named.items()]
    dtype = d.common_float_dtype(*arrays)
    return [d.contiguous(a, dtype) for a in arrays]


def _torch_floats(function: str, named: dict[str, ArrayLike]) -> list[torch.Tensor]:
    device = d.device_of(*named.values())
    tensors = [d.float_tensor(function, name, x, device) for name, x in named.items()]
    torch = d.torch_module()
    if any(t.dtype == torch.float64 for t in tensors):
        tensors = [t.double() for t in tensors]
    return tensors


def box_area(boxes: ArrayLike, *, backend: Backend = "auto") -> Array:
    """Area of each box (BOX-AREA).

    Args:
        boxes (Tensor[N, 4] | ndarray[N, 4]): ``(x1, y1, x2, y2)`` boxes.
        backend: "auto", "rust" or "torch".

    Returns:
        Tensor[N] | ndarray[N]: ``(x2 - x1) * (y2 - y1)``.
    """
    d.check_matrix("box_area", "boxes", boxes, 4)
    if d.select_backend("box_area", backend, boxes) == "torch":
        (t,) = _torch_floats("box_area", {"boxes": boxes})
        return d.like(d.torch_implementation("boxes").box_area(t), boxes)
    (a,) = _rust_floats("box_area", {"boxes": boxes})
    return d.like(_core.box_area(a), boxes)


def box_convert(boxes: ArrayLike, in_fmt: BoxFormat, out_fmt: BoxFormat, *, backend: Backend = "auto") -> Array:
    """Converts boxes between ``xyxy``, ``xywh`` and ``cxcywh`` (BOX-CONVERT).

    Args:
        boxes (Tensor[N, 4] | ndarray[N, 4]): boxes in ``in_fmt``.
        in_fmt, out_fmt: "xyxy" (corners), "xywh" (corner, size) or "cxcywh" (centre, size).

    Returns:
        Tensor[N, 4] | ndarray[N, 4]: the boxes in ``out_fmt``.
    """
    for name, fmt in (("in_fmt", in_fmt), ("out_fmt", out_fmt)):
        if fmt not in _FORMATS:
            raise value_error("box_convert", name, f"one of {_FORMATS}", repr(fmt))
    d.check_matrix("box_convert", "boxes", boxes, 4)
    if d.select_backend("box_convert", backend, boxes) == "torch":
        (t,) = _torch_floats("box_convert", {"boxes": boxes})
        return d.like(d.torch_implementation("boxes").box_convert(t, in_fmt, out_fmt), boxes)
    (a,) = _rust_floats("box_convert", {"boxes": boxes})
    return d.like(_core.box_convert(a, in_fmt, out_fmt), boxes)


def _pairwise(function: str, kind: IouKind, boxes1: ArrayLike, boxes2: ArrayLike, backend: Backend) -> Array:
    d.check_matrix(function, "boxes1", boxes1, 4)
    d.check_matrix(function, "boxes2", boxes2, 4)
    if d.select_backend(function, backend, boxes1, boxes2) == "torch":
        t1, t2 = _torch_floats(function, {"boxes1": boxes1, "boxes2": boxes2})
        return d.like(d.torch_implementation("boxes").pairwise(function, kind, t1, t2), boxes1)
    a1, a2 = _rust_floats(function, {"boxes1": boxes1, "boxes2": boxes2})
    return d.like(_core.pairwise_iou(kind, a1, a2), boxes1)


def box_iou(boxes1: ArrayLike, boxes2: ArrayLike, *, backend: Backend = "auto") -> Array:
    """Pairwise intersection over union (BOX-IOU).

    Args:
        boxes1 (Tensor[N, 4] | ndarray[N, 4]): ``(x1, y1, x2, y2)`` boxes.
        boxes2 (Tensor[M, 4] | ndarray[M, 4]): ``(x1, y1, x2, y2)`` boxes.

    Returns:
        Tensor[N, M] | ndarray[N, M]: ``IoU[i, j]`` of ``boxes1[i]`` and ``boxes2[j]``.
    """
    return _pairwise("box_iou", "iou", boxes1, boxes2, backend)


def generalized_box_iou(boxes1: ArrayLike, boxes2: ArrayLike, *, backend: Backend = "auto") -> Array:
    """Pairwise generalized IoU, in [-1, 1] (BOX-GIOU).

    Args:
        boxes1 (Tensor[N, 4] | ndarray[N, 4]), boxes2 (Tensor[M, 4] | ndarray[M, 4]): xyxy boxes.

    Returns:
        Tensor[N, M] | ndarray[N, M]
    """
    return _pairwise("generalized_box_iou", "giou", boxes1, boxes2, backend)


def distance_box_iou(boxes1: ArrayLike, boxes2: ArrayLike, *, backend: Backend = "auto") -> Array:
    """Pairwise distance IoU with ``eps = 1e-7`` (BOX-DIOU).

    Args:
        boxes1 (Tensor[N, 4] | ndarray[N, 4]), boxes2 (Tensor[M, 4] | ndarray[M, 4]): xyxy boxes.

    Returns:
        Tensor[N, M] | ndarray[N, M]
    """
    return _pairwise("distance_box_iou", "diou", boxes1, boxes2, backend)


def complete_box_iou(boxes1: ArrayLike, boxes2: ArrayLike, *, backend: Backend = "auto") -> Array:
    """Pairwise complete IoU with ``eps = 1e-7`` (BOX-CIOU).

    Args:
        boxes1 (Tensor[N, 4] | ndarray[N, 4]), boxes2 (Tensor[M, 4] | ndarray[M, 4]): xyxy boxes.

    Returns:
        Tensor[N, M] | ndarray[N, M]
    """
    return _pairwise("complete_box_iou", "ciou", boxes1, boxes2, backend)


def _loss(
    function: str,
    kind: IouKind,
    boxes1: ArrayLike,
    boxes2: ArrayLike,
    reduction: Reduction,
    eps: float,
    backend: Backend,
) -> Array:
    if reduction not in ("none", "mean", "sum"):
        raise value_error(function, "reduction", "'none', 'mean' or 'sum'", repr(reduction))
    if not (math.isfinite(eps) and eps >= 0):
        raise value_error(function, "eps", "a finite value >= 0", eps)
    d.check_matrix(function, "boxes1", boxes1, 4)
    d.check_matrix(function, "boxes2", boxes2, 4)
    n1, n2 = np.shape(boxes1)[0], np.shape(boxes2)[0]
    if n1 != n2:
        raise value_error(function, "boxes2", f"{n1} boxes like boxes1", n2)
    if d.select_backend(function, backend, boxes1, boxes2) == "torch":
        t1, t2 = _torch_floats(function, {"boxes1": boxes1, "boxes2": boxes2})
        return d.like(d.torch_implementation("boxes").box_loss(function, kind, t1, t2, reduction, float(eps)), boxes1)
    a1, a2 = _rust_floats(function, {"boxes1": boxes1, "boxes2": boxes2})
    out = _core.box_iou_loss(kind, a1, a2, reduction, float(eps))
    return d.like(out if reduction == "none" else out.reshape(()), boxes1)


def generalized_box_iou_loss(
    boxes1: ArrayLike, boxes2: ArrayLike, reduction: Reduction = "none", eps: float = 1e-7, *, backend: Backend = "auto"
) -> Array:
    """``1 - GIoU`` of matching boxes, torchvision's loss formula.

    Args:
        boxes1 (Tensor[N, 4] | ndarray[N, 4]): predicted xyxy boxes.
        boxes2 (Tensor[N, 4] | ndarray[N, 4]): target xyxy boxes.
        reduction: "none" (Tensor[N]), "mean" or "sum" (0-d). The mean of no boxes is NaN.
        eps: added to the union and enclosing areas.
    """
    return _loss("generalized_box_iou_loss", "giou", boxes1, boxes2, reduction, eps, backend)


def distance_box_iou_loss(
    boxes1: ArrayLike, boxes2: ArrayLike, reduction: Reduction = "none", eps: float = 1e-7, *, backend: Backend = "auto"
) -> Array:
    """``1 - DIoU`` of matching boxes, torchvision's loss formula.

    Args:
        boxes1 (Tensor[N, 4] | ndarray[N, 4]), boxes2 (Tensor[N, 4] | ndarray[N, 4]): xyxy boxes.
        reduction: "none" (Tensor[N]), "mean" or "sum" (0-d).
        eps: added to the union and to the enclosing diagonal.
    """
    return _loss("distance_box_iou_loss", "diou", boxes1, boxes2, reduction, eps, backend)


def complete_box_iou_loss(
    boxes1: ArrayLike, boxes2: ArrayLike, reduction: Reduction = "none", eps: float = 1e-7, *, backend: Backend = "auto"
) -> Array:
    """``1 - CIoU`` of matching boxes, torchvision's loss formula.

    Args:
        boxes1 (Tensor[N, 4] | ndarray[N, 4]), boxes2 (Tensor[N, 4] | ndarray[N, 4]): xyxy boxes.
        reduction: "none" (Tensor[N]), "mean" or "sum" (0-d).
        eps: added to the union, the enclosing diagonal and the ``alpha`` denominator.
    """
    return _loss("complete_box_iou_loss", "ciou", boxes1, boxes2, reduction, eps, backend)


def _boxes_and_scores(function: str, boxes: ArrayLike, scores: ArrayLike) -> None:
    d.check_matrix(function, "boxes", boxes, 4)
    d.check_vector(function, "scores", scores, np.shape(boxes)[0])


def nms(boxes: ArrayLike, scores: ArrayLike, iou_threshold: float, *, backend: Backend = "auto") -> Array:
    """Greedy non-maximum suppression (NMS-GREEDY).

    Walks the boxes by descending score (ties: lower index first) and keeps a box
    unless it has IoU strictly greater than ``iou_threshold`` with a kept box.
    Equal to ``torchvision.ops.nms`` wherever scores are distinct.

    Args:
        boxes (Tensor[N, 4] | ndarray[N, 4]): ``(x1, y1, x2, y2)`` boxes.
        scores (Tensor[N] | ndarray[N]): finite scores.
        iou_threshold (float): in [0, 1].

    Returns:
        Tensor[K] | ndarray[K] (int64): indices of the kept boxes, by descending score.
    """
    _boxes_and_scores("nms", boxes, scores)
    threshold = d.check_unit_interval("nms", "iou_threshold", iou_threshold)
    if d.select_backend("nms", backend, boxes, scores) == "torch":
        tb, ts = _torch_floats("nms", {"boxes": boxes, "scores": scores})
        return d.like(d.torch_implementation("boxes").nms("nms", tb, ts, threshold), boxes)
    b, s = _rust_floats("nms", {"boxes": boxes, "scores": scores})
    return d.like(_core.nms(b, s, threshold), boxes)


def batched_nms(
    boxes: ArrayLike, scores: ArrayLike, idxs: ArrayLike, iou_threshold: float, *, backend: Backend = "auto"
) -> Array:
    """NMS run independently per category (NMS-BATCHED).

    Args:
        boxes (Tensor[N, 4] | ndarray[N, 4]): ``(x1, y1, x2, y2)`` boxes.
        scores (Tensor[N] | ndarray[N]): finite scores.
        idxs (Tensor[N] | ndarray[N]): integer category of each box.
        iou_threshold (float): in [0, 1].

    Returns:
        Tensor[K] | ndarray[K] (int64): kept indices by descending score (ties: lower index first).
    """
    _boxes_and_scores("batched_nms", boxes, scores)
    d.check_vector("batched_nms", "idxs", idxs, np.shape(boxes)[0])
    threshold = d.check_unit_interval("batched_nms", "iou_threshold", iou_threshold)
    if d.select_backend("batched_nms", backend, boxes, scores, idxs) == "torch":
        tb, ts = _torch_floats("batched_nms", {"boxes": boxes, "scores": scores})
        tclasses = d.index_tensor("batched_nms", "idxs", idxs, tb.device)
        return d.like(d.torch_implementation("boxes").batched_nms(tb, ts, tclasses, threshold), boxes)
    b, s = _rust_floats("batched_nms", {"boxes": boxes, "scores": scores})
    classes = d.index_array("batched_nms", "idxs", idxs)
    return d.like(_core.batched_nms(b, s, classes, threshold), boxes)


def soft_nms(
    boxes: ArrayLike,
    scores: ArrayLike,
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    score_threshold: float = 0.001,
    method: SoftNmsMethod = "linear",
    *,
    backend: Backend = "auto",
) -> tuple[Array, Array]:
    """Soft-NMS (NMS-SOFT, Bodla et al. 2017, mmcv's rescoring).

    Repeatedly selects the box with the highest current score (ties: lower index)
    and rescales the others by their IoU ``o`` with it: ``linear``: ``s *= 1 - o``
    when ``o > iou_threshold``; ``gaussian``: ``s *= exp(-o^2 / sigma)``. Boxes whose
    score is below ``score_threshold`` (initially or after rescoring) are dropped.

    Args:
        boxes (Tensor[N, 4] | ndarray[N, 4]): ``(x1, y1, x2, y2)`` boxes.
        scores (Tensor[N] | ndarray[N]): finite scores.
        iou_threshold (float): in [0, 1] (used by ``linear``).
        sigma (float): > 0 (used by ``gaussian``).
        score_threshold (float): boxes below it are dropped.
        method: "linear" or "gaussian".

    Returns:
        (Tensor[K] int64, Tensor[K] float): selected indices in selection order and
        their scores when selected.
    """
    if method not in ("linear", "gaussian"):
        raise value_error("soft_nms", "method", "'linear' or 'gaussian'", repr(method))
    _boxes_and_scores("soft_nms", boxes, scores)
    threshold = d.check_unit_interval("soft_nms", "iou_threshold", iou_threshold)
    if not (np.isfinite(sigma) and sigma > 0):
        raise value_error("soft_nms", "sigma", "a finite value > 0", repr(sigma))
    if not np.isfinite(score_threshold):
        raise value_error("soft_nms", "score_threshold", "a finite value", repr(score_threshold))
    if d.select_backend("soft_nms", backend, boxes, scores) == "torch":
        tb, ts = _torch_floats("soft_nms", {"boxes": boxes, "scores": scores})
        keep, kept = d.torch_implementation("boxes").soft_nms(
            tb, ts, threshold, float(sigma), float(score_threshold), method
        )
    else:
        b, s = _rust_floats("soft_nms", {"boxes": boxes, "scores": scores})
        keep, kept = _core.soft_nms(b, s, threshold, float(sigma), float(score_threshold), method)
    return d.like(keep, boxes), d.like(kept, boxes)


def matrix_nms(
    boxes: ArrayLike,
    scores: ArrayLike,
    idxs: ArrayLike | None = None,
    kernel: MatrixNmsKernel = "gaussian",
    sigma: float = 2.0,
    *,
    backend: Backend = "auto",
) -> Array:
    """Matrix NMS (NMS-MATRIX, SOLOv2) on boxes: every score decayed at once.

    Within a category, with boxes by descending score, box ``j`` is decayed by
    ``min(1, min_{i<j} f(IoU_ij) / f(comp_i))`` where ``comp_i`` is the largest IoU
    of box ``i`` with a higher-scored box, ``f(x) = exp(-sigma x^2)`` (gaussian) or
    ``1 - x`` (linear).

    Args:
        boxes (Tensor[N, 4] | ndarray[N, 4]): ``(x1, y1, x2, y2)`` boxes.
        scores (Tensor[N] | ndarray[N]): finite scores.
        idxs (Tensor[N] | ndarray[N] | None): integer categories; None: one category.
        kernel: "gaussian" or "linear".
        sigma (float): > 0, for the gaussian kernel.

    Returns:
        Tensor[N] | ndarray[N]: decayed scores, in input order (threshold them to select).
    """
    if kernel not in ("gaussian", "linear"):
        raise value_error("matrix_nms", "kernel", "'gaussian' or 'linear'", repr(kernel))
    _boxes_and_scores("matrix_nms", boxes, scores)
    if idxs is not None:
        d.check_vector("matrix_nms", "idxs", idxs, np.shape(boxes)[0])
    if kernel == "gaussian" and not (np.isfinite(sigma) and sigma > 0):
        raise value_error("matrix_nms", "sigma", "a finite value > 0", repr(sigma))
    if d.select_backend("matrix_nms", backend, boxes, scores, idxs) == "torch":
        tb, ts = _torch_floats("matrix_nms", {"boxes": boxes, "scores": scores})
        tclasses = None if idxs is None else d.index_tensor("matrix_nms", "idxs", idxs, tb.device)
        return d.like(d.torch_implementation("boxes").matrix_nms(tb, ts, tclasses, kernel, float(sigma)), boxes)
    b, s = _rust_floats("matrix_nms", {"boxes": boxes, "scores": scores})
    classes = None if idxs is None else d.index_array("matrix_nms", "idxs", idxs)
    return d.like(_core.matrix_nms(b, s, classes, kernel, float(sigma)), boxes)
