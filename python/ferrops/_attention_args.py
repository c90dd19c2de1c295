"""Shared argument checking and conversion of the attention functions
(:mod:`ferrops.attention`): one float dtype for query, key and value, finite
inputs on the PyTorch path, the softmax scale, and results back in the inputs'
kind, dtype and device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from . import _dispatch as d
from ._dispatch import Array, ArrayLike
from ._errors import memory_error, type_error, value_error

if TYPE_CHECKING:
    import torch

_FLOAT_NAMES = ("float16", "bfloat16", "float32", "float64")


def _dtype_name(x: Array) -> str:
    return str(x.dtype).replace("torch.", "")


def _check_float_inputs(function: str, named: Mapping[str, Array]) -> str:
    """All of query/key/value of one float dtype; returns its name."""
    names = {n: _dtype_name(x) for n, x in named.items()}
    for n, dt in names.items():
        if dt not in _FLOAT_NAMES:
            raise type_error(function, n, "a float16, bfloat16, float32 or float64 array or tensor", f"dtype {dt}")
    if len(set(names.values())) > 1:
        got = ", ".join(f"{n} {dt}" for n, dt in names.items())
        raise TypeError(f"{function}(): expected query, key and value of one dtype, got {got}")
    return next(iter(names.values()))


def _as_inputs(function: str, named: dict[str, ArrayLike]) -> dict[str, Array]:
    """NumPy inputs stay arrays (anything array-like becomes one); tensors stay tensors."""
    return {n: x if d.is_tensor(x) else d.host_array(function, n, x) for n, x in named.items()}


def _check_finite(function: str, **tensors: torch.Tensor) -> None:
    """The Rust path's rule on the PyTorch path too: non-finite query, key or value
    raise instead of turning into NaN output."""
    torch = d.torch_module()
    for name, t in tensors.items():
        bad = ~torch.isfinite(t.reshape(-1))
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0, 0])
            raise value_error(function, name, "finite values", f"{name}[{i}] = {t.reshape(-1)[i].item()}")


def _host_tensor(function: str, argument: str, x: ArrayLike) -> torch.Tensor:
    """A tensor of ``x`` (NumPy arrays shared when writable; torch cannot share read-only memory)."""
    if d.is_tensor(x):
        return x
    torch = d.torch_module()
    a = d.host_array(function, argument, x)
    if a.flags.writeable:
        return torch.from_numpy(d.contiguous(function, argument, a, a.dtype))
    try:
        return torch.from_numpy(a.copy())
    except MemoryError:
        raise memory_error(function, argument, a.shape, a.dtype) from None


def _result(values: np.ndarray, reference: Array) -> Array:
    """``values`` in the kind, dtype and device of ``reference``."""
    if d.is_tensor(reference):
        torch = d.torch_module()
        return torch.from_numpy(values).to(device=reference.device, dtype=reference.dtype)
    return values.astype(reference.dtype, copy=False)


def _lse_result(values: np.ndarray, reference: Array) -> Array:
    """The log-sum-exp: float32 (float64 for float64 inputs), of the reference's kind."""
    if d.is_tensor(reference):
        torch = d.torch_module()
        return torch.from_numpy(values).to(reference.device)
    return values


def _check_scale(function: str, name: str, value: object, head_dim: int) -> float:
    if value is None:
        return 1.0 / math.sqrt(head_dim) if head_dim > 0 else 1.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise type_error(function, name, "a float or None", type(value).__name__)
    if not math.isfinite(value):
        raise value_error(function, name, "a finite number", repr(value))
    return float(value)
