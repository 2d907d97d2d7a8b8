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
  new file, or half of the largest range another worker still has to fetch (work stealing: a
  slow source never holds the end). Files smaller than ``range_split_threshold`` and files whose
  server ignores Range are fetched as one stream.
- Bytes go with ``os.pwrite`` into ``<target>/.model-zoo-partial/<path>.part`` (preallocated,
  sparse) and are hashed in file order while they stream in (``hashing.OrderedHasher``); a
  sidecar JSON records the written ranges about once a second (``partial``). A file is renamed
  to its final name only when its size and sha256 match; a mismatch discards every byte of it.
- A per-file cross-process lock (``model_zoo.store.locking.ProcessLock``: ``flock`` on local
  disks, ``O_EXCL`` lock files with heartbeats on NFS/Lustre/GPFS) keeps two processes from
  writing one partial; the second works on other files meanwhile, then finds the file complete
  (it re-hashes it) or continues the partial.
- Retries with exponential backoff and jitter on 408/429 (``Retry-After`` honoured up to a cap),
  5xx, resets, timeouts, stalls and short bodies; after ``retries`` failures, or at once on other
  4xx / a size or sha256 mismatch, the file falls back to its next candidate.
"""

from __future__ import annotations

import errno
import os
import queue
import random
import shutil
import stat
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    DiskSpaceError,
    DownloadFailedError,
    HashMismatchError,
    ModelZooError,
    SizeMismatchError,
    UnsafePathError,
    UsageError,
)
from ..hubs.base import RemoteFile
from . import progress as ev
from .hashing import OrderedHasher
from .http_fetch import HttpxTransport, StdlibTransport, Timeouts, Transport, TransferError, status_error
from .partial import IntervalSet, Sidecar, load_sidecar, remove_quietly, save_sidecar
from .paths import PARTIAL_DIR, PartialPaths, make_parents, partial_paths, validate_paths

if TYPE_CHECKING:  # pragma: no cover
    import httpx

    from ..store.locking import ProcessLock

MiB = 1024 * 1024
VERIFIED_PUBLISHED = "sha256-published"  # the sha256 a hub published matched the bytes
COMPUTED_ONLY = "computed-only"  # no hub published a sha256: computed, size checked ("unverified-by-hub")
_ALIGN = 64 * 1024
_MATURE = 2 * MiB  # a range that has received this much (or run this long) has a meaningful rate
_MATURE_AGE = 0.5
_PROGRESS_RESETS_FAILURES = 4 * MiB  # one request this productive forgives earlier failures


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
    chunk_size: int = 1 * MiB  # bytes per read/pwrite/hash step (1 MiB measured best on loopback)
    range_split_threshold: int = 64 * MiB  # files this big may be fetched as several ranges at once
    part_size: int = 16 * MiB  # smallest range a worker splits off another's (work stealing)
    request_size: int = 64 * MiB  # most bytes one ranged request asks for (one RTT per request)
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
    bytes_downloaded: int  # body bytes written this run
    bytes_resumed: int  # bytes kept from a partial left by an earlier run
    bytes_discarded: int  # bytes received but thrown away (Range ignored, hash mismatch)
    sources: tuple[str, ...]  # sources whose bytes are in the final file
    bytes_by_source: Mapping[str, int]  # body bytes written this run, per source
    retries: int
    fallbacks: tuple[ev.Fallback, ...]
    range_ignored: bool  # a server answered a Range request with the whole body
    already_present: bool  # the final file existed and matched: nothing was fetched

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


# ------------------------------------------------------------------------------ run state

PENDING, OPENING, DEFERRED, ACTIVE, FINISHING, DONE, FAILED = range(7)


class _Cancelled(Exception):
    pass


@dataclass(eq=False)
class _Cand:
    remote: RemoteFile
    source: str
    failures: int = 0
    mismatches: int = 0
    dead: str | None = None  # why this file no longer uses this candidate
    error: ModelZooError | None = None


@dataclass(eq=False)
class _Seg:
    file: _File
    pos: int  # next byte to fetch
    end: int | None  # exclusive end; shrinks when another worker steals the tail; None: unknown size
    cand: int
    req_end: int | None = None  # end of the range the request in flight asked for
    started: float = field(default_factory=time.monotonic)
    got: int = 0

    def rate(self, now: float) -> float:
        return self.got / max(now - self.started, 1e-3)


@dataclass(eq=False)
class _File:
    idx: int
    job: FileJob
    paths: PartialPaths
    cands: list[_Cand]
    size: int | None
    state: int = PENDING
    lock: ProcessLock | None = None
    fd: int = -1
    hasher: OrderedHasher | None = None
    segs: list[_Seg] = field(default_factory=list)
    splittable: bool | None = None  # None until a response shows whether Range works
    mixed_ok: bool = True  # may take ranges from several candidates (off after a mixed mismatch)
    defer_until: float = 0.0
    waiting_since: float | None = None
    told_waiting: bool = False
    partial_sources: dict[str, None] = field(default_factory=dict)  # who wrote the partial's bytes
    had_disk_bytes: bool = False  # the partial held bytes from an earlier run
    downloaded: int = 0
    resumed: int = 0
    discarded: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    fallbacks: list[ev.Fallback] = field(default_factory=list)
    range_ignored: bool = False
    error: ModelZooError | None = None
    result: FileResult | None = None
    ckpt_lock: threading.Lock = field(default_factory=threading.Lock)
    last_ckpt: float = 0.0

    def usable(self) -> list[int]:
        return [i for i, c in enumerate(self.cands) if c.dead is None]


class _Run:
    def __init__(self, jobs: Sequence[FileJob], target_dir: Path, options: EngineOptions,
                 transport: Transport) -> None:
        self.o = options
        self.target = target_dir
        self.transport = transport
        self.files = [
            _File(i, j, partial_paths(target_dir, j.path),
                  [_Cand(r, s) for r, s in zip(j.candidates, j.sources)], j.size)
            for i, j in enumerate(jobs)
        ]
        self.cv = threading.Condition()
        self.cancel = threading.Event()
        self.fatal: BaseException | None = None
        self.inflight: dict[str, int] = {}
        self.no_range: set[str] = set()  # sources seen answering Range with 200
        self.events: queue.SimpleQueue[Any] = queue.SimpleQueue()

    # -------------------------------------------------------------------- main thread

    def execute(self, on_event: Callable[[ev.Event], None] | None) -> None:
        n = max(1, min(self.o.max_workers, 64))
        workers = [threading.Thread(target=self._worker, name=f"model-zoo-fetch-{i}", daemon=True)
                   for i in range(n)]
        for w in workers:
            w.start()
        pending: dict[int, int] = {}
        last_flush = time.monotonic()
        try:
            while True:
                alive = any(w.is_alive() for w in workers)
                try:
                    item = self.events.get(timeout=0.05)
                except queue.Empty:
                    item = None
                if item is not None:
                    if isinstance(item, tuple):  # ("bytes", file index, n)
                        pending[item[1]] = pending.get(item[1], 0) + item[2]
                    else:
                        self._flush(pending, on_event)
                        if on_event is not None:
                            on_event(item)
                if pending and (time.monotonic() - last_flush > 0.1 or item is None):
                    self._flush(pending, on_event)
                    last_flush = time.monotonic()
                if not alive and item is None:
                    break
        except BaseException:
            self.cancel.set()
            self.transport.abort_all()
            for w in workers:
                w.join(timeout=max(self.o.stall_timeout, 5.0))
            raise
        finally:
            self.cancel.set()
            for f in self.files:
                if f.state not in (DONE, FAILED) or f.fd >= 0 or f.lock is not None:
                    self._close_file(f)

    def _flush(self, pending: dict[int, int], on_event: Callable[[ev.Event], None] | None) -> None:
        if on_event is not None:
            for idx, n in pending.items():
                on_event(ev.Progress(self.files[idx].job.path, n))
        pending.clear()

    # -------------------------------------------------------------------- scheduling

    def _worker(self) -> None:
        buf = memoryview(bytearray(self.o.chunk_size))
        while True:
            task = self._take()
            if task is None:
                return
            kind, obj = task
            try:
                if kind == "open":
                    self._open(obj)
                elif kind == "seg":
                    self._run_seg(obj, buf)
                else:
                    self._finish(obj)
            except _Cancelled:
                return
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    self._set_fatal(self._disk_full_error())
                else:
                    self._set_fatal(exc)
                return
            except BaseException as exc:  # noqa: BLE001 - reported to the caller of fetch
                self._set_fatal(exc)
                return

    def _set_fatal(self, exc: BaseException) -> None:
        with self.cv:
            if self.fatal is None:
                self.fatal = exc
            self.cancel.set()
            self.cv.notify_all()
        self.transport.abort_all()

    def _take(self) -> tuple[str, Any] | None:
        with self.cv:
            while True:
                if self.cancel.is_set():
                    return None
                task = self._pick()
                if task is not None:
                    return task
                if all(f.state in (DONE, FAILED) for f in self.files):
                    self.cv.notify_all()
                    return None
                deferred = [f.defer_until for f in self.files if f.state == DEFERRED]
                wait = max(0.01, min(deferred) - time.monotonic()) if deferred else 1.0
                self.cv.wait(timeout=min(wait, 1.0))

    def _pick(self) -> tuple[str, Any] | None:
        now = time.monotonic()
        for f in self.files:  # 1. finalise a file whose bytes are all here
            if f.state == ACTIVE and not f.segs and f.size is not None and f.hasher is not None \
                    and not f.hasher.gaps(f.size):
                f.state = FINISHING
                return ("finish", f)
        for f in self.files:  # 2. an unclaimed range of a file in progress
            if f.state == ACTIVE:
                seg = self._new_segment(f)
                if seg is not None:
                    return ("seg", seg)
        for f in self.files:  # 3. a file nobody has started
            if f.state == PENDING or (f.state == DEFERRED and f.defer_until <= now):
                f.state = OPENING
                return ("open", f)
        seg = self._steal(now)  # 4. half of the largest range still to come
        if seg is not None:
            return ("seg", seg)
        return None

    def _claimed_gap(self, f: _File) -> tuple[int, int | None] | None:
        assert f.hasher is not None
        if f.size is None:
            return None if f.segs else (f.hasher.written.contiguous_end(0), None)
        for start, end in f.hasher.gaps(f.size):
            for s in sorted(f.segs, key=lambda s: s.pos):
                s_end = f.size if s.end is None else s.end
                if s_end <= start or s.pos >= end:
                    continue
                if s.pos <= start:
                    start = max(start, s_end)
                else:
                    end = s.pos
                    break
            if start < end:
                return start, end
        return None

    def _new_segment(self, f: _File) -> _Seg | None:
        if f.segs and f.splittable is not True:
            return None  # wait for the first response to show whether ranges work
        gap = self._claimed_gap(f)
        if gap is None:
            return None
        cand = self._choose(f, gap[0])
        if cand is None:
            return None
        return self._add_seg(f, gap[0], gap[1], cand)

    def _add_seg(self, f: _File, start: int, end: int | None, cand: int) -> _Seg:
        seg = _Seg(f, start, end, cand)
        f.segs.append(seg)
        src = f.cands[cand].source
        self.inflight[src] = self.inflight.get(src, 0) + 1
        return seg

    def _choose(self, f: _File, start: int) -> int | None:
        usable = f.usable()
        if not usable:
            return None
        if start > 0:
            usable = [i for i in usable if f.cands[i].source not in self.no_range] or usable
        mix = self.o.multi_source and f.mixed_ok and f.job.sha256 is not None
        if mix or (self.o.multi_source and not f.segs and not f.partial_sources):
            # least busy source, among those not far slower per connection than the fastest
            rates = self._source_rates(time.monotonic())
            best = max((rates.get(f.cands[i].source, 0.0) for i in usable), default=0.0)
            fast = [i for i in usable if rates.get(f.cands[i].source, best) >= best / 4] or usable
            return min(fast, key=lambda i: (self.inflight.get(f.cands[i].source, 0), i))
        # one source per file: the one already fetching it, else the one that wrote its partial
        current = [s.cand for s in f.segs]
        current += [i for i, c in enumerate(f.cands) if c.source in f.partial_sources]
        return next((i for i in current if i in usable), usable[0])

    def _steal(self, now: float) -> _Seg | None:
        """Split off the tail of the range that will take longest.

        Splits happen beyond the request in flight (nothing is fetched twice); only in the
        endgame, when a range's owner still needs more than ``endgame_eta`` seconds, is its
        request cut short, costing the bytes already on the wire.
        """
        best: tuple[bool, float, _Seg, int] | None = None
        part = self.o.part_size
        rates = self._source_rates(now)
        for f in self.files:
            if f.state != ACTIVE or f.splittable is not True:
                continue
            for s in f.segs:
                if s.end is None:
                    continue
                lo = s.pos + self.o.chunk_size  # the owner may be reading up to one chunk right now
                free_from = max(lo, s.req_end or lo)
                mature = s.got >= _MATURE or now - s.started >= _MATURE_AGE
                rate = s.rate(now) if mature else rates.get(f.cands[s.cand].source, 0.0)
                eta = (s.end - s.pos) / max(rate, 1.0)
                if s.end - free_from >= 2 * part:
                    split = max(free_from, lo + (s.end - lo) // 2)
                    clean = True
                elif s.end - lo >= 2 * part and rate > 0 and eta > self.o.endgame_eta:
                    split = lo + (s.end - lo) // 2
                    clean = False
                else:
                    continue
                split -= split % _ALIGN
                if clean:
                    split = max(split, free_from)  # never inside the request in flight
                if split < lo or s.end - split < part:
                    continue
                key = (clean, eta)
                if best is None or key > best[:2]:
                    best = (clean, eta, s, split)
        if best is None:
            return None
        _clean, _eta, victim, split = best
        f = victim.file
        assert victim.end is not None
        cand = self._choose(f, split)
        if cand is None:
            return None
        new = self._add_seg(f, split, victim.end, cand)
        victim.end = split
        return new

    def _source_rates(self, now: float) -> dict[str, float]:
        """Bytes per second per connection of each source, from its segments in flight."""
        got: dict[str, int] = {}
        age: dict[str, float] = {}
        for f in self.files:
            for s in f.segs:
                if s.got >= _MATURE or now - s.started >= _MATURE_AGE:
                    src = f.cands[s.cand].source
                    got[src] = got.get(src, 0) + s.got
                    age[src] = age.get(src, 0.0) + max(now - s.started, 1e-3)
        return {src: got[src] / age[src] for src in got}

    # -------------------------------------------------------------------- opening a file

    def _open(self, f: _File) -> None:
        from ..store.locking import LockTimeoutError, ProcessLock

        make_parents(self.target, f.paths.lock)
        lock = ProcessLock(f.paths.lock, timeout=0)
        try:
            lock.acquire()
        except LockTimeoutError:
            self._defer(f, lock.owner())
            return
        f.lock = lock
        try:
            if self._already_complete(f):
                return
            self._prepare_partial(f)
        except BaseException:
            self._close_file(f)
            raise
        with self.cv:
            f.state = ACTIVE
            self.cv.notify_all()
        first = f.usable()[0]
        self.events.put(ev.FileStart(f.job.path, f.size, f.resumed, f.cands[first].source))

    def _defer(self, f: _File, holder: str) -> None:
        from ..store.locking import LockTimeoutError

        now = time.monotonic()
        with self.cv:
            if f.waiting_since is None:
                f.waiting_since = now
            waited = now - f.waiting_since
            if self.o.lock_timeout is not None and waited >= self.o.lock_timeout:
                f.error = LockTimeoutError(str(f.paths.lock), waited, holder)
                f.state = FAILED
            else:
                f.state = DEFERRED
                f.defer_until = now + min(1.0, 0.1 + waited / 10)
            self.cv.notify_all()
        if f.state == FAILED:
            self.events.put(ev.FileFailed(f.job.path, str(f.error)))
        elif not f.told_waiting:
            f.told_waiting = True
            self.events.put(ev.Waiting(f.job.path, holder))

    def _already_complete(self, f: _File) -> bool:
        """The final file is there and matches (another process, or an earlier run, made it)."""
        from ..store.hashing import sha256_file

        final = f.paths.final
        try:
            st = os.lstat(final)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(st.st_mode) or (f.size is not None and st.st_size != f.size):
            return False
        digest, size = sha256_file(final)
        if f.job.sha256 is not None and digest != f.job.sha256:
            return False
        remove_quietly(f.paths.data, f.paths.sidecar)
        self._complete(f, digest, size, already_present=True)
        return True

    def _prepare_partial(self, f: _File) -> None:
        job = f.job
        sc = load_sidecar(f.paths.sidecar)
        keep = sc is not None and sc.matches(job.path, job.size, job.sha256)
        if keep:
            try:
                st = os.lstat(f.paths.data)
                keep = stat.S_ISREG(st.st_mode) and (job.size is None or st.st_size == job.size)
            except FileNotFoundError:
                keep = False
        if keep and job.sha256 is None and sc is not None and sc.etag:
            etags = {c.remote.etag for c in f.cands if c.remote.etag}
            keep = not etags or sc.etag in etags
        if not keep:
            remove_quietly(f.paths.data, f.paths.sidecar)
        make_parents(self.target, f.paths.final)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        f.fd = os.open(f.paths.data, flags, 0o644)
        if job.size is not None and os.fstat(f.fd).st_size != job.size:
            os.ftruncate(f.fd, job.size)  # sparse: ENOSPC shows up at pwrite, handled there
        written = IntervalSet()
        if keep and sc is not None:
            limit = job.size if job.size is not None else 1 << 62
            for start, end in sc.written:
                written.add(min(start, limit), min(end, limit))
            f.partial_sources = dict.fromkeys(sc.sources)
        f.hasher = OrderedHasher(f.fd, written)
        f.resumed = written.total()
        f.had_disk_bytes = f.resumed > 0
        f.hasher.catch_up()  # reads the resumed prefix once to rebuild the sha256 state

    # -------------------------------------------------------------------- one range

    def _run_seg(self, seg: _Seg, buf: memoryview) -> None:
        f = seg.file
        try:
            while not self.cancel.is_set():
                with self.cv:
                    if f.state != ACTIVE or (seg.end is not None and seg.pos >= seg.end):
                        return
                    cand = f.cands[seg.cand]
                    if cand.dead is not None:
                        nxt = self._choose(f, seg.pos)
                        if nxt is None:
                            return
                        self._move(seg, nxt)
                        cand = f.cands[nxt]
                try:
                    self._request(seg, cand, buf)
                except TransferError as exc:
                    self._failed_request(seg, cand, exc)
        finally:
            if f.size is None or f.hasher is None or f.hasher.gaps(f.size):
                self._checkpoint(f, force=True)  # bytes still missing: record what is here
            with self.cv:
                f.segs.remove(seg)
                src = f.cands[seg.cand].source
                self.inflight[src] -= 1
                last = not f.segs
                self.cv.notify_all()
            if last and f.state == FAILED:
                self._close_file(f)

    def _move(self, seg: _Seg, cand: int) -> None:
        old = seg.file.cands[seg.cand].source
        self.inflight[old] -= 1
        seg.cand = cand
        new = seg.file.cands[cand].source
        self.inflight[new] = self.inflight.get(new, 0) + 1

    def _range_header(self, f: _File, seg: _Seg, cand: _Cand) -> str | None:
        """The Range for the next request of ``seg`` (None: ask for the whole body); sets req_end."""
        with self.cv:
            seg.req_end = None
            if not cand.remote.supports_range:
                return None
            whole = seg.pos == 0 and (seg.end is None or seg.end == f.size)
            if whole and (f.size is None or f.size < self.o.range_split_threshold):
                return None
            if seg.end is None:
                return f"bytes={seg.pos}-"
            end = seg.end
            if f.size is not None and f.size >= self.o.range_split_threshold and f.splittable is not False:
                end = min(end, seg.pos + self.o.request_size)
            seg.req_end = end
            return f"bytes={seg.pos}-{end - 1}"

    def _request(self, seg: _Seg, cand: _Cand, buf: memoryview) -> None:
        f = seg.file
        rng = self._range_header(f, seg, cand)
        resp = self.transport.get(cand.remote.url, cand.remote.headers, rng)
        try:
            skip, body_end = self._check_response(seg, cand, resp, rng)
            self._stream(seg, cand, resp, buf, skip, body_end)
        finally:
            resp.close(reusable=True)

    def _check_response(self, seg: _Seg, cand: _Cand, resp: Any, rng: str | None) -> tuple[int, int | None]:
        """Validate status and lengths: (leading body bytes to skip, file offset the body ends at)."""
        f = seg.file
        status = resp.status
        if status == 206:
            start, end, total = _content_range(resp.header("content-range"))
            if start != seg.pos or end is None or end < start:
                raise TransferError(f"asked for {rng}, got Content-Range {resp.header('content-range')}",
                                    retriable=True, kind="protocol")
            self._learn_size(seg, total)
            with self.cv:
                if f.splittable is None:
                    f.splittable = f.size is not None and f.size >= self.o.range_split_threshold
            return 0, end + 1
        if status == 200:
            length = resp.header("content-length")
            self._learn_size(seg, int(length) if length and length.isdigit() else None)
            if rng is None and seg.pos == 0:
                with self.cv:
                    if f.splittable is None:
                        f.splittable = False
                return 0, f.size
            with self.cv:  # the server ignored Range: read the body from its start, skip what we have
                f.range_ignored = True
                f.splittable = False
                self.no_range.add(cand.source)
            return seg.pos, f.size
        raise status_error(status, resp.header("retry-after"))

    def _learn_size(self, seg: _Seg, total: int | None) -> None:
        f = seg.file
        if total is None:
            return
        if f.size is not None and total != f.size:
            raise TransferError(f"serves {total} bytes, expected {f.size}", retriable=False, kind="size")
        if f.size is None:
            with self.cv:
                f.size = total
                if seg.end is None:
                    seg.end = total
            os.ftruncate(f.fd, total)

    def _stream(self, seg: _Seg, cand: _Cand, resp: Any, buf: memoryview, skip: int,
                body_end: int | None) -> None:
        f = seg.file
        assert f.hasher is not None
        start_pos = seg.pos
        while skip > 0:
            if self.cancel.is_set():
                raise _Cancelled()
            n = resp.readinto(buf[: min(len(buf), skip)])
            if n == 0:
                raise TransferError("body ended before the requested range", retriable=True, kind="short")
            skip -= n
            with self.cv:
                f.discarded += n
        while True:
            if self.cancel.is_set():
                raise _Cancelled()
            with self.cv:
                if f.state != ACTIVE:
                    return
                end = seg.end if body_end is None or seg.end is None else min(seg.end, body_end)
            want = len(buf) if end is None else min(len(buf), end - seg.pos)
            if want <= 0:
                return
            n = resp.readinto(buf[:want])
            if n == 0:
                if end is None:  # unknown size: the body ended, so the file did
                    with self.cv:
                        f.size = seg.end = seg.pos
                    os.ftruncate(f.fd, seg.pos)
                    return
                raise TransferError(f"body ended early: {seg.pos - start_pos} bytes of the "
                                    f"{end - start_pos} asked for", retriable=True, kind="short")
            view = buf[:n]
            _pwrite_all(f.fd, view, seg.pos)
            f.hasher.wrote(seg.pos, view)
            with self.cv:
                seg.pos += n
                seg.got += n
                f.downloaded += n
                f.by_source[cand.source] = f.by_source.get(cand.source, 0) + n
                if cand.source not in f.partial_sources:
                    f.partial_sources[cand.source] = None
                if seg.pos - start_pos >= _PROGRESS_RESETS_FAILURES:
                    cand.failures = 0
            self.events.put(("bytes", f.idx, n))
            self._checkpoint(f)

    def _failed_request(self, seg: _Seg, cand: _Cand, exc: TransferError) -> None:
        f = seg.file
        with self.cv:
            if cand.dead is not None or f.state != ACTIVE:
                return
            cand.failures += 1
            f.retries += 1
            give_up = not exc.retriable or cand.failures > self.o.retries
            if give_up:
                self._kill_candidate(f, cand, _error_for(f, cand, exc))
                return
            attempt = cand.failures
        delay = self._backoff(attempt, exc)
        self.events.put(ev.Retry(f.job.path, cand.source, attempt, exc.reason, round(delay, 3)))
        if self.cancel.wait(delay):
            raise _Cancelled()

    def _backoff(self, attempt: int, exc: TransferError) -> float:
        if exc.retry_after is not None:
            return min(exc.retry_after, self.o.retry_after_max)
        base = min(self.o.backoff_max, self.o.backoff_base * (2 ** (attempt - 1)))
        return base * random.uniform(0.5, 1.5)

    def _kill_candidate(self, f: _File, cand: _Cand, error: ModelZooError) -> None:
        """Called under ``cv``: this file stops using ``cand``; fail the file if nothing is left."""
        cand.dead = str(error)
        cand.error = error
        left = f.usable()
        to = f.cands[left[0]].source if left else None
        fb = ev.Fallback(f.job.path, cand.source, to, str(error))
        f.fallbacks.append(fb)
        self.events.put(fb)
        if not left:
            f.error = _final_error(f)
            f.state = FAILED
            self.events.put(ev.FileFailed(f.job.path, str(f.error)))
        self.cv.notify_all()

    # -------------------------------------------------------------------- finishing

    def _finish(self, f: _File) -> None:
        assert f.hasher is not None and f.size is not None
        f.hasher.catch_up()
        digest = f.hasher.hexdigest()
        on_disk = os.fstat(f.fd).st_size
        if f.hasher.hashed != f.size or on_disk != f.size:
            raise OSError(f"{f.paths.data}: {on_disk} bytes on disk, {f.hasher.hashed} hashed, "
                          f"{f.size} expected")
        if f.job.sha256 is not None and digest != f.job.sha256:
            self._mismatch(f, digest)
            return
        if self.o.fsync:
            os.fsync(f.fd)
        os.close(f.fd)
        f.fd = -1
        make_parents(self.target, f.paths.final)
        if os.path.isdir(f.paths.final) and not os.path.islink(f.paths.final):
            raise UsageError(f"{f.paths.final} is a directory; cannot put the file {f.job.path} there")
        os.replace(f.paths.data, f.paths.final)
        remove_quietly(f.paths.sidecar)
        self._complete(f, digest, f.size, already_present=False)

    def _mismatch(self, f: _File, digest: str) -> None:
        """sha256 mismatch: discard every byte, then decide who to blame."""
        assert f.hasher is not None and f.size is not None and f.job.sha256 is not None
        srcs = list(f.partial_sources)
        error = HashMismatchError(f.job.path, f.job.sha256, digest, source=",".join(srcs) or None)
        f.hasher.reset()
        os.ftruncate(f.fd, 0)
        os.ftruncate(f.fd, f.size)
        with self.cv:
            f.discarded += f.size
            f.downloaded = 0
            f.resumed = 0
            f.by_source.clear()
            f.partial_sources.clear()
            f.state = ACTIVE
            f.splittable = None
            if f.had_disk_bytes:
                f.had_disk_bytes = False  # the bytes from disk may be the bad ones: one clean retry
            elif len(srcs) > 1 and f.mixed_ok:
                f.mixed_ok = False  # cannot tell which source lied: take the file from one at a time
            else:
                for c in f.cands:
                    if c.dead is None and (c.source in srcs or not srcs):
                        c.mismatches += 1
                        # the last source left gets one more full try (corruption can be transient)
                        if c.mismatches >= 2 or len(f.usable()) > 1:
                            self._kill_candidate(f, c, error)
                        break
            self.cv.notify_all()
        self._checkpoint(f, force=True)

    def _complete(self, f: _File, digest: str, size: int, *, already_present: bool) -> None:
        lock_file = f.paths.lock
        remove_quietly(lock_file, lock_file.with_name(lock_file.name + ".owner"))
        if f.lock is not None:
            f.lock.release()
            f.lock = None
        f.result = FileResult(
            path=f.job.path,
            final_path=f.paths.final,
            size=size,
            sha256=digest,
            expected_sha256=f.job.sha256,
            verification=VERIFIED_PUBLISHED if f.job.sha256 is not None else COMPUTED_ONLY,
            bytes_downloaded=f.downloaded,
            bytes_resumed=f.resumed,
            bytes_discarded=f.discarded,
            sources=tuple(f.partial_sources),
            bytes_by_source=dict(f.by_source),
            retries=f.retries,
            fallbacks=tuple(f.fallbacks),
            range_ignored=f.range_ignored,
            already_present=already_present,
        )
        with self.cv:
            f.state = DONE
            self.cv.notify_all()
        self.events.put(ev.FileDone(f.job.path, size, digest, f.result.verification, f.result.sources,
                                    f.downloaded, f.resumed, already_present))

    # -------------------------------------------------------------------- bookkeeping

    def _checkpoint(self, f: _File, *, force: bool = False) -> None:
        """Save the sidecar (about once per ``checkpoint_interval``; always when ``force``)."""
        if f.hasher is None or f.fd < 0 or f.state in (FINISHING, DONE):
            return
        now = time.monotonic()
        if not force and now - f.last_ckpt < self.o.checkpoint_interval:
            return
        if not f.ckpt_lock.acquire(blocking=force):
            return
        try:
            f.last_ckpt = now
            if self.o.fsync:
                os.fsync(f.fd)
            etag = next((c.remote.etag for c in f.cands if c.remote.etag), None)
            state = Sidecar(f.job.path, f.job.size, f.job.sha256, etag, f.hasher.ranges(),
                            list(f.partial_sources))
            try:
                save_sidecar(f.paths.sidecar, state, fsync=self.o.fsync)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise  # out of space: the older sidecar names fewer bytes, which stays true
        finally:
            f.ckpt_lock.release()

    def _close_file(self, f: _File) -> None:
        try:
            self._checkpoint(f, force=True)
        except OSError:
            pass
        if f.fd >= 0:
            os.close(f.fd)
            f.fd = -1
        if f.lock is not None:
            f.lock.release()
            f.lock = None

    def _disk_full_error(self) -> DiskSpaceError:
        needed = sum(
            (f.size or 0) - (f.hasher.written_total() if f.hasher else 0)
            for f in self.files if f.state not in (DONE, FAILED)
        )
        try:
            free = shutil.disk_usage(self.target).free
        except OSError:
            free = 0
        return DiskSpaceError(str(self.target), needed, free)

    # -------------------------------------------------------------------- results

    def report(self, elapsed: float) -> FetchReport:
        done = tuple(f.result for f in self.files if f.result is not None)
        failed = tuple((f.job.path, f.error) for f in self.files if f.error is not None)
        return FetchReport(self.target, done, failed, elapsed)


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n


def _content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """``bytes START-END/TOTAL`` -> (start, end, total); None for parts that are missing or '*'."""
    if not value or not value.strip().lower().startswith("bytes"):
        return None, None, None
    spec = value.strip()[5:].strip()
    rng, _, total = spec.partition("/")
    start, _, end = rng.partition("-")

    def num(s: str) -> int | None:
        s = s.strip()
        return int(s) if s.isdigit() else None

    return num(start), num(end), num(total)


def _error_for(f: _File, cand: _Cand, exc: TransferError) -> ModelZooError:
    """The typed error one failed candidate stands for (its message names the source)."""
    from ..errors import GatedRepoError, HubProtocolError, HubServerError, HubUnreachableError, RateLimitedError

    src, url = cand.source, cand.remote.url
    if exc.kind == "size":
        return SizeMismatchError(f.job.path, f.size or -1, _served_size(exc.reason), source=src)
    if exc.status == 429:
        return RateLimitedError(src, retry_after=exc.retry_after, url=url)
    if exc.status in (401, 403):
        return GatedRepoError(src, f.job.path, token_env=None, status=exc.status)
    if exc.status is not None and exc.status >= 500:
        return HubServerError(src, exc.status, url=url, detail=f"for {f.job.path}")
    if exc.status is not None or exc.kind == "protocol":
        return HubProtocolError(src, f"{exc.reason} for {f.job.path}", url=url)
    return HubUnreachableError(src, url, reason=exc.reason)


def _served_size(reason: str) -> int:
    try:
        return int(reason.split()[1])
    except (IndexError, ValueError):
        return -1


def _final_error(f: _File) -> ModelZooError:
    """The error for a file no candidate could deliver."""
    errors = [c.error for c in f.cands if c.error is not None]
    if errors and all(isinstance(e, (HashMismatchError, SizeMismatchError)) for e in errors):
        return errors[-1]
    return DownloadFailedError(f.job.path, [f"{c.source}: {c.dead}" for c in f.cands if c.dead])


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
) -> FetchReport:
    """Fetch every job into ``target_dir``; return what was done, file by file.

    Raises, before writing anything, ``UnsafePathError`` for any unsafe path. Raises
    ``DiskSpaceError`` when the disk fills (partials are kept for the next run). When some files
    could not be fetched from any candidate, the others are completed first and then the first
    failed file's error is raised (``DownloadFailedError``, ``HashMismatchError``, ...), with the
    ``FetchReport`` attached as ``error.report``. ``on_event`` is called on this thread only.
    Pass ``client`` to route requests through an ``httpx.Client``; by default a pooled
    ``http.client`` transport is used, which costs far less CPU per byte.
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
    run = _Run(jobs, target_dir, options, transport)
    try:
        run.execute(on_event)
    finally:
        transport.close()
    if run.fatal is not None:
        raise run.fatal
    report = run.report(time.monotonic() - t0)
    if report.failed:
        error = report.failed[0][1]
        error.report = report  # type: ignore[attr-defined]
        raise error
    _cleanup_partial_dirs(target_dir)
    return report
