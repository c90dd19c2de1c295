"""COCO ids: integers or strings, as pycocotools takes them.

The Rust dataset keeps a string id as an integer code (string ``k`` of a dataset
is ``-2**63 + k``; integer ids start at ``-2**62``) and lists the strings, so
evaluation compares codes only. These helpers turn codes back into ids and the
ids of ``params`` into codes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The code of a dataset's first string id.
STRING_CODE_BASE = -(2**63)
#: The smallest integer id (the ones below are codes).
FIRST_INTEGER_ID = -(2**62)
_LARGEST_ID = 2**63 - 1


def decode(codes: np.ndarray, strings: list[str]) -> list[Any]:
    """The ids the codes stand for: Python ints, and strs for string ids."""
    values: list[Any] = codes.tolist()
    if not strings:
        return values
    return [strings[c - STRING_CODE_BASE] if c < FIRST_INTEGER_ID else c for c in values]


def combined_strings(gt_strings: list[str], dt_strings: list[str]) -> list[str]:
    """The ground truth's strings, then the detections' others, in order: how
    ``coco_evaluate`` codes the detections (results loaded against the ground
    truth already list the ground truth's first)."""
    if dt_strings[: len(gt_strings)] == gt_strings:
        return dt_strings
    known = set(gt_strings)
    return gt_strings + [s for s in dt_strings if s not in known]


def encode(ids: Any, strings: list[str]) -> np.ndarray:
    """``params`` ids as codes (int64). An id no record can carry (a string the
    datasets lack, a float with a fraction, anything else) gets its own code that
    matches nothing, as such an id matches nothing in pycocotools; integral
    floats stand for their integer (``1.0 == 1`` in pycocotools' dicts)."""
    try:
        array = np.asarray(ids)
    except (TypeError, ValueError):  # ragged: read item by item below
        array = np.asarray(list(ids), dtype=object)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if (
        array.ndim == 1
        and array.dtype.kind in "iu"
        and int(array.max()) <= _LARGEST_ID
        and (not strings or int(array.min()) >= FIRST_INTEGER_ID)
    ):
        return np.ascontiguousarray(array, dtype=np.int64)
    codes = {s: STRING_CODE_BASE + k for k, s in enumerate(strings)}
    out: list[int] = []
    no_match = FIRST_INTEGER_ID - 1
    # A list keeps its items' types (an array would turn [1, "a"] into strings).
    values = list(ids) if isinstance(ids, (list, tuple)) else array.reshape(-1).tolist()
    for value in values:
        if isinstance(value, np.generic):
            value = value.item()
        code: int | None = None
        if isinstance(value, str):
            code = codes.get(value)
        elif isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and FIRST_INTEGER_ID <= value <= _LARGEST_ID:
            code = value
        if code is None:
            code, no_match = no_match, no_match - 1
        out.append(code)
    return np.asarray(out, dtype=np.int64)
