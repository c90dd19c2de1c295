"""Detection evaluation (SPEC DET-PR, DET-VOC07, DET-VOC10, DET-COCO).

COCO: pycocotools is the oracle, compared bit for bit (``np.array_equal`` on the
full precision/recall/scores arrays and the 12 stats) on generated sets that
exercise its quirks. VOC: references written from the SPEC formulas, a
hand-computed example, and the devkit's classic code as an extra oracle.
MeanAveragePrecision: torchmetrics as the oracle.

These APIs take NumPy (and tensors for ``MeanAveragePrecision``) and compute on
the CPU, so there is no torch/CUDA backend to parametrise over.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ferrops
from ferrops import coco as fcoco
from ferrops._bench.detection import synthetic_coco
from ferrops.detection import MeanAveragePrecision, per_category_ap, pr_curves, voc_ap, voc_eval

pycoco = pytest.importorskip("pycocotools.coco")
pycocoeval = pytest.importorskip("pycocotools.cocoeval")


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A quirk-rich generated set written to JSON (120 images, 8 classes)."""
    gt, dt = synthetic_coco(120, 8, seed=7)
    root = tmp_path_factory.mktemp("coco")
    (root / "gt.json").write_text(json.dumps(gt))
    (root / "dt.json").write_text(json.dumps(dt))
    return str(root / "gt.json"), str(root / "dt.json"), gt, dt


def _run(coco_mod, eval_mod, gt, dt, setup=None, accumulate_params=None):
    def go():
        g = coco_mod.COCO(gt) if not isinstance(gt, dict) else _from_dict(coco_mod, gt)
        d = g.loadRes(copy.deepcopy(dt) if isinstance(dt, list) else dt)
        ev = eval_mod.COCOeval(g, d, "bbox")
        if setup:
            setup(ev.params)
        ev.evaluate()
        if accumulate_params:
            p = copy.deepcopy(ev.params)
            accumulate_params(p)
            ev.accumulate(p)
        else:
            ev.accumulate()
        ev.summarize()
        return ev

    return _quiet(go)


def _from_dict(coco_mod, dataset):
    g = coco_mod.COCO()
    g.dataset = copy.deepcopy(dataset)
    g.createIndex()
    return g


def _assert_same(ours, theirs):
    for key in ("precision", "recall", "scores"):
        assert ours.eval[key].shape == theirs.eval[key].shape, key
        assert np.array_equal(ours.eval[key], theirs.eval[key]), key
    assert np.array_equal(np.asarray(ours.stats), np.asarray(theirs.stats))


SCENARIOS = {
    "default": None,
    "maxDets-3-20-50": lambda p: setattr(p, "maxDets", [3, 20, 50]),
    "maxDets-unsorted-5-1-10": lambda p: setattr(p, "maxDets", [5, 1, 10]),
    "useCats-0": lambda p: setattr(p, "useCats", 0),
    "useCats-0-cat-subset": lambda p: (setattr(p, "useCats", 0), setattr(p, "catIds", p.catIds[::-2])),
    "useCats-0-no-cats": lambda p: (setattr(p, "useCats", 0), setattr(p, "catIds", [])),
    "id-subsets": lambda p: (setattr(p, "imgIds", p.imgIds[::3]), setattr(p, "catIds", p.catIds[1::2])),
    "unknown-ids": lambda p: (setattr(p, "imgIds", [*p.imgIds[:40], 10**9]), setattr(p, "catIds", [*p.catIds, 999])),
    "custom-iouThrs": lambda p: setattr(p, "iouThrs", np.array([0.1, 0.5, 0.75, 0.999999])),
    "iouThrs-without-0.5": lambda p: setattr(p, "iouThrs", np.array([0.3, 0.6])),
    "custom-recThrs-unsorted": lambda p: setattr(p, "recThrs", np.array([0.0, 0.9, 0.2, 1.0, 0.5])),
    "custom-areaRng": lambda p: (
        setattr(p, "areaRng", [[0, 1e10], [100, 2000], [2000, 2000]]),
        setattr(p, "areaRngLbl", ["all", "small", "medium"]),
    ),  # fmt: skip
}


@pytest.mark.spec("DET-COCO")
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_cocoeval_bit_identical_to_pycocotools(files, scenario):
    gt_path, dt_path, _, _ = files
    setup = SCENARIOS[scenario]
    ours = _run(fcoco, fcoco, gt_path, dt_path, setup)
    theirs = _run(pycoco, pycocoeval, gt_path, dt_path, setup)
    _assert_same(ours, theirs)


@pytest.mark.spec("DET-COCO")
def test_accumulate_with_changed_params(files):
    """accumulate(p) with a subset of maxDets/areas/images: pycocotools' index lists."""
    gt_path, dt_path, _, _ = files

    def narrow(p):
        p.maxDets = [1, 100, 7]
        p.areaRng = p.areaRng[::-1]
        p.imgIds = p.imgIds[5:]

    ours = _run(fcoco, fcoco, gt_path, dt_path, accumulate_params=narrow)
    theirs = _run(pycoco, pycocoeval, gt_path, dt_path, accumulate_params=narrow)
    for key in ("precision", "recall", "scores"):
        assert np.array_equal(ours.eval[key], theirs.eval[key]), key


def _tiny_gt(annotations, images=(1, 2, 3), categories=(1, 2)):
    return {
        "images": [{"id": i} for i in images],
        "categories": [{"id": c, "name": str(c), "supercategory": "x"} for c in categories],
        "annotations": annotations,
    }


def _ann(id, image, cat, bbox, area=None, crowd=0):
    return {"id": id, "image_id": image, "category_id": cat, "bbox": list(bbox),
            "area": bbox[2] * bbox[3] if area is None else area, "iscrowd": crowd}  # fmt: skip


def _det(image, cat, bbox, score):
    return {"image_id": image, "category_id": cat, "bbox": list(bbox), "score": score}


QUIRK_SETS = {
    # Crowd region matched by several detections, IoU = inter / det area.
    "crowd": (
        [_ann(1, 1, 1, (0, 0, 100, 100), crowd=1), _ann(2, 1, 1, (10, 10, 20, 20))],
        [_det(1, 1, (12, 12, 20, 20), 0.9), _det(1, 1, (50, 50, 10, 10), 0.8), _det(1, 1, (60, 60, 10, 10), 0.7)],
    ),
    # Areas exactly on the small/medium/large edges (both ends inclusive).
    "area-edges": (
        [_ann(1, 1, 1, (0, 0, 32, 32)), _ann(2, 2, 1, (0, 0, 96, 96)), _ann(3, 3, 1, (0, 0, 40, 40), area=1024.0)],
        [_det(1, 1, (0, 0, 32, 32), 0.5), _det(2, 1, (0, 0, 96, 96), 0.5), _det(3, 1, (0, 0, 16, 64), 0.5)],
    ),
    # Score ties across images and within an image: stable order decides.
    "score-ties": (
        [_ann(1, 1, 1, (0, 0, 10, 10)), _ann(2, 2, 1, (0, 0, 10, 10)), _ann(3, 3, 2, (5, 5, 10, 10))],
        [
            _det(2, 1, (30, 30, 10, 10), 0.5),
            _det(1, 1, (0, 0, 10, 10), 0.5),
            _det(1, 1, (0, 0, 10, 9), 0.5),
            _det(2, 1, (0, 0, 10, 10), 0.5),
            _det(3, 2, (5, 5, 10, 10), 0.5),
            _det(3, 2, (5, 5, 9, 10), 0.5),
        ],
    ),  # fmt: skip
    # Recall never reaches 1: later recall points stay 0.
    "unreached-recall": (
        [_ann(i, 1 + i % 3, 1, (20 * i, 0, 10, 10)) for i in range(1, 8)],
        [_det(1 + i % 3, 1, (20 * i, 0, 10, 10), 0.1 * i) for i in range(1, 4)],
    ),
    # A ground truth with id 0 counts as unmatched (dtm == 0) in pycocotools.
    "gt-id-0": (
        [_ann(0, 1, 1, (0, 0, 10, 10)), _ann(5, 2, 1, (0, 0, 10, 10))],
        [_det(1, 1, (0, 0, 10, 10), 0.9), _det(2, 1, (0, 0, 10, 10), 0.8)],
    ),
    # Repeated annotation ids resolve to the last record with that id.
    "duplicate-gt-ids": (
        [_ann(4, 1, 1, (0, 0, 10, 10)), _ann(4, 2, 2, (0, 0, 50, 50)), _ann(6, 3, 1, (0, 0, 10, 10))],
        [_det(1, 1, (0, 0, 10, 10), 0.9), _det(2, 2, (0, 0, 50, 50), 0.8), _det(3, 1, (0, 0, 10, 10), 0.7)],
    ),
    # Detections of a category absent from the ground truth, an image without any.
    "foreign-category": (
        [_ann(1, 1, 1, (0, 0, 10, 10))],
        [_det(1, 7, (0, 0, 10, 10), 0.9), _det(1, 1, (0, 0, 10, 10), 0.3), _det(3, 2, (0, 0, 5, 5), 0.6)],
    ),
    # Negative zero and zero-size boxes.
    "degenerate": (
        [_ann(1, 1, 1, (0, 0, 0, 10)), _ann(2, 1, 1, (0, 0, 10, 10))],
        [_det(1, 1, (0, 0, 0, 10), -0.0), _det(1, 1, (0, 0, 10, 10), 0.0), _det(1, 1, (1, 1, 10, 10), 0.0)],
    ),
}


@pytest.mark.spec("DET-COCO")
@pytest.mark.parametrize("name", list(QUIRK_SETS))
@pytest.mark.parametrize("use_cats", [1, 0])
def test_quirks_bit_identical(name, use_cats):
    anns, dets = QUIRK_SETS[name]
    gt = _tiny_gt(anns)

    def setup(p):
        p.useCats = use_cats

    ours = _run(fcoco, fcoco, gt, dets, setup)
    theirs = _run(pycoco, pycocoeval, gt, dets, setup)
    _assert_same(ours, theirs)


def _evaluated(coco_mod, eval_mod, gt, dt, setup=None):
    """A COCOeval after evaluate() only (pycocotools' evalImgs and ious are complete then)."""

    def go():
        g = coco_mod.COCO(gt) if not isinstance(gt, dict) else _from_dict(coco_mod, gt)
        ev = eval_mod.COCOeval(g, g.loadRes(copy.deepcopy(dt) if isinstance(dt, list) else dt), "bbox")
        if setup:
            setup(ev.params)
        ev.evaluate()
        return ev

    return _quiet(go)


def _assert_same_value(ours, theirs, where):
    """Same type and value; arrays: same dtype, shape and elements; lists: same element types."""
    if isinstance(theirs, np.ndarray):
        assert isinstance(ours, np.ndarray), where
        assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape), where
        assert np.array_equal(ours, theirs), where
    else:
        assert type(ours) is type(theirs) and ours == theirs, where
        if isinstance(theirs, list):
            assert [type(v) for v in ours] == [type(v) for v in theirs], where


def _assert_same_eval_imgs(ours, theirs):
    """Every field of every evalImgs entry, and every ious matrix, as pycocotools has them."""
    assert len(ours.evalImgs) == len(theirs.evalImgs)
    for n, (a, b) in enumerate(zip(ours.evalImgs, theirs.evalImgs)):
        if b is None:
            assert a is None, n
            continue
        assert isinstance(a, dict) and list(a) == list(b), n
        for key in b:
            _assert_same_value(a[key], b[key], (n, key))
    assert list(ours.ious) == list(theirs.ious)
    for key, b in theirs.ious.items():
        a = ours.ious[key]
        _assert_same_value(a, b, key)
        if isinstance(b, np.ndarray):
            assert a.flags.f_contiguous == b.flags.f_contiguous, key


@pytest.mark.spec("DET-COCO")
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_eval_imgs_and_ious_match_pycocotools(files, scenario):
    gt_path, dt_path, _, _ = files
    setup = SCENARIOS[scenario]
    ours = _evaluated(fcoco, fcoco, gt_path, dt_path, setup)
    theirs = _evaluated(pycoco, pycocoeval, gt_path, dt_path, setup)
    _assert_same_eval_imgs(ours, theirs)


@pytest.mark.spec("DET-COCO")
@pytest.mark.parametrize("name", list(QUIRK_SETS))
@pytest.mark.parametrize("use_cats", [1, 0])
def test_eval_imgs_quirks_match_pycocotools(name, use_cats):
    anns, dets = QUIRK_SETS[name]
    gt = _tiny_gt(anns)

    def setup(p):
        p.useCats = use_cats

    _assert_same_eval_imgs(_evaluated(fcoco, fcoco, gt, dets, setup), _evaluated(pycoco, pycocoeval, gt, dets, setup))


@pytest.mark.spec("DET-COCO")
def test_eval_imgs_behaves_like_a_list(files):
    gt_path, dt_path, _, _ = files
    ev = _evaluated(fcoco, fcoco, gt_path, dt_path)
    before = _quiet(lambda: (ev.accumulate(), ev.eval["precision"].copy())[1])
    entries = list(ev.evalImgs)
    n = len(entries)
    assert n == len(ev.params.catIds) * len(ev.params.areaRng) * len(ev.params.imgIds)
    assert any(e is None for e in entries) and any(e is not None for e in entries)

    def same(a, b):
        if b is None:
            return a is None
        for key in b:
            _assert_same_value(a[key], b[key], key)
        return list(a) == list(b)

    for i in (0, 1, n // 2, n - 1, -1, -n):
        assert same(ev.evalImgs[i], entries[i])
    for part in (
        slice(None, 50),
        slice(-30, None),
        slice(7, 400, 13),
        slice(None, None, -997),
        slice(5, 2),
        slice(n, None),
    ):
        got = ev.evalImgs[part]
        assert isinstance(got, list) and len(got) == len(entries[part])
        assert all(same(a, b) for a, b in zip(got, entries[part]))
    assert same(ev.evalImgs[np.int64(n - 3)], entries[n - 3])
    for bad in (n, -n - 1):
        with pytest.raises(IndexError, match=r"evalImgs\[\]: argument 'index'"):
            ev.evalImgs[bad]
    with pytest.raises(TypeError, match="expected an integer or a slice, got str"):
        ev.evalImgs["0"]
    with pytest.raises(KeyError):
        ev.ious[(10**9, ev.params.catIds[0])]
    with pytest.raises(KeyError):
        ev.ious["not a key"]
    # Reading the views changes nothing: accumulate still takes the Rust results.
    _quiet(ev.accumulate)
    assert np.array_equal(ev.eval["precision"], before)
    ev.evalImgs = entries
    with pytest.raises(TypeError, match="attribute 'evalImgs': expected the EvalImgs evaluate\\(\\) made"):
        _quiet(ev.accumulate)


@pytest.mark.spec("DET-COCO")
def test_eval_imgs_of_empty_inputs():
    gt = _tiny_gt([])
    ev = _evaluated(fcoco, fcoco, gt, [])
    assert len(ev.evalImgs) == 2 * 4 * 3 and list(ev.evalImgs) == [None] * 24
    assert len(ev.ious) == 6 and all(ev.ious[key] == [] for key in ev.ious)
    no_cats = _evaluated(fcoco, fcoco, gt, [], lambda p: setattr(p, "catIds", []))
    assert len(no_cats.evalImgs) == 0 and list(no_cats.evalImgs) == [] and no_cats.evalImgs[:] == []
    assert len(no_cats.ious) == 0


@pytest.mark.spec("DET-COCO")
def test_load_res_from_list_and_float32_array(files):
    _, _, gt, dt = files
    rows = np.array([[r["image_id"], *r["bbox"], r["score"], r["category_id"]] for r in dt], dtype=np.float32)
    for res in (dt, rows):
        ours = _run(fcoco, fcoco, gt, res)
        theirs = _run(pycoco, pycocoeval, gt, res)
        _assert_same(ours, theirs)


@pytest.mark.spec("DET-COCO")
def test_results_are_the_same_for_1_and_2_threads(files):
    gt_path, dt_path, _, _ = files
    before = ferrops.get_num_threads()
    try:
        ferrops.set_num_threads(1)
        one = _run(fcoco, fcoco, gt_path, dt_path)
        ferrops.set_num_threads(2)
        two = _run(fcoco, fcoco, gt_path, dt_path)
    finally:
        ferrops.set_num_threads(before)
    _assert_same(one, two)


@pytest.mark.spec("DET-COCO")
def test_summary_lines_match(files, capsys):
    gt_path, dt_path, _, _ = files

    def lines(coco_mod, eval_mod):
        g = _quiet(coco_mod.COCO, gt_path)
        ev = eval_mod.COCOeval(g, _quiet(g.loadRes, dt_path), "bbox")
        _quiet(ev.evaluate)
        _quiet(ev.accumulate)
        capsys.readouterr()
        ev.summarize()
        return capsys.readouterr().out.splitlines()

    ours = lines(fcoco, fcoco)
    assert len(ours) == 12
    assert ours == lines(pycoco, pycocoeval)


@pytest.mark.spec("DET-COCO")
def test_coco_query_api_matches(files):
    gt_path, dt_path, _, _ = files
    ours, theirs = _quiet(fcoco.COCO, gt_path), _quiet(pycoco.COCO, gt_path)
    img = sorted(theirs.getImgIds())[:5]
    cats = sorted(theirs.getCatIds())
    assert sorted(ours.getImgIds()) == sorted(theirs.getImgIds())
    assert ours.getCatIds() == theirs.getCatIds()
    assert ours.getCatIds(catNms=["class" + str(cats[0])]) == theirs.getCatIds(catNms=["class" + str(cats[0])])
    for kwargs in ({"imgIds": img}, {"catIds": cats[:2]}, {"imgIds": img, "areaRng": [100, 5000]}, {"iscrowd": 1}):
        assert ours.getAnnIds(**kwargs) == theirs.getAnnIds(**kwargs)
    assert sorted(ours.getImgIds(catIds=cats[:2])) == sorted(theirs.getImgIds(catIds=cats[:2]))
    ids = theirs.getAnnIds(imgIds=img)
    assert ours.loadAnns(ids) == theirs.loadAnns(ids)
    assert ours.loadImgs(img) == theirs.loadImgs(img)
    assert ours.loadCats(cats[0]) == theirs.loadCats(cats[0])
    res_ours, res_theirs = _quiet(ours.loadRes, dt_path), _quiet(theirs.loadRes, dt_path)
    assert res_ours.dataset["annotations"][:50] == res_theirs.dataset["annotations"][:50]
    assert res_ours.getAnnIds(imgIds=img) == res_theirs.getAnnIds(imgIds=img)


@pytest.mark.spec("DET-COCO")
def test_empty_inputs():
    gt = _tiny_gt([])
    ev = _run(fcoco, fcoco, gt, [])
    assert ev.eval["precision"].shape == (10, 101, 2, 4, 3)
    assert np.all(ev.eval["precision"] == -1) and np.all(ev.eval["recall"] == -1)
    assert np.array_equal(ev.stats, -np.ones(12))
    no_cats = _run(fcoco, fcoco, gt, [], lambda p: setattr(p, "catIds", []))
    assert no_cats.eval["precision"].shape == (10, 101, 0, 4, 3)


BAD_GT = {
    "malformed": (b'{"images": [', "invalid JSON"),
    "missing-key": (
        json.dumps(_tiny_gt([{"id": 3, "image_id": 1, "category_id": 1}])).encode(),
        r"annotations\[0\] \(id 3\) has neither 'bbox' nor 'area'",
    ),  # fmt: skip
    "negative-width": (
        json.dumps(_tiny_gt([_ann(1, 1, 1, (0, 0, 5, 5)), _ann(9, 1, 1, (0, 0, -1, 5))])).encode(),
        r"annotations\[1\] \(id 9\) has a negative width",
    ),  # fmt: skip
    "short-bbox": (
        json.dumps(_tiny_gt([{"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 1, 2]}])).encode(),
        r"annotations\[0\] \(id 2\) has a 'bbox' of 3 numbers",
    ),  # fmt: skip
}


@pytest.mark.spec("DET-COCO")
@pytest.mark.parametrize("case", list(BAD_GT))
def test_bad_ground_truth_names_file_and_record(tmp_path, case):
    data, message = BAD_GT[case]
    path = tmp_path / "bad_gt.json"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"COCO\(\): argument 'annotation_file'.*bad_gt\.json.*" + message):
        _quiet(fcoco.COCO, str(path))


@pytest.mark.spec("DET-COCO")
def test_bad_results_name_file_and_record(tmp_path):
    gt = _quiet(fcoco.COCO, _tiny_gt([_ann(1, 1, 1, (0, 0, 5, 5))]))
    cases = {
        "unknown-image": (
            [_det(1, 1, (0, 0, 1, 1), 0.5), _det(42, 1, (0, 0, 1, 1), 0.5)],
            r"results\[1\] has image_id 42",
        ),
        "missing-score": ([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}], r"results\[0\] has no 'score'"),
        "negative-height": ([_det(1, 1, (0, 0, 1, -2), 0.5)], r"results\[0\] has a negative width or height"),
    }
    for name, (records, message) in cases.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(records))
        with pytest.raises(ValueError, match=rf"COCO.loadRes\(\): argument 'resFile'.*{name}\.json: {message}"):
            _quiet(gt.loadRes, str(path))
        with pytest.raises(ValueError, match=message):
            _quiet(gt.loadRes, records)
    with pytest.raises(ValueError, match=r"results\[1\] has a NaN or infinite value"):
        _quiet(gt.loadRes, [_det(1, 1, (0, 0, 1, 1), 0.5), _det(1, 1, (0, 0, 1, 1), float("nan"))])
    with pytest.raises(ValueError, match=r"results\[0\] has a non-finite 'score'"):
        _quiet(gt.loadRes, np.array([[1, 0, 0, 1, 1, np.nan, 1]]))
    with pytest.raises(ValueError, match=r"expected an \[N, 7\] array"):
        _quiet(gt.loadRes, np.zeros((2, 6)))
    with pytest.raises(TypeError, match="expected a path, a list of dicts"):
        _quiet(gt.loadRes, 3)
    with pytest.raises(FileNotFoundError):
        _quiet(gt.loadRes, str(tmp_path / "missing.json"))


@pytest.mark.spec("DET-COCO")
def test_unsupported_settings_raise():
    gt = _quiet(fcoco.COCO, _tiny_gt([_ann(1, 1, 1, (0, 0, 5, 5))]))
    with pytest.raises(ValueError, match="iouType.*expected one of 'bbox', 'segm'"):
        fcoco.COCOeval(gt, gt, "mask")
    dt = _quiet(gt.loadRes, [_det(1, 1, (0, 0, 5, 5), 0.5)])
    ev = fcoco.COCOeval(gt, dt, "bbox")
    ev.params.maxDets = [0, 10]
    with pytest.raises(ValueError, match="maxDets"):
        _quiet(ev.evaluate)
    with pytest.raises(RuntimeError, match="run evaluate"):
        _quiet(fcoco.COCOeval(gt, dt, "bbox").accumulate)
    with pytest.raises(ValueError, match=r"^Params\(\): argument 'iouType'.*got 'mask'"):
        fcoco.Params("mask")  # type: ignore[arg-type]
    assert fcoco.Params().iouType == "segm"  # pycocotools' default
    with pytest.raises(ValueError, match="without 'score'"):
        _quiet(fcoco.COCOeval(gt, gt, "bbox").evaluate)


@pytest.mark.spec("DET-COCO")
@pytest.mark.parametrize(
    ("name", "value", "stage"),
    [
        ("iouThrs", ["a"], "evaluate"),
        ("iouThrs", [[0.5], [0.6, 0.7]], "evaluate"),
        ("areaRng", [[0, 1], [2]], "evaluate"),
        ("areaRng", [0, 1, 2], "evaluate"),
        ("maxDets", [1, "a"], "evaluate"),
        ("recThrs", ["x"], "accumulate"),
    ],
)
def test_malformed_params_are_errors_naming_the_parameter(name, value, stage):
    gt = _quiet(fcoco.COCO, _tiny_gt([_ann(1, 1, 1, (0, 0, 5, 5))]))
    ev = fcoco.COCOeval(gt, _quiet(gt.loadRes, [_det(1, 1, (0, 0, 5, 5), 0.5)]), "bbox")
    setattr(ev.params, name, value)
    with pytest.raises((TypeError, ValueError), match=rf"^COCOeval\.{stage}\(\): argument 'params\.{name}'"):
        _quiet(ev.evaluate)
        _quiet(ev.accumulate)


@pytest.mark.spec("DET-COCO")
@pytest.mark.parametrize("thresholds", [[None], [0.5, math.nan], ["0.5"], [1 + 2j]])
def test_mean_average_precision_checks_its_thresholds_when_built(thresholds):
    for argument in ("iou_thresholds", "rec_thresholds"):
        with pytest.raises((TypeError, ValueError), match=rf"^MeanAveragePrecision\(\): argument '{argument}'"):
            MeanAveragePrecision(**{argument: thresholds})


@st.composite
def _small_sets(draw):
    n_img = draw(st.integers(1, 4))
    coord = st.integers(0, 12).map(float)
    size = st.sampled_from([0.0, 1.0, 2.0, 3.0, 5.0, 8.0])
    anns = [
        _ann(
            j + 1,
            draw(st.integers(1, n_img)),
            draw(st.integers(1, 2)),
            (draw(coord), draw(coord), draw(size), draw(size)),
            crowd=int(draw(st.booleans()) and draw(st.booleans())),
        )  # fmt: skip
        for j in range(draw(st.integers(0, 6)))
    ]
    dets = [
        _det(
            draw(st.integers(1, n_img)),
            draw(st.integers(1, 2)),
            (draw(coord), draw(coord), draw(size), draw(size)),
            draw(st.sampled_from([0.1, 0.5, 0.9])),
        )  # fmt: skip
        for _ in range(draw(st.integers(0, 8)))
    ]
    return (
        _tiny_gt(anns, images=range(1, n_img + 1)),
        dets,
        draw(st.sampled_from([1, 0])),
        draw(st.sampled_from([[1, 2, 3], [1, 10, 100]])),
    )


@pytest.mark.spec("DET-COCO")
@given(_small_sets())
def test_property_matches_pycocotools(data):
    gt, dets, use_cats, max_dets = data
    if not dets:  # pycocotools' loadRes cannot take an empty list
        return

    def setup(p):
        p.useCats = use_cats
        p.maxDets = max_dets
        p.areaRng = [[0, 1e10], [0, 4], [4, 16], [16, 1e10]]

    _assert_same(_run(fcoco, fcoco, gt, dets, setup), _run(pycoco, pycocoeval, gt, dets, setup))


# -- VOC -------------------------------------------------------------------------------------


def _voc_ap_reference(rec, prec, use_07):
    """DET-VOC07 / DET-VOC10 written from the SPEC, in float64."""
    rec, prec = np.asarray(rec, float), np.asarray(prec, float)
    if use_07:
        total = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = np.max(prec[rec >= t]) if np.any(rec >= t) else 0.0
            total += p / 11.0
        return total
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    changes = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in changes)


@pytest.mark.spec("DET-VOC07", "DET-VOC10")
def test_voc_ap_hand_computed():
    # Detections TP, FP, TP, FP against 2 ground truths.
    rec = [0.5, 0.5, 1.0, 1.0]
    prec = [1.0, 0.5, 2 / 3, 0.5]
    assert voc_ap(rec, prec) == pytest.approx(0.5 * 1.0 + 0.5 * (2 / 3), abs=1e-15)
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx((6 * 1.0 + 5 * (2 / 3)) / 11, abs=1e-15)
    assert voc_ap([], []) == 0.0
    assert voc_ap([], [], use_07_metric=True) == 0.0


@pytest.mark.spec("DET-VOC07", "DET-VOC10")
@given(st.lists(st.booleans(), min_size=1, max_size=40), st.integers(1, 30), st.booleans())
def test_voc_ap_matches_formula(hits, n_gt, use_07):
    tp = np.cumsum(hits)
    fp = np.cumsum(np.logical_not(hits))
    rec = tp / max(n_gt, int(tp[-1]))
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    assert voc_ap(rec, prec, use_07) == pytest.approx(_voc_ap_reference(rec, prec, use_07), rel=1e-12, abs=1e-15)


def _voc_eval_reference(det_img, det_boxes, det_scores, gt_img, gt_boxes, difficult, thr, offset):
    """DET-PR with VOC matching, one detection at a time."""
    order = sorted(range(len(det_scores)), key=lambda i: -det_scores[i])
    taken = [False] * len(gt_img)
    tp = fp = 0
    npos = sum(1 for d in difficult if not d)
    rec, prec = [], []
    for i in order:
        best, best_j = -math.inf, -1
        for j in range(len(gt_img)):
            if gt_img[j] != det_img[i]:
                continue
            d, g = det_boxes[i], gt_boxes[j]
            iw = max(min(d[2], g[2]) - max(d[0], g[0]) + offset, 0.0)
            ih = max(min(d[3], g[3]) - max(d[1], g[1]) + offset, 0.0)
            inter = iw * ih
            union = (
                (d[2] - d[0] + offset) * (d[3] - d[1] + offset)
                + (g[2] - g[0] + offset) * (g[3] - g[1] + offset)
                - inter
            )
            if inter / union > best:
                best, best_j = inter / union, j
        if best > thr:
            if not difficult[best_j]:
                if taken[best_j]:
                    fp += 1
                else:
                    taken[best_j] = True
                    tp += 1
        else:
            fp += 1
        rec.append(tp / npos if npos else math.nan)
        prec.append(tp / max(tp + fp, np.finfo(np.float64).eps))
    return np.array(rec), np.array(prec)


@st.composite
def _voc_class(draw):
    def boxes(n):
        xy = draw(
            st.lists(
                st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(1, 12), st.integers(1, 12)),
                min_size=n,
                max_size=n,
            )
        )
        return np.array([[x, y, x + w, y + h] for x, y, w, h in xy], dtype=np.float64).reshape(-1, 4)

    n_gt, n_det = draw(st.integers(0, 6)), draw(st.integers(0, 10))
    return (
        np.array(draw(st.lists(st.integers(0, 2), min_size=n_det, max_size=n_det)), dtype=np.int64),
        boxes(n_det),
        np.array(draw(st.lists(st.sampled_from([0.2, 0.4, 0.6, 0.8]), min_size=n_det, max_size=n_det))),
        np.array(draw(st.lists(st.integers(0, 2), min_size=n_gt, max_size=n_gt)), dtype=np.int64),
        boxes(n_gt),
        np.array(draw(st.lists(st.booleans(), min_size=n_gt, max_size=n_gt)), dtype=bool),
    )


@pytest.mark.spec("DET-PR", "DET-VOC10")
@given(_voc_class(), st.booleans())
def test_voc_eval_matches_reference(data, legacy):
    det_img, det_boxes, det_scores, gt_img, gt_boxes, difficult = data
    rec, prec, ap = voc_eval(det_img, det_boxes, det_scores, gt_img, gt_boxes, difficult, use_legacy_coordinate=legacy)
    ref_rec, ref_prec = _voc_eval_reference(
        det_img.tolist(),
        det_boxes.tolist(),
        det_scores.tolist(),
        gt_img.tolist(),
        gt_boxes.tolist(),
        difficult.tolist(),
        0.5,
        1.0 if legacy else 0.0,
    )
    np.testing.assert_array_equal(rec, ref_rec)
    np.testing.assert_array_equal(prec, ref_prec)
    if difficult.all():
        assert math.isnan(ap)
    else:
        assert ap == pytest.approx(_voc_ap_reference(rec, prec, False), rel=1e-12, abs=1e-15)


@pytest.mark.spec("DET-VOC10")
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("argument", ["det_boxes", "gt_boxes"])
def test_voc_eval_refuses_non_finite_boxes(argument, bad):
    boxes = {"det_boxes": [[0, 0, 9, 9], [1, 1, 8, 8]], "gt_boxes": [[0, 0, 9, 9], [2, 2, 6, 6]]}
    boxes[argument][1][2] = bad
    with pytest.raises(ValueError, match=rf"voc_eval\(\): argument '{argument}': expected finite .*got box 1 = "):
        voc_eval([0, 0], boxes["det_boxes"], [0.9, 0.8], [0, 0], boxes["gt_boxes"])


@pytest.mark.spec("DET-VOC07", "DET-VOC10")
def test_voc_options_and_nan_curves_name_the_right_argument():
    with pytest.raises(ValueError, match=r"voc_ap\(\): argument 'precision': .*NaN at index 1"):
        voc_ap([0.5, 1.0], [1.0, math.nan])
    with pytest.raises(ValueError, match=r"voc_ap\(\): argument 'recall': .*NaN at index 0"):
        voc_ap([math.nan, 1.0], [1.0, 1.0])
    with pytest.raises(TypeError, match=r"voc_eval\(\): argument 'iou_threshold': expected a number"):
        voc_eval([0], [[0, 0, 1, 1]], [1.0], [0], [[0, 0, 1, 1]], iou_threshold="0.5")
    with pytest.raises(TypeError, match=r"voc_ap\(\): argument 'use_07_metric': expected a bool"):
        voc_ap([1.0], [1.0], use_07_metric="false")


@pytest.mark.spec("DET-PR", "DET-VOC07")
def test_voc_eval_hand_example():
    # Two images; detection 3 hits the difficult box (ignored), detection 4 duplicates a match.
    det_img = [0, 0, 1, 0]
    det_boxes = [[0, 0, 9, 9], [50, 50, 60, 60], [0, 0, 9, 9], [1, 1, 9, 9]]
    det_scores = [0.9, 0.8, 0.7, 0.6]
    gt_img = [0, 1, 1]
    gt_boxes = [[0, 0, 9, 9], [0, 0, 9, 9], [30, 30, 40, 40]]
    difficult = [0, 1, 0]  # 0/1 flags as VOC XML writes them
    rec, prec, ap = voc_eval(det_img, det_boxes, det_scores, gt_img, gt_boxes, difficult, use_07_metric=True)
    np.testing.assert_array_equal(rec, [0.5, 0.5, 0.5, 0.5])
    np.testing.assert_array_equal(prec, [1.0, 0.5, 0.5, 1 / 3])
    assert ap == pytest.approx(6 / 11, abs=1e-15)


@pytest.mark.spec("DET-PR")
def test_voc_eval_bad_input():
    with pytest.raises(ValueError, match=r"voc_eval\(\): argument 'det_boxes': expected an \[N, 4\] array"):
        voc_eval([0], [[0, 0, 1]], [0.5], [0], [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match="voc_eval.*det_scores.*NaN"):
        voc_eval([0], [[0, 0, 1, 1]], [float("nan")], [0], [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match=r"voc_ap\(\): argument 'precision'"):
        voc_ap([0.1, 0.2], [1.0])
    rec, prec, ap = voc_eval(np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0), [0], [[0, 0, 1, 1]])
    assert rec.dtype == np.float64 and rec.shape == (0,) and ap == 0.0


# -- MeanAveragePrecision and PR curves -------------------------------------------------------


def _tensor_batches(gt, dt, torch, fmt):
    by_img = {i["id"]: ([], []) for i in gt["images"]}
    for a in gt["annotations"]:
        by_img[a["image_id"]][0].append(a)
    for r in dt:
        by_img[r["image_id"]][1].append(r)

    def boxes(items):
        b = torch.tensor([x["bbox"] for x in items], dtype=torch.float32).reshape(-1, 4)
        if fmt == "xyxy":
            return torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], 1)
        return torch.cat([b[:, :2] + b[:, 2:] / 2, b[:, 2:]], 1) if fmt == "cxcywh" else b

    preds, target = [], []
    for g, d in by_img.values():
        preds.append({"boxes": boxes(d), "scores": torch.tensor([x["score"] for x in d], dtype=torch.float32),
                      "labels": torch.tensor([x["category_id"] for x in d], dtype=torch.int64)})  # fmt: skip
        target.append({"boxes": boxes(g), "labels": torch.tensor([x["category_id"] for x in g], dtype=torch.int64),
                       "iscrowd": torch.tensor([x["iscrowd"] for x in g]),
                       "area": torch.tensor([x["area"] for x in g], dtype=torch.float32)})  # fmt: skip
    return preds, target


@pytest.mark.spec("DET-COCO")
@pytest.mark.parametrize(
    "kwargs",
    [
        {"box_format": "xyxy", "class_metrics": True},
        {"box_format": "cxcywh"},
        {"box_format": "xywh", "average": "micro", "class_metrics": True, "extended_summary": True},
        {"max_detection_thresholds": [2, 5, 50], "iou_thresholds": [0.4, 0.5, 0.8], "extended_summary": True},
    ],  # fmt: skip
)
def test_mean_average_precision_equals_torchmetrics(files, kwargs):
    torch = pytest.importorskip("torch")
    tm = pytest.importorskip("torchmetrics.detection")
    _, _, gt, dt = files
    preds, target = _tensor_batches(gt, dt, torch, kwargs.get("box_format", "xyxy"))
    theirs = tm.MeanAveragePrecision(**kwargs)
    theirs.warn_on_many_detections = False
    ours = MeanAveragePrecision(**kwargs)
    for i in range(0, len(preds), 32):
        theirs.update(preds[i : i + 32], target[i : i + 32])
        ours.update(preds[i : i + 32], target[i : i + 32])
    expected, got = theirs.compute(), ours.compute()
    assert list(expected) == list(got)
    for key in expected:
        if key == "ious":  # extended_summary's (image, class) -> IoU matrix (or [])
            assert list(expected[key]) == list(got[key])
            pairs = [(got[key][p], expected[key][p]) for p in expected[key]]
        else:
            pairs = [(got[key], expected[key])]
        for mine, theirs_value in pairs:
            if isinstance(theirs_value, list):
                assert mine == theirs_value, key
                continue
            assert mine.dtype == theirs_value.dtype and mine.shape == theirs_value.shape, key
            assert torch.equal(mine, theirs_value), key


@pytest.mark.spec("DET-COCO")
def test_mean_average_precision_shards_merge(files):
    torch = pytest.importorskip("torch")
    _, _, gt, dt = files
    preds, target = _tensor_batches(gt, dt, torch, "xyxy")
    whole = MeanAveragePrecision()
    whole.update(preds, target)
    shards = [MeanAveragePrecision(), MeanAveragePrecision()]
    shards[0].update(preds[:50], target[:50])
    shards[1].update(preds[50:], target[50:])
    merged = MeanAveragePrecision()
    for shard in shards:
        merged.merge_state(shard.state_dict())
    a, b = whole.compute(), merged.compute()
    assert all(torch.equal(a[k], b[k]) for k in a)
    merged = MeanAveragePrecision()
    for shard in shards:
        merged.merge_state(shard)  # the metric itself, as torchmetrics' merge_state takes
    assert all(torch.equal(a[k], v) for k, v in merged.compute().items())
    with pytest.raises(ValueError, match=r"merge_state\(\): argument 'state'"):
        merged.merge_state([])
    merged.reset()
    assert float(merged.compute()["map"]) == -1.0


@pytest.mark.spec("DET-COCO")
def test_mean_average_precision_bad_input():
    metric = MeanAveragePrecision()
    with pytest.raises(ValueError, match="box_format"):
        MeanAveragePrecision(box_format="yxyx")
    with pytest.raises(ValueError, match="max_detection_thresholds"):
        MeanAveragePrecision(max_detection_thresholds=[1, 10])
    boxes = np.zeros((1, 4), np.float32)
    with pytest.raises(ValueError, match=r"MeanAveragePrecision.update\(\): argument 'target': expected 1 images"):
        metric.update([{"boxes": boxes, "scores": np.ones(1, np.float32), "labels": np.zeros(1, np.int64)}], [])
    with pytest.raises(ValueError, match="boxes, scores and labels of image 0 differ"):
        metric.update([{"boxes": boxes, "scores": np.ones(2, np.float32), "labels": np.zeros(1, np.int64)}],
                      [{"boxes": boxes, "labels": np.zeros(1, np.int64)}])  # fmt: skip


@pytest.mark.spec("DET-COCO")
def test_pr_curves(files):
    gt_path, dt_path, _, _ = files
    ev = _run(fcoco, fcoco, gt_path, dt_path)
    curves = pr_curves(ev, area="all")
    assert curves["precision"].shape == (10, 101, 8)
    assert np.array_equal(curves["precision"], ev.eval["precision"][:, :, :, 0, 2])
    assert np.array_equal(curves["recall"], ev.params.recThrs)
    with pytest.raises(ValueError, match="pr_curves.*'area'"):
        pr_curves(ev, area="tiny")
    with pytest.raises(TypeError, match=r"pr_curves\(\): argument 'coco_eval': expected a COCOeval, got ndarray"):
        pr_curves(np.zeros(3))


@pytest.mark.spec("DET-COCO")
def test_per_category_ap(files):
    """The AP of each category is summarize()'s AP restricted to that category,
    for ferrops' COCOeval and pycocotools' alike."""
    gt_path, dt_path, _, _ = files
    ev = _run(fcoco, fcoco, gt_path, dt_path)
    ap = per_category_ap(ev)
    assert list(ap) == [int(c) for c in ev.params.catIds]
    with contextlib.redirect_stdout(io.StringIO()):
        expected = [float(ev._summarize(1, category=k)) for k in range(len(ev.params.catIds))]
    assert list(ap.values()) == expected
    assert per_category_ap(_run(pycoco, pycocoeval, gt_path, dt_path)) == ap


@pytest.mark.spec("DET-COCO")
def test_cli_coco_eval(files, tmp_path, capsys):
    from ferrops.cli import main

    gt_path, dt_path, _, _ = files
    out = tmp_path / "stats.json"
    assert main(["coco-eval", gt_path, dt_path, "--json", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    reference = _run(pycoco, pycocoeval, gt_path, dt_path)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        reference.summarize()
    assert lines == printed.getvalue().splitlines()
    report = json.loads(out.read_text())
    assert list(report["stats"].values()) == reference.stats.tolist()
    assert main(["coco-eval", gt_path, str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err


@pytest.mark.spec("DET-COCO")
def test_cli_plot(files, tmp_path):
    pytest.importorskip("matplotlib")
    from ferrops.cli import main

    gt_path, dt_path, _, _ = files
    png = tmp_path / "pr.png"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["coco-eval", gt_path, dt_path, "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.spec("DET-COCO")
def test_numbers_parse_exactly_as_python_json(tmp_path):
    """Every float of the JSON reaches the evaluation as Python's json reads it
    (correctly rounded), so results cannot drift from pycocotools by an ulp."""
    rng = np.random.default_rng(5)
    n = 20000
    values = np.concatenate([rng.uniform(0, 1000, n), rng.random(n) * 10.0 ** rng.integers(-12, 12, n)])
    records = [_det(1, 1, (float(v), 0.5, float(w), 2.0), float(v)) for v, w in zip(values, values[::-1])]
    path = tmp_path / "floats.json"
    path.write_text(json.dumps(records))
    gt = _quiet(fcoco.COCO, _tiny_gt([_ann(1, 1, 1, (0, 0, 5, 5))]))
    res = _quiet(gt.loadRes, str(path))
    loaded = json.loads(path.read_text())
    columns = res._data.columns()
    assert np.array_equal(columns["score"], [r["score"] for r in loaded])
    assert np.array_equal(columns["bbox"], [r["bbox"] for r in loaded])
