"""Detection evaluation against pycocotools and the fast COCO evaluators.

The case is the whole pipeline a user runs: load the ground-truth JSON, load the
results JSON, evaluate, accumulate, summarize, on a synthetic COCO-like set
(5,000 images, 80 classes, ~100k detections) written to temporary files. Peers:
pycocotools (the reference, target 100x), and the Rust/C++ evaluators
ultrafast-pycocotools (the issue's speed peer, target 1.2x), hotcoco and
faster-coco-eval when installed. Every peer's 12 ``stats`` are compared with
ours. Peak memory (RSS growth of a fresh process) is printed for each.
"""

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


def synthetic_coco(
    num_images: int,
    num_classes: int,
    gt_per_image: float = 7.0,
    dets_per_image: float = 20.0,
    seed: int = 0,
    quirks: bool = True,
) -> tuple[dict, list[dict]]:
    """A COCO-like ground truth and bbox results.

    With ``quirks`` the set exercises pycocotools' corner cases: crowd ground
    truth, ``area`` exactly on the small/medium/large edges, ground-truth area
    different from the box area, scores rounded to produce ties, duplicate and
    wrong-class detections, images with more than 100 detections, images without
    ground truth, non-contiguous ids in shuffled order.
    """
    rng = np.random.default_rng(seed)
    image_ids = rng.choice(np.arange(1, 4 * num_images + 1), size=num_images, replace=False)
    cat_ids = np.sort(rng.choice(np.arange(1, 3 * num_classes + 1), size=num_classes, replace=False))
    images = [{"id": int(i), "width": 640, "height": 480, "file_name": f"{int(i):012d}.jpg"} for i in image_ids]
    categories = [{"id": int(c), "name": f"class{int(c)}", "supercategory": "thing"} for c in cat_ids]

    n_gt = rng.poisson(gt_per_image, size=num_images)
    total_gt = int(n_gt.sum())
    gt_img = np.repeat(image_ids, n_gt)
    gt_cat = rng.choice(cat_ids, size=total_gt)
    wh = np.exp(rng.uniform(np.log(4), np.log(300), size=(total_gt, 2)))
    xy = rng.uniform(0, 400, size=(total_gt, 2))
    if quirks:
        wh = np.round(wh, 1)
        xy = np.round(xy, 1)
    area = wh[:, 0] * wh[:, 1]
    crowd = np.zeros(total_gt, dtype=bool)
    if quirks:
        area = area * rng.uniform(0.6, 1.0, size=total_gt)
        edges = rng.random(total_gt)
        area[edges < 0.03] = 32.0**2
        area[(edges >= 0.03) & (edges < 0.06)] = 96.0**2
        crowd = rng.random(total_gt) < 0.08
    gt_ids = rng.permutation(np.arange(1, total_gt + 1) * 3)
    annotations = [
        {
            "id": int(gt_ids[j]),
            "image_id": int(gt_img[j]),
            "category_id": int(gt_cat[j]),
            "bbox": [float(xy[j, 0]), float(xy[j, 1]), float(wh[j, 0]), float(wh[j, 1])],
            "area": float(area[j]),
            "iscrowd": int(crowd[j]),
            "segmentation": [],
        }
        for j in range(total_gt)
    ]
    ground_truth = {
        "info": {"description": "ferrops synthetic"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }

    # True detections: jittered copies of ground truth (some twice), then noise.
    hit = rng.random(total_gt) < 0.8
    copies = np.where(rng.random(total_gt) < 0.1, 2, 1) * hit
    src = np.repeat(np.arange(total_gt), copies)
    jitter = rng.normal(0, 0.08, size=(len(src), 4)) * np.repeat(wh[src], 2, axis=1).reshape(-1, 4)[:, [0, 1, 0, 1]]
    det_xy = xy[src] + jitter[:, :2]
    det_wh = np.maximum(wh[src] + jitter[:, 2:], 1.0)
    det_img = gt_img[src]
    det_cat = gt_cat[src].copy()
    if quirks:
        wrong = rng.random(len(src)) < 0.05
        det_cat[wrong] = rng.choice(cat_ids, size=int(wrong.sum()))
    n_noise = max(0, int(dets_per_image * num_images) - len(src))
    noise_img = rng.choice(image_ids, size=n_noise)
    if quirks and num_images > 3:
        # A few crowded images push past maxDets=100.
        noise_img[: min(n_noise, 360)] = image_ids[:3].repeat(120)[: min(n_noise, 360)]
    noise_xy = rng.uniform(0, 500, size=(n_noise, 2))
    noise_wh = np.exp(rng.uniform(np.log(4), np.log(300), size=(n_noise, 2)))
    all_img = np.concatenate([det_img, noise_img])
    all_cat = np.concatenate([det_cat, rng.choice(cat_ids, size=n_noise)])
    all_xy = np.concatenate([det_xy, noise_xy])
    all_wh = np.concatenate([det_wh, noise_wh])
    scores = np.concatenate([rng.uniform(0.3, 1.0, size=len(src)), rng.uniform(0.0, 0.8, size=n_noise)])
    if quirks:
        scores = np.round(scores, 2)
        all_xy = np.round(all_xy, 1)
        all_wh = np.round(all_wh, 1)
    order = rng.permutation(len(all_img))
    results = [
        {
            "image_id": int(all_img[j]),
            "category_id": int(all_cat[j]),
            "bbox": [float(all_xy[j, 0]), float(all_xy[j, 1]), float(all_wh[j, 0]), float(all_wh[j, 1])],
            "score": float(scores[j]),
        }
        for j in order
    ]
    return ground_truth, results


#: Image sizes ([height, width]) the mask sets draw from: COCO's common ones.
_IMAGE_SIZES = ((480, 640), (427, 640), (640, 480), (375, 500), (640, 427))


def _polygon(rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float) -> list[float]:
    """A star-shaped polygon of 6 to 24 vertices around ``(cx, cy)``, rounded to 0.01."""
    k = int(rng.integers(6, 25))
    angles = np.sort(rng.uniform(0, 2 * np.pi, size=k))
    radius = rng.uniform(0.55, 1.0, size=k)
    xy = np.stack([cx + rx * radius * np.cos(angles), cy + ry * radius * np.sin(angles)], axis=1)
    return [float(v) for v in np.round(xy, 2).reshape(-1)]


def _uncompressed(dense: np.ndarray) -> dict:
    """The uncompressed RLE of a ``[H, W]`` 0/1 mask (column-major runs, 0-run first)."""
    flat = np.asarray(dense, dtype=np.uint8).reshape(-1, order="F")
    ends = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], ends, [flat.size]])).tolist()
    if flat.size and flat[0] == 1:
        counts = [0, *counts]
    return {"size": list(dense.shape), "counts": counts}


def synthetic_segm(
    num_images: int, num_classes: int, gt_per_image: float = 6.0, dets_per_image: float = 12.4, seed: int = 0
) -> tuple[dict, list[dict]]:
    """A COCO-like instance-segmentation ground truth and mask results.

    Ground truth: polygons (a tenth in two parts, some running past the image
    border), about 1% crowd regions as uncompressed RLE; images of COCO's sizes,
    some without annotations. Results: compressed RLEs (``counts`` str) of
    jittered ground-truth polygons, duplicates, wrong classes and noise, scores
    rounded to produce ties.
    """
    from .. import mask as mask_api

    rng = np.random.default_rng(seed)
    image_ids = rng.choice(np.arange(1, 4 * num_images + 1), size=num_images, replace=False)
    cat_ids = np.sort(rng.choice(np.arange(1, 3 * num_classes + 1), size=num_classes, replace=False))
    sizes = [_IMAGE_SIZES[int(k)] for k in rng.integers(0, len(_IMAGE_SIZES), size=num_images)]
    images = [
        {"id": int(i), "height": h, "width": w, "file_name": f"{int(i):012d}.jpg"}
        for i, (h, w) in zip(image_ids, sizes)
    ]
    categories = [{"id": int(c), "name": f"class{int(c)}", "supercategory": "thing"} for c in cat_ids]
    annotations: list[dict] = []
    results: list[dict] = []
    shapes: list[tuple[int, int, list[float], float]] = []  # image index, category, polygon, radius
    for n, (image_id, (h, w)) in enumerate(zip(image_ids, sizes)):
        for _ in range(int(rng.poisson(gt_per_image))):
            rx, ry = np.exp(rng.uniform(np.log(2), np.log(w / 3), size=2))
            cx, cy = rng.uniform(-10, w + 10), rng.uniform(-10, h + 10)
            category = int(rng.choice(cat_ids))
            crowd = rng.random() < 0.01
            if crowd:
                dense = mask_api.decode(mask_api.merge(mask_api.frPyObjects([_polygon(rng, cx, cy, rx, ry)], h, w)))
                segmentation: Any = _uncompressed(dense)
            else:
                segmentation = [_polygon(rng, cx, cy, rx, ry)]
                if rng.random() < 0.1:
                    segmentation.append(_polygon(rng, cx + rx, cy, rx / 2, ry / 2))
            rle = mask_api.merge(mask_api.frPyObjects(segmentation, h, w)) if not crowd else segmentation
            area = float(mask_api.area(mask_api.frPyObjects(rle, h, w) if crowd else rle))
            x, y, bw, bh = (float(v) for v in mask_api.toBbox(mask_api.frPyObjects(rle, h, w) if crowd else rle))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": int(image_id),
                    "category_id": category,
                    "segmentation": segmentation,
                    "area": area,
                    "bbox": [x, y, bw, bh],
                    "iscrowd": int(crowd),
                }
            )
            shapes.append((n, category, segmentation[0] if not crowd else _polygon(rng, cx, cy, rx, ry), (rx + ry) / 2))
    # Detections: most ground truth found (a tenth twice), some with the wrong class, then noise.
    found = [s for s in shapes if rng.random() < 0.8]
    found += [s for s in found if rng.random() < 0.1]
    noise = max(0, int(dets_per_image * num_images) - len(found))
    for _ in range(noise):
        n = int(rng.integers(0, num_images))
        h, w = sizes[n]
        rx, ry = np.exp(rng.uniform(np.log(2), np.log(w / 3), size=2))
        polygon = _polygon(rng, rng.uniform(0, w), rng.uniform(0, h), rx, ry)
        found.append((n, int(rng.choice(cat_ids)), polygon, (rx + ry) / 2))
    order = rng.permutation(len(found))
    polygons_by_image: dict[int, list[tuple[int, list[float]]]] = {}
    for j in order:
        n, category, source, radius = found[int(j)]
        if rng.random() < 0.05:
            category = int(rng.choice(cat_ids))
        # The shape moved and each vertex shaken, by up to about a tenth of its size.
        shift = rng.normal(0, 0.06 * radius, size=2)
        shaken = np.asarray(source).reshape(-1, 2) + shift + rng.normal(0, 0.05 * radius, size=(len(source) // 2, 2))
        polygon = [float(v) for v in np.round(shaken, 2).reshape(-1)]
        polygons_by_image.setdefault(n, []).append((len(results), polygon))
        results.append({"image_id": int(image_ids[n]), "category_id": category})
    scores = np.round(rng.uniform(0.0, 1.0, size=len(results)), 2)
    for n, items in polygons_by_image.items():
        h, w = sizes[n]
        for (r, _), rle in zip(items, mask_api.frPyObjects([p for _, p in items], h, w)):
            results[r]["segmentation"] = {"size": [h, w], "counts": rle["counts"].decode()}
            results[r]["score"] = float(scores[r])
    ground_truth = {"info": {"description": "ferrops synthetic masks"}, "images": images}
    ground_truth.update({"annotations": annotations, "categories": categories})
    return ground_truth, results


def _quiet(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with contextlib.redirect_stdout(io.StringIO()):
            return fn()

    return run


def _pipeline(coco_module: Any, cocoeval_module: Any, gt_path: str, dt_path: str) -> Callable[[], np.ndarray]:
    def run() -> np.ndarray:
        gt = coco_module.COCO(gt_path)
        dt = gt.loadRes(dt_path)
        ev = cocoeval_module.COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        return np.asarray(ev.stats, dtype=np.float64)

    return _quiet(run)


def _peer(name: str, gt_path: str, dt_path: str) -> Callable[[], np.ndarray] | None:
    """The pipeline with a peer's drop-in modules, None when not installed."""
    try:
        if name == "pycocotools":
            from pycocotools import coco, cocoeval
        elif name == "ultrafast-pycocotools":
            from ultrafast_pycocotools import coco, cocoeval
        elif name == "hotcoco":
            import hotcoco

            coco = cocoeval = hotcoco
        elif name == "faster-coco-eval":
            from faster_coco_eval import COCO, COCOeval_faster

            coco = SimpleNamespace(COCO=COCO)
            cocoeval = SimpleNamespace(
                COCOeval=lambda g, d, t: COCOeval_faster(g, d, t, print_function=lambda *a, **k: None)
            )
        else:
            return None
    except ImportError:
        return None
    return _pipeline(coco, cocoeval, gt_path, dt_path)


def write_set(num_images: int, num_classes: int, dets_per_image: float, directory: str) -> tuple[str, str]:
    gt, dt = synthetic_coco(num_images, num_classes, dets_per_image=dets_per_image, seed=1)
    gt_path, dt_path = os.path.join(directory, "gt.json"), os.path.join(directory, "dt.json")
    with open(gt_path, "w") as f:
        json.dump(gt, f)
    with open(dt_path, "w") as f:
        json.dump(dt, f)
    return gt_path, dt_path


_TMP: list[tempfile.TemporaryDirectory] = []


PEERS = ("pycocotools", "ultrafast-pycocotools", "hotcoco", "faster-coco-eval")


def cases(quick: bool, num_images: int = 5000, peers: tuple[str, ...] = PEERS, with_memory: bool = True) -> list[Case]:
    """One row per peer on the full-size set (``ferrops bench``); ``benches/`` runs
    a smaller set because pycocotools takes tens of seconds on the full one."""
    from ferrops import coco as ferrops_coco

    tmp = tempfile.TemporaryDirectory(prefix="ferrops-bench-det-")
    _TMP.append(tmp)  # kept until the process ends: the cases read the files lazily
    gt_path, dt_path = write_set(num_images, 80, 20.0, tmp.name)
    ours = _pipeline(ferrops_coco, ferrops_coco, gt_path, dt_path)
    size = f"{num_images} img, 80 cls, {20 * num_images // 1000}k det"
    targets = {"pycocotools": 100.0, "ultrafast-pycocotools": 1.2}

    def memory_note(name: str) -> Callable[[float], str]:
        def note(_: float) -> str:
            ours_mb, theirs_mb = peak_memory_mb("ferrops", gt_path, dt_path), peak_memory_mb(name, gt_path, dt_path)
            fmt = lambda mb: "n/a" if mb is None else f"{mb:.0f} MiB"  # noqa: E731
            return f"peak RSS +{fmt(ours_mb)} vs +{fmt(theirs_mb)}"

        return note

    return [
        Case(
            family="detection",
            kernel="COCO load+eval+summarize",
            size=size,
            ferrops=ours,
            peer_name=name,
            peer=_peer(name, gt_path, dt_path),
            difference=max_abs_difference,
            target=targets.get(name),
            note=memory_note(name) if with_memory else None,
        )
        for name in peers
    ]


_PEAK_SCRIPT = """
import contextlib, io, sys
from ferrops._bench.detection import _peer, _pipeline
def rss(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field))
name, gt, dt = sys.argv[1:4]
if name == "ferrops":
    from ferrops import coco
    run = _pipeline(coco, coco, gt, dt)
else:
    run = _peer(name, gt, dt)
before = rss("VmRSS:")
run()
print((rss("VmHWM:") - before) / 1024)
"""


def peak_memory_mb(name: str, gt_path: str, dt_path: str) -> float | None:
    """Peak RSS growth (MiB) of one pipeline run in a fresh process, after imports;
    None where /proc is not available or the peer is not installed."""
    import subprocess
    import sys

    if not os.path.exists("/proc/self/status"):
        return None
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, name, gt_path, dt_path], capture_output=True, text=True)
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
