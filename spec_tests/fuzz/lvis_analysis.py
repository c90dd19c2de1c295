"""Drivers of ``ferrops.lvis`` (DET-LVIS) and ``ferrops.coco.analysis``
(DET-ANALYSIS, DET-TIDE). Classes and methods are driven through runner functions
(the worker calls a target by name); an argument the runner builds itself (a
ground truth, an evaluated ``COCOeval``) is the marker ``BUILT`` in a well-formed
call, so the fuzzer can replace it with a hostile value."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
from hypothesis import strategies as st

from .boxes_pooling import random_boxes
from .detection_mdp import coco_eval_args, evaluated, missing_file, missing_section
from .driver import Driver, object_of, seeds
from .values import array_mutations, choice_mutations, float_mutations, int_mutations, opaque_mutations

BUILT = "<built by the runner>"


@st.composite
def lvis_args(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    images = [
        {
            "id": i,
            "width": 100,
            "height": 100,
            "neg_category_ids": [c for c in (1, 2, 3) if rng.random() < 0.3],
            "not_exhaustive_category_ids": [c for c in (1, 2, 3) if rng.random() < 0.2],
        }
        for i in range(1, draw(st.integers(1, 3)) + 1)
    ]
    boxes = random_boxes(rng, draw(st.integers(0, 6))) + 50
    annotations: list[dict[str, Any]] = []
    for i, b in enumerate(boxes):
        x0, y0, x1, y1 = (float(v) for v in b)
        annotations.append(
            {
                "id": i + 1,
                "image_id": int(rng.integers(1, len(images) + 1)),
                "category_id": int(rng.integers(1, 4)),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0),
                "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
            }
        )
    categories = [{"id": c, "frequency": f, "name": f"c{c}"} for c, f in ((1, "r"), (2, "c"), (3, "f"))]
    dataset = {"images": images, "annotations": annotations, "categories": categories}
    results = [
        {
            "image_id": a["image_id"],
            "category_id": int(rng.integers(1, 4)) if rng.random() < 0.3 else a["category_id"],
            "bbox": [*(v + float(rng.uniform(-2, 2)) for v in a["bbox"][:2]), *(v * 1.1 for v in a["bbox"][2:])],
            "score": float(rng.random()),
        }
        for a in annotations
    ]
    return {"annotation_path": dataset, "results": results, "max_dets": draw(st.sampled_from([300, 2, -1]))}


def run_lvis(annotation_path: Any) -> Any:
    from ferrops.lvis import LVIS

    gt = LVIS(annotation_path)
    ann_ids = gt.get_ann_ids()
    anns = gt.load_anns(ann_ids)
    masks = [int(gt.ann_to_mask(a).sum()) for a in anns[:1]]
    return [
        gt.get_img_ids(),
        gt.get_cat_ids(),
        ann_ids,
        len(gt.load_cats(None)),
        len(gt.load_imgs(gt.get_img_ids())),
        gt.get_ann_ids(img_ids=gt.get_img_ids()[:1], cat_ids=gt.get_cat_ids()[:1]),
        masks,
    ]


def run_lvis_results(annotation_path: Any, results: Any, max_dets: Any, max_dets_per_cat: Any = -1) -> Any:
    from ferrops.lvis import LVIS, LVISResults

    gt = LVIS(annotation_path)
    dt = LVISResults(gt, results, max_dets=max_dets, max_dets_per_cat=max_dets_per_cat)
    tops = [len(dt.get_top_results(i, 0.5)) for i in dt.get_img_ids()]
    return [len(dt.load_anns(dt.get_ann_ids())), dt.get_cat_ids(), tops]


def run_lvis_eval(
    annotation_path: Any,
    results: Any,
    max_dets: Any,
    iou_type: Any = "bbox",
    iou_thrs: Any = None,
    lvis_gt: Any = BUILT,
) -> Any:
    from ferrops.lvis import LVIS, LVISEval, LVISResults

    gt = LVIS(annotation_path) if isinstance(lvis_gt, str) and lvis_gt == BUILT else lvis_gt
    dt = LVISResults(gt, results, max_dets=max_dets) if isinstance(gt, LVIS) else results
    evaluation = LVISEval(gt, dt, iou_type)
    if iou_thrs is not None:
        evaluation.params.iou_thrs = iou_thrs
    with contextlib.redirect_stdout(io.StringIO()):
        evaluation.run()
        evaluation.print_results()
    return dict(evaluation.get_results())


def run_lvis_params(iou_type: Any) -> Any:
    from ferrops.lvis import Params

    p = Params(iou_type)
    return [p.max_dets, len(p.iou_thrs), list(p.area_rng_lbl)]


def lvis_eval_sane(kwargs: dict[str, Any], result: Any) -> None:
    assert isinstance(result, dict) and {"AP", "APr", "APc", "APf", "AR@300"} & set(result), result
    for key, value in result.items():
        assert value == -1 or 0 <= value <= 1, (key, value)


def lvis_api_error(exc_type: str, message: str) -> bool:
    """lvis-api's own errors, kept word for word (drop-in): a ground truth or
    results of no supported kind, an iou_type it does not know."""
    return (exc_type == "TypeError" and message.startswith("Unsupported type")) or (
        exc_type == "ValueError" and message.startswith("iou_type:")
    )


def lvis_documented(exc_type: str, message: str) -> bool:
    """As lvis-api: a path that does not exist is a FileNotFoundError, a dataset
    without "images", "annotations" or "categories" a KeyError."""
    return any(f(exc_type, message) for f in (lvis_api_error, missing_file, missing_section))


# -- ferrops.coco.analysis ---------------------------------------------------------


def built_coco(dataset: Any, resFile: Any) -> tuple[Any, Any]:  # noqa: N803 - pycocotools' name
    from ferrops.coco import COCO

    gt = COCO()
    gt.dataset = dataset
    gt.createIndex()
    return gt, gt.loadRes(resFile)


def run_analysis(
    function: str, dataset: Any, resFile: Any, iouType: Any, coco_eval: Any = BUILT, **options: Any
) -> Any:  # noqa: N803
    from ferrops.coco import analysis

    if isinstance(coco_eval, str) and coco_eval == BUILT:
        coco_eval = evaluated(dataset, resFile, iouType)
    return getattr(analysis, function)(coco_eval, **options)


def run_pair_analysis(function: str, dataset: Any, resFile: Any, cocoDt: Any = BUILT, **options: Any) -> Any:  # noqa: N803
    from ferrops.coco import analysis

    gt, dt = built_coco(dataset, resFile)
    if not (isinstance(cocoDt, str) and cocoDt == BUILT):
        dt = cocoDt
    return getattr(analysis, function)(gt, dt, **options)


def tide_sane(kwargs: dict[str, Any], result: Any) -> None:
    fields = object_of(result, "TideResult").fields
    assert 0 <= fields["ap"] <= 100, fields
    assert all(v >= 0 for v in fields["main_errors"].values()), fields


def confusion_sane(kwargs: dict[str, Any], result: Any) -> None:
    matrix, ids = result
    matrix = np.asarray(matrix)
    assert matrix.shape == (len(ids) + 1, len(ids) + 1) and matrix.dtype == np.int64 and (matrix >= 0).all(), result


@st.composite
def analysis_args(draw: Any, function: str, **options: st.SearchStrategy[Any]) -> dict[str, Any]:
    kwargs = draw(coco_eval_args())
    return {"function": function, **kwargs, **draw(st.fixed_dictionaries(options))}


@st.composite
def pair_args(draw: Any, function: str, **options: st.SearchStrategy[Any]) -> dict[str, Any]:
    kwargs = draw(coco_eval_args())
    del kwargs["iouType"]
    return {"function": function, **kwargs, **draw(st.fixed_dictionaries(options))}


@st.composite
def table_args(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    k = draw(st.integers(0, 3))
    return {"matrix": rng.integers(0, 20, (k + 1, k + 1)), "labels": [f"class{i}" for i in range(k)]}


def table_oracle(kwargs: dict[str, Any], result: Any) -> None:
    lines = result.splitlines()
    assert len(lines) == len(kwargs["labels"]) + 2, result
    counts = [[int(v) for v in line.split()[1:]] for line in lines[1:]]
    assert counts == np.asarray(kwargs["matrix"]).tolist(), (counts, kwargs["matrix"])


lvis_mutations = {"annotation_path": opaque_mutations(), "results": [*opaque_mutations(), *array_mutations()]}
analysis_names = ("COCOeval", "loadRes", "evaluate", "accumulate", "COCO")

LVIS_ANALYSIS = {
    "ferrops.lvis.LVIS": Driver(
        "spec_tests.fuzz.lvis_analysis:run_lvis",
        lvis_args().map(lambda kw: {"annotation_path": kw["annotation_path"]}),
        {"annotation_path": opaque_mutations()},
        ("LVIS",),
        documented=lvis_documented,
    ),
    "ferrops.lvis.LVISResults": Driver(
        "spec_tests.fuzz.lvis_analysis:run_lvis_results",
        lvis_args(),
        {**lvis_mutations, "max_dets": int_mutations(), "max_dets_per_cat": int_mutations()},
        ("LVISResults", "LVIS", "get_top_results"),
        documented=lvis_documented,
    ),
    "ferrops.lvis.LVISEval": Driver(
        "spec_tests.fuzz.lvis_analysis:run_lvis_eval",
        st.tuples(lvis_args(), st.sampled_from(["bbox", "segm"])).map(
            lambda drawn: {**drawn[0], "iou_type": drawn[1], "iou_thrs": np.linspace(0.5, 0.95, 10)}
        ),
        {
            **lvis_mutations,
            "max_dets": int_mutations(),
            "iou_type": choice_mutations(),
            "iou_thrs": [*opaque_mutations(), *array_mutations(optional=True)],
            "lvis_gt": opaque_mutations(),
        },
        ("LVISEval", "LVISResults", "LVIS", "evaluate", "accumulate", "summarize"),
        documented=lvis_documented,
        sane=lvis_eval_sane,
    ),
    "ferrops.lvis.Params": Driver(
        "spec_tests.fuzz.lvis_analysis:run_lvis_params",
        st.fixed_dictionaries({"iou_type": st.sampled_from(["bbox", "segm"])}),
        {"iou_type": choice_mutations()},
        ("Params",),
    ),
    **{
        f"ferrops.coco.analysis.{name}": Driver(
            "spec_tests.fuzz.lvis_analysis:run_analysis",
            analysis_args(name),
            {"coco_eval": opaque_mutations()},
            (name, *analysis_names),
            documented=missing_file,
        )
        for name in ("per_category", "per_category_table")
    },
    "ferrops.coco.analysis.precision_recall_f1": Driver(
        "spec_tests.fuzz.lvis_analysis:run_analysis",
        analysis_args(
            "precision_recall_f1",
            score_threshold=st.sampled_from([0.0, 0.5]),
            iou_threshold=st.sampled_from([0.5, 0.75]),
            area=st.sampled_from(["all", "small"]),
        ),
        {
            "coco_eval": opaque_mutations(),
            "score_threshold": float_mutations(),
            "iou_threshold": float_mutations(),
            "area": choice_mutations(),
        },
        ("precision_recall_f1", *analysis_names),
        documented=missing_file,
    ),
    "ferrops.coco.analysis.confusion_matrix": Driver(
        "spec_tests.fuzz.lvis_analysis:run_pair_analysis",
        pair_args(
            "confusion_matrix",
            iou_threshold=st.sampled_from([0.3, 0.5]),
            score_threshold=st.sampled_from([0.0, 0.25]),
        ),
        {"cocoDt": opaque_mutations(), "iou_threshold": float_mutations(), "score_threshold": float_mutations()},
        ("confusion_matrix", "loadRes", "COCO"),
        documented=missing_file,
        sane=confusion_sane,
    ),
    "ferrops.coco.analysis.confusion_matrix_table": Driver(
        "ferrops.coco.analysis:confusion_matrix_table",
        table_args(),
        {"matrix": array_mutations(floats=False), "labels": opaque_mutations()},
        ("confusion_matrix_table",),
        oracle=table_oracle,
    ),
    "ferrops.coco.analysis.tide": Driver(
        "spec_tests.fuzz.lvis_analysis:run_pair_analysis",
        pair_args("tide", pos_threshold=st.sampled_from([0.5, 0.7]), background_threshold=st.just(0.1)),
        {
            "cocoDt": opaque_mutations(),
            "pos_threshold": float_mutations(),
            "background_threshold": float_mutations(),
            "max_dets": int_mutations(),
        },
        ("tide", "loadRes", "COCO"),
        documented=missing_file,
        sane=tide_sane,
    ),
}

ANALYSIS_RESULT_TYPES = {"ferrops.coco.analysis.TideResult": "ferrops.coco.analysis.tide"}
