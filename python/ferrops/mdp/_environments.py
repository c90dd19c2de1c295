"""MDPs to solve: the grid world of RL-GRID and gymnasium's tabular models."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

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


def from_gymnasium(env_P: GymModel, *, sparse: bool = False) -> tuple[Transitions, np.ndarray]:
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
            raise value_error(F, "env_P", f"states 0..{states - 1} as keys", f"{sorted(env_P)[:5]}...")
        per_state = [env_P[s] for s in range(states)]
    elif isinstance(env_P, (list, tuple)):
        per_state, states = list(env_P), len(env_P)
    else:
        raise type_error(F, "env_P", "a dict or list of states", describe(env_P))
    if states == 0:
        raise value_error(F, "env_P", "at least one state", "none")
    actions = len(per_state[0])
    entries: list[tuple[int, int, float, int, float, bool]] = []
    for s, by_action in enumerate(per_state):
        if len(by_action) != actions:
            raise value_error(F, "env_P", f"{actions} actions for every state", f"{len(by_action)} for state {s}")
        for a in range(actions):
            for item in by_action[a]:
                try:
                    prob, nxt, reward, done = item
                except (TypeError, ValueError) as exc:
                    raise type_error(
                        F, "env_P", "(prob, next_state, reward, done) tuples", f"{item!r} for state {s}, action {a}"
                    ) from exc
                if not 0 <= int(nxt) < states:
                    raise value_error(F, "env_P", f"next states in 0..{states - 1}", f"{nxt} for state {s}, action {a}")
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

        P: Transitions = [
            scipy.sparse.csr_array((prob[a_i == a], (s_i[a_i == a], nxt[a_i == a])), shape=(n, n))
            for a in range(actions)
        ]
    else:
        P = np.zeros((actions, n, n))
        np.add.at(P, (a_i, s_i, nxt), prob)
    return P, R
