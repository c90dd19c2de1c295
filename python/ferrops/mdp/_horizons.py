"""Other criteria and an exact solver: relative value iteration (RL-RVI),
finite-horizon backward induction (RL-FH) and linear programming (RL-LP)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .. import _core
from .._errors import value_error
from ._arguments import check_count, check_discount, check_positive
from ._model import build_model, state_vector
from ._solvers import MDPSolution

if TYPE_CHECKING:
    from .._dispatch import Array, ArrayLike
    from ._model import Rewards, Transitions


@dataclass(frozen=True)
class AverageRewardSolution:
    """What relative value iteration found.

    Attributes:
        V (ndarray[S]): float64 relative values (pymdptoolbox's ``V``).
        policy (ndarray[S]): int64 greedy actions.
        average_reward (float): pymdptoolbox's ``average_reward``,
            ``min_s (TV - V)(s)``: a lower bound of the optimal gain.
        average_reward_upper (float): ``max_s (TV - V)(s)``, an upper bound of
            the optimal gain (unichain models); the two meet as ``span -> 0``.
        iterations (int): backups.
        converged (bool): ``span(TV - V) < epsilon`` held.
        residual (float): the last ``span(TV - V)``.
    """

    V: Array
    policy: Array
    average_reward: float
    average_reward_upper: float
    iterations: int
    converged: bool
    residual: float


def relative_value_iteration(
    P: Transitions,
    R: Rewards,
    epsilon: float = 0.01,
    max_iter: int = 1000,
    initial_value: ArrayLike | None = None,
) -> AverageRewardSolution:
    """Relative value iteration for the average reward (RL-RVI), pymdptoolbox's
    ``RelativeValueIteration``: undiscounted backups ``V_next = TV - g`` with
    ``g`` the previous iterate's last value ``V[S - 1]``, until
    ``span(V_next - V) < epsilon`` or ``max_iter`` backups.

    Args:
        P, R: the MDP (see :func:`value_iteration`).
        epsilon (float): the span tolerance.
        max_iter (int): the most backups.
        initial_value (ndarray[S], optional): a warm start (default 0).

    Returns:
        AverageRewardSolution
    """
    F = "relative_value_iteration"
    eps = check_positive(F, "epsilon", epsilon)
    iters = check_count(F, "max_iter", max_iter)
    m = build_model(F, P, R)
    v0 = None if initial_value is None else state_vector(F, "initial_value", initial_value, m.states)
    V, policy, k, converged, residual, low, high = _core.mdp_relative_value_iteration(
        m.csr, m.reward, m.states, eps, iters, v0
    )
    return AverageRewardSolution(m.out(V), m.out(policy), low, high, k, converged, residual)


@dataclass(frozen=True)
class FiniteHorizonSolution:
    """Backward induction's values and policies per stage.

    Attributes:
        V (ndarray[S, N + 1]): float64 ``V[:, n]``, the value with ``N - n``
            stages to go (``V[:, N]`` the terminal reward ``h``), as pymdptoolbox.
        policy (ndarray[S, N]): int64 ``policy[:, n]``, the greedy actions of stage ``n``.
    """

    V: Array
    policy: Array


def finite_horizon(
    P: Transitions, R: Rewards, discount: float, N: int, h: ArrayLike | None = None
) -> FiniteHorizonSolution:
    """Backward induction over ``N`` stages (RL-FH), pymdptoolbox's
    ``FiniteHorizon``: ``V_N = h`` (default 0),
    ``V_n(s) = max_a r(s, a) + gamma sum_s' P[a, s, s'] V_{n+1}(s')`` and
    ``policy_n`` its greedy actions (ties to the lowest), ``n = N - 1 .. 0``.

    Args:
        P, R: the MDP (see :func:`value_iteration`).
        discount (float): ``gamma`` in (0, 1].
        N (int): the horizon, at least 1.
        h (ndarray[S], optional): the terminal reward.

    Returns:
        FiniteHorizonSolution
    """
    F = "finite_horizon"
    gamma = check_discount(F, discount, allow_one=True)
    horizon = check_count(F, "N", N)
    m = build_model(F, P, R)
    terminal = None if h is None else state_vector(F, "h", h, m.states)
    values, policies = _core.mdp_finite_horizon(m.csr, m.reward, m.states, gamma, horizon, terminal)
    return FiniteHorizonSolution(m.out(np.ascontiguousarray(values.T)), m.out(np.ascontiguousarray(policies.T)))


def linear_programming(P: Transitions, R: Rewards, discount: float) -> MDPSolution:
    """The exact ``V*`` of the linear program (RL-LP) ``min sum_s V(s)`` subject to
    ``V(s) >= r(s, a) + gamma sum_s' P[a, s, s'] V(s')`` for every ``(s, a)``,
    solved by SciPy's HiGHS on sparse constraints, then one Bellman backup for the
    policy (pymdptoolbox's ``LP``: its ``V`` is that backup too).

    Args:
        P, R: the MDP (see :func:`value_iteration`).
        discount (float): ``gamma`` in (0, 1).

    Returns:
        MDPSolution: ``bound`` is 0 up to HiGHS's tolerance (``iterations`` its
        simplex/IPM iterations).
    """
    F = "linear_programming"
    gamma = check_discount(F, discount, allow_one=False)
    m = build_model(F, P, R)
    if m.states == 0:
        empty = np.zeros(0)
        return MDPSolution(m.out(empty), m.out(empty.astype(np.int64)), 0, True, 0.0, 0.0, "linear_programming")
    # The model checked as every Rust solver checks it (one backup of V = 0), so a
    # bad P or R is named here rather than in a message of HiGHS.
    _core.mdp_bellman_backup(F, m.csr, m.reward, m.states, gamma, np.zeros(m.states))
    import scipy.optimize
    import scipy.sparse as sp

    identity = sp.identity(m.states, format="csr")
    blocks = [
        gamma * sp.csr_array((m.data[a], m.indices[a], m.indptr[a]), shape=(m.states, m.states)) - identity
        for a in range(m.actions)
    ]
    constraints = sp.vstack(blocks, format="csr")
    bound_rhs = -np.ascontiguousarray(m.reward.T).ravel()
    result = scipy.optimize.linprog(
        np.ones(m.states), A_ub=constraints, b_ub=bound_rhs, bounds=(None, None), method="highs"
    )
    if result.status != 0:
        raise value_error(F, "R", "an MDP whose linear program HiGHS solves", f"HiGHS: {result.message}")
    V, policy = _core.mdp_bellman_backup(F, m.csr, m.reward, m.states, gamma, np.asarray(result.x, dtype=np.float64))
    return MDPSolution(m.out(V), m.out(policy), int(result.nit), True, 0.0, 0.0, "linear_programming")
