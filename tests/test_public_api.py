"""The public API is what docs/architecture.md says it is: the top-level names, and the public
modules' ``__all__``, every name of which the module really defines.

Read from the source (ast) rather than by importing, so the check needs neither torch nor Ray;
``errors.py``, whose ``__all__`` is computed, is imported (standard library only).
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import model_zoo

ROOT = Path(model_zoo.__file__).parent
ARCHITECTURE = ROOT.parent / "docs" / "architecture.md"


def _section() -> str:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    start = text.index("## Public API and internals")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def _documented_modules() -> list[str]:
    return re.findall(r"^\| `(model_zoo(?:\.\w+)+)` \|", _section(), flags=re.MULTILINE)


def _documented_top_level() -> list[str]:
    para = _section().split("Top level (", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"`(\w+)`", para.split("):", 1)[1])


def _module_path(module: str) -> Path:
    rel = Path(*module.split(".")[1:])
    return (
        ROOT / rel.with_suffix(".py")
        if (ROOT / rel.with_suffix(".py")).exists()
        else ROOT / rel / "__init__.py"
    )


def _bound_at_top(tree: ast.Module) -> set[str]:
    """Names a module binds at import time: defs, classes, assignments, imports."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _literal_all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return None  # computed (errors.py)
            assert isinstance(value, (list, tuple)), "__all__ must be a list of names"
            return list(value)
    raise AssertionError("no __all__")


def public_names(module: str) -> list[str]:
    tree = ast.parse(_module_path(module).read_text(encoding="utf-8"))
    names = _literal_all(tree)
    if names is None:
        return list(importlib.import_module(module).__all__)
    return names


def test_the_documented_lists_are_found() -> None:
    modules = _documented_modules()
    assert "model_zoo.errors" in modules and "model_zoo.runner.api" in modules
    assert len(modules) == len(set(modules)) >= 10
    assert "load" in _documented_top_level()


def test_top_level_all_is_what_the_docs_list() -> None:
    assert model_zoo.__all__ == ["__version__", *model_zoo._EXPORTS]
    assert sorted(_documented_top_level()) == sorted(model_zoo.__all__)


@pytest.mark.parametrize("module", _documented_modules())
def test_each_public_module_defines_every_name_of_its_all(module: str) -> None:
    path = _module_path(module)
    assert path.exists(), f"{module} is listed in docs/architecture.md but does not exist"
    names = public_names(module)
    assert names and len(names) == len(set(names)), f"{module}.__all__ is empty or repeats names"
    assert not [n for n in names if n.startswith("_")], f"{module}.__all__ names private helpers"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if _literal_all(tree) is not None:
        missing = sorted(set(names) - _bound_at_top(tree))
        assert not missing, f"{module}.__all__ names what it does not define: {missing}"


def test_top_level_names_come_from_public_modules() -> None:
    public = set(_documented_modules())
    for name, module in model_zoo._EXPORTS.items():
        assert module in public, f"model_zoo.{name} comes from {module}, not a public module"
        assert name in public_names(module), f"{name} is not in {module}.__all__"


def test_the_scan_catches_a_name_that_is_not_defined(tmp_path: Path) -> None:
    tree = ast.parse('from x import a\ndef b(): ...\nC = 1\n__all__ = ["a", "b", "C", "gone"]\n')
    names = _literal_all(tree)
    assert names is not None
    assert set(names) - _bound_at_top(tree) == {"gone"}
