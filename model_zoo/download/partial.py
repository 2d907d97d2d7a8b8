"""What a partial download has on disk, recorded in a small JSON sidecar so any run can resume it.

The sidecar sits beside the ``.part`` file (see ``paths``) and says, for one target file::

    {"format": "model-zoo-partial", "version": 1,
     "path": "model-00001-of-00004.safetensors",  # as the listing names it
     "size": 4943162336,           # expected size (null when unknown)
     "sha256": "9f86d0...",        # expected digest (null when no hub publishes one)
     "etag": "\"abc\"",            # validator of the bytes when sha256 is null
     "written": [[0, 268435456], [536870912, 601882624]],  # byte ranges known to be on disk
     "sources": ["hf", "modelscope"]}  # who served the bytes so far

``written`` only ever names ranges whose ``pwrite`` returned before the sidecar was saved,
so after Ctrl-C, kill -9 or a crash the ranges are on disk (the page cache outlives the
process). After a power loss they may not be, unless the engine ran with ``fsync``; the final
sha256 check then catches the damage and the file is fetched again. The sidecar is replaced
atomically (temporary file + ``os.replace``), so it is either the old or the new version.
A ``.part`` without a readable sidecar is never trusted: it is discarded.
"""

from __future__ import annotations

import bisect
import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "model-zoo-partial"
VERSION = 1


class IntervalSet:
    """Disjoint, merged half-open byte ranges ``[start, end)``; not thread-safe on its own."""

    def __init__(self, ranges: list[tuple[int, int]] | None = None) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in ranges or ():
            self.add(start, end)

    def add(self, start: int, end: int) -> None:
        if end <= start:
            return
        # first range whose end reaches start, last range whose start is within end
        i = bisect.bisect_left(self._ends, start)
        j = bisect.bisect_right(self._starts, end)
        if i < j:
            start = min(start, self._starts[i])
            end = max(end, self._ends[j - 1])
        self._starts[i:j] = [start]
        self._ends[i:j] = [end]

    def contiguous_end(self, offset: int) -> int:
        """How far bytes are written without a hole, starting at ``offset``."""
        i = bisect.bisect_right(self._starts, offset) - 1
        if i >= 0 and self._ends[i] > offset:
            return self._ends[i]
        return offset

    def gaps(self, size: int) -> list[tuple[int, int]]:
        """The missing ranges of a file of ``size`` bytes."""
        out: list[tuple[int, int]] = []
        pos = 0
        for start, end in zip(self._starts, self._ends, strict=True):
            if start >= size:
                break
            if start > pos:
                out.append((pos, start))
            pos = max(pos, end)
        if pos < size:
            out.append((pos, size))
        return out

    def total(self) -> int:
        return sum(e - s for s, e in zip(self._starts, self._ends, strict=True))

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    def __repr__(self) -> str:
        return f"IntervalSet({self.ranges()})"


@dataclass
class Sidecar:
    path: str
    size: int | None
    sha256: str | None
    etag: str | None = None
    written: list[tuple[int, int]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "etag": self.etag,
            "written": [[s, e] for s, e in self.written],
            "sources": list(self.sources),
        }

    def matches(self, path: str, size: int | None, sha256: str | None) -> bool:
        """Same file as the one we are asked for (so its bytes may be kept)?"""
        return self.path == path and self.size == size and self.sha256 == sha256


def load_sidecar(sidecar: Path) -> Sidecar | None:
    """The sidecar at ``sidecar``, or None when missing or unreadable (then nothing is trusted)."""
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            return None
        written = [(int(s), int(e)) for s, e in data.get("written", [])]
        if any(s < 0 or e < s for s, e in written):
            return None
        size = data.get("size")
        return Sidecar(
            path=str(data["path"]),
            size=None if size is None else int(size),
            sha256=data.get("sha256"),
            etag=data.get("etag"),
            written=written,
            sources=[str(s) for s in data.get("sources", [])],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_sidecar(sidecar: Path, state: Sidecar, *, fsync: bool = False) -> None:
    """Atomically replace the sidecar (temporary file beside it, then ``os.replace``)."""
    tmp = sidecar.with_name(f"{sidecar.name}.{os.getpid()}.tmp")
    payload = json.dumps(state.to_json(), separators=(",", ":")).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            view = memoryview(payload)
            while view:  # a nearly full disk may take only part of it: never install half a sidecar
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, sidecar)
    except BaseException:
        remove_quietly(tmp)  # the older sidecar stays, naming fewer bytes, which stays true
        raise


def remove_stale_temps(sidecar: Path) -> None:
    """Remove sidecar temporaries that a killed process left (call holding the file's lock)."""
    for tmp in sidecar.parent.glob(f"{glob.escape(sidecar.name)}.*.tmp"):
        remove_quietly(tmp)


def remove_quietly(*paths: Path) -> None:
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
