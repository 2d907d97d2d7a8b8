"""Events the engine reports while it fetches, for progress bars, ``--json`` lines and logs.

``fetch`` calls ``on_event`` only from the thread that called ``fetch`` (workers queue their
events), so a renderer needs no locking. ``Progress`` events are coalesced to about ten per
second per file, and report bytes within a read interval of their arrival (50 ms by default).
Every event has ``kind`` and ``to_dict()`` for machine-readable output.

Per file: ``FileStart`` (with the bytes kept from an earlier run, which are not this run's
speed), then ``Progress`` for bytes received now, then ``FileDone`` or ``FileFailed``. A file
found complete on disk sends only a ``FileDone`` (``already_present``), with no ``FileStart``;
its size still counts toward a pull's total.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar


class _EventBase:
    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.kind, **asdict(self)}  # type: ignore[call-overload]


@dataclass(frozen=True)
class FileStart(_EventBase):
    """A file begins (or resumes): ``resumed`` bytes were already on disk from an earlier run."""

    kind: ClassVar[str] = "file_start"
    path: str
    size: int | None
    resumed: int
    source: str


@dataclass(frozen=True)
class Progress(_EventBase):
    """``bytes`` more bytes of ``path`` were received and written (a delta, not a total)."""

    kind: ClassVar[str] = "progress"
    path: str
    bytes: int


@dataclass(frozen=True)
class Retry(_EventBase):
    """A request failed and is retried on the same source after ``delay`` seconds."""

    kind: ClassVar[str] = "retry"
    path: str
    source: str
    attempt: int
    reason: str
    delay: float


@dataclass(frozen=True)
class Fallback(_EventBase):
    """A source is given up for this file; ``to_source`` takes over (None: no source is left)."""

    kind: ClassVar[str] = "fallback"
    path: str
    from_source: str
    to_source: str | None
    reason: str


@dataclass(frozen=True)
class Waiting(_EventBase):
    """Another process holds this file's lock; the engine works on other files meanwhile."""

    kind: ClassVar[str] = "waiting"
    path: str
    holder: str


@dataclass(frozen=True)
class FileDone(_EventBase):
    """A file is complete under its final name (``already_present``: nothing had to be fetched)."""

    kind: ClassVar[str] = "file_done"
    path: str
    size: int
    sha256: str
    verification: str
    sources: tuple[str, ...]
    bytes_downloaded: int
    bytes_resumed: int
    already_present: bool


@dataclass(frozen=True)
class FileFailed(_EventBase):
    """No source could deliver this file; its partial bytes are kept for the next run."""

    kind: ClassVar[str] = "file_failed"
    path: str
    error: str


Event = FileStart | Progress | Retry | Fallback | Waiting | FileDone | FileFailed
