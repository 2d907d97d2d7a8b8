"""Helpers for the docs and CLI-polish tests: the docs generator (``tools/docgen.py``), loaded
by path.

``tools/`` is not a package that gets installed, so tests load the module from the checkout:

    from fixtures_docs import ROOT, docgen, parse_cli
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


docgen = _load("model_zoo_docgen_tests", ROOT / "tools" / "docgen.py")


def parse_cli(argv: list[str]) -> tuple[str, ...]:
    """Parse ``model-zoo ARGV`` with the app's own parser, running nothing; the command path.

    Raises click's usage errors for an unknown command or option, a missing argument or a bad value.
    """
    root = docgen.cli_command()
    ctx = root.make_context("model-zoo", list(argv))
    cmd, path = root, ["model-zoo"]
    while getattr(cmd, "commands", None) is not None:
        # click keeps the subcommand's name apart from its arguments until it dispatches
        rest = [*(getattr(ctx, "_protected_args", None) or []), *ctx.args]
        name, sub, rest = cmd.resolve_command(ctx, rest)
        path.append(name)
        ctx = sub.make_context(name, rest, parent=ctx)
        cmd = sub
    return tuple(path)
