"""Drivers of attention and segmentation. Oracles: torch's SDPA in float64 and a
`np.bincount` confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from .driver import Driver, array_of, assert_close, seeds
from .values import array_mutations, bool_mutations, float_mutations, int_mutations, opaque_mutations


def torch_sdpa(q: Any, k: Any, v: Any, mask: Any = None, causal: bool = False, scale: Any = None) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = [torch.as_tensor(np.asarray(a, np.float64)) for a in (q, k, v)]
    if k.shape[-3] != q.shape[-3]:  # grouped heads: repeat the key/value heads
        t[1], t[2] = (x.repeat_interleave(q.shape[-3] // k.shape[-3], dim=-3) for x in t[1:])
    m = None if mask is None else torch.as_tensor(mask if mask.dtype == bool else mask.astype(np.float64))
    return F.scaled_dot_product_attention(t[0], t[1], t[2], attn_mask=m, is_causal=causal, scale=scale).numpy()


@st.composite
def sdpa_args(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    b, hk, group, L, S, d = (draw(st.integers(lo, hi)) for lo, hi in ((1, 2), (1, 2), (1, 2), (1, 5), (1, 5), (1, 8)))
    kwargs: dict[str, Any] = {
        "query": rng.standard_normal((b, hk * group, L, d)).astype(np.float32),
        "key": rng.standard_normal((b, hk, S, d)).astype(np.float32),
        "value": rng.standard_normal((b, hk, S, d)).astype(np.float32),
        "enable_gqa": group > 1,
        "scale": draw(st.sampled_from([None, 0.5])),
    }
    mask = draw(st.sampled_from(["none", "bool", "float", "causal"]))
    if mask == "bool":
        m = rng.random((L, S)) > 0.3
        m[:, 0] = True  # every query attends to something
        kwargs["attn_mask"] = m
    elif mask == "float":
        kwargs["attn_mask"] = rng.standard_normal((L, S)).astype(np.float32)
    kwargs["is_causal"] = mask == "causal"
    return kwargs


def sdpa_oracle(kwargs: dict[str, Any], result: Any) -> None:
    expected = torch_sdpa(
        kwargs["query"],
        kwargs["key"],
        kwargs["value"],
        kwargs.get("attn_mask"),
        bool(kwargs["is_causal"]),
        kwargs["scale"],
    )
    assert_close(array_of(result, kwargs), expected, rtol=1e-3, atol=1e-4)


@st.composite
def flash_args(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    b, hk, group, L, S, d = (draw(st.integers(lo, hi)) for lo, hi in ((1, 2), (1, 2), (1, 2), (1, 5), (1, 5), (1, 8)))
    return {
        "q": rng.standard_normal((b, L, hk * group, d)).astype(np.float32),
        "k": rng.standard_normal((b, S, hk, d)).astype(np.float32),
        "v": rng.standard_normal((b, S, hk, d)).astype(np.float32),
        "softmax_scale": draw(st.sampled_from([None, 0.3])),
    }


def flash_oracle(kwargs: dict[str, Any], result: Any) -> None:
    q, k, v = (np.swapaxes(kwargs[n], 1, 2) for n in "qkv")
    expected = np.swapaxes(torch_sdpa(q, k, v, scale=kwargs["softmax_scale"]), 1, 2)
    assert_close(array_of(result, kwargs), expected, rtol=1e-3, atol=1e-4)


@st.composite
def varlen_args(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    lengths_q = draw(st.lists(st.integers(0, 4), min_size=1, max_size=3))
    lengths_k = [draw(st.integers(1, 4)) for _ in lengths_q]
    h, d = draw(st.integers(1, 2)), draw(st.integers(1, 8))
    return {
        "q": rng.standard_normal((sum(lengths_q), h, d)).astype(np.float32),
        "k": rng.standard_normal((sum(lengths_k), h, d)).astype(np.float32),
        "v": rng.standard_normal((sum(lengths_k), h, d)).astype(np.float32),
        "cu_seqlens_q": np.cumsum([0, *lengths_q]).astype(np.int32),
        "cu_seqlens_k": np.cumsum([0, *lengths_k]).astype(np.int32),
        "max_seqlen_q": max(lengths_q),
        "max_seqlen_k": max(lengths_k),
        "causal": draw(st.booleans()),
    }


def varlen_sane(kwargs: dict[str, Any], result: Any) -> None:
    out = array_of(result if not isinstance(result, tuple) else result[0], kwargs)
    assert out.shape == np.shape(kwargs["q"]), out.shape


flash_options = {
    "softmax_scale": float_mutations(optional=True),
    "causal": bool_mutations(),
    "window_size": [*int_mutations(), *opaque_mutations()],
    "softcap": float_mutations(),
    "alibi_slopes": array_mutations(optional=True),
    "return_lse": bool_mutations(),
}

ATTENTION = {
    "ferrops.scaled_dot_product_attention": Driver(
        "ferrops:scaled_dot_product_attention",
        sdpa_args(),
        {
            "query": array_mutations(),
            "key": array_mutations(),
            "value": array_mutations(),
            "attn_mask": array_mutations(optional=True),
            "dropout_p": float_mutations(),
            "is_causal": bool_mutations(),
            "scale": float_mutations(optional=True),
            "enable_gqa": bool_mutations(),
        },
        ("scaled_dot_product_attention",),
        oracle=sdpa_oracle,
    ),
    "ferrops.flash_attn_func": Driver(
        "ferrops:flash_attn_func",
        flash_args(),
        {"q": array_mutations(), "k": array_mutations(), "v": array_mutations(), **flash_options},
        ("flash_attn_func",),
        oracle=flash_oracle,
    ),
    "ferrops.flash_attn_varlen_func": Driver(
        "ferrops:flash_attn_varlen_func",
        varlen_args(),
        {
            "q": array_mutations(),
            "k": array_mutations(),
            "v": array_mutations(),
            "cu_seqlens_q": array_mutations(floats=False),
            "cu_seqlens_k": array_mutations(floats=False),
            "max_seqlen_q": int_mutations(),
            "max_seqlen_k": int_mutations(),
            **flash_options,
        },
        ("flash_attn_varlen_func",),
        sane=varlen_sane,
    ),
}


@st.composite
def confusion_args(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    c = draw(st.integers(1, 5))
    shape = draw(st.sampled_from([(0,), (7,), (3, 4), (2, 3, 3)]))
    ignore = draw(st.sampled_from([None, 255, c - 1]))
    labels = [rng.integers(0, c, shape) for _ in range(2)]
    if ignore == 255 and labels[0].size:
        labels[0].flat[0] = 255
    return {"target": labels[0], "pred": labels[1], "num_classes": c, "ignore_index": ignore}


def confusion_oracle(kwargs: dict[str, Any], result: Any) -> None:
    t, p, c = np.ravel(kwargs["target"]), np.ravel(kwargs["pred"]), kwargs["num_classes"]
    keep = t != kwargs["ignore_index"] if kwargs["ignore_index"] is not None else np.ones(t.shape, bool)
    expected = np.bincount(t[keep] * c + p[keep], minlength=c * c).reshape(c, c)
    got = array_of(result, kwargs)
    assert np.array_equal(got, expected), (got, expected)


def run_segmentation_metric(num_classes: Any, ignore_index: Any, target: Any, pred: Any) -> Any:
    from ferrops import SegmentationMetric

    metric = SegmentationMetric(num_classes, ignore_index)
    metric.update(pred, target)
    return metric.compute()


def metrics_sane(kwargs: dict[str, Any], result: Any) -> None:
    assert isinstance(result, dict) and {"pixel_accuracy", "miou"} <= set(result), result


def not_distributed(exc_type: str, message: str) -> bool:
    return exc_type == "RuntimeError" and "torch.distributed is not initialised" in message


segmentation_labels = {
    "target": array_mutations(floats=False),
    "pred": array_mutations(floats=False),
    "num_classes": int_mutations(),
    "ignore_index": int_mutations(optional=True),
}
cm = st.builds(lambda rng, c: {"cm": rng.integers(0, 9, (c, c))}, seeds(), st.integers(1, 5))

SEGMENTATION = {
    "ferrops.confusion_matrix": Driver(
        "ferrops:confusion_matrix",
        confusion_args(),
        segmentation_labels,
        ("confusion_matrix",),
        oracle=confusion_oracle,
    ),
    "ferrops.SegmentationMetric": Driver(
        "spec_tests.fuzz.attention_segmentation:run_segmentation_metric",
        confusion_args(),
        segmentation_labels,
        ("SegmentationMetric", "update", "confusion_matrix"),
        sane=metrics_sane,
    ),
    "ferrops.segmentation_metrics": Driver(
        "ferrops:segmentation_metrics",
        cm,
        {"cm": array_mutations(floats=False)},
        ("segmentation_metrics",),
        sane=metrics_sane,
    ),
    "ferrops.all_reduce_confusion_matrix": Driver(
        "ferrops:all_reduce_confusion_matrix",
        cm,
        {"cm": array_mutations(floats=False)},
        ("all_reduce_confusion_matrix",),
        documented=not_distributed,
    ),
}
