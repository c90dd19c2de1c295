"""Drivers of the MDP solvers beyond value and policy iteration (modified policy
iteration, relative value iteration, backward induction, the linear program) and
of the TD methods (RL-BELLMAN, RL-TD). Discounted solvers are checked against the
Bellman optimality equation; TD results for shape and kind."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from .driver import Driver, assert_close, object_of, seeds, values_of
from .mdp_misc import bellman, mdp_model, model_mutations, with_
from .values import array_mutations, choice_mutations, float_mutations, int_mutations, opaque_mutations


def optimal_values(P: Any, R: Any, discount: float) -> np.ndarray:
    """V* by value iteration to machine precision (small models, discount <= 0.95)."""
    V = np.zeros(np.shape(R)[0])
    for _ in range(2000):
        V, previous = bellman(P, R, V, discount).max(axis=1), V
        if np.max(np.abs(V - previous), initial=0.0) < 1e-13:
            break
    return V


def solution_sane(kwargs: dict[str, Any], result: Any) -> None:
    fields = object_of(result, "MDPSolution").fields
    s = np.shape(kwargs["R"])[0]
    assert np.shape(values_of(fields["V"])) == (s,) and np.shape(values_of(fields["policy"])) == (s,), fields


def exact_oracle(kwargs: dict[str, Any], result: Any) -> None:
    """solve and linear_programming are exact: their V is V*."""
    fields = object_of(result, "MDPSolution").fields
    expected = optimal_values(kwargs["P"], kwargs["R"], kwargs["discount"])
    assert_close(np.asarray(values_of(fields["V"])), expected, rtol=1e-6, atol=1e-6)


def average_sane(kwargs: dict[str, Any], result: Any) -> None:
    fields = object_of(result, "AverageRewardSolution").fields
    s = np.shape(kwargs["R"])[0]
    assert np.shape(values_of(fields["V"])) == (s,) and np.shape(values_of(fields["policy"])) == (s,), fields
    assert fields["average_reward"] <= fields["average_reward_upper"] + 1e-9, fields


def finite_horizon_oracle(kwargs: dict[str, Any], result: Any) -> None:
    """Backward induction, in float64."""
    fields = object_of(result, "FiniteHorizonSolution").fields
    P, R, N = kwargs["P"], kwargs["R"], kwargs["N"]
    V = np.zeros((np.shape(R)[0], N + 1))
    if kwargs.get("h") is not None:
        V[:, N] = kwargs["h"]
    for n in range(N - 1, -1, -1):
        V[:, n] = bellman(P, R, V[:, n + 1], kwargs["discount"]).max(axis=1)
    assert_close(np.asarray(values_of(fields["V"])), V, rtol=1e-9, atol=1e-9)
    assert np.shape(values_of(fields["policy"])) == (np.shape(R)[0], N), fields


def td_sane(kwargs: dict[str, Any], result: Any) -> None:
    fields = object_of(result, "TDResult").fields
    a, s = np.shape(kwargs["P"])[:2]
    values = np.asarray(values_of(fields["values"]))
    assert values.shape in ((s, a), (s,)) and np.shape(values_of(fields["updates"])) == values.shape, fields
    assert values.dtype == np.float64, values.dtype


def q_learning_sane(kwargs: dict[str, Any], result: Any) -> None:
    fields = object_of(result, "QLearningResult").fields
    a, s = np.shape(kwargs["P"])[:2]
    q = np.asarray(values_of(fields["Q"]))
    assert q.shape == (s, a), fields
    assert_close(np.asarray(values_of(fields["V"])), q.max(axis=1), 0, 0)


@st.composite
def horizon_args(draw: Any) -> dict[str, Any]:
    model = draw(mdp_model())
    rng = draw(seeds())
    s = model["R"].shape[0]
    terminal = rng.random(s) if draw(st.booleans()) else None
    return {**model, "N": draw(st.integers(1, 5)), "h": terminal}


@st.composite
def average_args(draw: Any) -> dict[str, Any]:
    model = draw(mdp_model())
    del model["discount"]
    return {**model, "max_iter": draw(st.integers(1, 200))}


def td_args(extra: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return with_(
        {"episodes": st.integers(1, 5), "episode_length": st.integers(1, 10), "seed": st.integers(0, 5), **extra}
    )


@st.composite
def td0_args(draw: Any) -> dict[str, Any]:
    kwargs = draw(td_args({}))
    a, s = kwargs["P"].shape[:2]
    return {**kwargs, "policy": draw(seeds()).integers(0, a, s)}


@st.composite
def q_learning_args(draw: Any) -> dict[str, Any]:
    kwargs = draw(td_args({"epsilon": st.floats(0, 1)}))
    a, s = kwargs["P"].shape[:2]
    behaviour = draw(st.sampled_from([None, "uniform"]))
    return {**kwargs, "behaviour": None if behaviour is None else np.full((s, a), 1.0 / a)}


td_mutations = {
    **model_mutations,
    "episodes": int_mutations(work=True),
    "episode_length": int_mutations(work=True),
    "alpha": float_mutations(),
    "power": float_mutations(optional=True),
    "terminal": [*opaque_mutations(), *array_mutations(floats=False)],
    "seed": int_mutations(),
}
control_mutations = {**td_mutations, "epsilon": float_mutations()}

TD_NAMES = ("sarsa", "expected_sarsa", "n_step_sarsa")

MDP_EXTRA = {
    "ferrops.mdp.modified_policy_iteration": Driver(
        "ferrops.mdp:modified_policy_iteration",
        with_({"method": st.sampled_from(["jacobi", "gauss-seidel"]), "max_iter": st.integers(1, 20)}),
        {
            **model_mutations,
            "epsilon": float_mutations(),
            "max_iter": int_mutations(work=True),
            "initial_value": array_mutations(optional=True),
            "initial_policy": array_mutations(floats=False, optional=True),
            "method": choice_mutations(),
            "omega": float_mutations(),
            "max_improvements": int_mutations(work=True),
        },
        ("modified_policy_iteration",),
        sane=solution_sane,
    ),
    "ferrops.mdp.solve": Driver(
        "ferrops.mdp:solve",
        mdp_model(),
        {
            **model_mutations,
            "epsilon": float_mutations(),
            "initial_value": array_mutations(optional=True),
            "initial_policy": array_mutations(floats=False, optional=True),
        },
        ("solve",),
        oracle=exact_oracle,
        sane=solution_sane,
    ),
    "ferrops.mdp.linear_programming": Driver(
        "ferrops.mdp:linear_programming",
        mdp_model(),
        model_mutations,
        ("linear_programming",),
        oracle=exact_oracle,
        sane=solution_sane,
    ),
    "ferrops.mdp.relative_value_iteration": Driver(
        "ferrops.mdp:relative_value_iteration",
        average_args(),
        {
            "P": model_mutations["P"],
            "R": model_mutations["R"],
            "epsilon": float_mutations(),
            "max_iter": int_mutations(work=True),
            "initial_value": array_mutations(optional=True),
        },
        ("relative_value_iteration",),
        sane=average_sane,
    ),
    "ferrops.mdp.finite_horizon": Driver(
        "ferrops.mdp:finite_horizon",
        horizon_args(),
        {**model_mutations, "N": int_mutations(work=True), "h": array_mutations(optional=True)},
        ("finite_horizon",),
        oracle=finite_horizon_oracle,
    ),
    "ferrops.mdp.td0": Driver(
        "ferrops.mdp:td0",
        td0_args(),
        {**td_mutations, "policy": array_mutations(floats=False)},
        ("td0",),
        sane=td_sane,
    ),
    **{
        f"ferrops.mdp.{name}": Driver(
            f"ferrops.mdp:{name}",
            td_args({"n": st.integers(1, 4)} if name == "n_step_sarsa" else {}),
            {**control_mutations, **({"n": int_mutations(work=True)} if name == "n_step_sarsa" else {})},
            (name,),
            sane=td_sane,
        )
        for name in TD_NAMES
    },
    "ferrops.mdp.q_learning": Driver(
        "ferrops.mdp:q_learning",
        q_learning_args(),
        {**control_mutations, "behaviour": array_mutations(optional=True)},
        ("q_learning",),
        sane=td_sane,
    ),
    "ferrops.mdp.pymdptoolbox_q_learning": Driver(
        "ferrops.mdp:pymdptoolbox_q_learning",
        with_({"n_iter": st.integers(1, 300), "seed": st.integers(0, 5)}),
        {**model_mutations, "n_iter": int_mutations(work=True), "seed": int_mutations()},
        ("pymdptoolbox_q_learning",),
        sane=q_learning_sane,
    ),
}

MDP_RESULT_TYPES = {
    "ferrops.mdp.AverageRewardSolution": "ferrops.mdp.relative_value_iteration",
    "ferrops.mdp.FiniteHorizonSolution": "ferrops.mdp.finite_horizon",
    "ferrops.mdp.TDResult": "ferrops.mdp.td0",
    "ferrops.mdp.QLearningResult": "ferrops.mdp.pymdptoolbox_q_learning",
}
