"""Conformance tests of the segmentation family: SEG-CM, SEG-PA, SEG-MPA, SEG-IOU,
SEG-FWIOU and SEG-DICE. References are written from the SPEC formulas (pixel
by pixel, in float64); torchmetrics is an extra oracle where installed."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ferrops
from ferrops import SegmentationMetric, confusion_matrix, segmentation_metrics

spec = pytest.mark.spec

INT_DTYPES = [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.uint64, np.int64]


def reference_cm(target, pred, c, ignore_index=None) -> np.ndarray:
    """SEG-CM: one unbuffered increment of ``n[t, p]`` per pixel not ignored."""
    t = np.asarray(target).ravel().astype(np.int64)
    p = np.asarray(pred).ravel().astype(np.int64)
    kept = t != ignore_index if ignore_index is not None else np.ones(t.shape, dtype=bool)
    m = np.zeros((c, c), dtype=np.int64)
    np.add.at(m, (t[kept], p[kept]), 1)
    return m


def reference_metrics(cm) -> dict:
    """SEG-PA/MPA/IOU/FWIOU/DICE, class by class in float64 Python arithmetic."""
    m = np.asarray(cm, dtype=np.float64)
    c = m.shape[0]
    rows = [sum(m[i, j] for j in range(c)) for i in range(c)]
    cols = [sum(m[j, i] for j in range(c)) for i in range(c)]
    n = sum(rows)
    nan = float("nan")
    acc = [m[i, i] / rows[i] if rows[i] else nan for i in range(c)]
    iou = [m[i, i] / (rows[i] + cols[i] - m[i, i]) if rows[i] + cols[i] else nan for i in range(c)]
    dice = [2 * m[i, i] / (rows[i] + cols[i]) if rows[i] + cols[i] else nan for i in range(c)]

    def nanmean(v):
        kept = [x for x in v if not math.isnan(x)]
        return sum(kept) / len(kept) if kept else nan

    return {
        "pixel_accuracy": sum(m[i, i] for i in range(c)) / n if n else nan,
        "mean_pixel_accuracy": nanmean(acc),
        "iou": np.array(iou),
        "miou": nanmean(iou),
        "fwiou": sum(rows[i] / n * iou[i] for i in range(c) if rows[i]) if n else nan,
        "dice": np.array(dice),
        "mean_dice": nanmean(dice),
    }


def assert_metrics_close(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        g = got[key]
        g = g.detach().cpu().numpy() if hasattr(g, "detach") else np.asarray(g)
        np.testing.assert_allclose(g, value, rtol=1e-12, atol=0, equal_nan=True, err_msg=key)


def cm_of(backend, target, pred, c, ignore_index=None) -> np.ndarray:
    out = confusion_matrix(backend.input(target), backend.input(pred), c, ignore_index, **backend.kwargs)
    out = backend.output(out)
    assert out.dtype == np.int64 and out.shape == (c, c)
    return out


# --- SEG-CM ------------------------------------------------------------------


@spec("SEG-CM")
def test_small_matrix_by_hand(backend):
    target = np.array([[0, 0, 1], [2, 2, 2]], dtype=np.uint8)
    pred = np.array([[0, 1, 1], [2, 0, 2]], dtype=np.uint8)
    np.testing.assert_array_equal(cm_of(backend, target, pred, 3), [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    # One extra class nobody uses: an empty row and column.
    np.testing.assert_array_equal(
        cm_of(backend, target, pred, 4), [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    )


@spec("SEG-CM")
def test_ignore_index_outside_and_inside_the_classes(backend):
    target = np.array([0, 255, 1, 1, 2, 255], dtype=np.uint8)
    pred = np.array([0, 7, 1, 2, 2, 0], dtype=np.uint8)  # the ignored pixels' predictions are not read
    np.testing.assert_array_equal(cm_of(backend, target, pred, 3, 255), [[1, 0, 0], [0, 1, 1], [0, 0, 1]])
    # ignore_index inside [0, C): row 1 stays empty; predictions of class 1 elsewhere still count.
    target = np.array([0, 1, 1, 2, 2], dtype=np.int64)
    pred = np.array([1, 1, 0, 1, 2], dtype=np.int64)
    np.testing.assert_array_equal(cm_of(backend, target, pred, 3, 1), [[0, 1, 0], [0, 0, 0], [0, 1, 1]])
    # Negative ignore_index with signed labels.
    target = np.array([-1, 0, 1, -1], dtype=np.int8)
    pred = np.array([1, 0, 0, 1], dtype=np.int8)
    np.testing.assert_array_equal(cm_of(backend, target, pred, 2, -1), [[1, 0], [1, 0]])


@spec("SEG-CM")
@pytest.mark.parametrize("target_dtype", INT_DTYPES + [np.bool_], ids=lambda t: np.dtype(t).name)
def test_every_integer_dtype_and_mixed_dtypes(backend, target_dtype):
    rng = np.random.default_rng(0)
    c = 2 if target_dtype is np.bool_ else 5
    target = rng.integers(0, c, (3, 17, 11)).astype(target_dtype)
    for pred_dtype in (np.uint8, np.int64, np.int16, np.uint32):
        pred = rng.integers(0, c, target.shape).astype(pred_dtype)
        np.testing.assert_array_equal(cm_of(backend, target, pred, c), reference_cm(target, pred, c))


@spec("SEG-CM")
@pytest.mark.parametrize("shape", [(), (1,), (7,), (2, 3, 4, 5), (0,), (4, 0, 3)])
def test_any_shape_including_empty(backend, shape):
    rng = np.random.default_rng(1)
    target = rng.integers(0, 3, shape).astype(np.int32)
    pred = rng.integers(0, 3, shape).astype(np.uint8)
    got = cm_of(backend, target, pred, 3)
    np.testing.assert_array_equal(got, reference_cm(target, pred, 3))
    assert got.sum() == int(np.prod(shape))


@spec("SEG-CM")
def test_strided_and_byte_swapped_inputs():
    rng = np.random.default_rng(2)
    base = rng.integers(0, 6, (40, 30)).astype(np.int16)
    target = base.T[::2]  # neither C- nor F-contiguous
    pred = rng.integers(0, 6, target.shape).astype(">i4")  # big-endian
    np.testing.assert_array_equal(confusion_matrix(target, pred, 6), reference_cm(target, pred, 6))


@spec("SEG-CM")
def test_one_class_and_many_classes(backend):
    ones = np.zeros((5, 5), dtype=np.uint8)
    np.testing.assert_array_equal(cm_of(backend, ones, ones, 1), [[25]])
    rng = np.random.default_rng(3)
    # Many classes next to few pixels (the kernel's shared-matrix path) and many
    # classes over many pixels (private histograms): both equal the definition.
    for c, n in ((2000, 300), (300, 200_000)):
        target = rng.integers(0, c, n)
        pred = rng.integers(0, c, n).astype(np.int32)
        got = cm_of(backend, target, pred, c)
        want = np.bincount(target * c + pred, minlength=c * c).reshape(c, c)
        np.testing.assert_array_equal(got, want)


@spec("SEG-CM")
@given(
    st.integers(1, 9),
    st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), max_size=300),
    st.sampled_from([None, 0, 3, 255, -1]),
    st.sampled_from(INT_DTYPES),
)
def test_matches_the_definition(c, pairs, ignore_index, dtype):
    target = np.array([t % c if ignore_index is None or i % 3 else ignore_index for i, (t, _) in enumerate(pairs)])
    pred = np.array([p % c for _, p in pairs], dtype=np.int64)
    if np.iinfo(dtype).min > target.min(initial=0):
        target = np.where(target < 0, 0, target)  # -1 does not fit an unsigned dtype
    target = target.astype(dtype)
    want = reference_cm(target, pred, c, ignore_index)
    np.testing.assert_array_equal(confusion_matrix(target, pred, c, ignore_index, backend="rust"), want)
    torch = pytest.importorskip("torch")
    got = confusion_matrix(torch.as_tensor(target), torch.as_tensor(pred), c, ignore_index, backend="torch")
    np.testing.assert_array_equal(got.numpy(), want)


@spec("SEG-CM")
def test_thread_count_and_simd_level_do_not_change_the_result():
    rng = np.random.default_rng(4)
    target = rng.integers(0, 20, 300_001).astype(np.uint8)
    target[target == 19] = 255
    pred = rng.integers(0, 19, 300_001).astype(np.uint8)
    threads = ferrops.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            ferrops.set_num_threads(n)
            for simd in ("scalar", "avx2", "avx512"):
                ferrops.set_simd_level(simd)
                results.append(confusion_matrix(target, pred, 19, 255))
    finally:
        ferrops.set_num_threads(threads)
        ferrops.set_simd_level("auto")
    want = reference_cm(target[target != 255], pred[target != 255], 19)
    for got in results:
        np.testing.assert_array_equal(got, want)


@spec("SEG-CM")
def test_torchmetrics_agrees():
    torch = pytest.importorskip("torch")
    tm = pytest.importorskip("torchmetrics.functional.classification")
    rng = np.random.default_rng(5)
    target = rng.integers(0, 7, (4, 33, 45))
    target[rng.random(target.shape) < 0.1] = 255
    pred = rng.integers(0, 7, target.shape)
    theirs = tm.multiclass_confusion_matrix(torch.as_tensor(pred), torch.as_tensor(target), 7, ignore_index=255)
    np.testing.assert_array_equal(confusion_matrix(target, pred, 7, 255), theirs.numpy())


@spec("SEG-CM")
def test_cuda_counts_stay_on_the_device():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    target = torch.randint(0, 19, (2, 64, 64), device="cuda", dtype=torch.uint8)
    pred = torch.randint(0, 19, (2, 64, 64), device="cuda")
    got = confusion_matrix(target, pred, 19)
    assert got.device.type == "cuda" and got.dtype == torch.int64
    np.testing.assert_array_equal(got.cpu().numpy(), confusion_matrix(target.cpu().numpy(), pred.cpu().numpy(), 19))


# --- bad input ---------------------------------------------------------------


@spec("SEG-CM")
def test_float_labels_are_a_type_error(backend):
    labels = np.zeros((2, 2), dtype=np.int64)
    with pytest.raises(TypeError, match=r"confusion_matrix\(\): argument 'target': expected integer class labels"):
        confusion_matrix(backend.input(labels.astype(np.float32)), backend.input(labels), 2, **backend.kwargs)
    with pytest.raises(TypeError, match=r"argument 'pred': expected integer class labels"):
        confusion_matrix(backend.input(labels), backend.input(labels.astype(np.float64)), 2, **backend.kwargs)


@spec("SEG-CM")
@pytest.mark.parametrize("bad", [np.complex128, object])
def test_non_integer_pred_is_blamed_on_pred(bad):
    labels = np.zeros((2, 2), dtype=np.int64)
    for call in (
        lambda pred: confusion_matrix(labels, pred, 2),
        lambda pred: SegmentationMetric(2).update(pred, labels),
    ):
        with pytest.raises(TypeError, match=r"confusion_matrix\(\): argument 'pred': expected integer class labels"):
            call(labels.astype(bad))
    with pytest.raises(TypeError, match=r"^SegmentationMetric\.update\(\): argument 'pred': expected an array"):
        SegmentationMetric(2).update([[0, 1], [0]], labels)


@spec("SEG-CM")
def test_shape_mismatch(backend):
    with pytest.raises(ValueError, match=r"argument 'pred': expected the shape of target \[2, 3\], got \[3, 2\]"):
        confusion_matrix(
            backend.input(np.zeros((2, 3), np.uint8)), backend.input(np.zeros((3, 2), np.uint8)), 2, **backend.kwargs
        )


@spec("SEG-CM")
def test_out_of_range_labels_name_the_value(backend):
    target = np.array([0, 1, 2, 1], dtype=np.int16)
    pred = np.array([0, 1, 1, 1], dtype=np.int16)
    with pytest.raises(
        ValueError, match=r"argument 'target': expected class labels in \[0, 2\), got 2 at flat index 2"
    ):
        cm_of(backend, target, pred, 2)
    with pytest.raises(ValueError, match=r"in \[0, 2\) or ignore_index=255, got -4 at flat index 1"):
        cm_of(backend, np.array([0, -4], np.int16), np.array([0, 0], np.int16), 2, 255)
    with pytest.raises(ValueError, match=r"argument 'pred': expected class labels in \[0, 3\) .*got 7 at flat index 3"):
        cm_of(backend, target, np.array([0, 1, 2, 7], np.uint8), 3)
    # 255 is only skipped in the target: as a prediction it is out of range.
    with pytest.raises(ValueError, match=r"argument 'pred'.*got 255 at flat index 0"):
        cm_of(backend, np.array([0], np.uint8), np.array([255], np.uint8), 3, 255)


@spec("SEG-CM")
def test_bad_num_classes_and_ignore_index(backend):
    labels = backend.input(np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match=r"argument 'num_classes': expected a class count >= 1, got 0"):
        confusion_matrix(labels, labels, 0, **backend.kwargs)
    with pytest.raises(ValueError, match=r"num_classes"):
        confusion_matrix(labels, labels, -3, **backend.kwargs)
    with pytest.raises(TypeError, match=r"argument 'num_classes': expected an int, got float"):
        confusion_matrix(labels, labels, 3.0, **backend.kwargs)
    with pytest.raises(TypeError, match=r"argument 'num_classes': expected an int, got bool"):
        confusion_matrix(labels, labels, True, **backend.kwargs)
    with pytest.raises(TypeError, match=r"argument 'ignore_index': expected an int or None, got float"):
        confusion_matrix(labels, labels, 3, 255.0, **backend.kwargs)


@spec("SEG-CM")
def test_a_matrix_too_big_for_memory_is_a_value_error(backend):
    labels = backend.input(np.zeros(1, np.uint8))
    with pytest.raises(
        ValueError, match=r"argument 'num_classes': expected a class count whose \[C, C\] int64 matrix fits in memory"
    ):
        confusion_matrix(labels, labels, 2**40, **backend.kwargs)


# --- SEG-PA, SEG-MPA, SEG-IOU, SEG-FWIOU, SEG-DICE ---------------------------

# Rows = target, columns = prediction. Class 2 is predicted once but never in
# the target; class 3 appears nowhere.
HAND_CM = np.array([[5, 1, 0, 0], [2, 3, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=np.int64)
HAND_METRICS = {
    "pixel_accuracy": 8 / 12,
    "mean_pixel_accuracy": (5 / 6 + 3 / 6) / 2,
    "iou": np.array([5 / 8, 3 / 7, 0.0, np.nan]),
    "miou": (5 / 8 + 3 / 7 + 0.0) / 3,
    "fwiou": 6 / 12 * 5 / 8 + 6 / 12 * 3 / 7,
    "dice": np.array([10 / 13, 6 / 10, 0.0, np.nan]),
    "mean_dice": (10 / 13 + 6 / 10 + 0.0) / 3,
}


@spec("SEG-PA", "SEG-MPA", "SEG-IOU", "SEG-FWIOU", "SEG-DICE")
def test_metrics_of_a_hand_computed_matrix(backend):
    got = segmentation_metrics(backend.input(HAND_CM))
    assert_metrics_close(got, HAND_METRICS)
    assert_metrics_close(got, reference_metrics(HAND_CM))
    if backend.name == "rust":
        assert all(isinstance(got[k], float) for k in ("pixel_accuracy", "miou", "fwiou", "mean_dice"))
    else:
        assert got["miou"].device.type == ("cuda" if backend.name == "cuda" else "cpu")


@spec("SEG-PA", "SEG-MPA", "SEG-IOU", "SEG-FWIOU", "SEG-DICE")
def test_empty_matrix_is_nan_without_warnings(backend):
    got = segmentation_metrics(backend.input(np.zeros((3, 3), np.int64)))
    for key in ("pixel_accuracy", "mean_pixel_accuracy", "miou", "fwiou", "mean_dice"):
        assert math.isnan(float(got[key])), key
    assert np.isnan(backend.output(got["iou"]) if backend.name != "rust" else got["iou"]).all()


@spec("SEG-PA", "SEG-MPA", "SEG-IOU", "SEG-FWIOU", "SEG-DICE")
@given(st.integers(1, 6).flatmap(lambda c: st.lists(st.integers(0, 50), min_size=c * c, max_size=c * c)))
def test_metrics_match_the_formulas(values):
    c = math.isqrt(len(values))
    cm = np.array(values, dtype=np.int64).reshape(c, c)
    assert_metrics_close(segmentation_metrics(cm), reference_metrics(cm))
    torch = pytest.importorskip("torch")
    assert_metrics_close(segmentation_metrics(torch.as_tensor(cm)), reference_metrics(cm))


@spec("SEG-IOU")
def test_torchmetrics_jaccard_agrees_where_conventions_meet():
    torch = pytest.importorskip("torch")
    tm = pytest.importorskip("torchmetrics.functional.classification")
    rng = np.random.default_rng(6)
    target = rng.integers(0, 6, 5000)
    pred = np.where(rng.random(5000) < 0.7, target, rng.integers(0, 6, 5000))
    pred[pred == 5] = 4  # class 5: in the target, never predicted (IoU 0 in both)
    got = segmentation_metrics(confusion_matrix(target, pred, 6))
    t, p = torch.as_tensor(target), torch.as_tensor(pred)
    per_class = tm.multiclass_jaccard_index(p, t, 6, average=None).double().numpy()
    np.testing.assert_allclose(got["iou"], per_class, rtol=1e-6)
    np.testing.assert_allclose(got["miou"], float(tm.multiclass_jaccard_index(p, t, 6, average="macro")), rtol=1e-6)
    # A class absent from both: NaN here and left out of the mean; torchmetrics
    # reports 0.0 per class but also leaves it out of its macro average.
    got = segmentation_metrics(confusion_matrix(target, pred, 7))
    assert math.isnan(got["iou"][6])
    theirs = tm.multiclass_jaccard_index(p, t, 7, average=None).double().numpy()
    assert theirs[6] == 0.0
    np.testing.assert_allclose(got["miou"], float(tm.multiclass_jaccard_index(p, t, 7, average="macro")), rtol=1e-6)


@spec("SEG-IOU")
def test_bad_matrices():
    with pytest.raises(ValueError, match=r"segmentation_metrics\(\): argument 'cm': expected a square \[C, C\] matrix"):
        segmentation_metrics(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"expected a square"):
        segmentation_metrics(np.zeros((0, 0)))
    with pytest.raises(ValueError, match=r"expected finite, non-negative counts"):
        segmentation_metrics(np.array([[1, -1], [0, 1]]))
    with pytest.raises(TypeError, match=r"expected real counts"):
        segmentation_metrics(np.array([["a"]]))


# --- SegmentationMetric --------------------------------------------------------


def _batches(seed: int = 7, n: int = 5):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        target = rng.integers(0, 5, (2, 24, 32)).astype(np.uint8)
        target[rng.random(target.shape) < 0.05] = 255
        pred = rng.integers(0, 5, target.shape)
        yield pred, target


@spec("SEG-CM", "SEG-IOU")
def test_streaming_equals_whole(backend):
    metric = SegmentationMetric(5, ignore_index=255)
    preds, targets = zip(*_batches())
    for pred, target in zip(preds, targets):
        metric.update(backend.input(pred), backend.input(target))
    whole = confusion_matrix(np.concatenate(targets), np.concatenate(preds), 5, 255)
    np.testing.assert_array_equal(backend.output(metric.confusion_matrix), whole)
    assert_metrics_close(metric.compute(), reference_metrics(whole))
    metric.reset()
    np.testing.assert_array_equal(metric.confusion_matrix, np.zeros((5, 5)))
    assert math.isnan(metric.compute()["miou"])


@spec("SEG-CM")
def test_merge_and_torch_equals_numpy():
    torch = pytest.importorskip("torch")
    batches = list(_batches(8, 6))
    a, b, whole = SegmentationMetric(5, 255), SegmentationMetric(5, 255), SegmentationMetric(5, 255)
    for i, (pred, target) in enumerate(batches):
        (a if i % 2 else b).update(pred, target)
        whole.update(torch.as_tensor(pred), torch.as_tensor(target))
    merged = a.merge(b)
    assert merged is a
    assert torch.is_tensor(whole.confusion_matrix)
    np.testing.assert_array_equal(merged.confusion_matrix, whole.confusion_matrix.numpy())
    assert merged.merge(SegmentationMetric(5, 255)) is merged  # an empty metric adds nothing
    np.testing.assert_array_equal(merged.confusion_matrix, whole.confusion_matrix.numpy())
    with pytest.raises(ValueError, match=r"merge\(\): argument 'other': expected num_classes=5, ignore_index=255"):
        a.merge(SegmentationMetric(6, 255))


@spec("SEG-CM")
def test_update_accepts_scores_with_a_class_dimension():
    rng = np.random.default_rng(9)
    scores = rng.random((2, 4, 8, 8)).astype(np.float32)
    target = rng.integers(0, 4, (2, 8, 8))
    metric = SegmentationMetric(4)
    metric.update(scores, target)
    np.testing.assert_array_equal(metric.confusion_matrix, confusion_matrix(target, scores.argmax(1), 4))
    with pytest.raises(TypeError, match="expected integer class labels"):
        metric.update(scores[:, 0], target)  # float labels of the target's shape are not scores


@spec("SEG-CM")
def test_all_reduce_sums_over_ranks():
    pytest.importorskip("torch.distributed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    worker = textwrap.dedent(
        """
        import json, os, sys
        import numpy as np
        import torch.distributed as dist
        import ferrops
        rank = int(os.environ["RANK"])
        dist.init_process_group("gloo", rank=rank, world_size=2)
        metric = ferrops.SegmentationMetric(3)
        metric.update(np.array([rank, 0, 1]), np.array([rank, rank, 2]))
        metric.all_reduce()
        print(json.dumps(metric.confusion_matrix.tolist()))
        dist.destroy_process_group()
        """
    )
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", worker],
            env={**env, "RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    # rank 0: (0,0) (0,0) (2,1); rank 1: (1,1) (1,0) (2,1)
    want = [[2, 0, 0], [1, 1, 0], [0, 2, 0]]
    assert [json.loads(out) for out, _ in outs] == [want, want]


def segmentation_like(seed: int, n: int, c: int, ignore: int | None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 labels alternating runs of one (target, prediction) pair (20 to 600
    pixels) with busy stretches of independent labels (50 to 3000 pixels)."""
    rng = np.random.default_rng(seed)
    t_parts, p_parts, size = [], [], 0
    while size < n:
        if rng.random() < 0.5:
            length = int(rng.integers(20, 600))
            t_parts.append(np.full(length, rng.integers(0, c), np.uint8))
            p_parts.append(np.full(length, rng.integers(0, c), np.uint8))
        else:
            length = int(rng.integers(50, 3000))
            t_parts.append(rng.integers(0, c, length).astype(np.uint8))
            p_parts.append(rng.integers(0, c, length).astype(np.uint8))
        size += length
    target, pred = np.concatenate(t_parts)[:n], np.concatenate(p_parts)[:n]
    if ignore is not None:
        target[rng.random(n) < 0.02] = ignore
    return target, pred


@spec("SEG-CM")
@pytest.mark.parametrize("seed", range(12))
def test_runs_and_busy_stretches_match_the_definition(backend, seed):
    """The kernel counts runs of equal pairs once and busy stretches pixel by
    pixel: every way of switching between the two must count each pixel once."""
    c, ignore = (7, 255) if seed % 2 else (19, None)
    target, pred = segmentation_like(seed, 30_000 + 997 * seed, c, ignore)
    for p in (pred, pred.astype(np.int64)):
        np.testing.assert_array_equal(cm_of(backend, target, p, c, ignore), reference_cm(target, p, c, ignore))
