"""RUN-INTERRUPT: long-running kernels answer Ctrl-C.

The model that never converges: a deterministic 3-cycle with one rewarded state
and ``discount=1``, whose values grow forever while the change between sweeps
keeps a span of 1 (Jacobi and Gauss-Seidel alike), so ``max_iter=10**9`` would
run for minutes. Signals go to the process; Python runs its handlers in the main
thread, which here is pytest's (in-process tests) or a child's (the Ctrl-C tests).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

import ferrops
from ferrops import mdp

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="POSIX signals")

#: Seconds a kernel gets to stop after the signal: RUN-INTERRUPT says about one.
ANSWER_WITHIN_S = 3.0
#: What a call that ignored the signal would be killed after, so a regression fails.
HARD_TIMEOUT_S = 30.0


def cycle() -> tuple[np.ndarray, np.ndarray]:
    P = np.roll(np.eye(3), 1, axis=1)[None]
    return P, np.array([1.0, 0.0, 0.0])


class Stop(Exception):
    """What the test's SIGINT handler raises."""


@contextmanager
def sigint_after(seconds: float, handler: Callable[[int, Any], None]) -> Iterator[None]:
    """Installs ``handler`` for SIGINT and sends this process SIGINT after ``seconds``."""
    previous = signal.signal(signal.SIGINT, handler)
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGINT, previous)


def raise_stop(signum: int, frame: Any) -> None:
    raise Stop


LONG_CALLS: dict[str, Callable[[], object]] = {
    "value_iteration jacobi": lambda: mdp.value_iteration(*cycle(), 1.0, max_iter=10**9),
    "value_iteration gauss-seidel": lambda: mdp.value_iteration(*cycle(), 1.0, max_iter=10**9, method="gauss-seidel"),
    "mc_basic": lambda: mdp.mc_basic(*cycle(), 0.9, episodes=10**9),
    "mc_exploring_starts": lambda: mdp.mc_exploring_starts(*cycle(), 0.9, episodes=10**9),
    "mc_epsilon_greedy": lambda: mdp.mc_epsilon_greedy(*cycle(), 0.9, episodes=10**9),
}


@pytest.mark.spec("RUN-INTERRUPT")
@pytest.mark.parametrize("name", list(LONG_CALLS))
def test_a_signal_handlers_exception_stops_a_long_kernel(name):
    started = time.perf_counter()
    with sigint_after(0.3, raise_stop), pytest.raises(Stop):
        LONG_CALLS[name]()
    assert time.perf_counter() - started < 0.3 + ANSWER_WITHIN_S


@pytest.mark.spec("RUN-INTERRUPT")
def test_a_handler_that_does_not_raise_lets_the_kernel_finish():
    seen = []
    P, R = cycle()
    expected = mdp.value_iteration(P, R, 1.0, max_iter=300_000)
    with sigint_after(0.02, lambda signum, frame: seen.append(signum)):
        got = mdp.value_iteration(P, R, 1.0, max_iter=300_000)
        time.sleep(0.05)
    assert seen == [signal.SIGINT]
    assert got.iterations == expected.iterations == 300_000
    np.testing.assert_array_equal(got.V, expected.V)


@pytest.mark.spec("RUN-INTERRUPT")
def test_an_interrupt_does_not_stop_calls_in_other_threads():
    P, R = cycle()
    expected = mdp.value_iteration(P, R, 1.0, max_iter=1_000_000)
    results: list[mdp.MDPSolution] = []
    worker = threading.Thread(target=lambda: results.append(mdp.value_iteration(P, R, 1.0, max_iter=1_000_000)))
    with sigint_after(0.1, raise_stop), pytest.raises(Stop):
        worker.start()
        mdp.value_iteration(P, R, 1.0, max_iter=10**9)
    worker.join(HARD_TIMEOUT_S)
    assert not worker.is_alive()
    (got,) = results
    assert got.iterations == expected.iterations
    np.testing.assert_array_equal(got.V, expected.V)


@pytest.mark.spec("RUN-INTERRUPT")
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_interruptible_path_gives_the_same_results(threads):
    """A large ``max_iter`` (or many episodes) takes the interruptible path; a
    small one runs where it ran before: the results are bitwise the same, for
    any thread count."""
    P, R = mdp.grid_world(6, 7, (2, 3), [(1, 1), (4, 2)])
    before = ferrops.get_num_threads()
    ferrops.set_num_threads(threads)
    try:
        quick = mdp.value_iteration(P, R, 0.9, epsilon=1e-6, max_iter=200)
        long = mdp.value_iteration(P, R, 0.9, epsilon=1e-6, max_iter=10**9)
        assert quick.converged and long.converged and quick.iterations == long.iterations
        np.testing.assert_array_equal(quick.V, long.V)
        np.testing.assert_array_equal(quick.policy, long.policy)
        pi = np.asarray(quick.policy)
        short_eval = mdp.policy_evaluation(P, R, pi, 0.9, "iterative", max_iter=1000)
        long_eval = mdp.policy_evaluation(P, R, pi, 0.9, "iterative", max_iter=10**9)
        np.testing.assert_array_equal(short_eval, long_eval)
        # 2 rounds of 210 pairs x 100 episodes of 100 steps: past the interruptible path's threshold.
        a = mdp.mc_basic(P, R, 0.9, episodes=100, iterations=2, seed=5)
        ferrops.set_num_threads(1)
        b = mdp.mc_basic(P, R, 0.9, episodes=100, iterations=2, seed=5)
        np.testing.assert_array_equal(a.q, b.q)
        np.testing.assert_array_equal(a.visits, b.visits)
    finally:
        ferrops.set_num_threads(before)


CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from ferrops import mdp

    P = np.roll(np.eye(3), 1, axis=1)[None]
    R = np.array([1.0, 0.0, 0.0])
    print("calling", flush=True)
    if sys.argv[1] == "value_iteration":
        mdp.value_iteration(P, R, 1.0, max_iter=10**9)
    else:
        mdp.mc_epsilon_greedy(P, R, 0.9, episodes=10**9)
    print("returned", flush=True)
    """
)


@pytest.mark.spec("RUN-INTERRUPT")
@pytest.mark.parametrize("function", ["value_iteration", "mc_epsilon_greedy"])
def test_ctrl_c_raises_keyboard_interrupt_within_a_second(function):
    """The issue's scenario: a script running a 10^9-iteration kernel gets
    SIGINT (Ctrl-C) and must end with KeyboardInterrupt, not run on."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, function],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "calling\n"
        time.sleep(1.0)
        child.send_signal(signal.SIGINT)
        sent = time.perf_counter()
        out, err = child.communicate(timeout=HARD_TIMEOUT_S)
        answered = time.perf_counter() - sent
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "returned" not in out
    assert child.returncode != 0
    assert err.rstrip().splitlines()[-1] == "KeyboardInterrupt", err
    assert answered < ANSWER_WITHIN_S
