"""``torch.nn.Module`` wrappers of the pooling kernels: ``SPP`` and ``SPPF``.

PyTorch is optional for ferrops, so this module imports it only when one of the
classes is first used (``ferrops.nn.SPPF``); ``import ferrops.nn`` works without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from .pooling import PoolMode

__all__ = ["SPP", "SPPF"]

_classes: dict[str, type] = {}


def _build() -> dict[str, type]:
    if _classes:
        return _classes
    import torch

    from . import pooling

    class SPP(torch.nn.Module):
        """Spatial pyramid pooling layer (POOL-SPP): ``[N, C, H, W] -> [N, C * sum(n^2)]``
        for any ``H, W``.

        Args:
            levels (Sequence[int]): bins per side of each level (default ``(4, 2, 1)``).
            mode (str): "max" or "avg".
        """

        def __init__(self, levels: Sequence[int] = (4, 2, 1), mode: PoolMode = "max") -> None:
            super().__init__()
            self.levels = tuple(levels)
            self.mode = mode
            # Checks the arguments now rather than at the first forward.
            pooling.spatial_pyramid_pool(torch.zeros(0, 1, 1, 1), self.levels, self.mode)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return cast(torch.Tensor, pooling.spatial_pyramid_pool(x, self.levels, self.mode))

        def extra_repr(self) -> str:
            return f"levels={self.levels}, mode={self.mode!r}"

    class SPPF(torch.nn.Module):
        """YOLOv5's SPPF pooling (POOL-SPPF): ``[N, C, H, W] -> [N, 4C, H, W]``,
        ``concat(x, y1, y2, y3)`` of three chained ``k x k`` stride-1 max pools.

        Args:
            kernel_size (int): odd window size (default 5).
        """

        def __init__(self, kernel_size: int = 5) -> None:
            super().__init__()
            self.kernel_size = kernel_size
            pooling.sppf(torch.zeros(0, 1, 1, 1), kernel_size)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return cast(torch.Tensor, pooling.sppf(x, self.kernel_size))

        def extra_repr(self) -> str:
            return f"kernel_size={self.kernel_size}"

    _classes.update(SPP=SPP, SPPF=SPPF)
    return _classes


def __getattr__(name: str) -> type:
    if name in __all__:
        return _build()[name]
    raise AttributeError(f"module 'ferrops.nn' has no attribute {name!r}")
