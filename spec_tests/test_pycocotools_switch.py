"""``ferrops.coco.install_as_pycocotools()`` (SPEC DET-COCO-SWITCH): pycocotools'
module names resolve to ferrops while the switch is on, and a real consumer,
torchmetrics' ``MeanAveragePrecision(backend="pycocotools")``, gives the same
numbers through it as through pycocotools."""

from __future__ import annotations

import importlib
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
