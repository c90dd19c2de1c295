"""MDPs to solve: the grid world of RL-GRID and gymnasium's tabular models."""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .. import _dispatch as d
from .._errors import describe, type_error, value_error
from ._arguments import check_count, check_number

if TYPE_CHECKING:
    from typing import TypeAlias

    import scipy.sparse

    #: ``P`` as these return it: dense ``(A, S, S)`` or one SciPy CSR array per action.
    Transitions: TypeAlias = np.ndarray | list[scipy.sparse.csr_array]
    #: gymnasium's ``(prob, next_state, reward, done)``.
    GymTransition: TypeAlias = tuple[float, int, float, bool]
    #: ``env.unwrapped.P``: ``P[s][a]``, a list of transitions, by state and action.
    GymModel: TypeAlias = (
        Mapping[int, Mapping[int, Sequence[GymTransition]]] | Sequence[Sequence[Sequence[GymTransition]]]
    )

#: Grid-world actions (RL-GRID), as (row, column) moves.
GRID_MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1), (0, 0))


def _cell(function: str, argument: str, cell: tuple[int, int], rows: int, cols: int) -> tuple[int, int]:
    try:
        r, c = cell
    except (TypeError, ValueError) as exc:
        raise type_error(function, argument, "a (row, col) pair", repr(cell)) from exc
    for v in (r, c):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise type_error(function, argument, "integer (row, col)", repr(cell))
    if not (0 <= r < rows and 0 <= c < cols):
        raise value_error(function, argument, f"a cell inside the {rows} x {cols} grid", repr(cell))
    return int(r), int(c)


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
) -> tuple[Transitions, np.ndarray]:
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
    rows, cols = check_count(F, "rows", rows), check_count(F, "cols", cols)
    tr, tc = _cell(F, "target", target, rows, cols)
    if isinstance(forbidden, (str, bytes)) or not isinstance(forbidden, Iterable):
        raise type_error(F, "forbidden", "a sequence of (row, col) pairs", describe(forbidden))
    bad_cells = {_cell(F, "forbidden", c, rows, cols) for c in forbidden}
    if (tr, tc) in bad_cells:
        raise value_error(F, "forbidden", "cells other than the target", repr(target))
    rewards = {
        n: check_number(F, n, v)
        for n, v in (
            ("r_boundary", r_boundary),
            ("r_forbidden", r_forbidden),
            ("r_target", r_target),
            ("r_other", r_other),
        )
    }
    for n, v in rewards.items():
        if not math.isfinite(v):
            raise value_error(F, n, "a finite reward", repr(v))
    S = rows * cols
    # P (dense (5, S, S), or 5 CSR arrays of S entries) and R (S, 5), in float64,
    # plus the int64 work arrays: checked before anything is allocated.
    p_bytes = 5 * S * (8 + 8 + 8) if sparse else 5 * S * S * 8
    d.check_allocation(F, f"a grid world of {rows} x {cols} cells", p_bytes + S * 5 * 8 + 4 * S * 8)
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

        P: Transitions = [scipy.sparse.csr_array((np.ones(S), (np.arange(S), nxt[a])), shape=(S, S)) for a in range(5)]
    else:
        P = np.zeros((5, S, S))
        for a in range(5):
            P[a, np.arange(S), nxt[a]] = 1.0
    return P, R


#: How far the probabilities of one (state, action) may sum from 1, as the solvers allow.
ROW_SUM_TOLERANCE = 1e-6


def _some_keys(keys: Collection[object], state: int | None = None) -> str:
    shown = ", ".join(repr(k) for k in list(keys)[:6])
    more = ", ..." if len(keys) > 6 else ""
    where = "" if state is None else f" for state {state}"
    return f"keys {{{shown}{more}}}{where}"


def _action_count(function: str, by_action: object, s: int) -> int:
    if not isinstance(by_action, (Mapping, list, tuple)):
        raise type_error(
            function, "env_P", "a dict or list of actions per state", f"{describe(by_action)} for state {s}"
        )
    return len(by_action)


def _transition(function: str, item: object, s: int, a: int, states: int) -> tuple[int, int, float, int, float, bool]:
    """One checked ``(prob, next_state, reward, done)`` as ``(a, s, prob, next, reward, done)``."""
    where = f"for state {s}, action {a}"
    if not isinstance(item, Sequence) or isinstance(item, (str, bytes)) or len(item) != 4:
        raise type_error(function, "env_P", "(prob, next_state, reward, done) tuples", f"{item!r} {where}")
    prob, nxt, reward, done = item
    for name, value in (("probabilities", prob), ("rewards", reward)):
        if isinstance(value, (bool, str, bytes)) or not isinstance(value, numbers.Real):
            raise type_error(function, "env_P", f"real {name}", f"{value!r} {where}")
    if not (math.isfinite(prob) and prob >= 0):
        raise value_error(function, "env_P", "probabilities that are finite and >= 0", f"{prob!r} {where}")
    if not math.isfinite(reward):
        raise value_error(function, "env_P", "finite rewards", f"{reward!r} {where}")
    if isinstance(nxt, bool) or not isinstance(nxt, numbers.Integral):
        raise type_error(function, "env_P", "integer next states", f"{nxt!r} {where}")
    if not 0 <= int(nxt) < states:
        raise value_error(function, "env_P", f"next states in 0..{states - 1}", f"{nxt} {where}")
    return a, s, float(prob), int(nxt), float(reward), bool(done)


def from_gymnasium(env_P: GymModel, *, sparse: bool = False) -> tuple[Transitions, np.ndarray]:
    """Converts gymnasium's tabular model ``env.unwrapped.P``,
    ``P[s][a] = [(prob, next_state, reward, done), ...]``, to ``(P, R)``. Every
    state must list the same actions ``0..A-1``, each with transitions whose
    probabilities are finite, non-negative and sum to 1 (within 1e-6), finite
    rewards and next states in ``0..S-1``; anything else is a ``ValueError`` or
    ``TypeError`` naming the state and action.

    A transition with ``done`` ends the episode: it is sent to one added absorbing
    state ``S`` (reward 0 forever), so values are those of the episodic task. That
    state is appended only when some transition is terminal.

    Returns:
        (P, R): ``P`` float64 ``(A, S', S')`` (``sparse=True``: a list of SciPy CSR
        arrays), ``R`` float64 ``(S', A)`` expected rewards; ``S' = S`` or ``S + 1``.
    """
    F = "from_gymnasium"
    if isinstance(env_P, Mapping):
        states = len(env_P)
        if set(env_P) != set(range(states)):
            raise value_error(F, "env_P", f"states 0..{states - 1} as keys", _some_keys(env_P))
        per_state = [env_P[s] for s in range(states)]
    elif isinstance(env_P, (list, tuple)):
        per_state, states = list(env_P), len(env_P)
    else:
        raise type_error(F, "env_P", "a dict or list of states", describe(env_P))
    if states == 0:
        raise value_error(F, "env_P", "at least one state", "none")
    actions = _action_count(F, per_state[0], 0)
    entries: list[tuple[int, int, float, int, float, bool]] = []
    for s, by_action in enumerate(per_state):
        if _action_count(F, by_action, s) != actions:
            raise value_error(F, "env_P", f"{actions} actions for every state", f"{len(by_action)} for state {s}")
        for a in range(actions):
            if isinstance(by_action, Mapping) and a not in by_action:
                raise value_error(F, "env_P", f"actions 0..{actions - 1} for every state", _some_keys(by_action, s))
            transitions = by_action[a]
            if not isinstance(transitions, Sequence) or isinstance(transitions, (str, bytes)):
                raise type_error(
                    F, "env_P", "a list of transitions per action", f"{describe(transitions)} for state {s}, action {a}"
                )
            total = 0.0
            for item in transitions:
                entry = _transition(F, item, s, a, states)
                total += entry[2]
                entries.append(entry)
            if abs(total - 1.0) > ROW_SUM_TOLERANCE:
                raise value_error(
                    F,
                    "env_P",
                    "probabilities summing to 1 for every (state, action)",
                    f"{total} for state {s}, action {a}",
                )
    terminal = any(e[5] for e in entries)
    n = states + 1 if terminal else states
    if not sparse:
        d.check_allocation(F, f"the dense P of {actions} actions and {n} states", actions * n * n * 8)
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

        P: Transitions = [
            scipy.sparse.csr_array((prob[a_i == a], (s_i[a_i == a], nxt[a_i == a])), shape=(n, n))
            for a in range(actions)
        ]
    else:
        P = np.zeros((actions, n, n))
        np.add.at(P, (a_i, s_i, nxt), prob)
    return P, R
