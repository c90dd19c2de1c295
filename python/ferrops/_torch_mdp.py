"""PyTorch implementations of the MDP solvers, for tensors on other devices (and
``backend="torch"``). Written from the SPEC formulas (RL-BELLMAN, RL-VI-STOP,
RL-GS, RL-PI) on dense ``(A, S, S)`` float64 transitions, and checked by the same
spec tests as the Rust kernels."""

from __future__ import annotations

import math
from typing import Any

import torch

from . import _dispatch as d
from ._errors import value_error
from .mdp._model import OVERFLOW_EXPECTED, is_scipy_sparse
from .mdp._solvers import MDPSolution

#: As ferrops_core::mdp::ROW_SUM_TOLERANCE.
_ROW_SUM_TOLERANCE = 1e-6


def _dense(function: str, argument: str, x: Any, device: Any) -> torch.Tensor:
    if is_scipy_sparse(x) or (d.is_tensor(x) and x.layout != torch.strided):
        raise TypeError(
            f"{function}(): argument '{argument}': the PyTorch implementation takes dense arrays or tensors, "
            f"got {type(x).__name__}; use the Rust backend for sparse models"
        )
    if isinstance(x, (list, tuple)):
        return torch.stack([_dense(function, argument, m, device) for m in x])
    return d.converted_tensor(function, argument, d.float_tensor(function, argument, x, device), torch.float64)


def _first_true(mask: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(i) for i in torch.nonzero(mask)[0].tolist())


def model(function: str, P: Any, R: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``P (A, S, S)`` and the expected reward ``r (S, A)``, float64, validated."""
    device = d.device_of(*d.tensors_in(P, R))
    p = _dense(function, "P", P, device)
    if p.ndim != 3 or p.shape[1] != p.shape[2] or p.shape[0] == 0:
        raise value_error(function, "P", "shape (A, S, S)", list(p.shape))
    A, S = p.shape[0], p.shape[1]
    bad = ~(torch.isfinite(p) & (p >= 0))
    if bool(bad.any()):
        a, s, t = _first_true(bad)
        raise value_error(
            function,
            "P",
            "rows of non-negative transition probabilities summing to 1",
            f"P[{a}][{s}, {t}] = {p[a, s, t].item()}, not a probability",
        )
    off = (p.sum(dim=2) - 1).abs() > _ROW_SUM_TOLERANCE
    if bool(off.any()):
        a, s = _first_true(off)
        raise value_error(
            function,
            "P",
            "rows of non-negative transition probabilities summing to 1",
            f"P[{a}][{s}, :] sums to {p[a, s].sum().item()}, not 1 (action {a}, state {s})",
        )
    r = _dense(function, "R", R, p.device)
    if tuple(r.shape) == (S,):
        r = r[:, None].expand(S, A)
    elif tuple(r.shape) == (A, S, S):
        r = (p * r).sum(dim=2).T
    elif tuple(r.shape) != (S, A):
        raise value_error(
            function, "R", f"(S,) = ({S},), (S, A) = ({S}, {A}) or (A, S, S) = ({A}, {S}, {S})", list(r.shape)
        )
    if not bool(torch.isfinite(r).all()):
        s, a = _first_true(~torch.isfinite(r))
        raise value_error(function, "R", "finite rewards", f"reward {r[s, a].item()} for state {s}, action {a}")
    return p, r.contiguous()


def _out(x: torch.Tensor, P: Any, R: Any) -> Any:
    tensors = d.tensors_in(P, R)
    return d.like(x, tensors[0]) if tensors else x.cpu().numpy()


def _q(p: torch.Tensor, r: torch.Tensor, v: torch.Tensor, gamma: float) -> torch.Tensor:
    """``Q[s, a] = r[s, a] + gamma sum_s' P[a, s, s'] V[s']``."""
    return r + gamma * (p @ v).T


def _greedy(q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Max and argmax over actions; argmax returns the first maximum (ties to the
    lowest action)."""
    policy = torch.argmax(q, dim=1)
    return q.gather(1, policy[:, None])[:, 0], policy


def value_iteration(
    function: str, P: Any, R: Any, gamma: float, eps: float, max_iter: int, initial_value: Any, stop: str, method: str
) -> MDPSolution:
    p, r = model(function, P, R)
    S = p.shape[1]
    if initial_value is None:
        v = torch.zeros(S, dtype=torch.float64, device=p.device)
    else:
        v = d.float_tensor(function, "initial_value", initial_value, p.device).to(torch.float64).clone()
        if tuple(v.shape) != (S,):
            raise value_error(function, "initial_value", f"shape ({S},)", list(v.shape))
        if not bool(torch.isfinite(v).all()):
            raise ValueError(f"{function}(): argument 'initial_value': expected finite values")
    if stop == "span":
        threshold = eps if gamma == 1.0 else eps * (1 - gamma) / gamma
    else:
        threshold = eps * (1 - gamma) / (2 * gamma)
    policy = torch.zeros(S, dtype=torch.int64, device=p.device)
    if S == 0:
        return MDPSolution(_out(v, P, R), _out(policy, P, R), 0, True, 0.0, method="value_iteration")
    k = 0
    while True:
        k += 1
        if method == "jacobi":
            v_new, policy = _greedy(_q(p, r, v, gamma))
            delta = v_new - v
            v = v_new
        else:
            # Gauss-Seidel (RL-GS): each state sees the values already updated.
            old = v.clone()
            for s in range(S):
                q = r[s] + gamma * (p[:, s, :] @ v)
                a = torch.argmax(q)
                v[s] = q[a]
                policy[s] = a
            delta = v - old
        hi, lo = delta.max().item(), delta.min().item()
        if not (math.isfinite(hi) and math.isfinite(lo)):
            _finite_values(function, v)
        residual = hi - lo if stop == "span" else max(abs(hi), abs(lo))
        converged = residual < threshold
        if converged or k == max_iter:
            return MDPSolution(_out(v, P, R), _out(policy, P, R), k, converged, residual, method="value_iteration")


def q_values(function: str, P: Any, R: Any, V: Any, gamma: float) -> Any:
    p, r = model(function, P, R)
    v = d.float_tensor(function, "V", V, p.device).to(torch.float64)
    if tuple(v.shape) != (p.shape[1],):
        raise value_error(function, "V", f"shape ({p.shape[1]},)", list(v.shape))
    return _out(_q(p, r, v, gamma), P, R)


def _policy(function: str, policy: Any, S: int, A: int, device: Any, argument: str = "policy") -> torch.Tensor:
    pi = d.index_tensor(function, argument, policy, device)
    if tuple(pi.shape) != (S,):
        raise value_error(function, argument, f"shape ({S},)", list(pi.shape))
    bad = (pi < 0) | (pi >= A)
    if bool(bad.any()):
        (s,) = _first_true(bad)
        raise value_error(function, argument, f"actions in 0..{A - 1}", f"{pi[s].item()} for state {s}")
    return pi


def _finite_values(function: str, v: torch.Tensor) -> torch.Tensor:
    """``v``, or the error blaming ``R`` when the values overflowed float64."""
    bad = ~torch.isfinite(v)
    if bool(bad.any()):
        (s,) = _first_true(bad)
        raise value_error(function, "R", OVERFLOW_EXPECTED, f"V[{s}] = {v[s].item()}")
    return v


def _evaluate(
    function: str,
    p: torch.Tensor,
    r: torch.Tensor,
    pi: torch.Tensor,
    gamma: float,
    evaluation: str,
    eps: float,
    max_iter: int,
) -> torch.Tensor:
    S = p.shape[1]
    states = torch.arange(S, device=p.device)
    p_pi, r_pi = p[pi, states, :], r[states, pi]
    if evaluation == "exact":
        eye = torch.eye(S, dtype=torch.float64, device=p.device)
        return _finite_values(function, torch.linalg.solve(eye - gamma * p_pi, r_pi))
    threshold = eps * (1 - gamma) / (2 * gamma)
    v = torch.zeros(S, dtype=torch.float64, device=p.device)
    for _ in range(max_iter):
        v_new = _finite_values(function, r_pi + gamma * (p_pi @ v))
        change = (v_new - v).abs().max().item() if S else 0.0
        v = v_new
        if change < threshold:
            return v
    raise value_error(
        function, "max_iter", f"enough sweeps to evaluate the policy within epsilon={eps}", f"max_iter={max_iter}"
    )


def policy_evaluation(
    function: str, P: Any, R: Any, policy: Any, gamma: float, evaluation: str, eps: float, max_iter: int
) -> Any:
    p, r = model(function, P, R)
    pi = _policy(function, policy, p.shape[1], p.shape[0], p.device)
    return _out(_evaluate(function, p, r, pi, gamma, evaluation, eps, max_iter), P, R)


def policy_iteration(
    function: str, P: Any, R: Any, gamma: float, max_iter: int, evaluation: str, initial_policy: Any, eps: float
) -> MDPSolution:
    p, r = model(function, P, R)
    S, A = p.shape[1], p.shape[0]
    if initial_policy is None:
        _, pi = _greedy(r)
    else:
        pi = _policy(function, initial_policy, S, A, p.device, "initial_policy")
    rounds = 0
    while True:
        rounds += 1
        v = _evaluate(function, p, r, pi, gamma, evaluation, eps, 100_000)
        _, improved = _greedy(_q(p, r, v, gamma))
        changed = int((improved != pi).sum().item())
        if changed == 0 or rounds == max_iter:
            break
        pi = improved
    return MDPSolution(_out(v, P, R), _out(pi, P, R), rounds, changed == 0, float(changed), method="policy_iteration")
