"""ferrops.lvis with masks (``iou_type="segm"``) against lvis-api (SPEC DET-LVIS-SEGM).

lvis-api (the ``lvis`` package, through the NumPy-2 shim of
``ferrops._bench.lvis.lvis_api``) is the oracle; the sets are
:func:`ferrops._bench.lvis.synthetic_lvis_segm`'s: polygons of one and two parts
as ground truth, mask results as compressed RLE (str or bytes counts) or box
results with polygons beside.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ferrops
from ferrops import lvis as fl
from ferrops import mask as mask_utils
from ferrops._bench.lvis import synthetic_lvis_segm

from . import test_lvis as lvis_bbox_tests
from .test_lvis import _assert_same, _write

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def api() -> Any:
    return lvis_bbox_tests.lvis_api_or_skip()


def _set(seed: int, results_as: str = "rle", images: int = 30, categories: int = 30) -> tuple[dict, list[dict]]:
    return synthetic_lvis_segm(
        images, num_categories=categories, annotations=140, detections=700, seed=seed, results_as=results_as
    )


def _ours(gt: str | dict, dt: str | list[dict], iou_type: str = "segm", **limits: int) -> fl.LVISEval:
    return lvis_bbox_tests._ours(gt, dt, iou_type, **limits)


def _theirs(api: Any, gt_path: str, dt: str | list[dict], max_dets: int = 300, iou_type: str = "segm") -> Any:
    return lvis_bbox_tests._theirs(api, gt_path, dt, max_dets, iou_type)


@pytest.mark.spec("DET-LVIS", "DET-LVIS-SEGM")
@pytest.mark.parametrize(("seed", "results_as"), [(0, "rle"), (1, "rle"), (2, "polygons"), (3, "rle-bytes")])
def test_synthetic_sets_equal_lvis_api(api: Any, tmp_path: Path, seed: int, results_as: str) -> None:
    gt, dt = _set(seed, results_as)
    gt_path = _write(tmp_path, "gt.json", gt)
    theirs = _theirs(api, gt_path, dt)
    _assert_same(_ours(gt_path, dt), theirs)
    _assert_same(_ours(gt, dt), theirs)
    if results_as != "rle-bytes":  # JSON holds str counts only
        _assert_same(_ours(gt_path, _write(tmp_path, "dt.json", dt)), theirs)
    # Masks, not boxes, decide: the box evaluation of the same records differs.
    if results_as == "polygons":
        assert _ours(gt_path, dt, "bbox").results["AP"] != theirs.results["AP"]


@pytest.mark.spec("DET-LVIS-SEGM")
def test_segm_is_the_default_iou_type(api: Any, tmp_path: Path) -> None:
    gt, dt = _set(4)
    gt_path = _write(tmp_path, "gt.json", gt)
    lvis_gt = fl.LVIS(gt_path)
    ours = fl.LVISEval(lvis_gt, dt)
    assert ours.params.iou_type == "segm"
    ours.run()
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = api.LVISEval(api.LVIS(gt_path), copy.deepcopy(dt))
        theirs.run()
    _assert_same(ours, theirs)
    # Box results without segmentations: their boxes' polygons are the masks.
    boxes = [{k: v for k, v in d.items() if k != "segmentation"} for d in _set(4, "polygons")[1]]
    ours = fl.LVISEval(lvis_gt, boxes)
    ours.run()
    _assert_same(ours, _theirs(api, gt_path, boxes))


@pytest.mark.spec("DET-LVIS-SEGM")
def test_negative_and_not_exhaustive_categories_images_without_annotations(api: Any, tmp_path: Path) -> None:
    gt, dt = _set(5, "polygons")
    # Half the images lose their annotations; some annotations are ignored or
    # have no area; every image lists negatives and most hold a not-exhaustive one.
    emptied = {m["id"] for m in gt["images"][::2]}
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] not in emptied]
    for j, ann in enumerate(gt["annotations"]):
        if j % 7 == 0:
            ann["ignore"] = True
        if j % 11 == 0:
            ann["area"] = 0
    for m in gt["images"]:
        held = sorted({a["category_id"] for a in gt["annotations"] if a["image_id"] == m["id"]})
        m["not_exhaustive_category_ids"] = held[::2]
    gt_path = _write(tmp_path, "gt.json", gt)
    ours = _ours(gt_path, dt)
    _assert_same(ours, _theirs(api, gt_path, dt))
    assert {0, 1, 2} == {g for g, members in enumerate(ours.freq_groups) if members}


@pytest.mark.spec("DET-LVIS-SEGM", "DET-LVIS-RESULTS")
@pytest.mark.parametrize("max_dets", [1, 7, -1])
def test_max_dets_other_than_300(api: Any, tmp_path: Path, max_dets: int) -> None:
    gt, dt = _set(6)
    gt_path = _write(tmp_path, "gt.json", gt)
    ours = _ours(gt_path, dt, max_dets=max_dets)
    _assert_same(ours, _theirs(api, gt_path, dt, max_dets=max_dets))


@pytest.mark.spec("DET-LVIS-SEGM", "DET-LVIS-RESULTS")
def test_fixed_ap_with_masks(api: Any, tmp_path: Path) -> None:
    gt, dt = _set(7)
    gt_path = _write(tmp_path, "gt.json", gt)
    k = 9
    by_cat: dict[int, list[dict]] = {}
    for d in dt:
        by_cat.setdefault(d["category_id"], []).append(d)
    top = [d for anns in by_cat.values() for d in sorted(anns, key=lambda d: d["score"], reverse=True)[:k]]
    _assert_same(_ours(gt_path, dt, max_dets=-1, max_dets_per_cat=k), _theirs(api, gt_path, top, max_dets=-1))


@pytest.mark.spec("DET-LVIS-SEGM")
def test_ground_truth_as_rle(api: Any, tmp_path: Path) -> None:
    gt, dt = _set(8)
    sizes = {m["id"]: (m["height"], m["width"]) for m in gt["images"]}
    for j, ann in enumerate(gt["annotations"]):
        h, w = sizes[ann["image_id"]]
        rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], h, w))
        if j % 3 == 0:  # compressed
            ann["segmentation"] = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
        elif j % 3 == 1:  # uncompressed: the runs
            flat = mask_utils.decode(rle).reshape(-1, order="F")
            changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
            ann["segmentation"] = {"size": [h, w], "counts": np.diff(np.concatenate([[0], changes])).tolist()}
    gt_path = _write(tmp_path, "gt.json", gt)
    _assert_same(_ours(gt_path, dt), _theirs(api, gt_path, dt))


@pytest.mark.spec("DET-LVIS-SEGM")
def test_results_dataset_as_lvis_api(api: Any, tmp_path: Path) -> None:
    for results_as in ("rle", "polygons"):
        gt, dt = _set(9, results_as)
        gt_path = _write(tmp_path, "gt.json", gt)
        for given in (dt, _write(tmp_path, "dt.json", dt)):
            ours = fl.LVISResults(fl.LVIS(gt_path), given, max_dets=5).dataset["annotations"]
            with contextlib.redirect_stdout(io.StringIO()):
                theirs = api.LVISResults(api.LVIS(gt_path), copy.deepcopy(given), max_dets=5).dataset["annotations"]
            assert len(ours) == len(theirs)
            for a, b in zip(ours, theirs):
                assert (a["id"], a["image_id"], a["category_id"], a["score"]) == (
                    b["id"],
                    b["image_id"],
                    b["category_id"],
                    b["score"],
                )
                assert a["segmentation"] == b["segmentation"]
                assert a["area"] == b["area"]
                assert list(a["bbox"]) == list(b["bbox"])


@pytest.mark.spec("DET-LVIS-SEGM")
def test_print_results_and_thread_count(api: Any, tmp_path: Path) -> None:
    gt, dt = _set(10)
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
    printed = []
    for ev in (runs[0], _theirs(api, gt_path, dt)):
        with contextlib.redirect_stdout(io.StringIO()) as out:
            ev.print_results()
        printed.append(out.getvalue())
    assert printed[0] == printed[1] and printed[0].count("\n") == 13


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.spec("DET-LVIS-SEGM")
def test_malformed_segmentations_name_the_record(tmp_path: Path) -> None:
    gt, dt = _set(11)
    bad_gt = copy.deepcopy(gt)
    bad_gt["annotations"][3]["segmentation"] = [[1.0, 2.0, 3.0]]
    ann_id = bad_gt["annotations"][3]["id"]
    path = _write(tmp_path, "badgt.json", bad_gt)
    pattern = rf"LVISEval.evaluate\(\): argument 'lvis_gt'.*badgt\.json: annotations\[3\] \(id {ann_id}\) has a bad"
    with pytest.raises(ValueError, match=pattern):
        _ours(path, dt)
    _ours(path, dt, "bbox")  # boxes need no masks
    # Mask results: refused by LVISResults, naming the input record.
    bad_dt = copy.deepcopy(dt)
    bad_dt[5]["segmentation"] = {"size": [480, 640], "counts": "not an rle"}
    gt_path = _write(tmp_path, "gt.json", gt)
    with pytest.raises(ValueError, match=r"LVISResults.*dt\.json: results\[5\] has a bad 'segmentation'"):
        fl.LVISResults(fl.LVIS(gt_path), _write(tmp_path, "dt.json", bad_dt))
    wrong_size = copy.deepcopy(dt)
    wrong_size[2]["segmentation"]["size"] = [10, 10]
    with pytest.raises(ValueError, match=r"results\[2\] has a bad 'segmentation'.*size"):
        fl.LVISResults(fl.LVIS(gt_path), wrong_size)
    # Box results' polygons are converted by LVISEval, which names the input record.
    _, boxes = _set(11, "polygons")
    boxes[4]["segmentation"] = [[0.0, 0.0, 5.0]]
    with pytest.raises(ValueError, match=r"argument 'lvis_dt'.*<list>: results\[4\] \(id \d+\) has a bad"):
        _ours(gt_path, boxes)
    with pytest.raises(ValueError, match="iou_type"):
        fl.LVISEval(fl.LVIS(gt_path), boxes, "keypoints")  # type: ignore[arg-type]
    ev = fl.LVISEval(fl.LVIS(gt_path), dt)
    ev.params.iou_type = "keypoints"  # type: ignore[assignment]
    with pytest.raises(ValueError, match=r"params.iou_type"):
        ev.evaluate()


@pytest.mark.spec("DET-LVIS-SEGM")
def test_cli_iou_type_segm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ferrops.cli import main

    gt, dt = _set(12)
    gt_path, dt_path = _write(tmp_path, "gt.json", gt), _write(tmp_path, "dt.json", dt)
    out_path = tmp_path / "out.json"
    assert main(["lvis-eval", gt_path, dt_path, "--iou-type", "segm", "--json", str(out_path)]) == 0
    printed = capsys.readouterr().out
    ev = _ours(gt_path, dt_path)
    with contextlib.redirect_stdout(io.StringIO()) as expected:
        ev.print_results()
    assert printed == expected.getvalue()
    report = json.loads(out_path.read_text())
    assert report["iou_type"] == "segm" and report["metrics"]["AP"] == float(ev.results["AP"])
    # Mask results without --iou-type: segm, what they hold.
    assert main(["lvis-eval", gt_path, dt_path]) == 0
    assert capsys.readouterr().out == printed
