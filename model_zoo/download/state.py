"""The state of one fetch: files, their candidates and the byte ranges in flight.

Plain data. Everything here is guarded by ``RunState.cv`` (one condition variable for the whole
run): the critical sections are short bookkeeping, never I/O. ``OrderedHasher`` has its own lock.
The layers above (``policy`` decides, ``staging`` and ``transfer`` act, ``scheduler`` runs the
threads) all work on these objects; nothing here imports them.
"""

from __future__ import annotations

import collections
import enum
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ModelZooError
from ..hubs.base import RemoteFile
from . import progress as ev
from .hashing import OrderedHasher
from .http_fetch import Response, Transport
from .paths import PartialPaths, partial_paths
from .types import EngineOptions, FileJob, FileResult, Renew

if TYPE_CHECKING:  # pragma: no cover
    from ..store.locking import ProcessLock


class FileStatus(enum.Enum):
    """PENDING -> OPENING -> ACTIVE -> FINISHING -> DONE; DEFERRED while another process holds
    the file's lock; FAILED when no candidate is left. FINISHING may go back to ACTIVE (a
    sha256 mismatch discards the bytes)."""

    PENDING = "pending"
    OPENING = "opening"
    DEFERRED = "deferred"
    ACTIVE = "active"
    FINISHING = "finishing"
    DONE = "done"
    FAILED = "failed"


class Cancelled(Exception):
    """Raised inside a worker when the fetch is being stopped."""


@dataclass(eq=False)
class CandidateState:
    """One source of one file during a run, and how it has behaved so far (the planner's
    ``matching.Candidate`` is the source as listed, before any byte is fetched)."""

    remote: RemoteFile
    source: str
    failures: int = 0
    mismatches: int = 0
    dead: str | None = None  # why this file no longer uses this candidate
    error: ModelZooError | None = None
    renewals: int = 0  # fresh URLs fetched since this candidate last delivered bytes


@dataclass(eq=False)
class Race:
    """Two requests for the same bytes: a range that stalled and its hedge. ``claimed`` is the
    first byte neither has written; each writes only bytes at or past it, so nothing is written
    twice, and the one that falls behind is cancelled."""

    claimed: int
    end: int | None
    members: list[Segment] = field(default_factory=list)
    hedges: int = 0  # duplicate requests sent for this range so far


@dataclass(eq=False)
class Segment:
    """A byte range of one file that one worker is fetching from one candidate."""

    file: FileState
    pos: int  # next byte to fetch
    end: (
        int | None
    )  # exclusive end; shrinks when another worker steals the tail; None: unknown size
    cand: int
    req_end: int | None = None  # end of the range the request in flight asked for
    started: float = field(default_factory=time.monotonic)
    got: int = 0
    last_byte: float = field(
        default_factory=time.monotonic
    )  # when bytes last arrived (or the start)
    gap: float = 0.0  # the longest recent silence between arrivals (decays), seconds
    race: Race | None = None  # set while this range is hedged
    cancelled: bool = False  # lost its race, or was taken over: end quietly
    response: Response | None = None  # the response being read, to abort a lost race

    def rate(self, now: float) -> float:
        return self.got / max(now - self.started, 1e-3)

    def heard(self, now: float) -> None:
        """Bytes arrived: remember the silence they ended (under ``cv``)."""
        self.gap = max(self.gap * 0.9, now - self.last_byte)
        self.last_byte = now


@dataclass(eq=False)
class FileState:
    """Everything the run knows about one file: its partial, its ranges in flight, its counters."""

    idx: int
    job: FileJob
    paths: PartialPaths
    cands: list[CandidateState]
    size: int | None
    status: FileStatus = FileStatus.PENDING
    lock: ProcessLock | None = None
    fd: int = -1
    hasher: OrderedHasher | None = None
    segs: list[Segment] = field(default_factory=list)
    splittable: bool | None = None  # None until a response shows whether Range works
    mixed_ok: bool = True  # may take ranges from several candidates (off after a mixed mismatch)
    defer_until: float = 0.0
    waiting_since: float | None = None
    told_waiting: bool = False
    partial_sources: dict[str, None] = field(default_factory=dict)  # who wrote the partial's bytes
    had_disk_bytes: bool = False  # the partial held bytes from an earlier run
    downloaded: int = 0
    unreported: int = 0  # downloaded bytes not yet sent as a Progress event
    resumed: int = 0
    discarded: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    hedges: int = 0
    fallbacks: list[ev.Fallback] = field(default_factory=list)
    range_ignored: bool = False
    replaces: bool = False  # another file (different bytes) was at the final path: it gets replaced
    error: ModelZooError | None = None
    result: FileResult | None = None
    ckpt_lock: threading.Lock = field(default_factory=threading.Lock)
    last_ckpt: float = 0.0

    def usable(self) -> list[int]:
        return [i for i, c in enumerate(self.cands) if c.dead is None]


class RunState:
    """What every layer of one fetch sees: options, target, transport, files, the lock."""

    def __init__(
        self,
        jobs: Sequence[FileJob],
        target_dir: Path,
        options: EngineOptions,
        transport: Transport,
        renew: Renew | None = None,
    ) -> None:
        self.o = options
        self.target = target_dir
        self.transport = transport
        self.renew = renew
        self.files = [
            FileState(
                i,
                j,
                partial_paths(target_dir, j.path),
                [CandidateState(r, s) for r, s in zip(j.candidates, j.sources, strict=True)],
                j.size,
            )
            for i, j in enumerate(jobs)
        ]
        self.cv = threading.Condition(threading.Lock())  # never re-entered: a plain lock is cheaper
        self.cancel = threading.Event()
        self.fatal: BaseException | None = None
        self.inflight: dict[str, int] = {}  # requests in flight per source
        self.no_range: set[str] = set()  # sources seen answering Range with 200
        self.events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # what the link showed so far (the controller and the plan line read these)
        self.ttfb: dict[str, float] = {}  # least seconds to response headers, per source
        self.ttfb_samples: collections.deque[tuple[float, str, float]] = collections.deque(
            maxlen=256
        )
        self.throttled = 0  # 429/503 answers
        self.peak_inflight = 0

    def busy(self) -> int:
        """Requests in flight (under ``cv``)."""
        return sum(self.inflight.values())
