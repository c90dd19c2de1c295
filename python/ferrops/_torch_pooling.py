"""PyTorch side of the pooling family: implementations for tensors on other devices
(and ``backend="torch"``), written from the SPEC clauses on top of torch's own
pooling primitives, and the ``torch.autograd.Function`` that runs the Rust kernels
forward and backward for CPU tensors that need gradients."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from . import _dispatch as d
from ._errors import value_error

if TYPE_CHECKING:
    from .pooling import PoolMode, _RustOp


def max_pool2d(x: torch.Tensor, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int]) -> torch.Tensor:
    return F.max_pool2d(x, k, s, p)


def sppf(x: torch.Tensor, k: int) -> torch.Tensor:
    """POOL-SPPF as YOLOv5 writes it: three chained stride-1 pools."""
    y1 = F.max_pool2d(x, k, 1, k // 2)
    y2 = F.max_pool2d(y1, k, 1, k // 2)
    y3 = F.max_pool2d(y2, k, 1, k // 2)
    return torch.cat([x, y1, y2, y3], dim=1)


def adaptive_pool2d(
    x: torch.Tensor, size: tuple[int, int], mode: PoolMode, return_indices: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    if mode == "max" and return_indices:
        return F.adaptive_max_pool2d(x, size, return_indices=True)
    if mode == "max":
        return F.adaptive_max_pool2d(x, size)
    return F.adaptive_avg_pool2d(x, size)


def spatial_pyramid_pool(x: torch.Tensor, levels: list[int], mode: PoolMode) -> torch.Tensor:
    """POOL-SPP: each level pooled to n x n adaptive bins, flattened channel-major."""
    n, c = x.shape[:2]
    pool = F.adaptive_max_pool2d if mode == "max" else F.adaptive_avg_pool2d
    return torch.cat([pool(x, (lv, lv)).reshape(n, c * lv * lv) for lv in levels], dim=1)


def _check_rois(function: str, rois: torch.Tensor, batch: int) -> None:
    if rois.numel() == 0:
        return
    if not bool(torch.isfinite(rois).all()):
        raise value_error(function, "boxes", "finite values", "a non-finite box")
    idx = rois[:, 0]
    bad = (idx < 0) | (idx >= batch) | (idx != idx.floor())
    if bool(bad.any()):
        k = int(torch.nonzero(bad)[0, 0])
        raise value_error(
            function, "boxes", f"batch indices that are integers in [0, {batch})", f"{idx[k].item()} in box {k}"
        )


def _torchvision(function: str) -> Any:
    try:
        import torchvision.ops
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"{function}(): the torch backend of RoI ops needs torchvision") from exc
    return torchvision.ops


def roi_pool(x: torch.Tensor, rois: torch.Tensor, size: tuple[int, int], scale: float) -> torch.Tensor:
    _check_rois("roi_pool", rois, x.shape[0])
    return _torchvision("roi_pool").roi_pool(x, rois, size, scale)


def roi_align(
    x: torch.Tensor, rois: torch.Tensor, size: tuple[int, int], scale: float, ratio: int, aligned: bool
) -> torch.Tensor:
    _check_rois("roi_align", rois, x.shape[0])
    return _torchvision("roi_align").roi_align(x, rois, size, scale, ratio if ratio > 0 else -1, aligned)


class _RustFunction(torch.autograd.Function):
    """Forward and backward in Rust; ``op`` is a ``pooling._RustOp`` (``function``
    names the public function, for autograd's graph printouts)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, function: str, op: _RustOp) -> torch.Tensor:
        a = d.kernel_array(function, "input", x)
        out, op.saved = op.forward(a)
        ctx.op, ctx.function = op, function
        ctx.save_for_backward(x)
        return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, None, None]:
        (x,) = ctx.saved_tensors
        a = d.kernel_array(ctx.function, "input", x)
        g = d.contiguous(ctx.function, "grad", d.float_array(ctx.function, "grad", grad), a.dtype)
        grad_x = ctx.op.backward(a, ctx.op.saved, g)
        return torch.from_numpy(grad_x).to(device=x.device, dtype=x.dtype), None, None


def rust_autograd(function: str, x: torch.Tensor, op: _RustOp) -> torch.Tensor:
    return _RustFunction.apply(x, function, op)
