"""PyTorch implementations of the box kernels, for tensors on other devices (and
``backend="torch"``). Written from the SPEC formulas, differentiable where the
operation is, and checked by the same spec tests as the Rust kernels."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from ._errors import value_error

if TYPE_CHECKING:
    from .boxes import BoxFormat, IouKind, MatrixNmsKernel, Reduction, SoftNmsMethod

_EPS = 1e-7


def check_xyxy(function: str, argument: str, boxes: torch.Tensor) -> None:
    """The BOX-AREA policy: finite boxes with x1 <= x2 and y1 <= y2."""
    bad = ~(torch.isfinite(boxes).all(dim=1) & (boxes[:, 0] <= boxes[:, 2]) & (boxes[:, 1] <= boxes[:, 3]))
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0, 0])
        values = ", ".join(f"{v:g}" for v in boxes[i].tolist())
        raise value_error(
            function, argument, "finite (x1, y1, x2, y2) boxes with x1 <= x2 and y1 <= y2", f"box {i} = [{values}]"
        )


def check_scores(function: str, scores: torch.Tensor) -> None:
    bad = ~torch.isfinite(scores)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0, 0])
        raise value_error(function, "scores", "finite scores", f"scores[{i}] = {scores[i].item()}")


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    check_xyxy("box_area", "boxes", boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_convert(boxes: torch.Tensor, in_fmt: BoxFormat, out_fmt: BoxFormat) -> torch.Tensor:
    if not bool(torch.isfinite(boxes).all()):
        i = int(torch.nonzero(~torch.isfinite(boxes).all(dim=1))[0, 0])
        raise value_error("box_convert", "boxes", "finite box coordinates", f"box {i}")
    a, b, c, e = boxes.unbind(dim=1)
    if in_fmt == "xywh":
        a, b, c, e = a, b, a + c, b + e
    elif in_fmt == "cxcywh":
        a, b, c, e = a - 0.5 * c, b - 0.5 * e, a + 0.5 * c, b + 0.5 * e
    if out_fmt == "xywh":
        a, b, c, e = a, b, c - a, e - b
    elif out_fmt == "cxcywh":
        a, b, c, e = (a + c) * 0.5, (b + e) * 0.5, c - a, e - b
    return torch.stack([a, b, c, e], dim=1)


def _inter_union(b1: torch.Tensor, b2: torch.Tensor, pairwise: bool) -> tuple[torch.Tensor, ...]:
    """Intersection, union and enclosing-box extents, as [N, M] (pairwise) or [N]."""
    if pairwise:
        b1 = b1[:, None, :]
        b2 = b2[None, :, :]
    area1 = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
    area2 = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    w = (torch.minimum(b1[..., 2], b2[..., 2]) - torch.maximum(b1[..., 0], b2[..., 0])).clamp(min=0)
    h = (torch.minimum(b1[..., 3], b2[..., 3]) - torch.maximum(b1[..., 1], b2[..., 1])).clamp(min=0)
    inter = w * h
    union = area1 + area2 - inter
    ew = torch.maximum(b1[..., 2], b2[..., 2]) - torch.minimum(b1[..., 0], b2[..., 0])
    eh = torch.maximum(b1[..., 3], b2[..., 3]) - torch.minimum(b1[..., 1], b2[..., 1])
    return inter, union, ew, eh, b1, b2


def _centre_distance2(b1: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    dx = (b1[..., 0] + b1[..., 2]) * 0.5 - (b2[..., 0] + b2[..., 2]) * 0.5
    dy = (b1[..., 1] + b1[..., 3]) * 0.5 - (b2[..., 1] + b2[..., 3]) * 0.5
    return dx * dx + dy * dy


def _aspect_term(b1: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """v = 4 / pi^2 (atan(w2 / h2) - atan(w1 / h1))^2 (BOX-CIOU)."""
    d = torch.atan((b2[..., 2] - b2[..., 0]) / (b2[..., 3] - b2[..., 1])) - torch.atan(
        (b1[..., 2] - b1[..., 0]) / (b1[..., 3] - b1[..., 1])
    )
    return (4.0 / math.pi**2) * d * d


def pairwise(function: str, kind: IouKind, b1: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    check_xyxy(function, "boxes1", b1)
    check_xyxy(function, "boxes2", b2)
    inter, union, ew, eh, e1, e2 = _inter_union(b1, b2, pairwise=True)
    iou = inter / union
    if kind == "iou":
        return iou
    if kind == "giou":
        enclosing = ew * eh
        return iou - (enclosing - union) / enclosing
    diou = iou - _centre_distance2(e1, e2) / (ew * ew + eh * eh + _EPS)
    if kind == "diou":
        return diou
    v = _aspect_term(e1, e2)
    alpha = v / (1 - iou + v + _EPS)
    return diou - alpha * v


def box_loss(
    function: str, kind: IouKind, b1: torch.Tensor, b2: torch.Tensor, reduction: Reduction, eps: float
) -> torch.Tensor:
    check_xyxy(function, "boxes1", b1)
    check_xyxy(function, "boxes2", b2)
    inter, union, ew, eh, _, _ = _inter_union(b1, b2, pairwise=False)
    iou = inter / (union + eps)
    if kind == "giou":
        enclosing = ew * eh
        loss = 1 - (iou - (enclosing - union) / (enclosing + eps))
    else:
        loss = 1 - iou + _centre_distance2(b1, b2) / (ew * ew + eh * eh + eps)
        if kind == "ciou":
            v = _aspect_term(b1, b2)
            # alpha is a weight, not a path for gradients (as in the CIoU paper).
            with torch.no_grad():
                alpha = v / (1 - iou + v + eps)
            loss = loss + alpha * v
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean()
    return loss


def _rank(scores: torch.Tensor) -> torch.Tensor:
    """Indices by descending score, ties by ascending index (a stable sort)."""
    return torch.sort(scores, descending=True, stable=True).indices


def _greedy(boxes: torch.Tensor, order: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy NMS over boxes already in walk order; returns positions in ``order``."""
    n = order.numel()
    if n == 0:
        return order
    ranked = boxes[order]
    try:
        import torchvision

        # Distinct descending pseudo-scores make torchvision walk exactly our order
        # (its own sort is not stable), on whatever device the boxes are.
        ranks = torch.arange(n, 0, -1, device=boxes.device, dtype=boxes.dtype)
        return torch.sort(torchvision.ops.nms(ranked, ranks, threshold)).values
    except ImportError:
        pass
    inter, union, *_ = _inter_union(ranked, ranked, pairwise=True)
    over = (inter / union > threshold).cpu()
    suppressed = torch.zeros(n, dtype=torch.bool)
    kept = []
    for i in range(n):
        if not suppressed[i]:
            kept.append(i)
            suppressed |= over[i]
    return torch.tensor(kept, dtype=torch.int64, device=boxes.device)


def nms(function: str, boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    check_xyxy(function, "boxes", boxes)
    check_scores(function, scores)
    order = _rank(scores)
    return order[_greedy(boxes, order, threshold)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, threshold: float) -> torch.Tensor:
    check_xyxy("batched_nms", "boxes", boxes)
    check_scores("batched_nms", scores)
    kept = [torch.nonzero(idxs == c).flatten() for c in torch.unique(idxs)]
    kept = [members[nms("batched_nms", boxes[members], scores[members], threshold)] for members in kept]
    if not kept:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    keep = torch.sort(torch.cat(kept)).values  # by index, then a stable sort by score
    return keep[_rank(scores[keep])]


def soft_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    threshold: float,
    sigma: float,
    score_threshold: float,
    method: SoftNmsMethod,
) -> tuple[torch.Tensor, torch.Tensor]:
    check_xyxy("soft_nms", "boxes", boxes)
    check_scores("soft_nms", scores)
    current = scores.clone()
    live = torch.nonzero(scores >= score_threshold).flatten()
    keep, kept_scores = [], []
    while live.numel():
        # Highest score, lowest index among ties: live is kept in ascending order.
        best = int(torch.argmax(current[live]))
        i = live[best]
        keep.append(i)
        kept_scores.append(current[i])
        live = torch.cat([live[:best], live[best + 1 :]])
        inter, union, *_ = _inter_union(boxes[i][None], boxes[live], pairwise=True)
        o = (inter / union)[0]
        if method == "linear":
            weight = torch.where(o > threshold, 1 - o, torch.ones_like(o))
        else:
            weight = torch.exp(-(o * o) / sigma)
        current[live] = current[live] * weight
        live = live[current[live] >= score_threshold]
    if not keep:
        return torch.empty(0, dtype=torch.int64, device=boxes.device), scores.new_empty(0)
    return torch.stack(keep), torch.stack(kept_scores)


def matrix_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor | None, kernel: MatrixNmsKernel, sigma: float
) -> torch.Tensor:
    check_xyxy("matrix_nms", "boxes", boxes)
    check_scores("matrix_nms", scores)
    out = scores.clone()
    groups = (
        [torch.arange(scores.numel(), device=scores.device)]
        if idxs is None
        else [torch.nonzero(idxs == c).flatten() for c in torch.unique(idxs)]
    )

    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-sigma * x * x) if kernel == "gaussian" else 1 - x

    for members in groups:
        order = members[_rank(scores[members])]
        inter, union, *_ = _inter_union(boxes[order], boxes[order], pairwise=True)
        iou = (inter / union).triu(diagonal=1)  # iou[i, j] for higher-scored i < j
        compensation = iou.max(dim=0).values if order.numel() else iou.new_empty(0)
        ratio = f(iou) / f(compensation)[:, None]
        # Only i < j bound box j; 0/0 (linear, exact duplicates) bounds nothing.
        upper = torch.ones_like(iou, dtype=torch.bool).triu(diagonal=1)
        ratio = torch.where(upper & ~torch.isnan(ratio), ratio, torch.full_like(ratio, float("inf")))
        decay = ratio.min(dim=0).values.clamp(max=1) if order.numel() else ratio.new_empty(0)
        out[order] = scores[order] * decay
    return out
