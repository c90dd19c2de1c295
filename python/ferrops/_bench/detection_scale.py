"""Bench cases of COCO bbox evaluation at Objects365 scale (issue 14, "Scale"):
80,000 images, 365 categories, ~601k ground-truth boxes, ~1.26M detections,
about 300 MB of JSON, generated in a temporary folder. The pipeline is the one
users run (load, loadRes, evaluate, accumulate, summarize), for ferrops,
ultrafast-pycocotools and hotcoco.

Opt-in: the set takes a minute to write and each run seconds, so ``cases``
returns nothing with ``quick`` (``ferrops bench detection-scale`` runs it).
Each library also runs in a fresh process of its own: one cold run, then the
best of two more, each with its peak RSS growth over the process after its
imports (the peak is reset between the two phases), so no library's memory is
counted against another's. ``python -m ferrops._bench.detection_scale`` prints
only those subprocess numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from . import Case, max_abs_difference
from .detection import _peer, _pipeline

#: The peers timed beside ferrops (issue 14 names these two).
PEERS = ("ultrafast-pycocotools", "hotcoco")

NUM_IMAGES = 80_000
NUM_CATEGORIES = 365
GT_PER_IMAGE = 601_000 / NUM_IMAGES
DETS_PER_IMAGE = 1_260_000 / NUM_IMAGES


def _floats(values: np.ndarray) -> list[str]:
    """Python's shortest float text, as ``json.dump`` writes it."""
    return [repr(v) for v in values.tolist()]


def write_objects365_like(directory: str, num_images: int = NUM_IMAGES, seed: int = 0) -> tuple[str, str]:
    """Writes an Objects365-shaped ground truth and bbox results; returns their paths.

    Categories are long-tailed (Zipf-like), images hold a Poisson number of
    boxes of every size; detections are jittered copies of most boxes (some
    twice, some with the wrong class) plus noise, scores with ties, boxes and
    scores float32 values written as doubles, as detectors' outputs are. The
    records carry Objects365's extra keys (``isfake``, ``isreflected``). Text
    is written directly (the same JSON ``json.dump`` would write for these
    records, without building 1.9M dicts first).
    """
    rng = np.random.default_rng(seed)
    image_ids = np.arange(1, num_images + 1)
    weights = 1.0 / np.arange(1, NUM_CATEGORIES + 1) ** 0.9
    weights /= weights.sum()
    counts = rng.poisson(GT_PER_IMAGE, num_images)
    n = int(counts.sum())
    gt_image = np.repeat(image_ids, counts)
    gt_cat = rng.choice(NUM_CATEGORIES, size=n, p=weights) + 1
    wh = np.round(np.exp(rng.uniform(np.log(3), np.log(600), (n, 2))), 2)
    xy = np.round(rng.uniform(0, 700, (n, 2)), 2)
    area = np.round(wh[:, 0] * wh[:, 1], 4)
    crowd = (rng.random(n) < 0.01).astype(int)
    gt_path, dt_path = os.path.join(directory, "gt.json"), os.path.join(directory, "dt.json")
    with open(gt_path, "w") as f:
        f.write('{"images": [')
        f.write(
            ", ".join(
                f'{{"height": 768, "id": {i}, "license": 5, "width": 1024, "file_name": "images/v1/obj365_train_{i:012d}.jpg"}}'
                for i in image_ids.tolist()
            )
        )
        f.write('], "annotations": [')
        x, y, w, h = (_floats(v) for v in (xy[:, 0], xy[:, 1], wh[:, 0], wh[:, 1]))
        f.write(
            ", ".join(
                f'{{"id": {j + 1}, "iscrowd": {c}, "isfake": 0, "area": {a}, "isreflected": 0, '
                f'"bbox": [{x[j]}, {y[j]}, {w[j]}, {h[j]}], "image_id": {i}, "category_id": {k}}}'
                for j, (c, a, i, k) in enumerate(
                    zip(crowd.tolist(), _floats(area), gt_image.tolist(), gt_cat.tolist(), strict=True)
                )
            )
        )
        f.write('], "categories": [')
        f.write(", ".join(f'{{"name": "class{k}", "id": {k}}}' for k in range(1, NUM_CATEGORIES + 1)))
        f.write("]}")

    hit = rng.random(n) < 0.85
    source = np.repeat(np.arange(n), np.where(rng.random(n) < 0.15, 2, 1) * hit)
    jitter = rng.normal(0, 0.1, (len(source), 4)) * np.tile(wh[source], 2)
    det_xy = xy[source] + jitter[:, :2]
    det_wh = np.maximum(wh[source] + jitter[:, 2:], 1.0)
    det_cat = gt_cat[source].copy()
    wrong = rng.random(len(source)) < 0.05
    det_cat[wrong] = rng.choice(NUM_CATEGORIES, size=int(wrong.sum())) + 1
    noise = max(0, int(DETS_PER_IMAGE * num_images) - len(source))
    boxes = np.round(
        np.concatenate(
            [
                np.concatenate([det_xy, det_wh], 1),
                np.concatenate([rng.uniform(0, 700, (noise, 2)), wh[rng.integers(0, n, noise)]], 1),
            ]
        ),
        2,
    )
    det_image = np.concatenate([gt_image[source], rng.integers(1, num_images + 1, noise)])
    det_cat = np.concatenate([det_cat, rng.choice(NUM_CATEGORIES, size=noise, p=weights) + 1])
    scores = np.round(np.concatenate([rng.uniform(0.2, 1.0, len(source)), rng.uniform(0.0, 0.7, noise)]), 5)
    # As detectors write them: float32 values as doubles (up to 17 digits), ties kept.
    boxes, scores = boxes.astype(np.float32).astype(np.float64), scores.astype(np.float32).astype(np.float64)
    order = rng.permutation(len(det_image))
    boxes, det_image, det_cat, scores = boxes[order], det_image[order], det_cat[order], scores[order]
    with open(dt_path, "w") as f:
        x, y, w, h = (_floats(boxes[:, c]) for c in range(4))
        f.write("[")
        f.write(
            ", ".join(
                f'{{"image_id": {i}, "category_id": {k}, "bbox": [{x[j]}, {y[j]}, {w[j]}, {h[j]}], "score": {s}}}'
                for j, (i, k, s) in enumerate(zip(det_image.tolist(), det_cat.tolist(), _floats(scores), strict=True))
            )
        )
        f.write("]")
    return gt_path, dt_path


_SUBPROCESS_SCRIPT = """
import json, sys, time
from ferrops._bench.detection_scale import _library_pipeline
def kib(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field))
name, gt, dt = sys.argv[1:4]
run = _library_pipeline(name, gt, dt)
base = kib("VmRSS:")
t0 = time.perf_counter()
stats = run()
cold = time.perf_counter() - t0
cold_peak = (kib("VmHWM:") - base) / 1024
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM to the current RSS
base = kib("VmRSS:")
warm = []
for _ in range(2):
    t0 = time.perf_counter()
    run()
    warm.append(time.perf_counter() - t0)
print(json.dumps({"cold_s": cold, "cold_peak_mib": cold_peak, "best_s": min(warm),
                  "best_peak_mib": (kib("VmHWM:") - base) / 1024, "stats": list(map(float, stats))}))
"""


def _library_pipeline(name: str, gt_path: str, dt_path: str) -> Callable[[], np.ndarray] | None:
    if name == "ferrops":
        from ferrops import coco

        return _pipeline(coco, coco, gt_path, dt_path)
    return _peer(name, gt_path, dt_path)


@cache
def in_fresh_process(name: str, gt_path: str, dt_path: str) -> dict[str, Any] | None:
    """``name``'s cold run and best of two more, timed in a process of its own,
    with the peak RSS growth (MiB) of each phase; None where the library is not
    installed or /proc is not available."""
    if not os.path.exists("/proc/self/clear_refs") or _library_pipeline(name, gt_path, dt_path) is None:
        return None
    out = subprocess.run(
        [sys.executable, "-c", _SUBPROCESS_SCRIPT, name, gt_path, dt_path], capture_output=True, text=True
    )
    try:
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):
        return None


def _describe(measured: dict[str, Any] | None) -> str:
    if measured is None:
        return "n/a"
    return (
        f"cold {measured['cold_s']:.2f} s +{measured['cold_peak_mib']:.0f} MiB, "
        f"best of 2 {measured['best_s']:.2f} s +{measured['best_peak_mib']:.0f} MiB"
    )


_TMP: list[tempfile.TemporaryDirectory] = []


def write_set(num_images: int = NUM_IMAGES) -> tuple[str, str]:
    tmp = tempfile.TemporaryDirectory(prefix="ferrops-bench-scale-")
    _TMP.append(tmp)  # kept until the process ends: the cases read the files lazily
    return write_objects365_like(tmp.name, num_images)


def cases(quick: bool, num_images: int = NUM_IMAGES, peers: tuple[str, ...] = PEERS) -> list[Case]:
    """One row per peer (target: 2x the faster, the lowest peak memory); none with ``quick``."""
    if quick:
        return []
    gt_path, dt_path = write_set(num_images)
    megabytes = (os.path.getsize(gt_path) + os.path.getsize(dt_path)) / 1e6
    size = f"{num_images // 1000}k img, {NUM_CATEGORIES} cls, {megabytes:.0f} MB JSON"
    ours = _library_pipeline("ferrops", gt_path, dt_path)
    assert ours is not None

    def note(name: str) -> Callable[[float], str]:
        def describe(_: float) -> str:
            ours_measured = in_fresh_process("ferrops", gt_path, dt_path)
            theirs_measured = in_fresh_process(name, gt_path, dt_path)
            return f"fresh process: ferrops {_describe(ours_measured)}; {name} {_describe(theirs_measured)}"

        return describe

    return [
        Case(
            family="detection-scale",
            kernel="COCO bbox at Objects365 scale",
            size=size,
            ferrops=ours,
            peer_name=name,
            peer=_library_pipeline(name, gt_path, dt_path),
            difference=max_abs_difference,
            target=2.0,
            note=note(name),
        )
        for name in peers
    ]


def main() -> None:
    """Prints each library's fresh-process numbers on a generated set."""
    num_images = int(sys.argv[1]) if len(sys.argv) > 1 else NUM_IMAGES
    gt_path, dt_path = write_set(num_images)
    megabytes = (os.path.getsize(gt_path) + os.path.getsize(dt_path)) / 1e6
    print(f"{num_images} images, {megabytes:.0f} MB of JSON")
    results = {name: in_fresh_process(name, gt_path, dt_path) for name in ("ferrops", *PEERS)}
    for name, measured in results.items():
        print(f"{name:>22}: {_describe(measured)}")
    reference = results["ferrops"]
    for name, measured in results.items():
        if reference is not None and measured is not None:
            print(f"{name:>22}: stats max abs diff {max_abs_difference(reference['stats'], measured['stats']):.3g}")


if __name__ == "__main__":
    main()
