"""Conformance of the rotated boxes (SPEC section 1: BOX-ROT-*, NMS-ROT) on every
backend, against shapely's exact polygon overlaps."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest

import ferrops

shapely = pytest.importorskip("shapely")


def corners(boxes: np.ndarray, radians_per_unit: float = math.pi / 180) -> np.ndarray:
    """``[N, 4, 2]`` corners of ``(cx, cy, w, h, angle)`` boxes, counter-clockwise on
    screen (y down), written from BOX-ROT-FORMAT."""
    b = boxes.astype(np.float64)
    a = b[:, 4] * radians_per_unit
    c, s = np.cos(a), np.sin(a)
    u = np.stack([c * b[:, 2] / 2, -s * b[:, 2] / 2], 1)
    v = np.stack([s * b[:, 3] / 2, c * b[:, 3] / 2], 1)
    centre = b[:, :2]
    return np.stack([centre + u + v, centre - u + v, centre - u - v, centre + u - v], 1)


def shapely_overlaps(a: np.ndarray, b: np.ndarray, mode: str = "iou", aligned: bool = False) -> np.ndarray:
    pa, pb = shapely.polygons(corners(a)), shapely.polygons(corners(b))
    if not aligned:
        pa, pb = pa[:, None], pb[None, :]
    inter = shapely.area(shapely.intersection(pa, pb))
    area_a, area_b = shapely.area(pa), shapely.area(pb)
    base = area_a if mode == "iof" else area_a + area_b - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(inter > 0, inter / base, 0.0)


def random_rotated(n: int, seed: int, extent: float = 200.0, size: tuple[float, float] = (4.0, 60.0)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [rng.uniform(0, extent, (n, 2)), rng.uniform(*size, (n, 2)), rng.uniform(-720, 720, n)]
    ).astype(np.float64)


def check_close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-6, atol: float = 1e-9) -> None:
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


@pytest.mark.spec("BOX-ROT-IOU")
@pytest.mark.parametrize("mode", ["iou", "iof"])
def test_random_boxes_equal_shapely(backend, mode):
    a, b = random_rotated(60, 1), random_rotated(50, 2)
    got = backend.output(ferrops.box_iou_rotated(backend.input(a), backend.input(b), mode, **backend.kwargs))
    assert got.shape == (60, 50) and got.dtype == np.float64
    check_close(got, shapely_overlaps(a, b, mode))
    aligned = backend.output(
        ferrops.box_iou_rotated(backend.input(a[:50]), backend.input(b), mode, aligned=True, **backend.kwargs)
    )
    check_close(aligned, shapely_overlaps(a[:50], b, mode, aligned=True))


@pytest.mark.spec("BOX-ROT-IOU")
def test_special_configurations_equal_shapely(backend):
    cases = np.array(
        [
            [0, 0, 10, 10, 0],  # identical pair below
            [0, 0, 10, 10, 0],
            [0, 0, 4, 4, 33],  # nested in the 10 x 10
            [10, 0, 10, 10, 0],  # touching edge
            [0, 0, 1e-3, 2e-3, 17],  # tiny
            [5e5, -3e5, 2e4, 1e4, 12],  # huge and far from the origin
            [5e5 + 1, -3e5, 2e4, 1e4, 12 + 1e-7],  # near-parallel neighbour
            [3, 1, 8, 2, 1e-9],  # near-axis-aligned
            [3, 1, 8, 2, 360 * 5 + 45],  # beyond +-pi
            [3, 1, 8, 2, -360 * 7 + 45],
        ],
        dtype=np.float64,
    )
    got = backend.output(ferrops.box_iou_rotated(backend.input(cases), backend.input(cases), **backend.kwargs))
    want = shapely_overlaps(cases, cases)
    check_close(got, want, rtol=1e-6, atol=1e-9)
    assert got[0, 1] == 1.0 and np.all(np.diag(got) == 1.0), "a box with itself is exactly 1"
    assert got[0, 3] <= 1e-12, "touching boxes do not overlap"


@pytest.mark.spec("BOX-ROT-IOU")
def test_zero_area_boxes_overlap_nothing(backend):
    a = np.array([[0, 0, 0, 5, 10], [0, 0, 5, 5, 10]], dtype=np.float32)
    got = backend.output(ferrops.box_iou_rotated(backend.input(a), backend.input(a), **backend.kwargs))
    assert got.dtype == np.float32
    assert got[0, 0] == 0 and got[0, 1] == 0 and got[1, 1] == 1


@pytest.mark.spec("BOX-ROT-FORMAT")
def test_angle_units_and_directions_agree(backend):
    a, b = random_rotated(20, 3), random_rotated(20, 4)
    want = backend.output(ferrops.box_iou_rotated(backend.input(a), backend.input(b), **backend.kwargs))
    rad = a.copy(), b.copy()
    rad[0][:, 4] *= math.pi / 180
    rad[1][:, 4] *= math.pi / 180
    got = ferrops.box_iou_rotated(backend.input(rad[0]), backend.input(rad[1]), angle_unit="rad", **backend.kwargs)
    check_close(backend.output(got), want, rtol=1e-9)
    flipped = a.copy(), b.copy()
    flipped[0][:, 4] *= -1
    flipped[1][:, 4] *= -1
    got = ferrops.box_iou_rotated(
        backend.input(flipped[0]), backend.input(flipped[1]), clockwise=True, **backend.kwargs
    )
    check_close(backend.output(got), want, rtol=1e-12)


@pytest.mark.spec("BOX-ROT-FORMAT")
def test_convert_matches_torchvision_and_round_trips():
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    boxes = random_rotated(30, 5).astype(np.float32)
    for fmt in ("xywhr", "xyxyxyxy"):
        got = ferrops.box_convert(boxes, "cxcywhr", fmt)
        want = tv.ops.box_convert(torch.from_numpy(boxes), "cxcywhr", fmt).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
        back = ferrops.box_convert(got.astype(np.float64), fmt, "cxcywhr")
        np.testing.assert_allclose(back[:, :4], boxes[:, :4], rtol=1e-4, atol=1e-3)
    # The corners are the polygon the IoU kernels clip.
    quad = ferrops.box_convert(boxes.astype(np.float64), "cxcywhr", "xyxyxyxy").reshape(-1, 4, 2)
    np.testing.assert_allclose(
        shapely.area(shapely.polygons(quad)), boxes[:, 2].astype(np.float64) * boxes[:, 3], rtol=1e-6
    )
    assert set(map(tuple, np.round(quad[0], 3))) == set(map(tuple, np.round(corners(boxes[:1])[0], 3)))


@pytest.mark.spec("BOX-ROT-PROBIOU")
def test_probiou_follows_ultralytics_formula(backend):
    a, b = random_rotated(15, 6), random_rotated(12, 7)
    a[:3] = b[:3]
    got = backend.output(ferrops.probiou(backend.input(a), backend.input(b)))
    assert got.shape == (15, 12)
    # ultralytics' xywhr: radians, turned by [[cos, -sin], [sin, cos]] (clockwise on screen).
    ua, ub = a.copy(), b.copy()
    ua[:, 4] = -np.deg2rad(a[:, 4])
    ub[:, 4] = -np.deg2rad(b[:, 4])
    want = reference_probiou(ua[:, None, :], ub[None, :, :])
    check_close(got, want, rtol=1e-12, atol=1e-12)
    same = backend.output(ferrops.probiou(backend.input(ua), backend.input(ub), angle_unit="rad", clockwise=True))
    check_close(same, want, rtol=1e-12, atol=1e-12)
    assert np.all(np.diag(got[:3, :3]) > 0.99)


def reference_probiou(b1: np.ndarray, b2: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """ultralytics' batch_probiou, written out from its formula in float64."""

    def cov(b):
        a, c = b[..., 2] ** 2 / 12, b[..., 3] ** 2 / 12
        cos, sin = np.cos(b[..., 4]), np.sin(b[..., 4])
        return a * cos**2 + c * sin**2, a * sin**2 + c * cos**2, (a - c) * cos * sin

    (a1, b1_, c1), (a2, b2_, c2) = cov(b1), cov(b2)
    dx, dy = b1[..., 0] - b2[..., 0], b1[..., 1] - b2[..., 1]
    det = (a1 + a2) * (b1_ + b2_) - (c1 + c2) ** 2
    t1 = ((a1 + a2) * dy**2 + (b1_ + b2_) * dx**2) / (det + eps) * 0.25
    t2 = ((c1 + c2) * (-dx) * dy) / (det + eps) * 0.5
    own = np.clip(a1 * b1_ - c1**2, 0, None) * np.clip(a2 * b2_ - c2**2, 0, None)
    t3 = np.log(det / (4 * np.sqrt(own) + eps) + eps) * 0.5
    bd = np.clip(t1 + t2 + t3, eps, 100.0)
    return 1 - np.sqrt(1 - np.exp(-bd) + eps)


def greedy_reference(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """NMS-ROT written out: stable descending order, drop at IoU >= threshold."""
    order = np.argsort(-scores, kind="stable")
    iou = shapely_overlaps(boxes, boxes)
    kept: list[int] = []
    for i in order:
        if all(iou[k, i] < threshold for k in kept):
            kept.append(int(i))
    return kept


@pytest.mark.spec("NMS-ROT")
@pytest.mark.parametrize("threshold", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_nms_rotated_equals_greedy_reference(backend, threshold):
    boxes = random_rotated(150, 8, extent=120)
    scores = np.random.default_rng(9).permutation(150).astype(np.float64)
    got = backend.output(ferrops.nms_rotated(backend.input(boxes), backend.input(scores), threshold, **backend.kwargs))
    assert got.dtype == np.int64
    want = greedy_reference(boxes, scores, threshold)
    if threshold == 0.0:
        want = want[:1]
    assert got.tolist() == want
    iou = shapely_overlaps(boxes, boxes)
    kept = set(got.tolist())
    for p in kept:
        for q in kept:
            assert p == q or iou[p, q] < threshold + 1e-9, "two kept boxes overlap at the threshold"
    for i in range(150):
        if i not in kept and threshold > 0:
            assert any(iou[k, i] >= threshold - 1e-9 and scores[k] > scores[i] for k in kept)


@pytest.mark.spec("NMS-ROT")
def test_batched_nms_rotated_is_per_class(backend):
    boxes = random_rotated(120, 10, extent=60)
    scores = np.random.default_rng(11).random(120)
    idxs = np.random.default_rng(12).integers(0, 4, 120)
    got = backend.output(
        ferrops.batched_nms_rotated(
            backend.input(boxes), backend.input(scores), backend.input(idxs), 0.3, **backend.kwargs
        )
    )
    want: list[int] = []
    for c in range(4):
        members = np.flatnonzero(idxs == c)
        want += [int(members[k]) for k in greedy_reference(boxes[members], scores[members], 0.3)]
    want.sort(key=lambda i: -scores[i])
    assert got.tolist() == want
    empty = ferrops.batched_nms_rotated(np.zeros((0, 5)), np.zeros(0), np.zeros(0, np.int64), 0.5)
    assert empty.shape == (0,) and empty.dtype == np.int64


@pytest.mark.spec("BOX-ROT-IOU", "NMS-ROT")
def test_bad_input_is_named():
    good = random_rotated(3, 13)
    bad = good.copy()
    bad[1, 2] = -1
    with pytest.raises(ValueError, match=r"box_iou_rotated\(\): argument 'boxes1'.*w >= 0.*box 1"):
        ferrops.box_iou_rotated(bad, good)
    bad = good.copy()
    bad[2, 4] = np.nan
    with pytest.raises(ValueError, match=r"nms_rotated\(\): argument 'boxes'.*finite.*box 2"):
        ferrops.nms_rotated(bad, np.ones(3), 0.5)
    with pytest.raises(ValueError, match=r"argument 'boxes1': expected shape \[N, 5\]"):
        ferrops.box_iou_rotated(good[:, :4], good)
    with pytest.raises(ValueError, match=r"argument 'mode'"):
        ferrops.box_iou_rotated(good, good, "giou")
    with pytest.raises(ValueError, match=r"argument 'angle_unit'"):
        ferrops.box_iou_rotated(good, good, angle_unit="grad")
    with pytest.raises(ValueError, match=r"argument 'boxes2'.*when aligned"):
        ferrops.box_iou_rotated(good, good[:2], aligned=True)
    with pytest.raises(ValueError, match=r"argument 'scores': expected shape \[3\]"):
        ferrops.nms_rotated(good, np.ones(2), 0.5)
    with pytest.raises(ValueError, match=r"argument 'iou_threshold'"):
        ferrops.nms_rotated(good, np.ones(3), 1.5)
    with pytest.raises(ValueError, match=r"argument 'idxs'"):
        ferrops.batched_nms_rotated(good, np.ones(3), np.zeros(2, np.int64), 0.5)
    with pytest.raises(TypeError, match=r"argument 'clockwise'"):
        ferrops.nms_rotated(good, np.ones(3), 0.5, clockwise="yes")
    empty = ferrops.box_iou_rotated(np.zeros((0, 5), np.float32), good.astype(np.float32))
    assert empty.shape == (0, 3) and empty.dtype == np.float32


def _coco_datasets(seed: int):
    """Axis-aligned scenes (angle 0) as rotated boxes and as pycocotools dicts."""
    rng = np.random.default_rng(seed)
    gts, dets, images, annotations, results = [], [], [], [], []
    for image in range(6):
        n = int(rng.integers(0, 12))
        g = np.column_stack([rng.uniform(30, 400, (n, 2)), rng.uniform(8, 60, (n, 2)), np.zeros(n)])
        labels = rng.integers(1, 4, n)
        d = np.concatenate([g + np.column_stack([rng.normal(0, 4, (n, 4)), np.zeros(n)]), g[:2] + [40, 0, 0, 0, 0]])
        d[:, 2:4] = np.abs(d[:, 2:4]) + 1
        d_labels = np.concatenate([labels, labels[:2]]).astype(np.int64)
        d_scores = rng.permutation(len(d)) / len(d) + image
        gts.append({"boxes": g, "labels": labels})
        dets.append({"boxes": d, "scores": d_scores, "labels": d_labels})
        images.append({"id": image, "width": 500, "height": 500})
        for b, lab in zip(g, labels):
            xywh = [b[0] - b[2] / 2, b[1] - b[3] / 2, b[2], b[3]]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image,
                    "category_id": int(lab),
                    "bbox": xywh,
                    "area": b[2] * b[3],
                    "iscrowd": 0,
                }
            )
        for b, lab, s in zip(d, d_labels, d_scores):
            results.append(
                {
                    "image_id": image,
                    "category_id": int(lab),
                    "bbox": [b[0] - b[2] / 2, b[1] - b[3] / 2, b[2], b[3]],
                    "score": float(s),
                }
            )
    return gts, dets, images, annotations, results


@pytest.mark.spec("DET-ROT")
def test_rotated_evaluation_equals_pycocotools_on_axis_aligned_boxes():
    coco_module = pytest.importorskip("pycocotools.coco")
    cocoeval_module = pytest.importorskip("pycocotools.cocoeval")
    gts, dets, images, annotations, results = _coco_datasets(14)
    coco = coco_module.COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": [{"id": k} for k in (1, 2, 3)]}
    coco.createIndex()
    evaluator = cocoeval_module.COCOeval(coco, coco.loadRes(results), "bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    got = ferrops.detection.evaluate_rotated(dets, gts)
    np.testing.assert_allclose([got["map"], got["map_50"], got["map_75"]], evaluator.stats[:3], rtol=1e-12, atol=1e-12)


@pytest.mark.spec("DET-ROT")
def test_rotated_evaluation_rules():
    box = np.array([[50.0, 50, 20, 10, 30]])
    perfect = ferrops.detection.evaluate_rotated(
        [{"boxes": box, "scores": [0.9], "labels": [1]}], [{"boxes": box, "labels": [1]}]
    )
    assert perfect["map"] == pytest.approx(1.0) and perfect["map_50_voc07"] == pytest.approx(1.0)
    # A duplicate is a false positive; a detection on ignored ground truth is neither.
    dup = ferrops.detection.evaluate_rotated(
        [{"boxes": np.vstack([box, box, box + [200, 0, 0, 0, 0]]), "scores": [0.9, 0.8, 0.95], "labels": [1, 1, 1]}],
        [{"boxes": np.vstack([box, box + [200, 0, 0, 0, 0]]), "labels": [1, 1], "ignore": [False, True]}],
    )
    assert dup["map_50"] == pytest.approx(1.0) and dup["map_50_voc07"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"evaluate_rotated\(\): argument 'detections': expected one entry per image"):
        ferrops.detection.evaluate_rotated([], [{"boxes": box, "labels": [1]}])
    with pytest.raises(ValueError, match=r"argument 'ground_truths'.*'labels'"):
        ferrops.detection.evaluate_rotated([{"boxes": box, "scores": [1], "labels": [1]}], [{"boxes": box}])


@pytest.mark.spec("BOX-ROT-IOU", "NMS-ROT")
def test_results_do_not_depend_on_the_thread_count():
    boxes = random_rotated(3000, 15, extent=400)
    scores = np.random.default_rng(16).random(3000)
    idxs = np.random.default_rng(17).integers(0, 5, 3000)
    before = ferrops.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            ferrops.set_num_threads(threads)
            results.append(
                (
                    ferrops.box_iou_rotated(boxes[:400], boxes),
                    ferrops.batched_nms_rotated(boxes, scores, idxs, 0.2),
                )
            )
    finally:
        ferrops.set_num_threads(before)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


@pytest.mark.spec("NMS-ROT")
def test_duplicates_are_suppressed_even_at_threshold_one(backend):
    boxes = np.repeat(random_rotated(5, 18), 2, axis=0)
    scores = np.arange(10, dtype=np.float64)
    got = backend.output(ferrops.nms_rotated(backend.input(boxes), backend.input(scores), 1.0, **backend.kwargs))
    assert got.tolist() == [9, 7, 5, 3, 1]


@pytest.mark.spec("BOX-ROT-FORMAT")
def test_convert_errors_name_box_convert_rotated():
    # Found by the fuzz suite: the errors named "box_convert()", a function the caller may not have called.
    with pytest.raises(ValueError, match=r"box_convert_rotated\(\): argument 'in_fmt'"):
        ferrops.box_convert_rotated(random_rotated(2, 0), "cxcywha", "xywhr")
    with pytest.raises(ValueError, match=r"box_convert_rotated\(\): argument 'boxes'"):
        ferrops.box_convert_rotated(np.zeros((2, 4)), "cxcywhr", "xywhr")


@pytest.mark.spec("DET-ROT")
def test_rotated_evaluation_bad_input_is_named():
    # Found by the fuzz suite: these raised Python's own errors naming nothing, or
    # (max_detections=-1) silently dropped a detection.
    gt = [{"boxes": random_rotated(2, 3), "labels": np.array([0, 1])}]
    dt = [{"boxes": random_rotated(2, 3), "scores": np.ones(2), "labels": np.array([0, 1])}]
    for bad, argument in ((None, "detections"), ([3], "detections")):
        with pytest.raises(TypeError, match=rf"evaluate_rotated\(\): argument '{argument}'"):
            ferrops.evaluate_rotated(bad, gt)
    with pytest.raises(ValueError, match=r"evaluate_rotated\(\): argument 'max_detections'"):
        ferrops.evaluate_rotated(dt, gt, max_detections=-1)
    with pytest.raises(TypeError, match=r"evaluate_rotated\(\): argument 'iou_thresholds'"):
        ferrops.evaluate_rotated(dt, gt, iou_thresholds=[object()])
    with pytest.raises(ValueError, match=r"evaluate_rotated\(\): argument 'angle_unit'"):
        ferrops.evaluate_rotated(dt, gt, angle_unit="grad")
    assert ferrops.evaluate_rotated(dt, gt)["map"] == pytest.approx(1.0)


@pytest.mark.spec("BOX-ROT-FORMAT")
def test_convert_of_more_boxes_than_memory_is_named():
    # Found by the fuzz suite: NumPy's own MemoryError, naming nothing.
    huge = np.broadcast_to(np.zeros((), np.float32), (2**40, 5))
    with pytest.raises(MemoryError, match=r"box_convert_rotated\(\).*'boxes'"):
        ferrops.box_convert_rotated(huge, "cxcywhr", "xywhr")
