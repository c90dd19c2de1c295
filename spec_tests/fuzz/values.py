"""Values for fuzz calls: tags for what pickle would flatten (tensors, strided
layouts, huge zero-stride arrays), rebuilt in the worker by `materialise`, and
the hostile variants (`Mutation`) of each kind of argument."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Tensor:
    """A torch tensor of `dtype` holding `data`'s values (bfloat16 and float16 too)."""

    data: np.ndarray
    dtype: str


@dataclasses.dataclass(frozen=True)
class Strided:
    """`data`'s values in a non-contiguous layout: "reversed" (negative strides),
    "fortran" or "every_other" (a stride of two elements)."""

    data: np.ndarray
    layout: str


@dataclasses.dataclass(frozen=True)
class Huge:
    """A zero-stride array of `shape` (no memory held): sizes that must be refused."""

    shape: tuple[int, ...]
    dtype: str


def materialise(x: Any) -> Any:
    if isinstance(x, Tensor):
        import torch

        return torch.as_tensor(x.data.astype(np.float32) if x.dtype == "bfloat16" else x.data).to(
            getattr(torch, x.dtype)
        )
    if isinstance(x, Strided):
        a = x.data
        if x.layout == "reversed" and a.ndim:
            return np.flip(np.flip(a, 0).copy(), 0)
        if x.layout == "fortran":
            return np.asfortranarray(a)
        return np.stack([a, a], axis=-1)[..., 0]
    if isinstance(x, Huge):
        return np.broadcast_to(np.zeros((), x.dtype), x.shape)
    if isinstance(x, dict):
        return {k: materialise(v) for k, v in x.items()}
    if isinstance(x, list):
        return [materialise(v) for v in x]
    if isinstance(x, tuple):
        return tuple(materialise(v) for v in x)
    return x


def logical(x: Any) -> Any:
    """The values a tagged argument holds, as the parent sees them."""
    if isinstance(x, (Tensor, Strided)):
        return x.data
    return x


class Stranger:
    """An object of no kind any function accepts."""

    def __repr__(self) -> str:
        return "Stranger()"


@dataclasses.dataclass(frozen=True)
class Mutation:
    """A hostile replacement for one argument. `equivalent`: the same values in
    another container or layout, so the result must be the unmutated one's.
    `blame`: no call can accept it, so an error must name the argument."""

    label: str
    make: Callable[[Any], Any]
    equivalent: bool = False
    blame: bool = False


def _constant(value: Any) -> Callable[[Any], Any]:
    return lambda _: value


def _with_value(value: float) -> Callable[[Any], Any]:
    def inject(a: Any) -> Any:
        a = np.array(logical(a), dtype=np.float64 if np.asarray(logical(a)).dtype.kind != "f" else None)
        if a.size:
            a.flat[a.size // 2] = value
        return a

    return inject


WRONG_KINDS = [
    Mutation("str", lambda a: "abc", blame=True),
    Mutation("object", lambda a: Stranger(), blame=True),
    Mutation("dict", lambda a: {"a": 1}, blame=True),
    Mutation("complex", lambda a: 1 + 2j, blame=True),
]


def array_mutations(*, floats: bool = True, optional: bool = False) -> list[Mutation]:
    """Mutations of an array argument (`floats`: a float array; else integers)."""
    as_array = np.asarray
    m = [
        Mutation("reversed", lambda a: Strided(as_array(logical(a)), "reversed"), equivalent=True),
        Mutation("fortran", lambda a: Strided(as_array(logical(a)), "fortran"), equivalent=True),
        Mutation("every_other", lambda a: Strided(as_array(logical(a)), "every_other"), equivalent=True),
        Mutation("nested_list", lambda a: as_array(logical(a)).tolist()),
        Mutation("ragged_list", lambda a: [[1.0, 2.0], [3.0]], blame=True),
        Mutation("complex_dtype", lambda a: as_array(logical(a)).astype(np.complex128), blame=True),
        Mutation("object_dtype", lambda a: np.array(["x"] * max(as_array(logical(a)).size, 1), object), blame=True),
        Mutation("bool_dtype", lambda a: as_array(logical(a)).astype(bool)),
        Mutation("int32", lambda a: as_array(logical(a)).astype(np.int32)),
        Mutation("int64", lambda a: as_array(logical(a)).astype(np.int64)),
        Mutation("uint8", lambda a: np.abs(as_array(logical(a))).astype(np.uint8)),
        Mutation("float16", lambda a: as_array(logical(a)).astype(np.float16)),
        Mutation("float64", lambda a: as_array(logical(a)).astype(np.float64)),
        Mutation("tensor_float32", lambda a: Tensor(as_array(logical(a)).astype(np.float32), "float32")),
        Mutation("tensor_float64", lambda a: Tensor(as_array(logical(a)).astype(np.float64), "float64")),
        Mutation("tensor_bfloat16", lambda a: Tensor(as_array(logical(a)).astype(np.float32), "bfloat16")),
        Mutation("tensor_float16", lambda a: Tensor(as_array(logical(a)).astype(np.float16), "float16")),
        Mutation("tensor_int64", lambda a: Tensor(as_array(logical(a)).astype(np.int64), "int64")),
        Mutation("zero_d", lambda a: np.float64(1.0)),
        Mutation("extra_dim", lambda a: as_array(logical(a))[None]),
        Mutation("flattened", lambda a: as_array(logical(a)).reshape(-1)),
        Mutation("empty", lambda a: as_array(logical(a))[:0]),
        Mutation("huge_dim", lambda a: Huge((2**40, *as_array(logical(a)).shape[1:]), "float32")),
        Mutation("nan", _with_value(math.nan)),
        Mutation("inf", _with_value(math.inf)),
        Mutation("neg_inf", _with_value(-math.inf)),
        Mutation("negative", _with_value(-3.0)),
        Mutation("huge_value", _with_value(1e300)),
        *WRONG_KINDS,
    ]
    if not floats:
        m += [Mutation("float_values", lambda a: as_array(logical(a)).astype(np.float64) + 0.5)]
    m.append(Mutation("none", lambda a: None, blame=not optional))
    return m


def int_mutations(*, optional: bool = False, work: bool = False) -> list[Mutation]:
    """Mutations of an integer argument. `work`: a count of iterations or episodes,
    where a large valid count is a long call, not a fault (Ctrl-C stops it)."""
    large = (2**70,) if work else (2**31, 2**63, 2**70)
    return [
        Mutation("np_int64", lambda a: np.int64(a) if isinstance(a, int) else a, equivalent=True),
        *(Mutation(f"int_{v}", _constant(v)) for v in (-1, 0, 1, *large, -(2**63))),
        Mutation("float_whole", lambda a: float(a) if isinstance(a, int) else 2.0),
        Mutation("float_frac", lambda a: 1.5),
        Mutation("nan", lambda a: math.nan),
        Mutation("inf", lambda a: math.inf),
        Mutation("bool", lambda a: True),
        Mutation("str_number", lambda a: "3", blame=True),
        Mutation("list", lambda a: [a]),
        *WRONG_KINDS,
        Mutation("none", lambda a: None, blame=not optional),
    ]


def float_mutations(*, optional: bool = False) -> list[Mutation]:
    return [
        Mutation("np_float32", lambda a: np.float32(a) if isinstance(a, float) else a),
        *(Mutation(f"value_{v}", _constant(v)) for v in (math.nan, math.inf, -math.inf, -1.0, 0.0, 1e300, 2**70)),
        Mutation("bool", lambda a: True),
        Mutation("str_number", lambda a: "0.5", blame=True),
        Mutation("list", lambda a: [a]),
        Mutation("zero_d_array", lambda a: np.array(a)),
        *WRONG_KINDS,
        Mutation("none", lambda a: None, blame=not optional),
    ]


def bool_mutations() -> list[Mutation]:
    return [
        Mutation("np_bool", lambda a: np.bool_(a), equivalent=True),
        Mutation("int_0_1", lambda a: int(bool(a)), equivalent=True),
        Mutation("str_false", lambda a: "false", blame=True),
        Mutation("str_true", lambda a: "true", blame=True),
        Mutation("int_2", lambda a: 2, blame=True),
        Mutation("float", lambda a: 0.5, blame=True),
        Mutation("none", lambda a: None, blame=True),
        Mutation("object", lambda a: Stranger(), blame=True),
    ]


def choice_mutations() -> list[Mutation]:
    return [
        Mutation("bogus", lambda a: "bogus", blame=True),
        Mutation("upper", lambda a: a.upper() if isinstance(a, str) else a),
        Mutation("int", lambda a: 3, blame=True),
        Mutation("bytes", lambda a: b"x", blame=True),
        Mutation("none", lambda a: None),
        Mutation("object", lambda a: Stranger(), blame=True),
    ]


def opaque_mutations() -> list[Mutation]:
    """For arguments of no numeric kind (callables, models, datasets): wrong kinds only."""
    records = Mutation("dict", lambda a: {"a": 1})  # a dict is the kind of a dataset: not blamed
    return [
        *(m for m in WRONG_KINDS if m.label != "dict"),
        records,
        Mutation("int", lambda a: 3),
        Mutation("none", lambda a: None),
        Mutation("list", lambda a: [1, 2]),
    ]
