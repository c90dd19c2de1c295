"""The one way ferrops builds its exceptions for bad arguments.

Every message has the same form, so users (and tests) can rely on it::

    <function>(): argument '<argument>': expected <expected>, got <got>

The Rust core writes the same form (``FerropsError``), so a message reads alike
whichever layer found the problem.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np


def describe(x: object) -> str:
    """What ``x`` is, for the ``got`` part of a message: its type, and its dtype if it has one."""
    dtype = getattr(x, "dtype", None)
    return f"{type(x).__name__} of dtype {dtype}" if dtype is not None else type(x).__name__


def message(function: str, argument: str, expected: str, got: object) -> str:
    return f"{function}(): argument '{argument}': expected {expected}, got {got}"


def value_error(function: str, argument: str, expected: str, got: object) -> ValueError:
    """A ``ValueError`` for an argument of the right kind but an unacceptable value."""
    return ValueError(message(function, argument, expected, got))


def type_error(function: str, argument: str, expected: str, got: object) -> TypeError:
    """A ``TypeError`` for an argument of the wrong kind (container, dtype)."""
    return TypeError(message(function, argument, expected, got))


def memory_error(function: str, argument: str, shape: Iterable[int], dtype: Any) -> MemoryError:
    """A ``MemoryError`` for a copy of an argument that the machine cannot hold (a
    2^40-row broadcast view, say), worded as the Rust core words its own failed
    allocations, so that the user learns which call and which input asked for it.
    ``dtype``: the copy's NumPy or torch dtype."""
    dims = [int(n) for n in shape]
    try:
        itemsize = np.dtype(dtype).itemsize
    except TypeError:  # a torch dtype
        itemsize = dtype.itemsize
    name = str(dtype).removeprefix("torch.")
    return MemoryError(
        f"{function}(): a {name} copy of argument '{argument}' of shape {dims} "
        f"needs {math.prod(dims) * itemsize} bytes, more than can be allocated"
    )
