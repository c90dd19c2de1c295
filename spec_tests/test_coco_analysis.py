"""Analyses of a COCO evaluation (SPEC DET-TIDE, DET-ANALYSIS).

TIDE: ``tidecv`` is the oracle, compared with ``==`` (AP and every dAP) on
generated sets with crowd regions, ties, duplicates and wrong classes. The
per-category table: pycocotools restricted to one category. Precision / recall
/ F1 and the confusion matrix: references written from the clause's words.
"""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

import ferrops
from ferrops import coco as fcoco
from ferrops._bench.detection import synthetic_coco
from ferrops._bench.keypoints import synthetic_keypoints
from ferrops.coco import analysis

pycoco = pytest.importorskip("pycocotools.coco")
pycocoeval = pytest.importorskip("pycocotools.cocoeval")

ERRORS = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def _files(tmp_path, num_images=80, num_classes=6, seed=0):
    gt, dt = synthetic_coco(num_images, num_classes, seed=seed)
    for a in gt["annotations"]:  # tidecv reads every segmentation
        x, y, w, h = a["bbox"]
        a["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    gt_path, dt_path = tmp_path / f"gt{seed}.json", tmp_path / f"dt{seed}.json"
    gt_path.write_text(json.dumps(gt))
    dt_path.write_text(json.dumps(dt))
    return str(gt_path), str(dt_path)


def _evaluated(gt_path, dt_path, modules=(fcoco, fcoco), iou_type="bbox", cat_ids=None):
    def go():
        g = modules[0].COCO(gt_path)
        ev = modules[1].COCOeval(g, g.loadRes(dt_path), iou_type)
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return ev

    return _quiet(go)


def _tidecv(gt_path, dt_path, pos=0.5, bg=0.1):
    tidecv = pytest.importorskip("tidecv")

    def go():
        tide = tidecv.TIDE(pos_threshold=pos, background_threshold=bg)
        run = tide.evaluate(tidecv.datasets.COCO(gt_path), tidecv.datasets.COCOResult(dt_path), name="run")
        return run, tide.get_main_errors()["run"], tide.get_special_errors()["run"]

    return _quiet(go)


@pytest.mark.spec("DET-TIDE")
@pytest.mark.parametrize(("seed", "pos", "bg"), [(0, 0.5, 0.1), (1, 0.5, 0.1), (2, 0.75, 0.2), (3, 0.3, 0.0)])
def test_tide_equals_tidecv(tmp_path, seed, pos, bg):
    gt_path, dt_path = _files(tmp_path, seed=seed)
    run, main, special = _tidecv(gt_path, dt_path, pos, bg)
    g = _quiet(fcoco.COCO, gt_path)
    ours = analysis.tide(g, _quiet(g.loadRes, dt_path), pos_threshold=pos, background_threshold=bg)
    assert ours.ap == run.ap
    assert ours.main_errors == main
    assert ours.special_errors == special
    assert ours.counts == {e.short_name: len(run.error_dict[e]) for e in run.error_dict}
    assert "Main errors" in ours.table()


@pytest.mark.spec("DET-TIDE")
def test_tide_the_same_for_one_and_two_threads(tmp_path):
    gt_path, dt_path = _files(tmp_path, num_images=300, seed=4)
    g = _quiet(fcoco.COCO, gt_path)
    d = _quiet(g.loadRes, dt_path)
    before = ferrops.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            ferrops.set_num_threads(n)
            results.append(analysis.tide(g, d))
    finally:
        ferrops.set_num_threads(before)
    assert results[0] == results[1]


@pytest.mark.spec("DET-TIDE")
def test_tide_bad_input(tmp_path):
    gt_path, dt_path = _files(tmp_path, num_images=5)
    g = _quiet(fcoco.COCO, gt_path)
    d = _quiet(g.loadRes, dt_path)
    with pytest.raises(TypeError, match=r"tide\(\): argument 'cocoDt'"):
        analysis.tide(g, [])
    with pytest.raises(ValueError, match=r"tide\(\): argument 'max_dets'"):
        analysis.tide(g, d, max_dets=0)
    with pytest.raises(ValueError, match=r"tide\(\): argument 'pos_threshold'"):
        analysis.tide(g, d, pos_threshold=float("nan"))


@pytest.mark.spec("DET-ANALYSIS")
def test_per_category_is_pycocotools_restricted_to_the_category(tmp_path):
    gt_path, dt_path = _files(tmp_path, seed=5)
    rows = analysis.per_category(_evaluated(gt_path, dt_path))
    for row in rows[:3]:
        pe = _evaluated(gt_path, dt_path, (pycoco, pycocoeval), cat_ids=[row["category_id"]])
        expected = dict(zip(["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large"], pe.stats[:6]))
        expected["AR"] = pe.stats[8]
        for key, value in expected.items():
            assert row[key] == value, key
    table = analysis.per_category_table(_evaluated(gt_path, dt_path))
    assert len(table.splitlines()) == len(rows) + 1


@pytest.mark.spec("DET-ANALYSIS")
def test_per_category_for_keypoints(tmp_path):
    gt, dt = synthetic_keypoints(40, seed=1)
    gt_path, dt_path = tmp_path / "kgt.json", tmp_path / "kdt.json"
    gt_path.write_text(json.dumps(gt))
    dt_path.write_text(json.dumps(dt))
    ev = _evaluated(str(gt_path), str(dt_path), iou_type="keypoints")
    (row,) = analysis.per_category(ev)
    assert (row["AP"], row["AP50"], row["AP_medium"], row["AR"]) == (ev.stats[0], ev.stats[1], ev.stats[3], ev.stats[5])


def _outcomes_from_pycocotools(pe, k, t=0):
    """Per category k: (score, true positive) of the kept, not-ignored detections
    at threshold t, area 'all', and the ground truth not ignored."""
    num_images = len(pe.params.imgIds)
    start = k * len(pe.params.areaRng) * num_images
    pairs, num_gt = [], 0
    for e in pe.evalImgs[start : start + num_images]:
        if e is None:
            continue
        num_gt += int((~np.asarray(e["gtIgnore"], dtype=bool)).sum())
        for s, m, ign in zip(e["dtScores"], e["dtMatches"][t], e["dtIgnore"][t]):
            if not ign:
                pairs.append((s, m != 0))
    return pairs, num_gt


@pytest.mark.spec("DET-ANALYSIS")
def test_precision_recall_f1_and_best_threshold(tmp_path):
    gt_path, dt_path = _files(tmp_path, seed=6)
    rows = analysis.precision_recall_f1(_evaluated(gt_path, dt_path), score_threshold=0.4)
    pe = _evaluated(gt_path, dt_path, (pycoco, pycocoeval))
    for k, row in enumerate(rows):
        pairs, num_gt = _outcomes_from_pycocotools(pe, k)
        tp = sum(1 for s, m in pairs if s >= 0.4 and m)
        fp = sum(1 for s, m in pairs if s >= 0.4 and not m)
        assert (row["tp"], row["fp"], row["num_gt"]) == (tp, fp, num_gt)
        assert row["precision"] == pytest.approx(tp / (tp + fp))
        assert row["recall"] == pytest.approx(tp / num_gt)
        assert row["f1"] == pytest.approx(2 * tp / (2 * tp + fp + num_gt - tp))

        def f1_at(thr, pairs=pairs, num_gt=num_gt):
            t = sum(1 for s, m in pairs if s >= thr and m)
            f = sum(1 for s, m in pairs if s >= thr and not m)
            return 2 * t / (2 * t + f + num_gt - t)

        best = max(f1_at(s) for s, _ in pairs)
        assert row["best_f1"] == pytest.approx(best)
        assert f1_at(row["best_threshold"]) == pytest.approx(best)
        assert all(f1_at(s) < best or s <= row["best_threshold"] for s, _ in pairs)
    with pytest.raises(ValueError, match="iou_threshold"):
        analysis.precision_recall_f1(_evaluated(gt_path, dt_path), iou_threshold=0.42)


@pytest.mark.spec("DET-ANALYSIS")
def test_confusion_matrix_by_hand():
    gt = {
        "images": [{"id": 1}, {"id": 2}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 2, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 4, "image_id": 2, "category_id": 1, "bbox": [100, 100, 50, 50], "area": 2500, "iscrowd": 1},
        ],
    }
    dt = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 9], "score": 0.9},  # cat as cat
        {"image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.8},  # dog as cat
        {"image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 8], "score": 0.7},  # IoU 0.8 < 0.9: background
        {"image_id": 2, "category_id": 1, "bbox": [110, 110, 5, 5], "score": 0.9},  # in a cat crowd: not counted
        {"image_id": 2, "category_id": 2, "bbox": [300, 300, 5, 5], "score": 0.6},  # background
        {"image_id": 2, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.1},  # below the score threshold
    ]
    g = fcoco.COCO()
    g.dataset = gt
    _quiet(g.createIndex)
    d = _quiet(g.loadRes, dt)
    matrix, ids = analysis.confusion_matrix(g, d, iou_threshold=0.5, score_threshold=0.25)
    assert ids == [1, 2]
    expected = np.array([[1, 0, 0], [1, 0, 1], [0, 2, 0]])
    assert np.array_equal(matrix, expected)
    assert "background" in analysis.confusion_matrix_table(matrix, ["cat", "dog"])
    matrix, _ = analysis.confusion_matrix(g, d, score_threshold=0.0)
    assert matrix[1, 1] == 1 and matrix[1, 2] == 0


@pytest.mark.spec("DET-ANALYSIS")
def test_confusion_matrix_sums(tmp_path):
    gt_path, dt_path = _files(tmp_path, seed=7)
    g = _quiet(fcoco.COCO, gt_path)
    d = _quiet(g.loadRes, dt_path)
    matrix, ids = analysis.confusion_matrix(g, d, score_threshold=0.3)
    for k, cat in enumerate(ids):
        solid = [a for a in g.loadAnns(g.getAnnIds(catIds=[cat])) if not a["iscrowd"]]
        assert matrix[k].sum() == len(solid)
        kept = [a for a in d.loadAnns(d.getAnnIds(catIds=[cat])) if a["score"] >= 0.3]
        assert matrix[:, k].sum() <= len(kept)
    assert matrix[-1, -1] == 0


@pytest.mark.spec("DET-TIDE")
def test_tide_with_nothing_to_evaluate_is_named():
    # Found by the fuzz suite: no ground truth and no detections divided by zero
    # (as tidecv does); ferrops says what is missing.
    g = fcoco.COCO()
    g.dataset = {"images": [{"id": 1, "width": 10, "height": 10}], "annotations": [], "categories": [{"id": 1}]}
    g.createIndex()
    with pytest.raises(ValueError, match=r"tide\(\): argument 'cocoGt'.*ground truth or detections"):
        analysis.tide(g, g.loadRes([]))


@pytest.mark.spec("DET-ANALYSIS")
def test_confusion_matrix_table_checks_its_input():
    # Found by the fuzz suite: a 0-d matrix raised NumPy's "iteration over a 0-d array".
    table = analysis.confusion_matrix_table(np.arange(4).reshape(2, 2), [7])
    assert table.splitlines()[1].split() == ["7", "0", "1"]
    with pytest.raises(ValueError, match=r"confusion_matrix_table\(\): argument 'matrix'.*shape \[2, 2\]"):
        analysis.confusion_matrix_table(np.array(3), ["a"])
    with pytest.raises(TypeError, match=r"confusion_matrix_table\(\): argument 'matrix'.*integer"):
        analysis.confusion_matrix_table(np.ones((2, 2)), ["a"])
    with pytest.raises(TypeError, match=r"confusion_matrix_table\(\): argument 'labels'"):
        analysis.confusion_matrix_table(np.ones((2, 2), int), "a")
