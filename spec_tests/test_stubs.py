"""``python/ferrops/_core.pyi`` describes exactly what the native module exports.

The stub is read with ``ast`` (not imported), so a name the extension adds, drops or
renames, or a parameter it renames, fails here instead of leaving type checkers and
readers with a stale picture. Names starting with one underscore are the stub's own
type aliases (``_Transitions``, ``_BoxFormat``, ...) and are not exports; a dunder the
stub declares (``__version__``) must exist at run time.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from pathlib import Path

import pytest

import ferrops
from ferrops import _core

STUB_PATH = Path(ferrops.__file__).with_name("_core.pyi")
STUB = ast.parse(STUB_PATH.read_text(), filename=str(STUB_PATH))


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _is_private(name: str) -> bool:
    return name.startswith("_") and not _is_dunder(name)


def _declared(body: list[ast.stmt]) -> dict[str, ast.stmt]:
    """The names a stub body defines (functions, classes, annotated or assigned names)."""
    names: dict[str, ast.stmt] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, ast.Assign):
            names.update({t.id: node for t in node.targets if isinstance(t, ast.Name)})
    return {name: node for name, node in names.items() if not _is_private(name)}


def _public(names: list[str]) -> set[str]:
    return {name for name in names if not name.startswith("_")}


def _parameter_names(function: ast.FunctionDef, *, method: bool) -> list[str]:
    args = function.args
    names = [a.arg for a in [*args.posonlyargs, *args.args]]
    if args.vararg is not None:
        names.append(args.vararg.arg)
    names += [a.arg for a in args.kwonlyargs]
    if args.kwarg is not None:
        names.append(args.kwarg.arg)
    return names[1:] if method else names


def _runtime_parameter_names(obj: Callable[..., object], *, method: bool) -> list[str] | None:
    """The parameter names PyO3 exposes through ``__text_signature__``, or None."""
    if getattr(obj, "__text_signature__", None) is None:
        return None
    names = list(inspect.signature(obj).parameters)
    return names[1:] if method else names


MODULE_NAMES = _declared(STUB.body)
FUNCTIONS = {name: node for name, node in MODULE_NAMES.items() if isinstance(node, ast.FunctionDef)}
CLASSES = {name: node for name, node in MODULE_NAMES.items() if isinstance(node, ast.ClassDef)}


def test_stub_names_exactly_the_module_exports() -> None:
    stubbed = _public(list(MODULE_NAMES))
    exported = _public(dir(_core))
    assert not stubbed - exported, f"in _core.pyi but not exported by ferrops._core: {sorted(stubbed - exported)}"
    assert not exported - stubbed, f"exported by ferrops._core but missing from _core.pyi: {sorted(exported - stubbed)}"


def test_stubbed_dunders_exist() -> None:
    missing = [name for name in MODULE_NAMES if _is_dunder(name) and not hasattr(_core, name)]
    assert not missing, f"_core.pyi declares {missing}, which ferrops._core does not have"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_parameters_match(name: str) -> None:
    runtime = _runtime_parameter_names(getattr(_core, name), method=False)
    if runtime is None:
        pytest.skip(f"ferrops._core.{name} has no __text_signature__")
    assert _parameter_names(FUNCTIONS[name], method=False) == runtime


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_class_members_match(name: str) -> None:
    cls = getattr(_core, name)
    members = _declared(CLASSES[name].body)
    stubbed = _public(list(members))
    exported = _public(dir(cls))
    assert stubbed == exported, (
        f"{name}: only in the stub {sorted(stubbed - exported)}, only at run time {sorted(exported - stubbed)}"
    )
    missing = [member for member in members if _is_dunder(member) and not hasattr(cls, member)]
    assert not missing, f"{name}: _core.pyi declares {missing}, which the class does not have"
    for member, node in members.items():
        if not isinstance(node, ast.FunctionDef):
            continue
        runtime = _runtime_parameter_names(getattr(cls, member), method=True)
        if runtime is not None:
            assert _parameter_names(node, method=True) == runtime, f"{name}.{member}"
