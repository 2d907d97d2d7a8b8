"""Byte counts for people: one formatter, used by the library's messages and the CLI alike."""

from __future__ import annotations


def human_size(n: float | None) -> str:
    """``3.2 GB``, ``41.0 MB``, ``512 B``: decimal units, as ``df -H`` and the hubs' pages show sizes."""
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
