"""Benchmark cases for the pooling family, against torch's CPU pooling and
torchvision's RoI ops.

Torch's pooling speed depends on the memory layout, so SPPF and SPP are timed
against torch in both the default (contiguous) and the channels_last layout; the
speed-up targets apply to the faster of the two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, TypedDict

import numpy as np

import ferrops
from ferrops._bench import Case, max_abs_difference


#: The sizes the issue names, and the small ones the CI test run uses.
class Sizes(TypedDict):
    map: tuple[int, ...]
    roi_map: tuple[int, ...]
    boxes: int
    grad_map: tuple[int, ...]


FULL: Sizes = {"map": (16, 512, 64, 64), "roi_map": (2, 256, 64, 64), "boxes": 1000, "grad_map": (4, 128, 64, 64)}
SMALL: Sizes = {"map": (2, 16, 20, 20), "roi_map": (1, 8, 16, 16), "boxes": 20, "grad_map": (1, 8, 12, 12)}


def feature_map(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def random_rois(n: int, batch: int, size: float, seed: int) -> np.ndarray:
    """``n`` rows ``(batch_index, x1, y1, x2, y2)`` in a ``size``-wide image."""
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, size * 0.8, (n, 2))
    extent = rng.uniform(size * 0.05, size * 0.4, (n, 2))
    index = rng.integers(0, batch, (n, 1))
    return np.concatenate([index, corner, corner + extent], axis=1).astype(np.float32)


def _torch() -> tuple[Any, Any]:
    try:
        import torch
    except ImportError:
        return None, None
    try:
        import torchvision
    except ImportError:
        return torch, None
    return torch, torchvision


def _gbps(nbytes: int) -> Callable[[float], str]:
    return lambda s: f"{nbytes / s / 1e9:.1f} GB/s useful traffic"


def _spp_chain(t: Any, levels: tuple[int, ...]) -> Any:
    """torch's SPP: adaptive max pooling at each level, flattened and concatenated."""
    import torch

    return torch.cat([torch.nn.functional.adaptive_max_pool2d(t, n).flatten(1) for n in levels], 1)


def cases(quick: bool, small: bool = False) -> Iterable[Case]:
    sizes = SMALL if small else FULL
    torch, tv = _torch()
    x = feature_map(sizes["map"], 0)
    shape = "x".join(map(str, x.shape))
    layouts = (
        []
        if torch is None
        else [
            ("contiguous", torch.from_numpy(x)),
            ("channels_last", torch.from_numpy(x).contiguous(memory_format=torch.channels_last)),
        ]
    )

    def sppf_chain(t: Any) -> Any:
        F = torch.nn.functional
        y1 = F.max_pool2d(t, 5, 1, 2)
        y2 = F.max_pool2d(y1, 5, 1, 2)
        return torch.cat([t, y1, y2, F.max_pool2d(y2, 5, 1, 2)], 1)

    for layout, t in layouts or [("contiguous", None)]:
        yield Case(
            "pooling",
            "sppf",
            f"{shape} fp32, k=5",
            lambda: ferrops.sppf(x, 5),
            f"torch max_pool2d x3 + cat ({layout})",
            None if t is None else partial(sppf_chain, t),
            max_abs_difference,
            target=10,
            note=_gbps(5 * x.nbytes),
        )
    for layout, t in layouts or [("contiguous", None)]:
        yield Case(
            "pooling",
            "spatial_pyramid_pool",
            f"{shape} fp32, levels (4,2,1)",
            lambda: ferrops.spatial_pyramid_pool(x, (4, 2, 1)),
            f"torch adaptive_max_pool2d x3 + cat ({layout})",
            None if t is None else partial(_spp_chain, t, (4, 2, 1)),
            # The SPP target is against torch's default layout; the
            # channels_last row is shown for information.
            max_abs_difference,
            target=5 if layout == "contiguous" else None,
            note=_gbps(x.nbytes),
        )
    t = None if torch is None else torch.from_numpy(x)
    yield Case(
        "pooling",
        "max_pool2d",
        f"{shape} fp32, k=3 s=2 p=1",
        lambda: ferrops.max_pool2d(x, 3, 2, 1),
        "torch.nn.functional.max_pool2d",
        None if t is None else (lambda: torch.nn.functional.max_pool2d(t, 3, 2, 1)),
        max_abs_difference,
    )
    yield Case(
        "pooling",
        "adaptive_avg_pool2d",
        f"{shape} fp32, 7x7",
        lambda: ferrops.adaptive_avg_pool2d(x, 7),
        "torch.nn.functional.adaptive_avg_pool2d",
        None if t is None else (lambda: torch.nn.functional.adaptive_avg_pool2d(t, 7)),
        max_abs_difference,
    )
    feats = feature_map(sizes["roi_map"], 1)
    rois = random_rois(sizes["boxes"], feats.shape[0], feats.shape[-1] * 8.0, 2)
    roi_size = f"{'x'.join(map(str, feats.shape))} fp32, {len(rois)} boxes, 7x7, scale 1/8"
    tf, tr = (None, None) if tv is None else (torch.from_numpy(feats), torch.from_numpy(rois))
    yield Case(
        "pooling",
        "roi_align",
        roi_size + ", ratio 2",
        lambda: ferrops.roi_align(feats, rois, 7, 0.125, 2, True),
        "torchvision.ops.roi_align",
        None if tv is None else (lambda: tv.ops.roi_align(tf, tr, 7, 0.125, 2, True)),
        max_abs_difference,
    )
    yield Case(
        "pooling",
        "roi_pool",
        roi_size,
        lambda: ferrops.roi_pool(feats, rois, 7, 0.125),
        "torchvision.ops.roi_pool",
        None if tv is None else (lambda: tv.ops.roi_pool(tf, tr, 7, 0.125)),
        max_abs_difference,
    )
    if torch is not None:
        g = feature_map(sizes["grad_map"], 3)
        grad_out = torch.from_numpy(feature_map((g.shape[0], 4 * g.shape[1], *g.shape[2:]), 4))

        def backward(run: Callable[[Any], Any]) -> Callable[[], Any]:
            def step() -> Any:
                z = torch.from_numpy(g).requires_grad_()
                (grad,) = torch.autograd.grad(run(z), z, grad_out)
                return grad

            return step

        yield Case(
            "pooling",
            "sppf forward + backward",
            f"{'x'.join(map(str, g.shape))} fp32, k=5",
            backward(lambda z: ferrops.sppf(z, 5)),
            "torch autograd, max_pool2d x3 + cat",
            backward(sppf_chain),
            max_abs_difference,
        )
