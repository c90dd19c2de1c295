"""Weighted boxes fusion (SPEC section 1: WBF) against the ensemble-boxes package."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ferrops

ensemble_boxes = pytest.importorskip("ensemble_boxes")

CONF_TYPES = ["avg", "max", "box_and_model_avg", "absent_model_aware_avg"]


def model_outputs(seed: int, models: int = 3, n: int = 120, classes: int = 10, tie_step: float = 0.0):
    """Jittered copies of one set of boxes, as several detectors would give, with
    some boxes outside [0, 1] and some with swapped corners (the package's checks)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(-0.02, 0.9, (n, 2))
    size = rng.uniform(0.02, 0.2, (n, 2))
    boxes, scores, labels = [], [], []
    for _ in range(models):
        b = np.concatenate([base, base + size], axis=1) + rng.normal(0, 0.01, (n, 4))
        swap = rng.random(n) < 0.05
        b[swap] = b[swap][:, [2, 1, 0, 3]]
        s = rng.uniform(0, 1, n)
        if tie_step:
            s = np.round(s / tie_step) * tie_step
        boxes.append(b)
        scores.append(s)
        labels.append(rng.integers(0, classes, n))
    return boxes, scores, labels


def both(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = ensemble_boxes.weighted_boxes_fusion(*args, **kwargs)
        got = ferrops.weighted_boxes_fusion(*args, **kwargs)
    return got, want


def assert_identical(got, want):
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


@pytest.mark.spec("WBF")
@pytest.mark.parametrize("conf_type", CONF_TYPES)
@pytest.mark.parametrize("weights", [None, [2, 1, 0.5], [1, 3, 1]])
@pytest.mark.parametrize("allows_overflow", [False, True])
def test_equals_ensemble_boxes(conf_type, weights, allows_overflow):
    for seed, tie_step in ((1, 0.0), (2, 0.125)):
        boxes, scores, labels = model_outputs(seed, tie_step=tie_step)
        got, want = both(
            boxes,
            scores,
            labels,
            weights=weights,
            iou_thr=0.5,
            skip_box_thr=0.05,
            conf_type=conf_type,
            allows_overflow=allows_overflow,
        )
        assert_identical(got, want)


@pytest.mark.spec("WBF")
def test_float32_inputs_lists_and_thresholds():
    boxes, scores, labels = model_outputs(3, models=4, n=60, classes=3)
    boxes32 = [b.astype(np.float32) for b in boxes]
    scores32 = [s.astype(np.float32) for s in scores]
    for iou_thr in (0.0, 0.3, 0.8, 1.0):
        for skip in (0.0, 0.5):
            assert_identical(*both(boxes32, scores32, labels, iou_thr=iou_thr, skip_box_thr=skip))
    as_lists = ([b.tolist() for b in boxes], [s.tolist() for s in scores], [lab.tolist() for lab in labels])
    assert_identical(*both(*as_lists, weights=[1, 2, 3, 4], conf_type="box_and_model_avg"))


@pytest.mark.spec("WBF")
def test_edge_cases_follow_the_package():
    # Zero-area boxes are skipped, everything below skip_box_thr gives empty outputs,
    # a model without boxes counts as an absent model.
    boxes = [np.array([[0.1, 0.1, 0.1, 0.5], [0.2, 0.2, 0.6, 0.6]]), np.zeros((0, 4))]
    scores = [np.array([0.9, 0.8]), np.zeros(0)]
    labels = [np.array([1, 1]), np.zeros(0)]
    for conf_type in CONF_TYPES:
        assert_identical(*both(boxes, scores, labels, conf_type=conf_type))
    got, want = both(boxes, scores, labels, skip_box_thr=0.95)
    assert_identical(got, want)
    assert got[0].shape == (0, 4)
    with pytest.warns(UserWarning, match="Zero area box skipped"):
        ferrops.weighted_boxes_fusion(boxes, scores, labels)
    with pytest.warns(UserWarning, match=r"X1 < 0 in box"):
        ferrops.weighted_boxes_fusion([np.array([[-0.1, 0.1, 0.3, 0.5]])], [np.array([0.5])], [np.array([0])])


@pytest.mark.spec("WBF")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_bad_input_is_named():
    boxes, scores, labels = model_outputs(4, models=2, n=5)
    with pytest.raises(ValueError, match=r"weighted_boxes_fusion\(\): argument 'scores_list': expected one entry per"):
        ferrops.weighted_boxes_fusion(boxes, scores[:1], labels)
    with pytest.raises(ValueError, match=r"argument 'labels_list': expected 5 values for model 1"):
        ferrops.weighted_boxes_fusion(boxes, scores, [labels[0], labels[1][:3]])
    with pytest.raises(ValueError, match=r"argument 'weights': expected one weight per model \(2\)"):
        ferrops.weighted_boxes_fusion(boxes, scores, labels, weights=[1, 2, 3])
    with pytest.raises(ValueError, match=r"argument 'conf_type'"):
        ferrops.weighted_boxes_fusion(boxes, scores, labels, conf_type="median")
    nan_scores = [scores[0].copy(), scores[1]]
    nan_scores[0][2] = np.nan
    with pytest.raises(ValueError, match=r"argument 'scores_list'.*NaN"):
        ferrops.weighted_boxes_fusion(boxes, nan_scores, labels)
    with pytest.raises(TypeError, match=r"argument 'iou_thr'"):
        ferrops.weighted_boxes_fusion(boxes, scores, labels, iou_thr="0.5")


@pytest.mark.spec("WBF-NMW")
@pytest.mark.parametrize("weights", [None, [2, 1, 0.5]])
@pytest.mark.parametrize("iou_thr", [0.3, 0.55, 0.9])
def test_non_maximum_weighted_equals_ensemble_boxes(weights, iou_thr):
    for seed, tie_step in ((5, 0.0), (6, 0.125)):
        boxes, scores, labels = model_outputs(seed, tie_step=tie_step)
        kwargs = {"weights": weights, "iou_thr": iou_thr, "skip_box_thr": 0.05}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = ensemble_boxes.non_maximum_weighted(boxes, scores, labels, **kwargs)
            got = ferrops.non_maximum_weighted(boxes, scores, labels, **kwargs)
        assert_identical(got, want)


@pytest.mark.spec("WBF", "WBF-NMW")
def test_weights_of_no_numeric_kind_are_named():
    # Found by the fuzz suite: float() of the weights raised a TypeError naming nothing.
    boxes, scores, labels = model_outputs(0, models=2, n=5)
    for function in (ferrops.weighted_boxes_fusion, ferrops.non_maximum_weighted):
        with pytest.raises(TypeError, match=rf"{function.__name__}\(\): argument 'weights'"):
            function(boxes, scores, labels, weights=[object(), object()])


@pytest.mark.spec("WBF")
def test_list_errors_name_boxes_list():
    # Found by the fuzz suite: a string or a 1-d object array as boxes_list was
    # blamed on scores_list (lengths differ), never on boxes_list.
    boxes, scores, labels = model_outputs(0, models=2, n=5)
    with pytest.raises(ValueError, match=r"argument 'boxes_list'"):
        ferrops.weighted_boxes_fusion("abc", scores, labels)
    with pytest.raises(ValueError, match=r"boxes_list"):
        ferrops.weighted_boxes_fusion(np.array(["x"] * 3, object), scores, labels)
    with pytest.raises(ValueError, match=r"argument 'labels_list': expected real numbers"):
        ferrops.weighted_boxes_fusion(boxes, scores, [lab.astype(complex) for lab in labels])
