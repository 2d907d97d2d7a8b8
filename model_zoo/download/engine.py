"""The download engine: one ``fetch`` for every hub, verified, resumable, parallel, multi-source.

API (what ``model_zoo.download.pull`` builds on)::

    fetch(jobs: Sequence[FileJob], target_dir: Path, *, options=EngineOptions(),
          on_event: Callable[[Event], None] | None = None,
          client: httpx.Client | None = None, renew: Renew | None = None) -> FetchReport

Layers, each importing only the ones before it: ``types`` (FileJob, EngineOptions, FileResult,
FetchReport), ``state`` (FileStatus and the run's data), ``policy`` (pure decisions),
``staging`` and ``transfer`` (the file on disk, one request), ``scheduler`` (the threads), and
``fetch`` here on top; ``http_fetch`` is the transport underneath.

How it works, briefly (details in the modules named):

- Every path is validated before anything is written (``paths``); one unsafe path aborts the
  whole fetch with ``UnsafePathError`` and nothing at all is written.
- Up to ``connections`` threads share one keep-alive connection pool (``http_fetch``); how
  many requests run at once follows the link (``policy.ConnectionController``: more while the
  total rate still grows, fewer on 429/503 or a rising time to first byte). A worker takes,
  in this order: a file ready to be finalised, an unclaimed byte range of a file in progress, a
  new file, or half of the largest range another worker still has to fetch (work stealing in
  ``scheduler``: a slow source never holds the end); on a capped or far link, everything after
  that range's request in flight, so files arrive in order and hash as they come. Files
  smaller than ``range_split_threshold`` and files whose server ignores Range are fetched as
  one stream; ranged requests ask for enough bytes that their round trip is a small part of
  them (``policy.request_size``), and steals split beyond the request in flight, so no byte is
  fetched twice (``transfer``).
- A range that goes silent for much longer than its own recent gaps gets a hedged duplicate
  request (same source, or another); the two race on the same bytes, each writing only what
  the other has not, and the one that falls behind is cancelled (``Race``). With
  ``multi_source``, ranges go to the least busy candidate that is not far slower than the
  fastest, so bandwidths add up.
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import FetchFailedError, LocalWriteError, ModelZooError, UnsafePathError, UsageError
from . import progress as ev
from .http_fetch import HttpxTransport, StdlibTransport, Transport
from .paths import PARTIAL_DIR, validate_paths
from .types import (
    COMPUTED_ONLY,
    VERIFIED_PUBLISHED,
    EngineOptions,
    FetchReport,
    FileJob,
    FileResult,
    LinkStats,
    Renew,
)

if TYPE_CHECKING:  # pragma: no cover
    import httpx

__all__ = [
    "COMPUTED_ONLY",
    "VERIFIED_PUBLISHED",
    "EngineOptions",
    "FetchFailedError",
    "FetchReport",
    "FileJob",
    "FileResult",
    "LinkStats",
    "Renew",
    "fetch",
]


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


DEFAULT_OPTIONS = EngineOptions()  # frozen, so one shared default instance is safe


def fetch(
    jobs: Sequence[FileJob],
    target_dir: Path,
    *,
    options: EngineOptions = DEFAULT_OPTIONS,
    on_event: Callable[[ev.Event], None] | None = None,
    client: httpx.Client | None = None,
    renew: Renew | None = None,
) -> FetchReport:
    """Fetch every job into ``target_dir``; return what was done, file by file.

    Raises, before writing anything, ``UnsafePathError`` for any unsafe path. Raises
    ``DiskSpaceError`` when the disk fills (partials are kept for the next run). When some files
    could not be fetched from any candidate, the others are completed first and then
    ``FetchFailedError`` is raised: its ``failures`` hold each failed file's own error
    (``DownloadFailedError``, ``HashMismatchError``, ...), its ``report`` the ``FetchReport``,
    and its exit code is the first failure's. ``on_event`` is called on this thread only.
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
                raise UnsafePathError(
                    job.path, f"is a {remote.kind} entry; only plain files are written"
                )
            if not remote.url.lower().startswith(("http://", "https://")):
                raise UsageError(f"{job.path}: candidate URL {remote.url!r} is not http(s)")
    if not jobs:
        return FetchReport(target_dir, (), (), 0.0)
    transport: Transport = (
        HttpxTransport(client, options.timeouts())
        if client is not None
        else StdlibTransport(options.timeouts(), max_idle_per_origin=max(4, options.connections))
    )
    from .scheduler import Scheduler

    run = Scheduler(list(jobs), target_dir, options, transport, renew)
    try:
        run.execute(on_event)
    finally:
        transport.close()
    fatal = run.fatal
    if isinstance(fatal, OSError) and not isinstance(fatal, ModelZooError):
        # a local failure (permissions, read-only disk, I/O error): a clear error, not a traceback
        where = fatal.filename if isinstance(fatal.filename, str) else str(target_dir)
        raise LocalWriteError(where, fatal.strerror or str(fatal)) from fatal
    if fatal is not None:
        raise fatal
    report = run.report(time.monotonic() - t0)
    if report.failed:
        raise FetchFailedError(report.failed, report)
    _cleanup_partial_dirs(target_dir)
    return report
