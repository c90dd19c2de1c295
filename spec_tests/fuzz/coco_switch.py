"""Drivers of the pycocotools switch (``ferrops.coco.install_as_pycocotools``):
no arguments, so the calls are well-formed ones; each runner turns the switch
off again so the worker's later calls see the real pycocotools."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from .driver import Driver


def run_install() -> Any:
    import importlib

    from ferrops import coco

    coco.install_as_pycocotools()
    try:
        return importlib.import_module("pycocotools.coco").COCO is coco.COCO
    finally:
        coco.uninstall_as_pycocotools()


def run_switch() -> Any:
    from ferrops import coco

    with coco.PycocotoolsSwitch() as switch:
        on = switch.installed
    return [on, switch.installed]


def installed_then_off(kwargs: dict[str, Any], result: Any) -> None:
    assert result is True or result == [True, False], result


def _driver(runner: str, names: tuple[str, ...]) -> Driver:
    return Driver(f"spec_tests.fuzz.coco_switch:{runner}", st.just({}), {}, names, oracle=installed_then_off)


SWITCH = {
    "ferrops.coco.install_as_pycocotools": _driver("run_install", ("install_as_pycocotools",)),
    "ferrops.coco.PycocotoolsSwitch": _driver("run_switch", ("PycocotoolsSwitch",)),
}
# One runner installs and uninstalls.
SWITCH["ferrops.coco.uninstall_as_pycocotools"] = SWITCH["ferrops.coco.install_as_pycocotools"]
