"""Pickling ``ferrops.coco.COCO`` and ``COCOeval`` (SPEC DET-COCO-PICKLE), bbox and segm: what a
spawn DataLoader worker or ``torch.distributed.all_gather_object`` does to them.
A copy must answer every query and evaluate exactly as the original, before and
after ``evaluate()`` / ``accumulate()`` / ``summarize()``."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import pickle

import numpy as np
import pytest

from ferrops import coco as fcoco
from ferrops._bench.detection import synthetic_coco


def _quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args, **kwargs)


def _round_trip(obj):
    return pickle.loads(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    gt, dt = synthetic_coco(60, 5, seed=11)
    root = tmp_path_factory.mktemp("coco_pickle")
    (root / "gt.json").write_text(json.dumps(gt))
    return str(root / "gt.json"), gt, dt


def _ground_truths(sets):
    path, gt, _ = sets
    from_dict = fcoco.COCO()
    from_dict.dataset = copy.deepcopy(gt)
    _quiet(from_dict.createIndex)
    return {"file": _quiet(fcoco.COCO, path), "dict": from_dict}


def _results(gt_coco, dt, kind):
    if kind == "list":
        return _quiet(gt_coco.loadRes, copy.deepcopy(dt))
    rows = np.array(
        [[d["image_id"], *d["bbox"], d["score"], d["category_id"]] for d in dt],
        dtype=np.float32 if kind == "float32_array" else np.float64,
    )
    return _quiet(gt_coco.loadRes, rows)


def _evaluated(gt_coco, dt_coco, stage):
    ev = fcoco.COCOeval(gt_coco, dt_coco, "bbox")
    if stage == "built":
        return ev
    _quiet(ev.evaluate)
    if stage == "accumulated":
        _quiet(ev.accumulate)
        _quiet(ev.summarize)
    return ev


def _assert_same_eval(a, b):
    assert len(a.evalImgs) == len(b.evalImgs)
    for x, y in zip(a.evalImgs, b.evalImgs):
        assert (x is None) == (y is None)
        if x is not None:
            assert x.keys() == y.keys()
            for key in x:
                assert np.array_equal(np.asarray(x[key]), np.asarray(y[key])), key
    assert list(a.ious) == list(b.ious)
    for key in a.ious:
        assert np.array_equal(np.asarray(a.ious[key]), np.asarray(b.ious[key])), key


@pytest.mark.spec("DET-COCO-PICKLE")
@pytest.mark.parametrize("source", ["file", "dict"])
def test_ground_truth_round_trips(sets, source):
    gt_coco = _ground_truths(sets)[source]
    copy_ = _round_trip(gt_coco)
    assert copy_.getImgIds() == gt_coco.getImgIds()
    assert copy_.getCatIds() == gt_coco.getCatIds()
    assert copy_.getAnnIds() == gt_coco.getAnnIds()
    assert copy_.loadAnns(copy_.getAnnIds()) == gt_coco.loadAnns(gt_coco.getAnnIds())
    assert copy_.dataset == gt_coco.dataset


@pytest.mark.spec("DET-COCO-PICKLE")
def test_ground_truth_from_a_file_unpickles_without_the_file(sets, tmp_path):
    _, gt, dt = sets
    path = tmp_path / "moved.json"
    path.write_text(json.dumps(gt))
    original = _quiet(fcoco.COCO, str(path))
    expected_dataset = original.dataset
    data = pickle.dumps(original)
    path.unlink()
    copy_ = pickle.loads(data)
    assert copy_.dataset == expected_dataset == json.loads(json.dumps(gt))
    ours = _evaluated(copy_, _results(copy_, dt, "list"), "accumulated")
    theirs = _evaluated(original, _results(original, dt, "list"), "accumulated")
    assert np.array_equal(ours.stats, theirs.stats)


@pytest.mark.spec("DET-COCO-PICKLE")
@pytest.mark.parametrize("kind", ["list", "float64_array", "float32_array"])
def test_results_round_trip_and_evaluate_alike(sets, kind):
    gt_coco = _ground_truths(sets)["file"]
    dt_coco = _results(gt_coco, sets[2], kind)
    copy_ = _round_trip(dt_coco)
    assert copy_.loadAnns(copy_.getAnnIds()) == dt_coco.loadAnns(dt_coco.getAnnIds())
    ours = _evaluated(copy_._results_of, copy_, "accumulated")
    theirs = _evaluated(gt_coco, dt_coco, "accumulated")
    for key in ("precision", "recall", "scores"):
        assert np.array_equal(ours.eval[key], theirs.eval[key]), key
    assert np.array_equal(ours.stats, theirs.stats)


@pytest.mark.spec("DET-COCO-PICKLE")
@pytest.mark.parametrize("stage", ["built", "evaluated", "accumulated"])
def test_cocoeval_round_trips_at_every_stage(sets, stage):
    gt_coco = _ground_truths(sets)["dict"]
    original = _evaluated(gt_coco, _results(gt_coco, sets[2], "list"), stage)
    original.params.maxDets = [1, 10, 100]  # a changed setting travels too
    copy_ = _round_trip(original)
    assert vars(copy_.params).keys() == vars(original.params).keys()
    if stage == "built":
        _quiet(copy_.evaluate)
        _quiet(original.evaluate)
    _assert_same_eval(copy_, original)
    if stage != "accumulated":
        for ev in (copy_, original):
            _quiet(ev.accumulate)
            _quiet(ev.summarize)
    for key in ("precision", "recall", "scores"):
        assert np.array_equal(copy_.eval[key], original.eval[key]), key
    assert np.array_equal(copy_.stats, original.stats)


@pytest.mark.spec("DET-COCO-PICKLE")
def test_accumulate_after_unpickling_uses_the_evaluated_parameters(sets):
    gt_coco = _ground_truths(sets)["dict"]
    original = _evaluated(gt_coco, _results(gt_coco, sets[2], "list"), "evaluated")
    original.params.areaRng = original.params.areaRng[:2]  # changed after evaluate(), as pycocotools allows
    original.params.areaRngLbl = original.params.areaRngLbl[:2]
    copy_ = _round_trip(original)
    assert copy_.params.areaRng == original.params.areaRng
    for ev in (copy_, original):
        _quiet(ev.accumulate)
    for key in ("precision", "recall", "scores"):
        assert np.array_equal(copy_.eval[key], original.eval[key]), key


def _evaluate_in_worker(payload: bytes) -> bytes:
    ev = pickle.loads(payload)
    _quiet(ev.accumulate)
    _quiet(ev.summarize)
    return pickle.dumps((ev.stats, ev))


class _Evaluations:
    """A map-style dataset whose items are evaluations, for a DataLoader worker."""

    def __init__(self, evaluation: fcoco.COCOeval) -> None:
        self.evaluation = evaluation

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> fcoco.COCOeval:
        ev = self.evaluation
        _quiet(ev.accumulate)
        _quiet(ev.summarize)
        return ev


@pytest.mark.spec("DET-COCO-PICKLE")
def test_spawn_dataloader_workers_get_and_return_evaluations(sets):
    torch_data = pytest.importorskip("torch.utils.data")
    gt_coco = _ground_truths(sets)["file"]
    original = _evaluated(gt_coco, _results(gt_coco, sets[2], "list"), "evaluated")
    loader = torch_data.DataLoader(
        _Evaluations(original),
        batch_size=None,
        num_workers=1,
        multiprocessing_context="spawn",
    )
    (returned,) = list(loader)
    _quiet(original.accumulate)
    _quiet(original.summarize)
    assert np.array_equal(returned.stats, original.stats)
    _assert_same_eval(returned, original)


def _mask_sets(seed: int = 5):
    """A ground truth with polygon, RLE and crowd masks, and mask results (RLE,
    str and bytes counts) with and without boxes."""
    from ferrops import mask

    rng = np.random.default_rng(seed)
    images = [{"id": i, "height": 40, "width": 50} for i in range(1, 7)]
    annotations, results = [], []
    for image in images:
        for _ in range(int(rng.integers(0, 4))):
            x, y = rng.random(2) * [35, 25]
            w, h = 4 + rng.random(2) * 12
            polygon = [x, y, x + w, y, x + w * 0.7, y + h, x, y + h * 0.8]
            rle = mask.merge(mask.frPyObjects([polygon], 40, 50))
            crowd = int(rng.random() < 0.2)
            segmentation = {"size": [40, 50], "counts": rle["counts"].decode()} if crowd else [polygon]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image["id"],
                    "category_id": int(rng.integers(1, 3)),
                    "segmentation": segmentation,
                    "area": float(mask.area(rle)),
                    "bbox": mask.toBbox(rle).tolist(),
                    "iscrowd": crowd,
                }
            )
            shifted = mask.merge(mask.frPyObjects([[v + rng.normal(0, 1) for v in polygon]], 40, 50))
            counts = shifted["counts"] if rng.random() < 0.5 else shifted["counts"].decode()
            results.append(
                {
                    "image_id": image["id"],
                    "category_id": annotations[-1]["category_id"],
                    "segmentation": {"size": [40, 50], "counts": counts},
                    "score": float(rng.random()),
                }
            )
    gt = {"images": images, "annotations": annotations, "categories": [{"id": 1}, {"id": 2}]}
    return gt, results


@pytest.mark.spec("DET-COCO-PICKLE")
@pytest.mark.parametrize("source", ["list", "file", "list_with_boxes"])
def test_mask_results_and_segm_evaluation_round_trip(tmp_path, source):
    gt, results = _mask_sets()
    gt_coco = fcoco.COCO()
    gt_coco.dataset = gt
    _quiet(gt_coco.createIndex)
    if source == "file":
        path = tmp_path / "results.json"
        path.write_text(json.dumps([{**r, "segmentation": _str_counts(r["segmentation"])} for r in results]))
        dt_coco = _quiet(gt_coco.loadRes, str(path))
    elif source == "list_with_boxes":
        dt_coco = _quiet(gt_coco.loadRes, [{**r, "bbox": [1.0, 2.0, 5.0, 6.0]} for r in results])
    else:
        dt_coco = _quiet(gt_coco.loadRes, results)
    original = fcoco.COCOeval(gt_coco, dt_coco, "segm")
    _quiet(original.evaluate)
    copy_ = _round_trip(original)
    assert copy_.cocoDt.loadAnns(copy_.cocoDt.getAnnIds()) == dt_coco.loadAnns(dt_coco.getAnnIds())
    _assert_same_eval(copy_, original)
    for ev in (copy_, original):
        _quiet(ev.accumulate)
        _quiet(ev.summarize)
    assert np.array_equal(copy_.stats, original.stats)
    assert original.stats[0] > 0.1


def _str_counts(segmentation):
    counts = segmentation["counts"]
    return {**segmentation, "counts": counts.decode() if isinstance(counts, bytes) else counts}
