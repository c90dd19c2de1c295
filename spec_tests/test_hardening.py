"""Hardening (issue 19): kernels run in forked children, sizes no machine can
hold are a MemoryError naming the function (never an abort, a hang or a wrong
shape), and the thread count is bounded.

Every case runs in a fresh interpreter with a timeout: a regression that hangs
or aborts the interpreter fails its test instead of stopping or killing pytest.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from typing import Any

import pytest

TIMEOUT_S = 120

PHYSICAL_MEMORY = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def run_python(*code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the pieces of `code` (each dedented) in a new interpreter with the same
    `ferrops`, and `FERROPS_NUM_THREADS` only as `env` gives it; fails the test if
    it runs past the timeout."""
    inherited = {k: v for k, v in os.environ.items() if k != "FERROPS_NUM_THREADS"}
    full_env = {**inherited, **(env or {})}
    try:
        return subprocess.run(
            [sys.executable, "-c", "\n".join(textwrap.dedent(piece) for piece in code)],
            check=False,  # the tests read the exit status themselves
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env=full_env,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"hung for {TIMEOUT_S} s; output so far: {e.stdout!r} {e.stderr!r}")


def assert_clean_exit(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"exit status {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"


# Waits for a forked child with a deadline, killing it if it hangs. Used inside
# the subprocesses below.
WAIT_FOR_CHILD = """
import os, time

def wait_for_child(pid, deadline_s=30):
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return "hung"
"""


@pytest.mark.spec("BOX-AREA", "BOX-IOU")
def test_a_forked_child_runs_kernels_with_the_thread_count_set_before_the_fork() -> None:
    result = run_python(
        WAIT_FOR_CHILD,
        """
        import numpy as np, ferrops

        rng = np.random.default_rng(0)
        b = rng.random((500, 4), dtype=np.float32)
        b[:, 2:] += b[:, :2]
        ferrops.set_num_threads(2)
        area, iou = ferrops.box_area(b), ferrops.box_iou(b, b)
        pid = os.fork()
        if pid == 0:
            ok = (
                ferrops.get_num_threads() == 2
                and np.array_equal(ferrops.box_area(b), area)
                and np.array_equal(ferrops.box_iou(b, b), iou)
            )
            os._exit(0 if ok else 1)
        print("child", wait_for_child(pid))
        assert np.array_equal(ferrops.box_iou(b, b), iou)
        """,
    )
    assert_clean_exit(result)
    assert result.stdout.split() == ["child", "0"]


@pytest.mark.spec("BOX-IOU")
def test_forks_while_another_thread_runs_kernels_leave_working_children() -> None:
    # A fork can catch the pool's lock held, or its threads mid-task, in another
    # Python thread's kernel call: the child must not inherit either.
    result = run_python(
        WAIT_FOR_CHILD,
        """
        import threading
        import numpy as np, ferrops

        b = np.random.default_rng(1).random((300, 4), dtype=np.float32)
        b[:, 2:] += b[:, :2]
        expected = ferrops.box_iou(b, b)
        stop = threading.Event()

        def busy():
            while not stop.is_set():
                ferrops.box_iou(b, b)

        worker = threading.Thread(target=busy)
        worker.start()
        statuses = []
        for _ in range(20):
            pid = os.fork()
            if pid == 0:
                os._exit(0 if np.array_equal(ferrops.box_iou(b, b), expected) else 1)
            statuses.append(wait_for_child(pid))
        stop.set()
        worker.join()
        print(*statuses)
        """,
    )
    assert_clean_exit(result)
    assert result.stdout.split() == ["0"] * 20


@pytest.mark.spec("BOX-IOU")
def test_a_torch_dataloader_with_forked_workers_runs_kernels() -> None:
    pytest.importorskip("torch")
    result = run_python(
        """
        import numpy as np, torch, ferrops
        from torch.utils.data import DataLoader, Dataset

        def boxes(seed):
            b = np.random.default_rng(seed).random((64, 4), dtype=np.float32)
            b[:, 2:] += b[:, :2]
            return b

        class IoUs(Dataset):
            def __len__(self):
                return 8

            def __getitem__(self, i):
                return ferrops.box_iou(boxes(i), boxes(i + 100))

        expected = [ferrops.box_iou(boxes(i), boxes(i + 100)) for i in range(8)]  # the parent's pool exists
        loader = DataLoader(IoUs(), batch_size=None, num_workers=2, multiprocessing_context="fork", timeout=60)
        got = list(loader)
        assert len(got) == 8 and all(np.array_equal(g.numpy(), e) for g, e in zip(got, expected))
        print("ok")
        """
    )
    assert_clean_exit(result)
    assert result.stdout.split() == ["ok"]


# (call, the function the error names, the bytes the output needs). Each was an
# abort, a PanicException, a "capacity overflow" RuntimeError or, for levels of
# 2**32, a silently empty result.
HUGE_CALLS = [
    (
        "f.roi_pool(np.zeros((1, 1, 4, 4), np.float32), np.array([[0, 0, 0, 2, 2]], np.float32), 2**31)",
        "roi_pool",
        4 * 2**62,
    ),
    (
        "f.roi_align(np.zeros((1, 1, 4, 4), np.float32), np.array([[0, 0, 0, 2, 2]], np.float32), 2**31, sampling_ratio=1)",
        "roi_align",
        4 * 2**62,
    ),
    ("f.adaptive_avg_pool2d(np.zeros((1, 2, 6, 6), np.float32), (2**17, 2**17))", "adaptive_avg_pool2d", 4 * 2 * 2**34),
    ("f.adaptive_avg_pool2d(np.zeros((1, 2, 6, 6), np.float32), (2**32, 2**32))", "adaptive_avg_pool2d", 4 * 2 * 2**64),
    ("f.adaptive_max_pool2d(np.zeros((1, 2, 6, 6), np.float32), (2**32, 2**32))", "adaptive_max_pool2d", 4 * 2 * 2**64),
    ("f.spatial_pyramid_pool(np.zeros((1, 2, 6, 6), np.float32), (2**17,))", "spatial_pyramid_pool", 4 * 2 * 2**34),
    ("f.spatial_pyramid_pool(np.zeros((1, 2, 6, 6), np.float32), (2**31,))", "spatial_pyramid_pool", 4 * 2 * 2**62),
    ("f.spatial_pyramid_pool(np.zeros((1, 2, 6, 6), np.float32), (2**32,))", "spatial_pyramid_pool", 4 * 2 * 2**64),
    (
        "f.spatial_pyramid_pool(np.zeros((1, 2, 6, 6), np.float32), (4, 2**32, 1))",
        "spatial_pyramid_pool",
        4 * 2 * (16 + 2**64 + 1),
    ),
    ("f.max_pool2d(np.zeros((1, 1, 6, 6), np.float32), 3)", None, 0),
]


def check_huge_call(call: str, function: str | None, needed_bytes: int) -> None:
    if needed_bytes and needed_bytes <= PHYSICAL_MEMORY:
        pytest.skip(f"this machine could hold the {needed_bytes}-byte result")
    result = run_python(
        f"""
        import numpy as np, ferrops as f
        try:
            out = {call}
            print("shape", out.shape)
        except MemoryError as e:
            print("MemoryError", e)
        """
    )
    assert_clean_exit(result)
    if function is None:  # a control: an ordinary call still works
        assert result.stdout.startswith("shape"), result.stdout
        return
    assert result.stdout.startswith(f"MemoryError {function}(): the output of shape ["), result.stdout
    reported = int(re.search(r"needs (\d+) bytes", result.stdout).group(1))
    assert reported == needed_bytes


@pytest.mark.spec("POOL-ROI", "POOL-ADAPTIVE", "POOL-SPP", "POOL-MAX")
@pytest.mark.parametrize(("call", "function", "needed_bytes"), HUGE_CALLS)
def test_pooling_outputs_no_machine_can_hold_are_memory_errors(
    call: str, function: str | None, needed_bytes: int
) -> None:
    check_huge_call(call, function, needed_bytes)


@pytest.mark.spec("BOX-IOU")
def test_a_box_iou_matrix_no_machine_can_hold_is_a_memory_error() -> None:
    boxes = "np.tile(np.array([[0, 0, 1, 1]], np.float32), (2**18, 1))"
    check_huge_call(f"f.box_iou({boxes}, {boxes})", "box_iou", 4 * 2**36)


THREADS_MAXIMUM = """
import re, time, ferrops

def maximum():
    try:
        ferrops.set_num_threads(10**9)
    except ValueError as e:
        return int(re.search(r"at most (\\d+) threads", str(e)).group(1))
"""


@pytest.mark.spec("BOX-IOU")
def test_thread_counts_above_the_maximum_are_refused_at_once_and_results_do_not_depend_on_it() -> None:
    result = run_python(
        THREADS_MAXIMUM,
        """
        import numpy as np

        b = np.random.default_rng(2).random((400, 4), dtype=np.float32)
        b[:, 2:] += b[:, :2]
        ferrops.set_num_threads(3)
        for n in (100000, 10**9, 2**63 - 1):
            start = time.monotonic()
            try:
                ferrops.set_num_threads(n)
                print("accepted", n)
            except ValueError as e:
                assert time.monotonic() - start < 5, "refused, but slowly"
                print(e)
        assert ferrops.get_num_threads() == 3  # a refused count leaves the pool as it was
        top = maximum()
        ferrops.set_num_threads(top)
        at_max = ferrops.box_iou(b, b)
        ferrops.set_num_threads(1)
        assert np.array_equal(ferrops.box_iou(b, b), at_max)
        print("maximum", top)
        """,
    )
    assert_clean_exit(result)
    lines = result.stdout.splitlines()
    top = int(lines[-1].split()[1])
    assert top >= 1024 and top >= len(os.sched_getaffinity(0))
    for n, line in zip((100000, 10**9, 2**63 - 1), lines[:3]):
        assert line == (
            f"set_num_threads(): argument 'n': expected at most {top} threads "
            f"(the larger of 1024 and the core count), got {n}"
        )


@pytest.mark.spec("BOX-IOU")
@pytest.mark.parametrize(
    ("value", "threads", "warning"),
    [
        ("3", "3", None),
        ("100000", "maximum", "FERROPS_NUM_THREADS=100000 is more than the maximum of"),
        ("0", "cores", 'ignoring FERROPS_NUM_THREADS="0"'),
        ("many", "cores", 'ignoring FERROPS_NUM_THREADS="many"'),
    ],
)
def test_the_environment_thread_count_is_clamped_or_ignored_with_a_warning(
    value: str, threads: str, warning: str | None
) -> None:
    default = run_python("import ferrops; print(ferrops.get_num_threads())")
    assert_clean_exit(default)
    result = run_python(
        THREADS_MAXIMUM,
        """
        import os
        import numpy as np

        b = np.array([[0, 0, 2, 2], [1, 1, 3, 3]], np.float32)
        assert ferrops.box_iou(b, b)[0, 1] == np.float32(1 / 7)
        print(ferrops.get_num_threads(), maximum())
        """,
        env={"FERROPS_NUM_THREADS": value},
    )
    assert_clean_exit(result)
    got, top = map(int, result.stdout.split())
    assert got == {"3": 3, "maximum": top, "cores": int(default.stdout)}[threads]
    if warning is None:
        assert "FERROPS_NUM_THREADS" not in result.stderr
    else:
        assert warning in result.stderr


def _family_calls() -> dict[str, Any]:
    """One call per family, on inputs big enough to be split across threads."""
    import numpy as np

    import ferrops
    from ferrops import mdp

    rng = np.random.default_rng(3)
    boxes = rng.uniform(0, 100, (700, 4)).astype(np.float32)
    boxes[:, 2:] += boxes[:, :2]
    scores = rng.random(700).astype(np.float32)
    features = rng.standard_normal((2, 8, 48, 48)).astype(np.float32)
    rois = np.concatenate([rng.integers(0, 2, (64, 1)), boxes[:64] / 4], axis=1).astype(np.float32)
    q, k = (rng.standard_normal((2, 4, 300, 32)).astype(np.float32) for _ in range(2))
    labels = rng.integers(0, 21, (2, 300, 300))
    p = rng.random((4, 60, 60))
    p /= p.sum(axis=2, keepdims=True)
    r = rng.standard_normal((60, 4))
    image_ids = np.arange(700) % 7
    return {
        "boxes": lambda: (
            ferrops.generalized_box_iou(boxes, boxes),
            ferrops.complete_box_iou_loss(boxes, boxes[::-1], reduction="sum"),
            ferrops.nms(boxes, scores, 0.5),
            ferrops.soft_nms(boxes, scores, method="gaussian"),
            ferrops.matrix_nms(boxes, scores),
        ),
        "pooling": lambda: (
            ferrops.roi_align(features, rois, 7, sampling_ratio=2),
            ferrops.roi_pool(features, rois, 5),
            ferrops.adaptive_avg_pool2d(features, 7),
            ferrops.spatial_pyramid_pool(features, mode="avg"),
            ferrops.sppf(features),
        ),
        "attention": lambda: (
            ferrops.scaled_dot_product_attention(q, k, k, is_causal=True),
            ferrops.flash_attn_func(
                np.swapaxes(q, 1, 2), np.swapaxes(k, 1, 2), np.swapaxes(k, 1, 2), softcap=5.0, return_lse=True
            ),
        ),
        "segmentation": lambda: (
            ferrops.confusion_matrix(labels, labels[:, ::-1], 21, ignore_index=0),
            ferrops.segmentation_metrics(ferrops.confusion_matrix(labels, labels.transpose(0, 2, 1), 21))["miou"],
        ),
        "detection": lambda: ferrops.voc_eval(image_ids, boxes, scores, image_ids[::-1].copy(), boxes[::-1].copy()),
        "mdp": lambda: (
            mdp.value_iteration(p, r, 0.95, epsilon=1e-8).V,
            mdp.policy_iteration(p, r, 0.95).V,
            mdp.mc_epsilon_greedy(p, r, 0.9, episodes=200, episode_length=30).q,
        ),
    }


def _flatten(result: Any) -> list[Any]:
    import numpy as np

    if isinstance(result, (tuple, list)):
        return [x for item in result for x in _flatten(item)]
    return [np.asarray(result)]


@pytest.mark.spec("RUN-THREADS")
@pytest.mark.parametrize("family", ["boxes", "pooling", "attention", "segmentation", "detection", "mdp"])
def test_every_family_gives_bitwise_equal_results_on_1_2_and_3_threads(family: str) -> None:
    import numpy as np

    import ferrops

    call = _family_calls()[family]
    before = ferrops.get_num_threads()
    try:
        results = {}
        for n in (1, 2, 3):
            ferrops.set_num_threads(n)
            results[n] = _flatten(call())
    finally:
        ferrops.set_num_threads(before)
    for n in (2, 3):
        assert len(results[n]) == len(results[1])
        for i, (got, expected) in enumerate(zip(results[n], results[1])):
            assert got.dtype == expected.dtype and np.array_equal(got, expected, equal_nan=True), (
                f"{family}: output {i} differs between 1 and {n} threads"
            )
