"""PyTorch implementations of the segmentation kernels, for tensors on other
devices (and ``backend="torch"``). Written from the SPEC formulas (SEG-*) and
checked by the same spec tests as the Rust kernel. Counting stays on the
tensors' device; only the out-of-range check reads one flag back."""

from __future__ import annotations

import torch

from ._errors import type_error, value_error


def confusion_matrix(
    target: torch.Tensor, pred: torch.Tensor, num_classes: int, ignore_index: int | None
) -> torch.Tensor:
    c = num_classes
    if c * c + 1 > 2**62:  # the flat bin index t * C + p must stay an int64
        raise value_error(
            "confusion_matrix", "num_classes", "a class count whose [C, C] int64 matrix fits in memory", c
        )
    t_raw, p_raw = target.reshape(-1), pred.reshape(-1)
    t, p = t_raw.long(), p_raw.long()
    # uint64 labels above int64's range wrap to negative values: still out of range.
    kept = t != ignore_index if ignore_index is not None else torch.ones_like(t, dtype=torch.bool)
    bad_target = ((t < 0) | (t >= c)) & kept
    bad_pred = ((p < 0) | (p >= c)) & kept
    bad = bad_target | bad_pred
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0, 0])
        if bool(bad_target[i]):
            expected = f"class labels in [0, {c})" + (
                f" or ignore_index={ignore_index}" if ignore_index is not None else ""
            )
            raise value_error("confusion_matrix", "target", expected, f"{t_raw[i].item()} at flat index {i}")
        raise value_error(
            "confusion_matrix",
            "pred",
            f"class labels in [0, {c}) where the target is not ignored",
            f"{p_raw[i].item()} at flat index {i}",
        )
    # Ignored pixels go to one extra bin, dropped after counting (no boolean
    # indexing, so no data-dependent shape and no device sync).
    key = torch.where(kept, t * c + p, torch.full_like(t, c * c))
    return torch.bincount(key, minlength=c * c + 1)[: c * c].reshape(c, c)


def _nan_mean(values: torch.Tensor) -> torch.Tensor:
    kept = ~torch.isnan(values)
    return torch.where(kept, values, torch.zeros_like(values)).sum() / kept.sum()


def segmentation_metrics(cm: torch.Tensor) -> dict[str, torch.Tensor]:
    if cm.is_complex():
        raise type_error("segmentation_metrics", "cm", "real counts", f"Tensor of dtype {cm.dtype}")
    m = cm.detach().to(torch.float64)
    if not bool((torch.isfinite(m) & (m >= 0)).all()):
        raise ValueError("segmentation_metrics(): argument 'cm': expected finite, non-negative counts")
    diag = torch.diagonal(m)
    support = m.sum(dim=1)
    predicted = m.sum(dim=0)
    total = support.sum()
    accuracy = diag / support
    iou = diag / (support + predicted - diag)
    dice = 2.0 * diag / (support + predicted)
    present = support > 0
    fwiou = torch.where(present, support / total * iou, torch.zeros_like(iou)).sum()
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=m.device)
    return {
        "pixel_accuracy": diag.sum() / total,
        "mean_pixel_accuracy": _nan_mean(accuracy),
        "iou": iou,
        "miou": _nan_mean(iou),
        "fwiou": torch.where(total > 0, fwiou, nan),
        "dice": dice,
        "mean_dice": _nan_mean(dice),
    }
