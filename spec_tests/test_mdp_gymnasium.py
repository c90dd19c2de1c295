"""``from_gymnasium`` on gymnasium's tabular environments (FrozenLake, Taxi,
CliffWalking): the converted models solve to policies that do what the
environments reward, checked by running them in gymnasium itself."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ferrops import mdp

gym = pytest.importorskip("gymnasium")


def make(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gym.make(name)


def episode_return(env, policy: np.ndarray, seed: int, limit: int = 500) -> float:
    state, _ = env.reset(seed=seed)
    total = 0.0
    for _ in range(limit):
        state, reward, terminated, truncated, _ = env.step(int(policy[state]))
        total += float(reward)
        if terminated or truncated:
            break
    return total


@pytest.mark.spec("MDP", "RL-PI")
def test_frozen_lake_values_and_sparse_form():
    env = make("FrozenLake-v1")
    P, R = mdp.from_gymnasium(env.unwrapped.P)
    Ps, Rs = mdp.from_gymnasium(env.unwrapped.P, sparse=True)
    assert P.shape == (4, 17, 17) and R.shape == (17, 4)
    np.testing.assert_allclose(np.stack([m.toarray() for m in Ps]), P)
    exact = mdp.policy_iteration(P, R, 0.99)
    mpi = mdp.solve(Ps, Rs, 0.99, epsilon=1e-6)
    np.testing.assert_allclose(mdp.policy_evaluation(P, R, mpi.policy, 0.99), exact.V, atol=1e-6)
    # The slippery lake's known optimum from the start: about 0.54 at gamma 0.99.
    assert 0.5 < exact.V[0] < 0.6


@pytest.mark.spec("MDP", "RL-MPI")
def test_taxi_policy_delivers_every_passenger():
    env = make("Taxi-v4")
    P, R = mdp.from_gymnasium(env.unwrapped.P, sparse=True)
    assert len(P) == 6 and R.shape == (501, 6)
    sol = mdp.solve(P, R, 0.95, epsilon=1e-6)
    for seed in range(10):
        # Deterministic: a delivery (+20) after at most ~20 moves (-1 each).
        assert episode_return(env, sol.policy, seed) > 0


@pytest.mark.spec("MDP", "RL-MPI")
def test_cliff_walking_takes_the_edge():
    env = make("CliffWalking-v1")
    P, R = mdp.from_gymnasium(env.unwrapped.P)
    sol = mdp.modified_policy_iteration(P, R, 0.99, epsilon=1e-8)
    # The shortest path along the cliff: 13 moves of reward -1.
    V = mdp.policy_evaluation(P, R, sol.policy, 0.99)
    assert V[36] == pytest.approx(-sum(0.99**i for i in range(13)), abs=1e-9)
    assert episode_return(env, sol.policy, 0) == -13
