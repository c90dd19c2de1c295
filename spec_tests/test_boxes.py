"""Conformance of the box family (SPEC section 1) on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import ferrops

# ---------------------------------------------------------------------------
# float64 references, written from the SPEC formulas


def ref_area(b: np.ndarray) -> np.ndarray:
    b = b.astype(np.float64)
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def ref_pairwise(kind: str, a: np.ndarray, b: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    a, b = a.astype(np.float64)[:, None, :], b.astype(np.float64)[None, :, :]
    inter = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None) * np.clip(
        np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None
    )
    union = (
        (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) - inter
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union
        if kind == "iou":
            return iou
        cw = np.maximum(a[..., 2], b[..., 2]) - np.minimum(a[..., 0], b[..., 0])
        ch = np.maximum(a[..., 3], b[..., 3]) - np.minimum(a[..., 1], b[..., 1])
        if kind == "giou":
            c = cw * ch
            return iou - (c - union) / c
        rho2 = ((a[..., 0] + a[..., 2]) / 2 - (b[..., 0] + b[..., 2]) / 2) ** 2 + (
            (a[..., 1] + a[..., 3]) / 2 - (b[..., 1] + b[..., 3]) / 2
        ) ** 2
        diou = iou - rho2 / (cw**2 + ch**2 + eps)
        if kind == "diou":
            return diou
        v = (4 / math.pi**2) * (
            np.arctan((b[..., 2] - b[..., 0]) / (b[..., 3] - b[..., 1]))
            - np.arctan((a[..., 2] - a[..., 0]) / (a[..., 3] - a[..., 1]))
        ) ** 2
        alpha = v / (1 - iou + v + eps)
        return diou - alpha * v


def ref_loss(kind: str, p: np.ndarray, g: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """torchvision's loss formulas: eps in the union (and enclosing area for GIoU)."""
    p, g = p.astype(np.float64), g.astype(np.float64)
    inter = np.clip(np.minimum(p[:, 2], g[:, 2]) - np.maximum(p[:, 0], g[:, 0]), 0, None) * np.clip(
        np.minimum(p[:, 3], g[:, 3]) - np.maximum(p[:, 1], g[:, 1]), 0, None
    )
    union = ref_area(p) + ref_area(g) - inter
    iou = inter / (union + eps)
    cw = np.maximum(p[:, 2], g[:, 2]) - np.minimum(p[:, 0], g[:, 0])
    ch = np.maximum(p[:, 3], g[:, 3]) - np.minimum(p[:, 1], g[:, 1])
    if kind == "giou":
        return 1 - (iou - (cw * ch - union) / (cw * ch + eps))
    rho2 = ((p[:, 0] + p[:, 2]) / 2 - (g[:, 0] + g[:, 2]) / 2) ** 2 + (
        (p[:, 1] + p[:, 3]) / 2 - (g[:, 1] + g[:, 3]) / 2
    ) ** 2
    loss = 1 - iou + rho2 / (cw**2 + ch**2 + eps)
    if kind == "ciou":
        v = (4 / math.pi**2) * (
            np.arctan((g[:, 2] - g[:, 0]) / (g[:, 3] - g[:, 1])) - np.arctan((p[:, 2] - p[:, 0]) / (p[:, 3] - p[:, 1]))
        ) ** 2
        loss = loss + v / (1 - iou + v + eps) * v
    return loss


def ref_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """NMS-GREEDY, the quadratic walk."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    iou = ref_pairwise("iou", boxes, boxes)
    kept: list[int] = []
    for i in order:
        if all(not iou[k, i] > threshold for k in kept):
            kept.append(i)
    return kept


def ref_soft_nms(boxes, scores, threshold, sigma, score_threshold, method):
    """NMS-SOFT, straight from the clause."""
    iou = ref_pairwise("iou", boxes, boxes)
    current = scores.astype(np.float64).copy()
    live = [i for i in range(len(scores)) if current[i] >= score_threshold]
    keep, kept = [], []
    while live:
        i = max(live, key=lambda j: (current[j], -j))
        live.remove(i)
        keep.append(i)
        kept.append(current[i])
        for j in live:
            o = iou[i, j]
            if method == "linear":
                current[j] *= (1 - o) if o > threshold else 1.0
            else:
                current[j] *= math.exp(-(o * o) / sigma)
        live = [j for j in live if current[j] >= score_threshold]
    return keep, np.array(kept)


def ref_matrix_nms(boxes, scores, idxs, kernel, sigma):
    """NMS-MATRIX in SOLOv2's full-matrix form (zeros outside the same-class upper triangle)."""
    n = len(scores)
    order = sorted(range(n), key=lambda i: (-scores[i], i))
    b, s = boxes[order].astype(np.float64), scores[order].astype(np.float64)
    classes = np.zeros(n, np.int64) if idxs is None else np.asarray(idxs)[order]
    same = (classes[:, None] == classes[None, :]) & np.triu(np.ones((n, n), bool), 1)
    iou = np.where(same, ref_pairwise("iou", b, b), 0.0)
    comp = iou.max(axis=0) if n else np.zeros(0)
    f = (lambda x: np.exp(-sigma * x**2)) if kernel == "gaussian" else (lambda x: 1 - x)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = f(iou) / f(comp)[:, None]
    decay = np.nanmin(ratio, axis=0) if n else np.zeros(0)
    out = np.empty(n)
    out[order] = s * decay
    return out


# ---------------------------------------------------------------------------
# data


def random_boxes(n: int, seed: int, extent: float = 100.0, dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, extent, (n, 2))
    wh = rng.uniform(0, extent / 3, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(dtype)


def distinct_scores(n: int, seed: int, dtype=np.float32) -> np.ndarray:
    return ((np.random.default_rng(seed).permutation(n) + 0.5) / n).astype(dtype)


coordinate = st.floats(0, 64, allow_nan=False, width=32)


@st.composite
def box_sets(draw, min_size=0, max_size=40):
    n = draw(st.integers(min_size, max_size))
    corners = draw(hnp.arrays(np.float32, (n, 2), elements=coordinate))
    sizes = draw(hnp.arrays(np.float32, (n, 2), elements=st.floats(0, 32, width=32)))
    return np.concatenate([corners, corners + sizes], 1)


PAIRWISE = [
    ("box_iou", "iou"),
    ("generalized_box_iou", "giou"),
    ("distance_box_iou", "diou"),
    ("complete_box_iou", "ciou"),
]
LOSSES = [
    ("generalized_box_iou_loss", "giou"),
    ("distance_box_iou_loss", "diou"),
    ("complete_box_iou_loss", "ciou"),
]

# ---------------------------------------------------------------------------
# BOX-AREA, BOX-CONVERT


@pytest.mark.spec("BOX-AREA")
def test_area_matches_formula(backend):
    b = random_boxes(50, 0)
    got = backend.output(ferrops.box_area(backend.input(b), **backend.kwargs))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref_area(b), rtol=1e-6)


@pytest.mark.spec("BOX-AREA")
@pytest.mark.parametrize(
    "bad, what",
    [
        ([[0, 0, 1, 1], [2, 0, 1, 1]], r"box 1 = \[2, 0, 1, 1\]"),
        ([[0, 0, 1, 1], [0, 3, 1, 1]], r"box 1 = \[0, 3, 1, 1\]"),
        ([[0, 0, np.nan, 1]], r"box 0"),
        ([[0, -np.inf, 1, 1]], r"box 0"),
    ],
)
def test_invalid_boxes_raise_value_error_naming_the_box(backend, bad, what):
    boxes = backend.input(np.array(bad, np.float32))
    for call in (
        lambda: ferrops.box_area(boxes, **backend.kwargs),
        lambda: ferrops.box_iou(boxes, boxes, **backend.kwargs),
        lambda: ferrops.nms(boxes, backend.input(np.ones(len(bad), np.float32)), 0.5, **backend.kwargs),
    ):
        with pytest.raises(ValueError, match=what):
            call()


@pytest.mark.spec("BOX-AREA")
def test_zero_width_boxes_are_valid(backend):
    b = np.array([[1, 1, 1, 5], [0, 0, 2, 2]], np.float32)
    area = backend.output(ferrops.box_area(backend.input(b), **backend.kwargs))
    np.testing.assert_array_equal(area, [0, 4])
    iou = backend.output(ferrops.box_iou(backend.input(b), backend.input(b), **backend.kwargs))
    assert np.isnan(iou[0, 0])  # 0 / 0, as torchvision
    assert iou[0, 1] == 0 and iou[1, 1] == 1


@pytest.mark.spec("BOX-CONVERT")
@pytest.mark.parametrize("fmt", ["xyxy", "xywh", "cxcywh"])
def test_convert_matches_formula_and_round_trips(backend, fmt):
    b = random_boxes(30, 1, dtype=np.float64)
    want = {
        "xyxy": b,
        "xywh": np.c_[b[:, :2], b[:, 2:] - b[:, :2]],
        "cxcywh": np.c_[(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]],
    }[fmt]
    there = backend.output(ferrops.box_convert(backend.input(b), "xyxy", fmt, **backend.kwargs))
    np.testing.assert_allclose(there, want, rtol=1e-12, atol=1e-12)
    back = backend.output(ferrops.box_convert(backend.input(there), fmt, "xyxy", **backend.kwargs))
    np.testing.assert_allclose(back, b, rtol=1e-12, atol=1e-12)


def test_convert_rejects_unknown_formats():
    with pytest.raises(ValueError, match=r"box_convert\(\): argument 'out_fmt'.*'xyz'"):
        ferrops.box_convert(np.zeros((1, 4)), "xyxy", "xyz")


# ---------------------------------------------------------------------------
# BOX-IOU, BOX-GIOU, BOX-DIOU, BOX-CIOU


@pytest.mark.spec("BOX-IOU", "BOX-GIOU", "BOX-DIOU", "BOX-CIOU")
@pytest.mark.parametrize("name, kind", PAIRWISE)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pairwise_matches_formula(backend, name, kind, dtype):
    a, b = random_boxes(37, 2, dtype=dtype), random_boxes(53, 3, dtype=dtype)
    got = backend.output(getattr(ferrops, name)(backend.input(a), backend.input(b), **backend.kwargs))
    assert got.shape == (37, 53) and got.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, ref_pairwise(kind, a, b), rtol=tol, atol=tol)


@pytest.mark.spec("BOX-IOU", "BOX-GIOU", "BOX-DIOU", "BOX-CIOU")
@pytest.mark.parametrize("name, kind", PAIRWISE)
def test_pairwise_equals_torchvision(name, kind):
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    a, b = random_boxes(64, 4), random_boxes(80, 5)
    theirs = getattr(tv.ops, name)(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(getattr(ferrops, name)(a, b), theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.spec("BOX-GIOU")
@given(box_sets(min_size=1))
def test_giou_is_in_range(boxes):
    positive = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
    g = ferrops.generalized_box_iou(positive, positive)
    assert np.all(g >= -1 - 1e-6) and np.all(g <= 1 + 1e-6)


@pytest.mark.spec("BOX-IOU")
@given(box_sets(), box_sets())
def test_iou_is_symmetric_and_bounded(a, b):
    ab = ferrops.box_iou(a, b)
    ba = ferrops.box_iou(b, a)
    np.testing.assert_array_equal(ab, ba.T)
    finite = ab[~np.isnan(ab)]
    assert np.all((finite >= 0) & (finite <= 1))


@pytest.mark.spec("BOX-IOU")
@pytest.mark.parametrize("shapes", [((0, 4), (5, 4)), ((5, 4), (0, 4)), ((0, 4), (0, 4))])
def test_empty_inputs_give_empty_typed_matrices(backend, shapes):
    a, b = (np.zeros(s, np.float64) for s in shapes)
    got = backend.output(ferrops.box_iou(backend.input(a), backend.input(b), **backend.kwargs))
    assert got.shape == (shapes[0][0], shapes[1][0]) and got.dtype == np.float64


@pytest.mark.spec("BOX-IOU")
@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.int64, np.uint8, np.bool_])
def test_other_dtypes_upcast_to_float32(dtype):
    a = (random_boxes(10, 6) / 4).astype(dtype)
    got = ferrops.box_iou(a, a)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref_pairwise("iou", a.astype(np.float64), a.astype(np.float64)), rtol=1e-5)


@pytest.mark.spec("BOX-IOU")
def test_mixed_precision_promotes_to_float64():
    a = random_boxes(5, 7)
    assert ferrops.box_iou(a, a.astype(np.float64)).dtype == np.float64


@pytest.mark.spec("BOX-IOU")
def test_bfloat16_and_half_tensors_upcast_to_float32():
    torch = pytest.importorskip("torch")
    a = torch.from_numpy(random_boxes(10, 8))
    for dtype in (torch.bfloat16, torch.float16):
        got = ferrops.box_iou(a.to(dtype), a.to(dtype))
        assert got.dtype == torch.float32
        want = ref_pairwise("iou", a.to(dtype).double().numpy(), a.to(dtype).double().numpy())
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)


@pytest.mark.spec("BOX-IOU")
def test_strided_and_reversed_inputs(backend):
    base = random_boxes(40, 9, dtype=np.float64)
    views = [base[::-1], base[::2], np.asfortranarray(base)]
    for v in views:
        got = backend.output(ferrops.box_iou(backend.input(v), backend.input(v), **backend.kwargs))
        np.testing.assert_allclose(got, ref_pairwise("iou", v, v), rtol=1e-12)
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(base).t().contiguous().t()  # non-contiguous tensor
    np.testing.assert_allclose(ferrops.box_iou(t, t).numpy(), ref_pairwise("iou", base, base), rtol=1e-12)


# ---------------------------------------------------------------------------
# losses


@pytest.mark.spec("BOX-GIOU", "BOX-DIOU", "BOX-CIOU")
@pytest.mark.parametrize("name, kind", LOSSES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_losses_match_formula(backend, name, kind, reduction):
    p, g = random_boxes(60, 10, dtype=np.float64), random_boxes(60, 11, dtype=np.float64)
    got = backend.output(getattr(ferrops, name)(backend.input(p), backend.input(g), reduction, **backend.kwargs))
    want = ref_loss(kind, p, g)
    want = {"none": want, "mean": want.mean(), "sum": want.sum()}[reduction]
    assert np.shape(got) == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=1e-10)


@pytest.mark.spec("BOX-GIOU", "BOX-DIOU", "BOX-CIOU")
@pytest.mark.parametrize("name, kind", LOSSES)
def test_losses_equal_torchvision(name, kind):
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    p, g = random_boxes(200, 12), random_boxes(200, 13)
    theirs = getattr(tv.ops, name)(torch.from_numpy(p), torch.from_numpy(g)).numpy()
    np.testing.assert_allclose(getattr(ferrops, name)(p, g), theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.spec("BOX-BATCH")
def test_loss_arguments_are_checked():
    a = random_boxes(3, 14)
    with pytest.raises(
        ValueError, match=r"generalized_box_iou_loss\(\): argument 'boxes2': expected .*broadcast with boxes1's \[3\]"
    ):
        ferrops.generalized_box_iou_loss(a, a[:2])
    with pytest.raises(ValueError, match="argument 'reduction'.*Invalid"):
        ferrops.distance_box_iou_loss(a, a, "avg")
    assert ferrops.complete_box_iou_loss(a[:0], a[:0], "mean") == 0.0
    assert ferrops.complete_box_iou_loss(a[:0], a[:0]).shape == (0,)


@pytest.mark.spec("BOX-BATCH")
def test_a_batch_of_empty_box_sets_gives_an_empty_matrix_per_element():
    a = random_boxes(2, 17)
    assert ferrops.distance_box_iou(a, np.zeros((3, 0, 4), np.float32)).shape == (3, 2, 0)
    assert ferrops.box_iou(np.zeros((2, 0, 4)), a).shape == (2, 0, 2)


@pytest.mark.spec("BOX-GIOU", "BOX-CIOU")
def test_autograd_flows_for_tensors_that_require_grad():
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    p = torch.from_numpy(random_boxes(20, 15, dtype=np.float64)).requires_grad_()
    g = torch.from_numpy(random_boxes(20, 16, dtype=np.float64))
    for ours, theirs in (
        (ferrops.generalized_box_iou_loss, tv.ops.generalized_box_iou_loss),
        (ferrops.complete_box_iou_loss, tv.ops.complete_box_iou_loss),
        (lambda a, b, r: ferrops.box_iou(a, b).sum(), lambda a, b, r: tv.ops.box_iou(a, b).sum()),
    ):
        (grad_ours,) = torch.autograd.grad(ours(p, g, "sum"), p)
        (grad_theirs,) = torch.autograd.grad(theirs(p, g, "sum"), p)
        torch.testing.assert_close(grad_ours, grad_theirs)


# ---------------------------------------------------------------------------
# NMS-GREEDY


@pytest.mark.spec("NMS-GREEDY")
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_matches_reference_walk(backend, threshold):
    b, s = random_boxes(300, 17, dtype=np.float64), distinct_scores(300, 18, np.float64)
    got = backend.output(ferrops.nms(backend.input(b), backend.input(s), threshold, **backend.kwargs))
    assert got.dtype == np.int64
    assert got.tolist() == ref_nms(b, s, threshold)


@pytest.mark.spec("NMS-GREEDY")
def test_nms_large_input_uses_the_grid_and_matches_reference():
    # Above the grid threshold (2048 boxes), with some huge boxes.
    b = random_boxes(4000, 19, extent=500.0, dtype=np.float64)
    b[::250, 2:] += 300
    s = distinct_scores(4000, 20, np.float64)
    assert ferrops.nms(b, s, 0.4).tolist() == ref_nms(b, s, 0.4)


@pytest.mark.spec("NMS-GREEDY")
@pytest.mark.parametrize("n", [10, 1000, 20000])
def test_nms_equals_torchvision_for_distinct_scores(n):
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    b, s = random_boxes(n, n, extent=10.0 * math.sqrt(n)), distinct_scores(n, n + 1)
    theirs = tv.ops.nms(torch.from_numpy(b), torch.from_numpy(s), 0.5).numpy()
    np.testing.assert_array_equal(ferrops.nms(b, s, 0.5), theirs)


@pytest.mark.spec("NMS-GREEDY")
def test_nms_ties_keep_the_lower_index_first(backend):
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30], [20, 20, 30, 30]], np.float32)
    s = np.array([0.5, 0.5, 0.9, 0.9], np.float32)
    got = backend.output(ferrops.nms(backend.input(b), backend.input(s), 0.5, **backend.kwargs))
    assert got.tolist() == [2, 0]


@pytest.mark.spec("NMS-GREEDY")
@given(box_sets(), st.floats(0, 1), st.integers(0, 2**32 - 1))
def test_nms_invariants(boxes, threshold, seed):
    n = len(boxes)
    scores = np.random.default_rng(seed).integers(0, 5, n).astype(np.float32)  # many ties
    keep = ferrops.nms(boxes, scores, threshold)
    iou = ref_pairwise("iou", boxes, boxes)
    rank = {i: r for r, i in enumerate(sorted(range(n), key=lambda i: (-scores[i], i)))}
    assert [rank[i] for i in keep] == sorted(rank[i] for i in keep)  # walk order
    kept = set(keep.tolist())
    for i in kept:  # no two kept boxes overlap above the threshold
        assert not any(iou[i, j] > threshold for j in kept if j != i)
    for j in set(range(n)) - kept:  # each dropped box has a higher-ranked kept suppressor
        assert any(iou[i, j] > threshold and rank[i] < rank[j] for i in kept)


@pytest.mark.spec("NMS-GREEDY")
def test_nms_empty_input(backend):
    got = backend.output(
        ferrops.nms(
            backend.input(np.zeros((0, 4), np.float32)), backend.input(np.zeros(0, np.float32)), 0.5, **backend.kwargs
        )
    )
    assert got.shape == (0,) and got.dtype == np.int64


@pytest.mark.parametrize(
    "call, error, what",
    [
        (
            lambda: ferrops.nms(np.zeros((3, 5)), np.zeros(3), 0.5),
            ValueError,
            r"nms\(\): argument 'boxes': expected shape \[N, 4\], got \[3, 5\]",
        ),
        (lambda: ferrops.nms(np.zeros((3,)), np.zeros(3), 0.5), ValueError, r"argument 'boxes'"),
        (
            lambda: ferrops.nms(np.zeros((3, 4)), np.zeros(2), 0.5),
            ValueError,
            r"argument 'scores': expected shape \[3\], got \[2\]",
        ),
        (
            lambda: ferrops.nms(np.zeros((3, 4)), np.zeros(3), 1.5),
            ValueError,
            r"argument 'iou_threshold': expected a value in \[0, 1\], got 1.5",
        ),
        (lambda: ferrops.nms(np.zeros((3, 4)), np.zeros(3), -0.1), ValueError, r"iou_threshold"),
        (lambda: ferrops.nms(np.zeros((3, 4)), np.zeros(3), "0.5x"), TypeError, r"iou_threshold"),
        (
            lambda: ferrops.nms(np.zeros((1, 4)), np.array([np.nan]), 0.5),
            ValueError,
            r"argument 'scores': expected finite scores, got scores\[0\] = NaN",
        ),
        (
            lambda: ferrops.nms(np.zeros((1, 4), complex), np.zeros(1), 0.5),
            TypeError,
            r"argument 'boxes': expected real numbers",
        ),
        (lambda: ferrops.nms(np.array([["a"] * 4]), np.zeros(1), 0.5), TypeError, r"argument 'boxes'"),
        (lambda: ferrops.nms(np.zeros((1, 4)), np.zeros(1), 0.5, backend="gpu"), ValueError, r"argument 'backend'"),
        (
            lambda: ferrops.batched_nms(np.zeros((2, 4)), np.zeros(2), np.zeros(2), 0.5),
            TypeError,
            r"argument 'idxs': expected integers",
        ),
        (
            lambda: ferrops.batched_nms(np.zeros((2, 4)), np.zeros(2), np.zeros(3, int), 0.5),
            ValueError,
            r"argument 'idxs': expected shape \[2\]",
        ),
        (lambda: ferrops.soft_nms(np.zeros((1, 4)), np.zeros(1), sigma=0), ValueError, r"argument 'sigma'"),
        (lambda: ferrops.soft_nms(np.zeros((1, 4)), np.zeros(1), method="hard"), ValueError, r"argument 'method'"),
        (lambda: ferrops.matrix_nms(np.zeros((1, 4)), np.zeros(1), kernel="box"), ValueError, r"argument 'kernel'"),
        (lambda: ferrops.matrix_nms(np.zeros((1, 4)), np.zeros(1), sigma=-1), ValueError, r"argument 'sigma'"),
    ],
)
def test_bad_arguments_raise_clear_errors(call, error, what):
    with pytest.raises(error, match=what):
        call()


def test_bad_arguments_raise_the_same_errors_on_the_torch_path():
    torch = pytest.importorskip("torch")
    b = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r"nms\(\): argument 'iou_threshold'"):
        ferrops.nms(b, torch.zeros(3), 2.0, backend="torch")
    with pytest.raises(ValueError, match=r"nms\(\): argument 'scores': expected finite scores, got scores\[1\]"):
        ferrops.nms(b, torch.tensor([0.0, float("inf"), 0.0]), 0.5, backend="torch")
    with pytest.raises(TypeError, match=r"argument 'idxs': expected integers"):
        ferrops.batched_nms(b, torch.zeros(3), torch.zeros(3), 0.5, backend="torch")


# ---------------------------------------------------------------------------
# NMS-BATCHED


@pytest.mark.spec("NMS-BATCHED")
def test_batched_nms_is_per_class_nms_in_score_order(backend):
    b, s = random_boxes(400, 21, dtype=np.float64), distinct_scores(400, 22, np.float64)
    classes = np.random.default_rng(23).integers(-3, 4, 400)
    got = backend.output(
        ferrops.batched_nms(backend.input(b), backend.input(s), backend.input(classes), 0.5, **backend.kwargs)
    )
    want = []
    for c in np.unique(classes):
        members = np.flatnonzero(classes == c)
        want += [members[k] for k in ref_nms(b[members], s[members], 0.5)]
    want.sort(key=lambda i: (-s[i], i))
    assert got.tolist() == want


@pytest.mark.spec("NMS-BATCHED")
def test_batched_nms_equals_torchvision():
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    n = 20000  # large enough for torchvision's per-class path
    b, s = random_boxes(n, 24, extent=1000.0), distinct_scores(n, 25)
    classes = np.random.default_rng(26).integers(0, 80, n)
    theirs = tv.ops.batched_nms(torch.from_numpy(b), torch.from_numpy(s), torch.from_numpy(classes), 0.5).numpy()
    np.testing.assert_array_equal(ferrops.batched_nms(b, s, classes, 0.5), theirs)


@pytest.mark.spec("NMS-BATCHED")
def test_batched_nms_empty(backend):
    e = np.zeros((0, 4), np.float32)
    got = backend.output(
        ferrops.batched_nms(
            backend.input(e),
            backend.input(np.zeros(0, np.float32)),
            backend.input(np.zeros(0, np.int64)),
            0.5,
            **backend.kwargs,
        )
    )
    assert got.shape == (0,) and got.dtype == np.int64


# ---------------------------------------------------------------------------
# NMS-SOFT


@pytest.mark.spec("NMS-SOFT")
@pytest.mark.parametrize("method", ["linear", "gaussian"])
def test_soft_nms_matches_reference(backend, method):
    b, s = random_boxes(120, 27, dtype=np.float64), distinct_scores(120, 28, np.float64)
    keep, kept = backend.output(
        ferrops.soft_nms(backend.input(b), backend.input(s), 0.3, 0.5, 0.05, method, **backend.kwargs)
    )
    want_keep, want_scores = ref_soft_nms(b, s, 0.3, 0.5, 0.05, method)
    assert keep.dtype == np.int64 and keep.tolist() == want_keep
    np.testing.assert_allclose(kept, want_scores, rtol=1e-12)


@pytest.mark.spec("NMS-SOFT")
def test_soft_nms_by_hand():
    # IoU(0, 1) = 1/3 > 0.3: box 1's score 0.9 becomes 0.6 and it drops behind box 2.
    b = np.array([[0, 0, 2, 1], [1, 0, 3, 1], [10, 10, 11, 11]], np.float64)
    keep, kept = ferrops.soft_nms(b, np.array([1.0, 0.9, 0.8]), 0.3)
    assert keep.tolist() == [0, 2, 1]
    np.testing.assert_allclose(kept, [1.0, 0.8, 0.6])


# ---------------------------------------------------------------------------
# NMS-MATRIX


@pytest.mark.spec("NMS-MATRIX")
@pytest.mark.parametrize("kernel", ["gaussian", "linear"])
@pytest.mark.parametrize("with_classes", [False, True])
def test_matrix_nms_matches_reference(backend, kernel, with_classes):
    b, s = random_boxes(150, 29, dtype=np.float64), distinct_scores(150, 30, np.float64)
    classes = np.random.default_rng(31).integers(0, 4, 150) if with_classes else None
    got = backend.output(
        ferrops.matrix_nms(
            backend.input(b),
            backend.input(s),
            None if classes is None else backend.input(classes),
            kernel,
            2.0,
            **backend.kwargs,
        )
    )
    np.testing.assert_allclose(got, ref_matrix_nms(b, s, classes, kernel, 2.0), rtol=1e-10, atol=1e-12)


@pytest.mark.spec("NMS-MATRIX")
def test_matrix_nms_decays_overlaps_only():
    b = np.array([[0, 0, 2, 1], [1, 0, 3, 1], [10, 10, 11, 11]], np.float64)
    out = ferrops.matrix_nms(b, np.array([1.0, 0.9, 0.8]), kernel="linear")
    np.testing.assert_allclose(out, [1.0, 0.9 * (1 - 1 / 3), 0.8])


# ---------------------------------------------------------------------------
# threads, SIMD levels, dispatch


def test_results_are_bitwise_identical_for_any_thread_count_and_simd_level():
    b, s = random_boxes(3000, 32, extent=300.0), distinct_scores(3000, 33)
    classes = np.random.default_rng(34).integers(0, 10, 3000)
    runs = []
    best = ferrops.simd_level()
    try:
        for threads in (1, 2):
            for level in ("scalar", best):
                ferrops.set_num_threads(threads)
                ferrops.set_simd_level(level)
                runs.append(
                    [
                        ferrops.complete_box_iou(b[:500], b).tobytes(),
                        ferrops.nms(b, s, 0.5).tobytes(),
                        ferrops.batched_nms(b, s, classes, 0.5).tobytes(),
                        ferrops.matrix_nms(b[:800], s[:800]).tobytes(),
                        ferrops.distance_box_iou_loss(b, b[::-1], "sum").tobytes(),
                    ]
                )
    finally:
        ferrops.set_num_threads(2)
        ferrops.set_simd_level("auto")
    assert all(r == runs[0] for r in runs)


def test_scalar_level_can_be_forced():
    best = ferrops.simd_level()
    try:
        assert ferrops.set_simd_level("scalar") == "scalar" == ferrops.simd_level()
    finally:
        assert ferrops.set_simd_level("auto") == best
    with pytest.raises(ValueError, match=r"set_simd_level\(\): argument 'level'"):
        ferrops.set_simd_level("sse9")


def test_thread_count_is_settable():
    before = ferrops.get_num_threads()
    try:
        ferrops.set_num_threads(1)
        assert ferrops.get_num_threads() == 1
    finally:
        ferrops.set_num_threads(before)
    with pytest.raises(ValueError, match="positive"):
        ferrops.set_num_threads(0)
    with pytest.raises(TypeError):
        ferrops.set_num_threads(1.5)


def test_outputs_follow_the_input_kind():
    torch = pytest.importorskip("torch")
    b = random_boxes(5, 35)
    assert isinstance(ferrops.box_iou(b, b), np.ndarray)
    t = torch.from_numpy(b)
    for backend in ("auto", "rust", "torch"):
        out = ferrops.box_iou(t, t, backend=backend)
        assert isinstance(out, torch.Tensor) and out.device == t.device
    # NumPy forced onto the torch path comes back as NumPy.
    assert isinstance(ferrops.nms(b, distinct_scores(5, 1), 0.5, backend="torch"), np.ndarray)


def test_lists_are_accepted():
    assert ferrops.box_area([[0, 0, 2, 3]]).tolist() == [6.0]


@pytest.mark.spec("NMS-TOPK")
@pytest.mark.parametrize("max_output", [0, 1, 5, 40, 10_000])
def test_max_output_is_a_prefix_of_the_full_result(backend, max_output):
    boxes, scores = random_boxes(400, 21), distinct_scores(400, 22)
    idxs = np.random.default_rng(23).integers(0, 3, 400)
    b, s, i = backend.input(boxes), backend.input(scores), backend.input(idxs)
    full = backend.output(ferrops.nms(b, s, 0.4, **backend.kwargs))
    top = backend.output(ferrops.nms(b, s, 0.4, max_output=max_output, **backend.kwargs))
    assert top.dtype == np.int64 and top.tolist() == full[:max_output].tolist()
    full_batched = backend.output(ferrops.batched_nms(b, s, i, 0.4, **backend.kwargs))
    top_batched = backend.output(ferrops.batched_nms(b, s, i, 0.4, max_output=max_output, **backend.kwargs))
    assert top_batched.tolist() == full_batched[:max_output].tolist()


@pytest.mark.spec("NMS-TOPK")
def test_max_output_must_be_a_count():
    boxes, scores = random_boxes(10, 24), distinct_scores(10, 25)
    with pytest.raises(ValueError, match=r"nms\(\): argument 'max_output': expected a count >= 0"):
        ferrops.nms(boxes, scores, 0.5, max_output=-1)
    with pytest.raises(TypeError, match=r"batched_nms\(\): argument 'max_output': expected an int"):
        ferrops.batched_nms(boxes, scores, np.zeros(10, np.int64), 0.5, max_output=2.5)


@pytest.mark.spec("BOX-BATCH")
@pytest.mark.parametrize("name", ["box_iou", "generalized_box_iou", "complete_box_iou"])
def test_batched_matrices_equal_one_matrix_per_element(backend, name):
    rng = np.random.default_rng(26)
    corner = rng.uniform(0, 50, (7, 5, 2))
    a = np.concatenate([corner, corner + rng.uniform(1, 20, (7, 5, 2))], axis=-1).astype(np.float32)
    corner = rng.uniform(0, 50, (7, 6, 2))
    b = np.concatenate([corner, corner + rng.uniform(1, 20, (7, 6, 2))], axis=-1).astype(np.float32)
    function = getattr(ferrops, name)
    got = backend.output(function(backend.input(a), backend.input(b), **backend.kwargs))
    assert got.shape == (7, 5, 6) and got.dtype == np.float32
    for k in range(7):
        one = backend.output(function(backend.input(a[k]), backend.input(b[k]), **backend.kwargs))
        np.testing.assert_array_equal(got[k], one)
