"""Modified policy iteration with a certified stop (RL-MPI), and :func:`solve`,
which picks a solver for the input."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from .. import _core
from ._arguments import check_choice, check_count, check_discount, check_number, check_positive
from ._model import build_model, policy_vector, state_vector
from ._solvers import MDPSolution, run_policy_iteration

if TYPE_CHECKING:
    from .._dispatch import ArrayLike
    from ._model import Rewards, Transitions

EvaluationSweep = Literal["jacobi", "gauss-seidel", "sor"]

#: States up to which :func:`solve` runs exact policy iteration on dense input:
#: a dense ``S x S`` solve per round costs less than the sweeps of MPI there.
EXACT_STATES = 500
#: :func:`solve`'s evaluation stop: a sweep whose change has a span below this
#: share of the last backup's ``span(TV - V)`` ends the evaluation.
SOLVE_SPAN_RATIO = 0.1


def modified_policy_iteration(
    P: Transitions,
    R: Rewards,
    discount: float,
    epsilon: float = 0.01,
    max_iter: int = 10,
    initial_value: ArrayLike | None = None,
    initial_policy: ArrayLike | None = None,
    method: EvaluationSweep = "jacobi",
    omega: float = 1.0,
    max_improvements: int = 100_000,
) -> MDPSolution:
    """Modified policy iteration (RL-MPI), pymdptoolbox's ``PolicyIterationModified``
    with the same defaults, ``V``, policy and iteration count.

    Each round backs up ``TV`` (Jacobi, threaded) with its greedy policy ``pi``
    and stops once ``span(TV - V) < epsilon (1 - gamma) / gamma``; otherwise it
    sets ``V = TV`` and evaluates ``pi`` partially: at most ``max_iter`` sweeps
    of ``V <- r_pi + gamma P_pi V``, fewer once a sweep changes ``V`` by less than
    ``epsilon (1 - gamma) / gamma``.

    The stop is certified: MacQueen's bounds on the last backup give
    ``V*(s) - V_pi(s) <= gamma / (1 - gamma) span(TV - V) < epsilon`` for every
    state, whatever the evaluation sweeps did; ``bound`` reports that number.

    Args:
        P, R: the MDP (see :func:`value_iteration`).
        discount (float): ``gamma`` in (0, 1]; at 1 the stop is
            ``span(TV - V) < epsilon`` and no bound is proved (``inf``).
        epsilon (float): the returned policy is ``epsilon``-optimal.
        max_iter (int): the most evaluation sweeps per round (pymdptoolbox's).
        initial_value (ndarray[S], optional): ``V_0``; default pymdptoolbox's
            ``min r / (1 - gamma)`` (0 at gamma = 1), a lower bound of ``V*``.
        initial_policy (ndarray[S], optional): a policy evaluated (one partial
            evaluation from ``V_0``) before the first round: a warm start.
        method: the evaluation sweeps: ``"jacobi"`` (threaded, pymdptoolbox's),
            ``"gauss-seidel"`` (in place, state order, one thread) or ``"sor"``
            (Gauss-Seidel moving each value ``omega`` of the way to its backup).
        omega (float): the relaxation factor of ``"sor"``, in (0, 2).
        max_improvements (int): the most rounds (``converged=False`` there).

    Returns:
        MDPSolution: ``V`` = the last backup ``TV``, ``policy`` its greedy actions,
        ``iterations`` the rounds, ``bound`` the proved ``max(V* - V_policy)``.
    """
    F = "modified_policy_iteration"
    return _mpi(F, P, R, discount, epsilon, max_iter, initial_value, initial_policy, method, omega, max_improvements)


def _mpi(
    function: str,
    P: Transitions,
    R: Rewards,
    discount: float,
    epsilon: float,
    max_iter: int,
    initial_value: ArrayLike | None,
    initial_policy: ArrayLike | None,
    method: str,
    omega: float,
    max_improvements: int,
    span_ratio: float | None = None,
) -> MDPSolution:
    method = check_choice(function, "method", method, ("jacobi", "gauss-seidel", "sor"))
    gamma = check_discount(function, discount, allow_one=True)
    eps = check_positive(function, "epsilon", epsilon)
    sweeps = check_count(function, "max_iter", max_iter)
    rounds = check_count(function, "max_improvements", max_improvements)
    relax = check_number(function, "omega", omega)
    m = build_model(function, P, R)
    v0 = None if initial_value is None else state_vector(function, "initial_value", initial_value, m.states)
    pi0 = (
        None
        if initial_policy is None
        else policy_vector(function, initial_policy, m.states, m.actions, "initial_policy")
    )
    V, policy, k, _, converged, residual, bound, (low, high) = _core.mdp_modified_policy_iteration(
        function, m.csr, m.reward, m.states, gamma, eps, sweeps, rounds, v0, pi0, method, relax, span_ratio
    )
    if span_ratio is not None and gamma < 1.0:
        # solve: the middle of MacQueen's bracket of V* (and of V_policy),
        # within bound / 2 of both, instead of the last backup.
        V += gamma / (1.0 - gamma) * 0.5 * (low + high)
    return MDPSolution(m.out(V), m.out(policy), k, converged, residual, bound, "modified_policy_iteration")


def solve(
    P: Transitions,
    R: Rewards,
    discount: float,
    epsilon: float = 0.01,
    initial_value: ArrayLike | None = None,
    initial_policy: ArrayLike | None = None,
) -> MDPSolution:
    """An ``epsilon``-optimal policy by the fastest solver for the input; the
    result's ``method`` says which ran and ``bound`` what it proved.

    * Dense ``P`` with at most 500 states: exact policy iteration
      (``method="policy_iteration"``, ``bound=0``: the policy is optimal).
    * Otherwise modified policy iteration (``method="modified_policy_iteration"``)
      with threaded Jacobi sweeps: at most 20 evaluation sweeps per round, fewer
      once a sweep's change has a span below a tenth of the last backup's (the
      greedy policy ignores a constant shift of ``V``, so such sweeps are
      wasted). On fast-mixing models (random sparse ones) that is a few sweeps
      per round, close to value iteration with its span stop; on slow-mixing ones
      (grid worlds, chains) the cheap evaluation sweeps do most of the work.

    ``V`` is the middle of MacQueen's bracket of the last backup, within
    ``bound / 2`` of ``V*`` and of the policy's value (not pymdptoolbox's last
    iterate, which the span stop leaves off ``V*`` by a near-constant shift).

    Args:
        P, R: the MDP (see :func:`value_iteration`).
        discount (float): ``gamma`` in (0, 1).
        epsilon (float): ``max(V* - V_policy) < epsilon`` is proved.
        initial_value, initial_policy: warm starts (see
            :func:`modified_policy_iteration`).

    Returns:
        MDPSolution
    """
    F = "solve"
    gamma = check_discount(F, discount, allow_one=False)
    eps = check_positive(F, "epsilon", epsilon)
    small_dense = isinstance(P, np.ndarray) and P.ndim == 3 and P.shape[1] <= EXACT_STATES
    if small_dense and initial_value is None:
        # Policy iteration ends in far fewer rounds than this (at most A^S).
        sol = run_policy_iteration(F, P, R, gamma, 1_000_000, "exact", initial_policy, 1.0, keep_ties=True)
        return MDPSolution(sol.V, sol.policy, sol.iterations, sol.converged, 0.0, 0.0, "policy_iteration")
    return _mpi(F, P, R, gamma, eps, 20, initial_value, initial_policy, "jacobi", 1.0, 100_000, SOLVE_SPAN_RATIO)
