"""COCO ``segm`` evaluation and the COCO mask helpers (SPEC DET-COCO-SEGM*).

pycocotools is the oracle, bit for bit: precision, recall, scores, stats,
``evalImgs`` and ``ious`` on generated sets with crowd RLE, multi-part polygons,
masks on and past the border, empty and 1-pixel masks, odd image sizes, images
without annotations, results as RLE with ``str`` and ``bytes`` counts, and the
bbox path's quirks (useCats=0, subsets, maxDets, string ids). The masks of the
results are encoded by pycocotools itself, so ferrops' encoder is no part of
the oracle. The API computes on the CPU: there is no backend to parametrise.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest

import ferrops
from ferrops import coco as fcoco

pycoco = pytest.importorskip("pycocotools.coco")
pycocoeval = pytest.importorskip("pycocotools.cocoeval")
pymask = pytest.importorskip("pycocotools.mask")

# pycocotools' decode under NumPy 2 warns about its own array protocol.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


#: [height, width] of the generated images: COCO-like, odd, tiny and a sliver.
_SIZES = ((48, 64), (37, 23), (5, 7), (1, 9), (31, 1))


def _star(rng, cx, cy, rx, ry):
    k = int(rng.integers(3, 12))
    angles = np.sort(rng.uniform(0, 2 * np.pi, size=k))
    radius = rng.uniform(0.4, 1.0, size=k)
    xy = np.stack([cx + rx * radius * np.cos(angles), cy + ry * radius * np.sin(angles)], axis=1)
    return [float(v) for v in np.round(xy, 2).reshape(-1)]


def _uncompressed(dense):
    flat = np.asarray(dense, dtype=np.uint8).reshape(-1, order="F")
    ends = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], ends, [flat.size]])).tolist()
    return {"size": list(dense.shape), "counts": [0, *counts] if flat.size and flat[0] else counts}


def _segm_set(seed, num_images=40, string_ids=False):
    """Ground truth (polygons, crowd uncompressed RLE, some compressed RLE) and
    mask results (compressed RLE by pycocotools, ``counts`` str)."""
    rng = np.random.default_rng(seed)
    images, annotations, results = [], [], []
    cats = [3, 5, 9]
    for n in range(num_images):
        h, w = _SIZES[n % len(_SIZES)]
        image_id = f"img{n}" if string_ids else 10 + 7 * n
        images.append({"id": image_id, "height": h, "width": w})
        if n % 9 == 4:
            continue  # an image without annotations
        for _ in range(int(rng.integers(0, 6))):
            cat = int(rng.choice(cats))
            cx, cy = rng.uniform(-3, w + 3), rng.uniform(-3, h + 3)
            rx, ry = rng.uniform(0.2, w / 2 + 1), rng.uniform(0.2, h / 2 + 1)
            kind = rng.random()
            if kind < 0.1:  # crowd region as uncompressed RLE
                dense = pymask.decode(pymask.merge(pymask.frPyObjects([_star(rng, cx, cy, rx, ry)], h, w)))
                segm, crowd = _uncompressed(dense), 1
            elif kind < 0.2:  # compressed RLE ground truth
                rle = pymask.merge(pymask.frPyObjects([_star(rng, cx, cy, rx, ry)], h, w))
                segm, crowd = {"size": [h, w], "counts": rle["counts"].decode()}, int(rng.random() < 0.5)
            elif kind < 0.35:  # several parts, one perhaps outside the image
                segm, crowd = [_star(rng, cx, cy, rx, ry), _star(rng, cx - rx, cy + ry, rx / 2, ry / 2)], 0
            elif kind < 0.4:  # a 1-pixel square
                x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
                segm, crowd = [[x + 0.25, y + 0.25, x + 0.75, y + 0.25, x + 0.75, y + 0.75, x + 0.25, y + 0.75]], 0
            elif kind < 0.45:  # wholly outside: an empty mask
                segm, crowd = [[w + 5.0, h + 5.0, w + 9.0, h + 5.0, w + 9.0, h + 9.0]], 0
            else:
                segm, crowd = [_star(rng, cx, cy, rx, ry)], 0
            ann_id = len(annotations) + 1
            area = float(rng.choice([rng.uniform(0, 200), 32.0**2, 4.0]))
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": cat,
                    "segmentation": segm,
                    "area": area,
                    "bbox": [0.0, 0.0, 1.0, 1.0],
                    "iscrowd": crowd,
                }
            )
            for _ in range(int(rng.integers(0, 3))):  # detections near it, some of another class
                jitter = rng.normal(0, 0.15, size=4) * np.array([rx, ry, rx, ry])
                polygon = _star(rng, cx + jitter[0], cy + jitter[1], abs(rx + jitter[2]), abs(ry + jitter[3]))
                results.append((image_id, cat if rng.random() < 0.9 else int(rng.choice(cats)), polygon, h, w))
        for _ in range(int(rng.integers(0, 3))):  # noise
            polygon = _star(rng, rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.3, w), rng.uniform(0.3, h))
            results.append((image_id, int(rng.choice(cats)), polygon, h, w))
    scores = np.round(rng.uniform(0, 1, size=len(results)), 1)  # ties
    dt = []
    for (image_id, cat, polygon, h, w), score in zip(results, scores):
        rle = pymask.merge(pymask.frPyObjects([polygon], h, w))
        segmentation = {"size": [h, w], "counts": rle["counts"].decode()}
        dt.append({"image_id": image_id, "category_id": cat, "segmentation": segmentation, "score": float(score)})
    gt = {"images": images, "categories": [{"id": c, "name": str(c)} for c in cats], "annotations": annotations}
    return gt, dt


def _from_dict(module, dataset):
    coco = module.COCO()
    coco.dataset = copy.deepcopy(dataset)
    _quiet(coco.createIndex)
    return coco


def _evaluate(module, eval_module, gt, dt, setup=None, iou_type="segm"):
    def go():
        g = _from_dict(module, gt)
        ev = eval_module.COCOeval(g, g.loadRes(copy.deepcopy(dt)), iou_type)
        if setup:
            setup(ev.params)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return ev

    return _quiet(go)


def _assert_identical(ours, theirs):
    assert np.array_equal(ours.stats, theirs.stats), (ours.stats, theirs.stats)
    for key in ("precision", "recall", "scores"):
        assert np.array_equal(ours.eval[key], theirs.eval[key]), key
    assert len(ours.evalImgs) == len(theirs.evalImgs)
    for a, b in zip(ours.evalImgs, theirs.evalImgs):
        assert (a is None) == (b is None)
        if b is not None:
            for key, value in b.items():
                assert np.array_equal(np.asarray(a[key]), np.asarray(value)), key
    assert set(ours.ious) == set(theirs.ious)
    for key, value in theirs.ious.items():
        assert np.array_equal(np.asarray(ours.ious[key]), np.asarray(value)), key


@pytest.mark.spec("DET-COCO-SEGM")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_segm_evaluation_is_pycocotools(seed):
    gt, dt = _segm_set(seed)
    _assert_identical(_evaluate(fcoco, fcoco, gt, dt), _evaluate(pycoco, pycocoeval, gt, dt))


@pytest.mark.spec("DET-COCO-SEGM")
@pytest.mark.parametrize(
    "setup",
    [
        lambda p: setattr(p, "useCats", 0),
        lambda p: setattr(p, "imgIds", p.imgIds[3:17]),
        lambda p: setattr(p, "catIds", [5]),
        lambda p: setattr(p, "maxDets", [1, 2, 3]),
        lambda p: setattr(p, "iouThrs", np.array([0.3, 0.5, 0.99])),
    ],
    ids=["useCats0", "imgIds", "catIds", "maxDets", "iouThrs"],
)
def test_segm_settings_are_pycocotools(setup):
    gt, dt = _segm_set(3)
    _assert_identical(_evaluate(fcoco, fcoco, gt, dt, setup), _evaluate(pycoco, pycocoeval, gt, dt, setup))


@pytest.mark.spec("DET-COCO-SEGM")
def test_string_ids_and_files(tmp_path):
    gt, dt = _segm_set(4, string_ids=True)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))

    def run(module, eval_module):
        g = module.COCO(str(tmp_path / "gt.json"))
        ev = eval_module.COCOeval(g, g.loadRes(str(tmp_path / "dt.json")), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return ev

    _assert_identical(_quiet(run, fcoco, fcoco), _quiet(run, pycoco, pycocoeval))


@pytest.mark.spec("DET-COCO-SEGM-RES")
def test_bytes_and_str_counts_give_the_same_results():
    gt, dt = _segm_set(5)
    as_bytes = copy.deepcopy(dt)
    for r in as_bytes:
        r["segmentation"]["counts"] = r["segmentation"]["counts"].encode()
    ours = _evaluate(fcoco, fcoco, gt, as_bytes)
    _assert_identical(ours, _evaluate(pycoco, pycocoeval, gt, dt))
    g = _from_dict(fcoco, gt)
    res = _quiet(g.loadRes, as_bytes)
    # As pycocotools: the records are the results' own, area and box from the mask.
    first = res.dataset["annotations"][0]
    assert first["segmentation"] is as_bytes[0]["segmentation"]
    rle = as_bytes[0]["segmentation"]
    assert first["area"] == float(pymask.area(rle))
    assert first["bbox"] == pymask.toBbox(rle).tolist()
    assert (first["id"], first["iscrowd"]) == (1, 0)


@pytest.mark.spec("DET-COCO-SEGM-RES")
def test_box_results_evaluated_as_masks():
    # The first record has a box: every record is a box result (area = w * h), its
    # segmentation kept for segm evaluation, a missing one being the box's polygon.
    gt, dt = _segm_set(6)
    mixed = copy.deepcopy(dt)
    for i, r in enumerate(mixed):
        x, y, w, h = (float(v) for v in pymask.toBbox(r["segmentation"]))
        r["bbox"] = [x + 0.5, y, w, h + 1.0]
        if i % 3 == 0:
            del r["segmentation"]
    _assert_identical(_evaluate(fcoco, fcoco, gt, mixed), _evaluate(pycoco, pycocoeval, gt, mixed))
    _assert_identical(
        _evaluate(fcoco, fcoco, gt, mixed, iou_type="bbox"), _evaluate(pycoco, pycocoeval, gt, mixed, iou_type="bbox")
    )


@pytest.mark.spec("DET-COCO-SEGM")
def test_segm_is_the_same_for_1_and_2_threads():
    gt, dt = _segm_set(7, num_images=60)
    before = ferrops.get_num_threads()
    try:
        ferrops.set_num_threads(1)
        one = _evaluate(fcoco, fcoco, gt, dt)
        ferrops.set_num_threads(2)
        two = _evaluate(fcoco, fcoco, gt, dt)
    finally:
        ferrops.set_num_threads(before)
    _assert_identical(one, two)


@pytest.mark.spec("DET-COCO-SEGM-ANN")
def test_ann_to_rle_and_mask_are_pycocotools():
    gt, _ = _segm_set(8)
    ours, theirs = _from_dict(fcoco, gt), _from_dict(pycoco, gt)
    for ann in gt["annotations"]:
        a, b = ours.annToRLE(ann), theirs.annToRLE(ann)
        assert a["size"] == list(b["size"])
        counts = a["counts"].encode() if isinstance(a["counts"], str) else a["counts"]
        assert counts == (b["counts"].encode() if isinstance(b["counts"], str) else b["counts"])
        assert np.array_equal(ours.annToMask(ann), theirs.annToMask(ann))


@pytest.mark.spec("DET-COCO-SEGM-ANN")
def test_parts_of_four_numbers_are_boxes():
    # pycocotools reads a first part of 4 numbers as boxes (and then fails on a
    # list); ferrops gives the union of those boxes, in segm evaluation too.
    boxes = [[1, 1, 3, 4], [0.5, 0, 2, 2.5]]
    gt = _one_image_gt(boxes)
    ann = gt["annotations"][0]
    expected = pymask.merge(pymask.frPyObjects(np.array(boxes, dtype=np.float64), 10, 12))
    rle = _from_dict(fcoco, gt).annToRLE(ann)
    assert rle["counts"] == expected["counts"]
    dt = [{"image_id": 1, "category_id": 1, "segmentation": expected, "score": 0.5}]
    ev = _evaluate(fcoco, fcoco, gt, dt)
    assert ev.ious[1, 1].tolist() == [[1.0]]


@pytest.mark.spec("DET-COCO-SEGM-ANN")
def test_mask_module_paths():
    import ferrops.coco.mask as imported
    import ferrops.mask
    from ferrops.coco import mask

    assert mask is ferrops.mask and imported is ferrops.mask
    assert mask.encode is ferrops.mask.encode


def _one_image_gt(segmentation, size=(10, 12), crowd=0):
    h, w = size
    ann = {"id": 1, "image_id": 1, "category_id": 1, "segmentation": segmentation, "area": 5.0}
    ann.update({"bbox": [0, 0, 2, 2], "iscrowd": crowd})
    return {"images": [{"id": 1, "height": h, "width": w}], "categories": [{"id": 1}], "annotations": [ann]}


def _good_counts():
    dense = np.zeros((10, 12), dtype=np.uint8, order="F")
    dense[2:5, 1:4] = 1
    return pymask.encode(dense)["counts"].decode()


_GOOD_DT = [
    {"image_id": 1, "category_id": 1, "segmentation": {"size": [10, 12], "counts": _good_counts()}, "score": 0.5}
]


@pytest.mark.spec("DET-COCO-SEGM-CHECK")
@pytest.mark.parametrize(
    ("segmentation", "message"),
    [
        ({"size": [10, 12], "counts": [100, 30]}, "summing to h \\* w = 120"),
        ({"size": [10, 12], "counts": [100, 10]}, "summing to h \\* w = 120"),
        ({"size": [10, 12], "counts": [130, -10]}, "outside \\[0, 2\\*\\*32\\)"),
        ({"size": [10, 12], "counts": "0<4~"}, "the byte 0x7e"),
        ({"size": [10, 12], "counts": "0<4"}, "summing to h \\* w = 120"),
        ({"size": [-10, 12], "counts": [0]}, "negative 'size'"),
        ({"size": [12, 10], "counts": [120]}, "not the image's"),
        ([[1, 1, 5, 1]], "boxes.*a part 1 of 6"),
        ([[1, 1, 5, 1, 3]], "part 0 of 5 numbers"),
        ([[1, 1, 5, 1, 3, 3], [1, 2]], "part 1 of 2 numbers"),
        ([[1, 1, 5, 1, 3, 3, 9]], "part 0 of 7 numbers"),
        ([], "an empty polygon list"),
        ({"counts": "0<4"}, "without a 'size'"),
        (7, "a number"),
        ([[1, 1, 5, 1, 3, 1e12]], "finite coordinates within"),
    ],
)
@pytest.mark.parametrize("compared", [True, False], ids=["with a detection", "no detection in its unit"])
def test_malformed_ground_truth_is_a_value_error_at_evaluation(tmp_path, segmentation, message, compared):
    # A ground truth no detection is compared with is checked, not rasterised:
    # the same error either way.
    gt = _one_image_gt(segmentation)
    gt["categories"].append({"id": 2})
    if segmentation == [[1, 1, 5, 1]]:
        gt["annotations"][0]["segmentation"] = [[1, 1, 5, 1], [1, 1, 5, 1, 3, 3]]
    path = tmp_path / "bad_gt.json"
    path.write_text(json.dumps(gt))
    g = _quiet(fcoco.COCO, str(path))  # loads: a box evaluation never reads masks
    dt = copy.deepcopy(_GOOD_DT)
    dt[0]["category_id"] = 1 if compared else 2
    ev = fcoco.COCOeval(g, _quiet(g.loadRes, dt), "segm")
    with pytest.raises(
        ValueError,
        match=f"COCOeval.evaluate\\(\\): argument 'cocoGt'.*bad_gt.json: annotations\\[0\\] \\(id 1\\).*{message}",
    ):
        _quiet(ev.evaluate)


@pytest.mark.spec("DET-COCO-SEGM-CHECK")
def test_malformed_ground_truth_outside_the_evaluation_is_not_read():
    gt = _one_image_gt([[1, 1, 5, 1, 3, 3]])
    gt["images"].append({"id": 2, "height": 10, "width": 12})
    gt["annotations"].append(dict(gt["annotations"][0], id=2, image_id=2, segmentation={"size": [3, 3], "counts": "x"}))
    g = _from_dict(fcoco, gt)
    ev = fcoco.COCOeval(g, _quiet(g.loadRes, copy.deepcopy(_GOOD_DT)), "segm")
    ev.params.imgIds = [1]
    _quiet(ev.evaluate)  # as pycocotools, which converts only the records evaluated
    box = fcoco.COCOeval(
        g, _quiet(g.loadRes, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "score": 1}]), "bbox"
    )
    _quiet(box.evaluate)
    ev.params.imgIds = [1, 2]
    with pytest.raises(ValueError, match="annotations\\[1\\] \\(id 2\\) has a bad 'segmentation'"):
        _quiet(ev.evaluate)


@pytest.mark.spec("DET-COCO-SEGM-CHECK")
@pytest.mark.parametrize(
    ("segmentation", "message"),
    [
        ({"size": [10, 12], "counts": "0<"}, "results\\[1\\] has a bad 'segmentation'.*summing to h \\* w = 120"),
        ({"size": [10, 12], "counts": b"0<4\xff"}, "results\\[1\\] has a bad 'segmentation'"),
        ({"size": [10, 13], "counts": _good_counts()}, "not the image's"),
        ([[1.0, 2.0, float("nan"), 4.0, 5.0, 6.0]], "results\\[1\\] has a NaN"),
        ([[1, 2, 3, 4, 5, 6, 7, 8]], None),
    ],
)
def test_malformed_results_are_value_errors_at_load(segmentation, message):
    g = _from_dict(fcoco, _one_image_gt([[1, 1, 5, 1, 3, 3]]))
    records = copy.deepcopy(_GOOD_DT) + [dict(_GOOD_DT[0], segmentation=segmentation)]
    if message is None:
        _quiet(g.loadRes, records)  # a polygon result: pycocotools fails, ferrops takes its mask
        return
    with pytest.raises(ValueError, match=f"COCO.loadRes\\(\\): argument 'resFile'.*{message}"):
        _quiet(g.loadRes, records)


@pytest.mark.spec("DET-COCO-SEGM-CHECK")
def test_polygons_need_the_image_size():
    gt = _one_image_gt([[1, 1, 5, 1, 3, 3]])
    del gt["images"][0]["height"]
    g = _from_dict(fcoco, gt)
    ev = fcoco.COCOeval(g, _quiet(g.loadRes, copy.deepcopy(_GOOD_DT)), "segm")
    with pytest.raises(ValueError, match="polygons on an image without 'height' and 'width'"):
        _quiet(ev.evaluate)


@pytest.mark.spec("DET-COCO-SEGM")
def test_cli_segm(tmp_path, capsys):
    from ferrops.cli import main

    gt, dt = _segm_set(9)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    out = tmp_path / "stats.json"
    assert main(["coco-eval", str(tmp_path / "gt.json"), str(tmp_path / "dt.json"), "--json", str(out)]) == 0
    capsys.readouterr()
    report = json.loads(out.read_text())
    reference = _evaluate(pycoco, pycocoeval, gt, dt)
    assert report["iou_type"] == "segm"
    assert list(report["stats"].values()) == reference.stats.tolist()
    argv = ["coco-eval", str(tmp_path / "gt.json"), str(tmp_path / "dt.json"), "--iou-type", "bbox", "--json", str(out)]
    assert main(argv) == 0
    assert json.loads(out.read_text())["iou_type"] == "bbox"


def _without_boxes(gt, every=1):
    """``gt`` with the ``bbox`` of every ``every``-th annotation removed."""
    gt = copy.deepcopy(gt)
    for i, ann in enumerate(gt["annotations"]):
        if i % every == 0:
            del ann["bbox"]
    return gt


@pytest.mark.spec("DET-COCO-NOBOX")
@pytest.mark.parametrize("every", [1, 2])
def test_ground_truth_without_boxes_is_evaluated_as_segm(tmp_path, every):
    gt, dt = _segm_set(5)
    gt = _without_boxes(gt, every)
    _assert_identical(_evaluate(fcoco, fcoco, gt, dt), _evaluate(pycoco, pycocoeval, gt, dt))
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))

    def from_file(module, eval_module):
        g = module.COCO(str(path))
        ev = eval_module.COCOeval(g, g.loadRes(copy.deepcopy(dt)), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return ev

    _assert_identical(_quiet(from_file, fcoco, fcoco), _quiet(from_file, pycoco, pycocoeval))
    # The records read as written (pycocotools' evaluate rewrites its own).
    ours, theirs = _quiet(fcoco.COCO, str(path)), _quiet(pycoco.COCO, str(path))
    assert "bbox" not in ours.loadAnns(1)[0]
    assert ours.loadAnns(ours.getAnnIds()) == theirs.loadAnns(theirs.getAnnIds())


@pytest.mark.spec("DET-COCO-NOBOX")
def test_box_evaluation_of_ground_truth_without_boxes_names_the_record():
    gt, dt = _segm_set(5)
    gt = _without_boxes(gt, 3)
    dt = [{**d, "bbox": [1.0, 1.0, 3.0, 3.0]} for d in dt]
    with pytest.raises(KeyError):
        _evaluate(pycoco, pycocoeval, gt, dt, iou_type="bbox")
    with pytest.raises(
        ValueError, match=r"COCOeval.evaluate\(\).*cocoGt.*<dict>: annotations\[0\] \(id 1\) has no 'bbox'"
    ):
        _evaluate(fcoco, fcoco, gt, dt, iou_type="bbox")


@pytest.mark.spec("DET-COCO-NOBOX")
def test_box_analyses_of_ground_truth_without_boxes_name_the_record():
    from ferrops.coco.analysis import confusion_matrix, tide

    gt, dt = _segm_set(5)
    gt = _without_boxes(gt, 3)
    g = _quiet(fcoco.COCO, gt)
    d = g.loadRes(copy.deepcopy(dt))
    with pytest.raises(ValueError, match=r"tide\(\).*cocoGt.*annotations\[0\] \(id 1\) has no 'bbox'"):
        tide(g, d)
    with pytest.raises(ValueError, match=r"confusion_matrix\(\).*cocoGt.*annotations\[0\] has no 'bbox'"):
        confusion_matrix(g, d, score_threshold=0.0)
    # Masks need no box.
    assert tide(g, d, mode="mask").ap >= 0
    assert confusion_matrix(g, d, score_threshold=0.0, iou_type="segm")[0].sum() > 0


@pytest.mark.spec("DET-COCO-NOBOX")
def test_ground_truth_without_box_or_area_is_refused(tmp_path):
    gt, dt = _segm_set(5)
    del gt["annotations"][1]["bbox"], gt["annotations"][1]["area"]
    message = r"annotations\[1\] \(id 2\) has neither 'bbox' nor 'area'"
    with pytest.raises(ValueError, match=message):
        _evaluate(fcoco, fcoco, gt, dt)
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    with pytest.raises(ValueError, match=message):
        _quiet(fcoco.COCO, str(path))
