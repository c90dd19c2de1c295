"""MDP solvers beyond value and policy iteration: modified policy iteration with
its certified stop (RL-MPI), ``solve``, relative value iteration (RL-RVI), finite
horizon (RL-FH) and linear programming (RL-LP), against pymdptoolbox and exact
solves."""

from __future__ import annotations

import numpy as np
import pytest

from ferrops import mdp
from spec_tests.test_mdp import (
    GRID_FORBIDDEN,
    forest,
    pymdptoolbox,
    quiet,
    random_mdp,
    reference_optimum,
    to_sparse,
)


def exact_policy_value(P: np.ndarray, R: np.ndarray, policy: np.ndarray, gamma: float) -> np.ndarray:
    S = P.shape[1]
    return np.linalg.solve(np.eye(S) - gamma * P[policy, np.arange(S)], R[np.arange(S), policy])


# ---------------------------------------------------------------------------
# modified policy iteration


@pytest.mark.spec("RL-MPI")
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("sparse", [False, True])
def test_mpi_matches_pymdptoolbox(seed, sparse):
    pm = pymdptoolbox()
    P, R = random_mdp(60, 3, 5, seed)
    ours = mdp.modified_policy_iteration(to_sparse(P) if sparse else P, R, 0.9)
    theirs = quiet(lambda: pm.PolicyIterationModified(to_sparse(P) if sparse else P, R, 0.9))
    quiet(theirs.run)
    np.testing.assert_allclose(ours.V, theirs.V, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(ours.policy, theirs.policy)
    assert ours.iterations == theirs.iter and ours.method == "modified_policy_iteration"


@pytest.mark.spec("RL-MPI")
def test_mpi_forest_example():
    P, R = forest()
    sol = mdp.modified_policy_iteration(P, R, 0.9)
    np.testing.assert_allclose(sol.V, [21.81408652, 25.05408652, 29.05408652], atol=1e-7)
    assert tuple(sol.policy) == (0, 0, 0) and sol.iterations == 3


@pytest.mark.spec("RL-MPI")
@pytest.mark.parametrize("method", ["jacobi", "gauss-seidel", "sor"])
@pytest.mark.parametrize("seed", range(3))
def test_mpi_bound_is_proved(method, seed):
    # V* - V_policy <= bound < epsilon at every state, whatever the sweeps.
    P, R = random_mdp(80, 4, 6, seed)
    gamma, eps = 0.97, 1e-3
    v_star, _ = reference_optimum(P, R, gamma)
    sol = mdp.modified_policy_iteration(P, R, gamma, epsilon=eps, method=method, omega=1.2)
    assert sol.converged and sol.bound < eps
    gap = v_star - exact_policy_value(P, R, sol.policy, gamma)
    assert gap.max() <= sol.bound + 1e-9


@pytest.mark.spec("RL-MPI", "RL-VI-STOP")
def test_value_iteration_reports_the_same_bound():
    P, R = random_mdp(80, 4, 6, 1)
    v_star, _ = reference_optimum(P, R, 0.95)
    for stop in ("span", "supnorm"):
        sol = mdp.value_iteration(P, R, 0.95, epsilon=1e-3, stop=stop, max_iter=10_000)
        assert sol.bound < np.inf
        assert (v_star - exact_policy_value(P, R, sol.policy, 0.95)).max() <= sol.bound + 1e-9
    assert mdp.value_iteration(P, R, 0.95, method="gauss-seidel").bound == np.inf


@pytest.mark.spec("RL-MPI")
def test_mpi_warm_starts():
    P, R = random_mdp(100, 3, 5, 4)
    cold = mdp.modified_policy_iteration(P, R, 0.99, epsilon=1e-6, max_iter=5)
    v_star, pi_star = reference_optimum(P, R, 0.99)
    warm = mdp.modified_policy_iteration(
        P, R, 0.99, epsilon=1e-6, max_iter=5, initial_value=v_star, initial_policy=pi_star
    )
    assert warm.iterations < cold.iterations
    np.testing.assert_array_equal(warm.policy, pi_star)
    with pytest.raises(ValueError, match=r"modified_policy_iteration\(\): argument 'initial_policy'"):
        mdp.modified_policy_iteration(P, R, 0.9, initial_policy=np.full(100, 3))
    with pytest.raises(ValueError, match=r"modified_policy_iteration\(\): argument 'initial_value'"):
        mdp.modified_policy_iteration(P, R, 0.9, initial_value=np.zeros(7))
    with pytest.raises(ValueError, match=r"argument 'omega'"):
        mdp.modified_policy_iteration(P, R, 0.9, method="sor", omega=2.5)


@pytest.mark.spec("RL-MPI")
def test_diverging_over_relaxation_blames_omega():
    # On this grid SOR at omega = 1.5 diverges within a few sweeps of its
    # first evaluation, where Gauss-Seidel converges.
    P, R = mdp.grid_world(60, 60, (30, 20), [(i, 10) for i in range(50)], sparse=True)
    assert mdp.modified_policy_iteration(P, R, 0.99, epsilon=1e-4, max_iter=20, method="gauss-seidel").converged
    with pytest.raises(ValueError, match=r"modified_policy_iteration\(\): argument 'omega'"):
        mdp.modified_policy_iteration(P, R, 0.99, epsilon=1e-4, max_iter=20, method="sor", omega=1.5)


@pytest.mark.spec("RL-MPI")
def test_mpi_agrees_with_value_and_policy_iteration():
    P, R = random_mdp(120, 4, 8, 7)
    P_sparse = to_sparse(P)
    v_star, pi_star = reference_optimum(P, R, 0.95)
    mpi = mdp.modified_policy_iteration(P_sparse, R, 0.95, epsilon=1e-8)
    vi = mdp.value_iteration(P_sparse, R, 0.95, epsilon=1e-8, max_iter=10_000)
    pi = mdp.policy_iteration(P_sparse, R, 0.95)
    for sol in (mpi, vi, pi):
        np.testing.assert_array_equal(sol.policy, pi_star)
    np.testing.assert_allclose(pi.V, v_star, atol=1e-9)


@pytest.mark.spec("RL-MPI")
def test_mpi_checks_like_the_other_solvers():
    P, R = forest()
    bad = P.copy()
    bad[0, 1, 0] += 0.1
    with pytest.raises(ValueError, match=r"modified_policy_iteration\(\): argument 'P'.*sums to"):
        mdp.modified_policy_iteration(bad, R, 0.9)
    nan = R.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"modified_policy_iteration\(\): argument 'R'"):
        mdp.modified_policy_iteration(P, nan, 0.9)
    with pytest.raises(ValueError, match=r"argument 'discount'"):
        mdp.modified_policy_iteration(P, R, 1.5)


@pytest.mark.spec("RL-MPI")
def test_solve_says_which_method_ran():
    P, R = random_mdp(50, 3, 4, 0)
    v_star, pi_star = reference_optimum(P, R, 0.9)
    small = mdp.solve(P, R, 0.9)
    assert small.method == "policy_iteration" and small.bound == 0.0
    np.testing.assert_array_equal(small.policy, pi_star)
    large = mdp.solve(to_sparse(P), R, 0.9, epsilon=1e-4)
    assert large.method == "modified_policy_iteration" and large.bound < 1e-4
    assert (v_star - exact_policy_value(P, R, large.policy, 0.9)).max() <= large.bound + 1e-9
    # solve's V: the middle of MacQueen's bracket, within bound / 2 of V*.
    assert np.abs(large.V - v_star).max() <= large.bound / 2 + 1e-9
    grid_P, grid_R = mdp.grid_world(5, 5, (3, 2), GRID_FORBIDDEN, sparse=True)
    assert mdp.solve(grid_P, grid_R, 0.9, epsilon=1e-6).policy[3 * 5 + 2] == 4


# ---------------------------------------------------------------------------
# relative value iteration, finite horizon, linear programming


@pytest.mark.spec("RL-RVI")
@pytest.mark.parametrize("seed", range(3))
def test_relative_value_iteration_matches_pymdptoolbox(seed):
    pm = pymdptoolbox()
    P, R = random_mdp(40, 3, 5, seed) if seed else forest()
    ours = mdp.relative_value_iteration(P, R)
    theirs = quiet(lambda: pm.RelativeValueIteration(P, R))
    quiet(theirs.run)
    np.testing.assert_allclose(ours.V, theirs.V, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(ours.policy, theirs.policy)
    assert ours.average_reward == pytest.approx(theirs.average_reward, abs=1e-12)
    assert ours.iterations == theirs.iter
    assert ours.average_reward <= ours.average_reward_upper


@pytest.mark.spec("RL-RVI")
def test_relative_value_iteration_brackets_the_gain():
    # A 2-state cycle with rewards 1 and 3 on the way: gain 2.
    P = np.array([[[0.0, 1.0], [1.0, 0.0]]])
    R = np.array([[1.0], [3.0]])
    sol = mdp.relative_value_iteration(P, R, epsilon=1e-9, max_iter=10)
    assert sol.average_reward <= 2.0 <= sol.average_reward_upper


@pytest.mark.spec("RL-FH")
@pytest.mark.parametrize("seed", range(3))
def test_finite_horizon_matches_pymdptoolbox(seed):
    pm = pymdptoolbox()
    P, R = random_mdp(30, 3, 4, seed)
    h = np.linspace(-1, 1, 30) if seed == 2 else None
    ours = mdp.finite_horizon(P, R, 0.95, 6, h)
    theirs = quiet(lambda: pm.FiniteHorizon(P, R, 0.95, 6, h))
    quiet(theirs.run)
    assert ours.V.shape == (30, 7) and ours.policy.shape == (30, 6)
    np.testing.assert_allclose(ours.V, theirs.V, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ours.policy, theirs.policy)


@pytest.mark.spec("RL-FH")
def test_finite_horizon_stages_and_bad_horizon():
    P, R = forest()
    sol = mdp.finite_horizon(P, R, 0.9, 3)
    np.testing.assert_allclose(sol.V[:, 0], [2.6973, 5.9373, 9.9373], atol=1e-12)
    np.testing.assert_array_equal(sol.policy, [[0, 0, 0], [0, 0, 1], [0, 0, 0]])
    # One stage to go: the best immediate reward.
    np.testing.assert_allclose(sol.V[:, 2], R.max(axis=1))
    with pytest.raises(ValueError, match=r"finite_horizon\(\): argument 'N'"):
        mdp.finite_horizon(P, R, 0.9, 0)


@pytest.mark.spec("RL-LP")
@pytest.mark.parametrize("seed", range(3))
def test_linear_programming_is_exact(seed):
    pytest.importorskip("scipy.optimize")
    P, R = random_mdp(50, 3, 5, seed)
    v_star, pi_star = reference_optimum(P, R, 0.9)
    for model in (P, to_sparse(P)):
        sol = mdp.linear_programming(model, R, 0.9)
        np.testing.assert_allclose(sol.V, v_star, atol=1e-6)
        np.testing.assert_array_equal(sol.policy, pi_star)
        assert sol.method == "linear_programming"


@pytest.mark.spec("RL-LP")
def test_linear_programming_forest():
    P, R = forest()
    sol = mdp.linear_programming(P, R, 0.9)
    v_star, pi_star = reference_optimum(P, R, 0.9)
    np.testing.assert_allclose(sol.V, v_star, atol=1e-6)
    np.testing.assert_array_equal(sol.policy, pi_star)


ENTRY_POINTS = {
    "modified_policy_iteration": lambda P, R: mdp.modified_policy_iteration(P, R, 0.9),
    "solve": lambda P, R: mdp.solve(P, R, 0.9),
    "relative_value_iteration": lambda P, R: mdp.relative_value_iteration(P, R),
    "finite_horizon": lambda P, R: mdp.finite_horizon(P, R, 0.9, 3),
    "linear_programming": lambda P, R: mdp.linear_programming(P, R, 0.9),
    "td0": lambda P, R: mdp.td0(P, R, 0.9, np.zeros(3, dtype=np.int64), episodes=1),
    "sarsa": lambda P, R: mdp.sarsa(P, R, 0.9, episodes=1),
    "n_step_sarsa": lambda P, R: mdp.n_step_sarsa(P, R, 0.9, episodes=1),
    "expected_sarsa": lambda P, R: mdp.expected_sarsa(P, R, 0.9, episodes=1),
    "q_learning": lambda P, R: mdp.q_learning(P, R, 0.9, episodes=1),
    "pymdptoolbox_q_learning": lambda P, R: mdp.pymdptoolbox_q_learning(P, R, 0.9, n_iter=100),
}


@pytest.mark.spec("RL-CHECK")
@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
def test_every_new_entry_point_refuses_bad_models(name):
    run = ENTRY_POINTS[name]
    P, R = forest()
    run(P, R)
    unnormalised = P.copy()
    unnormalised[1, 2, 0] = 0.9
    with pytest.raises(ValueError, match=rf"{name}\(\): argument 'P'.*sums to"):
        run(unnormalised, R)
    nan = R.copy()
    nan[2, 1] = np.nan
    with pytest.raises(ValueError, match=rf"{name}\(\): argument 'R'.*finite"):
        run(P, nan)


@pytest.mark.spec("RL-MPI")
def test_solve_ends_on_tied_actions():
    # Found by the fuzz suite: with equal rewards every action ties and the greedy
    # step flipped on rounding noise, cycling policy iteration to its 10^6 rounds.
    rng = np.random.default_rng(0)
    p = rng.random((3, 4, 4)) + 0.01
    sol = mdp.solve(p / p.sum(axis=2, keepdims=True), np.ones((4, 3)), 0.72)
    assert sol.converged and sol.iterations <= 3
    np.testing.assert_allclose(sol.V, np.full(4, 1 / (1 - 0.72)))


@pytest.mark.spec("RL-LP")
def test_linear_programming_names_a_bad_model():
    # Found by the fuzz suite: a non-finite P reached HiGHS, whose error named nothing.
    P, R = random_mdp(4, 2, 2, 0)
    P = P.copy()
    P[0, 1, 1] = -np.inf
    with pytest.raises(ValueError, match=r"linear_programming\(\): argument 'P'"):
        mdp.linear_programming(P, R, 0.9)
