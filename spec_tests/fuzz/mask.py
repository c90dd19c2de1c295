"""Drivers of ``ferrops.mask`` (pycocotools.mask's API): well-formed calls are
checked against pycocotools.mask (or a dense NumPy formula for ``mask_iou``);
hostile ones spoil the RLEs (counts past or short of ``h * w``, bad characters,
negative or huge sizes, mixed sizes) and the polygons (NaN, inf, huge or far-away
coordinates, too few points), which must give a result or a clean error."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from hypothesis import strategies as st

from .driver import Driver, array_of, seeds
from .values import Mutation, array_mutations, bool_mutations, int_mutations, opaque_mutations


def random_masks(rng: np.random.Generator, h: int, w: int, n: int) -> np.ndarray:
    """``[h, w, n]`` Fortran-order 0/1 masks: blobs, empty and full ones."""
    masks = np.asfortranarray(rng.random((h, w, n)) < rng.random(n))
    return masks.astype(np.uint8, order="F")


def rles_of(masks: np.ndarray, as_str: bool) -> list[dict[str, Any]]:
    """Compressed RLEs written from the run lengths here (not by ferrops)."""
    from ferrops import mask

    rles = mask.encode(masks)
    return [{"size": r["size"], "counts": r["counts"].decode() if as_str else r["counts"]} for r in rles]


@st.composite
def rle_lists(draw: Any, min_size: int = 0) -> list[dict[str, Any]]:
    rng = draw(seeds())
    h, w, n = draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.integers(min_size, 4))
    return rles_of(random_masks(rng, h, w, n), draw(st.booleans()))


def _spoil(rles: Any, change: Any) -> Any:
    """A copy of an RLE list with ``change(rle)`` applied to its first RLE."""
    if not isinstance(rles, list) or not rles or not isinstance(rles[0], dict):
        raise ValueError("no RLE to spoil")
    first = dict(rles[0])
    change(first)
    return [first, *rles[1:]]


def _set(key: str, value: Any) -> Any:
    return lambda r: r.__setitem__(key, value)


def _counts_then(suffix: bytes) -> Any:
    def change(r: dict[str, Any]) -> None:
        counts = r["counts"].encode() if isinstance(r["counts"], str) else r["counts"]
        r["counts"] = counts + suffix

    return change


def _truncate(r: dict[str, Any]) -> None:
    r["counts"] = r["counts"][:-1]


def rle_mutations(*, decodes: bool) -> list[Mutation]:
    """Hostile RLE lists. ``decodes``: the call allocates the dense mask, so sizes
    that are valid but huge are left out (they are a MemoryError's job in
    test_hardening, not a fuzz call's)."""
    m = [
        *opaque_mutations(),
        Mutation("counts_past", lambda a: _spoil(a, _counts_then(b"5")), blame=True),
        Mutation("counts_short", lambda a: _spoil(a, _truncate), blame=True),
        Mutation("counts_bad_char", lambda a: _spoil(a, _counts_then(b"\xff")), blame=True),
        Mutation("counts_open_run", lambda a: _spoil(a, _counts_then(b"`")), blame=True),
        Mutation("counts_long_run", lambda a: _spoil(a, _counts_then(b"o" * 20 + b"0")), blame=True),
        Mutation("counts_negative_runs", lambda a: _spoil(a, _set("counts", [5, -3, 2])), blame=True),
        Mutation("counts_list_past", lambda a: _spoil(a, _set("counts", [2**31, 2**31, 5])), blame=True),
        Mutation("counts_none", lambda a: _spoil(a, _set("counts", None)), blame=True),
        Mutation("counts_floats", lambda a: _spoil(a, _set("counts", [0.5, 1.5]))),
        Mutation("size_negative", lambda a: _spoil(a, _set("size", [-3, 4])), blame=True),
        Mutation("size_one_value", lambda a: _spoil(a, _set("size", [3])), blame=True),
        Mutation("size_overflow", lambda a: _spoil(a, _set("size", [2**40, 2**40])), blame=True),
        Mutation("size_nan", lambda a: _spoil(a, _set("size", [math.nan, 3]))),
        Mutation("no_size", lambda a: [{"counts": b"0"}], blame=True),
        Mutation("not_a_dict", lambda a: [1, 2], blame=True),
        Mutation("mixed_sizes", lambda a: [*a, {"size": [1, 2], "counts": b"2"}]),
    ]
    if not decodes:
        # Valid RLEs of 4e9 pixels: measured without decoding.
        big = {"size": [65535, 65535], "counts": [65535 * 30000, 65535 * 35535]}
        m.append(Mutation("size_huge_valid", lambda a: [big]))
    return m


def _pycocotools() -> Any:
    try:
        import pycocotools.mask as pcm
    except ImportError:
        return None
    return pcm


def _bytes_counts(rles: Any) -> Any:
    """pycocotools needs bytes counts (str ones it reads too, but only on 2.0.6+)."""
    out = []
    for r in rles:
        counts = r["counts"].encode() if isinstance(r["counts"], str) else r["counts"]
        out.append({"size": list(r["size"]), "counts": counts})
    return out


def same_as_pycocotools(function: str) -> Any:
    """An oracle calling pycocotools.mask's ``function`` on the same arguments."""

    def oracle(kwargs: dict[str, Any], result: Any) -> None:
        pcm = _pycocotools()
        if pcm is None:
            return
        args = dict(kwargs)
        for key in ("rleObjs", "dt", "gt"):
            if key in args:
                args[key] = _bytes_counts(args[key])
        if function == "encode":
            args["bimask"] = np.asfortranarray(np.asarray(args["bimask"], dtype=np.uint8))
        if function == "frPyObjects":
            args["pyobj"] = [list(map(float, p)) for p in args["pyobj"]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools' decode under NumPy 2
            expected = getattr(pcm, function)(**args)
        if function in ("encode", "frPyObjects", "merge"):
            assert result == expected, f"{result!r} != {expected!r}"
        else:
            got = np.asarray(result)
            assert got.dtype == np.asarray(expected).dtype, (got.dtype, np.asarray(expected).dtype)
            np.testing.assert_array_equal(got, expected)

    return oracle


@st.composite
def encode_args(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    h, w, n = draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.integers(1, 4))
    return {"bimask": random_masks(rng, h, w, n)}


@st.composite
def iou_args(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    d, g = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    as_str = draw(st.booleans())
    return {
        "dt": rles_of(random_masks(rng, h, w, d), as_str),
        "gt": rles_of(random_masks(rng, h, w, g), as_str),
        "pyiscrowd": [int(c) for c in rng.random(g) < 0.3],
    }


@st.composite
def merge_args(draw: Any) -> dict[str, Any]:
    return {"rleObjs": draw(rle_lists(min_size=1)), "intersect": draw(st.booleans())}


@st.composite
def polygon_args(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    polygons = []
    for _ in range(draw(st.integers(1, 4))):
        k = draw(st.integers(3, 8))
        xy = rng.random((k, 2)) * [w * 1.4, h * 1.4] - [w * 0.2, h * 0.2]
        polygons.append([float(v) for v in xy.reshape(-1)])
    return {"pyobj": polygons, "h": h, "w": w}


def _polygon_with(value: float) -> Any:
    def change(polygons: Any) -> Any:
        first = list(polygons[0])
        first[len(first) // 2] = value
        return [first, *polygons[1:]]

    return change


def polygon_mutations() -> list[Mutation]:
    return [
        *opaque_mutations(),
        Mutation("nan", _polygon_with(math.nan), blame=True),
        Mutation("inf", _polygon_with(math.inf), blame=True),
        Mutation("neg_inf", _polygon_with(-math.inf), blame=True),
        Mutation("huge", _polygon_with(1e300), blame=True),
        Mutation("far_outside", _polygon_with(-1e8)),
        Mutation("near_int_limit", lambda a: [[4.0e8, 1.0, -4.0e8, 3.0, 2.0, -4.0e8]]),
        Mutation("two_points", lambda a: [[1.0, 2.0, 3.0, 4.0]], blame=True),
        Mutation("odd_count", lambda a: [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]], blame=True),
        Mutation("strings", lambda a: [["1", "2", "3", "4", "5", "6"]], blame=True),
        Mutation("nested", lambda a: [[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]], blame=True),
        Mutation("array_polygons", lambda a: [np.asarray(p) for p in a], equivalent=True),
        Mutation("int_polygons", lambda a: [[int(v) for v in p] for p in a]),
        Mutation("boxes", lambda a: np.array([[1.0, 2.0, 3.0, 4.0], [-5.0, 1e6, 2.0, 2.0]])),
        Mutation("box_nan", lambda a: np.array([[1.0, math.nan, 3.0, 4.0]]), blame=True),
    ]


def _dense_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), int(np.prod(a.shape[1:]))).astype(bool)
    b = b.reshape(len(b), int(np.prod(b.shape[1:]))).astype(bool)
    inter = (a[:, None] & b[None]).sum(-1)
    union = (a[:, None] | b[None]).sum(-1)
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def mask_iou_oracle(kwargs: dict[str, Any], result: Any) -> None:
    got = array_of(result, kwargs)
    np.testing.assert_allclose(got, _dense_iou(np.asarray(kwargs["masks_a"]), np.asarray(kwargs["masks_b"])))


@st.composite
def mask_iou_args(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    a, b = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    return {"masks_a": rng.random((a, h, w)) < 0.4, "masks_b": rng.random((b, h, w)) < 0.4}


def _rle_driver(function: str, valid: Any, decodes: bool) -> Driver:
    return Driver(
        f"ferrops.mask:{function}",
        valid,
        {"rleObjs": rle_mutations(decodes=decodes)},
        (function,),
        oracle=same_as_pycocotools(function),
        timeout_s=TIMEOUT_S,
    )


# The first tensor a worker sees imports torch: seconds on a busy machine.
TIMEOUT_S = 60.0

rle_args = st.fixed_dictionaries({"rleObjs": rle_lists()})

MASK = {
    "ferrops.mask.encode": Driver(
        "ferrops.mask:encode",
        encode_args(),
        {"bimask": array_mutations(floats=False)},
        ("encode",),
        oracle=same_as_pycocotools("encode"),
        timeout_s=TIMEOUT_S,
    ),
    "ferrops.mask.decode": _rle_driver("decode", st.fixed_dictionaries({"rleObjs": rle_lists(min_size=1)}), True),
    "ferrops.mask.area": _rle_driver("area", rle_args, False),
    "ferrops.mask.toBbox": _rle_driver("toBbox", rle_args, False),
    "ferrops.mask.merge": Driver(
        "ferrops.mask:merge",
        merge_args(),
        {"rleObjs": rle_mutations(decodes=False), "intersect": bool_mutations()},
        ("merge",),
        oracle=same_as_pycocotools("merge"),
        timeout_s=TIMEOUT_S,
    ),
    "ferrops.mask.iou": Driver(
        "ferrops.mask:iou",
        iou_args(),
        {
            "dt": rle_mutations(decodes=False),
            "gt": rle_mutations(decodes=False),
            "pyiscrowd": [*opaque_mutations(), Mutation("too_few", lambda a: [])],
        },
        ("iou",),
        oracle=same_as_pycocotools("iou"),
        timeout_s=TIMEOUT_S,
    ),
    "ferrops.mask.frPyObjects": Driver(
        "ferrops.mask:frPyObjects",
        polygon_args(),
        {"pyobj": polygon_mutations(), "h": int_mutations(), "w": int_mutations()},
        ("frPyObjects",),
        oracle=same_as_pycocotools("frPyObjects"),
        timeout_s=TIMEOUT_S,
    ),
    "ferrops.mask.mask_iou": Driver(
        "ferrops.mask:mask_iou",
        mask_iou_args(),
        {"masks_a": array_mutations(floats=False), "masks_b": array_mutations(floats=False)},
        ("mask_iou",),
        oracle=mask_iou_oracle,
        timeout_s=TIMEOUT_S,
    ),
}
