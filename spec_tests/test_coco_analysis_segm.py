"""The analyses on masks: TIDE (``analysis.tide(..., mode="mask")``) against
tidecv's ``TIDE.MASK`` (SPEC DET-TIDE); the COCOeval analyses on a segm
evaluation and the confusion matrix of masks (SPEC DET-ANALYSIS)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ferrops
from ferrops import coco as fcoco
from ferrops import mask as mask_utils
from ferrops._bench.detection import synthetic_coco
from ferrops._bench.lvis import _ellipse
from ferrops.coco import analysis


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def _files(tmp_path: Path, seed: int, with_boxes: bool, num_images: int = 60) -> tuple[str, str]:
    """Ground truth with ellipse polygons (crowd regions too; some in two parts)
    and detections with the compressed RLE of an ellipse in their box, their
    boxes kept or not."""
    gt, dt = synthetic_coco(num_images, 5, seed=seed)
    rng = np.random.default_rng(seed)
    for a in gt["annotations"]:
        box = np.asarray(a["bbox"], dtype=np.float64)
        if rng.random() < 0.2:
            x, y, w, h = box
            halves = [np.array([x, y, w * 0.45, h]), np.array([x + w * 0.55, y, w * 0.45, h])]
            a["segmentation"] = [_ellipse(half, 8) for half in halves]
        else:
            a["segmentation"] = [_ellipse(box, int(rng.integers(6, 14)))]
    sizes = {m["id"]: (m["height"], m["width"]) for m in gt["images"]}
    for d in dt:
        h, w = sizes[d["image_id"]]
        rle = mask_utils.frPyObjects([_ellipse(np.asarray(d["bbox"]), 10)], h, w)[0]
        d["segmentation"] = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
        if not with_boxes:
            del d["bbox"]
    gt_path, dt_path = tmp_path / f"gt{seed}.json", tmp_path / f"dt{seed}.json"
    gt_path.write_text(json.dumps(gt))
    dt_path.write_text(json.dumps(dt))
    return str(gt_path), str(dt_path)


def _tidecv(gt_path: str, dt_path: str, pos: float, bg: float) -> Any:
    tidecv = pytest.importorskip("tidecv")

    def go() -> Any:
        tide = tidecv.TIDE(pos_threshold=pos, background_threshold=bg)
        gt, dt = tidecv.datasets.COCO(gt_path), tidecv.datasets.COCOResult(dt_path)
        run = tide.evaluate(gt, dt, mode=tidecv.TIDE.MASK, name="run")
        return run, tide.get_main_errors()["run"], tide.get_special_errors()["run"]

    return _quiet(go)


@pytest.mark.spec("DET-TIDE")
@pytest.mark.parametrize(
    ("seed", "with_boxes", "pos", "bg"), [(0, True, 0.5, 0.1), (1, False, 0.5, 0.1), (2, True, 0.75, 0.2)]
)
def test_tide_on_masks_equals_tidecv(tmp_path: Path, seed: int, with_boxes: bool, pos: float, bg: float) -> None:
    gt_path, dt_path = _files(tmp_path, seed, with_boxes)
    run, main, special = _tidecv(gt_path, dt_path, pos, bg)
    g = _quiet(fcoco.COCO, gt_path)
    d = _quiet(g.loadRes, dt_path)
    ours = analysis.tide(g, d, pos_threshold=pos, background_threshold=bg, mode="mask")
    assert ours.ap == run.ap
    assert ours.main_errors == main
    assert ours.special_errors == special
    assert ours.counts == {e.short_name: len(run.error_dict[e]) for e in run.error_dict}
    assert ours.table().startswith("mask AP")
    # Masks, not boxes, decide.
    assert analysis.tide(g, d, pos_threshold=pos, background_threshold=bg).ap != ours.ap


@pytest.mark.spec("DET-TIDE")
def test_tide_on_masks_thread_count_and_bad_input(tmp_path: Path) -> None:
    gt_path, dt_path = _files(tmp_path, 3, True, num_images=200)
    g = _quiet(fcoco.COCO, gt_path)
    d = _quiet(g.loadRes, dt_path)
    before = ferrops.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            ferrops.set_num_threads(n)
            results.append(analysis.tide(g, d, mode="mask"))
    finally:
        ferrops.set_num_threads(before)
    assert results[0] == results[1]
    gt = json.loads(Path(gt_path).read_text())
    gt["annotations"][4]["segmentation"] = [[1.0, 2.0, 3.0]]
    bad = Path(tmp_path / "bad.json")
    bad.write_text(json.dumps(gt))
    g = _quiet(fcoco.COCO, str(bad))
    d = _quiet(g.loadRes, dt_path)
    ann_id = gt["annotations"][4]["id"]
    with pytest.raises(ValueError, match=rf"tide\(\): argument 'cocoGt'.*annotations\[4\] \(id {ann_id}\) has a bad"):
        analysis.tide(g, d, mode="mask")
    analysis.tide(g, d)  # boxes need no masks
    with pytest.raises(ValueError, match=r"tide\(\): argument 'mode'"):
        analysis.tide(g, d, mode="segm")  # type: ignore[arg-type]


@pytest.mark.spec("DET-ANALYSIS")
def test_analyses_of_a_segm_evaluation(tmp_path: Path) -> None:
    gt_path, dt_path = _files(tmp_path, 4, False)
    g = _quiet(fcoco.COCO, gt_path)
    ev = fcoco.COCOeval(g, _quiet(g.loadRes, dt_path), "segm")
    _quiet(ev.evaluate)
    _quiet(ev.accumulate)
    _quiet(ev.summarize)
    rows = analysis.per_category(ev)
    precision = ev.eval["precision"][:, :, :, 0, -1]  # [T, R, K] at area "all", the last maxDets
    for k, row in enumerate(rows):
        values = precision[:, :, k]
        expected = float(np.mean(values[values > -1])) if (values > -1).any() else -1.0
        assert row["AP"] == pytest.approx(expected)
    f1 = analysis.precision_recall_f1(ev, 0.5)
    assert len(f1) == len(rows) and any(r["tp"] > 0 for r in f1)


@pytest.mark.spec("DET-TIDE")
def test_cli_tide_on_masks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ferrops.cli import main

    gt_path, dt_path = _files(tmp_path, 5, False)
    assert main(["coco-eval", gt_path, dt_path, "--tide"]) == 0
    printed = capsys.readouterr().out
    g = _quiet(fcoco.COCO, gt_path)
    expected = analysis.tide(g, _quiet(g.loadRes, dt_path), mode="mask").table()
    assert expected in printed


@pytest.mark.spec("DET-ANALYSIS")
def test_confusion_matrix_of_masks() -> None:
    # Whole-pixel boxes: each mask is its box, so masks and boxes count alike;
    # then one detection's mask moves off its ground truth.
    gt = {
        "images": [{"id": 1, "height": 200, "width": 200}, {"id": 2, "height": 200, "width": 200}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 2, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 4, "image_id": 2, "category_id": 1, "bbox": [100, 100, 50, 50], "area": 2500, "iscrowd": 1},
        ],
    }
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        a["segmentation"] = [[x, y, x, y + h, x + w, y + h, x + w, y]]
    dt = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 9], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.8},
        {"image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 8], "score": 0.7},
        {"image_id": 2, "category_id": 1, "bbox": [110, 110, 5, 5], "score": 0.9},
        {"image_id": 2, "category_id": 2, "bbox": [150, 150, 5, 5], "score": 0.6},
        {"image_id": 2, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.1},
    ]
    g = fcoco.COCO()
    g.dataset = gt
    _quiet(g.createIndex)
    d = _quiet(g.loadRes, dt)
    boxes, ids = analysis.confusion_matrix(g, d)
    masks, mask_ids = analysis.confusion_matrix(g, d, iou_type="segm")
    assert ids == mask_ids == [1, 2]
    assert np.array_equal(boxes, np.array([[1, 0, 0], [1, 0, 1], [0, 2, 0]]))
    assert np.array_equal(masks, boxes)
    moved = [dict(r) for r in dt]
    moved[0]["segmentation"] = [[100, 0, 100, 10, 110, 10, 110, 0]]  # its box still on cat 1
    d = _quiet(g.loadRes, moved)
    assert np.array_equal(analysis.confusion_matrix(g, d)[0], boxes)
    # The moved cat detection is background, and the cat is now paired with the
    # dog detection its mask overlaps (IoU 0.8), which was background before.
    assert np.array_equal(analysis.confusion_matrix(g, d, iou_type="segm")[0], [[0, 1, 0], [1, 0, 1], [1, 1, 0]])
    with pytest.raises(ValueError, match=r"confusion_matrix\(\): argument 'iou_type'"):
        analysis.confusion_matrix(g, d, iou_type="keypoints")  # type: ignore[arg-type]
