"""pytest plugin for ``scripts/test.sh``: the suite must test the installed wheel.

Loaded with ``-p installed_check``; stops the run before any test unless
``ferrops`` (and its native module) were imported from under
``FERROPS_CI_EXPECT_PREFIX``, the venv the wheel was installed into, so a test
run that silently picks up the checkout's ``python/`` fails instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _installed_paths() -> dict[str, Path]:
    import ferrops
    from ferrops import _core

    return {"ferrops": Path(ferrops.__file__).resolve(), "ferrops._core": Path(str(_core.__file__)).resolve()}


def pytest_report_header(config: pytest.Config) -> str:
    return "ferrops under test: " + ", ".join(f"{name} {path}" for name, path in _installed_paths().items())


def pytest_sessionstart(session: pytest.Session) -> None:
    prefix = os.environ.get("FERROPS_CI_EXPECT_PREFIX")
    if not prefix:
        raise pytest.UsageError("installed_check: FERROPS_CI_EXPECT_PREFIX (the venv under test) is not set")
    venv = Path(prefix).resolve()
    for name, path in _installed_paths().items():
        if not path.is_relative_to(venv):
            raise pytest.UsageError(f"installed_check: {name} was imported from {path}, not from the venv {venv}")
