"""Drivers of detection metrics (VOC, COCO, MeanAveragePrecision), the MDP
solvers and the package-level helpers. Classes and methods are driven through
small runner functions (the worker calls a target by name)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

from .boxes_pooling import random_boxes
from .driver import Driver, assert_close, seeds
from .values import array_mutations, bool_mutations, choice_mutations, float_mutations, int_mutations, opaque_mutations


@st.composite
def voc_ap_args(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    n = draw(st.integers(0, 8))
    return {
        "recall": np.sort(rng.random(n)),
        "precision": rng.random(n),
        "use_07_metric": draw(st.booleans()),
    }


def voc_ap_oracle(kwargs: dict[str, Any], result: Any) -> None:
    r, p = np.asarray(kwargs["recall"], np.float64), np.asarray(kwargs["precision"], np.float64)
    if kwargs["use_07_metric"]:
        expected = np.mean([np.max(p[r >= t], initial=0.0) for t in np.arange(0, 1.1, 0.1)])
    else:
        mrec, mpre = np.concatenate([[0.0], r, [1.0]]), np.concatenate([[0.0], p, [0.0]])
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]
        i = np.where(mrec[1:] != mrec[:-1])[0]
        expected = np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])
    assert isinstance(result, float)
    assert_close(np.asarray(result), expected, rtol=1e-9, atol=1e-12)


@st.composite
def voc_eval_args(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    d, g = draw(st.integers(0, 8)), draw(st.integers(0, 6))
    return {
        "det_image_ids": rng.integers(0, 3, d),
        "det_boxes": random_boxes(rng, d) + 60,
        "det_scores": rng.random(d).astype(np.float32),
        "gt_image_ids": rng.integers(0, 3, g),
        "gt_boxes": random_boxes(rng, g) + 60,
        "gt_difficult": rng.random(g) < 0.2,
        "iou_threshold": draw(st.sampled_from([0.5, 0.3])),
    }


def voc_eval_sane(kwargs: dict[str, Any], result: Any) -> None:
    rec, prec, ap = result
    assert rec.shape == prec.shape == (len(kwargs["det_scores"]),) and 0 <= ap <= 1 or np.isnan(ap), result


@st.composite
def map_args(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    images = draw(st.integers(0, 3))
    preds, targets = [], []
    for _ in range(images):
        d, g = draw(st.integers(0, 4)), draw(st.integers(0, 4))
        preds.append({"boxes": random_boxes(rng, d) + 60, "scores": rng.random(d), "labels": rng.integers(0, 2, d)})
        targets.append({"boxes": random_boxes(rng, g) + 60, "labels": rng.integers(0, 2, g)})
    return {
        "preds": preds,
        "target": targets,
        "box_format": draw(st.sampled_from(["xyxy", "xywh", "cxcywh"])),
        "max_detection_thresholds": draw(st.sampled_from([None, [1, 10, 100]])),
        "class_metrics": draw(st.booleans()),
    }


def run_mean_average_precision(preds: Any, target: Any, **options: Any) -> Any:
    from ferrops import MeanAveragePrecision

    metric = MeanAveragePrecision(**options)
    metric.update(preds, target)
    return metric.compute()


def map_sane(kwargs: dict[str, Any], result: Any) -> None:
    assert isinstance(result, dict) and "map" in result, result


@st.composite
def coco_dataset(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    images = [{"id": i, "width": 100, "height": 100} for i in range(1, draw(st.integers(1, 3)) + 1)]
    boxes = random_boxes(rng, draw(st.integers(0, 5))) + 50
    annotations = [
        {
            "id": i + 1,
            "image_id": int(rng.integers(1, len(images) + 1)),
            "category_id": int(rng.integers(1, 3)),
            "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
            "area": float((b[2] - b[0]) * (b[3] - b[1])),
            "iscrowd": 0,
        }
        for i, b in enumerate(boxes)
    ]
    return {"images": images, "annotations": annotations, "categories": [{"id": 1}, {"id": 2}]}


def coco_records(dataset: dict[str, Any], rng: np.random.Generator) -> list[dict[str, Any]]:
    return [
        {**{k: a[k] for k in ("image_id", "category_id")}, "bbox": [v + 1 for v in a["bbox"]], "score": float(s)}
        for a, s in zip(dataset["annotations"], rng.random(len(dataset["annotations"])))
    ]


@st.composite
def coco_eval_args(draw: Any) -> dict[str, Any]:
    dataset = draw(coco_dataset())
    return {"dataset": dataset, "resFile": coco_records(dataset, draw(seeds())), "iouType": "bbox"}


def run_coco(dataset: Any) -> Any:
    from ferrops.coco import COCO

    gt = COCO()
    gt.dataset = dataset
    gt.createIndex()
    return [gt.getImgIds(), gt.getCatIds(), gt.getAnnIds(), len(gt.loadAnns(gt.getAnnIds()))]


def evaluated(dataset: Any, resFile: Any, iouType: Any) -> Any:
    from ferrops.coco import COCO, COCOeval

    gt = COCO()
    gt.dataset = dataset
    gt.createIndex()
    evaluation = COCOeval(gt, gt.loadRes(resFile), iouType)
    evaluation.evaluate()
    evaluation.accumulate()
    return evaluation


def run_cocoeval(dataset: Any, resFile: Any, iouType: Any) -> Any:
    evaluation = evaluated(dataset, resFile, iouType)
    evaluation.summarize()
    return np.asarray(evaluation.stats)


def run_pr_curves(dataset: Any, resFile: Any, iouType: Any) -> Any:
    from ferrops.detection import per_category_ap, pr_curves

    evaluation = evaluated(dataset, resFile, iouType)
    return per_category_ap(evaluation), pr_curves(evaluation)


def run_plot_pr_curves(dataset: Any, resFile: Any, iouType: Any) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from ferrops.detection import plot_pr_curves

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pr.png"
        plot_pr_curves(evaluated(dataset, resFile, iouType), path)
        return path.stat().st_size > 0


def run_params(iouType: Any) -> Any:
    from ferrops.coco import Params

    p = Params(iouType)
    return [list(p.maxDets), len(p.iouThrs)]


def missing_section(exc_type: str, message: str) -> bool:
    """As pycocotools: getAnnIds() on a dataset without "annotations" raises KeyError."""
    return exc_type == "KeyError" and message in ("'annotations'", "'images'", "'categories'")


def missing_file(exc_type: str, message: str) -> bool:
    """As pycocotools (and test_detection.py): loadRes of a path that does not exist."""
    return exc_type == "FileNotFoundError"


def only_bbox(exc_type: str, message: str) -> bool:
    """Documented: ferrops evaluates bounding boxes only ("segm", pycocotools' default, is refused)."""
    return exc_type == "ValueError" and "the only type ferrops evaluates" in message


def stats_sane(kwargs: dict[str, Any], result: Any) -> None:
    assert np.shape(result) == (12,), result


coco_eval_mutations = {
    "dataset": opaque_mutations(),
    "resFile": [*opaque_mutations(), *array_mutations()],
    "iouType": choice_mutations(),
}

DETECTION = {
    "ferrops.voc_ap": Driver(
        "ferrops:voc_ap",
        voc_ap_args(),
        {"recall": array_mutations(), "precision": array_mutations(), "use_07_metric": bool_mutations()},
        ("voc_ap",),
        oracle=voc_ap_oracle,
    ),
    "ferrops.voc_eval": Driver(
        "ferrops:voc_eval",
        voc_eval_args(),
        {
            "det_image_ids": array_mutations(floats=False),
            "det_boxes": array_mutations(),
            "det_scores": array_mutations(),
            "gt_image_ids": array_mutations(floats=False),
            "gt_boxes": array_mutations(),
            "gt_difficult": array_mutations(floats=False, optional=True),
            "iou_threshold": float_mutations(),
            "use_07_metric": bool_mutations(),
            "use_legacy_coordinate": bool_mutations(),
        },
        ("voc_eval",),
        sane=voc_eval_sane,
    ),
    "ferrops.MeanAveragePrecision": Driver(
        "spec_tests.fuzz.detection_mdp:run_mean_average_precision",
        map_args(),
        {
            "preds": opaque_mutations(),
            "target": opaque_mutations(),
            "box_format": choice_mutations(),
            "iou_thresholds": [*opaque_mutations(), *float_mutations()],
            "max_detection_thresholds": [*opaque_mutations(), *int_mutations()],
            "class_metrics": bool_mutations(),
            "average": choice_mutations(),
        },
        ("MeanAveragePrecision", "update", "compute"),
        sane=map_sane,
    ),
    "ferrops.coco.COCO": Driver(
        "spec_tests.fuzz.detection_mdp:run_coco",
        st.fixed_dictionaries({"dataset": coco_dataset()}),
        {"dataset": opaque_mutations()},
        ("COCO", "createIndex"),
        documented=missing_section,
    ),
    "ferrops.coco.COCOeval": Driver(
        "spec_tests.fuzz.detection_mdp:run_cocoeval",
        coco_eval_args(),
        coco_eval_mutations,
        ("COCOeval", "loadRes", "evaluate", "accumulate", "summarize", "COCO"),
        documented=missing_file,
        sane=stats_sane,
    ),
    "ferrops.coco.Params": Driver(
        "spec_tests.fuzz.detection_mdp:run_params",
        st.fixed_dictionaries({"iouType": st.just("bbox")}),
        {"iouType": choice_mutations()},
        ("Params",),
        documented=only_bbox,
    ),
    "ferrops.per_category_ap": Driver(
        "spec_tests.fuzz.detection_mdp:run_pr_curves",
        coco_eval_args(),
        coco_eval_mutations,
        ("COCOeval", "loadRes", "evaluate", "accumulate", "per_category_ap", "pr_curves", "COCO"),
        documented=missing_file,
    ),
    "ferrops.plot_pr_curves": Driver(
        "spec_tests.fuzz.detection_mdp:run_plot_pr_curves",
        coco_eval_args(),
        coco_eval_mutations,
        ("COCOeval", "loadRes", "evaluate", "accumulate", "plot_pr_curves", "COCO"),
        documented=missing_file,
    ),
}
# pr_curves is driven with per_category_ap (one runner calls both).
DETECTION["ferrops.pr_curves"] = DETECTION["ferrops.per_category_ap"]
