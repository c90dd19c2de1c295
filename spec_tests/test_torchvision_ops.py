"""torchvision.ops drop-in behaviour of the box and RoI families (SPEC BOX-BATCH,
BOX-DTYPE, NMS-BATCHED, POOL-ROI): leading dimensions, output dtypes, empty inputs,
quantized tensors and option types, on every backend, with torchvision as an extra
oracle where it is installed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ferrops


def random_boxes(n: int, seed: int, extent: float = 100.0, dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, extent, (n, 2))
    return np.concatenate([xy, xy + rng.uniform(0, extent / 3, (n, 2))], 1).astype(dtype)


PAIRWISE = ["box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou"]
LOSSES = ["generalized_box_iou_loss", "distance_box_iou_loss", "complete_box_iou_loss"]


def batch_of_boxes(shape: tuple[int, ...], seed: int) -> np.ndarray:
    n = int(np.prod(shape))
    return random_boxes(n, seed, dtype=np.float64).reshape(shape + (4,))


def quantized(torch, x, scale: float, zero_point: int = 0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch deprecates quantized tensor creation
        return torch.quantize_per_tensor(torch.as_tensor(x, dtype=torch.float32), scale, zero_point, torch.quint8)


# ---------------------------------------------------------------------------
# leading dimensions


@pytest.mark.spec("BOX-BATCH", "BOX-AREA", "BOX-CONVERT")
def test_area_and_convert_take_any_leading_dimensions(backend):
    boxes = batch_of_boxes((2, 3), 1)
    area = backend.output(ferrops.box_area(backend.input(boxes), **backend.kwargs))
    assert area.shape == (2, 3)
    np.testing.assert_allclose(area, ferrops.box_area(boxes.reshape(-1, 4)).reshape(2, 3))
    assert backend.output(ferrops.box_area(backend.input(boxes[0, 0]), **backend.kwargs)).shape == ()
    converted = backend.output(ferrops.box_convert(backend.input(boxes), "xyxy", "cxcywh", **backend.kwargs))
    assert converted.shape == (2, 3, 4)
    np.testing.assert_allclose(converted[1, 2], ferrops.box_convert(boxes[1, 2:], "xyxy", "cxcywh")[0])


@pytest.mark.spec("BOX-BATCH", "BOX-IOU", "BOX-GIOU", "BOX-DIOU", "BOX-CIOU")
@pytest.mark.parametrize("name", PAIRWISE)
def test_pairwise_matrices_take_batches_and_broadcast(backend, name):
    op = getattr(ferrops, name)
    a, b = batch_of_boxes((2, 3), 2), batch_of_boxes((2, 5), 3)
    got = backend.output(op(backend.input(a), backend.input(b), **backend.kwargs))
    assert got.shape == (2, 3, 5)
    for i in range(2):
        np.testing.assert_allclose(got[i], op(a[i], b[i]), rtol=1e-12)
    # [N, 4] against [B, M, 4]: the single set is paired with every batch element.
    got = backend.output(op(backend.input(a[0]), backend.input(b), **backend.kwargs))
    assert got.shape == (2, 3, 5)
    np.testing.assert_allclose(got[1], op(a[0], b[1]), rtol=1e-12)
    assert backend.output(op(backend.input(a[:0]), backend.input(b[:0]), **backend.kwargs)).shape == (0, 3, 5)


@pytest.mark.spec("BOX-BATCH")
@pytest.mark.parametrize("name", PAIRWISE + ["box_area", "generalized_box_iou_loss"])
def test_batched_results_equal_torchvision(name):
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    a, b = batch_of_boxes((2, 3), 4), batch_of_boxes((2, 3), 5)
    args = (a,) if name == "box_area" else (a, b)
    theirs = getattr(tv.ops, name)(*map(torch.from_numpy, args))
    ours = getattr(ferrops, name)(*map(torch.from_numpy, args))
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs)


@pytest.mark.spec("BOX-BATCH")
def test_a_bad_box_in_a_batch_is_named_with_its_batch_element(backend):
    a = batch_of_boxes((2, 3), 6)
    a[1, 2] = [5, 5, 1, 1]
    with pytest.raises(ValueError, match=r"box_iou\(\): argument 'boxes1'.*box 2 .*batch element \(1,\)"):
        ferrops.box_iou(backend.input(a), backend.input(a), **backend.kwargs)
    with pytest.raises(ValueError, match=r"argument 'boxes2': expected leading dimensions that broadcast"):
        ferrops.box_iou(a, batch_of_boxes((3, 3), 7))
    with pytest.raises(ValueError, match=r"argument 'boxes1': expected shape \[\.\.\., N, 4\], got \[4\]"):
        ferrops.box_iou(a[0, 0], a[0])


@pytest.mark.spec("BOX-BATCH", "BOX-GIOU", "BOX-DIOU", "BOX-CIOU")
@pytest.mark.parametrize("name", LOSSES)
def test_losses_take_any_leading_shape(backend, name):
    op = getattr(ferrops, name)
    p, g = batch_of_boxes((2, 3), 8), batch_of_boxes((2, 3), 9)
    flat = op(p.reshape(-1, 4), g.reshape(-1, 4))
    got = backend.output(op(backend.input(p), backend.input(g), **backend.kwargs))
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got.reshape(-1), flat, rtol=1e-12)
    one = backend.output(op(backend.input(p[0, 0]), backend.input(g[0, 0]), **backend.kwargs))
    assert one.shape == () and np.isclose(one, flat[0])
    total = backend.output(op(backend.input(p), backend.input(g), "sum", **backend.kwargs))
    assert total.shape == () and np.isclose(total, flat.sum())
    # one target box broadcast against every prediction
    np.testing.assert_allclose(op(p, g[0, 0]), op(p, np.broadcast_to(g[0, 0], p.shape)), rtol=1e-12)


@pytest.mark.spec("BOX-BATCH")
@pytest.mark.parametrize("name", LOSSES)
def test_losses_of_one_box_equal_torchvision(name):
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    p, g = torch.tensor([0.0, 0.0, 4.0, 3.0]), torch.tensor([1.0, 1.0, 5.0, 6.0])
    for reduction in ("none", "mean", "sum"):
        torch.testing.assert_close(
            getattr(ferrops, name)(p, g, reduction), getattr(tv.ops, name)(p, g, reduction), rtol=1e-6, atol=1e-7
        )


# ---------------------------------------------------------------------------
# empty inputs and reduction


@pytest.mark.spec("BOX-BATCH")
@pytest.mark.parametrize("name", LOSSES)
def test_mean_of_no_boxes_is_zero_and_backpropagates(backend, name):
    op = getattr(ferrops, name)
    empty = np.zeros((0, 4), np.float32)
    for reduction in ("mean", "sum"):
        got = backend.output(op(backend.input(empty), backend.input(empty), reduction, **backend.kwargs))
        assert got.shape == () and got == 0.0 and not np.signbit(got)
    if backend.name == "rust":
        torch = pytest.importorskip("torch")
        boxes = torch.zeros(0, 4, requires_grad=True)
        loss = op(boxes, boxes, "mean")
        loss.backward()
        assert loss.item() == 0.0 and boxes.grad is not None and boxes.grad.shape == (0, 4)


@pytest.mark.spec("BOX-BATCH")
@pytest.mark.parametrize("name", LOSSES)
def test_bad_reduction_says_invalid_and_names_the_argument(name):
    a = random_boxes(2, 10)
    with pytest.raises(ValueError, match=rf"{name}\(\): argument 'reduction'.*'avg'.*Invalid"):
        getattr(ferrops, name)(a, a, "avg")


@pytest.mark.spec("NMS-BATCHED")
@pytest.mark.parametrize("scores_idxs", ["none", "empty"])
def test_batched_nms_of_no_boxes_reads_neither_scores_nor_idxs(backend, scores_idxs):
    boxes = backend.input(np.zeros((0, 4), np.float32))
    if scores_idxs == "none":
        scores = idxs = None
    else:
        scores, idxs = backend.input(np.zeros(0, np.float32)), backend.input(np.zeros(0, np.int64))
    got = ferrops.batched_nms(boxes, scores, idxs, 0.5, **backend.kwargs)
    assert type(got) is type(boxes)
    out = backend.output(got)
    assert out.shape == (0,) and out.dtype == np.int64


# ---------------------------------------------------------------------------
# output dtypes


def expected_numpy_dtype(op: str, dtype: np.dtype) -> np.dtype:
    """BOX-DTYPE for NumPy inputs, written out from the clause."""
    if dtype == np.float64:
        return np.dtype(np.float64)
    if op == "box_area":
        return dtype if dtype in (np.int32, np.int64) else np.dtype(np.int32 if dtype.kind in "iub" else np.float32)
    if op.startswith("box_convert"):
        halves = op == "box_convert_cxcywh"
        keeps = dtype.kind == "f" or (dtype.kind in "iu" and not halves) or op == "box_convert_same"
        return dtype if keeps else np.dtype(np.float32)
    return np.dtype(np.float32)


DTYPE_OPS = {
    "box_area": lambda x: ferrops.box_area(x),
    "box_convert_cxcywh": lambda x: ferrops.box_convert(x, "xyxy", "cxcywh"),
    "box_convert_xywh": lambda x: ferrops.box_convert(x, "xyxy", "xywh"),
    "box_convert_same": lambda x: ferrops.box_convert(x, "xywh", "xywh"),
    "box_iou": lambda x: ferrops.box_iou(x, x),
    "complete_box_iou": lambda x: ferrops.complete_box_iou(x, x),
    "generalized_box_iou_loss": lambda x: ferrops.generalized_box_iou_loss(x, x),
}


@pytest.mark.spec("BOX-DTYPE")
@pytest.mark.parametrize("op", sorted(DTYPE_OPS))
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "int64", "int32", "int16", "uint8", "bool"])
def test_numpy_output_dtypes(op, dtype):
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, 1]]).astype(dtype)
    if dtype == "bool" and op in ("box_convert_xywh",):
        boxes = np.array([[0, 0, 1, 1]], bool)
    got = DTYPE_OPS[op](boxes)
    assert got.dtype == expected_numpy_dtype(op, np.dtype(dtype))


TORCHVISION_OPS = {
    "box_area": lambda ops, x: ops.box_area(x),
    "box_convert_cxcywh": lambda ops, x: ops.box_convert(x, "xyxy", "cxcywh"),
    "box_convert_xywh": lambda ops, x: ops.box_convert(x, "xyxy", "xywh"),
    "box_convert_back": lambda ops, x: ops.box_convert(x, "cxcywh", "xyxy"),
    "box_iou": lambda ops, x: ops.box_iou(x, x),
    "generalized_box_iou": lambda ops, x: ops.generalized_box_iou(x, x),
    "distance_box_iou": lambda ops, x: ops.distance_box_iou(x, x),
    "complete_box_iou": lambda ops, x: ops.complete_box_iou(x, x),
    "distance_box_iou_loss": lambda ops, x: ops.distance_box_iou_loss(x, x.flip(0)),
}


@pytest.mark.spec("BOX-DTYPE")
@pytest.mark.parametrize("op", sorted(TORCHVISION_OPS))
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64", "int64", "int32", "uint8"])
def test_tensor_output_dtypes_and_values_equal_torchvision(backend, op, dtype):
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    boxes = torch.tensor([[0, 0, 40, 30], [10, 20, 50, 60], [3, 4, 8, 9]]).to(getattr(torch, dtype))
    theirs = TORCHVISION_OPS[op](tv.ops, boxes)
    ours = TORCHVISION_OPS[op](_BackendOps(backend), boxes.to("cuda" if backend.name == "cuda" else "cpu"))
    assert ours.dtype == theirs.dtype
    if dtype == "uint8" and op in ("box_iou", "generalized_box_iou"):
        return  # torchvision subtracts in uint8 there, which wraps for disjoint boxes
    tolerance = {"rtol": 1e-2, "atol": 1e-2} if dtype in ("float16", "bfloat16") else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(ours.cpu().double(), theirs.double(), **tolerance)


class _BackendOps:
    """ferrops' box ops with a backend's keyword, under torchvision's names."""

    def __init__(self, backend) -> None:
        self.kwargs = backend.kwargs

    def __getattr__(self, name):
        op = getattr(ferrops, name)
        return lambda *args: op(*args, **self.kwargs)


@pytest.mark.spec("BOX-DTYPE")
def test_integer_areas_are_exact_beyond_float32():
    boxes = np.array([[0, 0, 2**24 + 1, 3]], np.int64)
    assert ferrops.box_area(boxes)[0] == (2**24 + 1) * 3
    assert ferrops.box_convert(boxes, "xyxy", "xywh")[0, 2] == 2**24 + 1


# ---------------------------------------------------------------------------
# quantized tensors


@pytest.mark.spec("BOX-DTYPE", "NMS-GREEDY")
def test_quantized_nms_equals_torchvision():
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    boxes = np.round(random_boxes(30, 11, extent=60.0))
    scores = (np.random.default_rng(12).permutation(30) + 1) / 40
    q_boxes, q_scores = quantized(torch, boxes, 1.0), quantized(torch, scores, 1 / 40)
    np.testing.assert_array_equal(ferrops.nms(q_boxes, q_scores, 0.3), tv.ops.nms(q_boxes, q_scores, 0.3))
    np.testing.assert_allclose(ferrops.box_iou(q_boxes, q_boxes), ferrops.box_iou(boxes, boxes), rtol=1e-6)


@pytest.mark.spec("POOL-ROI")
@pytest.mark.parametrize("op", ["roi_align", "roi_pool"])
def test_quantized_roi_ops_requantize_like_the_input(op):
    torch = pytest.importorskip("torch")
    x = torch.rand(2, 3, 10, 10, generator=torch.Generator().manual_seed(0))
    rois = torch.tensor([[0, 1.0, 1.0, 7.0, 6.0], [1, 0.0, 2.0, 9.0, 9.0]])
    qx, q_rois = quantized(torch, x, 0.01, 3), quantized(torch, rois, 1.0)
    got = getattr(ferrops, op)(qx, q_rois, 3)
    assert got.is_quantized and got.dtype == torch.quint8
    assert (got.q_scale(), got.q_zero_point()) == (0.01, 3)
    want = getattr(ferrops, op)(qx.dequantize(), rois, 3)
    torch.testing.assert_close(got.dequantize(), want, atol=0.01, rtol=0)
    if op == "roi_align":
        tv = pytest.importorskip("torchvision")
        # torchvision's quantized kernel takes one image per batch
        theirs = tv.ops.roi_align(qx[:1], q_rois[:1], 3, sampling_ratio=2, aligned=True)
        ours = ferrops.roi_align(qx[:1], q_rois[:1], 3, sampling_ratio=2, aligned=True)
        assert (ours.int_repr().int() - theirs.int_repr().int()).abs().max() <= 1


# ---------------------------------------------------------------------------
# option types and inputs


EMPTY_BOXES, EMPTY_SCORES = np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
FEATURES, NO_ROIS = np.zeros((1, 1, 4, 4), np.float32), np.zeros((0, 5), np.float32)


@pytest.mark.spec("NMS-BATCHED")
@pytest.mark.parametrize(
    "function, argument, call",
    [
        ("nms", "iou_threshold", lambda v: ferrops.nms(EMPTY_BOXES, EMPTY_SCORES, v)),
        ("batched_nms", "iou_threshold", lambda v: ferrops.batched_nms(EMPTY_BOXES, EMPTY_SCORES, [], v)),
        ("soft_nms", "iou_threshold", lambda v: ferrops.soft_nms(EMPTY_BOXES, EMPTY_SCORES, v)),
        ("soft_nms", "sigma", lambda v: ferrops.soft_nms(EMPTY_BOXES, EMPTY_SCORES, sigma=v)),
        ("soft_nms", "score_threshold", lambda v: ferrops.soft_nms(EMPTY_BOXES, EMPTY_SCORES, score_threshold=v)),
        ("matrix_nms", "sigma", lambda v: ferrops.matrix_nms(EMPTY_BOXES, EMPTY_SCORES, sigma=v)),
        ("complete_box_iou_loss", "eps", lambda v: ferrops.complete_box_iou_loss(EMPTY_BOXES, EMPTY_BOXES, eps=v)),
        ("roi_pool", "spatial_scale", lambda v: ferrops.roi_pool(FEATURES, NO_ROIS, 2, v)),
        ("roi_align", "spatial_scale", lambda v: ferrops.roi_align(FEATURES, NO_ROIS, 2, v)),
    ],
)
@pytest.mark.parametrize("value", ["0.5", None])
def test_float_options_refuse_strings(backend, function, argument, call, value):
    with pytest.raises(TypeError, match=rf"{function}\(\): argument '{argument}': expected a number"):
        call(value)


@pytest.mark.spec("POOL-ROI")
@pytest.mark.parametrize("op", ["roi_pool", "roi_align"])
def test_roi_ops_take_nested_lists_and_blame_the_input(op):
    rois = np.array([[0, 0, 0, 2, 2]], np.float32)
    features = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    np.testing.assert_allclose(
        getattr(ferrops, op)(features.tolist(), rois, 2), getattr(ferrops, op)(features, rois, 2)
    )
    with pytest.raises(TypeError, match=rf"{op}\(\): argument 'input'"):
        getattr(ferrops, op)([[[[0.0, 1.0], [2.0]]]], rois, 2)


@pytest.mark.spec("POOL-ROI")
def test_roi_align_refuses_a_string_for_aligned():
    with pytest.raises(TypeError, match=r"roi_align\(\): argument 'aligned': expected a bool"):
        ferrops.roi_align(FEATURES, NO_ROIS, 2, aligned="false")
