"""``ferrops.coco.install_as_pycocotools()`` (SPEC DET-COCO-SWITCH): pycocotools'
module names resolve to ferrops while the switch is on, and a real consumer,
torchmetrics' ``MeanAveragePrecision(backend="pycocotools")``, gives the same
numbers through it as through pycocotools."""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import sys
import warnings

import numpy as np
import pytest

import ferrops
from ferrops import coco as fcoco


@pytest.fixture
def switch():
    """The switch, always turned off again (a failing test must not leave it on)."""
    yield fcoco.install_as_pycocotools
    fcoco.uninstall_as_pycocotools()


@pytest.mark.spec("DET-COCO-SWITCH")
def test_pycocotools_names_resolve_to_ferrops_and_back(switch):
    before = {name: sys.modules.get(name) for name in ("pycocotools", "pycocotools.coco", "pycocotools.mask")}
    switch()
    import pycocotools
    import pycocotools.coco
    import pycocotools.cocoeval
    import pycocotools.mask
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval, Params

    assert (COCO, COCOeval, Params) == (fcoco.COCO, fcoco.COCOeval, fcoco.Params)
    assert mask_utils is ferrops.mask is pycocotools.mask
    assert pycocotools.coco.COCO is fcoco.COCO and pycocotools.cocoeval.COCOeval is fcoco.COCOeval
    with pytest.raises(ImportError, match="install_as_pycocotools"):
        importlib.import_module("pycocotools._mask")
    switch()  # a second call changes nothing
    fcoco.uninstall_as_pycocotools()
    for name, module in before.items():
        assert sys.modules.get(name) is module, name
    fcoco.uninstall_as_pycocotools()  # a second call changes nothing


@pytest.mark.spec("DET-COCO-SWITCH")
def test_switch_as_a_context_manager():
    real = pytest.importorskip("pycocotools.coco")
    with fcoco.install_as_pycocotools() as on:
        assert on.installed
        assert importlib.import_module("pycocotools.coco").COCO is fcoco.COCO
    assert not on.installed
    assert importlib.import_module("pycocotools.coco") is real


def _detections(seed: int, images: int):
    """Targets and noisy predictions of them (jittered copies, misses, false
    positives, crowds), torchmetrics' input format."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    preds, target = [], []
    for _ in range(images):
        m = int(rng.integers(0, 7))
        xy = rng.random((m, 2)) * 300
        wh = rng.random((m, 2)) * rng.choice([10, 60, 150], (m, 1)) + 2
        gt = np.concatenate([xy, xy + wh], 1)
        labels = rng.integers(0, 4, m)
        keep = rng.random(m) < 0.8
        jitter = rng.normal(0, 4, (m, 4))
        fp = int(rng.integers(0, 3))
        fp_xy = rng.random((fp, 2)) * 300
        det = np.concatenate([(gt + jitter)[keep], np.concatenate([fp_xy, fp_xy + 30], 1)])
        det[:, 2:] = np.maximum(det[:, 2:], det[:, :2] + 1)
        det_labels = np.concatenate([labels[keep], rng.integers(0, 4, fp)])
        preds.append(
            {
                "boxes": torch.tensor(det, dtype=torch.float32),
                "scores": torch.tensor(rng.random(len(det)), dtype=torch.float32),
                "labels": torch.tensor(det_labels),
            }
        )
        target.append(
            {
                "boxes": torch.tensor(gt, dtype=torch.float32),
                "labels": torch.tensor(labels),
                "iscrowd": torch.tensor(rng.random(m) < 0.1, dtype=torch.int64),
            }
        )
    return preds, target


def _torchmetrics_map(preds, target, **options):
    detection = pytest.importorskip("torchmetrics.detection")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = detection.MeanAveragePrecision(backend="pycocotools", **options)
        metric.update(preds, target)
        return metric.compute()


@pytest.mark.spec("DET-COCO-SWITCH")
@pytest.mark.parametrize("options", [{}, {"class_metrics": True}, {"average": "micro"}, {"box_format": "xywh"}])
def test_torchmetrics_pycocotools_backend_gives_the_same_numbers_through_ferrops(switch, options):
    pytest.importorskip("pycocotools.coco")
    helpers = pytest.importorskip("torchmetrics.detection.helpers")
    preds, target = _detections(3, 40)
    expected = _torchmetrics_map(preds, target, **options)
    assert float(expected["map"]) > 0.05  # a set with something to measure
    switch()
    assert helpers.CocoBackend("pycocotools").cocoeval is fcoco.COCOeval
    got = _torchmetrics_map(preds, target, **options)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key].dtype == expected[key].dtype, key
        assert np.array_equal(got[key].numpy(), expected[key].numpy()), key


def _ellipse(h, w, cx, cy, rx, ry):
    y, x = np.mgrid[0:h, 0:w]
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1


def _mask_detections(seed: int, images: int):
    """Targets and predictions with boolean masks: ellipses whose box areas and
    mask areas fall in different COCO area ranges (the box is 4/pi the mask),
    boxes of the ellipses, jittered predictions, misses, false positives,
    crowds, images without objects."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    preds, target = [], []
    h, w = 120, 150
    for _ in range(images):
        m = int(rng.integers(0, 6))
        centres = rng.random((m, 2)) * [w, h]
        radii = rng.choice([4.0, 17.0, 19.0, 52.0, 58.0], (m, 1)) * (0.8 + 0.4 * rng.random((m, 2)))
        gt = np.array([_ellipse(h, w, *c, *r) for c, r in zip(centres, radii)], dtype=bool).reshape(m, h, w)
        labels = rng.integers(0, 3, m)
        keep = rng.random(m) < 0.8
        shift = centres + rng.normal(0, 2.5, (m, 2))
        det = [_ellipse(h, w, *c, *(r * (0.9 + 0.2 * rng.random(2)))) for c, r in zip(shift[keep], radii[keep])]
        fp = int(rng.integers(0, 3))
        det += [_ellipse(h, w, *(rng.random(2) * [w, h]), 9.0, 14.0) for _ in range(fp)]
        det_masks = np.array(det, dtype=bool).reshape(-1, h, w)
        det_labels = np.concatenate([labels[keep], rng.integers(0, 3, fp)])

        def boxes(masks):
            out = np.zeros((len(masks), 4), dtype=np.float32)
            for i, mask in enumerate(masks):
                ys, xs = np.nonzero(mask)
                if len(xs):
                    out[i] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            return torch.tensor(out)

        preds.append(
            {
                "masks": torch.tensor(det_masks),
                "boxes": boxes(det_masks),
                "scores": torch.tensor(rng.random(len(det_masks)), dtype=torch.float32),
                "labels": torch.tensor(det_labels),
            }
        )
        target.append(
            {
                "masks": torch.tensor(gt),
                "boxes": boxes(gt),
                "labels": torch.tensor(labels),
                "iscrowd": torch.tensor(rng.random(m) < 0.1, dtype=torch.int64),
            }
        )
    return preds, target


@pytest.mark.spec("DET-COCO-SWITCH")
@pytest.mark.parametrize("iou_type", ["segm", ("bbox", "segm")])
@pytest.mark.parametrize("options", [{}, {"class_metrics": True}, {"average": "micro"}])
def test_torchmetrics_masks_give_the_same_numbers_through_ferrops(switch, iou_type, options):
    pytest.importorskip("pycocotools.coco")
    preds, target = _mask_detections(4, 30)
    options = {"iou_type": iou_type, **options}
    expected = _torchmetrics_map(preds, target, **options)
    assert float(expected["map" if iou_type == "segm" else "segm_map"]) > 0.05
    switch()
    got = _torchmetrics_map(preds, target, **options)
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key].dtype == expected[key].dtype, key
        assert np.array_equal(got[key].numpy(), expected[key].numpy()), key


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


@pytest.mark.spec("DET-COCO-DICT")
def test_a_dict_dataset_is_evaluated_as_it_stands_at_evaluate():
    """Edits of the records after createIndex() count, as in pycocotools."""
    pycoco = pytest.importorskip("pycocotools.coco")
    pycocoeval = pytest.importorskip("pycocotools.cocoeval")
    rng = np.random.default_rng(7)
    images = [{"id": i, "height": 50, "width": 60} for i in range(6)]
    gt_anns, dt_anns = [], []
    for i in range(30):
        x, y, s = float(rng.integers(0, 40)), float(rng.integers(0, 30)), float(rng.integers(3, 20))
        image_id, area = i % 6, float(rng.choice([100.0, 2000.0, 20000.0]))
        gt_anns.append(
            {"id": i + 1, "image_id": image_id, "category_id": 1, "bbox": [x, y, s, s], "area": area, "iscrowd": 0}
        )
        jitter = [float(v) for v in rng.normal(0, 1.5, 2)]
        dt_anns.append(
            {
                "id": i + 1,
                "image_id": image_id,
                "category_id": 1,
                "bbox": [x + jitter[0], y + jitter[1], s, s],
                "area": area,
                "iscrowd": 0,
                "score": float(rng.random()),
            }
        )
    dataset = {"images": images, "categories": [{"id": 1}], "annotations": gt_anns}
    results = {"images": images, "categories": [{"id": 1}], "annotations": dt_anns}

    def run(module, eval_module):
        gt, dt = module.COCO(), module.COCO()
        gt.dataset, dt.dataset = copy.deepcopy(dataset), copy.deepcopy(results)
        _quiet(gt.createIndex)
        _quiet(dt.createIndex)
        stats = []
        for edit in (None, 2000.0, 20.0):
            if edit is not None:
                for ann in dt.dataset["annotations"]:
                    ann["area"] = edit
            ev = eval_module.COCOeval(gt, dt, "bbox")
            _quiet(ev.evaluate)
            _quiet(ev.accumulate)
            _quiet(ev.summarize)
            stats.append(ev.stats)
        return stats

    ours, theirs = run(fcoco, fcoco), run(pycoco, pycocoeval)
    assert not np.array_equal(theirs[1], theirs[2])  # the edits change the numbers
    for a, b in zip(ours, theirs):
        assert np.array_equal(a, b), (a, b)
