"""Conformance of ferrops.mdp (SPEC section 5, RL-*).

References are written from the formulas in float64 NumPy (dense Bellman
backups, exact linear solves); pymdptoolbox is an extra oracle where installed.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import ferrops
from ferrops import mdp

# ---------------------------------------------------------------------------
# references and models


def forest(S: int = 3, r1: float = 4.0, r2: float = 2.0, p: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """pymdptoolbox's forest-management example, written out: action 0 waits
    (fire with probability p resets to state 0), action 1 cuts (back to 0)."""
    P = np.zeros((2, S, S))
    P[0, :, 0] = p
    P[0, np.arange(S - 1), np.arange(1, S)] = 1 - p
    P[0, S - 1, S - 1] = 1 - p
    P[1, :, 0] = 1.0
    R = np.zeros((S, 2))
    R[S - 1, 0] = r1
    R[1:, 1] = 1.0
    R[S - 1, 1] = r2
    return P, R


def random_mdp(S: int, A: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense (A, S, S) with k random successors per (s, a), and R (S, A)."""
    rng = np.random.default_rng(seed)
    P = np.zeros((A, S, S))
    for a in range(A):
        for s in range(S):
            cols = rng.choice(S, size=k, replace=False)
            w = rng.uniform(0.1, 1.0, k)
            P[a, s, cols] = w / w.sum()
    return P, rng.normal(size=(S, A))


def to_sparse(P: np.ndarray) -> list:
    sp = pytest.importorskip("scipy.sparse")
    return [sp.csr_matrix(m) for m in P]


def reference_q(P: np.ndarray, r: np.ndarray, V: np.ndarray, gamma: float) -> np.ndarray:
    """RL-BELLMAN: Q(s, a) = r(s, a) + gamma sum_s' P[a, s, s'] V(s')."""
    return r + gamma * np.einsum("ast,t->sa", P, V)


def reference_optimum(P: np.ndarray, r: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """V* and an optimal policy by policy iteration with exact solves."""
    S = P.shape[1]
    pi = np.zeros(S, dtype=np.int64)
    while True:
        V = np.linalg.solve(np.eye(S) - gamma * P[pi, np.arange(S)], r[np.arange(S), pi])
        q = reference_q(P, r, V, gamma)
        best = q.max(axis=1)
        # Keep the current action unless another is clearly better (no ping-pong).
        improved = np.where(q[np.arange(S), pi] >= best - 1e-12, pi, q.argmax(axis=1))
        if np.array_equal(improved, pi):
            return V, pi
        pi = improved


def solve(function, P, R, *args, backend, **kwargs):
    return function(backend.input(P), backend.input(R), *args, **backend.kwargs, **kwargs)


def pymdptoolbox():
    return pytest.importorskip("mdptoolbox.mdp")


def quiet(run):
    """pymdptoolbox prints and may warn; pytest runs with warnings as errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run()


GRID_FORBIDDEN = [(1, 1), (1, 2), (2, 2), (3, 1), (3, 3), (4, 1)]
#: Optimal state values of the 5 x 5 grid world (target (3, 2), the forbidden
#: cells above, r_boundary = r_forbidden = -1, r_target = 1, gamma = 0.9), as
#: tabulated to one decimal in Zhao's "Mathematical Foundations of RL", ch. 3.
GRID_OPTIMAL = np.array(
    [
        [5.8, 5.6, 6.2, 6.5, 5.8],
        [6.5, 7.2, 8.0, 7.2, 6.5],
        [7.2, 8.0, 10.0, 8.0, 7.2],
        [8.0, 10.0, 10.0, 10.0, 8.0],
        [7.2, 9.0, 10.0, 9.0, 8.1],
    ]
)


# ---------------------------------------------------------------------------
# value iteration


@pytest.mark.spec("RL-BELLMAN", "RL-VI-STOP")
def test_forest_documented_values(backend):
    P, R = forest()
    sol = solve(mdp.value_iteration, P, R, 0.96, backend=backend)
    np.testing.assert_allclose(backend.output(sol.V), [5.93215488, 9.38815488, 13.38815488], atol=1e-8)
    np.testing.assert_array_equal(backend.output(sol.policy), [0, 0, 0])
    assert sol.iterations == 4 and sol.converged


@pytest.mark.spec("RL-BELLMAN", "RL-VI-STOP")
def test_two_state_documented_values(backend):
    # pymdptoolbox's ValueIteration docstring, second example.
    P = np.array([[[0.5, 0.5], [0.8, 0.2]], [[0, 1], [0.1, 0.9]]])
    R = np.array([[5, 10], [-1, 2]])
    sol = solve(mdp.value_iteration, P, R, 0.9, backend=backend)
    np.testing.assert_allclose(backend.output(sol.V), [40.048625392716815, 33.65371175967546], atol=1e-10)
    np.testing.assert_array_equal(backend.output(sol.policy), [1, 0])
    assert sol.iterations == 26


@pytest.mark.spec("RL-VI-STOP")
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("sparse", [False, True])
def test_span_rule_matches_pymdptoolbox(seed, sparse):
    pm = pymdptoolbox()
    P, R = random_mdp(40, 3, 4, seed)
    gamma = [0.9, 0.95, 0.5, 0.99][seed]
    P_in = to_sparse(P) if sparse else P
    vi = quiet(lambda: pm.ValueIteration(P_in, R, gamma))
    quiet(vi.run)
    # Parity holds where pymdptoolbox stopped by its rule, not by its rewritten max_iter.
    assert vi.iter < vi.max_iter
    sol = mdp.value_iteration(P_in, R, gamma)
    np.testing.assert_allclose(sol.V, vi.V, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(sol.policy, vi.policy)
    assert sol.iterations == vi.iter


@pytest.mark.spec("RL-VI-STOP")
def test_max_iter_is_honoured():
    # pymdptoolbox would replace max_iter=5 by its own bound; ferrops does 5 sweeps.
    P, R = random_mdp(30, 2, 3, 1)
    sol = mdp.value_iteration(P, R, 0.99, epsilon=1e-9, max_iter=5)
    assert sol.iterations == 5 and not sol.converged
    V = np.zeros(30)
    for _ in range(5):
        V = reference_q(P, R, V, 0.99).max(axis=1)
    np.testing.assert_allclose(sol.V, V, atol=1e-12)


@pytest.mark.spec("RL-VI-STOP", "RL-BELLMAN")
@pytest.mark.parametrize("seed", range(3))
def test_supnorm_rule_is_within_epsilon_of_exact_solve(backend, seed):
    P, R = random_mdp(60, 4, 5, seed)
    gamma, eps = 0.95, 1e-3
    v_star, pi_star = reference_optimum(P, R, gamma)
    sol = solve(mdp.value_iteration, P, R, gamma, epsilon=eps, stop="supnorm", backend=backend)
    V = backend.output(sol.V)
    assert np.abs(V - v_star).max() < eps
    assert sol.converged and sol.residual < eps * (1 - gamma) / (2 * gamma)
    # The greedy policy of a converged V is optimal: its exact value is V*.
    pi = backend.output(sol.policy)
    v_pi = np.linalg.solve(np.eye(60) - gamma * P[pi, np.arange(60)], R[np.arange(60), pi])
    np.testing.assert_allclose(v_pi, v_star, atol=1e-8)


@pytest.mark.spec("RL-VI-STOP", "RL-BELLMAN")
@given(
    st.integers(1, 8),
    st.integers(1, 3),
    st.integers(0, 2**32 - 1),
    st.floats(0.1, 0.97),
    st.sampled_from(["jacobi", "gauss-seidel"]),
)
def test_supnorm_rule_property(S, A, seed, gamma, method):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(S), (A, S)) * (rng.random((A, S, S)) < 0.6)
    P[..., 0] = np.maximum(P[..., 0] + 1 - P.sum(axis=2), 0)  # rows sum to 1, some entries 0
    R = rng.normal(size=(S, A))
    v_star, _ = reference_optimum(P, R, gamma)
    sol = mdp.value_iteration(P, R, gamma, epsilon=1e-4, stop="supnorm", method=method, max_iter=100_000)
    assert sol.converged
    assert np.abs(sol.V - v_star).max() < 1e-4
    np.testing.assert_allclose(mdp.q_values(P, R, sol.V, gamma), reference_q(P, R, sol.V, gamma), atol=1e-12)


@pytest.mark.spec("RL-VI-STOP")
def test_span_rule_value_is_not_v_star():
    # The trap the span rule hides: forest stops after 4 sweeps with V far from V*.
    P, R = forest()
    v_star, _ = reference_optimum(P, R, 0.96)
    span = mdp.value_iteration(P, R, 0.96)
    supnorm = mdp.value_iteration(P, R, 0.96, stop="supnorm")
    assert np.abs(span.V - v_star).max() > 10
    assert np.abs(supnorm.V - v_star).max() < 0.01


@pytest.mark.spec("RL-GS")
@pytest.mark.parametrize("seed", range(3))
def test_gauss_seidel_needs_fewer_sweeps(backend, seed):
    P, R = random_mdp(30 if backend.name != "rust" else 300, 3, 4, seed)
    gamma, eps = 0.95, 1e-6
    v_star, _ = reference_optimum(P, R, gamma)
    jacobi = solve(mdp.value_iteration, P, R, gamma, epsilon=eps, stop="supnorm", backend=backend)
    gs = solve(mdp.value_iteration, P, R, gamma, epsilon=eps, stop="supnorm", method="gauss-seidel", backend=backend)
    assert gs.iterations < jacobi.iterations
    assert np.abs(backend.output(gs.V) - v_star).max() < eps


@pytest.mark.spec("RL-GS")
def test_gauss_seidel_uses_updated_values():
    # One sweep by hand: state s sees the new values of states < s.
    P, R = random_mdp(20, 2, 3, 9)
    V = np.zeros(20)
    for s in range(20):
        V[s] = (R[s] + 0.9 * P[:, s, :] @ V).max()
    sol = mdp.value_iteration(P, R, 0.9, max_iter=1, method="gauss-seidel")
    np.testing.assert_allclose(sol.V, V, atol=1e-14)


@pytest.mark.spec("RL-BELLMAN")
def test_initial_value_and_ties_to_lowest_action(backend):
    # Two identical actions: the greedy policy picks action 0 everywhere.
    P, R = random_mdp(10, 1, 3, 2)
    P2, R2 = np.concatenate([P, P]), np.concatenate([R, R], axis=1)
    v0 = np.linspace(0, 1, 10)
    sol = solve(mdp.value_iteration, P2, R2, 0.9, initial_value=backend.input(v0), max_iter=1, backend=backend)
    np.testing.assert_array_equal(backend.output(sol.policy), np.zeros(10))
    np.testing.assert_allclose(backend.output(sol.V), reference_q(P, R, v0, 0.9)[:, 0], atol=1e-14)


@pytest.mark.spec("RL-BELLMAN")
def test_q_values(backend):
    P, R = random_mdp(25, 3, 4, 5)
    V = np.random.default_rng(0).normal(size=25)
    q = backend.output(solve(mdp.q_values, P, R, backend.input(V), 0.8, backend=backend))
    np.testing.assert_allclose(q, reference_q(P, R, V, 0.8), atol=1e-13)


@pytest.mark.spec("MDP", "RL-BELLMAN")
def test_reward_conventions_agree(backend):
    P, _ = random_mdp(15, 3, 4, 6)
    rng = np.random.default_rng(1)
    R3 = rng.normal(size=(3, 15, 15))
    r_sa = (P * R3).sum(axis=2).T
    r_s = rng.normal(size=15)
    for R, r in ((R3, r_sa), (r_sa, r_sa), (r_s, np.repeat(r_s[:, None], 3, axis=1))):
        sol = solve(mdp.value_iteration, P, R, 0.9, epsilon=1e-8, stop="supnorm", backend=backend)
        np.testing.assert_allclose(backend.output(sol.V), reference_optimum(P, r, 0.9)[0], atol=1e-8)


@pytest.mark.spec("MDP", "RL-BELLMAN")
def test_sparse_and_dense_inputs_agree():
    P, R = random_mdp(50, 3, 5, 7)
    dense = mdp.value_iteration(P, R, 0.9, stop="supnorm", epsilon=1e-9)
    sparse = mdp.value_iteration(to_sparse(P), R, 0.9, stop="supnorm", epsilon=1e-9)
    listed = mdp.value_iteration(list(P), R, 0.9, stop="supnorm", epsilon=1e-9)
    np.testing.assert_array_equal(dense.V, sparse.V)
    np.testing.assert_array_equal(dense.V, listed.V)
    # Per-transition rewards as a list of sparse matrices (pymdptoolbox's form).
    R3 = np.random.default_rng(2).normal(size=(3, 50, 50)) * (P > 0)
    a = mdp.value_iteration(P, R3, 0.9, stop="supnorm", epsilon=1e-9)
    b = mdp.value_iteration(to_sparse(P), to_sparse(R3), 0.9, stop="supnorm", epsilon=1e-9)
    np.testing.assert_allclose(a.V, b.V, atol=1e-12)


@pytest.mark.spec("RL-BELLMAN")
def test_same_result_for_any_thread_count():
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(3)
    S, A, k = 6000, 3, 5
    P = [
        sp.csr_matrix(
            (rng.dirichlet(np.ones(k), S).ravel(), rng.integers(0, S, S * k), np.arange(0, S * k + 1, k)), shape=(S, S)
        )
        for _ in range(A)
    ]
    R = rng.normal(size=(S, A))
    before = ferrops.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            ferrops.set_num_threads(threads)
            results.append(mdp.value_iteration(P, R, 0.95, stop="supnorm", epsilon=1e-6))
            results.append(mdp.mc_basic(P, R, 0.9, episodes=2, episode_length=10, iterations=2, seed=4))
    finally:
        ferrops.set_num_threads(before)
    np.testing.assert_array_equal(results[0].V, results[2].V)
    np.testing.assert_array_equal(results[0].policy, results[2].policy)
    np.testing.assert_array_equal(results[1].q, results[3].q)


@pytest.mark.spec("RL-BELLMAN")
def test_empty_mdp(backend):
    P, R = np.zeros((2, 0, 0)), np.zeros((0, 2))
    sol = solve(mdp.value_iteration, P, R, 0.9, backend=backend)
    V, pi = backend.output(sol.V), backend.output(sol.policy)
    assert V.shape == (0,) and V.dtype == np.float64 and pi.shape == (0,) and pi.dtype == np.int64


# ---------------------------------------------------------------------------
# policy iteration and evaluation


@pytest.mark.spec("RL-PI")
@pytest.mark.parametrize("evaluation", ["exact", "iterative"])
def test_policy_iteration_finds_v_star(backend, evaluation):
    P, R = random_mdp(50, 3, 5, 11)
    v_star, pi_star = reference_optimum(P, R, 0.9)
    sol = solve(mdp.policy_iteration, P, R, 0.9, evaluation=evaluation, backend=backend)
    assert sol.converged
    np.testing.assert_allclose(backend.output(sol.V), v_star, atol=1e-8)
    np.testing.assert_array_equal(backend.output(sol.policy), pi_star)


@pytest.mark.spec("RL-PI")
def test_policy_iteration_sparse_matches_pymdptoolbox():
    pm = pymdptoolbox()
    P, R = random_mdp(40, 3, 4, 12)
    ref = quiet(lambda: pm.PolicyIteration(P, R, 0.9))
    quiet(ref.run)
    sol = mdp.policy_iteration(to_sparse(P), R, 0.9)
    np.testing.assert_allclose(sol.V, ref.V, atol=1e-10)
    np.testing.assert_array_equal(sol.policy, ref.policy)
    assert sol.iterations == ref.iter


@pytest.mark.spec("RL-PI")
@pytest.mark.parametrize("evaluation", ["exact", "iterative"])
@pytest.mark.parametrize("sparse", [False, True])
def test_policy_evaluation_solves_the_linear_system(evaluation, sparse):
    P, R = random_mdp(40, 3, 4, 13)
    pi = np.random.default_rng(0).integers(0, 3, 40)
    expected = np.linalg.solve(np.eye(40) - 0.9 * P[pi, np.arange(40)], R[np.arange(40), pi])
    V = mdp.policy_evaluation(to_sparse(P) if sparse else P, R, pi, 0.9, evaluation=evaluation)
    np.testing.assert_allclose(V, expected, atol=1e-9)


@pytest.mark.spec("RL-PI")
def test_policy_evaluation_backends(backend):
    P, R = forest()
    V = solve(mdp.policy_evaluation, P, R, backend.input(np.array([0, 0, 1])), 0.9, backend=backend)
    expected = np.linalg.solve(np.eye(3) - 0.9 * P[[0, 0, 1], np.arange(3)], R[np.arange(3), [0, 0, 1]])
    np.testing.assert_allclose(backend.output(V), expected, atol=1e-12)


# ---------------------------------------------------------------------------
# grid world


@pytest.mark.spec("RL-GRID", "RL-BELLMAN")
def test_grid_world_optimal_values(backend):
    P, R = mdp.grid_world(5, 5, (3, 2), GRID_FORBIDDEN)
    sol = solve(mdp.value_iteration, P, R, 0.9, epsilon=1e-8, stop="supnorm", backend=backend)
    V = backend.output(sol.V).reshape(5, 5)
    np.testing.assert_allclose(V, GRID_OPTIMAL, atol=0.05 + 1e-9)
    # Cells worth an exact closed form: staying on the target earns 1 forever.
    assert V[3, 2] == pytest.approx(10.0, abs=1e-7)
    for cell in [(2, 2), (3, 1), (3, 3), (4, 2)]:  # one move into the target
        assert V[cell] == pytest.approx(1 + 0.9 * 10, abs=1e-7)
    assert V[4, 1] == pytest.approx(0.9 * 10, abs=1e-7)
    # The optimal policy stays on the target.
    assert backend.output(sol.policy)[3 * 5 + 2] == 4


@pytest.mark.spec("RL-GRID")
def test_grid_world_dynamics():
    P, R = mdp.grid_world(
        2, 3, target=(1, 2), forbidden=[(0, 1)], r_boundary=-5, r_forbidden=-3, r_target=7, r_other=0.5
    )
    up, right, down, left, stay = range(5)
    # Off the grid: stay put, r_boundary (even on the target).
    assert P[up, 0, 0] == 1 and R[0, up] == -5
    assert P[right, 5, 5] == 1 and R[5, right] == -5
    # Entering a forbidden cell is allowed; staying on one costs r_forbidden.
    assert P[right, 0, 1] == 1 and R[0, right] == -3 and R[1, stay] == -3
    # Entering or staying on the target; everything else r_other.
    assert P[down, 2, 5] == 1 and R[2, down] == 7 and R[5, stay] == 7
    assert P[left, 4, 3] == 1 and R[4, left] == 0.5 and R[3, stay] == 0.5
    assert P.shape == (5, 6, 6) and R.shape == (6, 5)
    np.testing.assert_array_equal(P.sum(axis=2), 1)
    Ps, Rs = mdp.grid_world(2, 3, target=(1, 2), forbidden=[(0, 1)], sparse=True)
    np.testing.assert_array_equal(np.stack([m.toarray() for m in Ps]), mdp.grid_world(2, 3, (1, 2), [(0, 1)])[0])


def test_from_gymnasium_absorbs_terminal_transitions():
    # A 3-state chain: action 0 moves right; reaching state 2 ends the episode with reward 1.
    env_P = {
        0: {0: [(1.0, 1, 0.0, False)], 1: [(1.0, 0, 0.0, False)]},
        1: {0: [(0.8, 2, 1.0, True), (0.2, 0, 0.0, False)], 1: [(1.0, 0, 0.0, False)]},
        2: {0: [(1.0, 2, 0.0, True)], 1: [(1.0, 2, 0.0, True)]},
    }
    P, R = mdp.from_gymnasium(env_P)
    assert P.shape == (2, 4, 4) and R.shape == (4, 2)
    assert P[0, 1, 3] == pytest.approx(0.8) and R[1, 0] == pytest.approx(0.8)
    np.testing.assert_array_equal(P[:, 3, 3], 1)
    V = mdp.value_iteration(P, R, 0.9, epsilon=1e-10, stop="supnorm").V
    # V1 = 0.8 + 0.2 * 0.9 * V0, V0 = 0.9 * V1.
    v1 = 0.8 / (1 - 0.2 * 0.81)
    np.testing.assert_allclose(V[:2], [0.9 * v1, v1], atol=1e-9)
    Ps, Rs = mdp.from_gymnasium(env_P, sparse=True)
    np.testing.assert_allclose(np.stack([m.toarray() for m in Ps]), P)


def test_from_gymnasium_frozen_lake():
    gym = pytest.importorskip("gymnasium")
    env = gym.make("FrozenLake-v1")
    P, R = mdp.from_gymnasium(env.unwrapped.P)
    sol = mdp.policy_iteration(P, R, 0.99)
    assert 0.5 < sol.V[0] < 1


# ---------------------------------------------------------------------------
# stochastic approximation


@pytest.mark.spec("RL-SA")
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200))
def test_incremental_mean_is_the_sample_mean(xs):
    x = np.array(xs)
    w = mdp.incremental_mean(x)
    assert w.shape == x.shape and w.dtype == np.float64
    np.testing.assert_allclose(w[-1], x.mean(), rtol=1e-9, atol=1e-9 * np.abs(x).max())
    np.testing.assert_allclose(w, np.cumsum(x) / np.arange(1, len(x) + 1), rtol=1e-9, atol=1e-6)


@pytest.mark.spec("RL-SA")
def test_incremental_mean_recurrence_and_tensors():
    x = np.random.default_rng(0).normal(size=(50, 3))
    w = mdp.incremental_mean(x)
    ref, cur = [], np.zeros(3)
    for k in range(1, 51):
        cur = cur - (1 / k) * (cur - x[k - 1])
        ref.append(cur)
    np.testing.assert_array_equal(w, np.array(ref))
    torch = pytest.importorskip("torch")
    t = mdp.incremental_mean(torch.from_numpy(x))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_array_equal(t.numpy(), w)
    assert mdp.incremental_mean(np.zeros((0, 2))).shape == (0, 2)


@pytest.mark.spec("RL-SA")
def test_robbins_monro_finds_the_root():
    # g(w) = tanh(w - 1) + noise has its root at w = 1.
    rng = np.random.default_rng(0)
    history = mdp.robbins_monro(lambda w: np.tanh(w - 1) + rng.normal(scale=0.1), 3.0, 2000)
    assert history.shape == (2001,)
    assert abs(history[-1] - 1) < 0.05
    w = mdp.robbins_monro(lambda w: w - np.array([1.0, -2.0]), np.zeros(2), 200, step_size=lambda k: 0.5 / k)
    np.testing.assert_allclose(w[-1], [1, -2], atol=0.1)


# ---------------------------------------------------------------------------
# bad input


def bad_rows():
    P, R = forest()
    P = P.copy()
    P[1, 2, 0] = 0.9
    return P, R


@pytest.mark.spec("MDP")
def test_rows_not_summing_to_one_name_action_and_state(backend):
    P, R = bad_rows()
    with pytest.raises(ValueError, match=r"value_iteration\(\).*'P'.*P\[1\]\[2, :\] sums to 0\.9.*action 1, state 2"):
        solve(mdp.value_iteration, P, R, 0.9, backend=backend)


@pytest.mark.spec("MDP")
def test_sparse_rows_not_summing_to_one():
    P, R = bad_rows()
    with pytest.raises(ValueError, match=r"policy_iteration\(\).*P\[1\]\[2, :\] sums to 0\.9"):
        mdp.policy_iteration(to_sparse(P), R, 0.9)


@pytest.mark.spec("MDP")
def test_negative_probabilities(backend):
    P, R = forest()
    P = P.copy()
    P[0, 1, 0], P[0, 1, 2] = -0.1, 1.1
    with pytest.raises(ValueError, match=r"P\[0\]\[1, 0\] = -0\.1"):
        solve(mdp.value_iteration, P, R, 0.9, backend=backend)


@pytest.mark.spec("MDP")
@pytest.mark.parametrize("discount", [0.0, -0.5, 1.5, float("nan")])
def test_discount_outside_range(discount):
    P, R = forest()
    with pytest.raises(ValueError, match=r"value_iteration\(\): argument 'discount'"):
        mdp.value_iteration(P, R, discount)
    with pytest.raises(ValueError, match=r"policy_iteration\(\): argument 'discount'"):
        mdp.policy_iteration(P, R, discount)


@pytest.mark.spec("MDP")
def test_discount_one_only_with_the_span_rule():
    P, R = forest()
    sol = mdp.value_iteration(P, R, 1.0, max_iter=50)
    assert sol.iterations <= 50
    with pytest.raises(ValueError, match=r"discount.*\(0, 1\)"):
        mdp.value_iteration(P, R, 1.0, stop="supnorm")
    with pytest.raises(ValueError, match=r"discount.*\(0, 1\)"):
        mdp.policy_evaluation(P, R, [0, 0, 0], 1.0)


@pytest.mark.spec("MDP")
def test_shape_mismatches():
    P, R = forest()
    with pytest.raises(ValueError, match=r"'P': expected shape \(A, S, S\), got \[2, 3, 4\]"):
        mdp.value_iteration(np.zeros((2, 3, 4)), R, 0.9)
    with pytest.raises(ValueError, match=r"'P': expected P\[1\] of shape \(3, 3\), got \[4, 4\]"):
        mdp.value_iteration([P[0], np.eye(4)], R, 0.9)
    with pytest.raises(ValueError, match=r"'R': expected \(S,\) = \(3,\), \(S, A\) = \(3, 2\).*got \[2, 3\]"):
        mdp.value_iteration(P, R.T, 0.9)
    with pytest.raises(ValueError, match=r"'initial_value': expected shape \(3,\)"):
        mdp.value_iteration(P, R, 0.9, initial_value=np.zeros(4))
    with pytest.raises(ValueError, match=r"'policy': expected actions in 0..1, got 2 for state 1"):
        mdp.policy_evaluation(P, R, [0, 2, 0], 0.9)
    with pytest.raises(TypeError, match=r"'P': expected a list of A sparse"):
        mdp.value_iteration(to_sparse(P)[0], R, 0.9)


@pytest.mark.spec("MDP")
def test_nan_rewards_name_state_and_action(backend):
    P, R = forest()
    R = R.copy()
    R[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"'R': expected finite rewards.*state 1, action 0"):
        solve(mdp.value_iteration, P, R, 0.9, backend=backend)


@pytest.mark.spec("MDP")
def test_nan_transition_rewards_name_action_and_state():
    P, _ = forest()
    R3 = np.zeros((2, 3, 3))
    R3[1, 2, 0] = np.inf
    with pytest.raises(ValueError, match=r"R\[1\]\[2, 0\] = inf \(action 1, state 2\)"):
        mdp.q_values(P, R3, np.zeros(3), 0.9)


def test_bad_arguments():
    P, R = forest()
    with pytest.raises(ValueError, match=r"'stop': expected one of"):
        mdp.value_iteration(P, R, 0.9, stop="norm")
    with pytest.raises(ValueError, match=r"'method': expected one of"):
        mdp.value_iteration(P, R, 0.9, method="sor")
    with pytest.raises(ValueError, match=r"'epsilon': expected a positive"):
        mdp.value_iteration(P, R, 0.9, epsilon=0)
    with pytest.raises(ValueError, match=r"'max_iter': expected a positive"):
        mdp.value_iteration(P, R, 0.9, max_iter=0)
    with pytest.raises(ValueError, match=r"'max_iter': expected a positive count that fits in 64 bits, got 2361"):
        mdp.value_iteration(P, R, 0.9, max_iter=2**71)
    with pytest.raises(TypeError, match=r"'discount': expected a real number"):
        mdp.value_iteration(P, R, "0.9")
    with pytest.raises(ValueError, match=r"mc_epsilon_greedy\(\): argument 'epsilon'"):
        mdp.mc_epsilon_greedy(P, R, 0.9, epsilon=1.5)
    with pytest.raises(ValueError, match=r"mc_basic\(\): argument 'episodes'"):
        mdp.mc_basic(P, R, 0.9, episodes=0)
    with pytest.raises(ValueError, match=r"grid_world\(\): argument 'target'"):
        mdp.grid_world(3, 3, (3, 0))
    with pytest.raises(ValueError, match=r"grid_world\(\): argument 'forbidden'"):
        mdp.grid_world(3, 3, (1, 1), [(1, 1)])
    with pytest.raises(ValueError, match=r"robbins_monro\(\): argument 'step_size'"):
        mdp.robbins_monro(lambda w: w, 1.0, 5, step_size=lambda k: -1.0)
    with pytest.raises(ValueError, match=r"incremental_mean\(\): argument 'x': expected finite"):
        mdp.incremental_mean([1.0, np.nan])
