"""What the fuzz suite knows of one public callable: how to call it well
(`valid`), how each argument may be spoiled (`mutations`), and how to judge a
result (`oracle` for well-formed calls, `sane` for any result)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st

from .values import Mutation, Strided, Tensor, logical
from .worker import ObjectOut, TensorOut

Check = Callable[[dict[str, Any], Any], None]


def no_documented_error(exc_type: str, message: str) -> bool:
    return False


@dataclasses.dataclass(frozen=True)
class Driver:
    target: str  # "module:qualname", resolved in the worker
    valid: st.SearchStrategy[dict[str, Any]]
    mutations: dict[str, list[Mutation]]
    names: tuple[str, ...]  # what an error message may call the function
    oracle: Check | None = None  # judges the result of an unspoiled (or equivalently spoiled) call
    sane: Check | None = None  # judges any successful result
    documented: Callable[[str, str], bool] = no_documented_error  # an exception the docs promise
    timeout_s: float = 10.0


class Args(dict[str, Any]):
    """A call's arguments as plain values (`logical`), remembering whether a tensor came in."""

    def __init__(self, tagged: dict[str, Any]) -> None:
        super().__init__({k: logical(v) for k, v in tagged.items()})
        arrays = [isinstance(v, Tensor) for v in tagged.values() if isinstance(v, (Tensor, Strided, np.ndarray))]
        # Mixed NumPy and tensors: either kind out is fine (the peers take tensors only).
        self.tensor_in: bool | None = any(arrays) if all(arrays) or not any(arrays) else None


def array_of(result: Any, kwargs: dict[str, Any]) -> np.ndarray:
    """`result` as NumPy, checking it is of its inputs' kind: a tensor when a tensor came in."""
    tensor_in = getattr(kwargs, "tensor_in", False)
    if tensor_in is None:
        return result.array if isinstance(result, TensorOut) else np.asarray(result)
    if tensor_in:
        assert isinstance(result, TensorOut), f"tensor in, {type(result).__name__} out"
        return result.array
    assert isinstance(result, np.ndarray), f"NumPy in, {type(result).__name__} out"
    return result


def assert_close(got: np.ndarray, expected: Any, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, f"shape {got.shape}, expected {expected.shape}"
    np.testing.assert_allclose(got.astype(np.float64), expected, rtol=rtol, atol=atol, equal_nan=True)


def object_of(result: Any, type_name: str) -> ObjectOut:
    assert isinstance(result, ObjectOut) and result.type_name == type_name, f"expected {type_name}, got {result!r}"
    return result


def values_of(x: Any) -> Any:
    """A result's values, whether it came back as NumPy or as a tensor."""
    return x.array if isinstance(x, TensorOut) else x


def seeds() -> st.SearchStrategy[np.random.Generator]:
    return st.integers(0, 2**32 - 1).map(np.random.default_rng)
