"""Benchmark cases for the MDP family: value-iteration sweeps against a
vectorised SciPy CSR sweep, and end to end against pymdptoolbox."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from ferrops import mdp
from ferrops._bench import Case, max_abs_difference

#: Sweeps per timed call in the sweep case (the per-call validation is amortised).
SWEEPS = 10


def random_sparse_mdp(states: int, actions: int, successors: int, seed: int) -> tuple[list[Any], np.ndarray] | None:
    """``actions`` SciPy CSR matrices with ``successors`` uniformly drawn next
    states per row (Dirichlet probabilities), and ``R (S, A)``; None without SciPy."""
    try:
        import scipy.sparse as sp
    except ImportError:
        return None
    rng = np.random.default_rng(seed)
    indptr = np.arange(0, states * successors + 1, successors)
    P = [
        sp.csr_matrix(
            (
                rng.dirichlet(np.ones(successors), states).ravel(),
                rng.integers(0, states, states * successors).astype(np.int32),
                indptr,
            ),
            shape=(states, states),
        )
        for _ in range(actions)
    ]
    return P, rng.normal(size=(states, actions))


def read_bandwidth() -> float:
    """Bytes per second NumPy reads from memory on one core (a 128 MB sum, larger
    than common L3 caches): the yardstick for a sweep's memory-bandwidth bound."""
    a = np.ones(16 << 20)
    a.sum()
    best = min(_timed(a.sum) for _ in range(3))
    return a.nbytes / best


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _quiet(fn: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def cases(quick: bool) -> list[Case]:
    out = []
    S, A, K = 100_000, 4, 10
    model = random_sparse_mdp(S, A, K, 0)
    if model is not None:
        P, R = model
        gamma = 0.95

        def scipy_sweeps() -> np.ndarray:
            V = np.zeros(S)
            for _ in range(SWEEPS):
                V = np.max(np.stack([R[:, a] + gamma * (P[a] @ V) for a in range(A)]), axis=0)
            return V

        # A sweep streams each stored transition once (int32 index + float64
        # probability) plus R, reads V at random and writes V_new and the policy.
        sweep_bytes = S * A * K * 12 + R.nbytes + 3 * 8 * S
        bandwidth = read_bandwidth()
        out.append(
            Case(
                "mdp",
                "value_iteration sweeps",
                f"S={S}, A={A}, {K} successors, {SWEEPS} sweeps",
                lambda: mdp.value_iteration(P, R, gamma, epsilon=1e-300, max_iter=SWEEPS),
                "SciPy CSR sweep: max_a R + gamma P_a V",
                scipy_sweeps,
                lambda ours, theirs: max_abs_difference(ours.V, theirs),
                target=3,
                note=lambda s: (
                    f"{s / SWEEPS * 1e3:.2f} ms/sweep; bound {sweep_bytes / bandwidth * 1e3:.2f} ms at "
                    f"{bandwidth / 1e9:.1f} GB/s (1-core read); {sweep_bytes / (s / SWEEPS) / 1e9:.1f} GB/s"
                ),
            )
        )
    small = random_sparse_mdp(5000, 4, 10, 0)
    if small is not None:
        Ps, Rs = small
        try:
            import mdptoolbox.mdp as pm
        except ImportError:
            pm = None

        def pymdptoolbox_vi() -> Any:
            vi = _quiet(lambda: pm.ValueIteration(Ps, Rs, 0.95))
            _quiet(vi.run)
            return vi

        out.append(
            Case(
                "mdp",
                "value_iteration end to end",
                "S=5000 sparse, A=4, 10 successors",
                lambda: mdp.value_iteration(Ps, Rs, 0.95),
                "mdptoolbox.mdp.ValueIteration",
                None if pm is None else pymdptoolbox_vi,
                lambda ours, theirs: max_abs_difference(ours.V, np.asarray(theirs.V)),
                target=2000,
            )
        )
    return out
