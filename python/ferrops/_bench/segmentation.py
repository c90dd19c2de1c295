"""Benchmark cases for the segmentation family: the confusion matrix against the
NumPy idiom most segmentation code uses, ``np.bincount(C * target + pred)``."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

import ferrops
from ferrops._bench import Case, max_abs_difference


def segmentation_maps(
    batch: int, height: int, width: int, classes: int, seed: int, cell: int = 32, void: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``(target, pred)`` maps shaped like a validation batch.

    The target is piecewise constant: a random grid of class cells (``cell``
    pixels wide), upsampled. The prediction is the same grid shifted by a few
    pixels (errors along every region boundary) with 5% of the cells given a
    wrong class (whole regions missed), about 85-90% pixel accuracy, as a
    trained model's errors look rather than independent per-pixel noise. A
    ``void`` fraction of the target's cells is 255 (unlabelled regions).
    """
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, classes, (batch, height // cell + 1, width // cell + 1), dtype=np.uint8)
    wrong = np.where(rng.random(grid.shape) < 0.05, rng.integers(0, classes, grid.shape, dtype=np.uint8), grid)
    grid = np.where(rng.random(grid.shape) < void, np.uint8(255), grid)
    target = grid.repeat(cell, axis=1).repeat(cell, axis=2)[:, :height, :width]
    shifted = wrong.repeat(cell, axis=1).repeat(cell, axis=2)
    pred = np.roll(shifted, (3, 5), axis=(1, 2))[:, :height, :width]
    return np.ascontiguousarray(target), np.ascontiguousarray(pred)


def _bincount(target: np.ndarray, pred: np.ndarray, c: int) -> np.ndarray:
    # The widening is needed: with uint8 labels C * target would wrap at 256.
    return np.bincount((c * target.astype(np.int64) + pred).ravel(), minlength=c * c).reshape(c, c)


def _bincount_ignore(target: np.ndarray, pred: np.ndarray, c: int, ignore: int) -> np.ndarray:
    kept = target != ignore
    return np.bincount(c * target[kept].astype(np.int64) + pred[kept], minlength=c * c).reshape(c, c)


def _gpx(pixels: int) -> Callable[[float], str]:
    return lambda s: f"{pixels / s / 1e9:.2f} Gpx/s"


def cases(quick: bool) -> Iterable[Case]:
    b, h, w, c = 8, 1024, 2048, 19
    n = b * h * w
    target, pred = segmentation_maps(b, h, w, c, seed=0)
    yield Case(
        "segmentation",
        "confusion_matrix",
        f"{b}x{h}x{w} uint8, {c} classes",
        lambda: ferrops.confusion_matrix(target, pred, c),
        "np.bincount(C * target + pred)",
        lambda: _bincount(target, pred, c),
        max_abs_difference,
        target=10,
        note=_gpx(n),
    )
    # The worst case for the kernel: independent random labels, no runs to exploit.
    # Shown without a target: the 10x is for label maps (the row above).
    rng = np.random.default_rng(1)
    noise_t = rng.integers(0, c, (b, h, w), dtype=np.uint8)
    noise_p = rng.integers(0, c, (b, h, w), dtype=np.uint8)
    yield Case(
        "segmentation",
        "confusion_matrix",
        f"{b}x{h}x{w} uint8 random labels, {c} classes",
        lambda: ferrops.confusion_matrix(noise_t, noise_p, c),
        "np.bincount(C * target + pred)",
        lambda: _bincount(noise_t, noise_p, c),
        max_abs_difference,
        note=_gpx(n),
    )
    # ADE20K-like: 150 classes, int64 predictions (argmax output), 255 ignored.
    b, h, w, c = 4, 512, 512, 150
    t150, p150 = segmentation_maps(b, h, w, c, seed=2, cell=16, void=0.1)
    p150 = p150.astype(np.int64)
    yield Case(
        "segmentation",
        "confusion_matrix",
        f"{b}x{h}x{w} uint8/int64, {c} classes, ignore 255",
        lambda: ferrops.confusion_matrix(t150, p150, c, ignore_index=255),
        "np.bincount(C * target[kept] + pred[kept])",
        lambda: _bincount_ignore(t150, p150, c, 255),
        max_abs_difference,
        note=_gpx(b * h * w),
    )
