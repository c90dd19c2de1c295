"""Monte Carlo control (RL-MC, RL-MC-VISIT): MC Basic, Exploring Starts and
epsilon-greedy on the spec's grid world, first- and every-visit averages."""

from __future__ import annotations

import numpy as np
import pytest

from ferrops import mdp
from spec_tests.test_mdp import GRID_FORBIDDEN

# ---------------------------------------------------------------------------
# Monte Carlo control


def grid_optimum():
    P, R = mdp.grid_world(5, 5, (3, 2), GRID_FORBIDDEN)
    return P, R, mdp.value_iteration(P, R, 0.9, epsilon=1e-10, stop="supnorm").V


@pytest.mark.spec("RL-MC")
def test_mc_basic_finds_the_optimal_policy():
    P, R, v_star = grid_optimum()
    res = mdp.mc_basic(P, R, 0.9, episodes=1, episode_length=120, iterations=50, seed=0)
    v_pi = mdp.policy_evaluation(P, R, res.policy, 0.9)
    np.testing.assert_allclose(v_pi, v_star, atol=1e-6)
    # Deterministic grid: every q is the truncated return of the greedy policy.
    assert res.q.shape == (25, 5) and res.visits.dtype == np.int64


@pytest.mark.spec("RL-MC")
@pytest.mark.parametrize("method", ["exploring_starts", "epsilon_greedy"])
def test_mc_control_is_near_optimal(method):
    P, R, v_star = grid_optimum()
    if method == "exploring_starts":
        res = mdp.mc_exploring_starts(P, R, 0.9, episodes=50_000, episode_length=40, seed=1)
    else:
        res = mdp.mc_epsilon_greedy(P, R, 0.9, epsilon=0.2, episodes=50_000, episode_length=100, seed=1)
    v_pi = mdp.policy_evaluation(P, R, res.policy, 0.9)
    gap = v_star - v_pi
    assert gap.min() > -1e-9
    assert gap.mean() < 0.25 and gap.max() < 2.5
    # First visits: at most one return per visited pair and episode.
    assert res.visits.sum() <= 50_000 * 25 * 5


@pytest.mark.spec("RL-MC-VISIT")
@pytest.mark.parametrize("seed", range(5))
def test_first_visit_exploring_starts_converges_on_the_grid(seed):
    # Every-visit averages keep short returns from the ends of episodes (and here
    # leave a policy 1 or more below optimal at some state whatever the episode
    # count); first-visit reaches the optimal policy's values within 0.1.
    P, R, v_star = grid_optimum()
    res = mdp.mc_exploring_starts(P, R, 0.9, episodes=100_000, episode_length=100, seed=seed)
    gap = v_star - mdp.policy_evaluation(P, R, res.policy, 0.9)
    assert gap.max() <= 0.1 + 1e-9


@pytest.mark.spec("RL-MC-VISIT")
def test_every_visit_keeps_the_truncation_bias():
    # The case: 20,000 episodes of 40 steps, seed 3. Every-visit stays
    # more than 1 below optimal at some state, first-visit reaches the optimum.
    P, R, v_star = grid_optimum()
    gaps = {}
    for visit in ("every", "first"):
        res = mdp.mc_exploring_starts(P, R, 0.9, episodes=20_000, episode_length=40, seed=3, visit=visit)
        gaps[visit] = (v_star - mdp.policy_evaluation(P, R, res.policy, 0.9)).max()
    assert gaps["every"] > 1.0
    assert gaps["first"] <= 1e-9


@pytest.mark.spec("RL-MC", "RL-MC-VISIT")
def test_mc_returns_are_every_visit_discounted_averages():
    # One state, one action, reward 1: visit t of an episode of length L sees the
    # return sum_{i < L - t} gamma^i (computed backwards); every-visit q is their
    # average, first-visit q the return of t = 0.
    P, R = np.ones((1, 1, 1)), np.ones((1, 1))
    res = mdp.mc_exploring_starts(P, R, 0.5, episodes=1, episode_length=4, seed=0, visit="every")
    returns = [sum(0.5**i for i in range(4 - t)) for t in range(4)]
    assert res.q[0, 0] == pytest.approx(np.mean(returns), abs=1e-15)
    assert res.visits[0, 0] == 4
    first = mdp.mc_exploring_starts(P, R, 0.5, episodes=3, episode_length=4, seed=0)
    assert first.q[0, 0] == pytest.approx(returns[0], abs=1e-15)
    assert first.visits[0, 0] == 3
    with pytest.raises(ValueError, match=r"mc_exploring_starts\(\): argument 'visit'"):
        mdp.mc_exploring_starts(P, R, 0.5, visit="last")


@pytest.mark.spec("RL-MC")
def test_mc_epsilon_greedy_action_probabilities():
    # One state, 4 actions with equal rewards: the greedy action stays 0, and the
    # share of visits of each other action is eps / |A|.
    P, R = np.ones((4, 1, 1)), np.zeros((1, 4))
    res = mdp.mc_epsilon_greedy(P, R, 0.9, epsilon=0.4, episodes=200, episode_length=500, seed=3, visit="every")
    share = res.visits[0] / res.visits.sum()
    np.testing.assert_allclose(share, [1 - 3 * 0.4 / 4, 0.1, 0.1, 0.1], atol=0.01)


@pytest.mark.spec("RL-MC")
def test_mc_is_reproducible_per_seed():
    P, R, _ = grid_optimum()
    a = mdp.mc_epsilon_greedy(P, R, 0.9, episodes=500, episode_length=20, seed=7)
    b = mdp.mc_epsilon_greedy(P, R, 0.9, episodes=500, episode_length=20, seed=7)
    c = mdp.mc_epsilon_greedy(P, R, 0.9, episodes=500, episode_length=20, seed=8)
    np.testing.assert_array_equal(a.q, b.q)
    assert not np.array_equal(a.q, c.q)


@pytest.mark.spec("RL-MC")
def test_mc_samples_per_transition_rewards():
    # From state 0, action 0 lands in 1 or 2 with rewards 10 / 0: the first-step
    # return averages to the expected reward.
    P = np.zeros((1, 3, 3))
    P[0, 0, 1], P[0, 0, 2], P[0, 1, 1], P[0, 2, 2] = 0.3, 0.7, 1, 1
    R = np.zeros((1, 3, 3))
    R[0, 0, 1] = 10
    res = mdp.mc_basic(P, R, 0.9, episodes=20_000, episode_length=1, iterations=1, seed=5)
    assert res.q[0, 0] == pytest.approx(3.0, abs=0.1)
