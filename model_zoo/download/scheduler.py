"""The scheduler: worker threads, what each takes next, work stealing, retries and fallbacks.

A worker takes, in this order: a file whose bytes are all on disk (finalise it), an unclaimed
byte range of a file in progress, a file nobody has started, or the tail of the range that
will take longest (work stealing). Events go to a queue the calling thread drains.
"""

from __future__ import annotations

import errno
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import ModelZooError, SizeMismatchError
from ..hubs.base import RemoteFile
from . import progress as ev
from .engine import FetchReport
from .failures import error_for, final_error
from .http_fetch import TransferError
from .staging import StagingMixin
from .state import (
    ACTIVE,
    DEFERRED,
    DONE,
    FAILED,
    FINISHING,
    OPENING,
    PENDING,
    Cancelled,
    Candidate,
    FileState,
    Segment,
)
from .cpu import CpuIdle
from .transfer import TransferMixin

MiB = 1024 * 1024
_ALIGN = 64 * 1024
_MATURE = 2 * MiB  # a range that has received this much (or run this long) has a meaningful rate
_MATURE_AGE = 0.5
_RECHECK = 0.1  # how often idle workers look for a range worth stealing
_PROGRESS_EVERY = 0.1  # seconds between Progress events (workers only count bytes)
_WORKER_EXITED = object()  # what a worker queues as it ends
_CHEAP_RATE = 50e6  # below this total rate (bytes/s) the CPU cost of splitting is negligible
_IDLE_ENOUGH = 0.25  # split faster streams only while this much of the machine's CPU is idle
_MAX_RENEWALS = 2  # fresh URLs in a row without a byte delivered before the refusal counts


class Run(TransferMixin, StagingMixin):
    """One call of ``fetch``: ``execute`` runs the workers and relays their events."""

    cpu = CpuIdle()

    def execute(self, on_event: Callable[[ev.Event], None] | None) -> None:
        n = max(1, min(self.o.max_workers, 64))
        workers = [threading.Thread(target=self._worker, name=f"model-zoo-fetch-{i}", daemon=True)
                   for i in range(n)]
        for w in workers:
            w.start()
        last_flush = time.monotonic()
        running = len(workers)
        self._announced: set[str] = set()
        try:
            while running:
                try:
                    item = self.events.get(timeout=_PROGRESS_EVERY)
                except queue.Empty:
                    item = None
                if item is _WORKER_EXITED:
                    running -= 1
                    continue
                if item is not None or time.monotonic() - last_flush >= _PROGRESS_EVERY:
                    self._flush(on_event)  # progress first, so it precedes a file's FileDone
                    last_flush = time.monotonic()
                if isinstance(item, ev.FileStart):
                    self._announced.add(item.path)
                if item is not None and on_event is not None:
                    on_event(item)
            self._flush(on_event)
            for w in workers:
                w.join()
        except BaseException:
            self.cancel.set()
            self.transport.abort_all()
            for w in workers:  # reads end at once (aborted) or at the stall timeout (httpx)
                w.join()
            raise
        finally:
            self.cancel.set()
            if not any(w.is_alive() for w in workers):  # never close an fd a worker may still use
                for f in self.files:
                    if f.state not in (DONE, FAILED) or f.fd >= 0 or f.lock is not None:
                        self._close_file(f)

    def _flush(self, on_event: Callable[[ev.Event], None] | None) -> None:
        with self.cv:  # only files already announced, so Progress never precedes FileStart
            ready = [f for f in self.files if f.unreported and f.job.path in self._announced]
            counts = [(f.job.path, f.unreported) for f in ready]
            for f in ready:
                f.unreported = 0
        if on_event is not None:
            for path, n in counts:
                on_event(ev.Progress(path, n))

    def _worker(self) -> None:
        try:
            self._work()
        finally:
            self.events.put(_WORKER_EXITED)

    def _work(self) -> None:
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
            except Cancelled:
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
                if any(f.state == ACTIVE and f.splittable for f in self.files):
                    wait = min(wait, _RECHECK)  # ranges in flight may become worth stealing
                self.cv.wait(timeout=wait)

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

    def _claimed_gap(self, f: FileState) -> tuple[int, int | None] | None:
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

    def _new_segment(self, f: FileState) -> Segment | None:
        if f.segs and f.splittable is not True:
            return None  # wait for the first response to show whether ranges work
        gap = self._claimed_gap(f)
        if gap is None:
            return None
        cand = self._choose(f, gap[0])
        if cand is None:
            return None
        return self._add_seg(f, gap[0], gap[1], cand)

    def _add_seg(self, f: FileState, start: int, end: int | None, cand: int) -> Segment:
        seg = Segment(f, start, end, cand)
        f.segs.append(seg)
        src = f.cands[cand].source
        self.inflight[src] = self.inflight.get(src, 0) + 1
        return seg

    def _choose(self, f: FileState, start: int) -> int | None:
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

    def _steal(self, now: float) -> Segment | None:
        """Split off the tail of the range that will take longest.

        Splits happen beyond the request in flight (nothing is fetched twice); only in the
        endgame, when a range's owner still needs more than ``endgame_eta`` seconds, is its
        request cut short, costing the bytes already on the wire.
        """
        best: tuple[bool, float, Segment, int] | None = None
        part = self.o.part_size
        rates = self._source_rates(now)
        more_streams_help = self._more_streams_help(now)
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
                if not mature or eta < self.o.split_min_eta:
                    continue  # a fast stream costs less CPU than two halves hashed in turn
                if s.end - free_from >= 2 * part and more_streams_help:
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

    def _more_streams_help(self, now: float) -> bool:
        """Whether another stream can add throughput rather than only CPU work.

        Splitting a file costs CPU (its later part is read back to be hashed in order, and the
        tail is hashed after the download). That pays when the network is the limit, not when
        the CPUs are: so split while the machine has idle CPU, or while the total rate is low
        enough that its CPU cost does not matter.
        """
        total = sum(s.rate(now) for f in self.files for s in f.segs
                    if s.got >= _MATURE or now - s.started >= _MATURE_AGE)
        return total < _CHEAP_RATE or self.cpu.idle_fraction(now) >= _IDLE_ENOUGH

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

    def _run_seg(self, seg: Segment, buf: memoryview) -> None:
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
                used = cand.remote
                try:
                    self._request(seg, cand, buf)
                except TransferError as exc:
                    self._failed_request(seg, cand, exc, used)
        finally:
            # record what is here, also when every byte is: a run that ends before the rename (a
            # kill, a crash, a failure while finishing) then resumes with nothing to fetch
            self._checkpoint(f, force=True)
            with self.cv:
                f.segs.remove(seg)
                src = f.cands[seg.cand].source
                self.inflight[src] -= 1
                last = not f.segs
                self.cv.notify_all()
            if last and f.state == FAILED:
                self._close_file(f)

    def _move(self, seg: Segment, cand: int) -> None:
        old = seg.file.cands[seg.cand].source
        self.inflight[old] -= 1
        seg.cand = cand
        new = seg.file.cands[cand].source
        self.inflight[new] = self.inflight.get(new, 0) + 1

    def _failed_request(self, seg: Segment, cand: Candidate, exc: TransferError, used: RemoteFile) -> None:
        """``used``: the RemoteFile the failed request went to (the candidate's may be newer)."""
        f = seg.file
        if self._renewed(f, cand, exc, used):
            return  # the segment goes on at once, from seg.pos, with the fresh URL
        with self.cv:
            if cand.dead is not None or f.state != ACTIVE:
                return
            cand.failures += 1
            f.retries += 1
            give_up = not exc.retriable or cand.failures > self.o.retries
            if give_up:
                self._kill_candidate(f, cand, error_for(f, cand, exc))
                return
            attempt = cand.failures
        delay = self._backoff(attempt, exc)
        self.events.put(ev.Retry(f.job.path, cand.source, attempt, exc.reason, round(delay, 3)))
        if self.cancel.wait(delay):
            raise Cancelled()

    def _renewed(self, f: FileState, cand: Candidate, exc: TransferError, used: RemoteFile) -> bool:
        """A presigned URL refused (expired): get a fresh one from ``renew``. True when the
        candidate now has a URL worth trying (or was dropped here); False to handle ``exc``
        as any other failure (not presigned, no renew, or renewing did not help twice).
        ``used`` is the RemoteFile the failed request went to."""
        if self.renew is None or exc.status not in (401, 403) or not used.expires:
            return False
        with self.cv:
            if cand.dead is not None or f.state != ACTIVE:
                return False
            if cand.remote is not used:
                return True  # another range of this file already renewed it: just go again
            if cand.renewals >= _MAX_RENEWALS:
                return False
            cand.renewals += 1
            stale = cand.remote
        try:
            fresh = self.renew(cand.source, f.job.path, stale)
        except ModelZooError as error:  # the listing itself failed (hub down, access revoked)
            with self.cv:
                if cand.dead is None:
                    self._kill_candidate(f, cand, error)
            return True
        if fresh is None:
            return False
        if f.size is not None and fresh.size is not None and fresh.size != f.size:
            with self.cv:
                if cand.dead is None:
                    self._kill_candidate(f, cand, SizeMismatchError(f.job.path, f.size, fresh.size,
                                                                    source=cand.source))
            return True
        with self.cv:
            if cand.remote is stale:  # another worker may have renewed it meanwhile
                cand.remote = fresh
        self.events.put(ev.Retry(f.job.path, cand.source, cand.renewals,
                                 f"{exc.reason}: the URL expired; listed again for a fresh one", 0.0))
        return True

    def _backoff(self, attempt: int, exc: TransferError) -> float:
        if exc.retry_after is not None:
            return min(exc.retry_after, self.o.retry_after_max)
        base = min(self.o.backoff_max, self.o.backoff_base * (2 ** (attempt - 1)))
        return base * random.uniform(0.5, 1.5)

    def _kill_candidate(self, f: FileState, cand: Candidate, error: ModelZooError) -> None:
        """Called under ``cv``: this file stops using ``cand``; fail the file if nothing is left."""
        cand.dead = str(error)
        cand.error = error
        left = f.usable()
        to = f.cands[left[0]].source if left else None
        fb = ev.Fallback(f.job.path, cand.source, to, str(error))
        f.fallbacks.append(fb)
        self.events.put(fb)
        if not left:
            f.error = final_error(f)
            f.state = FAILED
            self.events.put(ev.FileFailed(f.job.path, str(f.error)))
        self.cv.notify_all()

    def report(self, elapsed: float) -> FetchReport:
        done = tuple(f.result for f in self.files if f.result is not None)
        failed = tuple((f.job.path, f.error) for f in self.files if f.error is not None)
        return FetchReport(self.target, done, failed, elapsed)
