"""PyTorch implementations of the rotated-box kernels (BOX-ROT-IOU, NMS-ROT), for
tensors on other devices and ``backend="torch"``. Written from the SPEC, in
float64 on the tensors' device, and checked by the same spec tests as the Rust
kernels.

The exact overlap of two convex quadrilaterals is the convex polygon whose
vertices are the edge-edge crossings and each box's corners inside the other:
its area is the shoelace sum over those points sorted by angle about their
centroid (points that are not vertices are pushed to the end and replaced by
the first vertex, which closes the polygon and adds nothing).
"""

from __future__ import annotations

import torch

from ._errors import value_error

#: Pairs per chunk: bounds the [pairs, 24, 2] float64 point tensor to ~400 MB.
_PAIRS_PER_CHUNK = 1 << 20


def _check(function: str, argument: str, boxes: torch.Tensor) -> None:
    ok = torch.isfinite(boxes).all(dim=1) & (boxes[:, 2] >= 0) & (boxes[:, 3] >= 0)
    if not bool(ok.all()):
        i = int(torch.nonzero(~ok)[0, 0])
        values = ", ".join(f"{v:g}" for v in boxes[i].tolist())
        raise value_error(
            function, argument, "finite (cx, cy, w, h, angle) boxes with w >= 0 and h >= 0", f"box {i} = [{values}]"
        )


def _corners(b: torch.Tensor, radians: float) -> torch.Tensor:
    """``[P, 4, 2]`` corners, counter-clockwise in math orientation."""
    angle = b[:, 4] * radians
    cos, sin = torch.cos(angle), torch.sin(angle)
    hw, hh = b[:, 2] * 0.5, b[:, 3] * 0.5
    u = torch.stack([cos * hw, -sin * hw], dim=1)
    v = torch.stack([sin * hh, cos * hh], dim=1)
    c = b[:, :2]
    return torch.stack([c + u + v, c - u + v, c - u - v, c + u - v], dim=1)


def _inside(points: torch.Tensor, quad: torch.Tensor) -> torch.Tensor:
    """Are ``points`` ``[P, K, 2]`` inside the convex ``quad`` ``[P, 4, 2]`` (CCW)?"""
    edge = torch.roll(quad, -1, dims=1) - quad  # [P, 4, 2]
    rel = points[:, :, None, :] - quad[:, None, :, :]  # [P, K, 4, 2]
    cross = edge[:, None, :, 0] * rel[..., 1] - edge[:, None, :, 1] * rel[..., 0]
    return (cross >= 0).all(dim=2)


def _intersection_area(b1: torch.Tensor, b2: torch.Tensor, radians: float) -> torch.Tensor:
    """Exact overlap areas of the pairs ``(b1[p], b2[p])``, float64."""
    mid = (b1[:, :2] + b2[:, :2]) * 0.5
    b1 = torch.cat([b1[:, :2] - mid, b1[:, 2:]], dim=1)
    b2 = torch.cat([b2[:, :2] - mid, b2[:, 2:]], dim=1)
    p, q = _corners(b1, radians), _corners(b2, radians)
    dp = torch.roll(p, -1, dims=1) - p  # edges of b1, [P, 4, 2]
    dq = torch.roll(q, -1, dims=1) - q
    # Edge i of b1 against edge j of b2: p_i + s dp_i = q_j + t dq_j.
    rel = q[:, None, :, :] - p[:, :, None, :]  # [P, 4, 4, 2]
    denom = dp[:, :, None, 0] * dq[:, None, :, 1] - dp[:, :, None, 1] * dq[:, None, :, 0]
    s = (rel[..., 0] * dq[:, None, :, 1] - rel[..., 1] * dq[:, None, :, 0]) / denom
    t = (rel[..., 0] * dp[:, :, None, 1] - rel[..., 1] * dp[:, :, None, 0]) / denom
    crossing = (denom != 0) & (s >= 0) & (s <= 1) & (t >= 0) & (t <= 1)
    cross_points = p[:, :, None, :] + s[..., None] * dp[:, :, None, :]
    points = torch.cat([cross_points.reshape(-1, 16, 2), p, q], dim=1)  # [P, 24, 2]
    valid = torch.cat([crossing.reshape(-1, 16), _inside(p, q), _inside(q, p)], dim=1)
    points = torch.where(valid[..., None], points, torch.zeros_like(points))
    count = valid.sum(dim=1, keepdim=True).clamp(min=1)
    centre = points.sum(dim=1) / count
    angle = torch.atan2(points[..., 1] - centre[:, None, 1], points[..., 0] - centre[:, None, 0])
    angle = torch.where(valid, angle, torch.full_like(angle, 10.0))
    order = torch.argsort(angle, dim=1)
    ordered = torch.gather(points, 1, order[..., None].expand(-1, -1, 2))
    ordered_valid = torch.gather(valid, 1, order)
    first = ordered[:, :1, :].expand_as(ordered)
    ordered = torch.where(ordered_valid[..., None], ordered, first)
    following = torch.roll(ordered, -1, dims=1)
    twice = (ordered[..., 0] * following[..., 1] - following[..., 0] * ordered[..., 1]).sum(dim=1)
    area = 0.5 * twice.abs()
    area = torch.where(valid.sum(dim=1) >= 3, area, torch.zeros_like(area))
    area1, area2 = b1[:, 2] * b1[:, 3], b2[:, 2] * b2[:, 3]
    area = torch.where((b1 == b2).all(dim=1), area1, area)  # the same box: exactly its area
    return torch.minimum(torch.minimum(area, area1), area2)


def _pair_overlap(b1: torch.Tensor, b2: torch.Tensor, mode: str, radians: float) -> torch.Tensor:
    inter = _intersection_area(b1, b2, radians)
    area1, area2 = b1[:, 2] * b1[:, 3], b2[:, 2] * b2[:, 3]
    base = area1 if mode == "iof" else area1 + area2 - inter
    value = inter / torch.where(inter > 0, base, torch.ones_like(base))
    return torch.where(inter > 0, value, torch.zeros_like(value))


def box_iou_rotated(
    boxes1: torch.Tensor, boxes2: torch.Tensor, mode: str, aligned: bool, radians: float
) -> torch.Tensor:
    _check("box_iou_rotated", "boxes1", boxes1)
    _check("box_iou_rotated", "boxes2", boxes2)
    dtype = boxes1.dtype
    b1, b2 = boxes1.double(), boxes2.double()
    if aligned:
        return _pair_overlap(b1, b2, mode, radians).to(dtype)
    n, m = b1.shape[0], b2.shape[0]
    out = torch.zeros((n, m), dtype=torch.float64, device=b1.device)
    rows = max(1, _PAIRS_PER_CHUNK // max(m, 1))
    for start in range(0, n, rows):
        chunk = b1[start : start + rows]
        left = chunk[:, None, :].expand(-1, m, -1).reshape(-1, 5)
        right = b2[None, :, :].expand(chunk.shape[0], -1, -1).reshape(-1, 5)
        out[start : start + rows] = _pair_overlap(left, right, mode, radians).reshape(-1, m)
    return out.to(dtype)


def nms_rotated(
    boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor | None, threshold: float, radians: float
) -> torch.Tensor:
    """NMS-ROT: the IoU matrix of the ranked boxes on the device, the greedy walk
    over its rows (a box is dropped by a kept box with IoU >= threshold)."""
    function = "nms_rotated" if classes is None else "batched_nms_rotated"
    _check(function, "boxes", boxes)
    if not bool(torch.isfinite(scores).all()):
        i = int(torch.nonzero(~torch.isfinite(scores))[0, 0])
        raise value_error(function, "scores", "finite scores", f"scores[{i}] = {scores[i].item()}")
    n = boxes.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    ranked = boxes[order]
    suppress = box_iou_rotated(ranked, ranked, "iou", False, radians) >= threshold
    if classes is not None:
        ranked_classes = classes[order]
        suppress &= ranked_classes[:, None] == ranked_classes[None, :]
    rows = suppress.cpu().numpy()
    removed = [False] * n
    kept = []
    for i in range(n):
        if removed[i]:
            continue
        kept.append(i)
        for j in rows[i, i + 1 :].nonzero()[0]:
            removed[i + 1 + j] = True
    return order[torch.tensor(kept, dtype=torch.int64, device=boxes.device)]
