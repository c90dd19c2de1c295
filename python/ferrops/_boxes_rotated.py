"""Rotated boxes (SPEC section 1: BOX-ROT-*, NMS-ROT), re-exported by :mod:`ferrops.boxes`.

A rotated box is ``(cx, cy, w, h, angle)``: centre, width, height and the angle
the box is turned by, **counter-clockwise on screen** (x to the right, y down),
detectron2's convention: at angle ``a`` the box's corner at local ``(w/2, h/2)``
sits at ``(cx + cos(a) w/2 + sin(a) h/2, cy - sin(a) w/2 + cos(a) h/2)``.
``angle_unit`` says whether angles are in degrees (``"deg"``, the default, as
detectron2 and torchvision) or radians (``"rad"``, as mmcv and ultralytics), and
``clockwise=True`` reads them clockwise on screen instead. So:

- detectron2 ``RotatedBoxes`` and torchvision's ``cxcywhr``: the defaults.
- mmcv (``clockwise=True``, its default) and ultralytics ``xywhr`` (angle in
  radians, the rotation matrix ``[[cos, -sin], [sin, cos]]``):
  ``angle_unit="rad", clockwise=True``; mmcv's ``clockwise=False``:
  ``angle_unit="rad"``.
- torchvision's ``xyxyxyxy`` corners and ``xywhr``: :func:`box_convert_rotated`
  (or ``ferrops.box_convert``) converts them to and from ``cxcywhr``.

Widths and heights must be >= 0 and every value finite (a ``ValueError`` names
the first bad box); angles may be any finite value (beyond +-pi too).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from . import _core
from . import _dispatch as d
from ._dispatch import Array, ArrayLike, Backend
from ._errors import value_error

AngleUnit = Literal["deg", "rad"]
OverlapMode = Literal["iou", "iof"]
RotatedFormat = Literal["cxcywhr", "xywhr", "xyxyxyxy"]
ROTATED_FORMATS = ("cxcywhr", "xywhr", "xyxyxyxy")


def _check_options(function: str, angle_unit: object, clockwise: object) -> bool:
    if angle_unit not in ("deg", "rad"):
        raise value_error(function, "angle_unit", "'deg' or 'rad'", repr(angle_unit))
    return d.check_bool(function, "clockwise", clockwise)


def _boxes(function: str, argument: str, x: ArrayLike) -> Array:
    x = x if d.is_tensor(x) else d.host_array(function, argument, x)
    d.check_matrix(function, argument, x, 5)
    return x


def _rust_pair(function: str, named: dict[str, Array]) -> list[np.ndarray]:
    arrays = {name: d.float_array(function, name, x) for name, x in named.items()}
    dtype = d.common_float_dtype(*arrays.values())
    return [d.contiguous(function, name, a, dtype) for name, a in arrays.items()]


def _torch_pair(function: str, named: dict[str, Array]) -> list[Any]:
    device = d.device_of(*named.values())
    tensors = [d.float_tensor(function, name, x, device) for name, x in named.items()]
    torch = d.torch_module()
    if any(t.dtype == torch.float64 for t in tensors):
        tensors = [t.double() for t in tensors]
    return tensors


def box_iou_rotated(
    boxes1: ArrayLike,
    boxes2: ArrayLike,
    mode: OverlapMode = "iou",
    aligned: bool = False,
    *,
    angle_unit: AngleUnit = "deg",
    clockwise: bool = False,
    backend: Backend = "auto",
) -> Array:
    """Exact overlaps of rotated boxes (BOX-ROT-IOU), mmcv's ``box_iou_rotated``
    argument order.

    The intersection is the exact polygon overlap (one rectangle clipped by the
    other's four edges, in float64 about the pair's midpoint). A box of zero area
    overlaps nothing (0), as in detectron2 and mmcv.

    Args:
        boxes1 (Tensor[N, 5] | ndarray[N, 5]): ``(cx, cy, w, h, angle)`` boxes.
        boxes2 (Tensor[M, 5] | ndarray[M, 5]): ``(cx, cy, w, h, angle)`` boxes
            (``M == N`` when ``aligned``).
        mode: "iou" (intersection over union) or "iof" (intersection over the
            area of the ``boxes1`` box).
        aligned: overlaps of the pairs ``(boxes1[i], boxes2[i])`` instead of all pairs.
        angle_unit: "deg" or "rad".
        clockwise: read angles clockwise on screen (mmcv's default) instead of
            counter-clockwise.
        backend: "auto", "rust" or "torch".

    Returns:
        Tensor[N, M] | ndarray[N, M] (Tensor[N] | ndarray[N] when ``aligned``):
        float64 when an input is float64, else float32.
    """
    function = "box_iou_rotated"
    if mode not in ("iou", "iof"):
        raise value_error(function, "mode", "'iou' or 'iof'", repr(mode))
    aligned = d.check_bool(function, "aligned", aligned)
    clockwise = _check_options(function, angle_unit, clockwise)
    b1, b2 = _boxes(function, "boxes1", boxes1), _boxes(function, "boxes2", boxes2)
    if aligned and b1.shape[0] != b2.shape[0]:
        raise value_error(function, "boxes2", f"as many boxes as boxes1 ({b1.shape[0]}) when aligned", b2.shape[0])
    if d.select_backend(function, backend, b1, b2) == "torch":
        t1, t2 = _torch_pair(function, {"boxes1": b1, "boxes2": b2})
        out = d.torch_implementation("boxes_rotated").box_iou_rotated(
            t1, t2, mode, aligned, _radians_per_unit(angle_unit, clockwise)
        )
        return d.like(out, b1)
    a1, a2 = _rust_pair(function, {"boxes1": b1, "boxes2": b2})
    out = _core.box_iou_rotated(a1, a2, mode, aligned, angle_unit, clockwise)
    if not aligned and out.size == 0:
        out = out.reshape(a1.shape[0], a2.shape[0])
    return d.like(out, b1)


def _radians_per_unit(angle_unit: str, clockwise: bool) -> float:
    """The signed factor that turns the caller's angles into counter-clockwise radians."""
    scale = math.pi / 180.0 if angle_unit == "deg" else 1.0
    return -scale if clockwise else scale


def _nms_inputs(
    function: str, boxes: ArrayLike, scores: ArrayLike, iou_threshold: object
) -> tuple[Array, Array, float]:
    b = _boxes(function, "boxes", boxes)
    s = scores if d.is_tensor(scores) else d.host_array(function, "scores", scores)
    d.check_vector(function, "scores", s, b.shape[0])
    return b, s, d.check_unit_interval(function, "iou_threshold", iou_threshold)


def nms_rotated(
    boxes: ArrayLike,
    scores: ArrayLike,
    iou_threshold: float,
    *,
    angle_unit: AngleUnit = "deg",
    clockwise: bool = False,
    backend: Backend = "auto",
) -> Array:
    """Greedy NMS of rotated boxes (NMS-ROT), detectron2's ``nms_rotated``.

    Walks the boxes by descending score (ties: lower index first) and drops a box
    whose IoU with a kept box is **>=** ``iou_threshold`` (detectron2's, mmcv's and
    torchvision's rotated kernels compare with ``>=``; axis-aligned ``nms`` with
    ``>``). So ``iou_threshold=0`` keeps only the best box.

    Args:
        boxes (Tensor[N, 5] | ndarray[N, 5]): ``(cx, cy, w, h, angle)`` boxes.
        scores (Tensor[N] | ndarray[N]): finite scores.
        iou_threshold (float): in [0, 1].
        angle_unit, clockwise: the angle convention (module docstring).

    Returns:
        Tensor[K] | ndarray[K] (int64): kept indices by descending score.
    """
    function = "nms_rotated"
    clockwise = _check_options(function, angle_unit, clockwise)
    b, s, threshold = _nms_inputs(function, boxes, scores, iou_threshold)
    if d.select_backend(function, backend, b, s) == "torch":
        tb, ts = _torch_pair(function, {"boxes": b, "scores": s})
        keep = d.torch_implementation("boxes_rotated").nms_rotated(
            tb, ts, None, threshold, _radians_per_unit(angle_unit, clockwise)
        )
        return d.like(keep, b)
    ab, as_ = _rust_pair(function, {"boxes": b, "scores": s})
    return d.like(_core.nms_rotated(ab, as_, threshold, angle_unit, clockwise), b)


def batched_nms_rotated(
    boxes: ArrayLike,
    scores: ArrayLike,
    idxs: ArrayLike,
    iou_threshold: float,
    *,
    angle_unit: AngleUnit = "deg",
    clockwise: bool = False,
    backend: Backend = "auto",
) -> Array:
    """:func:`nms_rotated` within each category (NMS-ROT), detectron2's
    ``batched_nms_rotated`` (which offsets the boxes per category; here the
    categories are walked separately, so no offset can lose precision).

    Args:
        boxes (Tensor[N, 5] | ndarray[N, 5]): ``(cx, cy, w, h, angle)`` boxes.
        scores (Tensor[N] | ndarray[N]): finite scores.
        idxs (Tensor[N] | ndarray[N]): integer category of each box.
        iou_threshold (float): in [0, 1].

    Returns:
        Tensor[K] | ndarray[K] (int64): kept indices by descending score (ties:
        lower index first).
    """
    function = "batched_nms_rotated"
    clockwise = _check_options(function, angle_unit, clockwise)
    b, s, threshold = _nms_inputs(function, boxes, scores, iou_threshold)
    d.check_vector(function, "idxs", idxs, b.shape[0])
    if d.select_backend(function, backend, b, s, idxs) == "torch":
        tb, ts = _torch_pair(function, {"boxes": b, "scores": s})
        classes = d.index_tensor(function, "idxs", idxs, tb.device)
        keep = d.torch_implementation("boxes_rotated").nms_rotated(
            tb, ts, classes, threshold, _radians_per_unit(angle_unit, clockwise)
        )
        return d.like(keep, b)
    ab, as_ = _rust_pair(function, {"boxes": b, "scores": s})
    classes_np = d.index_array(function, "idxs", idxs)
    return d.like(_core.batched_nms_rotated(ab, as_, classes_np, threshold, angle_unit, clockwise), b)


def probiou(
    boxes1: ArrayLike,
    boxes2: ArrayLike,
    aligned: bool = False,
    *,
    eps: float = 1e-7,
    angle_unit: AngleUnit = "deg",
    clockwise: bool = False,
) -> Array:
    """Probabilistic IoU of rotated boxes (BOX-ROT-PROBIOU), ultralytics'
    ``batch_probiou`` (``aligned=True``: its elementwise ``probiou``).

    Each box is a Gaussian with covariance ``R diag(w^2/12, h^2/12) R^T``;
    the value is ``1 - sqrt(1 - exp(-B) + eps)`` for the Bhattacharyya distance
    ``B`` clamped to ``[eps, 100]``, with ultralytics' ``eps`` placements.
    Computed in float64 with the input's array library (NumPy or torch, on its
    device).

    Args:
        boxes1 (Tensor[N, 5] | ndarray[N, 5]), boxes2 (Tensor[M, 5] | ndarray[M, 5]):
            ``(cx, cy, w, h, angle)`` boxes. For ultralytics' ``xywhr`` pass
            ``angle_unit="rad", clockwise=True``.
        aligned: pairs ``(boxes1[i], boxes2[i])`` instead of all pairs.
        eps (float): ultralytics' ``eps``.

    Returns:
        Tensor[N, M] | ndarray[N, M] (``[N]`` when aligned): float64 when an
        input is float64, else float32.
    """
    function = "probiou"
    aligned = d.check_bool(function, "aligned", aligned)
    clockwise = _check_options(function, angle_unit, clockwise)
    eps_value = d.check_float(function, "eps", eps)
    if not (math.isfinite(eps_value) and eps_value >= 0):
        raise value_error(function, "eps", "a finite value >= 0", repr(eps))
    b1, b2 = _boxes(function, "boxes1", boxes1), _boxes(function, "boxes2", boxes2)
    if aligned and b1.shape[0] != b2.shape[0]:
        raise value_error(function, "boxes2", f"as many boxes as boxes1 ({b1.shape[0]}) when aligned", b2.shape[0])
    use_torch = d.is_tensor(b1) or d.is_tensor(b2)
    if use_torch:
        t1, t2 = _torch_pair(function, {"boxes1": b1, "boxes2": b2})
        dtype = t1.dtype
        xp: Any = d.torch_module()
        x1, x2 = t1.double(), t2.double()
    else:
        a1, a2 = _rust_pair(function, {"boxes1": b1, "boxes2": b2})
        dtype = a1.dtype
        xp = np
        x1, x2 = a1.astype(np.float64), a2.astype(np.float64)
    for name, x in (("boxes1", x1), ("boxes2", x2)):
        _check_rotated_values(function, name, x, xp)
    if not aligned:
        x1, x2 = x1[:, None, :], x2[None, :, :]
    # ultralytics' angle turns [[cos, -sin], [sin, cos]]: clockwise on screen.
    sign = 1.0 if clockwise else -1.0
    scale = math.pi / 180.0 if angle_unit == "deg" else 1.0
    out = _probiou(x1, x2, sign * scale, eps_value, xp)
    return out.to(dtype) if use_torch else out.astype(dtype)


def _check_rotated_values(function: str, argument: str, x: Any, xp: Any) -> None:
    ok = xp.isfinite(x).all(1) & (x[:, 2] >= 0) & (x[:, 3] >= 0)
    bad = np.flatnonzero(~ok) if xp is np else xp.nonzero(~ok).flatten()
    if len(bad):
        i = int(bad[0])
        values = ", ".join(f"{float(v):g}" for v in x[i].tolist())
        raise value_error(
            function, argument, "finite (cx, cy, w, h, angle) boxes with w >= 0 and h >= 0", f"box {i} = [{values}]"
        )


def _covariance(b: Any, radians: float, xp: Any) -> tuple[Any, Any, Any]:
    a, bb = b[..., 2] ** 2 / 12, b[..., 3] ** 2 / 12
    angle = b[..., 4] * radians
    cos, sin = xp.cos(angle), xp.sin(angle)
    return a * cos**2 + bb * sin**2, a * sin**2 + bb * cos**2, (a - bb) * cos * sin


def _probiou(b1: Any, b2: Any, radians: float, eps: float, xp: Any) -> Any:
    """ultralytics' formula, term for term."""
    x1, y1, x2, y2 = b1[..., 0], b1[..., 1], b2[..., 0], b2[..., 1]
    a1, bb1, c1 = _covariance(b1, radians, xp)
    a2, bb2, c2 = _covariance(b2, radians, xp)
    det = (a1 + a2) * (bb1 + bb2) - (c1 + c2) ** 2
    t1 = ((a1 + a2) * (y1 - y2) ** 2 + (bb1 + bb2) * (x1 - x2) ** 2) / (det + eps) * 0.25
    t2 = ((c1 + c2) * (x2 - x1) * (y1 - y2)) / (det + eps) * 0.5
    own = xp.clip(a1 * bb1 - c1**2, 0, None) * xp.clip(a2 * bb2 - c2**2, 0, None)
    t3 = xp.log(det / (4 * xp.sqrt(own) + eps) + eps) * 0.5
    bd = xp.clip(t1 + t2 + t3, eps, 100.0)
    hd = xp.sqrt(1.0 - xp.exp(-bd) + eps)
    return 1 - hd


def box_convert_rotated(boxes: ArrayLike, in_fmt: RotatedFormat, out_fmt: RotatedFormat) -> Array:
    """Converts rotated boxes between torchvision's formats (BOX-ROT-CONVERT):
    ``cxcywhr`` (centre, size, angle in degrees counter-clockwise: the
    ``(cx, cy, w, h, angle)`` of the other functions), ``xywhr`` (the top-left
    corner instead of the centre) and ``xyxyxyxy`` (the corners top-left,
    top-right, bottom-right, bottom-left, "top" meaning the box's own -y side).
    torchvision's formulas, so ``torchvision.ops.box_convert`` gives the same
    numbers; ``xyxyxyxy -> *`` reads the angle and width from the first edge and
    the height from the second (exact for rectangles). Integer boxes are rounded
    back to their dtype, as there.

    Args:
        boxes (Tensor[N, 5 or 8] | ndarray[N, 5 or 8]): boxes in ``in_fmt``.
        in_fmt, out_fmt: "cxcywhr", "xywhr" or "xyxyxyxy".

    Returns:
        Tensor[N, 5 or 8] | ndarray[N, 5 or 8]: the boxes in ``out_fmt``.
    """
    function = "box_convert_rotated"
    for name, fmt in (("in_fmt", in_fmt), ("out_fmt", out_fmt)):
        if fmt not in ROTATED_FORMATS:
            raise value_error(function, name, f"one of {ROTATED_FORMATS}", repr(fmt))
    x: Any = boxes if d.is_tensor(boxes) else d.host_array(function, "boxes", boxes)
    d.check_matrix(function, "boxes", x, 8 if in_fmt == "xyxyxyxy" else 5)
    # Converted column by column in NumPy/torch: at least the 13 float64 columns
    # in and out must fit (a 2^40-row broadcast view would fail inside NumPy).
    d.check_allocation(function, f"converting argument 'boxes' ({x.shape[0]} boxes)", x.shape[0] * 13 * 8)
    if in_fmt == out_fmt:
        return x.clone() if d.is_tensor(x) else x.copy()
    is_tensor = d.is_tensor(x)
    xp: Any = d.torch_module() if is_tensor else np
    integer = not (x.dtype.is_floating_point if is_tensor else x.dtype.kind == "f")
    v = (x.double() if is_tensor else x.astype(np.float64)) if integer else x
    cols = [v[:, k] for k in range(v.shape[1])]
    stack = xp.stack if is_tensor else (lambda parts, dim: np.stack(parts, axis=dim))
    if in_fmt == "xyxyxyxy":
        x1, y1, x2, y2, x3, y3, _, _ = cols
        r = xp.atan2(y1 - y2, x2 - x1) if is_tensor else np.arctan2(y1 - y2, x2 - x1)
        angle = r * 180 / math.pi
        w = xp.sqrt((x2 - x1) ** 2 + (y1 - y2) ** 2)
        h = xp.sqrt((x3 - x2) ** 2 + (y3 - y2) ** 2)
        cols, in_fmt = [x1, y1, w, h, angle], "xywhr"
    if in_fmt == "xywhr" and out_fmt != "xyxyxyxy":
        x1, y1, w, h, angle = cols
        cos, sin = xp.cos(angle * math.pi / 180.0), xp.sin(angle * math.pi / 180.0)
        cols, in_fmt = [x1 + w / 2 * cos + h / 2 * sin, y1 - w / 2 * sin + h / 2 * cos, w, h, angle], "cxcywhr"
    if in_fmt == "cxcywhr" and out_fmt != "cxcywhr":
        cx, cy, w, h, angle = cols
        cos, sin = xp.cos(angle * math.pi / 180.0), xp.sin(angle * math.pi / 180.0)
        cols, in_fmt = [cx - w / 2 * cos - h / 2 * sin, cy - h / 2 * cos + w / 2 * sin, w, h, angle], "xywhr"
    if out_fmt == "xyxyxyxy":
        x1, y1, w, h, angle = cols
        cos, sin = xp.cos(angle * math.pi / 180.0), xp.sin(angle * math.pi / 180.0)
        x2, y2 = x1 + w * cos, y1 - w * sin
        cols = [x1, y1, x2, y2, x2 + h * sin, y2 + h * cos, x1 + h * sin, y1 + h * cos]
    out = stack(cols, 1)
    if integer:
        out = out.round().to(x.dtype) if is_tensor else np.round(out).astype(x.dtype)
    return out
