"""``install_as_pycocotools()``: unmodified code that imports pycocotools runs on
ferrops (SPEC DET-COCO-SWITCH).

After the call, ``import pycocotools``, ``pycocotools.coco``,
``pycocotools.cocoeval`` and ``pycocotools.mask`` (and ``from pycocotools.coco
import COCO`` and the like) give ferrops' ``COCO``, ``COCOeval``, ``Params``
and :mod:`ferrops.mask`, so torchmetrics' ``MeanAveragePrecision(backend=
"pycocotools")``, torchvision's detection references or a detectron2-style
evaluator run on ferrops without an edit::

    import ferrops.coco

    ferrops.coco.install_as_pycocotools()  # before the code imports pycocotools
    ...
    ferrops.coco.uninstall_as_pycocotools()  # the real modules again

    with ferrops.coco.install_as_pycocotools():  # or only inside a block
        ...

It works by putting ferrops' modules in ``sys.modules`` under pycocotools'
names, and a finder on ``sys.meta_path`` that refuses pycocotools' other
submodules (``pycocotools._mask``) with an ``ImportError`` naming the switch,
so nothing half-real is imported. A module that imported pycocotools' names
before the call keeps them (``from pycocotools.coco import COCO`` at the top of
a module binds the class then); install first. Uninstalling restores the
modules that were in ``sys.modules`` before (or removes the names when there
were none); pycocotools' other submodules already imported are out of
``sys.modules`` while the switch is on, and back after.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from typing import Any

#: pycocotools' module names this switch provides.
MODULES = ("pycocotools", "pycocotools.coco", "pycocotools.cocoeval", "pycocotools.mask")


def _modules() -> dict[str, types.ModuleType]:
    """pycocotools' modules made of ferrops' objects."""
    from .. import mask
    from . import COCO, COCOeval, Params

    package = types.ModuleType("pycocotools", "ferrops, installed as pycocotools (ferrops.coco.install_as_pycocotools)")
    coco = types.ModuleType("pycocotools.coco", "ferrops.coco.COCO as pycocotools.coco")
    coco.COCO = COCO  # type: ignore[attr-defined]
    coco.maskUtils = mask  # type: ignore[attr-defined]  # pycocotools.coco's own alias
    cocoeval = types.ModuleType("pycocotools.cocoeval", "ferrops.coco.COCOeval as pycocotools.cocoeval")
    cocoeval.COCOeval = COCOeval  # type: ignore[attr-defined]
    cocoeval.Params = Params  # type: ignore[attr-defined]
    cocoeval.maskUtils = mask  # type: ignore[attr-defined]
    package.coco = coco  # type: ignore[attr-defined]
    package.cocoeval = cocoeval  # type: ignore[attr-defined]
    package.mask = mask  # type: ignore[attr-defined]
    package.__path__ = []  # a package: its submodules are looked up (and refused by the finder)
    package.__ferrops__ = True  # type: ignore[attr-defined]
    return {
        "pycocotools": package,
        "pycocotools.coco": coco,
        "pycocotools.cocoeval": cocoeval,
        "pycocotools.mask": mask,
    }


class _RefuseOtherSubmodules(importlib.abc.MetaPathFinder):
    """Refuses ``pycocotools.<anything else>`` while the switch is on."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.startswith("pycocotools.") and fullname not in MODULES:
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: pycocotools is ferrops here (ferrops.coco.install_as_pycocotools()), "
                f"which provides {', '.join(MODULES)}",
                name=fullname,
            )
        return None


class PycocotoolsSwitch:
    """What :func:`install_as_pycocotools` returns: a context manager that
    uninstalls on exit."""

    def __init__(self) -> None:
        self._saved: dict[str, types.ModuleType | None] | None = None
        self._finder = _RefuseOtherSubmodules()

    @property
    def installed(self) -> bool:
        return self._saved is not None

    def install(self) -> None:
        if self._saved is not None:
            return
        # pycocotools' own submodules imported before (pycocotools._mask) leave
        # sys.modules too while the switch is on, so no import finds them there.
        others = [name for name in sys.modules if name.startswith("pycocotools.") and name not in MODULES]
        self._saved = {name: sys.modules.get(name) for name in (*MODULES, *others)}
        for name in others:
            del sys.modules[name]
        sys.modules.update(_modules())
        sys.meta_path.insert(0, self._finder)

    def uninstall(self) -> None:
        if self._saved is None:
            return
        for name, module in self._saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        self._saved = None

    def __enter__(self) -> PycocotoolsSwitch:
        self.install()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.uninstall()


_SWITCH = PycocotoolsSwitch()


def install_as_pycocotools() -> PycocotoolsSwitch:
    """Makes ``import pycocotools`` (``.coco``, ``.cocoeval``, ``.mask``) resolve to
    ferrops until :func:`uninstall_as_pycocotools` (or the end of a ``with``
    block on the returned switch). Calling it again while installed does nothing.
    """
    _SWITCH.install()
    return _SWITCH


def uninstall_as_pycocotools() -> None:
    """Restores the pycocotools modules (or their absence) from before
    :func:`install_as_pycocotools`; nothing when the switch is off."""
    _SWITCH.uninstall()
