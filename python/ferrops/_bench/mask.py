"""Benchmark cases for ``ferrops.mask`` against pycocotools.mask: IoU of RLEs,
polygon rasterisation, and encoding/decoding large masks (targets from issue 13)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ferrops import mask as fm
from ferrops._bench import Case, max_abs_difference


def polygons(rng: np.random.Generator, count: int, h: int, w: int) -> list[list[float]]:
    """Star-shaped polygons of 6-30 vertices, most inside the image, the size of
    COCO objects (radius 5-25% of the image)."""
    out = []
    for _ in range(count):
        k = int(rng.integers(6, 31))
        cx, cy = rng.random() * w, rng.random() * h
        angles = np.sort(rng.random(k)) * 2 * np.pi
        radius = (0.05 + 0.2 * rng.random()) * min(h, w) * (0.6 + 0.4 * rng.random(k))
        xy = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], 1)
        out.append(xy.reshape(-1).tolist())
    return out


def _same(a: Any, b: Any) -> float:
    """0 when the two results are equal (lists of RLE dicts), else inf."""
    return 0.0 if a == b else float("inf")


def cases(quick: bool) -> Iterable[Case]:
    try:
        import pycocotools.mask as pcm
    except ImportError:
        pcm = None
    rng = np.random.default_rng(0)
    h, w = 480, 640
    dt = fm.frPyObjects(polygons(rng, 1000, h, w), h, w)
    gt = fm.frPyObjects(polygons(rng, 1000, h, w), h, w)
    crowd = [i % 10 == 0 for i in range(1000)]
    yield Case(
        "mask",
        "mask.iou",
        f"1000 x 1000 RLEs, {h}x{w}, 10% crowd",
        lambda: fm.iou(dt, gt, crowd),
        "pycocotools.mask.iou",
        None if pcm is None else lambda: pcm.iou(dt, gt, crowd),
        max_abs_difference,
        target=3,
    )
    polys = polygons(rng, 10_000, h, w)
    yield Case(
        "mask",
        "frPyObjects",
        f"10,000 polygons, {h}x{w}",
        lambda: fm.frPyObjects(polys, h, w),
        "pycocotools.mask.frPyObjects",
        None if pcm is None else lambda: pcm.frPyObjects(polys, h, w),
        _same,
        target=3,
    )
    side, n = 1024, 100
    rles = [fm.merge(fm.frPyObjects(polygons(rng, 3, side, side), side, side)) for _ in range(n)]
    masks = fm.decode(rles)
    yield Case(
        "mask",
        "encode",
        f"{n} masks {side}x{side} uint8 (Fortran order)",
        lambda: fm.encode(masks),
        "pycocotools.mask.encode",
        None if pcm is None else lambda: pcm.encode(masks),
        _same,
        target=3,
    )
    yield Case(
        "mask",
        "decode",
        f"{n} RLEs {side}x{side}",
        lambda: fm.decode(rles),
        "pycocotools.mask.decode",
        None if pcm is None else lambda: pcm.decode(rles),
        max_abs_difference,
        target=3,
    )
