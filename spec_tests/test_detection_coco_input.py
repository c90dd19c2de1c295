"""COCO input beyond integer ids and clean JSON (SPEC DET-COCO-IDS, DET-COCO-JSON):
string ids compared with pycocotools, and hostile files that must give a
ValueError naming the file."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from ferrops import coco as fcoco
from ferrops.detection import MeanAveragePrecision

pycoco = pytest.importorskip("pycocotools.coco")
pycocoeval = pytest.importorskip("pycocotools.cocoeval")


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def _string_id_set(seed, image_id=lambda i: f"img_{i:03d}", category_id=lambda c: c):
    """A ground truth and results whose ids come from the two functions."""
    rng = np.random.default_rng(seed)
    images = [{"id": image_id(i), "file_name": f"{i}.jpg"} for i in range(25)]
    categories = [{"id": category_id(c), "name": f"c{c}"} for c in (4, 1, 2)]
    annotations, results = [], []
    for k in range(160):
        image, cat = image_id(int(rng.integers(25))), category_id(int(rng.choice([1, 2, 4])))
        x, y, w, h = (rng.random(4) * [60, 60, 50, 50]).tolist()
        crowd = int(rng.random() < 0.05)
        annotations.append(
            {"id": k + 1, "image_id": image, "category_id": cat, "bbox": [x, y, w, h], "area": w * h, "iscrowd": crowd}
        )
        for _ in range(int(rng.integers(0, 3))):
            box = [x + rng.normal(0, 4), y + rng.normal(0, 4), w * rng.uniform(0.7, 1.3), h]
            results.append({"image_id": image, "category_id": cat, "bbox": box, "score": float(rng.random())})
    return {"images": images, "annotations": annotations, "categories": categories}, results


ID_KINDS = {
    "string-images": {},
    "string-images-and-categories": {"category_id": lambda c: f"cat/{c}"},
    "numeric-looking-strings": {"image_id": lambda i: str(i)},
    "unicode-strings": {"image_id": lambda i: f"画像_{i}", "category_id": lambda c: f"ç{c}"},
}


def _evaluate(coco_mod, eval_mod, gt_path, dt_path, setup=None):
    def go():
        gt = coco_mod.COCO(gt_path)
        dt = gt.loadRes(dt_path)
        ev = eval_mod.COCOeval(gt, dt, "bbox")
        if setup:
            setup(ev.params)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return gt, dt, ev

    return _quiet(go)


@pytest.mark.spec("DET-COCO-IDS")
@pytest.mark.parametrize("kind", list(ID_KINDS))
@pytest.mark.parametrize(
    "setup",
    [None, lambda p: setattr(p, "imgIds", p.imgIds[::2]), lambda p: setattr(p, "useCats", 0)],
    ids=["all", "image-subset", "useCats-0"],
)
def test_string_ids_match_pycocotools(tmp_path, kind, setup):
    gt, dt = _string_id_set(3, **ID_KINDS[kind])
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    gt_path, dt_path = str(tmp_path / "gt.json"), str(tmp_path / "dt.json")
    ours_gt, ours_dt, ours = _evaluate(fcoco, fcoco, gt_path, dt_path, setup)
    theirs_gt, theirs_dt, theirs = _evaluate(pycoco, pycocoeval, gt_path, dt_path, setup)
    for key in ("precision", "recall", "scores"):
        assert np.array_equal(ours.eval[key], theirs.eval[key]), key
    assert np.array_equal(ours.stats, theirs.stats)
    assert ours.params.imgIds == theirs.params.imgIds
    assert len(ours.evalImgs) == len(theirs.evalImgs)
    for mine, peer in zip(ours.evalImgs, theirs.evalImgs):
        assert (mine is None) == (peer is None)
        if mine is not None:
            assert (mine["image_id"], mine["category_id"]) == (peer["image_id"], peer["category_id"])
            assert type(mine["image_id"]) is type(peer["image_id"])
            assert mine["dtIds"] == peer["dtIds"] and mine["gtIds"] == peer["gtIds"]
            assert np.array_equal(mine["dtMatches"], peer["dtMatches"])
    assert list(ours.ious) == list(theirs.ious)
    for key in list(theirs.ious)[:40]:
        assert np.array_equal(np.asarray(ours.ious[key]), np.asarray(theirs.ious[key])), key
    # The query API and the Python views.
    assert ours_gt.getImgIds() == theirs_gt.getImgIds()
    assert ours_gt.getCatIds() == theirs_gt.getCatIds()
    some = theirs_gt.getImgIds()[3:6]
    assert ours_gt.loadImgs(some) == theirs_gt.loadImgs(some)
    assert ours_gt.getAnnIds(imgIds=some) == theirs_gt.getAnnIds(imgIds=some)
    assert sorted(ours_gt.imgToAnns) == sorted(theirs_gt.imgToAnns)
    mine_anns = [(a["image_id"], a["category_id"], a["id"]) for a in ours_dt.dataset["annotations"]]
    peer_anns = [(a["image_id"], a["category_id"], a["id"]) for a in theirs_dt.dataset["annotations"]]
    assert mine_anns == peer_anns


@pytest.mark.spec("DET-COCO-IDS")
def test_string_ids_from_lists_and_separately_loaded_detections(tmp_path):
    gt, dt = _string_id_set(5, category_id=lambda c: f"k{c}")
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    ours_gt, theirs_gt = _quiet(fcoco.COCO, str(tmp_path / "gt.json")), _quiet(pycoco.COCO, str(tmp_path / "gt.json"))
    ours = _quiet(fcoco.COCOeval, ours_gt, _quiet(ours_gt.loadRes, list(dt)), "bbox")
    theirs = _quiet(pycocoeval.COCOeval, theirs_gt, _quiet(theirs_gt.loadRes, json.loads(json.dumps(dt))), "bbox")
    # A results category the ground truth lacks, and categories asked for by string.
    for ev in (ours, theirs):
        ev.params.catIds = ["k4", "k1", "missing"]
        _quiet(ev.evaluate)
        _quiet(ev.accumulate)
    assert np.array_equal(ours.eval["precision"], theirs.eval["precision"])
    # Detections loaded on their own (not through loadRes) code their strings
    # apart; evaluation still pairs them with the ground truth's.
    alone = {"images": gt["images"][::-1], "categories": gt["categories"][::-1], "annotations": []}
    for k, d in enumerate(dt):
        alone["annotations"].append({**d, "id": k + 1, "area": d["bbox"][2] * d["bbox"][3], "iscrowd": 0})
    (tmp_path / "alone.json").write_text(json.dumps(alone))
    ours = _quiet(fcoco.COCOeval, ours_gt, _quiet(fcoco.COCO, str(tmp_path / "alone.json")), "bbox")
    theirs = _quiet(pycocoeval.COCOeval, theirs_gt, _quiet(pycoco.COCO, str(tmp_path / "alone.json")), "bbox")
    for ev in (ours, theirs):
        _quiet(ev.evaluate)
        _quiet(ev.accumulate)
    assert np.array_equal(ours.eval["precision"], theirs.eval["precision"])


@pytest.mark.spec("DET-COCO-IDS")
def test_mixed_and_unsupported_ids(tmp_path):
    mixed = {
        "images": [{"id": 1}, {"id": "a"}],
        "categories": [{"id": 1}],
        "annotations": [{"id": 1, "image_id": "a", "category_id": 1, "bbox": [0, 0, 2, 2], "area": 4, "iscrowd": 0}],
    }
    (tmp_path / "mixed.json").write_text(json.dumps(mixed))
    ours, theirs = _quiet(fcoco.COCO, str(tmp_path / "mixed.json")), _quiet(pycoco.COCO, str(tmp_path / "mixed.json"))
    assert ours.getImgIds() == theirs.getImgIds() == [1, "a"]
    assert ours.loadImgs(["a"]) == theirs.loadImgs(["a"])
    for coco, evaluator in ((ours, fcoco.COCOeval), (theirs, pycocoeval.COCOeval)):
        with pytest.raises(TypeError, match="'<' not supported"):
            evaluator(coco, coco, "bbox")
    string_ann = {**mixed, "images": [{"id": "a"}]}
    string_ann["annotations"] = [{**mixed["annotations"][0], "id": "ann-1"}]
    (tmp_path / "ann.json").write_text(json.dumps(string_ann))
    gt = _quiet(fcoco.COCO, str(tmp_path / "ann.json"))
    assert gt.getAnnIds() == ["ann-1"] and gt.loadAnns(["ann-1"])[0]["image_id"] == "a"
    dt = _quiet(gt.loadRes, [{"image_id": "a", "category_id": 1, "bbox": [0, 0, 2, 2], "score": 1}])
    ev = fcoco.COCOeval(gt, dt, "bbox")
    with pytest.raises(ValueError, match=r"COCOeval.evaluate\(\): argument 'cocoGt'.*id \"ann-1\""):
        _quiet(ev.evaluate)
    with pytest.raises(ValueError, match=r"results\[0\] has image_id \"b\", which is not an image"):
        _quiet(gt.loadRes, [{"image_id": "b", "category_id": 1, "bbox": [0, 0, 2, 2], "score": 1}])
    (tmp_path / "low.json").write_text(json.dumps({"images": [{"id": -(2**62) - 1}]}))
    with pytest.raises(ValueError, match=r"low\.json: images\[0\]'s 'id' is -4611686018427387905, below -2\*\*62"):
        _quiet(fcoco.COCO, str(tmp_path / "low.json"))


HOSTILE = {
    "deep-nesting-in-unused-key": (b'{"images": [], "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nesting deeper"),
    "deep-nesting-in-a-record": (
        b'{"annotations": [{"id": 1, "s": ' + b"[" * 200 + b"]" * 200 + b"}]}",
        "nesting deeper than 128 levels",
    ),
    "invalid-utf8-in-unused-key": (b'{"images": [{"id": 1, "file_name": "a\xffb"}]}', "invalid UTF-8 at line 1"),
    "invalid-utf8-in-info": (b'{"info": {"d": "\xc3("}, "images": []}', "invalid UTF-8"),
    "bad-escape": (b'{"info": {"d": "\\q"}, "images": []}', "invalid escape"),
    "top-level-array": (b"[null, null, null]", "not an object"),
    "nan-literal": (b'{"info": {"d": NaN}}', "invalid JSON"),
}


@pytest.mark.spec("DET-COCO-JSON")
@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_files_are_value_errors_naming_the_file(tmp_path, case):
    data, message = HOSTILE[case]
    path = tmp_path / "hostile.json"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"COCO\(\): argument 'annotation_file'.*hostile\.json.*" + message):
        _quiet(fcoco.COCO, str(path))


@pytest.mark.spec("DET-COCO-JSON")
def test_results_file_with_bad_utf8_names_the_file(tmp_path):
    gt = _quiet(fcoco.COCO, {"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": []})
    path = tmp_path / "dt.json"
    path.write_bytes(b'[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1, "x": "\xff"}]')
    with pytest.raises(
        ValueError, match=r"COCO.loadRes\(\): argument 'resFile'.*dt\.json: invalid JSON \(invalid UTF-8"
    ):
        _quiet(gt.loadRes, str(path))


@pytest.mark.spec("DET-COCO-JSON")
def test_dataset_view_equals_python_json(tmp_path):
    text = (
        '{"info": {"big": 123456789012345678901234567890, "huge": 1e400, "neg0": -0, "negf": -0.0, '
        '"s": "\\ud800\\ud83d\\ude00\\u00e9\\/\\n", "dup": 1, "dup": [2, {"k": null}], "t": true, "u": "\u00fc"}, '
        '"images": [{"id": "a", "w": 1.5e-3}, {"id": 2}], "categories": [{"id": 3}], '
        '"annotations": [{"id": 1, "image_id": 2, "category_id": 3, "bbox": [0.1, 0.2, 3, 4], "iscrowd": 0, '
        '"segmentation": [[1, 2, 3.25]]}]}'
    )
    path = tmp_path / "gt.json"
    path.write_text(text, encoding="utf-8")
    ours = _quiet(fcoco.COCO, str(path)).dataset
    expected = json.loads(text)
    assert ours == {k: v for k, v in expected.items() if k != "info"} | {"info": ours["info"]}
    info, expected_info = ours["info"], expected["info"]
    assert info.keys() == expected_info.keys() and list(info) == list(expected_info)
    assert info["huge"] == float("inf") and info["s"] == expected_info["s"] and info["dup"] == [2, {"k": None}]
    assert type(info["neg0"]) is int and str(info["negf"]) == "-0.0" and info["big"] == expected_info["big"]


@pytest.mark.spec("DET-COCO-IDS")
def test_max_dets_overflow(tmp_path):
    gt, dt = _string_id_set(9)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    gt_path, dt_path = str(tmp_path / "gt.json"), str(tmp_path / "dt.json")
    huge = lambda p: setattr(p, "maxDets", [1, 10, 2**64])  # noqa: E731
    _, _, ours = _evaluate(fcoco, fcoco, gt_path, dt_path, huge)
    _, _, theirs = _evaluate(pycoco, pycocoeval, gt_path, dt_path, huge)
    assert np.array_equal(ours.eval["precision"], theirs.eval["precision"])
    for bad in (float("inf"), float("nan"), 0, 2.5):
        with pytest.raises(ValueError, match=r"COCOeval.evaluate\(\): argument 'params.maxDets'"):
            _evaluate(fcoco, fcoco, gt_path, dt_path, lambda p, bad=bad: setattr(p, "maxDets", [1, 10, bad]))


@pytest.mark.spec("DET-COCO")
def test_mean_average_precision_out_of_int32_range():
    box = np.array([[0.0, 0.0, 10.0, 10.0]], dtype=np.float32)
    for label in (2**62, -(2**31) - 1):
        metric = MeanAveragePrecision()
        preds = [{"boxes": box, "scores": np.array([0.9], np.float32), "labels": np.array([label])}]
        with pytest.raises(ValueError, match=r"MeanAveragePrecision.update\(\): argument 'preds': expected labels in"):
            metric.update(preds, [{"boxes": box, "labels": np.array([1])}])
    for thresholds in ([1, 10, 2**70], [1, 10, 2**40]):
        with pytest.raises(ValueError, match=r"MeanAveragePrecision\(\): argument 'max_detection_thresholds'"):
            MeanAveragePrecision(max_detection_thresholds=thresholds)
    MeanAveragePrecision(max_detection_thresholds=[1, 10, 2**31 - 1])
    metric = MeanAveragePrecision()
    metric.update(
        [{"boxes": box, "scores": np.array([0.9], np.float32), "labels": np.array([2**31 - 1])}],
        [{"boxes": box, "labels": np.array([2**31 - 1])}],
    )
    assert float(metric.compute()["map"]) == 1.0
