"""Monte Carlo control (RL-MC): MC Basic, MC Exploring Starts and MC
epsilon-greedy, simulated in Rust from the model's own transitions."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from .. import _core
from .._errors import type_error, value_error
from ._arguments import check_choice, check_count, check_discount, check_number
from ._model import build_model

if TYPE_CHECKING:
    from .._dispatch import Array
    from ._model import Rewards, Transitions

#: The kernel's name of each method.
Method = Literal["basic", "exploring_starts", "epsilon_greedy"]
#: Which visits of a pair in an episode contribute a return.
VisitRule = Literal["first", "every"]


@dataclass(frozen=True)
class MCResult:
    """What Monte Carlo control estimated.

    Attributes:
        q (ndarray[S, A] | Tensor[S, A]): float64 action values (0 where never visited).
        policy (ndarray[S] | Tensor[S]): int64 greedy actions of ``q`` (ties to the lowest).
        visits (ndarray[S, A] | Tensor[S, A]): int64 returns averaged into each ``q``.
        iterations (int): improvement rounds (``mc_basic``) or episodes.
    """

    q: Array
    policy: Array
    visits: Array
    iterations: int


def check_seed(function: str, seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise type_error(function, "seed", "an int in [0, 2^64)", repr(seed))
    value = int(seed)
    if not 0 <= value < 2**64:
        raise value_error(function, "seed", "an int in [0, 2^64)", repr(seed))
    return value


def _mc(
    function: str,
    method: Method,
    P: Transitions,
    R: Rewards,
    discount: float,
    episodes: int,
    episode_length: int,
    seed: int,
    iterations: int,
    epsilon: float,
    visit: VisitRule,
) -> MCResult:
    visit = check_choice(function, "visit", visit, ("first", "every"))
    gamma = check_discount(function, discount, allow_one=True)
    n_episodes = check_count(function, "episodes", episodes)
    length = check_count(function, "episode_length", episode_length)
    rounds = check_count(function, "iterations", iterations)
    seed = check_seed(function, seed)
    m = build_model(function, P, R)
    q, policy, visits, k = _core.mdp_mc_control(
        m.csr, m.reward, m.step_rewards(), m.states, method, gamma, n_episodes, length, seed, rounds, epsilon, visit
    )
    return MCResult(m.out(q), m.out(policy), m.out(visits), k)


def mc_basic(
    P: Transitions,
    R: Rewards,
    discount: float,
    episodes: int = 1,
    episode_length: int = 100,
    iterations: int = 100,
    seed: int = 0,
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
    return _mc("mc_basic", "basic", P, R, discount, episodes, episode_length, seed, iterations, 0.0, "first")


def mc_exploring_starts(
    P: Transitions,
    R: Rewards,
    discount: float,
    episodes: int = 10_000,
    episode_length: int = 100,
    seed: int = 0,
    visit: VisitRule = "first",
) -> MCResult:
    """MC Exploring Starts (RL-MC): each episode starts at a uniformly drawn
    ``(s, a)``, follows the greedy policy, and is walked backwards
    (``g = gamma g + r_{t+1}``) updating the averages ``q(s, a)`` and the greedy
    action of each visited state.

    Args:
        visit: ``"first"`` (default): only the first visit of ``(s, a)`` in an
            episode adds its return to ``q(s, a)``; ``"every"``: every visit
            does. Episodes are cut after ``episode_length`` rewards, so a visit at
            step ``t`` sees a return of ``episode_length - t`` rewards, short of
            the infinite-horizon one by up to ``gamma^(episode_length - t) |V|``.
            Every-visit averages many such short returns (the visits near the
            end), a bias that more episodes do not remove and that can make the
            greedy policy suboptimal; first-visit keeps the longest return of each
            episode and converges to the optimal policy. How long an episode
            must be: with rewards bounded by ``r_max``, a first visit at step
            ``t`` is within ``delta`` of its untruncated return once
            ``episode_length - t >= log(delta (1 - gamma) / r_max) / log(gamma)``
            (gamma 0.9, ``r_max`` 1, ``delta`` 0.01: 66 steps after the visit).

    Returns:
        MCResult
    """
    return _mc("mc_exploring_starts", "exploring_starts", P, R, discount, episodes, episode_length, seed, 1, 0.0, visit)


def mc_epsilon_greedy(
    P: Transitions,
    R: Rewards,
    discount: float,
    epsilon: float = 0.1,
    episodes: int = 10_000,
    episode_length: int = 100,
    seed: int = 0,
    visit: VisitRule = "first",
) -> MCResult:
    """MC epsilon-greedy (RL-MC): episodes start at a uniform state and follow the
    epsilon-greedy policy ``pi(a*|s) = 1 - (|A| - 1) eps / |A|``, other actions
    ``eps / |A|``; first-visit (default) or every-visit averages (see
    :func:`mc_exploring_starts` for the truncation bias of ``"every"``), returns
    computed backwards. ``policy`` is the greedy action ``a*`` of the final ``q``.

    Returns:
        MCResult
    """
    F = "mc_epsilon_greedy"
    eps = check_number(F, "epsilon", epsilon)
    if not 0.0 <= eps <= 1.0:
        raise value_error(F, "epsilon", "a value in [0, 1]", repr(epsilon))
    return _mc(F, "epsilon_greedy", P, R, discount, episodes, episode_length, seed, 1, eps, visit)
