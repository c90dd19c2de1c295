"""Box kernels (SPEC section 1), with ``torchvision.ops`` names and semantics.

Boxes are ``(x1, y1, x2, y2)`` unless a format says otherwise, with any leading
dimensions as in torchvision (BOX-BATCH). Every function takes NumPy arrays or
tensors and returns the input's kind (:mod:`ferrops._dispatch` has the backend
rule) in torchvision's dtype (BOX-DTYPE): IoU matrices and losses float64 when an
input is float64, else float32; ``box_area`` and ``box_convert`` keep more of the
input's dtype (see each). Quantized tensors are dequantized first.

Invalid boxes (BOX-AREA policy): non-finite coordinates and inverted boxes
(``x2 < x1`` or ``y2 < y1``) raise ``ValueError`` naming the first bad box;
zero-width boxes are valid. Two zero-area boxes have IoU ``0 / 0 = NaN`` in the
matrices, as in torchvision (the losses add ``eps`` and stay finite).

Gradients: the Rust kernels are forward-only; with tensors that require grad the
PyTorch implementation runs (``backend="auto"``), so autograd keeps working.

Rotated boxes (``box_iou_rotated``, ``nms_rotated``, ``batched_nms_rotated``,
``probiou``, ``box_convert_rotated``; their angle convention is documented in
``ferrops._boxes_rotated``) and ``weighted_boxes_fusion`` (the ``ensemble_boxes``
drop-in) live in their own files and are re-exported here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from . import _core
from . import _dispatch as d
from ._boxes_fusion import non_maximum_weighted, weighted_boxes_fusion
from ._boxes_rotated import (
    ROTATED_FORMATS,
    RotatedFormat,
    batched_nms_rotated,
    box_convert_rotated,
    box_iou_rotated,
    nms_rotated,
    probiou,
)
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
    "box_iou_rotated",
    "nms_rotated",
    "batched_nms_rotated",
    "probiou",
    "box_convert_rotated",
    "weighted_boxes_fusion",
    "non_maximum_weighted",
]

BoxFormat = Literal["xyxy", "xywh", "cxcywh"]
#: ``box_convert``'s formats: the axis-aligned ones and torchvision's rotated ones.
AnyBoxFormat = Literal["xyxy", "xywh", "cxcywh", "cxcywhr", "xywhr", "xyxyxyxy"]
Reduction = Literal["none", "mean", "sum"]
SoftNmsMethod = Literal["linear", "gaussian"]
MatrixNmsKernel = Literal["gaussian", "linear"]
#: The pairwise kinds of ``_core.pairwise_iou`` and ``_core.box_iou_loss``.
IouKind = Literal["iou", "giou", "diou", "ciou"]
_FORMATS = ("xyxy", "xywh", "cxcywh")


def _rust_floats(function: str, named: dict[str, ArrayLike]) -> list[np.ndarray]:
    arrays = {name: d.float_array(function, name, x) for name, x in named.items()}
    dtype = d.common_float_dtype(*arrays.values())
    return [d.contiguous(function, name, a, dtype) for name, a in arrays.items()]


def _torch_floats(function: str, named: dict[str, ArrayLike]) -> list[torch.Tensor]:
    device = d.device_of(*named.values())
    tensors = [d.float_tensor(function, name, x, device) for name, x in named.items()]
    torch = d.torch_module()
    if any(t.dtype == torch.float64 for t in tensors):
        tensors = [t.double() for t in tensors]
    return tensors


# ---------------------------------------------------------------------------
# inputs: quantized tensors, leading dimensions, torchvision's output dtypes


def _array(function: str, argument: str, x: ArrayLike) -> Array:
    """``x`` as a tensor or a NumPy array. A quantized tensor is dequantized: IoU and
    score order do not change under quantization's affine map, which is why
    torchvision's ``nms`` can read quantized boxes; every box op here takes them."""
    if d.is_tensor(x):
        return x.dequantize() if x.is_quantized else x
    return d.host_array(function, argument, x)


def _check_boxes(function: str, argument: str, x: Array, pairwise: bool) -> tuple[int, ...]:
    """The shape ``[..., 4]`` (``[..., N, 4]`` for the pairwise matrices)."""
    shape = tuple(x.shape)
    if len(shape) < (2 if pairwise else 1) or shape[-1] != 4:
        raise value_error(function, argument, "shape [..., N, 4]" if pairwise else "shape [..., 4]", list(shape))
    return shape


def _broadcast(function: str, shape1: tuple[int, ...], shape2: tuple[int, ...]) -> tuple[int, ...]:
    """The broadcast of two leading shapes, as torchvision's elementwise arithmetic does it."""
    try:
        return tuple(np.broadcast_shapes(shape1, shape2))
    except ValueError:
        raise value_error(
            function, "boxes2", f"leading dimensions that broadcast with boxes1's {list(shape1)}", list(shape2)
        ) from None


def _expand(x: Array, shape: tuple[int, ...]) -> Array:
    return x.broadcast_to(shape) if d.is_tensor(x) else np.broadcast_to(x, shape)


def _is_integer(x: Array) -> bool:
    if d.is_tensor(x):
        return not (x.dtype.is_floating_point or x.is_complex())
    return x.dtype.kind in "iub"


def _exact(function: str, x: Array) -> Array:
    """Integer boxes in float64, where their areas and sizes are exact (float32
    would round coordinates above 2^24)."""
    if not _is_integer(x):
        return x
    if d.is_tensor(x):
        return d.converted_tensor(function, "boxes", x, d.torch_module().float64)
    return d.contiguous(function, "boxes", x, np.dtype(np.float64))


def _cast(result: Array, dtype: Any) -> Array:
    if result.dtype == dtype:
        return result
    return result.to(dtype) if d.is_tensor(result) else result.astype(dtype)


def _area_dtype(x: Array) -> object:
    """torchvision's ``box_area`` dtype (its ``_upcast``): floats as the float rule
    (float16/bfloat16 give float32), int32 and int64 kept, other integers int32."""
    if d.is_tensor(x):
        torch = d.torch_module()
        if x.dtype.is_floating_point:
            return torch.float64 if x.dtype == torch.float64 else torch.float32
        return x.dtype if x.dtype in (torch.int32, torch.int64) else torch.int32
    if x.dtype.kind == "f":
        return np.dtype(np.float64) if x.dtype == np.float64 else np.dtype(np.float32)
    return x.dtype if x.dtype in (np.int32, np.int64) else np.dtype(np.int32)


def _convert_dtype(x: Array, in_fmt: str, out_fmt: str) -> object:
    """torchvision's ``box_convert`` dtype: every float dtype kept; integers kept
    where the conversion only adds and subtracts (no change, xyxy <-> xywh), float32
    where it halves (cxcywh)."""
    if not _is_integer(x) or in_fmt == out_fmt:
        return x.dtype
    is_bool = str(x.dtype) in ("bool", "torch.bool")
    if {in_fmt, out_fmt} == {"xyxy", "xywh"} and not is_bool:
        return x.dtype
    return d.torch_module().float32 if d.is_tensor(x) else np.dtype(np.float32)


def _stack(parts: list[Array], shape: tuple[int, ...]) -> Array:
    if d.is_tensor(parts[0]):
        return d.torch_module().stack(parts).reshape(shape)
    return np.stack(parts).reshape(shape)


def _rows(x: Array) -> Array:
    """``[..., 4]`` as ``[K, 4]`` (a view where it can be)."""
    return x.reshape(-1, 4)


def box_area(boxes: ArrayLike, *, backend: Backend = "auto") -> Array:
    """Area of each box (BOX-AREA).

    Args:
        boxes (Tensor[..., 4] | ndarray[..., 4]): ``(x1, y1, x2, y2)`` boxes, any
            leading dimensions (the first bad box is counted in row-major order).
        backend: "auto", "rust" or "torch".

    Returns:
        Tensor[...] | ndarray[...]: ``(x2 - x1) * (y2 - y1)``, in torchvision's dtype:
        float64 stays, other floats give float32, int32/int64 stay, other integers
        give int32 (integer areas are computed exactly, in float64).
    """
    x = _array("box_area", "boxes", boxes)
    shape = _check_boxes("box_area", "boxes", x, pairwise=False)
    rows = _rows(_exact("box_area", x))
    if d.select_backend("box_area", backend, x) == "torch":
        (t,) = _torch_floats("box_area", {"boxes": rows})
        area = d.torch_implementation("boxes").box_area(t)
    else:
        (a,) = _rust_floats("box_area", {"boxes": rows})
        area = _core.box_area(a)
    return _cast(d.like(area, x).reshape(shape[:-1]), _area_dtype(x))


def box_convert(boxes: ArrayLike, in_fmt: AnyBoxFormat, out_fmt: AnyBoxFormat, *, backend: Backend = "auto") -> Array:
    """Converts boxes between ``xyxy``, ``xywh`` and ``cxcywh`` (BOX-CONVERT), or,
    as torchvision does, between the rotated formats ``cxcywhr``, ``xywhr`` and
    ``xyxyxyxy`` (:func:`box_convert_rotated`, ``[N, 5]`` or ``[N, 8]`` boxes).

    Args:
        boxes (Tensor[..., 4] | ndarray[..., 4]): boxes in ``in_fmt``, any leading dimensions.
        in_fmt, out_fmt: "xyxy" (corners), "xywh" (corner, size) or "cxcywh" (centre, size).

    Returns:
        Tensor[..., 4] | ndarray[..., 4]: the boxes in ``out_fmt``, in torchvision's
        dtype: floats (float16 and bfloat16 too) keep theirs, computed in float32 or
        float64; integers keep theirs unless the conversion involves ``cxcywh`` (float32).
    """
    if in_fmt in ROTATED_FORMATS and out_fmt in ROTATED_FORMATS:
        return box_convert_rotated(boxes, cast(RotatedFormat, in_fmt), cast(RotatedFormat, out_fmt))
    for name, fmt in (("in_fmt", in_fmt), ("out_fmt", out_fmt)):
        if fmt not in _FORMATS:
            raise value_error("box_convert", name, f"one of {_FORMATS} (or, both, of {ROTATED_FORMATS})", repr(fmt))
    in_fmt, out_fmt = cast(BoxFormat, in_fmt), cast(BoxFormat, out_fmt)
    x = _array("box_convert", "boxes", boxes)
    shape = _check_boxes("box_convert", "boxes", x, pairwise=False)
    rows = _rows(_exact("box_convert", x))
    if d.select_backend("box_convert", backend, x) == "torch":
        (t,) = _torch_floats("box_convert", {"boxes": rows})
        out = d.torch_implementation("boxes").box_convert(t, in_fmt, out_fmt)
    else:
        (a,) = _rust_floats("box_convert", {"boxes": rows})
        out = _core.box_convert(a, in_fmt, out_fmt)
    return _cast(d.like(out, x).reshape(shape), _convert_dtype(x, in_fmt, out_fmt))


def _pairwise_matrix(function: str, kind: IouKind, b1: Array, b2: Array, backend: Backend) -> Array:
    """One ``[N, M]`` matrix of ``[N, 4]`` and ``[M, 4]`` boxes."""
    if d.select_backend(function, backend, b1, b2) == "torch":
        t1, t2 = _torch_floats(function, {"boxes1": b1, "boxes2": b2})
        return d.like(d.torch_implementation("boxes").pairwise(function, kind, t1, t2), b1)
    a1, a2 = _rust_floats(function, {"boxes1": b1, "boxes2": b2})
    return d.like(_core.pairwise_iou(kind, a1, a2), b1)


def _pairwise(function: str, kind: IouKind, boxes1: ArrayLike, boxes2: ArrayLike, backend: Backend) -> Array:
    """``[..., N, 4]`` and ``[..., M, 4]`` boxes give ``[..., N, M]``, the leading
    dimensions broadcast as in torchvision; one kernel call per batch element."""
    x1 = _array(function, "boxes1", boxes1)
    x2 = _array(function, "boxes2", boxes2)
    s1 = _check_boxes(function, "boxes1", x1, pairwise=True)
    s2 = _check_boxes(function, "boxes2", x2, pairwise=True)
    batch = _broadcast(function, s1[:-2], s2[:-2])
    if not batch:
        return _pairwise_matrix(function, kind, x1, x2, backend)
    n, m = s1[-2], s2[-2]
    if math.prod(batch) == 0:
        empty = _pairwise_matrix(function, kind, x1.reshape(-1, 4)[:0], x2.reshape(-1, 4)[:0], backend)
        return empty.reshape(batch + (n, m))
    # The batch size spelled out: reshape(-1, 0, 4) of an empty array is ambiguous.
    e1 = _expand(x1, batch + (n, 4)).reshape(math.prod(batch), n, 4)
    e2 = _expand(x2, batch + (m, 4)).reshape(math.prod(batch), m, 4)
    if d.select_backend(function, backend, x1, x2) == "rust" and n * m > 0:
        # One kernel call for the whole batch: B small matrices cost one round trip.
        a1, a2 = _rust_floats(function, {"boxes1": e1.reshape(-1, 4), "boxes2": e2.reshape(-1, 4)})
        try:
            flat = _core.pairwise_iou_batched(kind, a1, a2, int(e1.shape[0]))
            return d.like(flat, x1).reshape(batch + (n, m))
        except ValueError:
            pass  # the walk below names the bad box's batch element
    parts = []
    for i in range(e1.shape[0]):
        try:
            parts.append(_pairwise_matrix(function, kind, e1[i], e2[i], backend))
        except ValueError as exc:
            where = tuple(int(v) for v in np.unravel_index(i, batch))
            raise ValueError(f"{exc} (in batch element {where})") from None
    return _stack(parts, batch + (n, m))


def box_iou(boxes1: ArrayLike, boxes2: ArrayLike, *, backend: Backend = "auto") -> Array:
    """Pairwise intersection over union (BOX-IOU).

    Args:
        boxes1 (Tensor[..., N, 4] | ndarray[..., N, 4]): ``(x1, y1, x2, y2)`` boxes.
        boxes2 (Tensor[..., M, 4] | ndarray[..., M, 4]): ``(x1, y1, x2, y2)`` boxes;
            the leading dimensions broadcast with ``boxes1``'s.

    Returns:
        Tensor[..., N, M] | ndarray[..., N, M]: ``IoU[..., i, j]`` of ``boxes1[..., i]``
        and ``boxes2[..., j]``.
    """
    return _pairwise("box_iou", "iou", boxes1, boxes2, backend)


def generalized_box_iou(boxes1: ArrayLike, boxes2: ArrayLike, *, backend: Backend = "auto") -> Array:
    """Pairwise generalized IoU, in [-1, 1] (BOX-GIOU).

    Args:
        boxes1 (Tensor[..., N, 4] | ndarray[..., N, 4]), boxes2 (Tensor[..., M, 4] |
            ndarray[..., M, 4]): xyxy boxes, leading dimensions broadcast.

    Returns:
        Tensor[..., N, M] | ndarray[..., N, M]
    """
    return _pairwise("generalized_box_iou", "giou", boxes1, boxes2, backend)


def distance_box_iou(boxes1: ArrayLike, boxes2: ArrayLike, *, backend: Backend = "auto") -> Array:
    """Pairwise distance IoU with ``eps = 1e-7`` (BOX-DIOU).

    Args:
        boxes1 (Tensor[..., N, 4] | ndarray[..., N, 4]), boxes2 (Tensor[..., M, 4] |
            ndarray[..., M, 4]): xyxy boxes, leading dimensions broadcast.

    Returns:
        Tensor[..., N, M] | ndarray[..., N, M]
    """
    return _pairwise("distance_box_iou", "diou", boxes1, boxes2, backend)


def complete_box_iou(boxes1: ArrayLike, boxes2: ArrayLike, *, backend: Backend = "auto") -> Array:
    """Pairwise complete IoU with ``eps = 1e-7`` (BOX-CIOU).

    Args:
        boxes1 (Tensor[..., N, 4] | ndarray[..., N, 4]), boxes2 (Tensor[..., M, 4] |
            ndarray[..., M, 4]): xyxy boxes, leading dimensions broadcast.

    Returns:
        Tensor[..., N, M] | ndarray[..., N, M]
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
        # torchvision's message starts "Invalid Value"; its users' tests match on it.
        raise value_error(function, "reduction", "'none', 'mean' or 'sum'", f"{reduction!r} (Invalid reduction)")
    eps_value = d.check_float(function, "eps", eps)
    if not (math.isfinite(eps_value) and eps_value >= 0):
        raise value_error(function, "eps", "a finite value >= 0", repr(eps))
    x1 = _array(function, "boxes1", boxes1)
    x2 = _array(function, "boxes2", boxes2)
    s1 = _check_boxes(function, "boxes1", x1, pairwise=False)
    s2 = _check_boxes(function, "boxes2", x2, pairwise=False)
    batch = _broadcast(function, s1[:-1], s2[:-1])
    r1, r2 = _rows(_expand(x1, batch + (4,))), _rows(_expand(x2, batch + (4,)))
    # torchvision's mean of no boxes is 0 * sum, a 0.0 that backpropagates.
    run = "sum" if reduction == "mean" and r1.shape[0] == 0 else reduction
    if d.select_backend(function, backend, x1, x2) == "torch":
        t1, t2 = _torch_floats(function, {"boxes1": r1, "boxes2": r2})
        out = d.torch_implementation("boxes").box_loss(function, kind, t1, t2, run, eps_value)
    else:
        a1, a2 = _rust_floats(function, {"boxes1": r1, "boxes2": r2})
        # The kernel's empty sum is -0.0 (IEEE's additive identity); torch's is 0.0.
        empty = run == "sum" and a1.shape[0] == 0
        out = np.zeros((), a1.dtype) if empty else _core.box_iou_loss(kind, a1, a2, run, eps_value)
    return d.like(out, x1).reshape(batch if reduction == "none" else ())


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
    d.check_vector(function, "scores", scores, d.shape_of(function, "boxes", boxes)[0])


def _max_output(function: str, max_output: object) -> int | None:
    if max_output is None:
        return None
    return d.check_int(function, "max_output", max_output, 0, "a count >= 0 or None")


def nms(
    boxes: ArrayLike,
    scores: ArrayLike,
    iou_threshold: float,
    *,
    max_output: int | None = None,
    backend: Backend = "auto",
) -> Array:
    """Greedy non-maximum suppression (NMS-GREEDY).

    Walks the boxes by descending score (ties: lower index first) and keeps a box
    unless it has IoU strictly greater than ``iou_threshold`` with a kept box.
    Equal to ``torchvision.ops.nms`` wherever scores are distinct.

    Args:
        boxes (Tensor[N, 4] | ndarray[N, 4]): ``(x1, y1, x2, y2)`` boxes.
        scores (Tensor[N] | ndarray[N]): finite scores.
        iou_threshold (float): in [0, 1].
        max_output (int | None): keep at most this many boxes (NMS-TOPK): the walk
            stops there, so the result is the first ``max_output`` of the full one.

    Returns:
        Tensor[K] | ndarray[K] (int64): indices of the kept boxes, by descending score.
    """
    boxes, scores = _array("nms", "boxes", boxes), _array("nms", "scores", scores)
    _boxes_and_scores("nms", boxes, scores)
    threshold = d.check_unit_interval("nms", "iou_threshold", iou_threshold)
    limit = _max_output("nms", max_output)
    if d.select_backend("nms", backend, boxes, scores) == "torch":
        tb, ts = _torch_floats("nms", {"boxes": boxes, "scores": scores})
        return d.like(d.torch_implementation("boxes").nms("nms", tb, ts, threshold)[:limit], boxes)
    b, s = _rust_floats("nms", {"boxes": boxes, "scores": scores})
    return d.like(_core.nms(b, s, threshold, limit), boxes)


def batched_nms(
    boxes: ArrayLike,
    scores: ArrayLike,
    idxs: ArrayLike,
    iou_threshold: float,
    *,
    max_output: int | None = None,
    backend: Backend = "auto",
) -> Array:
    """NMS run independently per category (NMS-BATCHED).

    Args:
        boxes (Tensor[N, 4] | ndarray[N, 4]): ``(x1, y1, x2, y2)`` boxes.
        scores (Tensor[N] | ndarray[N]): finite scores.
        idxs (Tensor[N] | ndarray[N]): integer category of each box.
        iou_threshold (float): in [0, 1].
        max_output (int | None): keep at most this many boxes (NMS-TOPK): the first
            ``max_output`` of the full result (each category's walk stops there).

    Returns:
        Tensor[K] | ndarray[K] (int64): kept indices by descending score (ties: lower index first).
    """
    threshold = d.check_unit_interval("batched_nms", "iou_threshold", iou_threshold)
    limit = _max_output("batched_nms", max_output)
    boxes = _array("batched_nms", "boxes", boxes)
    d.check_matrix("batched_nms", "boxes", boxes, 4)
    if d.shape_of("batched_nms", "boxes", boxes)[0] == 0:
        # torchvision's fast path: no boxes, nothing kept, scores and idxs unread.
        return d.like(np.empty(0, np.int64), boxes)
    scores = _array("batched_nms", "scores", scores)
    _boxes_and_scores("batched_nms", boxes, scores)
    d.check_vector("batched_nms", "idxs", idxs, d.shape_of("batched_nms", "boxes", boxes)[0])
    if d.select_backend("batched_nms", backend, boxes, scores, idxs) == "torch":
        tb, ts = _torch_floats("batched_nms", {"boxes": boxes, "scores": scores})
        tclasses = d.index_tensor("batched_nms", "idxs", idxs, tb.device)
        return d.like(d.torch_implementation("boxes").batched_nms(tb, ts, tclasses, threshold)[:limit], boxes)
    b, s = _rust_floats("batched_nms", {"boxes": boxes, "scores": scores})
    classes = d.index_array("batched_nms", "idxs", idxs)
    return d.like(_core.batched_nms(b, s, classes, threshold, limit), boxes)


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
    boxes, scores = _array("soft_nms", "boxes", boxes), _array("soft_nms", "scores", scores)
    _boxes_and_scores("soft_nms", boxes, scores)
    threshold = d.check_unit_interval("soft_nms", "iou_threshold", iou_threshold)
    sigma = d.check_float("soft_nms", "sigma", sigma)
    if not (math.isfinite(sigma) and sigma > 0):
        raise value_error("soft_nms", "sigma", "a finite value > 0", repr(sigma))
    score_threshold = d.check_float("soft_nms", "score_threshold", score_threshold)
    if not math.isfinite(score_threshold):
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
    boxes, scores = _array("matrix_nms", "boxes", boxes), _array("matrix_nms", "scores", scores)
    _boxes_and_scores("matrix_nms", boxes, scores)
    if idxs is not None:
        d.check_vector("matrix_nms", "idxs", idxs, d.shape_of("matrix_nms", "boxes", boxes)[0])
    sigma = d.check_float("matrix_nms", "sigma", sigma)
    if kernel == "gaussian" and not (math.isfinite(sigma) and sigma > 0):
        raise value_error("matrix_nms", "sigma", "a finite value > 0", repr(sigma))
    if d.select_backend("matrix_nms", backend, boxes, scores, idxs) == "torch":
        tb, ts = _torch_floats("matrix_nms", {"boxes": boxes, "scores": scores})
        tclasses = None if idxs is None else d.index_tensor("matrix_nms", "idxs", idxs, tb.device)
        return d.like(d.torch_implementation("boxes").matrix_nms(tb, ts, tclasses, kernel, float(sigma)), boxes)
    b, s = _rust_floats("matrix_nms", {"boxes": boxes, "scores": scores})
    classes = None if idxs is None else d.index_array("matrix_nms", "idxs", idxs)
    return d.like(_core.matrix_nms(b, s, classes, kernel, float(sigma)), boxes)
