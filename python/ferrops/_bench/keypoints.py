"""Bench cases of COCO keypoint evaluation (``iouType="keypoints"``, OKS): the
whole pipeline (load, loadRes, evaluate, accumulate, summarize) of ferrops and
each installed peer on a generated person-keypoint set like issue 14's (5,000
images, 17.5k people, 25k detections), with peak memory."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

from . import Case, max_abs_difference

#: The peers timed beside ferrops.
PEERS = ("pycocotools", "ultrafast-pycocotools", "hotcoco", "faster-coco-eval")

NUM_KEYPOINTS = 17


def synthetic_keypoints(
    num_images: int, people_per_image: float = 3.5, dets_per_image: float = 5.0, seed: int = 0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A person-keypoint ground truth and results: people of every size (some
    crowd, some without labelled points, points invisible at random), and
    detections that are jittered copies of people or strays, with tied scores."""
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "width": 640, "height": 480} for i in range(num_images)]
    counts = rng.poisson(people_per_image, num_images)
    n = int(counts.sum())
    image_of = np.repeat(np.arange(1, num_images + 1), counts)
    wh = np.exp(rng.uniform(np.log(8), np.log(400), (n, 2)))
    xy = rng.uniform(0, 300, (n, 2))
    points = xy[:, None, :] + rng.uniform(0, 1, (n, NUM_KEYPOINTS, 2)) * wh[:, None, :]
    visibility = rng.choice([0, 1, 2], (n, NUM_KEYPOINTS), p=[0.35, 0.15, 0.5])
    visibility[rng.random(n) < 0.05] = 0  # people without labelled points (num_keypoints 0)
    crowd = rng.random(n) < 0.03
    area = wh[:, 0] * wh[:, 1] * rng.uniform(0.4, 1.0, n)
    annotations = []
    for j in range(n):
        kp = np.where(visibility[j, :, None] > 0, np.round(points[j], 1), 0.0)
        triples = np.concatenate([kp, visibility[j, :, None]], axis=1).ravel().tolist()
        annotations.append(
            {
                "id": j + 1,
                "image_id": int(image_of[j]),
                "category_id": 1,
                "bbox": [round(float(v), 2) for v in (*xy[j], *wh[j])],
                "area": round(float(area[j]), 2),
                "iscrowd": int(crowd[j]),
                "keypoints": [int(v) if k % 3 == 2 else float(v) for k, v in enumerate(triples)],
                "num_keypoints": int((visibility[j] > 0).sum()),
            }
        )
    num_dets = int(round(dets_per_image * num_images))
    source = rng.integers(0, max(n, 1), num_dets)
    stray = (rng.random(num_dets) < 0.2) | (n == 0)
    scale = wh[source] if n else np.full((num_dets, 2), 50.0)
    jitter = (
        rng.normal(0, 1, (num_dets, NUM_KEYPOINTS, 2)) * scale[:, None, :] * rng.uniform(0.01, 0.2, (num_dets, 1, 1))
    )
    base = points[source] if n else np.zeros((num_dets, NUM_KEYPOINTS, 2))
    stray_points = rng.uniform(0, 640, (num_dets, 1, 2)) + rng.uniform(0, 120, (num_dets, NUM_KEYPOINTS, 2))
    det_points = np.where(stray[:, None, None], stray_points, base + jitter)
    det_image = np.where(stray, rng.integers(1, num_images + 1, num_dets), image_of[source] if n else 1)
    scores = np.round(rng.random(num_dets), 2)  # two decimals: many ties
    results = []
    for j in range(num_dets):
        triples = np.concatenate([np.round(det_points[j], 2), np.ones((NUM_KEYPOINTS, 1))], axis=1).ravel()
        results.append(
            {
                "image_id": int(det_image[j]),
                "category_id": 1,
                "keypoints": [float(v) for v in triples],
                "score": float(scores[j]),
            }
        )
    categories = [{"id": 1, "name": "person", "keypoints": [f"p{k}" for k in range(NUM_KEYPOINTS)], "skeleton": []}]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def _modules(name: str) -> tuple[Any, Any] | None:
    """The COCO / COCOeval modules of ``name``; None when not installed."""
    try:
        if name == "ferrops":
            from ferrops import coco as ferrops_coco

            return ferrops_coco, ferrops_coco
        if name == "pycocotools":
            from pycocotools import coco, cocoeval

            return coco, cocoeval
        if name == "ultrafast-pycocotools":
            from ultrafast_pycocotools import coco, cocoeval

            return coco, cocoeval
        if name == "hotcoco":
            import hotcoco

            return hotcoco, hotcoco
        if name == "faster-coco-eval":
            from faster_coco_eval import COCO, COCOeval_faster

            evaluator = SimpleNamespace(
                COCOeval=lambda g, d, t: COCOeval_faster(g, d, t, print_function=lambda *a, **k: None)
            )
            return SimpleNamespace(COCO=COCO), evaluator
    except ImportError:
        return None
    return None


def pipeline(name: str, gt_path: str, dt_path: str) -> Callable[[], np.ndarray] | None:
    """Load + loadRes + evaluate + accumulate + summarize with ``name``'s modules,
    returning the 10 keypoint stats; None when the library is not installed."""
    modules = _modules(name)
    if modules is None:
        return None
    coco, cocoeval = modules

    def run() -> np.ndarray:
        with contextlib.redirect_stdout(io.StringIO()):
            gt = coco.COCO(gt_path)
            dt = gt.loadRes(dt_path)
            ev = cocoeval.COCOeval(gt, dt, "keypoints")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        return np.asarray(ev.stats, dtype=np.float64)

    return run


def write_set(num_images: int, directory: str) -> tuple[str, str]:
    gt, dt = synthetic_keypoints(num_images, seed=1)
    gt_path, dt_path = os.path.join(directory, "gt.json"), os.path.join(directory, "dt.json")
    with open(gt_path, "w") as f:
        json.dump(gt, f)
    with open(dt_path, "w") as f:
        json.dump(dt, f)
    return gt_path, dt_path


_TMP: list[tempfile.TemporaryDirectory] = []

_PEAK_SCRIPT = """
import sys
from ferrops._bench.keypoints import pipeline
def rss(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field))
name, gt, dt = sys.argv[1:4]
run = pipeline(name, gt, dt)
before = rss("VmRSS:")
run()
print((rss("VmHWM:") - before) / 1024)
"""


def peak_memory_mb(name: str, gt_path: str, dt_path: str) -> float | None:
    """Peak RSS growth (MiB) of one pipeline run in a fresh process, after imports."""
    import subprocess
    import sys

    if not os.path.exists("/proc/self/status") or _modules(name) is None:
        return None
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, name, gt_path, dt_path], capture_output=True, text=True)
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def cases(quick: bool, num_images: int = 5000, peers: tuple[str, ...] = PEERS, with_memory: bool = True) -> list[Case]:
    """One row per peer; targets: 20x pycocotools, 1.5x hotcoco (issue 14)."""
    tmp = tempfile.TemporaryDirectory(prefix="ferrops-bench-kpt-")
    _TMP.append(tmp)  # kept until the process ends: the cases read the files lazily
    gt_path, dt_path = write_set(num_images, tmp.name)
    ours = pipeline("ferrops", gt_path, dt_path)
    assert ours is not None
    size = f"{num_images} img, {num_images * 7 // 2000}k people, {num_images * 5 // 1000}k det"
    targets = {"pycocotools": 20.0, "hotcoco": 1.5}

    def memory_note(name: str) -> Callable[[float], str]:
        def note(_: float) -> str:
            ours_mb, theirs_mb = peak_memory_mb("ferrops", gt_path, dt_path), peak_memory_mb(name, gt_path, dt_path)
            fmt = lambda mb: "n/a" if mb is None else f"{mb:.0f} MiB"  # noqa: E731
            return f"peak RSS +{fmt(ours_mb)} vs +{fmt(theirs_mb)}"

        return note

    return [
        Case(
            family="keypoints",
            kernel="COCO keypoints load+eval+summarize",
            size=size,
            ferrops=ours,
            peer_name=name,
            peer=pipeline(name, gt_path, dt_path),
            difference=max_abs_difference,
            target=targets.get(name),
            note=memory_note(name) if with_memory else None,
        )
        for name in peers
    ]
