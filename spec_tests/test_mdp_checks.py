"""RL-CHECK: every MDP entry point refuses a model that is not one, and its
errors name the public function and the argument the caller passed (the checks
of test_mdp.py cover the solvers' common paths; these, the paths that once
slipped through)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

from ferrops import mdp

from .test_mdp import forest, solve

BAD_P = {
    "not summing to 1": (np.array([[[0.5, 0.2], [0.0, 1.0]]]), r"P\[0\]\[0, :\] sums to 0\.7"),
    "negative": (np.array([[[1.5, -0.5], [0.0, 1.0]]]), r"P\[0\]\[0, 1\] = -0\.5, not a probability"),
    "NaN": (np.array([[[np.nan, 1.0], [0.0, 1.0]]]), r"P\[0\]\[0, 0\] = (?i:nan), not a probability"),
}


@pytest.mark.spec("RL-CHECK")
@pytest.mark.parametrize("case", list(BAD_P))
@pytest.mark.parametrize("evaluation", ["exact", "iterative"])
def test_policy_evaluation_refuses_a_model_that_is_not_one(backend, case, evaluation):
    P, where = BAD_P[case]
    with pytest.raises(ValueError, match=rf"policy_evaluation\(\): argument 'P': .*{where}"):
        solve(mdp.policy_evaluation, P, np.ones(2), backend.input(np.array([0, 0])), 0.9, evaluation, backend=backend)


@pytest.mark.spec("RL-CHECK")
@pytest.mark.parametrize("case", list(BAD_P))
def test_exact_evaluation_of_sparse_and_listed_models_is_checked_too(case):
    P, where = BAD_P[case]
    for given in ([scipy.sparse.csr_array(P[0])], [P[0]]):
        with pytest.raises(ValueError, match=rf"policy_iteration\(\): argument 'P': .*{where}"):
            mdp.policy_iteration(given, np.ones(2), 0.9)


@pytest.mark.spec("RL-CHECK")
def test_a_bad_initial_policy_is_named(backend):
    P, R = forest()
    with pytest.raises(
        ValueError, match=r"policy_iteration\(\): argument 'initial_policy': expected actions in 0\.\.1"
    ):
        solve(mdp.policy_iteration, P, R, 0.9, initial_policy=backend.input(np.array([0, 5, 0])), backend=backend)
    with pytest.raises(ValueError, match=r"policy_iteration\(\): argument 'initial_policy': expected shape \(3,\)"):
        solve(mdp.policy_iteration, P, R, 0.9, initial_policy=backend.input(np.array([0, 1])), backend=backend)


OVERFLOW = r"argument 'R': expected rewards small enough for the values to stay finite in float64"


@pytest.mark.spec("RL-CHECK")
@pytest.mark.parametrize("evaluation", ["exact", "iterative"])
def test_values_that_overflow_blame_the_rewards(backend, evaluation):
    P, _ = forest()
    huge = np.full(3, 1e308)
    with pytest.raises(ValueError, match=rf"policy_iteration\(\): {OVERFLOW}.*got V\[\d+\] = "):
        solve(mdp.policy_iteration, P, huge, 0.9, evaluation=evaluation, backend=backend)
    with pytest.raises(ValueError, match=rf"policy_evaluation\(\): {OVERFLOW}"):
        solve(
            mdp.policy_evaluation, P, huge, backend.input(np.zeros(3, dtype=np.int64)), 0.9, evaluation, backend=backend
        )


@pytest.mark.spec("RL-CHECK")
@pytest.mark.parametrize("method", ["jacobi", "gauss-seidel"])
def test_value_iteration_overflow_blames_the_rewards(backend, method):
    P, _ = forest()
    with pytest.raises(ValueError, match=rf"value_iteration\(\): {OVERFLOW}.*= inf"):
        solve(mdp.value_iteration, P, np.full(3, 1e308), 0.9, stop="supnorm", method=method, backend=backend)


@pytest.mark.spec("RL-CHECK")
def test_robbins_monro_names_a_non_finite_start():
    for w0 in (float("nan"), [1.0, float("inf")]):
        with pytest.raises(ValueError, match=r"robbins_monro\(\): argument 'w0': expected finite values"):
            mdp.robbins_monro(lambda w: w, w0, 3)


@pytest.mark.spec("RL-CHECK")
def test_an_episode_larger_than_memory_is_a_memory_error():
    P, R = forest()
    with pytest.raises(
        MemoryError, match=r"mc_epsilon_greedy\(\): the steps of one episode of shape \[4611686018427387904\]"
    ):
        mdp.mc_epsilon_greedy(P, R, 0.9, episodes=1, episode_length=2**62)


def gym(**changes: object) -> dict[int, dict[int, list[tuple[object, object, object, object]]]]:
    """A two-state, two-action model in gymnasium's ``P[s][a]`` form, with
    ``changes["s,a"]`` replacing the transitions of ``(s, a)``."""
    model: dict[int, dict[int, list[tuple[object, object, object, object]]]] = {
        0: {0: [(0.25, 0, 0.0, False), (0.75, 1, 1.0, False)], 1: [(1.0, 1, 0.5, True)]},
        1: {0: [(1.0, 0, 0.0, False)], 1: [(0.5, 1, 2.0, False), (0.5, 1, 2.0, False)]},
    }
    for key, transitions in changes.items():
        s, a = (int(x) for x in key.split("_")[1:])
        model[s][a] = transitions  # type: ignore[assignment]
    return model


@pytest.mark.spec("RL-CHECK")
def test_from_gymnasium_accepts_a_valid_model():
    P, R = mdp.from_gymnasium(gym())
    assert isinstance(P, np.ndarray)
    np.testing.assert_allclose(P.sum(axis=2), 1.0)
    np.testing.assert_allclose(R, [[0.75, 0.5], [0.0, 2.0], [0.0, 0.0]])


GYM_ERRORS = {
    "sum below 1": ({"t_0_0": [(0.5, 1, 0.0, False)]}, ValueError, r"summing to 1 .*got 0\.5 for state 0, action 0"),
    "negative": (
        {"t_1_0": [(-0.5, 0, 0.0, False), (1.5, 1, 0.0, False)]},
        ValueError,
        r"finite and >= 0, got -0\.5 for state 1, action 0",
    ),
    "NaN probability": ({"t_0_1": [(float("nan"), 1, 0.0, True)]}, ValueError, r"finite and >= 0, got nan"),
    "NaN reward": (
        {"t_1_1": [(1.0, 1, float("nan"), False)]},
        ValueError,
        r"finite rewards, got nan for state 1, action 1",
    ),
    "string probability": ({"t_0_0": [("1", 1, 0.0, False)]}, TypeError, r"real probabilities, got '1'"),
    "fractional next state": ({"t_0_0": [(1.0, 0.5, 0.0, False)]}, TypeError, r"integer next states, got 0\.5"),
    "next state out of range": ({"t_0_0": [(1.0, 2, 0.0, False)]}, ValueError, r"next states in 0\.\.1, got 2"),
    "not a 4-tuple": ({"t_0_0": [(1.0, 1, 0.0)]}, TypeError, r"\(prob, next_state, reward, done\) tuples"),
    "transitions not a list": (
        {"t_0_0": 5},
        TypeError,
        r"a list of transitions per action, got int for state 0, action 0",
    ),
}


@pytest.mark.spec("RL-CHECK")
@pytest.mark.parametrize("case", list(GYM_ERRORS))
def test_from_gymnasium_names_what_is_wrong_and_where(case):
    changes, error, message = GYM_ERRORS[case]
    with pytest.raises(error, match=rf"from_gymnasium\(\): argument 'env_P': expected .*{message}"):
        mdp.from_gymnasium(gym(**changes))


@pytest.mark.spec("RL-CHECK")
def test_from_gymnasium_names_a_missing_action():
    model = gym()
    del model[1][0]
    with pytest.raises(ValueError, match=r"from_gymnasium\(\): argument 'env_P': expected 2 actions for every state"):
        mdp.from_gymnasium(model)
    model = gym()
    model[1] = {1: model[1][1], 2: model[1][1]}
    with pytest.raises(ValueError, match=r"expected actions 0\.\.1 for every state, got keys \{1, 2\} for state 1"):
        mdp.from_gymnasium(model)


@pytest.mark.spec("RL-CHECK")
@pytest.mark.parametrize("env_P", [[1, 2], [[1, 2]], {0: {0: 5}}, 3])
def test_from_gymnasium_names_a_model_of_the_wrong_shape(env_P):
    with pytest.raises(TypeError, match=r"^from_gymnasium\(\): argument 'env_P': expected a (dict|list)"):
        mdp.from_gymnasium(env_P)


@pytest.mark.spec("RL-GRID")
@pytest.mark.parametrize("forbidden", [3, 1 + 2j, "ab", None])
def test_grid_world_names_forbidden_cells_that_are_not_a_sequence_of_pairs(forbidden):
    with pytest.raises(TypeError, match=r"^grid_world\(\): argument 'forbidden': expected"):
        mdp.grid_world(2, 2, (1, 1), forbidden)
