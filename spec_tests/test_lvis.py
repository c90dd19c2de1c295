"""ferrops.lvis against lvis-api (SPEC DET-LVIS*).

lvis-api (the ``lvis`` package) is the oracle. It calls ``np.float``, which NumPy
2 removed, in ``accumulate``: the tests set that alias back to Python's
``float`` (NumPy 1's value) before using it, through ``ferrops._bench.lvis.lvis_api``,
and skip when lvis-api is not installed. ferrops itself needs no shim.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ferrops
from ferrops import lvis as fl
from ferrops._bench.lvis import synthetic_lvis

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def lvis_api_or_skip() -> Any:
    from ferrops._bench.lvis import lvis_api

    module = lvis_api()
    if module is None:
        pytest.skip("lvis-api not installed")
    return module


@pytest.fixture(scope="module")
def api() -> Any:
    return lvis_api_or_skip()


def _write(tmp_path: Path, name: str, data: object) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def _ours(gt: str | dict, dt: str | list[dict], iou_type: str = "bbox", **limits: int) -> fl.LVISEval:
    lvis_gt = fl.LVIS(gt)
    ev = fl.LVISEval(lvis_gt, fl.LVISResults(lvis_gt, dt, **limits), iou_type)  # type: ignore[arg-type]
    with contextlib.redirect_stdout(io.StringIO()):
        ev.run()
    return ev


def _theirs(api: Any, gt_path: str, dt: str | list[dict], max_dets: int = 300, iou_type: str = "bbox") -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = api.LVIS(gt_path)
        ev = api.LVISEval(gt, api.LVISResults(gt, copy.deepcopy(dt), max_dets=max_dets), iou_type)
        ev.run()
    return ev


def _assert_same(ours: fl.LVISEval, theirs: Any) -> None:
    assert list(ours.results) == list(theirs.results)
    for key, value in theirs.results.items():
        assert ours.results[key] == value, key
    for name in ("precision", "recall"):
        np.testing.assert_array_equal(ours.eval[name], theirs.eval[name], err_msg=name)
        assert ours.eval[name].dtype == np.float64
    assert ours.eval["counts"] == theirs.eval["counts"]


def _small_set(seed: int, images: int = 40, categories: int = 40) -> tuple[dict, list[dict]]:
    return synthetic_lvis(images, num_categories=categories, annotations=160, detections=900, seed=seed)


@pytest.mark.spec("DET-LVIS")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_sets_equal_lvis_api(api: Any, tmp_path: Path, seed: int) -> None:
    gt, dt = _small_set(seed)
    gt_path, dt_path = _write(tmp_path, "gt.json", gt), _write(tmp_path, "dt.json", dt)
    ours, theirs = _ours(gt_path, dt_path), _theirs(api, gt_path, dt_path)
    _assert_same(ours, theirs)
    # The same numbers from a dict and a list of results.
    _assert_same(_ours_from_objects(gt, dt), theirs)


def _ours_from_objects(gt: dict, dt: list[dict]) -> fl.LVISEval:
    lvis_gt = fl.LVIS(gt)
    ev = fl.LVISEval(lvis_gt, dt, "bbox")
    ev.run()
    return ev


def _hand_set() -> tuple[dict, list[dict]]:
    """Three images, categories 1 (rare), 2 (common), 3 (frequent), 4 (frequent, no
    ground truth): image 1 holds category 1 (not exhaustive) and lists 2 as
    negative; image 2 holds 3; image 3 holds nothing and lists 1 and 3 as negative."""
    images = [
        {"id": 1, "height": 100, "width": 100, "neg_category_ids": [2], "not_exhaustive_category_ids": [1]},
        {"id": 2, "height": 100, "width": 100, "neg_category_ids": [], "not_exhaustive_category_ids": []},
        {"id": 3, "height": 100, "width": 100, "neg_category_ids": [1, 3], "not_exhaustive_category_ids": []},
    ]
    categories = [{"id": c, "frequency": f} for c, f in [(1, "r"), (2, "c"), (3, "f"), (4, "f")]]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400},
        {"id": 2, "image_id": 2, "category_id": 3, "bbox": [50, 50, 40, 40], "area": 1600},
        {"id": 3, "image_id": 2, "category_id": 3, "bbox": [0, 0, 5, 5], "area": 25},
    ]
    gt = {"images": images, "categories": categories, "annotations": annotations}

    def det(image: int, cat: int, box: list[float], score: float) -> dict:
        return {"image_id": image, "category_id": cat, "bbox": box, "score": score}

    dt = [
        det(1, 1, [10, 10, 20, 20], 0.9),  # true positive
        det(1, 1, [60, 60, 20, 20], 0.95),  # unmatched, category 1 not exhaustive on image 1: ignored
        det(1, 2, [10, 10, 20, 20], 0.8),  # category 2 negative on image 1: false positive
        det(2, 3, [50, 50, 40, 41], 0.7),  # true positive
        det(3, 1, [0, 0, 30, 30], 0.85),  # negative on image 3: false positive for category 1
        det(3, 3, [0, 0, 30, 30], 0.2),  # negative on image 3: false positive for category 3
    ]
    unknown = [
        det(1, 3, [10, 10, 20, 20], 0.99),  # category 3 neither present nor negative on image 1
        det(2, 1, [50, 50, 40, 40], 0.99),
        det(3, 2, [0, 0, 30, 30], 0.99),
        det(2, 4, [0, 0, 30, 30], 0.99),
    ]
    return gt, dt + unknown


@pytest.mark.spec("DET-LVIS")
def test_negative_and_not_exhaustive_categories(api: Any, tmp_path: Path) -> None:
    gt, dt = _hand_set()
    gt_path = _write(tmp_path, "gt.json", gt)
    ours = _ours(gt_path, dt)
    _assert_same(ours, _theirs(api, gt_path, dt))
    # Detections of categories neither present nor negative on their image change nothing.
    _assert_same(_ours(gt_path, dt[:6]), ours)
    precision = ours.eval["precision"]  # [T, R, K, A]
    # Category 1: the TP at 0.9 comes after the ignored 0.95 and before the negative-image FP at 0.85.
    assert precision[0, 0, 0, 0] == pytest.approx(1.0)
    # Category 2 has no ground truth, category 4 neither: -1 throughout.
    assert (precision[:, :, 1, :] == -1).all() and (precision[:, :, 3, :] == -1).all()
    # Without the negative-image FP, category 1 is perfect at every recall point.
    alone = _ours(gt_path, [d for d in dt[:6] if not (d["image_id"] == 3 and d["category_id"] == 1)])
    np.testing.assert_allclose(alone.eval["precision"][0, :, 0, 0], 1.0)  # 1 / (1 + eps)


@pytest.mark.spec("DET-LVIS")
def test_frequency_groups(api: Any, tmp_path: Path) -> None:
    gt, dt = _hand_set()
    gt_path = _write(tmp_path, "gt.json", gt)
    ours = _ours(gt_path, dt)
    assert ours.freq_groups == [[0], [1], [2, 3]]
    # APr is category 1's AP, APf category 3's (category 4 has no ground truth), APc none.
    assert ours.results["APc"] == -1
    precision = ours.eval["precision"]
    assert ours.results["APr"] == np.mean(precision[:, :, 0, 0])
    assert ours.results["APf"] == np.mean(precision[:, :, 2, 0])
    _assert_same(ours, _theirs(api, gt_path, dt))


@pytest.mark.spec("DET-LVIS")
def test_images_without_annotations_ignore_and_zero_area(api: Any, tmp_path: Path) -> None:
    gt, dt = _small_set(7)
    # Half the images lose their annotations (their detections become negatives or
    # are left out); some annotations are ignored or have no area.
    emptied = {m["id"] for m in gt["images"][::2]}
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] not in emptied]
    for j, ann in enumerate(gt["annotations"]):
        if j % 7 == 0:
            ann["ignore"] = True
        if j % 11 == 0:
            ann["area"] = 0
    gt_path = _write(tmp_path, "gt.json", gt)
    _assert_same(_ours(gt_path, dt), _theirs(api, gt_path, dt))


@pytest.mark.spec("DET-LVIS", "DET-LVIS-RESULTS")
@pytest.mark.parametrize("max_dets", [1, 5, 40, -1])
def test_max_dets_other_than_300(api: Any, tmp_path: Path, max_dets: int) -> None:
    gt, dt = _small_set(3)
    gt_path, dt_path = _write(tmp_path, "gt.json", gt), _write(tmp_path, "dt.json", dt)
    ours = _ours(gt_path, dt_path, max_dets=max_dets)
    theirs = _theirs(api, gt_path, dt_path, max_dets=max_dets)
    _assert_same(ours, theirs)
    # The results as lvis-api orders and numbers them.
    with contextlib.redirect_stdout(io.StringIO()):
        expected = api.LVISResults(api.LVIS(gt_path), dt_path, max_dets=max_dets).dataset["annotations"]
    got = ours.lvis_dt.dataset["annotations"]
    assert [(a["id"], a["image_id"], a["category_id"], a["score"]) for a in got] == [
        (a["id"], a["image_id"], a["category_id"], a["score"]) for a in expected
    ]


@pytest.mark.spec("DET-LVIS-RESULTS")
def test_fixed_ap_keeps_the_top_k_per_category(api: Any, tmp_path: Path) -> None:
    gt, dt = _small_set(4)
    gt_path = _write(tmp_path, "gt.json", gt)
    k = 12
    # The paper's procedure: each category's k best (categories by first
    # appearance, each sorted by score), then LVISResults without an image cap.
    by_cat: defaultdict[int, list[dict]] = defaultdict(list)
    for d in dt:
        by_cat[d["category_id"]].append(d)
    top = [d for anns in by_cat.values() for d in sorted(anns, key=lambda d: d["score"], reverse=True)[:k]]
    theirs = _theirs(api, gt_path, top, max_dets=-1)
    ours = _ours(gt_path, dt, max_dets=-1, max_dets_per_cat=k)
    _assert_same(ours, theirs)
    counts = defaultdict(int)
    for ann in ours.lvis_dt.dataset["annotations"]:
        counts[ann["category_id"]] += 1
    assert max(counts.values()) == k


@pytest.mark.spec("DET-LVIS")
def test_print_results_and_params(api: Any, tmp_path: Path) -> None:
    gt, dt = _small_set(5)
    gt_path = _write(tmp_path, "gt.json", gt)
    ours, theirs = _ours(gt_path, dt), _theirs(api, gt_path, dt)
    printed = []
    for ev in (ours, theirs):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            ev.print_results()
        printed.append(out.getvalue())
    assert printed[0] == printed[1] and printed[0].count("\n") == 13
    assert ours.get_results() is ours.results
    # Custom thresholds and a category subset, set on params as with lvis-api.
    evs = []
    for module in (fl, api):
        with contextlib.redirect_stdout(io.StringIO()):
            g = module.LVIS(gt_path)
            ev = module.LVISEval(g, module.LVISResults(g, copy.deepcopy(dt)), "bbox")
            ev.params.iou_thrs = np.array([0.3, 0.5, 0.75])
            ev.params.cat_ids = sorted(g.get_cat_ids())[::3]
            ev.params.img_ids = sorted(g.get_img_ids())[5:]
            ev.run()
        evs.append(ev)
    _assert_same(evs[0], evs[1])


@pytest.mark.spec("DET-LVIS")
def test_same_bits_for_any_thread_count(tmp_path: Path) -> None:
    gt, dt = _small_set(6)
    gt_path = _write(tmp_path, "gt.json", gt)
    before = ferrops.get_num_threads()
    try:
        runs = []
        for threads in (1, 2):
            ferrops.set_num_threads(threads)
            runs.append(_ours(gt_path, dt))
    finally:
        ferrops.set_num_threads(before)
    _assert_same(runs[0], runs[1])


@pytest.mark.spec("DET-LVIS")
def test_dataset_views_and_queries(api: Any, tmp_path: Path) -> None:
    gt, _ = _small_set(8)
    gt_path = _write(tmp_path, "gt.json", gt)
    ours = fl.LVIS(gt_path)
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = api.LVIS(gt_path)
    assert ours.get_img_ids() == theirs.get_img_ids()
    assert ours.get_cat_ids() == theirs.get_cat_ids()
    assert ours.dataset == theirs.dataset
    img_ids, cat_ids = ours.get_img_ids()[:7], ours.get_cat_ids()[:20]
    assert ours.get_ann_ids(img_ids=img_ids) == theirs.get_ann_ids(img_ids=img_ids)
    assert ours.get_ann_ids(img_ids=img_ids, cat_ids=cat_ids) == theirs.get_ann_ids(img_ids=img_ids, cat_ids=cat_ids)
    assert ours.get_ann_ids(cat_ids=cat_ids, area_rng=[0, 500]) == theirs.get_ann_ids(
        cat_ids=cat_ids, area_rng=[0, 500]
    )
    assert ours.load_cats(cat_ids[:3]) == theirs.load_cats(cat_ids[:3])
    assert ours.load_imgs(None) == theirs.load_imgs(None)


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.spec("DET-LVIS-CHECK")
def test_missing_frequency_or_federated_fields_name_the_file_and_record(tmp_path: Path) -> None:
    gt, dt = _hand_set()
    no_frequency = copy.deepcopy(gt)
    del no_frequency["categories"][2]["frequency"]
    path = _write(tmp_path, "nofreq.json", no_frequency)
    lvis_gt = fl.LVIS(path)  # loads, as with lvis-api; evaluation needs the field
    with pytest.raises(ValueError, match=r"LVISEval.*nofreq\.json: categories\[2\] \(id 3\) has no 'frequency'"):
        fl.LVISEval(lvis_gt, dt, "bbox").run()
    bad_frequency = copy.deepcopy(gt)
    bad_frequency["categories"][0]["frequency"] = "x"
    with pytest.raises(ValueError, match=r"categories\[0\] \(id 1\) has 'frequency' \"x\""):
        fl.LVISEval(fl.LVIS(_write(tmp_path, "badfreq.json", bad_frequency)), dt, "bbox").run()
    for key in ("neg_category_ids", "not_exhaustive_category_ids"):
        missing = copy.deepcopy(gt)
        del missing["images"][1][key]
        path = _write(tmp_path, f"no_{key}.json", missing)
        with pytest.raises(ValueError, match=rf"no_{key}\.json: images\[1\] \(id 2\) has no '{key}'"):
            fl.LVISEval(fl.LVIS(path), dt, "bbox").run()
    not_ids = copy.deepcopy(gt)
    not_ids["images"][2]["neg_category_ids"] = [1, "three"]
    with pytest.raises(ValueError, match=r"images\[2\] \(id 3\) has 'neg_category_ids'\[1\] = \"three\""):
        fl.LVISEval(fl.LVIS(_write(tmp_path, "strs.json", not_ids)), dt, "bbox").run()


@pytest.mark.spec("DET-LVIS-CHECK")
def test_results_outside_the_set_name_the_file_and_record(tmp_path: Path) -> None:
    gt, dt = _hand_set()
    lvis_gt = fl.LVIS(_write(tmp_path, "gt.json", gt))
    bad = dt + [{"image_id": 1, "category_id": 99, "bbox": [0, 0, 1, 1], "score": 0.5}]
    path = _write(tmp_path, "dt.json", bad)
    with pytest.raises(ValueError, match=r"LVISResults.*dt\.json: results\[10\] has category_id 99"):
        fl.LVISResults(lvis_gt, path)
    bad = dt + [{"image_id": 42, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]
    with pytest.raises(ValueError, match=r"LVISResults.*results\[10\] has image_id 42"):
        fl.LVISResults(lvis_gt, bad)
    with pytest.raises(ValueError, match=r"string id"):
        fl.LVIS({"images": [{"id": "a"}], "categories": [], "annotations": []})
    with pytest.raises(TypeError, match="max_dets"):
        fl.LVISResults(lvis_gt, dt, max_dets=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="iou_type"):
        fl.LVISEval(lvis_gt, dt, "keypoints")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="area_rng"):
        ev = fl.LVISEval(lvis_gt, dt, "bbox")
        ev.params.area_rng = [[0, float("inf")]]
        ev.params.area_rng_lbl = ["all"]
        ev.evaluate()


@pytest.mark.spec("DET-LVIS")
def test_cli_prints_lvis_api_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ferrops.cli import main

    gt, dt = _small_set(9)
    gt_path, dt_path = _write(tmp_path, "gt.json", gt), _write(tmp_path, "dt.json", dt)
    assert main(["lvis-eval", gt_path, dt_path, "--json", str(tmp_path / "out.json")]) == 0
    printed = capsys.readouterr().out
    ev = _ours(gt_path, dt_path)
    with contextlib.redirect_stdout(io.StringIO()) as expected:
        ev.print_results()
    assert printed == expected.getvalue()
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["metrics"]["APr"] == float(ev.results["APr"])
    assert main(["lvis-eval", gt_path, dt_path, "--fixed-ap"]) == 0
    assert "maxDets= -1" in capsys.readouterr().out
    assert main(["lvis-eval", gt_path, str(tmp_path / "missing.json")]) == 2


@pytest.mark.spec("DET-LVIS")
def test_empty_sets_give_typed_empty_results() -> None:
    image = {"id": 1, "neg_category_ids": [], "not_exhaustive_category_ids": []}
    # No categories: [T, R, 0, A] arrays, every summary -1.
    ev = fl.LVISEval(fl.LVIS({"images": [image], "categories": [], "annotations": []}), [], "bbox")
    ev.run()
    assert ev.eval["precision"].shape == (10, 101, 0, 4) and ev.eval["recall"].shape == (10, 0, 4)
    assert set(ev.results.values()) == {-1}
    # No results (lvis-api fails on an empty list) and no images evaluated.
    gt = {"images": [image], "categories": [{"id": 1, "frequency": "r"}], "annotations": []}
    for img_ids in (None, []):
        ev = fl.LVISEval(fl.LVIS(gt), [], "bbox")
        if img_ids is not None:
            ev.params.img_ids = img_ids
        ev.run()
        assert (ev.eval["precision"] == -1).all() and set(ev.results.values()) == {-1}


@pytest.mark.spec("DET-LVIS")
def test_iou_thresholds_must_be_a_list():
    # Found by the fuzz suite: a scalar params.iou_thrs passed evaluate() and broke
    # accumulate() with "len() of unsized object".
    gt, dt = _hand_set()
    ev = fl.LVISEval(fl.LVIS(gt), dt, "bbox")
    ev.params.iou_thrs = np.float64(0.5)
    with pytest.raises(ValueError, match=r"LVISEval.evaluate\(\): argument 'params.iou_thrs'.*1-d"):
        ev.evaluate()
    # A list summarizes as the array does (it compared unequal to every threshold).
    results = []
    for thresholds in ([0.5, 0.75], np.array([0.5, 0.75])):
        ev = fl.LVISEval(fl.LVIS(gt), dt, "bbox")
        ev.params.iou_thrs = thresholds
        with contextlib.redirect_stdout(io.StringIO()):
            ev.run()
        results.append(dict(ev.get_results()))
    assert results[0] == results[1] and results[0]["AP50"] != -1
    ev.params.iou_thrs = np.zeros(0)  # summarize() reads the first and last
    with pytest.raises(ValueError, match=r"argument 'params.iou_thrs'.*non-empty"):
        ev.evaluate()
