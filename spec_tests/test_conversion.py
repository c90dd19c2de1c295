"""Every user input goes through one converter (issue 19, items 6 and 7): a ragged
or non-numeric nested list, a scalar option of the wrong kind, or a copy no
machine can hold is a ValueError/TypeError/MemoryError naming the function and the
argument, never NumPy's, torch's or PyO3's own message.

`spec_tests/test_fuzz.py` finds such defects at random; these are the ones it
found, kept as fixed cases.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import ferrops
from ferrops import mdp

RAGGED = [[1.0, 2.0], [3.0]]
FEATURES = np.zeros((1, 2, 6, 6), np.float32)
BOXES = np.array([[0, 0, 2, 2], [1, 1, 3, 3]], np.float32)
SCORES = np.array([0.9, 0.8], np.float32)
Q = np.zeros((1, 2, 4, 8), np.float32)
P = np.array([[[0.5, 0.5], [0.0, 1.0]]])
R = np.array([1.0, 0.0])


def torch_module(name: str, *args: Any) -> Any:
    """``ferrops.nn.<name>(*args)``, a torch module (ferrops.nn builds its classes
    when torch is first used): the case skips where torch is not installed (the
    wheel is tested without it too)."""
    pytest.importorskip("torch")
    return getattr(ferrops.nn, name)(*args)


def huge(*shape: int, dtype: Any = np.float32) -> np.ndarray:
    """A zero-stride view of ``shape`` (no memory held) whose copy no machine can hold."""
    return np.broadcast_to(np.zeros((), dtype), shape)


# (call, function, argument): each gets a ragged nested list for the argument.
RAGGED_CALLS: list[tuple[Callable[[Any], Any], str, str]] = [
    (lambda x: ferrops.box_area(x), "box_area", "boxes"),
    (lambda x: ferrops.box_iou(BOXES, x), "box_iou", "boxes2"),
    (lambda x: ferrops.nms(BOXES, x, 0.5), "nms", "scores"),
    (lambda x: ferrops.batched_nms(BOXES, SCORES, x, 0.5), "batched_nms", "idxs"),
    (lambda x: ferrops.matrix_nms(BOXES, SCORES, x), "matrix_nms", "idxs"),
    (lambda x: ferrops.max_pool2d(x, 2), "max_pool2d", "input"),
    (lambda x: ferrops.spatial_pyramid_pool(x, (2, 1)), "spatial_pyramid_pool", "input"),
    (lambda x: torch_module("SPP", (2, 1))(x), "spatial_pyramid_pool", "input"),
    (lambda x: ferrops.roi_align(FEATURES, x, 2), "roi_align", "boxes"),
    (lambda x: ferrops.scaled_dot_product_attention(Q, Q, Q, attn_mask=x), "scaled_dot_product_attention", "attn_mask"),
    (lambda x: ferrops.flash_attn_func(x, Q, Q), "flash_attn_func", "q"),
    (lambda x: ferrops.confusion_matrix(x, np.zeros(2, np.int64), 2), "confusion_matrix", "target"),
    (lambda x: ferrops.segmentation_metrics(x), "segmentation_metrics", "cm"),
    (lambda x: ferrops.voc_ap(x, np.ones(2)), "voc_ap", "recall"),
    (lambda x: mdp.value_iteration(x, R, 0.9), "value_iteration", "P"),
    (lambda x: mdp.policy_iteration(P, x, 0.9), "policy_iteration", "R"),
    (lambda x: mdp.incremental_mean(x), "incremental_mean", "x"),
]


@pytest.mark.spec("BOX-IOU", "POOL-SPP", "ATT-MASK", "SEG-CM", "DET-VOC10", "RL-CHECK")
@pytest.mark.parametrize(("call", "function", "argument"), RAGGED_CALLS, ids=[f"{f}-{a}" for _, f, a in RAGGED_CALLS])
def test_a_ragged_nested_list_is_an_error_naming_the_function_and_argument(
    call: Callable[[Any], Any], function: str, argument: str
) -> None:
    with pytest.raises((TypeError, ValueError), match=rf"^{function}\(\): argument '{argument}'"):
        call(RAGGED)


# (call, function, argument, the copy's bytes): each gets a 2**40-row view.
HUGE_CALLS: list[tuple[Callable[[], Any], str, str, int]] = [
    (lambda: ferrops.box_area(huge(2**40, 4)), "box_area", "boxes", 2**44),
    (lambda: ferrops.box_iou(BOXES, huge(2**40, 4)), "box_iou", "boxes2", 2**44),
    (lambda: ferrops.box_convert(huge(2**40, 4, dtype=np.int32), "xyxy", "xywh"), "box_convert", "boxes", 2**45),
    (lambda: ferrops.generalized_box_iou_loss(huge(2**40, 4), BOXES[:1]), "generalized_box_iou_loss", "boxes1", 2**44),
    (lambda: ferrops.adaptive_max_pool2d(huge(2**40, 2, 6, 1), 1), "adaptive_max_pool2d", "input", 2**40 * 48),
    (lambda: torch_module("SPPF", 3)(huge(2**40, 2, 6, 6)), "sppf", "input", 2**40 * 288),
    (lambda: mdp.incremental_mean(huge(2**40)), "incremental_mean", "x", 2**43),
    (
        lambda: ferrops.voc_eval([], np.zeros((0, 4)), [], huge(2**40), np.zeros((0, 4))),
        "voc_eval",
        "gt_image_ids",
        2**42,
    ),
]


@pytest.mark.spec("RUN-LIMITS")
@pytest.mark.parametrize(("call", "function", "argument", "nbytes"), HUGE_CALLS, ids=[h[1] for h in HUGE_CALLS])
def test_a_copy_no_machine_can_hold_is_a_memory_error_naming_function_argument_shape_and_bytes(
    call: Callable[[], Any], function: str, argument: str, nbytes: int
) -> None:
    with pytest.raises(MemoryError) as caught:
        call()
    message = str(caught.value)
    assert message.startswith(f"{function}(): a "), message
    assert f"copy of argument '{argument}' of shape [1099511627776" in message
    assert re.search(rf"needs {nbytes} bytes", message), message


@pytest.mark.spec("RL-GRID", "RUN-LIMITS")
@pytest.mark.parametrize("sparse", [False, True])
def test_a_grid_world_no_machine_can_hold_is_refused_before_anything_is_allocated(sparse: bool) -> None:
    with pytest.raises(MemoryError, match=r"^grid_world\(\): a grid world of 2147483648 x 3 cells needs \d+ bytes"):
        mdp.grid_world(2**31, 3, (0, 0), sparse=sparse)


@pytest.mark.spec("RL-CHECK", "RUN-LIMITS")
def test_a_model_of_2_to_the_40_actions_is_refused_before_looping_over_them() -> None:
    with pytest.raises(MemoryError, match=r"^value_iteration\(\): the model of 1099511627776 actions needs"):
        mdp.value_iteration(huge(2**40, 2, 2), R, 0.9)


NOT_NUMBERS = [object(), 1 + 2j, np.complex128(1 + 2j), [0.5], [None], None, {"a": 1}, "0.5", b"0.5"]

# (call with the value, function, argument)
FLOAT_OPTIONS: list[tuple[Callable[[Any], Any], str, str]] = [
    (lambda v: ferrops.matrix_nms(BOXES, SCORES, sigma=v), "matrix_nms", "sigma"),
    (lambda v: ferrops.soft_nms(BOXES, SCORES, sigma=v), "soft_nms", "sigma"),
    (lambda v: ferrops.soft_nms(BOXES, SCORES, score_threshold=v), "soft_nms", "score_threshold"),
    (lambda v: ferrops.complete_box_iou_loss(BOXES, BOXES, eps=v), "complete_box_iou_loss", "eps"),
    (lambda v: ferrops.scaled_dot_product_attention(Q, Q, Q, dropout_p=v), "scaled_dot_product_attention", "dropout_p"),
    (
        lambda v: ferrops.voc_eval([1], BOXES[:1], [0.5], [1], BOXES[:1], iou_threshold=v),
        "voc_eval",
        "iou_threshold",
    ),
    (lambda v: ferrops.MeanAveragePrecision(iou_thresholds=[v]), "MeanAveragePrecision", "iou_thresholds"),
]


@pytest.mark.spec("NMS-GREEDY", "BOX-CIOU", "ATT-REF", "DET-VOC10", "DET-COCO")
@pytest.mark.parametrize(("call", "function", "argument"), FLOAT_OPTIONS, ids=[f"{f}-{a}" for _, f, a in FLOAT_OPTIONS])
@pytest.mark.parametrize("value", NOT_NUMBERS, ids=repr)
def test_a_float_option_of_another_kind_is_a_type_error_naming_it(
    call: Callable[[Any], Any], function: str, argument: str, value: Any
) -> None:
    with pytest.raises(TypeError, match=rf"^{function}\(\): argument '{argument}': expected a (real )?number"):
        call(value)


@pytest.mark.spec("NMS-GREEDY")
def test_an_int_beyond_float_range_is_a_value_error_naming_the_option() -> None:
    with pytest.raises(ValueError, match=r"matrix_nms\(\): argument 'sigma': .*an int of 2001 bits"):
        ferrops.matrix_nms(BOXES, SCORES, sigma=2**2000)


@pytest.mark.spec("BOX-IOU")
@pytest.mark.parametrize("level", [b"avx2", None, 3, ["scalar"]])
def test_set_simd_level_refuses_what_is_not_a_string(level: Any) -> None:
    with pytest.raises(TypeError, match=r"^set_simd_level\(\): argument 'level': expected one of 'scalar'"):
        ferrops.set_simd_level(level)


@pytest.mark.spec("DET-VOC10", "DET-VOC07")
def test_voc_functions_take_bfloat16_tensors() -> None:
    torch = pytest.importorskip("torch")
    recall, precision = np.array([0.25, 0.5, 1.0]), np.array([1.0, 0.5, 0.75])
    ap = ferrops.voc_ap(recall, precision)
    ap16 = ferrops.voc_ap(torch.tensor(recall, dtype=torch.bfloat16), torch.tensor(precision, dtype=torch.bfloat16))
    assert ap16 == pytest.approx(ap, abs=1e-2)  # bfloat16 keeps 8 bits of mantissa
    boxes = torch.tensor([[0, 0, 4, 4], [8, 8, 12, 12]], dtype=torch.bfloat16)
    rec, prec, ap = ferrops.voc_eval([1, 1], boxes, torch.tensor([0.5, 0.25], dtype=torch.bfloat16), [1], boxes[:1])
    assert rec.tolist() == [1.0, 1.0] and prec.tolist() == [1.0, 0.5] and ap == 1.0
