"""Finite Markov decision processes (SPEC section 5, RL-*): value iteration,
policy iteration and evaluation, modified policy iteration with a certified stop
and ``solve``, relative value iteration, finite horizon, linear programming,
Q-values, a grid world, Monte Carlo control, TD learning (TD(0), Sarsa, n-step
Sarsa, Expected Sarsa, Q-learning) and stochastic approximation.

Conventions (pymdptoolbox's, so models move over unchanged):

* ``P``: transition probabilities ``P[a, s, s']``, given as a dense ``(A, S, S)``
  array, a list of ``A`` matrices ``(S, S)`` (``scipy.sparse`` or dense), or
  tensors. Every row ``P[a][s, :]`` must be a distribution: non-negative, finite,
  summing to 1 within ``1e-6`` (so float32 models pass).
* ``R``: rewards as ``(S,)`` (per state), ``(S, A)`` (per state and action) or
  ``(A, S, S)`` / a list of ``A`` ``(S, S)`` matrices (per transition; the
  expected reward ``r(s, a) = sum_s' P[a, s, s'] R[a, s, s']`` is what the
  solvers use, Monte Carlo samples the per-transition reward).
* Policies are int64 arrays of actions per state; values float64.

Where this module differs from pymdptoolbox, on purpose:

* ``value_iteration(..., stop="span")`` is pymdptoolbox's ``ValueIteration`` rule
  and gives the same ``V``, policy and iteration count, but ``max_iter`` is the
  caller's: pymdptoolbox silently replaces it by a bound it computes (Puterman,
  Theorem 6.6.6), which can stop it early. The span rule yields an
  ``epsilon``-optimal *policy*; its ``V`` is not within ``epsilon`` of ``V*``.
  ``stop="supnorm"`` guarantees ``|V - V*| < epsilon`` everywhere.
* Sparse inputs stay sparse (CSR arrays read in place, no copy): pymdptoolbox
  builds dense ``S x S`` arrays from sparse input in its input check, in that
  iteration bound and in policy iteration, so large sparse models do not fit.
* Policy iteration's default start is pymdptoolbox's (greedy for ``V = 0``) and
  gives the same policies; ``residual`` counts changed actions.
* ``modified_policy_iteration``, ``relative_value_iteration`` and
  ``finite_horizon`` are pymdptoolbox's ``PolicyIterationModified``,
  ``RelativeValueIteration`` and ``FiniteHorizon`` (same defaults and results);
  ``linear_programming`` is its ``LP`` on SciPy's HiGHS instead of cvxopt.
  ``pymdptoolbox_q_learning`` is its ``QLearning`` on this package's random
  streams (same distribution of results, reproducible per seed).
* Monte Carlo control averages first visits by default (``visit="first"``):
  every-visit averages keep the short returns of visits near an episode's end,
  a truncation bias more episodes do not remove.

The package is split by job: ``_model`` (the model as the kernels read it),
``_arguments`` (scalar checks), ``_solvers``, ``_modified`` (MPI, ``solve``),
``_horizons`` (RVI, finite horizon, LP), ``_environments`` (grid world,
gymnasium), ``_monte_carlo``, ``_temporal_difference`` and
``_stochastic_approximation``; the PyTorch
path is ``ferrops._torch_mdp``.

Backends: NumPy/SciPy inputs and CPU tensors run in Rust (Bellman backups
threaded over states, GIL released). CUDA tensors run a PyTorch implementation on
their device (dense ``(A, S, S)`` tensors); ``backend="torch"`` forces it.
"""

from __future__ import annotations

# GRID_MOVES is public but was never in __all__.
from ._environments import GRID_MOVES as GRID_MOVES
from ._environments import from_gymnasium, grid_world
from ._horizons import (
    AverageRewardSolution,
    FiniteHorizonSolution,
    finite_horizon,
    linear_programming,
    relative_value_iteration,
)
from ._modified import modified_policy_iteration, solve
from ._monte_carlo import MCResult, mc_basic, mc_epsilon_greedy, mc_exploring_starts
from ._solvers import (
    MDPSolution,
    policy_evaluation,
    policy_iteration,
    q_values,
    value_iteration,
)
from ._stochastic_approximation import incremental_mean, robbins_monro
from ._temporal_difference import (
    QLearningResult,
    TDResult,
    expected_sarsa,
    n_step_sarsa,
    pymdptoolbox_q_learning,
    q_learning,
    sarsa,
    td0,
)

__all__ = [  # noqa: RUF022 - the order it always had
    "MDPSolution",
    "MCResult",
    "value_iteration",
    "policy_iteration",
    "policy_evaluation",
    "q_values",
    "grid_world",
    "from_gymnasium",
    "mc_basic",
    "mc_exploring_starts",
    "mc_epsilon_greedy",
    "incremental_mean",
    "robbins_monro",
    "modified_policy_iteration",
    "solve",
    "relative_value_iteration",
    "finite_horizon",
    "linear_programming",
    "AverageRewardSolution",
    "FiniteHorizonSolution",
    "TDResult",
    "QLearningResult",
    "td0",
    "sarsa",
    "n_step_sarsa",
    "expected_sarsa",
    "q_learning",
    "pymdptoolbox_q_learning",
]
