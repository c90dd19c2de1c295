"""pycocotools.mask's API on Rust kernels: run-length encoded (RLE) instance
masks, their compressed ``counts`` strings, polygon rasterisation and mask IoU.

Formats and results are pycocotools' own (spec clauses MASK-*): an RLE is a dict
``{"size": [h, w], "counts": bytes}`` whose runs read the mask column by column,
starting with a run of 0s; ``counts`` come back as ``bytes`` byte-identical to
pycocotools', and are accepted as ``bytes``, ``str`` or a list of run lengths.
A single RLE in gives a single result out, a list gives a list (or a stacked
array), exactly as in pycocotools.

Beyond pycocotools: masks may be bool, in any memory order, or CPU tensors;
:func:`mask_iou` compares dense ``[N, H, W]`` masks. Malformed RLEs (runs not
summing to ``h * w``, bad characters), polygons of fewer than 3 points or with
NaN, and sizes that do not match raise ``ValueError`` where pycocotools crashes,
hangs or returns garbage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict, overload

import numpy as np
import numpy.typing as npt

from . import _core, _dispatch
from ._errors import describe, type_error, value_error

__all__ = ["encode", "decode", "area", "toBbox", "iou", "merge", "frPyObjects", "mask_iou"]


class RLE(TypedDict):
    """A run-length encoded mask as pycocotools stores it."""

    size: list[int]
    counts: bytes | str | list[int]


def _mask_array(function: str, argument: str, x: object) -> np.ndarray:
    """``x`` (array or tensor) as a NumPy uint8 array (bool viewed, not copied)."""
    if _dispatch.is_tensor(x):
        if str(x.dtype) not in ("torch.bool", "torch.uint8"):  # bfloat16 has no NumPy form
            raise type_error(function, argument, "a uint8 or bool mask", describe(x))
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise type_error(function, argument, "a uint8 or bool NumPy array or tensor", describe(x))
    if x.dtype == np.bool_:
        return x.view(np.uint8)
    if x.dtype != np.uint8:
        raise type_error(function, argument, "a uint8 or bool mask", describe(x))
    return x


def encode(bimask: Any) -> Any:
    """Run-length encodes binary masks.

    Args:
        bimask (ndarray or Tensor[H, W] or [H, W, N], uint8 or bool): masks in any
            memory order (pycocotools requires Fortran order). As in pycocotools a
            run ends wherever the value changes, so masks should hold 0 and 1.

    Returns:
        RLE for ``[H, W]``, list of ``N`` RLEs for ``[H, W, N]``.
    """
    masks = _mask_array("encode", "bimask", bimask)
    if masks.ndim == 2:
        return encode(masks[:, :, None])[0]
    if masks.ndim != 3:
        raise value_error("encode", "bimask", "a mask of shape [H, W] or [H, W, N]", f"shape {masks.shape}")
    h, w, n = masks.shape
    per_mask_c_order = masks.transpose(2, 0, 1)
    if not masks.flags.f_contiguous and per_mask_c_order.flags.c_contiguous:
        # [N, H, W] C-order data seen as [H, W, N]: transposed in Rust, no copy here.
        return _core.mask_encode(per_mask_c_order.reshape(-1), h, w, n, True, False)
    flat = _dispatch.contiguous("encode", "bimask", masks, masks.dtype, order="F").reshape(-1, order="F")
    return _core.mask_encode(flat, h, w, n, False, False)


def _rle_list(function: str, argument: str, objs: object) -> tuple[list[Any], bool]:
    """``(list of RLEs, was one RLE)``."""
    if isinstance(objs, dict):
        return [objs], True
    if isinstance(objs, (list, tuple)):
        return list(objs), False
    raise type_error(function, argument, "an RLE dict or a list of them", describe(objs))


@overload
def decode(rleObjs: RLE) -> npt.NDArray[np.uint8]: ...
@overload
def decode(rleObjs: Sequence[RLE]) -> npt.NDArray[np.uint8]: ...
def decode(rleObjs: Any) -> npt.NDArray[np.uint8]:  # noqa: N803 (pycocotools' name)
    """Decodes RLEs into masks.

    Returns:
        ndarray[H, W] uint8 for one RLE, ndarray[H, W, N] (Fortran order) for a
        list of RLEs of one size.
    """
    rles, single = _rle_list("decode", "rleObjs", rleObjs)
    flat, h, w = _core.mask_decode(rles)
    masks = flat.reshape((h, w, len(rles)), order="F")
    return masks[:, :, 0] if single else masks


def area(rleObjs: Any) -> Any:  # noqa: N803
    """Foreground pixels of RLEs: ``np.uint32`` for one, ndarray[N] uint32 for a list."""
    rles, single = _rle_list("area", "rleObjs", rleObjs)
    areas = _core.mask_area(rles)
    return areas[0] if single else areas


def toBbox(rleObjs: Any) -> npt.NDArray[np.float64]:  # noqa: N802, N803
    """``[x, y, width, height]`` boxes of RLEs: ndarray[4] for one, [N, 4] for a list."""
    rles, single = _rle_list("toBbox", "rleObjs", rleObjs)
    boxes = _core.mask_to_bbox(rles)
    return boxes[0] if single else boxes


def merge(rleObjs: Sequence[RLE], intersect: bool = False) -> RLE:  # noqa: N803
    """Union (or, with ``intersect``, intersection) of RLEs of one size, as one RLE.
    An empty list gives the empty ``[0, 0]`` mask, as in pycocotools."""
    if not isinstance(rleObjs, (list, tuple)):
        raise type_error("merge", "rleObjs", "a list of RLE dicts", describe(rleObjs))
    return _core.mask_merge(list(rleObjs), _dispatch.check_bool("merge", "intersect", intersect))


def _is_box(obj: object) -> bool:
    return isinstance(obj, (list, tuple, np.ndarray)) and len(obj) == 4 and not isinstance(obj, dict)


def _boxes(function: str, argument: str, x: object) -> npt.NDArray[np.float64]:
    try:
        boxes = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise type_error(function, argument, "[N, 4] boxes of numbers", describe(x)) from exc
    if boxes.ndim == 1 and boxes.shape[0] == 4:
        boxes = boxes[None, :]
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise value_error(function, argument, "boxes of shape [N, 4]", f"shape {boxes.shape}")
    return np.ascontiguousarray(boxes)


def _iou_operand(argument: str, objs: object) -> tuple[str, Any, int]:
    """``(kind, data, count)``: kind "rle" (a list of dicts) or "box" ([N, 4])."""
    if isinstance(objs, np.ndarray):
        boxes = _boxes("iou", argument, objs)
        return "box", boxes, len(boxes)
    if not isinstance(objs, (list, tuple)):
        raise type_error("iou", argument, "a list of RLEs, a list of boxes or an [N, 4] array", describe(objs))
    if all(isinstance(o, dict) for o in objs):
        return "rle", list(objs), len(objs)
    if all(_is_box(o) for o in objs):
        boxes = _boxes("iou", argument, objs)
        return "box", boxes, len(boxes)
    raise type_error("iou", argument, "a list of RLE dicts or of [x, y, w, h] boxes", "a mixed or other list")


def iou(dt: Any, gt: Any, pyiscrowd: Any) -> Any:
    """IoU of detections against ground truths, both RLEs or both ``[x, y, w, h]``
    boxes. A crowd ground truth scores intersection over the detection's area.

    Returns:
        ndarray[len(dt), len(gt)] float64; ``[]`` when either side is empty (as
        pycocotools); -1 for masks of different sizes whose boxes overlap.
    """
    kind_dt, data_dt, m = _iou_operand("dt", dt)
    kind_gt, data_gt, n = _iou_operand("gt", gt)
    try:
        crowd = np.asarray(pyiscrowd, dtype=np.uint8).astype(np.bool_).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise type_error("iou", "pyiscrowd", "a list of 0/1 crowd flags", describe(pyiscrowd)) from exc
    if m == 0 or n == 0:
        return []
    if kind_dt != kind_gt:
        raise type_error("iou", "gt", f"the same kind as dt ({kind_dt}s)", f"{kind_gt}s")
    if len(crowd) != n:
        raise value_error("iou", "pyiscrowd", f"one flag per ground truth ({n})", f"{len(crowd)} flags")
    if kind_dt == "rle":
        return _core.mask_iou(data_dt, data_gt, crowd)
    return _core.mask_box_iou(data_dt.reshape(-1), data_gt.reshape(-1), crowd)


def _size(function: str, argument: str, value: object) -> int:
    return _dispatch.check_int(function, argument, value, 0, "a non-negative image size")


def frPyObjects(pyobj: Any, h: int, w: int) -> Any:  # noqa: N802
    """Converts polygons, boxes or uncompressed RLEs of an ``h x w`` image to RLEs.

    Args:
        pyobj: a list of polygons ``[x0, y0, x1, y1, ...]`` (at least 3 points each),
            boxes (ndarray[N, 4] or a list of ``[x, y, w, h]``), a list of RLE dicts,
            or one RLE dict (its ``size`` must be ``[h, w]``).

    Returns:
        A list of RLEs, or one RLE for one RLE dict.
    """
    h, w = _size("frPyObjects", "h", h), _size("frPyObjects", "w", w)
    if isinstance(pyobj, dict):
        return frPyObjects([pyobj], h, w)[0]
    if isinstance(pyobj, np.ndarray):
        return _core.mask_from_boxes(_boxes("frPyObjects", "pyobj", pyobj).reshape(-1), h, w)
    if not isinstance(pyobj, (list, tuple)):
        raise type_error("frPyObjects", "pyobj", "polygons, boxes or RLE dicts", describe(pyobj))
    if len(pyobj) == 0:
        return []
    if isinstance(pyobj[0], dict):
        for i, obj in enumerate(pyobj):
            size = obj.get("size") if isinstance(obj, dict) else None
            if size is not None and [int(s) for s in size] != [h, w]:
                raise value_error("frPyObjects", f"pyobj[{i}]['size']", f"the image size [{h}, {w}]", list(size))
        return _core.mask_compress(list(pyobj))
    if _is_box(pyobj[0]):
        return _core.mask_from_boxes(_boxes("frPyObjects", "pyobj", pyobj).reshape(-1), h, w)
    return _polygons(pyobj, h, w)


def _polygons(polygons: Sequence[Any], h: int, w: int) -> list[Any]:
    # 1-D float64 arrays pass as they are; lists are read in Rust (no array each).
    as_lists = []
    for i, p in enumerate(polygons):
        if not isinstance(p, (list, tuple, np.ndarray)):
            raise type_error("frPyObjects", f"pyobj[{i}]", "a polygon [x0, y0, x1, y1, ...] of numbers", describe(p))
        as_lists.append(p if isinstance(p, (list, np.ndarray)) else list(p))
    parts = [
        np.ascontiguousarray(p, dtype=np.float64).reshape(-1) if isinstance(p, np.ndarray) else p for p in as_lists
    ]
    return _core.mask_from_polygons(parts, h, w)


def mask_iou(masks_a: Any, masks_b: Any) -> Any:
    """Pairwise IoU of dense masks (non-zero is foreground), through run lengths.

    Args:
        masks_a (ndarray or Tensor[N, H, W], bool or uint8): any memory order.
        masks_b (ndarray or Tensor[M, H, W], bool or uint8)

    Returns:
        ndarray or Tensor[N, M] float64 (of ``masks_a``'s kind): 0 where both masks
        are empty.
    """
    a = _mask_array("mask_iou", "masks_a", masks_a)
    b = _mask_array("mask_iou", "masks_b", masks_b)
    for name, x in (("masks_a", a), ("masks_b", b)):
        if x.ndim != 3:
            raise value_error("mask_iou", name, "masks of shape [N, H, W]", f"shape {x.shape}")
    if a.shape[1:] != b.shape[1:]:
        raise value_error("mask_iou", "masks_b", f"masks of size {a.shape[1:]} (masks_a's)", f"size {b.shape[1:]}")
    h, w = a.shape[1:]
    # Masks read in C order are the column-major masks of the transposed image,
    # whose IoU is the same: no transpose needed.
    if a.size == 0 or b.size == 0:
        result = np.zeros((a.shape[0], b.shape[0]), dtype=np.float64)
    else:
        flat_a = _dispatch.contiguous("mask_iou", "masks_a", a, a.dtype).reshape(-1)
        flat_b = _dispatch.contiguous("mask_iou", "masks_b", b, b.dtype).reshape(-1)
        result = _core.mask_dense_iou(flat_a, flat_b, w, h)
    return _dispatch.like(result, masks_a)
