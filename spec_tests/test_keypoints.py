"""COCO keypoint evaluation (SPEC DET-OKS): ``COCOeval(gt, dt, "keypoints")``
against pycocotools' ``computeOks``, ``setKpParams`` and ``_summarizeKps``.

pycocotools is the oracle: the precision/recall arrays and the 10 stats are
compared bit for bit, and the OKS matrices bit for bit once pycocotools' NumPy
``exp`` is the C library's (NumPy's SVML exp on AVX-512 CPUs rounds some
values the other way; see the clause).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import types

import numpy as np
import pytest

import ferrops
from ferrops import coco as fcoco
from ferrops._bench.keypoints import synthetic_keypoints

pycoco = pytest.importorskip("pycocotools.coco")
pycocoeval = pytest.importorskip("pycocotools.cocoeval")

CROWDPOSE_SIGMAS = np.array([0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89, 0.79, 0.79]) / 10


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        result = fn(*args, **kwargs)
    return result, out.getvalue()


def _write(tmp_path, gt, dt):
    gt_path, dt_path = tmp_path / "gt.json", tmp_path / "dt.json"
    gt_path.write_text(json.dumps(gt))
    dt_path.write_text(json.dumps(dt))
    return str(gt_path), str(dt_path)


def _evaluate(coco_mod, eval_mod, gt_path, dt_path, sigmas=None):
    def go():
        g = coco_mod.COCO(gt_path)
        d = g.loadRes(dt_path)
        ev = eval_mod.COCOeval(g, d, "keypoints")
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = sigmas
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return ev

    return _quiet(go)


def _libm_exp_numpy():
    """NumPy as pycocotools sees it, with ``exp`` from the C library."""
    fake = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    fake.exp = lambda a: np.vectorize(math.exp, otypes=[np.float64])(np.asarray(a, dtype=np.float64))
    return fake


def _assert_same(ours, theirs, exact_ious=False):
    (ev, printed), (pe, their_printed) = ours, theirs
    assert np.array_equal(ev.stats, pe.stats)
    for key in ("precision", "recall", "scores"):
        assert np.array_equal(ev.eval[key], pe.eval[key]), key
    assert printed.splitlines()[-10:] == their_printed.splitlines()[-10:]
    for key, theirs_iou in pe.ious.items():
        mine = ev.ious[key]
        if len(theirs_iou) == 0:
            assert len(mine) == 0
        elif exact_ious:
            assert np.array_equal(mine, theirs_iou), key
        else:
            np.testing.assert_allclose(mine, theirs_iou, rtol=1e-14, atol=0)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    gt, dt = synthetic_keypoints(150, seed=3)
    return _write(tmp_path_factory.mktemp("kpt"), gt, dt)


@pytest.mark.spec("DET-OKS")
def test_generated_set_matches_pycocotools(generated):
    ours = _evaluate(fcoco, fcoco, *generated)
    theirs = _evaluate(pycoco, pycocoeval, *generated)
    _assert_same(ours, theirs)
    ev, pe = ours[0], theirs[0]
    assert ev.stats.shape == (10,)
    assert ev.params.maxDets == [20] and ev.params.areaRngLbl == ["all", "medium", "large"]
    for i in range(0, len(pe.evalImgs), 7):
        a, b = ev.evalImgs[i], pe.evalImgs[i]
        if b is None:
            assert a is None
            continue
        for key in ("dtIds", "gtIds", "dtMatches", "gtMatches", "dtScores", "gtIgnore", "dtIgnore"):
            assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), (i, key)


@pytest.mark.spec("DET-OKS")
def test_oks_is_computeoks_bit_for_bit_with_the_c_library_exp(generated, monkeypatch):
    monkeypatch.setattr(pycocoeval, "np", _libm_exp_numpy())
    _assert_same(_evaluate(fcoco, fcoco, *generated), _evaluate(pycoco, pycocoeval, *generated), exact_ious=True)


@pytest.mark.spec("DET-OKS")
def test_invisible_points_crowd_and_unlabelled_people(tmp_path, monkeypatch):
    """Hand-made edge cases: a person whose points are all invisible (OKS by the
    distance outside its grown box), a crowd (matched repeatedly, ignored), a
    person with ``num_keypoints == 0`` (ignored though not crowd), and
    detections of both."""
    kp = [10, 10, 2, 20, 10, 1, 0, 0, 0] + [0, 0, 0] * 14
    invisible = [0, 0, 0] * 17
    people = [
        {"id": 1, "bbox": [0, 0, 40, 40], "area": 1200, "iscrowd": 0, "keypoints": kp, "num_keypoints": 2},
        {"id": 2, "bbox": [100, 100, 50, 60], "area": 2500, "iscrowd": 0, "keypoints": invisible, "num_keypoints": 3},
        {"id": 3, "bbox": [200, 0, 80, 80], "area": 5000, "iscrowd": 1, "keypoints": invisible, "num_keypoints": 0},
        {"id": 4, "bbox": [0, 200, 60, 60], "area": 3000, "iscrowd": 0, "keypoints": kp, "num_keypoints": 0},
    ]
    gt = {
        "images": [{"id": 1}],
        "categories": [{"id": 1, "name": "person"}],
        "annotations": [dict(p, image_id=1, category_id=1) for p in people],
    }

    def det(x, y, score):
        return {"image_id": 1, "category_id": 1, "keypoints": [x, y, 1] * 17, "score": score}

    dt = [det(11, 9, 0.9), det(120, 130, 0.8), det(90, 90, 0.7), det(240, 40, 0.6), det(230, 30, 0.6)]
    dt += [det(10, 210, 0.5), det(400, 400, 0.4), det(14, 12.5, 0.3)]
    paths = _write(tmp_path, gt, dt)
    _assert_same(_evaluate(fcoco, fcoco, *paths), _evaluate(pycoco, pycocoeval, *paths))
    monkeypatch.setattr(pycocoeval, "np", _libm_exp_numpy())
    _assert_same(_evaluate(fcoco, fcoco, *paths), _evaluate(pycoco, pycocoeval, *paths), exact_ious=True)


@pytest.mark.spec("DET-OKS")
def test_custom_sigmas_of_another_skeleton(tmp_path):
    gt, dt = synthetic_keypoints(60, seed=5)
    for record in gt["annotations"]:
        record["keypoints"] = record["keypoints"][: 3 * 14]
        record["num_keypoints"] = sum(v > 0 for v in record["keypoints"][2::3])
    for record in dt:
        record["keypoints"] = record["keypoints"][: 3 * 14]
    paths = _write(tmp_path, gt, dt)
    ours = _evaluate(fcoco, fcoco, *paths, sigmas=CROWDPOSE_SIGMAS)
    theirs = _evaluate(pycoco, pycocoeval, *paths, sigmas=CROWDPOSE_SIGMAS)
    _assert_same(ours, theirs)
    # The default 17 COCO sigmas do not fit 14 keypoints: a clear error, not a broadcast failure.
    with pytest.raises(ValueError, match=r"COCOeval.evaluate\(\): argument 'params.kpt_oks_sigmas'.*14 keypoints"):
        _evaluate(fcoco, fcoco, *paths)
    with pytest.raises(ValueError, match="kpt_oks_sigmas"):
        _evaluate(fcoco, fcoco, *paths, sigmas=np.array([0.1, -0.2] * 7))


@pytest.mark.spec("DET-OKS")
def test_load_res_boxes_keypoint_results_by_their_extent(generated):
    gt_path, dt_path = generated
    ours, _ = _quiet(lambda: fcoco.COCO(gt_path).loadRes(dt_path))
    theirs, _ = _quiet(lambda: pycoco.COCO(gt_path).loadRes(dt_path))
    ids = sorted(theirs.getAnnIds())
    assert sorted(ours.getAnnIds()) == ids
    for a, b in zip(ours.loadAnns(ids), theirs.loadAnns(ids)):
        assert a["bbox"] == [float(v) for v in b["bbox"]]
        assert a["area"] == float(b["area"])
        assert a["keypoints"] == b["keypoints"]


@pytest.mark.spec("DET-OKS")
def test_results_the_same_for_one_and_two_threads(generated):
    before = ferrops.get_num_threads()
    try:
        runs = []
        for n in (1, 2):
            ferrops.set_num_threads(n)
            ev, _ = _evaluate(fcoco, fcoco, *generated)
            runs.append((ev.eval["precision"], ev.stats, ev.ious[ev.params.imgIds[0], 1]))
    finally:
        ferrops.set_num_threads(before)
    for a, b in zip(*runs):
        assert np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.spec("DET-OKS")
def test_keypoint_arrays_of_the_wrong_length_name_the_file_and_record(tmp_path):
    gt, dt = synthetic_keypoints(5, seed=2)
    bad_gt = copy.deepcopy(gt)
    bad_gt["annotations"][1]["keypoints"] = bad_gt["annotations"][1]["keypoints"][:-1]
    gt_path, dt_path = _write(tmp_path, bad_gt, dt)
    with pytest.raises(ValueError, match=r"gt\.json: annotations\[1\] \(id 2\) has 'keypoints' of 50 numbers"):
        fcoco.COCO(gt_path)
    bad_dt = copy.deepcopy(dt)
    bad_dt[2]["keypoints"] = bad_dt[2]["keypoints"][:-2]
    gt_path, dt_path = _write(tmp_path, gt, bad_dt)
    g, _ = _quiet(fcoco.COCO, gt_path)
    with pytest.raises(ValueError, match=r"dt\.json: results\[2\] has 'keypoints' of 49 numbers"):
        _quiet(g.loadRes, dt_path)
    # Triples of another length than the sigmas: named at evaluate, first record first.
    short = copy.deepcopy(dt)
    short[3]["keypoints"] = short[3]["keypoints"][:-3]
    gt_path, dt_path = _write(tmp_path, gt, short)
    with pytest.raises(ValueError, match=r"cocoDt annotations\[3\] \(id 4\) has 48 keypoint numbers"):
        _evaluate(fcoco, fcoco, gt_path, dt_path)
    # Ground truth without num_keypoints, a result without keypoints.
    missing = copy.deepcopy(gt)
    del missing["annotations"][0]["num_keypoints"]
    gt_path, dt_path = _write(tmp_path, missing, dt)
    with pytest.raises(ValueError, match=r"argument 'cocoGt'.*annotations\[0\] \(id 1\) without 'num_keypoints'"):
        _evaluate(fcoco, fcoco, gt_path, dt_path)
    no_points = copy.deepcopy(dt)
    del no_points[1]["keypoints"]
    gt_path, dt_path = _write(tmp_path, gt, no_points)
    g, _ = _quiet(fcoco.COCO, gt_path)
    with pytest.raises(ValueError, match=r"results\[1\] has no 'keypoints'"):
        _quiet(g.loadRes, dt_path)


@pytest.mark.spec("DET-OKS")
def test_cli_takes_keypoint_results_as_keypoints(generated, tmp_path, capsys):
    from ferrops.cli import main

    gt_path, dt_path = generated
    out = tmp_path / "stats.json"
    assert main(["coco-eval", gt_path, dt_path, "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    theirs, _ = _evaluate(pycoco, pycocoeval, gt_path, dt_path)
    assert report["iou_type"] == "keypoints"
    assert list(report["stats"]) == [
        "AP",
        "AP50",
        "AP75",
        "AP_medium",
        "AP_large",
        "AR",
        "AR50",
        "AR75",
        "AR_medium",
        "AR_large",
    ]
    assert list(report["stats"].values()) == theirs.stats.tolist()
    # TIDE analyses boxes or masks.
    assert main(["coco-eval", gt_path, dt_path, "--tide"]) == 2
    assert "--tide analyses boxes or masks" in capsys.readouterr().err
