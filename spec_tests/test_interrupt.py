"""RUN-INTERRUPT: long-running kernels answer Ctrl-C.

The model that never converges: a deterministic 3-cycle with one rewarded state
and ``discount=1``, whose values grow forever while the change between sweeps
keeps a span of 1 (Jacobi and Gauss-Seidel alike), so ``max_iter=10**9`` would
run for minutes. Attention over tens of thousands of tokens and NMS over tens of
thousands of boxes (soft and matrix NMS are quadratic; greedy NMS is when every
box is kept) run for seconds. Signals go to the process; Python runs its handlers in the main
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


def attention_inputs(tokens: int, heads: int = 2, dim: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[1, tokens, heads, dim]`` query, key and value (flash-attn's layout)."""
    q, k, v = (
        np.random.default_rng(seed).standard_normal((1, tokens, heads, dim), dtype=np.float32) for seed in range(3)
    )
    return q, k, v


def long_flash_attn() -> object:
    q, k, v = attention_inputs(65536)
    return ferrops.flash_attn_func(q, k, v, causal=True)


def long_sdpa() -> object:
    q, k, v = (x.transpose(0, 2, 1, 3) for x in attention_inputs(32768))
    return ferrops.scaled_dot_product_attention(q, k, v)


def long_varlen() -> object:
    q, k, v = (x[0] for x in attention_inputs(65536))
    cu_seqlens = np.array([0, 30000, 65536], np.int32)
    return ferrops.flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, 35536, 35536)


def random_boxes(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    corner = rng.uniform(0, 1000, (n, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(5, 50, (n, 2))], axis=1).astype(np.float32)
    return boxes, rng.uniform(0, 1, n).astype(np.float32)


def identical_boxes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` copies of one box with falling scores: at ``iou_threshold=1`` none
    suppresses another, so the greedy walk compares every pair."""
    return np.tile(np.array([[0, 0, 10, 10]], np.float32), (n, 1)), np.linspace(1, 0.5, n, dtype=np.float32)


def long_coco_evaluation() -> Any:
    """A COCOeval, ready to evaluate, whose every (image, category) unit is the worst
    case of greedy matching: all boxes identical, so each detection past the ground
    truth count scans every ground truth, for each threshold and area range."""
    from ferrops.coco import COCO, COCOeval

    images, per_image_gt, per_image_dt = 300, 300, 3000
    annotations = [
        {
            "id": i * per_image_gt + j + 1,
            "image_id": i,
            "category_id": 1,
            "bbox": [0, 0, 10, 10],
            "area": 100.0,
            "iscrowd": 0,
        }
        for i in range(images)
        for j in range(per_image_gt)
    ]
    gt = COCO(
        {
            "images": [{"id": i} for i in range(images)],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "box"}],
        }
    )
    rows = np.zeros((images * per_image_dt, 7))
    rows[:, 0] = np.repeat(np.arange(images), per_image_dt)
    rows[:, 3:5] = 10.0
    rows[:, 5] = np.tile(np.linspace(1.0, 0.5, per_image_dt), images)
    rows[:, 6] = 1
    evaluation = COCOeval(gt, gt.loadRes(rows), "bbox")
    evaluation.params.maxDets = [1, 10, per_image_dt]
    return evaluation


LONG_CALLS: dict[str, Callable[[], object]] = {
    "value_iteration jacobi": lambda: mdp.value_iteration(*cycle(), 1.0, max_iter=10**9),
    "value_iteration gauss-seidel": lambda: mdp.value_iteration(*cycle(), 1.0, max_iter=10**9, method="gauss-seidel"),
    "mc_basic": lambda: mdp.mc_basic(*cycle(), 0.9, episodes=10**9),
    "mc_exploring_starts": lambda: mdp.mc_exploring_starts(*cycle(), 0.9, episodes=10**9),
    "mc_epsilon_greedy": lambda: mdp.mc_epsilon_greedy(*cycle(), 0.9, episodes=10**9),
    # Each of these runs 10 to 20 s on a 2-core machine, several times what the
    # signal's delay plus ANSWER_WITHIN_S allow: a call that ignores the signal
    # fails the time check rather than hanging.
    "flash_attn_func": long_flash_attn,
    "scaled_dot_product_attention": long_sdpa,
    "flash_attn_varlen_func": long_varlen,
    "nms": lambda: ferrops.nms(*identical_boxes(200_000), 1.0),
    "batched_nms": lambda: ferrops.batched_nms(*identical_boxes(200_000), np.zeros(200_000, np.int64), 1.0),
    "soft_nms": lambda: ferrops.soft_nms(*random_boxes(60_000)),
    "matrix_nms": lambda: ferrops.matrix_nms(*random_boxes(25_000)),
}


@pytest.mark.spec("RUN-INTERRUPT")
@pytest.mark.parametrize("name", list(LONG_CALLS))
def test_a_signal_handlers_exception_stops_a_long_kernel(name):
    started = time.perf_counter()
    with sigint_after(0.3, raise_stop), pytest.raises(Stop):
        LONG_CALLS[name]()
    assert time.perf_counter() - started < 0.3 + ANSWER_WITHIN_S


@pytest.mark.spec("RUN-INTERRUPT")
def test_a_signal_stops_a_long_coco_evaluation():
    evaluation = long_coco_evaluation()  # built first: the signal must reach the kernel
    started = time.perf_counter()
    with sigint_after(0.3, raise_stop), pytest.raises(Stop):
        evaluation.evaluate()
    assert time.perf_counter() - started < 0.3 + ANSWER_WITHIN_S


@pytest.mark.spec("RUN-INTERRUPT")
def test_a_signal_stops_a_long_attention_backward():
    """Through torch autograd: the forward is short enough to finish, the
    backward (about three times its work) gets the signal."""
    torch = pytest.importorskip("torch")
    q, k, v = (torch.from_numpy(x.transpose(0, 2, 1, 3).copy()).requires_grad_() for x in attention_inputs(24576))
    out = ferrops.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert isinstance(out, torch.Tensor)
    grad = torch.ones_like(out)
    started = time.perf_counter()
    with sigint_after(0.3, raise_stop), pytest.raises(Stop):
        out.backward(grad)
    assert time.perf_counter() - started < 0.3 + ANSWER_WITHIN_S
    assert q.grad is None and k.grad is None and v.grad is None


@pytest.mark.spec("RUN-INTERRUPT")
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_interruptible_attention_and_nms_give_the_same_results(threads):
    """Calls above the work bound (interruptible) equal the same computation cut
    into calls below it, bitwise, for any thread count: attention rows are
    independent across heads, and NMS of a subset of well-separated clusters is
    the union of each cluster's NMS."""
    before = ferrops.get_num_threads()
    ferrops.set_num_threads(threads)
    try:
        q, k, v = attention_inputs(1024, heads=8)
        whole = ferrops.flash_attn_func(q, k, v, causal=True)
        for h in range(8):
            part = ferrops.flash_attn_func(q[:, :, h : h + 1], k[:, :, h : h + 1], v[:, :, h : h + 1], causal=True)
            np.testing.assert_array_equal(whole[:, :, h : h + 1], part)
        boxes, scores = random_boxes(3000)
        far = np.concatenate([boxes + 10_000 * c for c in range(40)])
        far_scores = np.concatenate([scores * (1 - c / 100) for c in range(40)])
        keep = ferrops.nms(far, far_scores, 0.5)
        alone = ferrops.nms(boxes, scores, 0.5)
        kept_of_first = np.sort(keep[keep < 3000])
        np.testing.assert_array_equal(kept_of_first, np.sort(alone))
        keep_soft, scores_soft = ferrops.soft_nms(boxes[:2000], scores[:2000])
        ferrops.set_num_threads(1)
        again_soft, again_scores = ferrops.soft_nms(boxes[:2000], scores[:2000])
        np.testing.assert_array_equal(keep_soft, again_soft)
        np.testing.assert_array_equal(scores_soft, again_scores)
    finally:
        ferrops.set_num_threads(before)


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
    import ferrops
    from ferrops import mdp

    P = np.roll(np.eye(3), 1, axis=1)[None]
    R = np.array([1.0, 0.0, 0.0])
    if sys.argv[1] in ("value_iteration", "mc_epsilon_greedy"):
        print("calling", flush=True)
    if sys.argv[1] == "value_iteration":
        mdp.value_iteration(P, R, 1.0, max_iter=10**9)
    elif sys.argv[1] == "mc_epsilon_greedy":
        mdp.mc_epsilon_greedy(P, R, 0.9, episodes=10**9)
    elif sys.argv[1] == "flash_attn_func":
        q, k, v = (np.random.default_rng(s).standard_normal((1, 65536, 2, 64), dtype=np.float32) for s in range(3))
        print("calling", flush=True)
        ferrops.flash_attn_func(q, k, v, causal=True)
    else:
        corner = np.random.default_rng(7).uniform(0, 1000, (100_000, 2))
        boxes = np.concatenate([corner, corner + 20], axis=1)
        print("calling", flush=True)
        ferrops.soft_nms(boxes, np.linspace(1, 0.5, 100_000))
    print("returned", flush=True)
    """
)


@pytest.mark.spec("RUN-INTERRUPT")
@pytest.mark.parametrize("function", ["value_iteration", "mc_epsilon_greedy", "flash_attn_func", "soft_nms"])
def test_ctrl_c_raises_keyboard_interrupt_within_a_second(function):
    """The issue's scenario: a script running a 10^9-iteration kernel (or a long
    attention or soft NMS) gets SIGINT (Ctrl-C) and must end with
    KeyboardInterrupt, not run on."""
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
