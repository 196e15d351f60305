"""Modules talk through public names only.

A module that needs another's internals asks for a public seam: ``from x import _name`` across
the project's modules, or a call of another object's ``_method()``, is a missing seam. This
walks the source of the three packages (not tests, not benchmarks) with :mod:`ast` and reports
every offence as ``file:line``. (ruff's PLC2701, import-private-name, would cover the imports
only, and is a preview rule in the ruff this project pins, so it is not enabled.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("geo_minzheng", "api", "maps")
#: Underscore methods that are public API by design (``collections.namedtuple``'s).
PUBLIC_UNDERSCORE = frozenset({"_replace", "_asdict", "_make", "_fields"})


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _module_of(path: Path) -> str:
    """Dotted module name of a source file (``pkg/__init__.py`` is ``pkg``)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _private(name: str) -> bool:
    """A private name: a leading underscore, not a dunder."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imported_module(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from ... import`` reads from (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_own(value: ast.expr) -> bool:
    """``self``, ``cls`` or ``super()``: the object's own private methods are fine to call."""
    if isinstance(value, ast.Name):
        return value.id in ("self", "cls")
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id == "super"
    )


def offences(source: str, module: str, *, is_package: bool = False, label: str = "") -> list[str]:
    """Every private import from another project module and every call of another object's
    private method in ``source`` (the text of module ``module``), as ``label:line: what``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            src = _imported_module(node, module, is_package)
            if src.split(".")[0] not in PACKAGES or src == module:
                continue
            for alias in node.names:
                if _private(alias.name):
                    found.append(f"{label}:{node.lineno}: from {src} import {alias.name}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            if _private(name) and name not in PUBLIC_UNDERSCORE and not _is_own(node.func.value):
                found.append(f"{label}:{node.lineno}: calls {ast.unparse(node.func)}()")
    return found


def test_the_walk_sees_every_package() -> None:
    modules = {_module_of(p) for p in _sources()}
    assert {"geo_minzheng.engine", "geo_minzheng.isochrones", "api", "maps"} <= modules
    assert not any(m.startswith(("tests", "benchmarks")) for m in modules)


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_names_across_modules(path: Path) -> None:
    found = offences(
        path.read_text(encoding="utf-8"),
        _module_of(path),
        is_package=path.name == "__init__.py",
        label=str(path.relative_to(ROOT)),
    )
    assert not found, "private names used across modules (add a public seam):\n" + "\n".join(found)


def test_the_checker_finds_what_it_should_and_nothing_else() -> None:
    bad = """
from geo_minzheng.coverage import _check_demand, analyze
from .engine import _subset
from ..analysis import _facility_sets
def f(engine, other):
    from api.routes.analysis import _x
    engine._out_edges()
    other.thing._draw(1)
    return validation._to_str(2)
"""
    found = offences(bad, "api.routes.pages", label="m.py")
    assert found == [
        "m.py:2: from geo_minzheng.coverage import _check_demand",
        "m.py:3: from api.routes.engine import _subset",
        "m.py:4: from api.analysis import _facility_sets",
        "m.py:6: from api.routes.analysis import _x",
        "m.py:7: calls engine._out_edges()",
        "m.py:8: calls other.thing._draw()",
        "m.py:9: calls validation._to_str()",
    ]
    good = """
from geo_minzheng._errors import NetworkError
from geo_minzheng.engine import Engine, ranges
from numpy import _globals
from geo_minzheng.engine import __version__
class A(B):
    def f(self):
        self._own()
        super()._hook()
        type(self).__name__
        return point._replace(x=1), self._memo.get("k"), obj._attr
    @classmethod
    def g(cls):
        return cls._make()
def h(x):
    return _private_here(x)
"""
    assert offences(good, "geo_minzheng.isochrones", label="m.py") == []
    # a module's own private names, imported back from itself (rare), are its own business
    assert offences("from geo_minzheng.engine import _x\n", "geo_minzheng.engine") == []
