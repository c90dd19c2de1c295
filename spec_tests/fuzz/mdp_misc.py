"""Drivers of the MDP solvers and of the package-level helpers (threads, SIMD,
info, receptive field, the nn modules)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from .driver import Driver, array_of, assert_close, object_of, seeds, values_of
from .values import array_mutations, choice_mutations, float_mutations, int_mutations, opaque_mutations


@st.composite
def mdp_model(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    a, s = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    p = rng.random((a, s, s)) + 0.01
    return {
        "P": p / p.sum(axis=2, keepdims=True),
        "R": rng.standard_normal((s, a)),
        "discount": draw(st.floats(0.05, 0.95)),
    }


def bellman(P: Any, R: Any, V: Any, discount: float) -> np.ndarray:
    return np.asarray(R, np.float64) + discount * np.einsum("ast,t->sa", np.asarray(P, np.float64), V)


def q_values_oracle(kwargs: dict[str, Any], result: Any) -> None:
    expected = bellman(kwargs["P"], kwargs["R"], np.asarray(kwargs["V"], np.float64), kwargs["discount"])
    assert_close(array_of(result, kwargs), expected, rtol=1e-9, atol=1e-9)


def evaluation_oracle(kwargs: dict[str, Any], result: Any) -> None:
    P, R, pi, g = (np.asarray(kwargs[k], np.float64) for k in ("P", "R", "policy", "discount"))
    s = np.arange(len(pi))
    policy = pi.astype(int)
    expected = np.linalg.solve(np.eye(len(pi)) - g * P[policy, s], R[s, policy])
    assert_close(array_of(result, kwargs), expected, rtol=1e-6, atol=1e-6)


def solution_sane(kwargs: dict[str, Any], result: Any) -> None:
    fields = object_of(result, "MDPSolution").fields
    s = np.shape(kwargs["R"])[0]
    assert np.shape(values_of(fields["V"])) == (s,) and np.shape(values_of(fields["policy"])) == (s,), fields


def mc_sane(kwargs: dict[str, Any], result: Any) -> None:
    fields = object_of(result, "MCResult").fields
    a, s = np.shape(kwargs["P"])[:2]
    assert np.shape(values_of(fields["q"])) == (s, a), fields


model_mutations = {"P": array_mutations(), "R": array_mutations(), "discount": float_mutations()}


def with_(extra: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(lambda m, e: {**m, **e}, mdp_model(), st.fixed_dictionaries(extra))


@st.composite
def with_policy(draw: Any, key: str) -> dict[str, Any]:
    model = draw(mdp_model())
    a, s = model["P"].shape[:2]
    rng = draw(seeds())
    extra = rng.integers(0, a, s) if key == "policy" else rng.standard_normal(s)
    return {**model, key: extra}


@st.composite
def gym_model(draw: Any) -> dict[str, Any]:
    rng = draw(seeds())
    s, a = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    env = {
        state: {
            action: [(1.0, int(rng.integers(0, s)), float(rng.standard_normal()), bool(rng.random() < 0.2))]
            for action in range(a)
        }
        for state in range(s)
    }
    return {"env_P": env}


def robbins_monro_target(w: Any) -> Any:
    """The root-finding problem of the fuzz calls: g(w) = w - 1 (module level, so it pickles)."""
    return np.asarray(w) - 1.0


def run_set_num_threads(n: Any) -> Any:
    import ferrops

    before = ferrops.get_num_threads()
    try:
        ferrops.set_num_threads(n)
        return ferrops.get_num_threads()
    finally:
        ferrops.set_num_threads(before)


def run_set_simd_level(level: Any) -> Any:
    import ferrops

    before = ferrops.simd_level()
    try:
        return ferrops.set_simd_level(level)
    finally:
        ferrops.set_simd_level(before)


def run_module(name: str, options: dict[str, Any], input: Any) -> Any:
    import ferrops.nn

    return getattr(ferrops.nn, name)(**options)(input)


feature_maps = seeds().map(lambda rng: rng.standard_normal((1, 2, 6, 6)).astype(np.float32))
MDP = {
    "ferrops.mdp.value_iteration": Driver(
        "ferrops.mdp:value_iteration",
        with_({"stop": st.sampled_from(["span", "supnorm"]), "method": st.sampled_from(["jacobi", "gauss-seidel"])}),
        {
            **model_mutations,
            "epsilon": float_mutations(),
            "max_iter": int_mutations(work=True),
            "stop": choice_mutations(),
            "method": choice_mutations(),
            "initial_value": array_mutations(optional=True),
        },
        ("value_iteration",),
        sane=solution_sane,
    ),
    "ferrops.mdp.policy_iteration": Driver(
        "ferrops.mdp:policy_iteration",
        with_({"evaluation": st.sampled_from(["exact", "iterative"])}),
        {
            **model_mutations,
            "max_iter": int_mutations(work=True),
            "evaluation": choice_mutations(),
            "initial_policy": array_mutations(floats=False, optional=True),
            "epsilon": float_mutations(),
        },
        ("policy_iteration",),
        sane=solution_sane,
    ),
    "ferrops.mdp.policy_evaluation": Driver(
        "ferrops.mdp:policy_evaluation",
        with_policy("policy"),
        {
            **model_mutations,
            "policy": array_mutations(floats=False),
            "evaluation": choice_mutations(),
            "epsilon": float_mutations(),
            "max_iter": int_mutations(work=True),
        },
        ("policy_evaluation",),
        oracle=evaluation_oracle,
    ),
    "ferrops.mdp.q_values": Driver(
        "ferrops.mdp:q_values",
        with_policy("V"),
        {**model_mutations, "V": array_mutations()},
        ("q_values",),
        oracle=q_values_oracle,
    ),
    "ferrops.mdp.grid_world": Driver(
        "ferrops.mdp:grid_world",
        st.integers(1, 4).flatmap(
            lambda n: st.fixed_dictionaries(
                {
                    "rows": st.just(n),
                    "cols": st.just(n),
                    "target": st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)),
                }
            )
        ),
        {
            "rows": int_mutations(),
            "cols": int_mutations(),
            "target": [*opaque_mutations(), *int_mutations()],
            "forbidden": opaque_mutations(),
            "r_boundary": float_mutations(),
            "r_target": float_mutations(),
        },
        ("grid_world",),
    ),
    "ferrops.mdp.from_gymnasium": Driver(
        "ferrops.mdp:from_gymnasium",
        gym_model(),
        {"env_P": opaque_mutations()},
        ("from_gymnasium",),
    ),
    **{
        f"ferrops.mdp.{name}": Driver(
            f"ferrops.mdp:{name}",
            with_({"episodes": st.integers(1, 5), "episode_length": st.integers(1, 10), "seed": st.integers(0, 5)}),
            {
                **model_mutations,
                "episodes": int_mutations(work=True),
                "episode_length": int_mutations(work=True),
                "seed": int_mutations(),
                **({"epsilon": float_mutations()} if name == "mc_epsilon_greedy" else {}),
            },
            (name,),
            sane=mc_sane,
        )
        for name in ("mc_basic", "mc_exploring_starts", "mc_epsilon_greedy")
    },
    "ferrops.mdp.incremental_mean": Driver(
        "ferrops.mdp:incremental_mean",
        seeds().map(lambda rng: {"x": rng.standard_normal(int(rng.integers(0, 6)))}),
        {"x": array_mutations()},
        ("incremental_mean",),
        oracle=lambda kw, r: assert_close(
            array_of(r, kw), np.cumsum(kw["x"]) / np.arange(1, len(kw["x"]) + 1), 1e-9, 1e-9
        ),
    ),
    "ferrops.mdp.robbins_monro": Driver(
        "ferrops.mdp:robbins_monro",
        st.fixed_dictionaries(
            {"g": st.just(robbins_monro_target), "w0": st.floats(-5, 5), "steps": st.integers(1, 20)}
        ),
        {"g": opaque_mutations(), "w0": [*float_mutations(), *array_mutations()], "steps": int_mutations(work=True)},
        ("robbins_monro",),
    ),
}

MISC = {
    "ferrops.get_num_threads": Driver("ferrops:get_num_threads", st.just({}), {}, ("get_num_threads",)),
    "ferrops.simd_level": Driver("ferrops:simd_level", st.just({}), {}, ("simd_level",)),
    "ferrops.info": Driver("ferrops:info", st.just({}), {}, ("info",)),
    "ferrops.set_num_threads": Driver(
        "spec_tests.fuzz.mdp_misc:run_set_num_threads",
        st.fixed_dictionaries({"n": st.integers(1, 4)}),
        {"n": int_mutations()},
        ("set_num_threads",),
    ),
    "ferrops.set_simd_level": Driver(
        "spec_tests.fuzz.mdp_misc:run_set_simd_level",
        st.fixed_dictionaries({"level": st.sampled_from(["scalar", "avx2", "avx512"])}),
        {"level": choice_mutations()},
        ("set_simd_level",),
    ),
    "ferrops.receptive_field": Driver(
        "ferrops:receptive_field",
        st.fixed_dictionaries({"layers": st.lists(st.tuples(st.integers(1, 5), st.integers(1, 3)), max_size=4)}),
        {"layers": [*opaque_mutations(), *int_mutations()]},
        ("receptive_field",),
    ),
    "ferrops.nn.SPP": Driver(
        "spec_tests.fuzz.mdp_misc:run_module",
        st.fixed_dictionaries({"name": st.just("SPP"), "options": st.just({"levels": (2, 1)}), "input": feature_maps}),
        {"input": array_mutations()},
        ("SPP", "spatial_pyramid_pool"),
    ),
    "ferrops.nn.SPPF": Driver(
        "spec_tests.fuzz.mdp_misc:run_module",
        st.fixed_dictionaries({"name": st.just("SPPF"), "options": st.just({"kernel_size": 3}), "input": feature_maps}),
        {"input": array_mutations()},
        ("SPPF", "sppf"),
    ),
}
