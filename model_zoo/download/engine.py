"""The download engine: one ``fetch`` for every hub, verified, resumable, parallel, multi-source.

API (what ``model_zoo.download.pull`` builds on)::

    fetch(jobs: Sequence[FileJob], target_dir: Path, *, options=EngineOptions(),
          on_event: Callable[[Event], None] | None = None,
          client: httpx.Client | None = None) -> FetchReport

How it works, briefly (details in the modules named):

- Every path is validated before anything is written (``paths``); one unsafe path aborts the
  whole fetch with ``UnsafePathError`` and nothing at all is written.
- ``max_workers`` threads share one keep-alive connection pool (``http_fetch``). A worker takes,
  in this order: a file ready to be finalised, an unclaimed byte range of a file in progress, a
  new file, or half of the largest range another worker still has to fetch (work stealing in
  ``scheduler``: a slow source never holds the end). Files smaller than ``range_split_threshold``
  and files whose server ignores Range are fetched as one stream; ranged requests ask for at
  most ``request_size`` bytes, and steals split beyond the request in flight, so no byte is
  fetched twice (``transfer``). With ``multi_source``, ranges go to the least busy candidate
  that is not far slower than the fastest, so bandwidths add up.
- Bytes go with ``os.pwrite`` into ``<target>/.model-zoo-partial/<path>.part`` (preallocated,
  sparse) and are hashed in file order while they stream in (``hashing.OrderedHasher``); a
  sidecar JSON records the written ranges about once a second (``partial``). A file is renamed
  to its final name only when its size and sha256 match; a mismatch discards every byte of it
  (``staging``). Files whose sources cannot be told apart after a mismatch of mixed ranges are
  refetched from one source at a time, so the liar is found and dropped.
- A per-file cross-process lock (``model_zoo.store.locking.ProcessLock``: ``flock`` on local
  disks, ``O_EXCL`` lock files with heartbeats on NFS/Lustre/GPFS) keeps two processes from
  writing one partial; the second works on other files meanwhile, then finds the file complete
  (it re-hashes it) or continues the partial.
- Retries with exponential backoff and jitter on 408/429 (``Retry-After`` honoured up to a cap),
  5xx, resets, timeouts, stalls and short bodies; after ``retries`` failures, or at once on other
  4xx / a size or sha256 mismatch, the file falls back to its next candidate.
- A presigned URL that stops working (401/403 on a candidate marked ``expires``) is renewed
  through ``renew`` (the pull lists the repository again) and the range continues from the
  bytes already written; the old URL is never retried.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LocalWriteError, ModelZooError, UnsafePathError, UsageError
from ..hubs.base import RemoteFile
from . import progress as ev
from .http_fetch import HttpxTransport, StdlibTransport, Timeouts, Transport
from .paths import PARTIAL_DIR, validate_paths

if TYPE_CHECKING:  # pragma: no cover
    import httpx

MiB = 1024 * 1024
VERIFIED_PUBLISHED = "sha256-published"  # the sha256 a hub published matched the bytes
COMPUTED_ONLY = "computed-only"  # no hub published a sha256: computed, size checked ("unverified-by-hub")

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
    """Knobs of ``fetch``; the defaults suit a laptop on a fast link and a cluster node alike."""

    max_workers: int = 8  # threads = concurrent requests, over all files and sources
    chunk_size: int = 1 * MiB  # bytes per read/pwrite/hash step: per-call overhead stays negligible
    range_split_threshold: int = 64 * MiB  # files this big may be fetched as several ranges at once
    part_size: int = 16 * MiB  # smallest range a worker splits off another's (work stealing)
    request_size: int = 64 * MiB  # most bytes one ranged request asks for (one RTT per request)
    split_min_eta: float = 2.0  # split a range only when its owner still needs this long (seconds)
    endgame_eta: float = 4.0  # cut a request in flight only when its owner needs longer than this
    retries: int = 5  # failed requests per file and source before falling back to the next source
    backoff_base: float = 0.5  # first retry delay in seconds; doubles per retry, with jitter
    backoff_max: float = 30.0
    retry_after_max: float = 60.0  # cap on a server's Retry-After
    stall_timeout: float = 30.0  # no body bytes for this long: abort the request and retry
    connect_timeout: float = 10.0
    request_timeout: float = 60.0  # from request sent to response headers
    multi_source: bool = False  # fetch ranges of one file from several candidates at once
    fsync: bool = False  # fsync each file before its rename, and partials before each checkpoint
    lock_timeout: float | None = None  # give up waiting for another process's file lock (None: wait)
    checkpoint_interval: float = 1.0  # seconds between sidecar saves while bytes arrive

    def timeouts(self) -> Timeouts:
        return Timeouts(connect=self.connect_timeout, response=self.request_timeout, stall=self.stall_timeout)


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
    bytes_discarded: int  # bytes received but thrown away (Range ignored, hash mismatch)
    sources: tuple[str, ...]  # sources whose bytes are in the final file
    bytes_by_source: Mapping[str, int]  # body bytes written this run, per source
    retries: int
    fallbacks: tuple[ev.Fallback, ...]
    range_ignored: bool  # a server answered a Range request with the whole body
    already_present: bool  # the final file existed and matched: nothing was fetched
    replaced_existing: bool = False  # a file with other bytes was at the final path and was replaced

    @property
    def unverified_by_hub(self) -> bool:
        """No hub published a sha256: check ``sha256`` against a lock file or a second source."""
        return self.verification == COMPUTED_ONLY


@dataclass(frozen=True)
class FetchReport:
    target_dir: Path
    files: tuple[FileResult, ...]
    failed: tuple[tuple[str, ModelZooError], ...]
    elapsed: float

    @property
    def bytes_downloaded(self) -> int:
        return sum(f.bytes_downloaded for f in self.files)

    @property
    def bytes_resumed(self) -> int:
        return sum(f.bytes_resumed for f in self.files)

    @property
    def ok(self) -> bool:
        return not self.failed


def _cleanup_partial_dirs(target_dir: Path) -> None:
    """Remove empty folders left in the partial area (best effort)."""
    root = target_dir / PARTIAL_DIR
    if not root.is_dir() or root.is_symlink():
        return
    for dirpath, _dirs, _files in sorted(os.walk(root), key=lambda t: -len(t[0])):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def fetch(
    jobs: Sequence[FileJob],
    target_dir: Path,
    *,
    options: EngineOptions = EngineOptions(),
    on_event: Callable[[ev.Event], None] | None = None,
    client: httpx.Client | None = None,
    renew: Renew | None = None,
) -> FetchReport:
    """Fetch every job into ``target_dir``; return what was done, file by file.

    Raises, before writing anything, ``UnsafePathError`` for any unsafe path. Raises
    ``DiskSpaceError`` when the disk fills (partials are kept for the next run). When some files
    could not be fetched from any candidate, the others are completed first and then the first
    failed file's error is raised (``DownloadFailedError``, ``HashMismatchError``, ...), with the
    ``FetchReport`` attached as ``error.report``. ``on_event`` is called on this thread only.
    Pass ``client`` to route requests through an ``httpx.Client``; by default a pooled
    ``http.client`` transport is used, which costs far less CPU per byte. ``renew`` gives fresh
    URLs for candidates whose presigned URL expired (see ``Renew``); without it such a
    candidate fails like any refused one.
    """
    target_dir = Path(target_dir)
    t0 = time.monotonic()
    validate_paths(target_dir, [j.path for j in jobs])
    for job in jobs:
        for remote in job.candidates:
            if getattr(remote, "kind", "file") != "file":
                raise UnsafePathError(job.path, f"is a {remote.kind} entry; only plain files are written")
            if not remote.url.lower().startswith(("http://", "https://")):
                raise UsageError(f"{job.path}: candidate URL {remote.url!r} is not http(s)")
    if not jobs:
        return FetchReport(target_dir, (), (), 0.0)
    transport: Transport = HttpxTransport(client, options.timeouts()) if client is not None \
        else StdlibTransport(options.timeouts(), max_idle_per_origin=max(4, options.max_workers))
    from .scheduler import Run

    run = Run(jobs, target_dir, options, transport, renew)
    try:
        run.execute(on_event)
    finally:
        transport.close()
    if isinstance(run.fatal, OSError) and not isinstance(run.fatal, ModelZooError):
        # a local failure (permissions, read-only disk, I/O error): a clear error, not a traceback
        where = run.fatal.filename if isinstance(run.fatal.filename, str) else str(target_dir)
        raise LocalWriteError(where, run.fatal.strerror or str(run.fatal)) from run.fatal
    if run.fatal is not None:
        raise run.fatal
    report = run.report(time.monotonic() - t0)
    if report.failed:
        error = report.failed[0][1]
        error.report = report  # type: ignore[attr-defined]
        raise error
    _cleanup_partial_dirs(target_dir)
    return report
