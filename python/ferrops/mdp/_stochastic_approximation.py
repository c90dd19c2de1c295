"""Stochastic approximation (RL-SA): the incremental mean and Robbins-Monro."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .. import _core
from .. import _dispatch as d
from .._errors import describe, type_error, value_error
from ._arguments import check_count, check_number

if TYPE_CHECKING:
    from .._dispatch import Array, ArrayLike


def incremental_mean(x: ArrayLike) -> Array:
    """Running means by ``w_{k+1} = w_k - (1/k)(w_k - x_k)`` (RL-SA).

    Args:
        x (ndarray[N, ...] | Tensor[N, ...]): samples along the first axis.

    Returns:
        ndarray[N, ...] | Tensor[N, ...]: float64; row ``k`` is the mean of
        ``x[:k + 1]`` (the last row is the sample mean).
    """
    F = "incremental_mean"
    a = d.float_array(F, "x", x)
    if a.ndim == 0:
        raise value_error(F, "x", "samples along a first axis", "a scalar")
    width = int(np.prod(a.shape[1:]))
    flat = d.contiguous(F, "x", a.reshape(a.shape[0], width), np.dtype(np.float64))
    out = _core.incremental_mean(flat).reshape(a.shape)
    return d.like(out, x) if d.is_tensor(x) else out


def robbins_monro(
    g: Callable[[float | np.ndarray], ArrayLike],
    w0: ArrayLike,
    steps: int,
    step_size: Callable[[int], float] = lambda k: 1.0 / k,
) -> np.ndarray:
    """Robbins-Monro root finding (RL-SA): ``w_{k+1} = w_k - a_k g~(w_k)`` for
    ``k = 1..steps``, where ``g(w)`` returns a noisy observation of the function
    whose root is sought and ``a_k = step_size(k)`` (the theory asks
    ``sum a_k = inf`` and ``sum a_k^2 < inf``, as ``1/k``).

    Returns:
        ndarray[steps + 1, ...]: float64 iterates ``w_1 = w0, ..., w_{steps+1}``;
        the last is the estimate.
    """
    F = "robbins_monro"
    if not callable(g):
        raise type_error(F, "g", "a callable", describe(g))
    if not callable(step_size):
        raise type_error(F, "step_size", "a callable", describe(step_size))
    n = check_count(F, "steps", steps)
    w = d.contiguous(F, "w0", d.float_array(F, "w0", w0), np.dtype(np.float64)).copy()
    if not np.all(np.isfinite(w)):
        raise value_error(F, "w0", "finite values", repr(w0))
    d.check_allocation(F, f"the history of {n} steps", (n + 1) * w.size * 8)
    history = np.empty((n + 1, *w.shape))
    history[0] = w
    for k in range(1, n + 1):
        a_k = check_number(F, "step_size", step_size(k))
        if not (a_k > 0 and math.isfinite(a_k)):
            raise value_error(F, "step_size", "positive finite step sizes", f"{a_k!r} at k={k}")
        obs = d.host_array(F, "g", g(w.copy() if w.ndim else float(w)))
        if obs.dtype.kind not in "fiub":
            raise type_error(F, "g", "real observations", f"{describe(obs)} at k={k}")
        obs = obs.astype(np.float64)
        if obs.shape != w.shape:
            raise value_error(F, "g", f"observations of shape {list(w.shape)}", f"{list(obs.shape)} at k={k}")
        if not np.all(np.isfinite(obs)):
            raise value_error(F, "g", "finite observations", f"{obs!r} at k={k}")
        w = w - a_k * obs
        history[k] = w
    return history
