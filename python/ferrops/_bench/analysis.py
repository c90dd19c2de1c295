"""Bench case of the TIDE error breakdown (``ferrops.coco.analysis.tide``)
against ``tidecv`` on the detection bench's bbox set (5,000 images, 80 classes,
~100k detections). Both sides load the files and compute AP and the main and
special dAPs (tidecv: ``datasets.COCO``, ``datasets.COCOResult``,
``TIDE.evaluate``, ``get_main_errors``, ``get_special_errors``). Target: 20x
(issue 14). The result compared is the vector of AP and the eight dAPs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Callable

import numpy as np

from . import Case, max_abs_difference
from .detection import synthetic_coco

_ERRORS = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss", "FalsePos", "FalseNeg")


def write_set(num_images: int, directory: str) -> tuple[str, str]:
    """The detection bench's set, each ground truth with a box polygon as its
    segmentation (tidecv converts every segmentation to RLE on load)."""
    gt, dt = synthetic_coco(num_images, 80, dets_per_image=20.0, seed=1)
    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        a["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    gt_path, dt_path = os.path.join(directory, "gt.json"), os.path.join(directory, "dt.json")
    with open(gt_path, "w") as f:
        json.dump(gt, f)
    with open(dt_path, "w") as f:
        json.dump(dt, f)
    return gt_path, dt_path


def ferrops_tide(gt_path: str, dt_path: str) -> Callable[[], np.ndarray]:
    from ferrops.coco import COCO, analysis

    def run() -> np.ndarray:
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(gt_path)
            result = analysis.tide(gt, gt.loadRes(dt_path))
        errors = {**result.main_errors, **result.special_errors}
        return np.array([result.ap, *(errors[name] for name in _ERRORS)])

    return run


def tidecv_tide(gt_path: str, dt_path: str) -> Callable[[], np.ndarray] | None:
    try:
        from tidecv import TIDE, datasets
    except ImportError:
        return None

    def run() -> np.ndarray:
        with contextlib.redirect_stdout(io.StringIO()):
            tide = TIDE()
            run = tide.evaluate(datasets.COCO(gt_path), datasets.COCOResult(dt_path), mode=TIDE.BOX, name="run")
            errors = {**tide.get_main_errors()["run"], **tide.get_special_errors()["run"]}
        return np.array([run.ap, *(errors[name] for name in _ERRORS)])

    return run


_TMP: list[tempfile.TemporaryDirectory] = []


def cases(quick: bool, num_images: int = 5000) -> list[Case]:
    tmp = tempfile.TemporaryDirectory(prefix="ferrops-bench-tide-")
    _TMP.append(tmp)  # kept until the process ends: the cases read the files lazily
    gt_path, dt_path = write_set(num_images, tmp.name)
    return [
        Case(
            family="analysis",
            kernel="TIDE error breakdown (load + AP + dAPs)",
            size=f"{num_images} img, 80 cls, {20 * num_images // 1000}k det",
            ferrops=ferrops_tide(gt_path, dt_path),
            peer_name="tidecv",
            peer=tidecv_tide(gt_path, dt_path),
            difference=max_abs_difference,
            target=20.0,
        )
    ]
