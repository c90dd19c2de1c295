"""Drivers of the array kernels: boxes, pooling, attention, segmentation.
Oracles are the peers (torchvision, torch) in float64 on the same values."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from .driver import Driver, array_of, assert_close, seeds
from .values import (
    array_mutations,
    bool_mutations,
    choice_mutations,
    float_mutations,
    int_mutations,
    opaque_mutations,
)


def torch64(a: Any) -> Any:
    import torch

    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    corner = rng.uniform(-50, 50, (n, 2))
    size = rng.uniform(0, 30, (n, 2)) * (rng.random((n, 1)) > 0.05)  # a few degenerate boxes
    return np.concatenate([corner, corner + size], axis=1).astype(np.float32)


@st.composite
def box_pair(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    return {"boxes1": random_boxes(rng, draw(st.integers(0, 6))), "boxes2": random_boxes(rng, draw(st.integers(0, 6)))}


@st.composite
def scored_boxes(draw: Any, classes: bool = False) -> dict[str, Any]:
    rng = draw(seeds())
    n = draw(st.integers(0, 12))
    # Non-negative coordinates: torchvision's batched_nms offsets boxes by class
    # id * (max coordinate + 1), which lets classes overlap when coordinates are negative.
    kwargs = {"boxes": random_boxes(rng, n) + 60, "scores": rng.random(n).astype(np.float32)}
    if classes:
        kwargs["idxs"] = rng.integers(0, 3, n)
    return kwargs


def pairwise_oracle(name: str) -> Any:
    def oracle(kwargs: dict[str, Any], result: Any) -> None:
        import torchvision.ops

        expected = getattr(torchvision.ops, name)(torch64(kwargs["boxes1"]), torch64(kwargs["boxes2"]))
        assert_close(array_of(result, kwargs), expected.numpy(), rtol=1e-3, atol=1e-4)

    return oracle


def loss_oracle(name: str) -> Any:
    def oracle(kwargs: dict[str, Any], result: Any) -> None:
        import torchvision.ops

        n = min(len(kwargs["boxes1"]), len(kwargs["boxes2"]))
        if len(kwargs["boxes1"]) != len(kwargs["boxes2"]):
            raise AssertionError(f"boxes of lengths {len(kwargs['boxes1'])} and {len(kwargs['boxes2'])} accepted")
        b1, b2 = torch64(kwargs["boxes1"][:n]), torch64(kwargs["boxes2"][:n])
        expected = getattr(torchvision.ops, name)(b1, b2, reduction=kwargs["reduction"], eps=kwargs["eps"])
        assert_close(array_of(result, kwargs), expected.numpy(), rtol=1e-3, atol=1e-4)

    return oracle


@st.composite
def loss_args(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    n = draw(st.integers(0, 6))
    return {
        "boxes1": random_boxes(rng, n),
        "boxes2": random_boxes(rng, n),
        "reduction": draw(st.sampled_from(["none", "mean", "sum"])),
        "eps": draw(st.sampled_from([1e-7, 1e-3])),
    }


def area_oracle(kwargs: dict[str, Any], result: Any) -> None:
    import torchvision.ops

    assert_close(array_of(result, kwargs), torchvision.ops.box_area(torch64(kwargs["boxes"])).numpy())


def convert_oracle(kwargs: dict[str, Any], result: Any) -> None:
    import torchvision.ops

    expected = torchvision.ops.box_convert(torch64(kwargs["boxes"]), kwargs["in_fmt"], kwargs["out_fmt"])
    assert_close(array_of(result, kwargs), expected.numpy(), rtol=1e-5, atol=1e-4)


def nms_oracle(kwargs: dict[str, Any], result: Any) -> None:
    import torch
    import torchvision.ops

    boxes, scores = torch.as_tensor(kwargs["boxes"]), torch.as_tensor(kwargs["scores"])
    if "idxs" in kwargs:
        expected = torchvision.ops.batched_nms(boxes, scores, torch.as_tensor(kwargs["idxs"]), kwargs["iou_threshold"])
    else:
        expected = torchvision.ops.nms(boxes, scores, kwargs["iou_threshold"])
    keep = array_of(result, kwargs)
    assert keep.dtype == np.int64, keep.dtype
    assert keep.tolist() == expected.tolist()


def soft_nms_sane(kwargs: dict[str, Any], result: Any) -> None:
    keep, scores = (array_of(r, kwargs) for r in result)
    assert keep.shape == scores.shape and keep.ndim == 1


def keep_sane(kwargs: dict[str, Any], result: Any) -> None:
    keep = array_of(result, kwargs)
    assert keep.ndim == 1 and keep.dtype == np.int64 and len(set(keep.tolist())) == len(keep)


iou = {"boxes1": array_mutations(), "boxes2": array_mutations()}
loss = {**iou, "reduction": choice_mutations(), "eps": float_mutations()}
threshold = {"iou_threshold": float_mutations()}

BOXES = {
    "ferrops.box_area": Driver(
        "ferrops:box_area",
        st.builds(lambda rng, n: {"boxes": random_boxes(rng, n)}, seeds(), st.integers(0, 8)),
        {"boxes": array_mutations()},
        ("box_area",),
        oracle=area_oracle,
    ),
    "ferrops.box_convert": Driver(
        "ferrops:box_convert",
        st.fixed_dictionaries(
            {
                "boxes": seeds().map(lambda rng: random_boxes(rng, 5)),
                "in_fmt": st.sampled_from(["xyxy", "xywh", "cxcywh"]),
                "out_fmt": st.sampled_from(["xyxy", "xywh", "cxcywh"]),
            }
        ),
        {"boxes": array_mutations(), "in_fmt": choice_mutations(), "out_fmt": choice_mutations()},
        ("box_convert",),
        oracle=convert_oracle,
    ),
    **{
        f"ferrops.{name}": Driver(f"ferrops:{name}", box_pair(), iou, (name,), oracle=pairwise_oracle(name))
        for name in ("box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou")
    },
    **{
        f"ferrops.{name}": Driver(f"ferrops:{name}", loss_args(), loss, (name,), oracle=loss_oracle(name))
        for name in ("generalized_box_iou_loss", "distance_box_iou_loss", "complete_box_iou_loss")
    },
    "ferrops.nms": Driver(
        "ferrops:nms",
        st.builds(lambda d, t: {**d, "iou_threshold": t}, scored_boxes(), st.floats(0, 1)),
        {"boxes": array_mutations(), "scores": array_mutations(), **threshold},
        ("nms",),
        oracle=nms_oracle,
        sane=keep_sane,
    ),
    "ferrops.batched_nms": Driver(
        "ferrops:batched_nms",
        st.builds(lambda d, t: {**d, "iou_threshold": t}, scored_boxes(classes=True), st.floats(0, 1)),
        {"boxes": array_mutations(), "scores": array_mutations(), "idxs": array_mutations(floats=False), **threshold},
        ("batched_nms",),
        oracle=nms_oracle,
        sane=keep_sane,
    ),
    "ferrops.soft_nms": Driver(
        "ferrops:soft_nms",
        st.builds(
            lambda d, t, s, m: {**d, "iou_threshold": t, "sigma": s, "method": m},
            scored_boxes(),
            st.floats(0, 1),
            st.floats(0.1, 2),
            st.sampled_from(["linear", "gaussian"]),
        ),
        {
            "boxes": array_mutations(),
            "scores": array_mutations(),
            **threshold,
            "sigma": float_mutations(),
            "score_threshold": float_mutations(),
            "method": choice_mutations(),
        },
        ("soft_nms",),
        sane=soft_nms_sane,
    ),
    "ferrops.matrix_nms": Driver(
        "ferrops:matrix_nms",
        st.builds(
            lambda d, k, s: {**d, "kernel": k, "sigma": s},
            scored_boxes(classes=True),
            st.sampled_from(["gaussian", "linear"]),
            st.floats(0.1, 4),
        ),
        {
            "boxes": array_mutations(),
            "scores": array_mutations(),
            "idxs": array_mutations(floats=False, optional=True),
            "kernel": choice_mutations(),
            "sigma": float_mutations(),
        },
        ("matrix_nms",),
    ),
}


def feature_map(rng: np.random.Generator, n: int, c: int, h: int, w: int) -> np.ndarray:
    return rng.standard_normal((n, c, h, w)).astype(np.float32)


@st.composite
def pool_input(draw: Any, min_side: int = 1) -> np.ndarray:
    rng = draw(seeds())
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    return feature_map(rng, n, c, draw(st.integers(min_side, 9)), draw(st.integers(min_side, 9)))


@st.composite
def max_pool_args(draw: Any) -> dict[str, Any]:
    k = draw(st.integers(1, 3))
    return {
        "input": draw(pool_input(min_side=3)),
        "kernel_size": k,
        "stride": draw(st.one_of(st.none(), st.integers(1, 3))),
        "padding": draw(st.integers(0, k // 2)),
    }


def torch_pool_oracle(name: str, *names: str) -> Any:
    def oracle(kwargs: dict[str, Any], result: Any) -> None:
        import torch.nn.functional as F

        sizes = (int(kwargs[n]) if isinstance(kwargs[n], np.integer) else kwargs[n] for n in names)
        expected = getattr(F, name)(torch64(kwargs["input"]), *sizes)
        assert_close(array_of(result, kwargs), expected.numpy())

    return oracle


@st.composite
def roi_args(draw: Any, align: bool) -> dict[str, Any]:
    rng = draw(seeds())
    x = draw(pool_input(min_side=2))
    k = draw(st.integers(0, 4))
    boxes = np.concatenate([rng.integers(0, x.shape[0], (k, 1)), random_boxes(rng, k) / 10 + 3], axis=1)
    kwargs = {
        "input": x,
        "boxes": boxes.astype(np.float32),
        "output_size": draw(st.integers(1, 3)),
        "spatial_scale": draw(st.sampled_from([1.0, 0.5])),
    }
    if align:
        kwargs |= {"sampling_ratio": draw(st.integers(-1, 2)), "aligned": draw(st.booleans())}
    return kwargs


def roi_oracle(name: str) -> Any:
    def oracle(kwargs: dict[str, Any], result: Any) -> None:
        import torchvision.ops

        args = {k: v for k, v in kwargs.items() if k not in ("input", "boxes")}
        expected = getattr(torchvision.ops, name)(torch64(kwargs["input"]), torch64(kwargs["boxes"]), **args)
        assert_close(array_of(result, kwargs), expected.numpy(), rtol=1e-3, atol=1e-4)

    return oracle


def spp_sane(kwargs: dict[str, Any], result: Any) -> None:
    x, levels = np.asarray(kwargs["input"]), kwargs["levels"]
    assert array_of(result, kwargs).shape == (x.shape[0], x.shape[1] * sum(n * n for n in levels))


def sppf_oracle(kwargs: dict[str, Any], result: Any) -> None:
    import torch
    import torch.nn.functional as F

    k = kwargs["kernel_size"]
    y = [torch64(kwargs["input"])]
    for _ in range(3):
        y.append(F.max_pool2d(y[-1], k, 1, k // 2))
    assert_close(array_of(result, kwargs), torch.cat(y, 1).numpy())


pair = int_mutations()
POOLING = {
    "ferrops.max_pool2d": Driver(
        "ferrops:max_pool2d",
        max_pool_args(),
        {"input": array_mutations(), "kernel_size": pair, "stride": int_mutations(optional=True), "padding": pair},
        ("max_pool2d",),
        oracle=lambda kw, r: torch_pool_oracle("max_pool2d", "kernel_size", "stride", "padding")(
            {**kw, "stride": kw["stride"] or kw["kernel_size"]}, r
        ),
    ),
    "ferrops.adaptive_max_pool2d": Driver(
        "ferrops:adaptive_max_pool2d",
        st.fixed_dictionaries({"input": pool_input(), "output_size": st.integers(1, 5)}),
        {"input": array_mutations(), "output_size": pair, "return_indices": bool_mutations()},
        ("adaptive_max_pool2d",),
        oracle=torch_pool_oracle("adaptive_max_pool2d", "output_size"),
    ),
    "ferrops.adaptive_avg_pool2d": Driver(
        "ferrops:adaptive_avg_pool2d",
        st.fixed_dictionaries({"input": pool_input(), "output_size": st.integers(1, 5)}),
        {"input": array_mutations(), "output_size": pair},
        ("adaptive_avg_pool2d",),
        oracle=torch_pool_oracle("adaptive_avg_pool2d", "output_size"),
    ),
    "ferrops.roi_pool": Driver(
        "ferrops:roi_pool",
        roi_args(align=False),
        {
            "input": array_mutations(),
            "boxes": array_mutations(),
            "output_size": pair,
            "spatial_scale": float_mutations(),
        },
        ("roi_pool",),
        oracle=roi_oracle("roi_pool"),
    ),
    "ferrops.roi_align": Driver(
        "ferrops:roi_align",
        roi_args(align=True),
        {
            "input": array_mutations(),
            "boxes": array_mutations(),
            "output_size": pair,
            "spatial_scale": float_mutations(),
            "sampling_ratio": int_mutations(),
            "aligned": bool_mutations(),
        },
        ("roi_align",),
        oracle=roi_oracle("roi_align"),
    ),
    "ferrops.spatial_pyramid_pool": Driver(
        "ferrops:spatial_pyramid_pool",
        st.fixed_dictionaries(
            {
                "input": pool_input(),
                "levels": st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
                "mode": st.sampled_from(["max", "avg"]),
            }
        ),
        {"input": array_mutations(), "levels": [*int_mutations(), *opaque_mutations()], "mode": choice_mutations()},
        ("spatial_pyramid_pool",),
        sane=spp_sane,
    ),
    "ferrops.sppf": Driver(
        "ferrops:sppf",
        st.fixed_dictionaries({"input": pool_input(), "kernel_size": st.sampled_from([1, 3, 5])}),
        {"input": array_mutations(), "kernel_size": int_mutations()},
        ("sppf",),
        oracle=sppf_oracle,
    ),
}
