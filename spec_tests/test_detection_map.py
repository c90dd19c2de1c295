"""``MeanAveragePrecision`` with instance masks, its torchmetrics interface and
across processes (SPEC DET-MAP-SEGM, DET-MAP-API, DET-MAP-DIST): torchmetrics 1.9
with its pycocotools backend is the oracle, compared exactly (every output key in
order, dtype and value); the distributed compute of two gloo processes equals one
process holding all the images."""

from __future__ import annotations

import inspect
import os
import socket
import warnings

import numpy as np
import pytest

from ferrops.detection import MeanAveragePrecision

torch = pytest.importorskip("torch")


def _ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    y, x = np.mgrid[:h, :w]
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1


def _box_of(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return [0.0, 0.0, 1.0, 1.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def masks_and_boxes(seed: int, images: int, h: int = 48, w: int = 64, empty_every: int = 5):
    """Targets (ellipses of several sizes, some crowd, some with a given area,
    a few empty masks) and predictions (shifted and resized copies, misses,
    false positives); every ``empty_every``-th image has no targets and every
    other one of those no predictions either."""
    rng = np.random.default_rng(seed)
    preds, target = [], []
    for image in range(images):
        m = 0 if image % empty_every == empty_every - 1 else int(rng.integers(1, 6))
        gt_masks = []
        for _ in range(m):
            r = rng.choice([3.0, 6.0, 14.0]) * (0.7 + 0.6 * rng.random())
            gt_masks.append(_ellipse(h, w, rng.random() * h, rng.random() * w, r, r * (0.5 + rng.random())))
        if m and rng.random() < 0.2:
            gt_masks[0] = np.zeros((h, w), bool)  # an empty mask
        labels = rng.integers(0, 3, m)
        det_masks, det_labels = [], []
        for k in range(m):
            if rng.random() < 0.8:
                shift = rng.integers(-1, 2, 2) * (rng.random() < 0.5)
                det_masks.append(np.roll(gt_masks[k], tuple(shift), (0, 1)))
                det_labels.append(labels[k] if rng.random() < 0.9 else (labels[k] + 1) % 3)
        if not (m == 0 and image % 2):
            for _ in range(int(rng.integers(0, 3))):
                det_masks.append(_ellipse(h, w, rng.random() * h, rng.random() * w, 6, 4))
                det_labels.append(int(rng.integers(0, 3)))
        n = len(det_masks)
        det = np.stack(det_masks) if n else np.zeros((0, h, w), bool)
        gt = np.stack(gt_masks) if m else np.zeros((0, h, w), bool)
        preds.append(
            {
                "masks": torch.from_numpy(det),
                "boxes": torch.tensor([_box_of(x) for x in det], dtype=torch.float32).reshape(-1, 4),
                "scores": torch.tensor(rng.random(n), dtype=torch.float32),
                "labels": torch.tensor(det_labels, dtype=torch.int64),
            }
        )
        item = {
            "masks": torch.from_numpy(gt),
            "boxes": torch.tensor([_box_of(x) for x in gt], dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "iscrowd": torch.tensor(rng.random(m) < 0.15, dtype=torch.int64),
        }
        if image % 3 == 0:
            item["area"] = torch.tensor(np.where(rng.random(m) < 0.5, rng.random(m) * 3000, 0), dtype=torch.float32)
        target.append(item)
    return preds, target


def _torchmetrics(preds, target, **options):
    detection = pytest.importorskip("torchmetrics.detection")
    pytest.importorskip("pycocotools.mask")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = detection.MeanAveragePrecision(backend="pycocotools", **options)
        metric.update(preds, target)
        return metric.compute()


def _ours(preds, target, **options):
    metric = MeanAveragePrecision(**options)
    metric.update(preds, target)
    return metric.compute()


def _assert_same(got, expected):
    assert list(got) == list(expected)  # the same keys in the same order
    for key in expected:
        if isinstance(expected[key], dict):  # extended_summary's ious
            assert list(got[key]) == list(expected[key]), key
            for pair, ious in expected[key].items():
                if isinstance(ious, list):
                    assert got[key][pair] == ious, (key, pair)
                else:
                    _assert_same({pair: got[key][pair]}, {pair: ious})
            continue
        assert got[key].dtype == expected[key].dtype, key
        assert got[key].shape == expected[key].shape, key
        assert np.array_equal(got[key].numpy(), expected[key].numpy()), (key, got[key], expected[key])


OPTIONS = [
    {"iou_type": "segm"},
    {"iou_type": ("bbox", "segm")},
    {"iou_type": ("segm", "bbox"), "class_metrics": True},
    {"iou_type": "segm", "class_metrics": True, "average": "micro"},
    {"iou_type": "segm", "max_detection_thresholds": [1, 2, 3], "iou_thresholds": [0.3, 0.6]},
    {"iou_type": "bbox"},
]


@pytest.mark.spec("DET-MAP-SEGM")
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_masks_equal_torchmetrics(options):
    preds, target = masks_and_boxes(1, 30)
    expected = _torchmetrics(preds, target, **options)
    assert max(float(v.max()) for k, v in expected.items() if k != "classes") > 0.2  # something to measure
    _assert_same(_ours(preds, target, **options), expected)


@pytest.mark.spec("DET-MAP-SEGM")
@pytest.mark.parametrize("iou_type", ["segm", ("bbox", "segm")])
@pytest.mark.parametrize("case", ["no_images", "no_targets", "no_predictions", "one_empty_image"])
def test_empty_cases_equal_torchmetrics(iou_type, case):
    preds, target = masks_and_boxes(2, 6)
    if case == "no_images":
        preds, target = [], []
    elif case == "no_targets":
        for t in target:
            for key in ("masks", "boxes", "labels", "iscrowd", "area"):
                if key in t:
                    t[key] = t[key][:0]
    elif case == "no_predictions":
        for p in preds:
            for key in p:
                p[key] = p[key][:0]
    else:
        preds, target = preds[4:5], target[4:5]  # an image without targets
    _assert_same(_ours(preds, target, iou_type=iou_type), _torchmetrics(preds, target, iou_type=iou_type))


@pytest.mark.spec("DET-MAP-SEGM")
def test_masks_in_either_memory_order_and_uint8():
    preds, target = masks_and_boxes(3, 8)
    expected = _ours(preds, target, iou_type="segm")
    for item in preds + target:
        item["masks"] = item["masks"].transpose(1, 2).contiguous().transpose(1, 2).to(torch.uint8)
    _assert_same(_ours(preds, target, iou_type="segm"), expected)


@pytest.mark.spec("DET-MAP-SEGM")
@pytest.mark.parametrize(
    ("iou_type", "change", "match"),
    [
        ("nope", None, "iou_type"),
        (("bbox", "keypoints"), None, "iou_type"),
        ("segm", lambda p, t: p.pop("masks"), "masks"),
        ("segm", lambda p, t: t.update(masks=t["masks"][:, 0]), "masks"),
        ("segm", lambda p, t: t.update(masks=t["masks"].float()), "bool"),
        ("segm", lambda p, t: t.update(masks=t["masks"][:0]), "masks"),
    ],
)
def test_bad_mask_input_is_a_value_error(iou_type, change, match):
    preds, target = masks_and_boxes(4, 1, empty_every=9)
    with pytest.raises(ValueError, match=match):
        metric = MeanAveragePrecision(iou_type=iou_type)
        change(preds[0], target[0])
        metric.update(preds, target)


# -- torchmetrics' interface -------------------------------------------------------------


@pytest.mark.spec("DET-MAP-API")
def test_signature_is_torchmetrics_then_keyword_only_sync_options():
    detection = pytest.importorskip("torchmetrics.detection")
    theirs = list(inspect.signature(detection.MeanAveragePrecision).parameters.values())
    ours = list(inspect.signature(MeanAveragePrecision).parameters.values())
    assert theirs[-1].kind is inspect.Parameter.VAR_KEYWORD  # torchmetrics' Metric kwargs
    positional = [(p.name, p.kind, p.default) for p in theirs[:-1]]
    assert [(p.name, p.kind, p.default) for p in ours[: len(positional)]] == positional
    rest = ours[len(positional) :]
    assert [p.name for p in rest] == ["sync_on_compute", "process_group", "dist_sync_fn"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in rest)
    # Positional arguments land where torchmetrics puts them.
    args = ("xywh", "segm", [0.5], [0.0, 1.0], [1, 2, 3], True, True, "micro", "faster_coco_eval")
    metric = MeanAveragePrecision(*args)
    assert (metric.box_format, metric.iou_type, metric.iou_thresholds, metric.rec_thresholds) == (
        "xywh", ("segm",), [0.5], [0.0, 1.0])  # fmt: skip
    assert (metric.max_detection_thresholds, metric.class_metrics, metric.extended_summary) == ([1, 2, 3], True, True)
    assert (metric.average, metric.backend) == ("micro", "faster_coco_eval")


EXTENDED = [
    {"iou_type": "bbox"},
    {"iou_type": "segm", "class_metrics": True},
    {"iou_type": ["bbox", "segm"]},  # a list, which torchmetrics takes too
    {"iou_type": ("segm", "bbox"), "average": "micro", "max_detection_thresholds": [1, 2, 3]},
    {"iou_type": "bbox", "box_format": "cxcywh", "iou_thresholds": [0.3, 0.6], "rec_thresholds": [0.0, 0.5, 1.0]},
]


@pytest.mark.spec("DET-MAP-API")
@pytest.mark.parametrize("options", EXTENDED, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_extended_summary_equals_torchmetrics(options):
    preds, target = masks_and_boxes(7, 12)
    expected = _torchmetrics(preds, target, extended_summary=True, **options)
    prefixes = [""] if isinstance(options["iou_type"], str) else ["bbox_", "segm_"]
    for prefix in prefixes:
        assert any(
            isinstance(v, torch.Tensor) and v.numel() > 1 for v in expected[f"{prefix}ious"].values()
        )  # matrices, not only []
        assert any(v == [] for v in expected[f"{prefix}ious"].values())
    _assert_same(_ours(preds, target, extended_summary=True, **options), expected)


@pytest.mark.spec("DET-MAP-API")
@pytest.mark.parametrize("iou_type", ["bbox", ("bbox", "segm")])
def test_extended_summary_without_images_adds_nothing(iou_type):
    options = {"iou_type": iou_type, "extended_summary": True}
    _assert_same(_ours([], [], **options), _torchmetrics([], [], **options))


@pytest.mark.spec("DET-MAP-API")
def test_calling_the_metric_is_torchmetrics_forward():
    detection = pytest.importorskip("torchmetrics.detection")
    preds, target = masks_and_boxes(8, 10)
    options = {"iou_type": ("bbox", "segm"), "class_metrics": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = detection.MeanAveragePrecision(**options)
        ours = MeanAveragePrecision(**options).to("cpu")
        for part in (slice(0, 4), slice(4, 10)):
            _assert_same(ours(preds[part], target[part]), theirs(preds[part], target[part]))
        _assert_same(ours.compute(), theirs.compute())
    with pytest.raises(ValueError, match="masks"):  # a bad batch leaves the state as it was
        ours([{k: v for k, v in preds[0].items() if k != "masks"}], target[:1])
    assert len(ours.state_dict()["gt_labels"]) == 10


@pytest.mark.spec("DET-MAP-API")
@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_either_backend_gives_pycocotools_numbers(backend):
    preds, target = masks_and_boxes(9, 10)
    options = {"iou_type": ("bbox", "segm"), "class_metrics": True, "extended_summary": True}
    _assert_same(_ours(preds, target, backend=backend, **options), _torchmetrics(preds, target, **options))


@pytest.mark.spec("DET-MAP-API")
@pytest.mark.parametrize(
    ("options", "error", "argument"),
    [
        ({"backend": "coco"}, ValueError, "backend"),
        ({"box_format": "yxyx"}, ValueError, "box_format"),
        ({"iou_type": "keypoints"}, ValueError, "iou_type"),
        ({"extended_summary": "yes"}, TypeError, "extended_summary"),
        ({"class_metrics": None}, TypeError, "class_metrics"),
    ],
)
def test_bad_options_are_errors_naming_the_argument(options, error, argument):
    with pytest.raises(error, match=rf"^MeanAveragePrecision\(\): argument '{argument}'"):
        MeanAveragePrecision(**options)


# -- distributed ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(rank: int, world: int, port: int, out_dir: str, options: dict) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        preds, target = masks_and_boxes(5, 21)
        metric = MeanAveragePrecision(**options)
        # A DistributedSampler's share: images rank, rank + world, ...; two updates.
        mine = list(range(rank, len(preds), world))
        half = len(mine) // 2
        for part in (mine[:half], mine[half:]):
            metric.update([preds[i] for i in part], [target[i] for i in part])
        local_images = len(metric.state_dict()["gt_labels"])
        synced = metric.compute()
        unsynced = MeanAveragePrecision(**options, sync_on_compute=False)
        unsynced.update([preds[i] for i in mine], [target[i] for i in mine])
        torch.save(
            {
                "synced": synced,
                "local": unsynced.compute(),
                "state_kept": len(metric.state_dict()["gt_labels"]) == local_images,
            },
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.spec("DET-MAP-DIST")
def test_two_gloo_processes_equal_one_process_with_all_images(tmp_path):
    mp = pytest.importorskip("torch.multiprocessing")
    if not torch.distributed.is_available():
        pytest.skip("torch.distributed is not available")
    options = {"iou_type": ("bbox", "segm"), "class_metrics": True}
    mp.spawn(_rank_main, args=(2, _free_port(), str(tmp_path), options), nprocs=2, join=True)
    preds, target = masks_and_boxes(5, 21)
    everything = _ours(preds, target, **options)
    assert float(everything["segm_map"]) > 0.2
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["state_kept"]
        _assert_same(result["synced"], everything)
        mine = list(range(rank, len(preds), 2))
        _assert_same(result["local"], _ours([preds[i] for i in mine], [target[i] for i in mine], **options))


@pytest.mark.spec("DET-MAP-DIST")
def test_without_a_process_group_compute_is_local_and_dist_sync_fn_unused():
    preds, target = masks_and_boxes(6, 6)
    calls = []
    metric = MeanAveragePrecision(iou_type="segm", dist_sync_fn=lambda state, group: calls.append(state) or [state])
    metric.update(preds, target)
    _assert_same(metric.compute(), _ours(preds, target, iou_type="segm"))
    assert calls == []
