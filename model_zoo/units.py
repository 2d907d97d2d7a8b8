"""Byte counts for people: one formatter and one parser, used by the library and the CLI alike."""

from __future__ import annotations

import re


def human_size(n: float | None) -> str:
    """``3.2 GB``, ``41.0 MB``, ``512 B``: decimal units, as ``df -H`` and the hubs' pages show
    sizes."""
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


_SIZE_UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$", re.IGNORECASE)


def parse_size(text: str, *, what: str = "size") -> int:
    """Bytes from ``24GB`` (10**9), ``24GiB`` (2**30), ``500MB``, ``1.5TiB``; one rule everywhere.

    A bare number or a lone ``G``/``M`` is refused: whether 24 means 24 GB or 24 GiB is a 7%
    difference, which is exactly a model that does not fit.
    """
    from .errors import UsageError

    m = _SIZE_RE.match(text)
    unit = m.group(2).lower() if m else ""
    if not m or unit not in _SIZE_UNITS:
        number = m.group(1) if m else "24"
        raise UsageError(
            f"cannot read {what} {text!r}: give a unit, e.g. {number}GB (10^9 bytes) or "
            f"{number}GiB (2^30 bytes; what a GPU sold as 24 GB has)",
            **{what.replace(" ", "_"): text},
        )
    value = float(m.group(1)) * _SIZE_UNITS[unit]
    if value <= 0:
        raise UsageError(f"{what} must be positive, got {text!r}", **{what.replace(" ", "_"): text})
    return int(value)
