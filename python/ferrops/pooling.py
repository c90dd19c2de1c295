"""Pooling kernels (SPEC section 4): spatial pyramid pooling, SPPF, max and
adaptive pooling, RoI pooling and RoI align, with torch / torchvision names and
semantics.

Inputs are ``[N, C, H, W]`` NumPy arrays or tensors; results are of the input's
kind (see :mod:`ferrops._dispatch` for the backend rule). float32 and float64 run
in their own precision; float16, bfloat16 and other real dtypes are computed in
float32 and the result is cast back to a float16/bfloat16 input's dtype (max
pooling is exact in any of them).

Gradients: CPU tensors that require grad run the Rust kernels inside a
``torch.autograd.Function`` whose backward is a Rust kernel too. Max pooling sends
each output's gradient to the first arg max of its window (row-major; POOL-MAX),
average pooling spreads it evenly over the bin. Gradients are first order only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from . import _core
from . import _dispatch as d
from ._dispatch import Array, ArrayLike, Backend
from ._errors import describe, memory_error, type_error, value_error

if TYPE_CHECKING:
    import torch

__all__ = [
    "spatial_pyramid_pool",
    "sppf",
    "max_pool2d",
    "adaptive_max_pool2d",
    "adaptive_avg_pool2d",
    "roi_pool",
    "roi_align",
]

PoolMode = Literal["max", "avg"]
IntPair = int | tuple[int, int]
OutputSize = int | tuple[int | None, int | None]


# ---------------------------------------------------------------------------
# argument checks


def _check_nchw(function: str, argument: str, x: ArrayLike) -> tuple[int, int, int, int]:
    shape = d.shape_of(function, argument, x)
    if len(shape) != 4:
        raise value_error(function, argument, "a 4-D [N, C, H, W] input", f"shape {list(shape)}")
    n, c, h, w = (int(v) for v in shape)
    return n, c, h, w


def _int(function: str, argument: str, value: object, minimum: int) -> int:
    return d.check_int(function, argument, value, minimum, f"an int of at least {minimum}")


def _pair(function: str, argument: str, value: object, minimum: int) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise value_error(function, argument, "an int or a pair of ints", repr(value))
        return _int(function, argument, value[0], minimum), _int(function, argument, value[1], minimum)
    v = _int(function, argument, value, minimum)
    return v, v


def _output_size(function: str, value: object, hw: tuple[int, int]) -> tuple[int, int]:
    """torch's ``output_size``: an int, or a pair whose ``None`` keeps the input size."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise value_error(function, "output_size", "an int or a pair", repr(value))
        oh, ow = (hw[i] if v is None else _int(function, "output_size", v, 1) for i, v in enumerate(value))
        return oh, ow
    return _pair(function, "output_size", value, 1)


def _mode(function: str, mode: object) -> PoolMode:
    if mode == "max":
        return "max"
    if mode == "avg":
        return "avg"
    raise value_error(function, "mode", "'max' or 'avg'", repr(mode))


def _scale(function: str, value: object) -> float:
    v = d.check_float(function, "spatial_scale", value)
    if not np.isfinite(v) or v <= 0:
        raise value_error(function, "spatial_scale", "a positive finite number", repr(value))
    return v


def _roi_input(function: str, x: ArrayLike) -> ArrayLike:
    """The feature map as a tensor or NumPy array (its dtype kept), so that a bad
    nested list is blamed on ``input``, before ``boxes`` are converted to its dtype."""
    return x if d.is_tensor(x) else d.host_array(function, "input", x)


def _quantized(x: object) -> bool:
    return d.is_tensor(x) and bool(x.is_quantized)


def _requantized(function: str, x: Any, run: Callable[[torch.Tensor], Array]) -> Array:
    """torchvision's quantized RoI ops: computed on the dequantized feature map and
    quantized back with the input's scale, zero point and dtype."""
    torch = d.torch_module()
    if x.qscheme() != torch.per_tensor_affine:
        raise type_error(function, "input", "a float tensor or a per-tensor quantized one", f"qscheme {x.qscheme()}")
    out = run(x.dequantize())
    return torch.quantize_per_tensor(out, x.q_scale(), x.q_zero_point(), x.dtype)


def _dequantized_boxes(boxes: ArrayLike | Sequence[ArrayLike]) -> ArrayLike | Sequence[ArrayLike]:
    if isinstance(boxes, (list, tuple)):
        return [b.dequantize() if _quantized(b) else b for b in boxes]
    return boxes.dequantize() if _quantized(boxes) else boxes  # type: ignore[union-attr]


# ---------------------------------------------------------------------------
# dtypes and the Rust path


def _low_precision(x: ArrayLike) -> np.dtype | torch.dtype | None:
    """The dtype a result goes back to: float16/bfloat16 inputs, else None."""
    if d.is_tensor(x):
        torch = d.torch_module()
        return x.dtype if x.dtype in (torch.float16, torch.bfloat16) else None
    dtype = getattr(x, "dtype", None)
    return np.dtype(np.float16) if dtype == np.float16 else None


def _kernel_dtype(x: ArrayLike) -> np.dtype:
    """The dtype the Rust kernels run ``x`` in (the dtype rule of _dispatch)."""
    return (
        np.dtype(np.float64) if str(getattr(x, "dtype", "")) in ("float64", "torch.float64") else np.dtype(np.float32)
    )


def _back(result: np.ndarray, x: ArrayLike) -> Array:
    """A Rust result as the kind and (low-precision) dtype of the input ``x``."""
    out = d.like(result, x)
    low = _low_precision(x)
    if low is None:
        return out
    # The ignore is needed only where torch is installed (mypy then types `.to`).
    return out.to(low) if d.is_tensor(out) else out.astype(low)  # type: ignore[arg-type, unused-ignore]


def _needs_grad(x: ArrayLike) -> bool:
    if not d.is_tensor(x):
        return False
    return bool(d.torch_module().is_grad_enabled() and x.requires_grad)


class _RustOp:
    """One differentiable Rust call: ``forward(x) -> (out, saved)`` and
    ``backward(x, saved, grad) -> grad_x`` on contiguous float32/float64 arrays;
    ``inference(x) -> out``, when given, is a faster forward for calls that keep
    nothing for a backward pass."""

    def __init__(
        self,
        forward: Callable[[np.ndarray], tuple[np.ndarray, Any]],
        backward: Callable[[np.ndarray, Any, np.ndarray], np.ndarray],
        inference: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.forward = forward
        self.backward = backward
        self.inference = inference
        self.saved: Any = None


def _run(function: str, x: ArrayLike, op: _RustOp) -> Array:
    """Runs ``op`` on the Rust path: through autograd when ``x`` needs a gradient."""
    if _needs_grad(x):
        return d.torch_implementation("pooling").rust_autograd(function, x, op)
    a = d.kernel_array(function, "input", x)
    if op.inference is not None:
        return _back(op.inference(a), x)
    out, op.saved = op.forward(a)
    return _back(out, x)


def _torch_input(function: str, x: ArrayLike) -> torch.Tensor:
    """``x`` as a floating tensor (NumPy inputs without a copy; float16/bfloat16 kept)."""
    torch = d.require_torch(function)
    if d.is_tensor(x):
        t = x
    else:
        a = d.host_array(function, "input", x)
        if a.dtype.kind not in "fiub":
            raise type_error(function, "input", "real numbers", describe(a))
        t = torch.as_tensor(a)
    if t.is_complex():
        raise type_error(function, "input", "real numbers", describe(t))
    return t if t.is_floating_point() else d.converted_tensor(function, "input", t, torch.float32)


# ---------------------------------------------------------------------------
# public API


def max_pool2d(
    input: ArrayLike,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    *,
    backend: Backend = "auto",
) -> Array:
    """2-D max pooling with torch's semantics (POOL-MAX): ``-inf`` padding, NaN
    propagates, output ``floor((H + 2 p - k) / s) + 1`` (no dilation, no ceil mode).

    Args:
        input (Tensor[N, C, H, W] | ndarray[N, C, H, W]): the feature map.
        kernel_size (int | tuple[int, int]): window size, at least 1.
        stride (int | tuple[int, int] | None): step; ``None`` means ``kernel_size``.
        padding (int | tuple[int, int]): implicit ``-inf`` border, at most half the kernel.
        backend: "auto", "rust" or "torch".

    Returns:
        Tensor[N, C, OH, OW] | ndarray[N, C, OH, OW]
    """
    F = "max_pool2d"
    n, c, h, w = _check_nchw(F, "input", input)
    k = _pair(F, "kernel_size", kernel_size, 1)
    s = k if stride is None else _pair(F, "stride", stride, 1)
    p = _pair(F, "padding", padding, 0)
    for i in range(2):
        if p[i] > k[i] // 2:
            raise value_error(F, "padding", f"at most half the kernel size {k}", p)
        if (h, w)[i] + 2 * p[i] < k[i]:
            raise value_error(F, "input", f"a padded size of at least the kernel {k}", f"{h}x{w} padded by {p}")
    if d.select_backend(F, backend, input, rust_autograd=True) == "torch":
        return d.like(d.torch_implementation("pooling").max_pool2d(_torch_input(F, input), k, s, p), input)
    return _run(
        F,
        input,
        _RustOp(
            lambda a: (_core.max_pool2d(a, k, s, p), None),
            lambda a, _, g: _core.max_pool2d_backward(a, k, s, p, g),
        ),
    )


def sppf(input: ArrayLike, kernel_size: int = 5, *, backend: Backend = "auto") -> Array:
    """SPPF, YOLOv5's fast spatial pyramid pooling (POOL-SPPF).

    ``y1 = maxpool(x)``, ``y2 = maxpool(y1)``, ``y3 = maxpool(y2)`` with kernel
    ``k``, stride 1 and padding ``k // 2``, concatenated on channels: the same as
    SPP with kernels ``k, 2k - 1, 3k - 2``. Computed plane by plane in one pass over
    the input.

    Args:
        input (Tensor[N, C, H, W] | ndarray[N, C, H, W]): the feature map.
        kernel_size (int): odd window size (5 in YOLOv5).

    Returns:
        Tensor[N, 4 C, H, W] | ndarray[N, 4 C, H, W]: ``concat(x, y1, y2, y3)``.
    """
    F = "sppf"
    _check_nchw(F, "input", input)
    k = _int(F, "kernel_size", kernel_size, 1)
    if k % 2 == 0:
        raise value_error(F, "kernel_size", "an odd kernel size", k)
    if d.select_backend(F, backend, input, rust_autograd=True) == "torch":
        return d.like(d.torch_implementation("pooling").sppf(_torch_input(F, input), k), input)
    return _run(
        F,
        input,
        _RustOp(
            lambda a: (_core.sppf(a, k), None),
            lambda a, _, g: _core.sppf_backward(a, k, g),
        ),
    )


def _adaptive(
    F: str, input: ArrayLike, output_size: OutputSize, mode: PoolMode, backend: Backend, return_indices: bool = False
) -> Array | tuple[Array, Array]:
    n, c, h, w = _check_nchw(F, "input", input)
    size = _output_size(F, output_size, (h, w))
    if n * c > 0 and h * w == 0:
        raise value_error(F, "input", "a non-empty spatial size", f"{h}x{w}")
    if d.select_backend(F, backend, input, rust_autograd=True) == "torch":
        out = d.torch_implementation("pooling").adaptive_pool2d(_torch_input(F, input), size, mode, return_indices)
        return tuple(d.like(t, input) for t in out) if return_indices else d.like(out, input)
    if return_indices:
        op = _RustOp(
            lambda a: _core.adaptive_max_pool2d_with_indices(a, size),
            lambda a, _, g: _core.adaptive_pool2d_backward(a, size, "max", g),
        )
        values = _run(F, input, op)
        return values, d.like(op.saved, input)
    return _run(
        F,
        input,
        _RustOp(
            lambda a: (_core.adaptive_pool2d(a, size, mode), None),
            lambda a, _, g: _core.adaptive_pool2d_backward(a, size, mode, g),
        ),
    )


def adaptive_max_pool2d(
    input: ArrayLike, output_size: OutputSize, return_indices: bool = False, *, backend: Backend = "auto"
) -> Array | tuple[Array, Array]:
    """Adaptive max pooling (POOL-ADAPTIVE): output bin ``i`` of ``n`` over an
    extent ``a`` covers ``[floor(i a / n), ceil((i + 1) a / n))``, as in torch.

    Args:
        input (Tensor[N, C, H, W] | ndarray[N, C, H, W]): the feature map.
        output_size (int | tuple[int | None, int | None]): ``(OH, OW)``; ``None`` keeps that input size.
        return_indices (bool): also return each bin's first arg max as a flat
            ``h * W + w`` index in its plane (int64), like torch.

    Returns:
        Tensor[N, C, OH, OW] | ndarray[N, C, OH, OW], and the indices when asked.
    """
    if not isinstance(return_indices, bool):
        raise type_error("adaptive_max_pool2d", "return_indices", "a bool", type(return_indices).__name__)
    return _adaptive("adaptive_max_pool2d", input, output_size, "max", backend, return_indices)


def adaptive_avg_pool2d(input: ArrayLike, output_size: OutputSize, *, backend: Backend = "auto") -> Array:
    """Adaptive average pooling (POOL-ADAPTIVE bins, torch's semantics).

    Args:
        input (Tensor[N, C, H, W] | ndarray[N, C, H, W]): the feature map.
        output_size (int | tuple[int | None, int | None]): ``(OH, OW)``; ``None`` keeps that input size.

    Returns:
        Tensor[N, C, OH, OW] | ndarray[N, C, OH, OW]: each bin's mean.
    """
    return cast(Array, _adaptive("adaptive_avg_pool2d", input, output_size, "avg", backend))


def spatial_pyramid_pool(
    input: ArrayLike, levels: Sequence[int] = (4, 2, 1), mode: PoolMode = "max", *, backend: Backend = "auto"
) -> Array:
    """Spatial pyramid pooling (SPP-net; POOL-SPP): a fixed-length vector from any
    input size.

    Each level ``n`` is pooled to ``n x n`` adaptive bins (POOL-ADAPTIVE, so maps
    smaller than ``n`` work: bins overlap), flattened channel-major (``C x n x n``),
    and the levels are concatenated in the given order.

    Args:
        input (Tensor[N, C, H, W] | ndarray[N, C, H, W]): the feature map.
        levels (Sequence[int]): bins per side of each level, each at least 1 (SPP-net: ``(6, 3, 2, 1)``).
        mode: "max" or "avg".

    Returns:
        Tensor[N, C * sum(n^2)] | ndarray[N, C * sum(n^2)]
    """
    F = "spatial_pyramid_pool"
    n, c, h, w = _check_nchw(F, "input", input)
    if isinstance(levels, (str, bytes)) or not hasattr(levels, "__iter__"):
        raise type_error(F, "levels", "a sequence of ints", type(levels).__name__)
    lv = [_int(F, "levels", v, 1) for v in levels]
    if not lv:
        raise value_error(F, "levels", "at least one level", "none")
    mode = _mode(F, mode)
    if n * c > 0 and h * w == 0:
        raise value_error(F, "input", "a non-empty spatial size", f"{h}x{w}")
    if d.select_backend(F, backend, input, rust_autograd=True) == "torch":
        return d.like(d.torch_implementation("pooling").spatial_pyramid_pool(_torch_input(F, input), lv, mode), input)
    return _run(
        F,
        input,
        _RustOp(
            lambda a: (_core.spatial_pyramid_pool(a, lv, mode), None),
            lambda a, _, g: _core.spatial_pyramid_pool_backward(a, lv, mode, g),
        ),
    )


def _check_roi_shape(function: str, shape: tuple[int, ...], image: int | None) -> None:
    """``boxes`` is one ``[K, 5]`` array, or (``image`` given) that image's ``[L, 4]`` array of a list."""
    if image is not None:
        if len(shape) != 2 or shape[1] != 4:
            raise value_error(
                function, "boxes", "a list of [L, 4] boxes per image", f"shape {list(shape)} for image {image}"
            )
    elif len(shape) != 2 or shape[1] != 5:
        raise value_error(
            function,
            "boxes",
            "a [K, 5] array of (batch_index, x1, y1, x2, y2) or a list of [L, 4] arrays",
            f"shape {list(shape)}",
        )


def _rois_array(function: str, boxes: ArrayLike | Sequence[ArrayLike], dtype: np.dtype) -> np.ndarray:
    """``boxes`` as a contiguous ``[K, 5]`` array ``(batch_index, x1, y1, x2, y2)``."""
    if isinstance(boxes, (list, tuple)):
        parts = []
        for i, b in enumerate(boxes):
            a = d.float_array(function, "boxes", b)
            _check_roi_shape(function, a.shape, i)
            try:
                parts.append(np.concatenate([np.full((a.shape[0], 1), i, dtype=dtype), a.astype(dtype)], axis=1))
            except MemoryError:
                raise memory_error(function, "boxes", (a.shape[0], 5), dtype) from None
        return np.concatenate(parts) if parts else np.zeros((0, 5), dtype)
    a = d.float_array(function, "boxes", boxes)
    _check_roi_shape(function, a.shape, None)
    return d.contiguous(function, "boxes", a, dtype)


def _rois_tensor(function: str, boxes: ArrayLike | Sequence[ArrayLike], input: ArrayLike) -> torch.Tensor:
    """``boxes`` as one ``[K, 5]`` tensor on the input's device and dtype."""
    torch = d.require_torch(function)
    t_in = _torch_input(function, input)
    if isinstance(boxes, (list, tuple)):
        rows = []
        for i, b in enumerate(boxes):
            bt = d.float_tensor(function, "boxes", b)
            _check_roi_shape(function, tuple(bt.shape), i)
            bt = bt.to(device=t_in.device, dtype=t_in.dtype)
            rows.append(torch.cat([torch.full_like(bt[:, :1], i), bt], dim=1))
        return torch.cat(rows) if rows else torch.zeros((0, 5), dtype=t_in.dtype, device=t_in.device)
    bt = d.float_tensor(function, "boxes", boxes)
    _check_roi_shape(function, tuple(bt.shape), None)
    return bt.to(device=t_in.device, dtype=t_in.dtype)


def roi_pool(
    input: ArrayLike,
    boxes: ArrayLike | Sequence[ArrayLike],
    output_size: IntPair,
    spatial_scale: float = 1.0,
    *,
    backend: Backend = "auto",
) -> Array:
    """RoI max pooling with torchvision's semantics (POOL-ROI): box corners scaled
    and rounded to pixels, size ``x2 - x1 + 1``, bins ``floor``/``ceil`` of the
    fractional edges; an empty bin gives 0.

    Args:
        input (Tensor[N, C, H, W] | ndarray[N, C, H, W]): the feature map.
        boxes (Tensor[K, 5] | list[Tensor[L, 4]]): ``(batch_index, x1, y1, x2, y2)``
            rows, or one ``(x1, y1, x2, y2)`` array per image.
        output_size (int | tuple[int, int]): ``(PH, PW)``.
        spatial_scale (float): maps box coordinates to the input's (e.g. 1/16).

    Returns:
        Tensor[K, C, PH, PW] | ndarray[K, C, PH, PW]
    """
    F = "roi_pool"
    input = _roi_input(F, input)
    if _quantized(input):
        return _requantized(
            F, input, lambda x: roi_pool(x, _dequantized_boxes(boxes), output_size, spatial_scale, backend=backend)
        )
    shape = _check_nchw(F, "input", input)
    size = _pair(F, "output_size", output_size, 1)
    scale = _scale(F, spatial_scale)
    box_list = boxes if isinstance(boxes, (list, tuple)) else [boxes]
    if d.select_backend(F, backend, input, *box_list, rust_autograd=True) == "torch":
        return d.like(
            d.torch_implementation("pooling").roi_pool(
                _torch_input(F, input), _rois_tensor(F, boxes, input), size, scale
            ),
            input,
        )
    rois = _rois_array(F, boxes, _kernel_dtype(input))
    return _run(
        F,
        input,
        _RustOp(
            lambda a: _core.roi_pool_with_argmax(a, rois, size, scale),
            lambda a, argmax, g: _core.roi_pool_backward(g, argmax, rois, shape, size),
            inference=lambda a: _core.roi_pool(a, rois, size, scale),
        ),
    )


def roi_align(
    input: ArrayLike,
    boxes: ArrayLike | Sequence[ArrayLike],
    output_size: IntPair,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    *,
    backend: Backend = "auto",
) -> Array:
    """RoI align with torchvision's semantics (POOL-ROI): each bin is the mean of
    bilinear samples on a regular grid.

    Args:
        input (Tensor[N, C, H, W] | ndarray[N, C, H, W]): the feature map.
        boxes (Tensor[K, 5] | list[Tensor[L, 4]]): ``(batch_index, x1, y1, x2, y2)``
            rows, or one ``(x1, y1, x2, y2)`` array per image.
        output_size (int | tuple[int, int]): ``(PH, PW)``.
        spatial_scale (float): maps box coordinates to the input's.
        sampling_ratio (int): samples per bin side; ``<= 0`` means ``ceil(bin size)``.
        aligned (bool): shift boxes by -0.5 pixel (Detectron2's correct alignment);
            ``False`` is the legacy mode, which also makes boxes at least 1x1.

    Returns:
        Tensor[K, C, PH, PW] | ndarray[K, C, PH, PW]
    """
    F = "roi_align"
    input = _roi_input(F, input)
    if _quantized(input):
        return _requantized(
            F,
            input,
            lambda x: roi_align(
                x, _dequantized_boxes(boxes), output_size, spatial_scale, sampling_ratio, aligned, backend=backend
            ),
        )
    shape = _check_nchw(F, "input", input)
    size = _pair(F, "output_size", output_size, 1)
    scale = _scale(F, spatial_scale)
    ratio = max(d.check_int(F, "sampling_ratio", sampling_ratio, d.INT64_MIN, "an int"), 0)
    aligned = d.check_bool(F, "aligned", aligned)
    box_list = boxes if isinstance(boxes, (list, tuple)) else [boxes]
    if d.select_backend(F, backend, input, *box_list, rust_autograd=True) == "torch":
        t = d.torch_implementation("pooling").roi_align(
            _torch_input(F, input), _rois_tensor(F, boxes, input), size, scale, ratio, bool(aligned)
        )
        return d.like(t, input)
    rois = _rois_array(F, boxes, _kernel_dtype(input))
    return _run(
        F,
        input,
        _RustOp(
            lambda a: (_core.roi_align(a, rois, size, scale, ratio, bool(aligned)), None),
            lambda a, _, g: _core.roi_align_backward(g, rois, shape, size, scale, ratio, bool(aligned)),
        ),
    )
