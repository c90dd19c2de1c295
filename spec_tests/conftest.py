"""The conformance suite's harness.

* ``@pytest.mark.spec("NMS-GREEDY", ...)`` names the SPEC clauses a test checks
  (IDs from ``SPEC.md`` beside this file); ``--strict-markers`` rejects typos of
  the marker, and unknown clause IDs fail at collection.
* The ``backend`` fixture runs a test once per implementation: ``rust`` (NumPy in,
  ``backend="rust"``), ``torch`` (CPU tensors, ``backend="torch"``) and ``cuda``
  (CUDA tensors, default dispatch; skipped without a GPU).
* ``pytest spec_tests --spec-report`` prints, clause by clause, which backends pass.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

SPEC_PATH = Path(__file__).with_name("SPEC.md")
CLAUSES = list(dict.fromkeys(re.findall(r"^- ([A-Z][A-Z0-9-]+)[:( ]", SPEC_PATH.read_text(), flags=re.M)))

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--spec-report", action="store_true", help="print which SPEC clauses pass on which backend")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "spec(*clauses): the SPEC.md clause IDs this test checks")
    config._spec_results = defaultdict(lambda: defaultdict(lambda: {"passed": 0, "failed": 0, "skipped": 0}))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for marker in item.iter_markers("spec"):
            unknown = [c for c in marker.args if c not in CLAUSES]
            if unknown:
                raise pytest.UsageError(f"{item.nodeid}: unknown SPEC clause(s) {unknown}")


def _backend_of(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "backend" in callspec.params:
        return callspec.params["backend"]
    return "-"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        results = item.config._spec_results
        for marker in item.iter_markers("spec"):
            for clause in marker.args:
                results[clause][_backend_of(item)][report.outcome] += 1


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    if not config.getoption("--spec-report"):
        return
    results = config._spec_results
    backends = ["rust", "torch", "cuda", "-"]
    tr = terminalreporter
    tr.section("SPEC conformance")
    tr.write_line(f"{'clause':<14}" + "".join(f"{b if b != '-' else 'other':>18}" for b in backends))
    for clause in CLAUSES:
        cells = []
        for b in backends:
            r = results.get(clause, {}).get(b)
            if not r:
                cells.append("")
            elif r["failed"]:
                cells.append(f"FAIL {r['failed']}/{r['passed'] + r['failed']}")
            elif r["passed"]:
                cells.append(f"pass {r['passed']}")
            else:
                cells.append("skipped")
        status = "" if clause in results else "   (no test yet)"
        tr.write_line(f"{clause:<14}" + "".join(f"{c:>18}" for c in cells) + status)


@dataclass(frozen=True)
class Backend:
    """How a test feeds one implementation: inputs of its kind, the keyword that
    selects it, and results back as NumPy."""

    name: str

    @property
    def kwargs(self) -> dict[str, str]:
        return {"cuda": {}, "rust": {"backend": "rust"}, "torch": {"backend": "torch"}}[self.name]

    def input(self, x: Any) -> Any:
        if self.name == "rust":
            return x
        import torch

        a = np.asarray(x)
        if any(stride < 0 for stride in a.strides):  # torch has no negative strides
            a = a.copy()
        t = torch.as_tensor(a)
        return t.cuda() if self.name == "cuda" else t

    def output(self, y: Any) -> Any:
        if isinstance(y, tuple):
            return tuple(self.output(v) for v in y)
        if hasattr(y, "detach"):
            assert y.device.type == ("cuda" if self.name == "cuda" else "cpu"), f"result on {y.device}"
            return y.detach().cpu().numpy()
        assert self.name == "rust", f"backend {self.name} returned {type(y).__name__}, not a tensor"
        assert isinstance(y, np.ndarray), f"expected a NumPy array, got {type(y).__name__}"
        return y


@pytest.fixture(params=["rust", "torch", "cuda"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param != "rust":
        torch = pytest.importorskip("torch")
        if request.param == "cuda" and not torch.cuda.is_available():
            pytest.skip("no CUDA device")
    return Backend(request.param)
