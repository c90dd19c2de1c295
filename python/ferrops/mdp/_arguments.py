"""Checks of the scalar arguments of the MDP functions."""

from __future__ import annotations

import math
import numbers
from typing import TypeVar

from .. import _dispatch as d
from .._errors import describe, type_error, value_error

Choice = TypeVar("Choice", bound=str)


def check_number(function: str, argument: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise type_error(function, argument, "a real number", describe(value))
    return float(value)


def check_discount(function: str, value: object, allow_one: bool) -> float:
    g = check_number(function, "discount", value)
    if not (0.0 < g < 1.0 or (allow_one and g == 1.0)):
        want = "a value in (0, 1]" if allow_one else "a value in (0, 1)"
        hint = " (1 only with stop='span')" if function == "value_iteration" and not allow_one and g == 1.0 else ""
        raise value_error(function, "discount", f"{want}{hint}", repr(value))
    return g


def check_positive(function: str, argument: str, value: object) -> float:
    v = check_number(function, argument, value)
    if not (v > 0.0 and math.isfinite(v)):
        raise value_error(function, argument, "a positive finite number", repr(value))
    return v


def check_count(function: str, argument: str, value: object) -> int:
    return d.check_int(function, argument, value, 1, "a positive count")


def check_choice(function: str, argument: str, value: object, allowed: tuple[Choice, ...]) -> Choice:
    """``value`` as the one of ``allowed`` it equals (typed as the caller's ``Literal``)."""
    if value not in allowed:
        raise value_error(function, argument, f"one of {allowed}", repr(value))
    return allowed[allowed.index(value)]
