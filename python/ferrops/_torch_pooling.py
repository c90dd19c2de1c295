"""PyTorch side of the pooling family: implementations for tensors on other devices
(and ``backend="torch"``), written from the SPEC clauses on top of torch's own
pooling primitives, and the ``torch.autograd.Function`` that runs the Rust kernels
forward and backward for CPU tensors that need gradients."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def max_pool2d(x: torch.Tensor, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int]) -> torch.Tensor:
    return F.max_pool2d(x, k, s, p)


def sppf(x: torch.Tensor, k: int) -> torch.Tensor:
    """POOL-SPPF as YOLOv5 writes it: three chained stride-1 pools."""
    y1 = F.max_pool2d(x, k, 1, k // 2)
    y2 = F.max_pool2d(y1, k, 1, k // 2)
    y3 = F.max_pool2d(y2, k, 1, k // 2)
    return torch.cat([x, y1, y2, y3], dim=1)


def adaptive_pool2d(x: torch.Tensor, size: tuple[int, int], mode: str, return_indices: bool = False) -> Any:
    if mode == "max":
        return F.adaptive_max_pool2d(x, size, return_indices=return_indices)
    return F.adaptive_avg_pool2d(x, size)


def spatial_pyramid_pool(x: torch.Tensor, levels: list[int], mode: str) -> torch.Tensor:
    """POOL-SPP: each level pooled to n x n adaptive bins, flattened channel-major."""
    n, c = x.shape[:2]
    return torch.cat([adaptive_pool2d(x, (lv, lv), mode).reshape(n, c * lv * lv) for lv in levels], dim=1)


def _check_rois(function: str, rois: torch.Tensor, batch: int) -> None:
    if rois.numel() == 0:
        return
    if not bool(torch.isfinite(rois).all()):
        raise ValueError(f"{function}(): argument 'boxes': expected finite values, got a non-finite box")
    idx = rois[:, 0]
    bad = (idx < 0) | (idx >= batch) | (idx != idx.floor())
    if bool(bad.any()):
        k = int(torch.nonzero(bad)[0, 0])
        raise ValueError(
            f"{function}(): argument 'boxes': expected batch indices that are integers in [0, {batch}), "
            f"got {idx[k].item()} in box {k}"
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


def _numpy(t: torch.Tensor, dtype: np.dtype | None = None) -> np.ndarray:
    """A CPU tensor as a contiguous float32/float64 array (low precision upcast)."""
    t = t.detach()
    if dtype is None:
        dtype = np.dtype(np.float64) if t.dtype == torch.float64 else np.dtype(np.float32)
    return np.ascontiguousarray(t.to(torch.float64 if dtype == np.float64 else torch.float32).cpu().numpy())


class _RustFunction(torch.autograd.Function):
    """Forward and backward in Rust; ``op`` is a ``pooling._RustOp`` (``function``
    names the public function, for autograd's graph printouts)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, function: str, op: Any) -> torch.Tensor:
        a = _numpy(x)
        out, op.saved = op.forward(a)
        ctx.op = op
        ctx.save_for_backward(x)
        return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, None, None]:
        (x,) = ctx.saved_tensors
        a = _numpy(x)
        g = _numpy(grad, a.dtype)
        grad_x = ctx.op.backward(a, ctx.op.saved, g)
        return torch.from_numpy(grad_x).to(device=x.device, dtype=x.dtype), None, None


def rust_autograd(function: str, x: torch.Tensor, op: Any) -> torch.Tensor:
    return _RustFunction.apply(x, function, op)
