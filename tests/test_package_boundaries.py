"""Package boundaries hold, read from the source (every import, lazy ones included): the store
never imports the download engine, the runner never imports reward, and the library never
imports the CLI or the test helpers.

The mirror (``model_zoo/mirror``, what ``serve-mirror`` runs) sits beside the library, not on
top of it: it needs the store's view of its own layout (``store.cache``), the hubs' endpoint
variables (``hubs.catalog``), Ollama's layers and the GGUF header reader (``ollama``), and
``ggufnames`` / ``netaddr``, and nothing else. It must not import ``testing`` (fault injection
and statistics are hooks the tests plug in), nor the CLI, the download engine, the runner, the
registry, reward, the reward server or export: serving files needs none of them, and any of them
would pull torch or httpx into a process that only serves bytes. ``ollama`` must not import the
mirror (the mirror imports it) nor ``testing``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import model_zoo

ROOT = Path(model_zoo.__file__).parent

FORBIDDEN = {  # package -> packages it must not import
    "store": ("download", "cli", "reward", "runner", "server", "testing"),
    "runner": ("reward", "cli", "server", "testing"),
    "download": ("cli", "reward", "runner", "server", "testing"),
    "registry": ("download", "cli", "reward", "runner", "server", "testing"),
    "reward": ("cli", "testing"),
    "server": ("cli", "testing"),
    "mirror": (
        "testing",
        "cli",
        "download",
        "runner",
        "reward",
        "server",
        "registry",
        "export",
    ),
    "ollama": ("mirror", "testing", "cli"),
}


def _imports(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path``, a module of ``model_zoo.<package>``."""
    rel = path.relative_to(ROOT).with_suffix("")
    here = (
        ["model_zoo", *rel.parts[:-1]] if rel.name != "__init__" else ["model_zoo", *rel.parts[:-1]]
    )
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_what_sits_above_it(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, name in _imports(path, package):
            parts = name.split(".")
            if len(parts) > 1 and parts[0] == "model_zoo" and parts[1] in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_scan_sees_relative_and_lazy_imports(tmp_path: Path) -> None:
    src = ROOT / "store" / "verify.py"
    names = {n for _, n in _imports(src, "store")}
    assert "model_zoo.store.layout" in names  # `from .layout import ...`
    assert "model_zoo.errors" in names or any(n.startswith("model_zoo.") for n in names)
