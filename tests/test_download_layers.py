"""download/ imports one way only: each layer knows the ones below it, never those above."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DOWNLOAD = Path(__file__).resolve().parent.parent / "model_zoo" / "download"

# bottom to top; a module may import only modules of lower layers (or outside the engine)
ENGINE_LAYERS = [
    ["types"],
    ["state"],
    ["policy", "failures"],
    ["staging"],
    ["transfer"],
    ["scheduler"],
    ["engine"],
]
# the pull's steps may use the engine; the engine never uses them, and pull.py sits on top
PULL_STEPS = [
    "request",
    "results",
    "listing",
    "local",
    "fetching",
    "after",
    "record",
    "renew",
    "make_lock",
]


def _imports(module: str) -> set[str]:
    """The download/ modules ``module`` imports (relative ``from .x import`` and ``from . import
    x``)."""
    tree = ast.parse((DOWNLOAD / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("model_zoo.download.")
        ):
            found.add((node.module or "").split(".")[2])
    return found


def _layer(module: str) -> int | None:
    return next((i for i, names in enumerate(ENGINE_LAYERS) if module in names), None)


@pytest.mark.parametrize("module", [m for layer in ENGINE_LAYERS for m in layer])
def test_engine_layers_import_downward_only(module: str) -> None:
    mine = _layer(module)
    assert mine is not None
    for other in _imports(module):
        theirs = _layer(other)
        if theirs is not None:
            assert theirs < mine or other == module, (
                f"{module} imports {other}, a layer above or beside it"
            )
        assert other not in PULL_STEPS + ["pull"], (
            f"the engine module {module} imports the pull step {other}"
        )


@pytest.mark.parametrize("module", PULL_STEPS + ["pull"])
def test_nothing_in_download_imports_the_cli_or_pull_itself(module: str) -> None:
    text = (DOWNLOAD / f"{module}.py").read_text()
    assert "from ..cli" not in text and "model_zoo.cli" not in text
    if module != "pull":
        assert "pull" not in _imports(module), f"{module} imports pull.py, which sits on top of it"
