"""Python data and files to the bytes the Rust COCO parser reads."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable

import numpy as np

from .._errors import type_error, value_error

#: What ferrops accepts as a file name.
Path = str | os.PathLike[str]


def _json_scalar(obj: object) -> object:
    """json.dumps hook: NumPy scalars and arrays as Python numbers and lists."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, bytes):
        # Compressed RLE counts, as pycocotools.mask writes them: ASCII by
        # construction; other bytes are kept as characters the parser refuses.
        return obj.decode("latin-1")
    raise TypeError(f"{type(obj).__name__} is not a JSON value")


def _non_finite(value: object) -> bool:
    """A NaN or infinity anywhere in ``value`` (polygons nest lists in lists)."""
    if isinstance(value, (float, np.floating)):
        return not math.isfinite(value)
    if isinstance(value, np.ndarray):
        return value.dtype.kind == "f" and not bool(np.isfinite(value).all())
    if isinstance(value, (list, tuple)):
        return any(_non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    return False


def _first_non_finite(records: Iterable[object]) -> int | None:
    for i, record in enumerate(records):
        if isinstance(record, dict) and _non_finite(record):
            return i
    return None


def to_json(obj: object, function: str, argument: str, source: str, what: str) -> bytes:
    """Encodes Python data for the Rust parser, naming the first record with a
    non-finite number (JSON cannot hold NaN)."""
    try:
        return json.dumps(obj, allow_nan=False, default=_json_scalar).encode()
    except ValueError:
        records = obj.get("annotations", []) if isinstance(obj, dict) else obj
        i = _first_non_finite(records if isinstance(records, Iterable) else ())
        where = f"{what}[{i}]" if i is not None else "a record"
        raise value_error(
            function, argument, "finite numbers", f"{source}: {where} has a NaN or infinite value"
        ) from None
    except TypeError as exc:
        raise type_error(function, argument, "JSON-like data", f"{source}: {exc}") from None


def read(path: Path) -> tuple[bytes, str]:
    """The bytes of a file and its name (for the parser's messages)."""
    name = os.fspath(path)
    with open(name, "rb") as f:
        return f.read(), str(name)
