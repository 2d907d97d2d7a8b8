"""One name, one meaning: no two top-level classes in different modules of model_zoo share a
name, so an import or a traceback that names a class names one thing (read from the source)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import model_zoo

ROOT = Path(model_zoo.__file__).parent


def top_level_classes(root: Path) -> dict[str, list[str]]:
    """Class name -> the modules (paths relative to ``root``) that define it at top level."""
    where: dict[str, list[str]] = defaultdict(list)
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                where[node.name].append(path.relative_to(root).as_posix())
    return where


def test_no_two_modules_define_a_class_of_the_same_name() -> None:
    shared = {name: paths for name, paths in top_level_classes(ROOT).items() if len(paths) > 1}
    assert not shared, "\n".join(f"{name}: {', '.join(p)}" for name, p in sorted(shared.items()))


def test_the_scan_finds_a_shared_name(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("class Snapshot:\n    pass\n")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "c.py").write_text("x = 1\n\n\nclass Snapshot:\n    '''Other.'''\n")
    (tmp_path / "d.py").write_text(
        "def f():\n    class Snapshot:  # nested: not top level\n        pass\n"
    )
    assert top_level_classes(tmp_path)["Snapshot"] == ["a.py", "b/c.py"]
