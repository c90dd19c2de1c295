"""Value iteration, policy iteration and evaluation, and Q-values (RL-BELLMAN,
RL-VI-STOP, RL-GS, RL-PI)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from .. import _core
from .. import _dispatch as d
from .._dispatch import Backend
from .._errors import value_error
from ._arguments import check_choice, check_count, check_discount, check_positive
from ._model import Model, build_model, check_finite_values, policy_vector, state_vector, torch_path

if TYPE_CHECKING:
    from .._dispatch import Array, ArrayLike
    from ._model import Rewards, Transitions

StopRule = Literal["span", "supnorm"]
SweepMethod = Literal["jacobi", "gauss-seidel"]
Evaluation = Literal["exact", "iterative"]


@dataclass(frozen=True)
class MDPSolution:
    """What a solver found.

    Attributes:
        V (ndarray[S] | Tensor[S]): float64 state values (the last iterate of value
            iteration; the value of ``policy`` for policy iteration).
        policy (ndarray[S] | Tensor[S]): int64 greedy actions (ties to the lowest).
        iterations (int): sweeps (value iteration) or improvement rounds (policy iteration).
        converged (bool): the stopping rule held (False: stopped at ``max_iter``).
        residual (float): value iteration: the last ``span`` or sup-norm of
            ``V_k - V_{k-1}``; policy iteration: states whose action changed in the
            last improvement (0 when converged); modified policy iteration: the
            last ``span(TV - V)``.
        bound (float): a proved bound ``max_s V*(s) - V_policy(s) <= bound``
            (RL-MPI: MacQueen's bounds of the last Jacobi backup); ``inf`` where
            the solver proves none (Gauss-Seidel value iteration, discount 1,
            policy iteration).
        method (str): the solver that ran (what :func:`solve` chose).
    """

    V: Array
    policy: Array
    iterations: int
    converged: bool
    residual: float
    bound: float = math.inf
    method: str = ""


def value_iteration(
    P: Transitions,
    R: Rewards,
    discount: float,
    epsilon: float = 0.01,
    max_iter: int = 1000,
    initial_value: ArrayLike | None = None,
    stop: StopRule = "span",
    method: SweepMethod = "jacobi",
    *,
    backend: Backend = "auto",
) -> MDPSolution:
    """Value iteration ``V_{k+1}(s) = max_a r(s, a) + gamma sum_s' P[a, s, s'] V_k(s')``
    (RL-BELLMAN), from ``initial_value`` (default 0).

    Args:
        P (ndarray[A, S, S] | list of A sparse/dense (S, S) | Tensor[A, S, S]): transitions.
        R (ndarray[S] | ndarray[S, A] | ndarray[A, S, S] | list of A (S, S)): rewards.
        discount (float): ``gamma`` in (0, 1); 1 is accepted with ``stop="span"``
            (threshold ``epsilon``, as pymdptoolbox).
        epsilon (float): the stopping tolerance (RL-VI-STOP).
        max_iter (int): the most sweeps; honoured as given.
        initial_value (ndarray[S], optional): ``V_0``.
        stop: ``"span"``: ``span(V_k - V_{k-1}) < epsilon (1 - gamma) / gamma``
            (pymdptoolbox's rule, an epsilon-optimal policy); ``"supnorm"``:
            ``max|V_k - V_{k-1}| < epsilon (1 - gamma) / (2 gamma)``, so
            ``|V_k - V*| < epsilon``.
        method: ``"jacobi"`` (every state from ``V_{k-1}``, threaded) or
            ``"gauss-seidel"`` (states in order, in place, using values already
            updated in the sweep: fewer sweeps, one thread; RL-GS).

    Returns:
        MDPSolution: ``V`` = the last iterate ``V_k`` and ``policy`` its sweep's
        greedy actions, as pymdptoolbox's ``ValueIteration``.
    """
    F = "value_iteration"
    stop = check_choice(F, "stop", stop, ("span", "supnorm"))
    method = check_choice(F, "method", method, ("jacobi", "gauss-seidel"))
    gamma = check_discount(F, discount, allow_one=stop == "span")
    eps = check_positive(F, "epsilon", epsilon)
    iters = check_count(F, "max_iter", max_iter)
    if torch_path(F, backend, P, R, initial_value):
        return d.torch_implementation("mdp").value_iteration(F, P, R, gamma, eps, iters, initial_value, stop, method)
    m = build_model(F, P, R)
    v0 = None if initial_value is None else state_vector(F, "initial_value", initial_value, m.states)
    V, policy, k, converged, residual = _core.mdp_value_iteration(
        m.csr, m.reward, m.states, gamma, eps, iters, v0, stop, method
    )
    return MDPSolution(
        m.out(V), m.out(policy), k, converged, residual, _vi_bound(gamma, residual, stop, method), "value_iteration"
    )


def _vi_bound(gamma: float, residual: float, stop: str, method: str) -> float:
    """The policy of a Jacobi sweep is greedy for ``V_{k-1}``, so MacQueen's bounds
    give ``V* - V_policy <= gamma / (1 - gamma) span(V_k - V_{k-1})`` (RL-MPI); the
    span is at most twice the sup-norm. A Gauss-Seidel sweep backs up no fixed
    ``V``: no bound."""
    if gamma >= 1.0 or method != "jacobi":
        return math.inf
    span = residual if stop == "span" else 2.0 * residual
    return gamma / (1.0 - gamma) * span


def q_values(P: Transitions, R: Rewards, V: ArrayLike, discount: float, *, backend: Backend = "auto") -> Array:
    """``Q(s, a) = r(s, a) + gamma sum_s' P[a, s, s'] V(s')`` (RL-BELLMAN).

    Args:
        P, R: the MDP (see :func:`value_iteration`).
        V (ndarray[S] | Tensor[S]): state values.
        discount (float): ``gamma`` in (0, 1].

    Returns:
        ndarray[S, A] | Tensor[S, A]: float64 action values.
    """
    F = "q_values"
    gamma = check_discount(F, discount, allow_one=True)
    if torch_path(F, backend, P, R, V):
        return d.torch_implementation("mdp").q_values(F, P, R, V, gamma)
    m = build_model(F, P, R)
    v = state_vector(F, "V", V, m.states)
    return m.out(_core.mdp_q_values(m.csr, m.reward, m.states, gamma, v))


def _solve_exact(function: str, m: Model, policy: np.ndarray, gamma: float) -> np.ndarray:
    """``V_pi = (I - gamma P_pi)^-1 r_pi``: a dense solve for dense input, a sparse
    LU (SciPy) for sparse input, never a dense ``S x S`` built from sparse data.
    The model is validated by the kernel that gathers ``P_pi`` and ``r_pi``, for
    dense input too."""
    if m.states == 0:
        return np.zeros(0)
    indptr, indices, data, r_pi = _core.mdp_policy_system(function, m.csr, m.reward, m.states, policy)
    if m.dense is not None:
        system = np.eye(m.states) - gamma * m.dense[policy, np.arange(m.states), :]
        V = np.linalg.solve(system, r_pi)
    else:
        import scipy.sparse
        import scipy.sparse.linalg

        p_pi = scipy.sparse.csr_array((data, indices, indptr), shape=(m.states, m.states))
        system = (scipy.sparse.identity(m.states, format="csr") - gamma * p_pi).tocsc()
        V = np.asarray(scipy.sparse.linalg.spsolve(system, r_pi), dtype=np.float64).reshape(m.states)
    check_finite_values(function, V)
    return V


def policy_evaluation(
    P: Transitions,
    R: Rewards,
    policy: ArrayLike,
    discount: float,
    evaluation: Evaluation = "exact",
    epsilon: float = 1e-10,
    max_iter: int = 100_000,
    *,
    backend: Backend = "auto",
) -> Array:
    """The value of a deterministic policy, ``V_pi = r_pi + gamma P_pi V_pi`` (RL-PI).

    Args:
        P, R: the MDP (see :func:`value_iteration`).
        policy (ndarray[S] | Tensor[S]): an action per state.
        discount (float): ``gamma`` in (0, 1).
        evaluation: ``"exact"`` (a linear solve: dense for dense P, SciPy's
            sparse LU for sparse P) or ``"iterative"`` (Jacobi sweeps from 0 until
            ``V`` is within ``epsilon`` of ``V_pi``, at most ``max_iter``).

    Returns:
        ndarray[S] | Tensor[S]: float64 ``V_pi``.
    """
    F = "policy_evaluation"
    evaluation = check_choice(F, "evaluation", evaluation, ("exact", "iterative"))
    gamma = check_discount(F, discount, allow_one=False)
    eps = check_positive(F, "epsilon", epsilon)
    iters = check_count(F, "max_iter", max_iter)
    if torch_path(F, backend, P, R, policy):
        return d.torch_implementation("mdp").policy_evaluation(F, P, R, policy, gamma, evaluation, eps, iters)
    m = build_model(F, P, R)
    pi = policy_vector(F, policy, m.states, m.actions)
    return m.out(_evaluate(F, m, pi, gamma, evaluation, eps, iters))


def _evaluate(
    function: str, m: Model, pi: np.ndarray, gamma: float, evaluation: str, eps: float, iters: int
) -> np.ndarray:
    if evaluation == "exact":
        return _solve_exact(function, m, pi, gamma)
    V, _, converged = _core.mdp_policy_evaluation(function, m.csr, m.reward, m.states, pi, gamma, eps, iters)
    if not converged:
        raise value_error(
            function, "max_iter", f"enough sweeps to evaluate the policy within epsilon={eps}", f"max_iter={iters}"
        )
    return V


def policy_iteration(
    P: Transitions,
    R: Rewards,
    discount: float,
    max_iter: int = 1000,
    evaluation: Evaluation = "exact",
    initial_policy: ArrayLike | None = None,
    epsilon: float = 1e-10,
    *,
    backend: Backend = "auto",
) -> MDPSolution:
    """Policy iteration (RL-PI): evaluate ``V_pi``, improve greedily (ties to the
    lowest action), stop when the policy is stable.

    Args:
        P, R: the MDP (see :func:`value_iteration`).
        discount (float): ``gamma`` in (0, 1).
        max_iter (int): the most improvement rounds.
        evaluation: ``"exact"`` or ``"iterative"`` (see :func:`policy_evaluation`;
            ``epsilon`` is the iterative evaluation's tolerance).
        initial_policy (ndarray[S], optional): default: greedy for ``V = 0``
            (``argmax_a r(s, a)``), as pymdptoolbox.

    Returns:
        MDPSolution: ``V`` = the value of the returned ``policy``.
    """
    F = "policy_iteration"
    evaluation = check_choice(F, "evaluation", evaluation, ("exact", "iterative"))
    gamma = check_discount(F, discount, allow_one=False)
    iters = check_count(F, "max_iter", max_iter)
    eps = check_positive(F, "epsilon", epsilon)
    if torch_path(F, backend, P, R, initial_policy):
        return d.torch_implementation("mdp").policy_iteration(F, P, R, gamma, iters, evaluation, initial_policy, eps)
    return run_policy_iteration(F, P, R, gamma, iters, evaluation, initial_policy, eps)


def run_policy_iteration(
    function: str,
    P: Transitions,
    R: Rewards,
    gamma: float,
    iters: int,
    evaluation: str,
    initial_policy: ArrayLike | None,
    eps: float,
    keep_ties: bool = False,
) -> MDPSolution:
    """Policy iteration on the Rust path, its errors naming ``function``.
    ``keep_ties``: an action changes only where the greedy one is better by more
    than rounding (Howard's rule), so near-ties (equal rewards, say) cannot cycle
    (pymdptoolbox's rule, the default, switches to the first maximiser)."""
    m = build_model(function, P, R)
    if initial_policy is None:
        _, pi = _core.mdp_bellman_backup(function, m.csr, m.reward, m.states, gamma, np.zeros(m.states))
    else:
        pi = policy_vector(function, initial_policy, m.states, m.actions, "initial_policy")
    rounds, changed = 0, 0
    while True:
        rounds += 1
        V = _evaluate(function, m, pi, gamma, evaluation, eps, 100_000)
        _, improved = _core.mdp_bellman_backup(function, m.csr, m.reward, m.states, gamma, V)
        if keep_ties:
            q = _core.mdp_q_values(m.csr, m.reward, m.states, gamma, V)
            rows = np.arange(m.states)
            margin = 1e-10 * max(1.0, float(np.abs(V).max(initial=0.0)))
            improved = np.where(q[rows, improved] > q[rows, pi] + margin, improved, pi)
        changed = int(np.count_nonzero(improved != pi))
        if changed == 0 or rounds == iters:
            break
        pi = improved
    return MDPSolution(m.out(V), m.out(pi), rounds, changed == 0, float(changed), method="policy_iteration")
