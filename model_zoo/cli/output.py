"""Shared output helpers for CLI commands: consoles, JSON printing, sizes."""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..units import human_size  # noqa: F401 - re-exported: commands import it from here

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console


@lru_cache(maxsize=1)
def console() -> Console:
    from rich.console import Console

    return Console()


@lru_cache(maxsize=1)
def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True)


def print_json(data: Any) -> None:
    """Machine-readable output on stdout: one JSON document, no colours."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
