"""Finite Markov decision processes (SPEC section 5, RL-*): value iteration,
policy iteration and evaluation, Q-values, a grid world, Monte Carlo control and
stochastic approximation.

Conventions (pymdptoolbox's, so models move over unchanged):

* ``P``: transition probabilities ``P[a, s, s']``, given as a dense ``(A, S, S)``
  array, a list of ``A`` matrices ``(S, S)`` (``scipy.sparse`` or dense), or
  tensors. Every row ``P[a][s, :]`` must be a distribution: non-negative, finite,
  summing to 1 within ``1e-6`` (so float32 models pass).
* ``R``: rewards as ``(S,)`` (per state), ``(S, A)`` (per state and action) or
  ``(A, S, S)`` / a list of ``A`` ``(S, S)`` matrices (per transition; the
  expected reward ``r(s, a) = sum_s' P[a, s, s'] R[a, s, s']`` is what the
  solvers use, Monte Carlo samples the per-transition reward).
* Policies are int64 arrays of actions per state; values float64.

Where this module differs from pymdptoolbox, on purpose:

* ``value_iteration(..., stop="span")`` is pymdptoolbox's ``ValueIteration`` rule
  and gives the same ``V``, policy and iteration count, but ``max_iter`` is the
  caller's: pymdptoolbox silently replaces it by a bound it computes (Puterman,
  Theorem 6.6.6), which can stop it early. The span rule yields an
  ``epsilon``-optimal *policy*; its ``V`` is not within ``epsilon`` of ``V*``.
  ``stop="supnorm"`` guarantees ``|V - V*| < epsilon`` everywhere.
* Sparse inputs stay sparse (CSR arrays read in place, no copy): pymdptoolbox
  builds dense ``S x S`` arrays from sparse input in its input check, in that
  iteration bound and in policy iteration, so large sparse models do not fit.
* Policy iteration's default start is pymdptoolbox's (greedy for ``V = 0``) and
  gives the same policies; ``residual`` counts changed actions.

Backends: NumPy/SciPy inputs and CPU tensors run in Rust (Bellman backups
threaded over states, GIL released). CUDA tensors run a PyTorch implementation on
their device (dense ``(A, S, S)`` tensors); ``backend="torch"`` forces it.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from . import _core
from . import _dispatch as d
from ._dispatch import _describe

__all__ = [
    "MDPSolution",
    "MCResult",
    "value_iteration",
    "policy_iteration",
    "policy_evaluation",
    "q_values",
    "grid_world",
    "from_gymnasium",
    "mc_basic",
    "mc_exploring_starts",
    "mc_epsilon_greedy",
    "incremental_mean",
    "robbins_monro",
]

_INT32_MAX = np.iinfo(np.int32).max
#: Grid-world actions (RL-GRID), as (row, column) moves.
GRID_MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1), (0, 0))


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
            last improvement (0 when converged).
    """

    V: Any
    policy: Any
    iterations: int
    converged: bool
    residual: float


@dataclass(frozen=True)
class MCResult:
    """What Monte Carlo control estimated.

    Attributes:
        q (ndarray[S, A] | Tensor[S, A]): float64 action values (0 where never visited).
        policy (ndarray[S] | Tensor[S]): int64 greedy actions of ``q`` (ties to the lowest).
        visits (ndarray[S, A] | Tensor[S, A]): int64 returns averaged into each ``q``.
        iterations (int): improvement rounds (``mc_basic``) or episodes.
    """

    q: Any
    policy: Any
    visits: Any
    iterations: int


# ---------------------------------------------------------------------------
# argument checks


def _number(function: str, argument: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{function}(): argument '{argument}': expected a real number, got {_describe(value)}")
    return float(value)


def _discount(function: str, value: object, allow_one: bool) -> float:
    g = _number(function, "discount", value)
    if not (0.0 < g < 1.0 or (allow_one and g == 1.0)):
        want = "a value in (0, 1]" if allow_one else "a value in (0, 1)"
        hint = " (1 only with stop='span')" if function == "value_iteration" and not allow_one and g == 1.0 else ""
        raise ValueError(f"{function}(): argument 'discount': expected {want}{hint}, got {value!r}")
    return g


def _positive(function: str, argument: str, value: object) -> float:
    v = _number(function, argument, value)
    if not (v > 0.0 and math.isfinite(v)):
        raise ValueError(f"{function}(): argument '{argument}': expected a positive finite number, got {value!r}")
    return v


def _count(function: str, argument: str, value: object) -> int:
    return d.check_int(function, argument, value, 1, "a positive count")


def _choice(function: str, argument: str, value: object, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{function}(): argument '{argument}': expected one of {tuple(allowed)}, got {value!r}")
    return str(value)


def _is_scipy_sparse(x: object) -> bool:
    return type(x).__module__.startswith("scipy.sparse")


# ---------------------------------------------------------------------------
# the model in the form the kernels read


@dataclass
class _Model:
    """P as one CSR matrix per action, the expected reward ``r (S, A)``, and
    enough of the input to answer in its kind."""

    states: int
    actions: int
    indptr: list[np.ndarray]
    indices: list[np.ndarray]
    data: list[np.ndarray]
    reward: np.ndarray
    #: The dense (A, S, S) input, when P came dense (for the exact dense solve).
    dense: np.ndarray | None
    #: A tensor of the input: results come back as tensors on its device.
    reference: Any
    #: The per-transition reward input (A, S, S) / list, if R came in that form.
    transition_reward: Any

    @property
    def csr(self) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        return self.indptr, self.indices, self.data

    def out(self, x: np.ndarray) -> Any:
        return x if self.reference is None else d.like(x, self.reference)

    def step_rewards(self) -> list[np.ndarray]:
        """The reward of each stored transition, aligned with ``data``."""
        out = []
        for a in range(self.actions):
            rows = np.repeat(np.arange(self.states), np.diff(self.indptr[a]))
            if self.transition_reward is None:
                out.append(np.ascontiguousarray(self.reward[rows, a]))
            else:
                out.append(_gather(self.transition_reward[a], rows, self.indices[a]))
        return out


def _gather(matrix: Any, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``matrix[rows, cols]`` as float64, for a dense or scipy.sparse matrix."""
    if _is_scipy_sparse(matrix):
        values = np.asarray(matrix.tocsr()[rows, cols]).ravel()
    else:
        values = np.asarray(matrix)[rows, cols]
    return np.ascontiguousarray(values, dtype=np.float64)


def _tensor_to_numpy(function: str, argument: str, x: Any) -> np.ndarray:
    if x.layout != d.torch_module().strided:
        raise TypeError(f"{function}(): argument '{argument}': expected dense tensors, got layout {x.layout}")
    return d.float_array(function, argument, x)


def _csr_of(function: str, a: int, matrix: Any) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, cols, indptr, indices, data)`` of one action's matrix: int32
    index arrays and float64 data, the input's own buffers where they already are."""
    if _is_scipy_sparse(matrix):
        m = matrix.tocsr()
        n_rows, n_cols = m.shape
        if m.nnz > _INT32_MAX:
            raise ValueError(
                f"{function}(): argument 'P': expected at most 2^31 - 1 stored transitions per action, "
                f"got {m.nnz} in P[{a}]"
            )
        indptr = np.ascontiguousarray(m.indptr, dtype=np.int32)
        indices = np.ascontiguousarray(m.indices, dtype=np.int32)
        data = np.ascontiguousarray(m.data, dtype=np.float64)
        return n_rows, n_cols, indptr, indices, data
    dense = _tensor_to_numpy(function, "P", matrix) if d.is_tensor(matrix) else np.asarray(matrix)
    if dense.dtype.kind not in "fiub":
        raise TypeError(f"{function}(): argument 'P': expected real numbers, got P[{a}] of dtype {dense.dtype}")
    if dense.ndim != 2:
        raise ValueError(f"{function}(): argument 'P': expected P[{a}] of shape (S, S), got {list(dense.shape)}")
    stored = dense != 0
    indptr = np.zeros(dense.shape[0] + 1, dtype=np.int32)
    np.cumsum(stored.sum(axis=1), out=indptr[1:])
    rows, cols = np.nonzero(stored)
    data = np.ascontiguousarray(dense[rows, cols], dtype=np.float64)
    return dense.shape[0], dense.shape[1], indptr, cols.astype(np.int32), data


def _split_actions(function: str, P: Any) -> tuple[list[Any], np.ndarray | None]:
    """The per-action matrices of ``P``, and ``P`` as a dense array when it is one."""
    if isinstance(P, (list, tuple)):
        if len(P) == 0:
            raise ValueError(f"{function}(): argument 'P': expected at least one action, got an empty list")
        return list(P), None
    if _is_scipy_sparse(P):
        raise TypeError(
            f"{function}(): argument 'P': expected a list of A sparse (S, S) matrices (one per action), "
            f"got a single {type(P).__name__}"
        )
    dense = _tensor_to_numpy(function, "P", P) if d.is_tensor(P) else np.asarray(P)
    if dense.dtype.kind not in "fiub":
        raise TypeError(f"{function}(): argument 'P': expected real numbers, got dtype {dense.dtype}")
    if dense.ndim != 3 or dense.shape[1] != dense.shape[2]:
        raise ValueError(f"{function}(): argument 'P': expected shape (A, S, S), got {list(dense.shape)}")
    if dense.shape[0] == 0:
        raise ValueError(f"{function}(): argument 'P': expected at least one action, got shape {list(dense.shape)}")
    return list(dense), dense


def _first_tensor(*xs: Any) -> Any:
    for x in xs:
        if isinstance(x, (list, tuple)):
            t = _first_tensor(*x)
            if t is not None:
                return t
        elif d.is_tensor(x):
            return x
    return None


def _tensors(*xs: Any) -> list[Any]:
    out = []
    for x in xs:
        if isinstance(x, (list, tuple)):
            out.extend(_tensors(*x))
        elif d.is_tensor(x):
            out.append(x)
    return out


def _model(function: str, P: Any, R: Any) -> _Model:
    matrices, dense = _split_actions(function, P)
    actions = len(matrices)
    indptr, indices, data = [], [], []
    states = None
    for a, m in enumerate(matrices):
        n_rows, n_cols, ip, ix, x = _csr_of(function, a, m)
        if n_rows != n_cols or (states is not None and n_rows != states):
            want = f"({states}, {states})" if states is not None else "(S, S)"
            raise ValueError(f"{function}(): argument 'P': expected P[{a}] of shape {want}, got {[n_rows, n_cols]}")
        states = n_rows
        indptr.append(ip)
        indices.append(ix)
        data.append(x)
    assert states is not None
    reward, transition_reward = _expected_reward(function, R, states, actions, indptr, indices, data)
    reference = _first_tensor(P, R)
    if dense is not None:
        dense = np.asarray(dense, dtype=np.float64)
    return _Model(states, actions, indptr, indices, data, reward, dense, reference, transition_reward)


def _reward_shapes(states: int, actions: int) -> str:
    return f"(S,) = ({states},), (S, A) = ({states}, {actions}) or (A, S, S) = ({actions}, {states}, {states})"


def _check_finite(function: str, values: np.ndarray, describe: Callable[[tuple[int, ...]], str]) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{function}(): argument 'R': expected finite rewards, got {describe(where)}")


def _expected_reward(
    function: str,
    R: Any,
    states: int,
    actions: int,
    indptr: list[np.ndarray],
    indices: list[np.ndarray],
    data: list[np.ndarray],
) -> tuple[np.ndarray, Any]:
    """``r (S, A)`` float64, and the per-transition reward input when R is one."""
    if isinstance(R, (list, tuple)) and len(R) == actions and all(
        _is_scipy_sparse(x) or np.ndim(x) == 2 for x in R
    ):
        per_transition = [x if _is_scipy_sparse(x) else _numeric(function, x) for x in R]
    elif _is_scipy_sparse(R):
        raise TypeError(f"{function}(): argument 'R': expected {_reward_shapes(states, actions)}, got a sparse matrix")
    else:
        r = _numeric(function, R)
        if r.shape == (states,):
            _check_finite(function, r, lambda i: f"R[{i[0]}] = {r[i]} (state {i[0]})")
            return np.ascontiguousarray(np.repeat(r[:, None], actions, axis=1)), None
        if r.shape == (states, actions):
            _check_finite(function, r, lambda i: f"R[{i[0]}, {i[1]}] = {r[i]} (state {i[0]}, action {i[1]})")
            return np.ascontiguousarray(r), None
        if r.shape != (actions, states, states):
            raise ValueError(f"{function}(): argument 'R': expected {_reward_shapes(states, actions)}, got {list(r.shape)}")
        per_transition = list(r)
    reward = np.empty((states, actions))
    for a, m in enumerate(per_transition):
        if tuple(m.shape) != (states, states):
            raise ValueError(f"{function}(): argument 'R': expected R[{a}] of shape ({states}, {states}), got {list(m.shape)}")
        rows = np.repeat(np.arange(states), np.diff(indptr[a]))
        values = _gather(m, rows, indices[a])
        bad = ~np.isfinite(values)
        if bad.any():
            k = int(np.argmax(bad))
            raise ValueError(
                f"{function}(): argument 'R': expected finite rewards, got R[{a}][{rows[k]}, {indices[a][k]}] = "
                f"{values[k]} (action {a}, state {rows[k]})"
            )
        reward[:, a] = np.bincount(rows, weights=data[a] * values, minlength=states)
    return reward, per_transition


def _numeric(function: str, x: Any) -> np.ndarray:
    a = _tensor_to_numpy(function, "R", x) if d.is_tensor(x) else np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{function}(): argument 'R': expected real numbers, got dtype {a.dtype}")
    return np.asarray(a, dtype=np.float64)


def _state_vector(function: str, argument: str, x: Any, states: int) -> np.ndarray:
    v = d.float_array(function, argument, x)
    if v.shape != (states,):
        raise ValueError(f"{function}(): argument '{argument}': expected shape ({states},), got {list(v.shape)}")
    return np.ascontiguousarray(v, dtype=np.float64)


def _policy_vector(function: str, policy: Any, states: int, actions: int) -> np.ndarray:
    pi = d.index_array(function, "policy", policy)
    if pi.shape != (states,):
        raise ValueError(f"{function}(): argument 'policy': expected shape ({states},), got {list(pi.shape)}")
    bad = (pi < 0) | (pi >= actions)
    if bad.any():
        s = int(np.argmax(bad))
        raise ValueError(f"{function}(): argument 'policy': expected actions in 0..{actions - 1}, got {pi[s]} for state {s}")
    return pi


def _torch_path(function: str, backend: str, *inputs: Any) -> bool:
    return d.select_backend(function, backend, *_tensors(*inputs)) == "torch"


def _torch_impl() -> Any:
    from . import _torch_mdp

    return _torch_mdp


# ---------------------------------------------------------------------------
# solvers


def value_iteration(
    P: Any,
    R: Any,
    discount: float,
    epsilon: float = 0.01,
    max_iter: int = 1000,
    initial_value: Any = None,
    stop: str = "span",
    method: str = "jacobi",
    *,
    backend: str = "auto",
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
    stop = _choice(F, "stop", stop, ("span", "supnorm"))
    method = _choice(F, "method", method, ("jacobi", "gauss-seidel"))
    gamma = _discount(F, discount, allow_one=stop == "span")
    eps = _positive(F, "epsilon", epsilon)
    iters = _count(F, "max_iter", max_iter)
    if _torch_path(F, backend, P, R, initial_value):
        return _torch_impl().value_iteration(F, P, R, gamma, eps, iters, initial_value, stop, method)
    m = _model(F, P, R)
    v0 = None if initial_value is None else _state_vector(F, "initial_value", initial_value, m.states)
    V, policy, k, converged, residual = _core.mdp_value_iteration(
        m.csr, m.reward, m.states, gamma, eps, iters, v0, stop, method
    )
    return MDPSolution(m.out(V), m.out(policy), k, converged, residual)


def q_values(P: Any, R: Any, V: Any, discount: float, *, backend: str = "auto") -> Any:
    """``Q(s, a) = r(s, a) + gamma sum_s' P[a, s, s'] V(s')`` (RL-BELLMAN).

    Args:
        P, R: the MDP (see :func:`value_iteration`).
        V (ndarray[S] | Tensor[S]): state values.
        discount (float): ``gamma`` in (0, 1].

    Returns:
        ndarray[S, A] | Tensor[S, A]: float64 action values.
    """
    F = "q_values"
    gamma = _discount(F, discount, allow_one=True)
    if _torch_path(F, backend, P, R, V):
        return _torch_impl().q_values(F, P, R, V, gamma)
    m = _model(F, P, R)
    v = _state_vector(F, "V", V, m.states)
    return m.out(_core.mdp_q_values(m.csr, m.reward, m.states, gamma, v))


def _solve_exact(function: str, m: _Model, policy: np.ndarray, gamma: float) -> np.ndarray:
    """``V_pi = (I - gamma P_pi)^-1 r_pi``: a dense solve for dense input, a sparse
    LU (SciPy) for sparse input, never a dense ``S x S`` built from sparse data."""
    if m.states == 0:
        return np.zeros(0)
    if m.dense is not None:
        rows = np.arange(m.states)
        system = np.eye(m.states) - gamma * m.dense[policy, rows, :]
        return np.linalg.solve(system, m.reward[rows, policy])
    import scipy.sparse
    import scipy.sparse.linalg

    indptr, indices, data, r_pi = _core.mdp_policy_system(function, m.csr, m.reward, m.states, policy)
    p_pi = scipy.sparse.csr_array((data, indices, indptr), shape=(m.states, m.states))
    system = (scipy.sparse.identity(m.states, format="csr") - gamma * p_pi).tocsc()
    return np.asarray(scipy.sparse.linalg.spsolve(system, r_pi), dtype=np.float64).reshape(m.states)


def policy_evaluation(
    P: Any,
    R: Any,
    policy: Any,
    discount: float,
    evaluation: str = "exact",
    epsilon: float = 1e-10,
    max_iter: int = 100_000,
    *,
    backend: str = "auto",
) -> Any:
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
    evaluation = _choice(F, "evaluation", evaluation, ("exact", "iterative"))
    gamma = _discount(F, discount, allow_one=False)
    eps = _positive(F, "epsilon", epsilon)
    iters = _count(F, "max_iter", max_iter)
    if _torch_path(F, backend, P, R, policy):
        return _torch_impl().policy_evaluation(F, P, R, policy, gamma, evaluation, eps, iters)
    m = _model(F, P, R)
    pi = _policy_vector(F, policy, m.states, m.actions)
    return m.out(_evaluate(F, m, pi, gamma, evaluation, eps, iters))


def _evaluate(function: str, m: _Model, pi: np.ndarray, gamma: float, evaluation: str, eps: float, iters: int) -> np.ndarray:
    if evaluation == "exact":
        return _solve_exact(function, m, pi, gamma)
    V, _, converged = _core.mdp_policy_evaluation(function, m.csr, m.reward, m.states, pi, gamma, eps, iters)
    if not converged:
        raise ValueError(
            f"{function}(): argument 'max_iter': expected enough sweeps to evaluate the policy within "
            f"epsilon={eps}, got max_iter={iters}"
        )
    return V


def policy_iteration(
    P: Any,
    R: Any,
    discount: float,
    max_iter: int = 1000,
    evaluation: str = "exact",
    initial_policy: Any = None,
    epsilon: float = 1e-10,
    *,
    backend: str = "auto",
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
    evaluation = _choice(F, "evaluation", evaluation, ("exact", "iterative"))
    gamma = _discount(F, discount, allow_one=False)
    iters = _count(F, "max_iter", max_iter)
    eps = _positive(F, "epsilon", epsilon)
    if _torch_path(F, backend, P, R, initial_policy):
        return _torch_impl().policy_iteration(F, P, R, gamma, iters, evaluation, initial_policy, eps)
    m = _model(F, P, R)
    if initial_policy is None:
        _, pi = _core.mdp_bellman_backup(F, m.csr, m.reward, m.states, gamma, np.zeros(m.states))
    else:
        pi = _policy_vector(F, initial_policy, m.states, m.actions)
    rounds, changed = 0, 0
    while True:
        rounds += 1
        V = _evaluate(F, m, pi, gamma, evaluation, eps, 100_000)
        _, improved = _core.mdp_bellman_backup(F, m.csr, m.reward, m.states, gamma, V)
        changed = int(np.count_nonzero(improved != pi))
        if changed == 0 or rounds == iters:
            break
        pi = improved
    return MDPSolution(m.out(V), m.out(pi), rounds, changed == 0, float(changed))


# ---------------------------------------------------------------------------
# models


def _cell(function: str, argument: str, cell: Any, rows: int, cols: int) -> tuple[int, int]:
    try:
        r, c = cell
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{function}(): argument '{argument}': expected a (row, col) pair, got {cell!r}") from exc
    for v in (r, c):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{function}(): argument '{argument}': expected integer (row, col), got {cell!r}")
    if not (0 <= r < rows and 0 <= c < cols):
        raise ValueError(f"{function}(): argument '{argument}': expected a cell inside the {rows} x {cols} grid, got {cell!r}")
    return int(r), int(c)


def _as_sparse(matrices: list[np.ndarray]) -> list[Any]:
    import scipy.sparse

    return [scipy.sparse.csr_array(m) for m in matrices]


def grid_world(
    rows: int,
    cols: int,
    target: tuple[int, int],
    forbidden: Sequence[tuple[int, int]] = (),
    r_boundary: float = -1.0,
    r_forbidden: float = -1.0,
    r_target: float = 1.0,
    r_other: float = 0.0,
    *,
    sparse: bool = False,
) -> tuple[Any, np.ndarray]:
    """The grid world of RL-GRID as an MDP.

    Cells are 0-indexed ``(row, col)``, state ``row * cols + col``; actions 0..4
    are up, right, down, left, stay. A move off the grid leaves the agent in place
    with ``r_boundary``; otherwise the reward is that of the cell entered (staying
    included): ``r_target`` on the target, ``r_forbidden`` on a forbidden cell
    (entering is allowed), ``r_other`` elsewhere. The target is not terminal.

    Returns:
        (P, R): ``P`` float64 ``(5, S, S)`` (``sparse=True``: a list of 5 SciPy
        CSR arrays), ``R`` float64 ``(S, 5)``.
    """
    F = "grid_world"
    rows, cols = _count(F, "rows", rows), _count(F, "cols", cols)
    tr, tc = _cell(F, "target", target, rows, cols)
    bad_cells = {_cell(F, "forbidden", c, rows, cols) for c in forbidden}
    if (tr, tc) in bad_cells:
        raise ValueError(f"{F}(): argument 'forbidden': expected cells other than the target, got {target!r}")
    rewards = {n: _number(F, n, v) for n, v in
               (("r_boundary", r_boundary), ("r_forbidden", r_forbidden), ("r_target", r_target), ("r_other", r_other))}
    for n, v in rewards.items():
        if not math.isfinite(v):
            raise ValueError(f"{F}(): argument '{n}': expected a finite reward, got {v!r}")
    S = rows * cols
    r_idx, c_idx = np.divmod(np.arange(S), cols)
    forbidden_mask = np.zeros((rows, cols), dtype=bool)
    for r, c in bad_cells:
        forbidden_mask[r, c] = True
    nxt = np.empty((5, S), dtype=np.int64)
    R = np.empty((S, 5))
    for a, (dr, dc) in enumerate(GRID_MOVES):
        nr, nc = r_idx + dr, c_idx + dc
        off = (nr < 0) | (nr >= rows) | (nc < 0) | (nc >= cols)
        nr, nc = np.where(off, r_idx, nr), np.where(off, c_idx, nc)
        nxt[a] = nr * cols + nc
        reward = np.full(S, rewards["r_other"])
        reward[forbidden_mask[nr, nc]] = rewards["r_forbidden"]
        reward[(nr == tr) & (nc == tc)] = rewards["r_target"]
        reward[off] = rewards["r_boundary"]
        R[:, a] = reward
    if sparse:
        import scipy.sparse

        P: Any = [scipy.sparse.csr_array((np.ones(S), (np.arange(S), nxt[a])), shape=(S, S)) for a in range(5)]
    else:
        P = np.zeros((5, S, S))
        for a in range(5):
            P[a, np.arange(S), nxt[a]] = 1.0
    return P, R


def from_gymnasium(env_P: Any, *, sparse: bool = False) -> tuple[Any, np.ndarray]:
    """Converts gymnasium's tabular model ``env.unwrapped.P``,
    ``P[s][a] = [(prob, next_state, reward, done), ...]``, to ``(P, R)``.

    A transition with ``done`` ends the episode: it is sent to one added absorbing
    state ``S`` (reward 0 forever), so values are those of the episodic task. That
    state is appended only when some transition is terminal.

    Returns:
        (P, R): ``P`` float64 ``(A, S', S')`` (``sparse=True``: a list of SciPy CSR
        arrays), ``R`` float64 ``(S', A)`` expected rewards; ``S' = S`` or ``S + 1``.
    """
    F = "from_gymnasium"
    if isinstance(env_P, dict):
        states = len(env_P)
        if sorted(env_P) != list(range(states)):
            raise ValueError(f"{F}(): argument 'env_P': expected states 0..{states - 1} as keys, got {sorted(env_P)[:5]}...")
        per_state = [env_P[s] for s in range(states)]
    elif isinstance(env_P, (list, tuple)):
        per_state, states = list(env_P), len(env_P)
    else:
        raise TypeError(f"{F}(): argument 'env_P': expected a dict or list of states, got {_describe(env_P)}")
    if states == 0:
        raise ValueError(f"{F}(): argument 'env_P': expected at least one state, got none")
    actions = len(per_state[0])
    entries: list[tuple[int, int, float, int, float, bool]] = []
    for s, by_action in enumerate(per_state):
        if len(by_action) != actions:
            raise ValueError(f"{F}(): argument 'env_P': expected {actions} actions for every state, got {len(by_action)} for state {s}")
        for a in range(actions):
            for item in by_action[a]:
                try:
                    prob, nxt, reward, done = item
                except (TypeError, ValueError) as exc:
                    raise TypeError(
                        f"{F}(): argument 'env_P': expected (prob, next_state, reward, done) tuples, got {item!r} "
                        f"for state {s}, action {a}"
                    ) from exc
                if not 0 <= int(nxt) < states:
                    raise ValueError(f"{F}(): argument 'env_P': expected next states in 0..{states - 1}, got {nxt} for state {s}, action {a}")
                entries.append((a, s, float(prob), int(nxt), float(reward), bool(done)))
    terminal = any(e[5] for e in entries)
    n = states + 1 if terminal else states
    a_i = np.array([e[0] for e in entries], dtype=np.int64)
    s_i = np.array([e[1] for e in entries], dtype=np.int64)
    prob = np.array([e[2] for e in entries])
    nxt = np.array([states if e[5] else e[3] for e in entries], dtype=np.int64)
    rew = np.array([e[4] for e in entries])
    R = np.zeros((n, actions))
    np.add.at(R, (s_i, a_i), prob * rew)
    if terminal:
        a_i = np.concatenate([a_i, np.arange(actions)])
        s_i = np.concatenate([s_i, np.full(actions, states)])
        prob = np.concatenate([prob, np.ones(actions)])
        nxt = np.concatenate([nxt, np.full(actions, states)])
    if sparse:
        import scipy.sparse

        P: Any = [
            scipy.sparse.csr_array((prob[a_i == a], (s_i[a_i == a], nxt[a_i == a])), shape=(n, n)) for a in range(actions)
        ]
    else:
        P = np.zeros((actions, n, n))
        np.add.at(P, (a_i, s_i, nxt), prob)
    return P, R


# ---------------------------------------------------------------------------
# Monte Carlo control


def _seed(function: str, seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**64:
        raise TypeError(f"{function}(): argument 'seed': expected an int in [0, 2^64), got {seed!r}")
    return int(seed)


def _mc(function: str, method: str, P: Any, R: Any, discount: float, episodes: int, episode_length: int,
        seed: int, iterations: int, epsilon: float) -> MCResult:
    gamma = _discount(function, discount, allow_one=True)
    n_episodes = _count(function, "episodes", episodes)
    length = _count(function, "episode_length", episode_length)
    rounds = _count(function, "iterations", iterations)
    seed = _seed(function, seed)
    m = _model(function, P, R)
    q, policy, visits, k = _core.mdp_mc_control(
        m.csr, m.reward, m.step_rewards(), m.states, method, gamma, n_episodes, length, seed, rounds, epsilon
    )
    return MCResult(m.out(q), m.out(policy), m.out(visits), k)


def mc_basic(
    P: Any, R: Any, discount: float, episodes: int = 1, episode_length: int = 100, iterations: int = 100, seed: int = 0
) -> MCResult:
    """MC Basic (RL-MC): policy iteration whose evaluation step estimates every
    ``q(s, a)`` as the mean discounted return of ``episodes`` episodes of
    ``episode_length`` rewards starting at ``(s, a)`` and then following the
    current greedy policy; improves greedily; stops when the policy is stable or
    after ``iterations`` rounds. Pairs are simulated in parallel, episode ``i``
    from its own random stream keyed by ``(seed, i)``: the result depends on the
    seed only, not on the thread count.

    Returns:
        MCResult
    """
    return _mc("mc_basic", "basic", P, R, discount, episodes, episode_length, seed, iterations, 0.0)


def mc_exploring_starts(
    P: Any, R: Any, discount: float, episodes: int = 10_000, episode_length: int = 100, seed: int = 0
) -> MCResult:
    """MC Exploring Starts (RL-MC): each episode starts at a uniformly drawn
    ``(s, a)``, follows the greedy policy, and is walked backwards
    (``g = gamma g + r_{t+1}``) updating every-visit averages ``q(s, a)`` and the
    greedy action of each visited state.

    Returns:
        MCResult
    """
    return _mc("mc_exploring_starts", "exploring_starts", P, R, discount, episodes, episode_length, seed, 1, 0.0)


def mc_epsilon_greedy(
    P: Any,
    R: Any,
    discount: float,
    epsilon: float = 0.1,
    episodes: int = 10_000,
    episode_length: int = 100,
    seed: int = 0,
) -> MCResult:
    """MC epsilon-greedy (RL-MC): episodes start at a uniform state and follow the
    epsilon-greedy policy ``pi(a*|s) = 1 - (|A| - 1) eps / |A|``, other actions
    ``eps / |A|``; every-visit averages, returns computed backwards. ``policy`` is
    the greedy action ``a*`` of the final ``q``.

    Returns:
        MCResult
    """
    F = "mc_epsilon_greedy"
    eps = _number(F, "epsilon", epsilon)
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"{F}(): argument 'epsilon': expected a value in [0, 1], got {epsilon!r}")
    return _mc(F, "epsilon_greedy", P, R, discount, episodes, episode_length, seed, 1, eps)


# ---------------------------------------------------------------------------
# stochastic approximation


def incremental_mean(x: Any) -> Any:
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
        raise ValueError(f"{F}(): argument 'x': expected samples along a first axis, got a scalar")
    width = int(np.prod(a.shape[1:]))
    flat = np.ascontiguousarray(a.reshape(a.shape[0], width), dtype=np.float64)
    out = _core.incremental_mean(flat).reshape(a.shape)
    return d.like(out, x) if d.is_tensor(x) else out


def robbins_monro(
    g: Callable[[Any], Any],
    w0: Any,
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
        raise TypeError(f"{F}(): argument 'g': expected a callable, got {_describe(g)}")
    if not callable(step_size):
        raise TypeError(f"{F}(): argument 'step_size': expected a callable, got {_describe(step_size)}")
    n = _count(F, "steps", steps)
    w = np.array(d.float_array(F, "w0", w0), dtype=np.float64)
    history = np.empty((n + 1, *w.shape))
    history[0] = w
    for k in range(1, n + 1):
        a_k = _number(F, "step_size", step_size(k))
        if not (a_k > 0 and math.isfinite(a_k)):
            raise ValueError(f"{F}(): argument 'step_size': expected positive finite step sizes, got {a_k!r} at k={k}")
        obs = np.asarray(g(w.copy() if w.ndim else float(w)), dtype=np.float64)
        if obs.shape != w.shape:
            raise ValueError(f"{F}(): argument 'g': expected observations of shape {list(w.shape)}, got {list(obs.shape)} at k={k}")
        if not np.all(np.isfinite(obs)):
            raise ValueError(f"{F}(): argument 'g': expected finite observations, got {obs!r} at k={k}")
        w = w - a_k * obs
        history[k] = w
    return history
