"""The engine's value types: what to fetch, how, and what came of it.

The leaf of ``download/``: nothing here imports another engine module, so every layer (state,
policy, staging, transfer, scheduler, ``fetch``) can use these without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelZooError, UsageError
from ..hubs.base import RemoteFile
from . import progress as ev
from .http_fetch import Timeouts

MiB = 1024 * 1024
VERIFIED_PUBLISHED = "sha256-published"  # the sha256 a hub published matched the bytes
COMPUTED_ONLY = (
    "computed-only"  # no hub published a sha256: computed, size checked ("unverified-by-hub")
)

# (source, path, the RemoteFile whose URL stopped working) -> a fresh RemoteFile for the same
# file, or None when the source no longer lists it. Called on worker threads; may block.
Renew = Callable[[str, str, RemoteFile], "RemoteFile | None"]


@dataclass(frozen=True)
class FileJob:
    """One file to fetch, and every source that serves exactly these bytes.

    ``candidates`` are in preference order and all serve the same content (the same sha256 when
    one is published); ``sources`` holds the source key of each candidate (same length).
    """

    path: str  # relative POSIX path inside the target dir, as the hub lists it
    size: int | None
    sha256: str | None  # expected lower-case hex digest, or None when no source publishes one
    candidates: tuple[RemoteFile, ...]
    sources: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.candidates:
            raise UsageError(f"{self.path}: a FileJob needs at least one candidate")
        if len(self.sources) != len(self.candidates):
            raise UsageError(f"{self.path}: FileJob.sources must name one source per candidate")
        if self.size is not None and self.size < 0:
            raise UsageError(f"{self.path}: negative size")
        if self.sha256 is not None:
            object.__setattr__(self, "sha256", self.sha256.lower())


@dataclass(frozen=True)
class EngineOptions:
    """Knobs of ``fetch``; the defaults suit a laptop on a fast link and a cluster node alike.

    Connections adapt to the link (``adaptive``): the run starts with ``initial_connections``
    requests at once and adds more while the total rate still grows, up to ``connections``; it
    backs off on 429/503 and on rising time-to-first-byte. ``adaptive=False`` keeps exactly
    ``connections``.
    """

    connections: int = 32  # most requests in flight at once, over all files and sources
    initial_connections: int = 16
    adaptive: bool = True
    chunk_size: int = (
        1 * MiB
    )  # most bytes per read/pwrite/hash step: per-call overhead stays negligible
    range_split_threshold: int = 64 * MiB  # files this big may be fetched as several ranges at once
    part_size: int = 16 * MiB  # smallest range a worker splits off another's (work stealing)
    request_size: int = (
        64 * MiB
    )  # bytes a ranged request asks for while the rate is unknown, or fast
    min_request_size: int = 8 * MiB  # ... never fewer (a slow connection)
    request_seconds: float = (
        1.0  # ... about this long at the connection's rate, so ranges split finely
    )
    rtt_requests: float = 16.0  # ... yet at least this many round trips' worth (far, fast links)
    max_request_size: int = 1024 * MiB  # most bytes one ranged request asks for
    split_min_eta: float = 2.0  # split a range only when its owner still needs this long (seconds)
    endgame_eta: float = 4.0  # cut a request in flight only when its owner needs longer than this
    retries: int = 5  # failed requests per file and source before falling back to the next source
    backoff_base: float = 0.5  # first retry delay in seconds; doubles per retry, with jitter
    backoff_max: float = 30.0
    retry_after_max: float = 60.0  # cap on a server's Retry-After
    stall_timeout: float = 30.0  # no body bytes for this long: abort the request and retry
    hedge_after: float = (
        2.0  # a range silent this long (and far longer than its usual gaps) is hedged
    )
    hedge_gap_factor: float = 8.0  # ... "far longer": this many times its longest recent gap
    read_interval: float = (
        0.05  # seconds a read may gather bytes before they are written and counted
    )
    connect_timeout: float = 10.0
    request_timeout: float = 60.0  # from request sent to response headers
    multi_source: bool = False  # fetch ranges of one file from several candidates at once
    fsync: bool = False  # fsync each file before its rename, and partials before each checkpoint
    lock_timeout: float | None = (
        None  # give up waiting for another process's file lock (None: wait)
    )
    checkpoint_interval: float = 1.0  # seconds between sidecar saves while bytes arrive

    def __post_init__(self) -> None:
        if self.connections < 1 or self.initial_connections < 1:
            raise UsageError(
                f"connections must be at least 1 (got {self.connections}, "
                f"initially {self.initial_connections})"
            )

    def timeouts(self) -> Timeouts:
        return Timeouts(
            connect=self.connect_timeout, response=self.request_timeout, stall=self.stall_timeout
        )


@dataclass(frozen=True)
class FileResult:
    """What ``fetch`` did for one file."""

    path: str  # as in the job
    final_path: Path
    size: int
    sha256: str  # computed from the bytes, always
    expected_sha256: str | None
    verification: str  # VERIFIED_PUBLISHED or COMPUTED_ONLY
    bytes_downloaded: int  # bytes of the final file fetched this run
    bytes_resumed: int  # bytes kept from a partial left by an earlier run
    bytes_discarded: (
        int  # bytes received but thrown away (Range ignored, hash mismatch, a lost hedge)
    )
    sources: tuple[str, ...]  # sources whose bytes are in the final file
    bytes_by_source: Mapping[str, int]  # body bytes written this run, per source
    retries: int
    fallbacks: tuple[ev.Fallback, ...]
    range_ignored: bool  # a server answered a Range request with the whole body
    already_present: bool  # the final file existed and matched: nothing was fetched
    replaced_existing: bool = (
        False  # a file with other bytes was at the final path and was replaced
    )
    hedges: int = 0  # duplicate requests sent for ranges that stalled

    @property
    def unverified_by_hub(self) -> bool:
        """No hub published a sha256: check ``sha256`` against a lock file or a second source."""
        return self.verification == COMPUTED_ONLY


@dataclass(frozen=True)
class LinkStats:
    """What the run learned about the link, for the plan line and reports."""

    peak_connections: int  # most requests in flight at once
    final_limit: int  # the connection limit the controller ended at
    rate_per_connection: (
        float | None
    )  # bytes/s one connection got (median over sources), if measured
    total_rate: float | None  # bytes/s over the whole run, when anything was fetched
    round_trip: float | None  # seconds to the first byte (least seen), if measured
    throttled: int  # 429/503 answers seen


@dataclass(frozen=True)
class FetchReport:
    target_dir: Path
    files: tuple[FileResult, ...]
    failed: tuple[tuple[str, ModelZooError], ...]
    elapsed: float
    link: LinkStats | None = None

    @property
    def bytes_downloaded(self) -> int:
        return sum(f.bytes_downloaded for f in self.files)

    @property
    def bytes_resumed(self) -> int:
        return sum(f.bytes_resumed for f in self.files)

    @property
    def ok(self) -> bool:
        return not self.failed
