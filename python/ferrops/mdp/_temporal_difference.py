"""Temporal-difference learning (RL-TD), simulated in Rust from the model's own
transitions: TD(0), Sarsa, n-step Sarsa, Expected Sarsa, Q-learning, and
pymdptoolbox's ``QLearning``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .. import _core
from .. import _dispatch as d
from .._errors import value_error
from ._arguments import check_count, check_discount, check_number
from ._model import Model, build_model, policy_vector
from ._monte_carlo import check_seed

if TYPE_CHECKING:
    from .._dispatch import Array, ArrayLike
    from ._model import Rewards, Transitions


@dataclass(frozen=True)
class TDResult:
    """What a TD method learnt.

    Attributes:
        values (ndarray[S, A] | ndarray[S]): float64 ``Q`` (``V`` for :func:`td0`).
        policy (ndarray[S] | None): int64 greedy actions of ``Q`` (ties to the
            lowest); None for :func:`td0`.
        updates (ndarray[S, A] | ndarray[S]): int64 updates of each entry.
        steps (int): simulated steps, all episodes together.
    """

    values: Array
    policy: Array | None
    updates: Array
    steps: int


def _probabilities(function: str, argument: str, policy: ArrayLike, m: Model) -> np.ndarray:
    """A deterministic policy ``(S,)`` as one-hot rows, or ``(S, A)`` probabilities
    (the kernel checks that the rows are distributions)."""
    shape = d.shape_of(function, argument, policy)
    if len(shape) == 1:
        pi = policy_vector(function, policy, m.states, m.actions, argument)
        probs = np.zeros((m.states, m.actions))
        probs[np.arange(m.states), pi] = 1.0
        return probs
    probs = d.float_array(function, argument, policy)
    if probs.shape != (m.states, m.actions):
        raise value_error(function, argument, f"shape ({m.states},) or ({m.states}, {m.actions})", list(probs.shape))
    return d.contiguous(function, argument, probs, np.dtype(np.float64))


def _terminal(function: str, terminal: Sequence[int] | ArrayLike) -> np.ndarray:
    # Converted as checked arrays (a huge or float input is an error naming the
    # argument, not a silent truncation or an anonymous MemoryError); an empty
    # sequence, float64 to NumPy, is no terminal state.
    states = d.host_array(function, "terminal", terminal)
    if states.size == 0:
        return np.zeros(0, dtype=np.int64)
    return d.index_array(function, "terminal", states).reshape(-1)


def _td(
    function: str,
    method: str,
    P: Transitions,
    R: Rewards,
    discount: float,
    policy: ArrayLike | None,
    n: int,
    episodes: int,
    episode_length: int,
    epsilon: float,
    alpha: float,
    power: float | None,
    terminal: Sequence[int] | ArrayLike,
    seed: int,
) -> TDResult:
    gamma = check_discount(function, discount, allow_one=True)
    count = check_count(function, "episodes", episodes)
    length = check_count(function, "episode_length", episode_length)
    steps_n = check_count(function, "n", n)
    eps, step = check_number(function, "epsilon", epsilon), check_number(function, "alpha", alpha)
    exponent = None if power is None else check_number(function, "power", power)
    seed = check_seed(function, seed)
    m = build_model(function, P, R)
    argument = "behaviour" if method == "q_learning" else "policy"  # q_learning's policy is its behaviour
    probs = None if policy is None else _probabilities(function, argument, policy, m)
    values, updates, steps = _core.mdp_td_learning(
        m.csr,
        m.reward,
        m.step_rewards(),
        m.states,
        method,
        probs,
        steps_n,
        gamma,
        count,
        length,
        eps,
        step,
        exponent,
        seed,
        _terminal(function, terminal),
    )
    if method == "td0":
        return TDResult(m.out(values[:, 0].copy()), None, m.out(updates[:, 0].copy()), steps)
    greedy = np.argmax(values, axis=1).astype(np.int64) if m.actions else np.zeros(m.states, dtype=np.int64)
    return TDResult(m.out(values), m.out(greedy), m.out(updates), steps)


_STEP_DOC = """
    Episodes start at a uniform non-terminal state and end at a ``terminal``
    state (value 0) or after ``episode_length`` steps (a cut episode still
    bootstraps from where it stopped). With ``discount=1`` terminal states are
    required. Step sizes (RL-SA): ``alpha`` in (0, 1], constant, or with ``power``
    in (1/2, 1] ``alpha / k^power`` at the ``k``-th update of an entry (the
    Robbins-Monro conditions). Episode ``e`` draws from its own stream keyed by
    ``(seed, e)``: the result depends on the seed only, not on the thread count.
"""


def td0(
    P: Transitions,
    R: Rewards,
    discount: float,
    policy: ArrayLike,
    episodes: int = 1000,
    episode_length: int = 100,
    alpha: float = 0.1,
    power: float | None = None,
    terminal: Sequence[int] | ArrayLike = (),
    seed: int = 0,
) -> TDResult:
    """TD(0) state values of ``policy`` (RL-TD):
    ``V(s) += a_k (r + gamma V(s') - V(s))``.

    Args:
        policy (ndarray[S] | ndarray[S, A]): actions, or action probabilities.
    """
    return _td("td0", "td0", P, R, discount, policy, 1, episodes, episode_length, 0.0, alpha, power, terminal, seed)


def sarsa(
    P: Transitions,
    R: Rewards,
    discount: float,
    episodes: int = 1000,
    episode_length: int = 100,
    epsilon: float = 0.1,
    alpha: float = 0.1,
    power: float | None = None,
    terminal: Sequence[int] | ArrayLike = (),
    seed: int = 0,
) -> TDResult:
    """Sarsa (RL-TD), on-policy with the epsilon-greedy policy of ``Q``:
    ``Q(s, a) += a_k (r + gamma Q(s', a') - Q(s, a))``."""
    return _td(
        "sarsa", "sarsa", P, R, discount, None, 1, episodes, episode_length, epsilon, alpha, power, terminal, seed
    )


def n_step_sarsa(
    P: Transitions,
    R: Rewards,
    discount: float,
    n: int = 3,
    episodes: int = 1000,
    episode_length: int = 100,
    epsilon: float = 0.1,
    alpha: float = 0.1,
    power: float | None = None,
    terminal: Sequence[int] | ArrayLike = (),
    seed: int = 0,
) -> TDResult:
    """n-step Sarsa (RL-TD): the target of step ``t`` is
    ``sum_{i<n} gamma^i r_{t+i+1} + gamma^n Q(s_{t+n}, a_{t+n})``."""
    return _td(
        "n_step_sarsa",
        "n_step_sarsa",
        P,
        R,
        discount,
        None,
        n,
        episodes,
        episode_length,
        epsilon,
        alpha,
        power,
        terminal,
        seed,
    )


def expected_sarsa(
    P: Transitions,
    R: Rewards,
    discount: float,
    episodes: int = 1000,
    episode_length: int = 100,
    epsilon: float = 0.1,
    alpha: float = 0.1,
    power: float | None = None,
    terminal: Sequence[int] | ArrayLike = (),
    seed: int = 0,
) -> TDResult:
    """Expected Sarsa (RL-TD): the target averages ``Q(s', .)`` over the
    epsilon-greedy policy, ``r + gamma sum_a' pi(a'|s') Q(s', a')``."""
    return _td(
        "expected_sarsa",
        "expected_sarsa",
        P,
        R,
        discount,
        None,
        1,
        episodes,
        episode_length,
        epsilon,
        alpha,
        power,
        terminal,
        seed,
    )


def q_learning(
    P: Transitions,
    R: Rewards,
    discount: float,
    episodes: int = 1000,
    episode_length: int = 100,
    epsilon: float = 0.1,
    alpha: float = 0.1,
    power: float | None = None,
    behaviour: ArrayLike | None = None,
    terminal: Sequence[int] | ArrayLike = (),
    seed: int = 0,
) -> TDResult:
    """Q-learning (RL-TD): ``Q(s, a) += a_k (r + gamma max_a' Q(s', a') - Q(s, a))``;
    actions epsilon-greedy in ``Q`` (on-policy) or drawn from ``behaviour``
    (off-policy: ``(S,)`` actions or ``(S, A)`` probabilities)."""
    return _td(
        "q_learning",
        "q_learning",
        P,
        R,
        discount,
        behaviour,
        1,
        episodes,
        episode_length,
        epsilon,
        alpha,
        power,
        terminal,
        seed,
    )


for _f in (td0, sarsa, n_step_sarsa, expected_sarsa, q_learning):
    _f.__doc__ = (_f.__doc__ or "") + _STEP_DOC + "\n    Returns:\n        TDResult\n"


@dataclass(frozen=True)
class QLearningResult:
    """pymdptoolbox ``QLearning``'s attributes.

    Attributes:
        Q (ndarray[S, A]): float64 action values.
        V (ndarray[S]): ``Q.max(axis=1)``.
        policy (ndarray[S]): int64 ``Q.argmax(axis=1)``.
        mean_discrepancy (ndarray[n_iter // 100]): mean ``|dQ|`` of each block of 100 steps.
    """

    Q: Array
    V: Array
    policy: Array
    mean_discrepancy: Array


def pymdptoolbox_q_learning(
    P: Transitions, R: Rewards, discount: float, n_iter: int = 10_000, seed: int = 0
) -> QLearningResult:
    """pymdptoolbox's ``QLearning(P, R, discount, n_iter).run()`` (RL-TD): one
    trajectory restarted at a uniform state every 100 steps, the greedy action
    with probability ``1 - 1/ln(n + 2)`` at step ``n`` (else a uniform one), step
    size ``1/sqrt(n + 2)``. The same algorithm on this package's random streams
    (reproducible for a seed), not NumPy's: the same distribution of results,
    not the same numbers. pymdptoolbox asserts ``n_iter >= 10000``; any positive
    count is accepted here.

    Returns:
        QLearningResult
    """
    F = "pymdptoolbox_q_learning"
    gamma = check_discount(F, discount, allow_one=True)
    steps = check_count(F, "n_iter", n_iter)
    seed = check_seed(F, seed)
    m = build_model(F, P, R)
    Q, means = _core.mdp_q_learning_toolbox(m.csr, m.reward, m.step_rewards(), m.states, gamma, steps, seed)
    return QLearningResult(m.out(Q), m.out(Q.max(axis=1)), m.out(np.argmax(Q, axis=1).astype(np.int64)), means)
