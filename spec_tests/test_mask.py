"""Conformance of ``ferrops.mask`` (clauses MASK-*): pycocotools' own results on
generated masks, polygons and boxes, byte for byte, and clear errors on
malformed input."""

from __future__ import annotations

import numpy as np
import pytest

import ferrops
from ferrops import mask as fm

pcm = pytest.importorskip("pycocotools.mask")

# pycocotools' decode warns under NumPy 2 (its __array__ lacks `copy`): its issue, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def random_masks(rng: np.random.Generator, h: int, w: int, n: int) -> np.ndarray:
    """``[H, W, N]`` Fortran-order uint8 masks: blobs, plus the edge cases."""
    masks = np.zeros((h, w, n), dtype=np.uint8, order="F")
    for i in range(n):
        kind = i % 6
        if kind == 1:
            masks[:, :, i] = 1  # full
        elif kind == 2:
            masks[rng.integers(h), rng.integers(w), i] = 1  # one pixel
        elif kind == 3:
            masks[:, 0, i] = 1  # touching the border
            masks[-1, :, i] = 1
        elif kind >= 4:
            y0, x0 = rng.integers(h), rng.integers(w)
            masks[y0 : y0 + rng.integers(1, h + 1), x0 : x0 + rng.integers(1, w + 1), i] = 1
            masks[:, :, i] ^= (rng.random((h, w)) < 0.05).astype(np.uint8)
    return masks


SIZES = [(1, 1), (7, 5), (33, 17), (64, 64), (101, 3)]


@pytest.mark.spec("MASK-RLE", "MASK-COUNTS")
@pytest.mark.parametrize("h, w", SIZES)
def test_encode_decode_match_pycocotools(h, w):
    masks = random_masks(np.random.default_rng(h * 100 + w), h, w, 12)
    ours, theirs = fm.encode(masks), pcm.encode(masks)
    assert ours == theirs
    assert fm.encode(masks[:, :, 3]) == pcm.encode(np.asfortranarray(masks[:, :, 3]))
    decoded = fm.decode(theirs)
    assert decoded.dtype == np.uint8 and decoded.flags.f_contiguous
    np.testing.assert_array_equal(decoded, masks)
    np.testing.assert_array_equal(fm.decode(theirs[4]), pcm.decode(theirs[4]))


@pytest.mark.spec("MASK-RLE")
def test_encode_accepts_any_order_bool_and_tensors():
    masks = random_masks(np.random.default_rng(0), 20, 30, 6)
    want = pcm.encode(masks)
    assert fm.encode(np.ascontiguousarray(masks)) == want
    assert fm.encode(np.ascontiguousarray(masks.transpose(2, 0, 1)).transpose(1, 2, 0)) == want
    assert fm.encode(masks.astype(bool)) == want
    torch = pytest.importorskip("torch")
    assert fm.encode(torch.from_numpy(np.ascontiguousarray(masks))) == want


@pytest.mark.spec("MASK-RLE")
def test_value_change_rule_and_empty_sizes():
    odd = np.asfortranarray(np.array([[0, 1, 2, 2, 0]], dtype=np.uint8))
    assert fm.encode(odd) == pcm.encode(odd)
    for shape in [(0, 3), (3, 0)]:
        empty = np.zeros(shape, dtype=np.uint8, order="F")
        assert fm.encode(empty) == pcm.encode(empty)
    assert fm.encode(np.zeros((3, 3, 0), dtype=np.uint8, order="F")) == []
    assert fm.decode([]).shape == (0, 0, 0)


@pytest.mark.spec("MASK-COUNTS")
def test_str_and_bytes_counts_are_equal():
    rles = pcm.encode(random_masks(np.random.default_rng(1), 40, 50, 6))
    as_str = [{"size": r["size"], "counts": r["counts"].decode()} for r in rles]
    np.testing.assert_array_equal(fm.decode(as_str), fm.decode(rles))
    np.testing.assert_array_equal(fm.area(as_str), pcm.area(rles))
    np.testing.assert_array_equal(fm.iou(as_str, rles, [0] * 6), pcm.iou(rles, rles, [0] * 6))
    uncompressed = [{"size": [1, 5], "counts": [1, 2, 2]}]
    assert fm.frPyObjects(uncompressed, 1, 5) == pcm.frPyObjects(uncompressed, 1, 5)
    assert fm.frPyObjects(as_str[0], 40, 50) == rles[0]


@pytest.mark.spec("MASK-AREA", "MASK-BBOX")
@pytest.mark.parametrize("h, w", SIZES)
def test_area_and_bbox_match_pycocotools(h, w):
    rles = pcm.encode(random_masks(np.random.default_rng(h + w), h, w, 12))
    area = fm.area(rles)
    assert area.dtype == np.uint32
    np.testing.assert_array_equal(area, pcm.area(rles))
    np.testing.assert_array_equal(fm.toBbox(rles), pcm.toBbox(rles))
    assert fm.area(rles[2]) == pcm.area(rles[2]) and isinstance(fm.area(rles[2]), np.uint32)
    np.testing.assert_array_equal(fm.toBbox(rles[5]), pcm.toBbox(rles[5]))
    assert fm.toBbox([]).shape == (0, 4) and fm.area([]).shape == (0,)


@pytest.mark.spec("MASK-MERGE")
def test_merge_matches_pycocotools():
    rles = pcm.encode(random_masks(np.random.default_rng(2), 25, 19, 12))
    for intersect in (False, True):
        for part in (rles[:1], rles[:2], rles[3:9], rles):
            assert fm.merge(part, intersect) == pcm.merge(part, intersect)
    assert fm.merge([]) == pcm.merge([])


@pytest.mark.spec("MASK-IOU")
def test_iou_matches_pycocotools_with_crowd():
    rng = np.random.default_rng(3)
    dt = pcm.encode(random_masks(rng, 31, 29, 18))
    gt = pcm.encode(random_masks(rng, 31, 29, 12))
    crowd = [i % 3 == 0 for i in range(12)]
    np.testing.assert_array_equal(fm.iou(dt, gt, crowd), pcm.iou(dt, gt, crowd))
    boxes_d = rng.random((9, 4)) * 20
    boxes_g = rng.random((7, 4)) * 20
    np.testing.assert_array_equal(fm.iou(boxes_d, boxes_g, crowd[:7]), pcm.iou(boxes_d, boxes_g, crowd[:7]))
    np.testing.assert_array_equal(
        fm.iou(boxes_d.tolist(), boxes_g.tolist(), crowd[:7]), pcm.iou(boxes_d, boxes_g, crowd[:7])
    )
    assert fm.iou([], gt, crowd) == [] == pcm.iou([], gt, crowd)
    other = pcm.encode(np.ones((30, 29), dtype=np.uint8, order="F"))
    assert fm.iou([other], gt[1:2], [0])[0, 0] == pcm.iou([other], gt[1:2], [0])[0, 0] == -1


@pytest.mark.spec("MASK-IOU")
def test_iou_is_the_same_for_any_thread_count():
    rng = np.random.default_rng(4)
    dt = pcm.encode(random_masks(rng, 40, 40, 30))
    before = ferrops.get_num_threads()
    try:
        ferrops.set_num_threads(1)
        one = fm.iou(dt, dt, [0] * 30)
        ferrops.set_num_threads(3)
        three = fm.iou(dt, dt, [0] * 30)
    finally:
        ferrops.set_num_threads(before)
    assert one.tobytes() == three.tobytes()


@pytest.mark.spec("MASK-IOU")
def test_mask_iou_of_dense_masks():
    rng = np.random.default_rng(5)
    a = random_masks(rng, 23, 37, 8).transpose(2, 0, 1)
    b = random_masks(rng, 23, 37, 5).transpose(2, 0, 1) * 3  # non-zero is foreground
    got = fm.mask_iou(a.astype(bool), b)
    fa, fb = a.reshape(8, -1).astype(bool), b.reshape(5, -1).astype(bool)
    inter = (fa[:, None] & fb[None]).sum(-1)
    union = (fa[:, None] | fb[None]).sum(-1)
    np.testing.assert_array_equal(got, np.where(inter == 0, 0.0, inter / np.maximum(union, 1)))
    torch = pytest.importorskip("torch")
    out = fm.mask_iou(torch.from_numpy(a.astype(bool)), torch.from_numpy(b))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert fm.mask_iou(a[:0], b).shape == (0, 5)


def random_polygon(rng: np.random.Generator, h: int, w: int) -> list[float]:
    k = int(rng.integers(3, 12))
    centre = rng.random(2) * [w, h]
    if rng.random() < 0.3:  # vertices on the half-pixel grid, where rounding ties
        return list((np.round(rng.random(2 * k) * 2 * max(h, w)) / 2 - 2).astype(float))
    angles = np.sort(rng.random(k) * 2 * np.pi)
    radius = rng.random(k) * max(h, w) * 0.8
    xy = np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)], 1)
    return list(xy.reshape(-1))


@pytest.mark.spec("MASK-POLY")
@pytest.mark.parametrize("h, w", [(1, 1), (17, 23), (64, 48), (480, 640)])
def test_polygons_match_pycocotools(h, w):
    rng = np.random.default_rng(h * w)
    polygons = [random_polygon(rng, h, w) for _ in range(300)]
    polygons.append([0.0, 0.0, 0.0, 0.0, 5.0, 5.0, 5.0, 5.0, 0.0, 3.0])  # repeated vertices
    polygons.append([-10.0, -10.0, w + 10.0, -5.0, w + 3.0, h + 8.0])  # beyond every border
    assert fm.frPyObjects(polygons, h, w) == pcm.frPyObjects(polygons, h, w)
    # A multi-part object is the merge of its parts.
    parts = polygons[:3]
    assert fm.merge(fm.frPyObjects(parts, h, w)) == pcm.merge(pcm.frPyObjects(parts, h, w))


@pytest.mark.spec("MASK-POLY")
def test_boxes_match_pycocotools():
    rng = np.random.default_rng(6)
    boxes = np.concatenate([rng.random((50, 2)) * 60 - 5, rng.random((50, 2)) * 40], 1)
    assert fm.frPyObjects(boxes, 50, 45) == pcm.frPyObjects(boxes, 50, 45)
    assert fm.frPyObjects(boxes.tolist(), 50, 45) == pcm.frPyObjects(boxes, 50, 45)
    assert fm.frPyObjects([], 5, 5) == []


BAD_RLES = [
    ({"size": [2, 2], "counts": b"3"}, "summing to h \\* w = 4"),
    ({"size": [2, 2], "counts": b"5"}, "summing to h \\* w = 4"),
    ({"size": [2, 2], "counts": "4 "}, "characters '0' to 'o'"),
    ({"size": [2, 2], "counts": b"0P"}, "ending inside a run"),
    ({"size": [-2, 2], "counts": b"0"}, "non-negative"),
    ({"size": [1 << 20, 1 << 20], "counts": b"0"}, "h \\* w < 2\\*\\*32"),
    ({"size": [2, 2], "counts": [1, -1, 4]}, "run lengths in"),
    ({"size": [2, 2]}, "without 'size' or 'counts'"),
]


@pytest.mark.spec("MASK-CHECK")
@pytest.mark.parametrize("rle, match", BAD_RLES)
@pytest.mark.parametrize("function", [fm.decode, fm.area, fm.toBbox])
def test_malformed_rles_raise(function, rle, match):
    with pytest.raises(ValueError, match=f"{function.__name__}\\(\\): argument 'rleObjs\\[0\\].*{match}"):
        function([rle])


@pytest.mark.spec("MASK-CHECK")
def test_bad_arguments_raise():
    ok = {"size": [2, 2], "counts": b"4"}
    with pytest.raises(ValueError, match="merge\\(\\).*masks of one size"):
        fm.merge([ok, {"size": [1, 4], "counts": b"4"}])
    with pytest.raises(ValueError, match="decode\\(\\).*masks of one size"):
        fm.decode([ok, {"size": [1, 4], "counts": b"4"}])
    with pytest.raises(ValueError, match="iou\\(\\): argument 'pyiscrowd'"):
        fm.iou([ok], [ok, ok], [0])
    with pytest.raises(TypeError, match="iou\\(\\): argument 'gt'"):
        fm.iou([ok], [[0, 0, 1, 1]], [0])
    with pytest.raises(ValueError, match="frPyObjects\\(\\): argument 'pyobj\\[1\\]'.*at least 3 points"):
        fm.frPyObjects([[0, 0, 1, 0, 1, 1], [0, 0, 1, 1, 2]], 4, 4)
    with pytest.raises(ValueError, match="frPyObjects\\(\\): argument 'pyobj'.*NaN at coordinate 2 of polygon 0"):
        fm.frPyObjects([[0, 0, float("nan"), 0, 1, 1]], 4, 4)
    with pytest.raises(ValueError, match="frPyObjects\\(\\): argument 'pyobj'.*inf"):
        fm.frPyObjects(np.array([[0, 0, np.inf, 1]]), 4, 4)
    with pytest.raises(ValueError, match="frPyObjects\\(\\): argument 'pyobj\\[0\\]\\['size'\\]'"):
        fm.frPyObjects({"size": [3, 3], "counts": [9]}, 4, 4)
    with pytest.raises(ValueError, match="frPyObjects\\(\\): argument 'h'"):
        fm.frPyObjects([[0, 0, 1, 0, 1, 1]], -1, 4)
    with pytest.raises(TypeError, match="encode\\(\\): argument 'bimask'"):
        fm.encode(np.zeros((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="encode\\(\\): argument 'bimask'"):
        fm.encode(np.zeros(4, dtype=np.uint8))
    with pytest.raises(ValueError, match="mask_iou\\(\\): argument 'masks_b'"):
        fm.mask_iou(np.zeros((1, 2, 2), bool), np.zeros((1, 2, 3), bool))


@pytest.mark.spec("MASK-CHECK")
def test_a_mask_copy_no_machine_can_hold_is_a_memory_error_naming_the_function():
    # Zero-stride views: nothing is allocated until the Fortran/C copy is asked for.
    huge = np.broadcast_to(np.zeros((1, 1, 1), np.uint8), (2**20, 2**20, 1))
    with pytest.raises(MemoryError, match=r"encode\(\).*'bimask'"):
        fm.encode(huge)
    stack = np.broadcast_to(np.zeros((1, 1, 1), np.uint8), (2**20, 2**10, 2**10))
    with pytest.raises(MemoryError, match=r"mask_iou\(\).*'masks_a'"):
        fm.mask_iou(stack, np.zeros((1, 2**10, 2**10), np.uint8))
