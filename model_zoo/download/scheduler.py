"""The scheduler: worker threads, what each takes next, retries, fallbacks, hedges, and the
connection limit.

A worker takes, in this order: a file whose bytes are all on disk (finalise it), a hedge for a
range that went silent, an unclaimed byte range of a file in progress, a file nobody has
started, or the tail of the range that will take longest (work stealing). New requests start
only while fewer than the controller's limit are in flight (``policy.ConnectionController``,
ticked by the calling thread between progress flushes). Decisions come from ``policy``; bytes
move in ``transfer``; files live and die in ``staging``. Events go to a queue the calling
thread drains.
"""

from __future__ import annotations

import errno
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import ModelZooError, SizeMismatchError
from ..hubs.base import RemoteFile
from . import policy
from . import progress as ev
from .cpu import CpuIdle
from .failures import error_for, final_error
from .http_fetch import TransferError, Transport
from .staging import Staging
from .state import Cancelled, CandidateState, FileState, FileStatus, Race, RunState, Segment
from .transfer import Transfer
from .types import EngineOptions, FetchReport, FileJob, LinkStats, Renew

_PROGRESS_EVERY = (
    0.1  # seconds between Progress events and controller ticks (workers only count bytes)
)
_SPARE_WORKERS = 2  # threads beyond the connection limit: to finish files, and for hedges
_MAX_WORKERS = 66
_WORKER_EXITED = object()  # what a worker queues as it ends
_CHEAP_RATE = 50e6  # below this total rate (bytes/s) the CPU cost of splitting is negligible
_IDLE_ENOUGH = 0.25  # split faster streams only while this much of the machine's CPU is idle
_CAPPED_RATE = (
    40e6  # connections slower than this (bytes/s each) are held back by the link, not the CPU
)
_MAX_RENEWALS = 2  # fresh URLs in a row without a byte delivered before the refusal counts
_RATE_SAMPLE_BYTES = 64 * 1024  # a range this big says what one connection gets
_THROTTLE_STATUSES = (429, 503)

Task = tuple[str, Any]  # ("finish", FileState) | ("open", FileState) | ("seg", Segment)


class Scheduler:
    """One call of ``fetch``: ``execute`` runs the workers and relays their events."""

    cpu = CpuIdle()

    def __init__(
        self,
        jobs: list[FileJob],
        target_dir: Any,
        options: EngineOptions,
        transport: Transport,
        renew: Renew | None = None,
    ) -> None:
        self.run = RunState(jobs, target_dir, options, transport, renew)
        self.staging = Staging(self.run, self._kill_candidate)
        self.transfer = Transfer(self.run, self.staging)
        self.control = policy.ConnectionController(
            cap=options.connections, limit=options.initial_connections, adaptive=options.adaptive
        )
        self._waiting = False  # work waited for a connection since the last tick
        self._throttled_seen = 0
        self._rates: list[float] = []  # bytes/s of each range that ran long enough to tell
        self._t0 = time.monotonic()

    @property
    def files(self) -> list[FileState]:
        return self.run.files

    @property
    def fatal(self) -> BaseException | None:
        return self.run.fatal

    # ---------------------------------------------------------------- the calling thread

    def execute(self, on_event: Callable[[ev.Event], None] | None) -> None:
        run = self.run
        workers: list[threading.Thread] = []

        def spawn(upto: int) -> int:
            """Threads for the connection limit (and a couple to finish files and hedge): as
            many as may work at once, no idle crowd contending for the run's lock."""
            n = 0
            while len(workers) < min(upto + _SPARE_WORKERS, _MAX_WORKERS):
                w = threading.Thread(
                    target=self._worker, name=f"model-zoo-fetch-{len(workers)}", daemon=True
                )
                workers.append(w)
                w.start()
                n += 1
            return n

        running = spawn(self.control.limit)
        last_flush = time.monotonic()
        self._announced: set[str] = set()
        try:
            while running:
                try:
                    item = run.events.get(timeout=_PROGRESS_EVERY)
                except queue.Empty:
                    item = None
                if item is _WORKER_EXITED:
                    running -= 1
                    continue
                if item is not None or time.monotonic() - last_flush >= _PROGRESS_EVERY:
                    self._flush(on_event)  # progress first, so it precedes a file's FileDone
                    running += spawn(self._tick())
                    last_flush = time.monotonic()
                if isinstance(item, ev.FileStart):
                    self._announced.add(item.path)
                if item is not None and on_event is not None:
                    on_event(item)
            self._flush(on_event)
            for w in workers:
                w.join()
        except BaseException:
            run.cancel.set()
            run.transport.abort_all()
            for w in workers:  # reads end at once (aborted) or at the stall timeout (httpx)
                w.join()
            try:  # the bytes of the last moments are on disk: say so (Ctrl-C reports what was kept)
                self._flush(on_event)
            except Exception:  # noqa: BLE001 - never hide why the fetch stopped
                pass
            raise
        finally:
            run.cancel.set()
            if not any(w.is_alive() for w in workers):  # never close an fd a worker may still use
                for f in run.files:
                    if (
                        f.status not in (FileStatus.DONE, FileStatus.FAILED)
                        or f.fd >= 0
                        or f.lock is not None
                    ):
                        self.staging.close(f)

    def _flush(self, on_event: Callable[[ev.Event], None] | None) -> None:
        run = self.run
        with run.cv:  # only files already announced, so Progress never precedes FileStart
            ready = [f for f in run.files if f.unreported and f.job.path in self._announced]
            counts = [(f.job.path, f.unreported) for f in ready]
            for f in ready:
                f.unreported = 0
        if on_event is not None:
            for path, n in counts:
                on_event(ev.Progress(path, n))

    def _tick(self) -> int:
        """Feed the connection controller; wake a worker to look for ranges worth stealing or
        hedging (they do not poll). Returns the connection limit."""
        run = self.run
        with run.cv:
            delivered = sum(f.downloaded for f in run.files)
            throttled, self._throttled_seen = run.throttled - self._throttled_seen, run.throttled
            waiting, self._waiting = self._waiting, False
            slower = policy.first_bytes_slower(run.ttfb_samples, run.ttfb, time.monotonic())
            before = self.control.limit
            if (
                run.ttfb
            ):  # judge the rate over several round trips, never less than a quarter second
                self.control.window = max(0.25, 5 * min(run.ttfb.values()))
            far = bool(run.ttfb) and min(run.ttfb.values()) >= policy.FAR
            after = self.control.tick(
                time.monotonic(),
                delivered,
                waiting=waiting,
                throttled=throttled,
                slower=slower,
                far=far,
            )
            if after > before:
                run.cv.notify_all()
            elif any(f.status is FileStatus.ACTIVE and f.segs for f in run.files):
                run.cv.notify()
        return after

    # ---------------------------------------------------------------- workers

    def _worker(self) -> None:
        try:
            self._work()
        finally:
            self.run.events.put(_WORKER_EXITED)

    def _work(self) -> None:
        buf = memoryview(bytearray(self.run.o.chunk_size))
        while True:
            task = self._take()
            if task is None:
                return
            kind, obj = task
            try:
                if kind == "open":
                    self.staging.open(obj)
                elif kind == "seg":
                    self._run_seg(obj, buf)
                else:
                    self.staging.finish(obj)
            except Cancelled:
                return
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    self._set_fatal(self.staging.disk_full_error())
                else:
                    self._set_fatal(exc)
                return
            except BaseException as exc:  # noqa: BLE001 - reported to the caller of fetch
                self._set_fatal(exc)
                return

    def _set_fatal(self, exc: BaseException) -> None:
        run = self.run
        with run.cv:
            if run.fatal is None:
                run.fatal = exc
            run.cancel.set()
            run.cv.notify_all()
        run.transport.abort_all()

    def _take(self) -> Task | None:
        run = self.run
        with run.cv:
            while True:
                if run.cancel.is_set():
                    return None
                task = self._pick()
                if task is not None:
                    return task
                if all(f.status in (FileStatus.DONE, FileStatus.FAILED) for f in run.files):
                    run.cv.notify_all()
                    return None
                deferred = [f.defer_until for f in run.files if f.status is FileStatus.DEFERRED]
                wait = max(0.01, min(deferred) - time.monotonic()) if deferred else 1.0
                run.cv.wait(timeout=wait)  # the calling thread wakes one of us every tick

    def _pick(self) -> Task | None:
        """The next task, under ``cv``; None when nothing may start now."""
        run = self.run
        now = time.monotonic()
        for f in run.files:  # 1. finalise a file whose bytes are all here
            if (
                f.status is FileStatus.ACTIVE
                and not f.segs
                and f.size is not None
                and f.hasher is not None
                and not f.hasher.gaps(f.size)
            ):
                f.status = FileStatus.FINISHING
                return ("finish", f)
        hedge = self._hedge(now)  # 2. a second request for a range that went silent
        if hedge is not None:
            return ("seg", hedge)
        room = run.busy() + self._opening() < self.control.limit
        for f in run.files:  # 3. an unclaimed range of a file in progress
            if f.status is FileStatus.ACTIVE:
                if not room and f.splittable is not False:
                    if f.splittable is True and policy.claimed_gap(f) is not None:
                        self._waiting = True
                    continue
                seg = self._new_segment(f)
                if seg is not None:
                    return ("seg", seg)
        for f in run.files:  # 4. a file nobody has started
            if f.status is FileStatus.PENDING or (
                f.status is FileStatus.DEFERRED and f.defer_until <= now
            ):
                if not room:
                    self._waiting = True
                    break
                f.status = FileStatus.OPENING
                return ("open", f)
        help_, capped = self._more_streams_help(now)
        split = policy.plan_steal(
            run.files,
            now,
            run.o,
            policy.source_rates(run.files, now),
            help_,
            capped=capped,
            ttfb=run.ttfb,
        )
        if split is not None:  # 5. half of the largest range still to come
            if not room:
                self._waiting = True
                return None
            return self._steal(split)
        return None

    def _opening(self) -> int:
        return sum(1 for f in self.run.files if f.status is FileStatus.OPENING)

    def _new_segment(self, f: FileState) -> Segment | None:
        if f.segs and f.splittable is not True:
            return None  # wait for the first response to show whether ranges work
        gap = policy.claimed_gap(f)
        if gap is None:
            return None
        cand = self._choose(f, gap[0])
        if cand is None:
            return None
        return self._add_seg(f, gap[0], gap[1], cand)

    def _choose(self, f: FileState, start: int, avoid: int | None = None) -> int | None:
        run = self.run
        rates = policy.source_rates(run.files, time.monotonic()) if run.o.multi_source else {}
        return policy.choose_candidate(
            f,
            start,
            multi_source=run.o.multi_source,
            rates=rates,
            inflight=run.inflight,
            no_range=run.no_range,
            avoid=avoid,
        )

    def _add_seg(self, f: FileState, start: int, end: int | None, cand: int) -> Segment:
        run = self.run
        seg = Segment(f, start, end, cand)
        f.segs.append(seg)
        src = f.cands[cand].source
        run.inflight[src] = run.inflight.get(src, 0) + 1
        run.peak_inflight = max(run.peak_inflight, run.busy())
        return seg

    def _steal(self, split: policy.Split) -> Task | None:
        victim = split.victim
        f = victim.file
        assert victim.end is not None
        cand = self._choose(f, split.at)
        if cand is None:
            return None
        new = self._add_seg(f, split.at, victim.end, cand)
        victim.end = split.at
        return ("seg", new)

    def _hedge(self, now: float) -> Segment | None:
        """A duplicate request for the remaining bytes of the range that has been silent
        longest (the same source, or another when several serve the file)."""
        run = self.run
        if run.busy() >= run.o.connections:
            return None
        for stalled in policy.stalled_ranges(run.files, now, run.o, run.ttfb):
            f = stalled.file
            race = stalled.race
            silent = now - max(m.last_byte for m in ([stalled] if race is None else race.members))
            start = stalled.pos if race is None else race.claimed
            cand = self._choose(f, start, avoid=stalled.cand)
            if cand is None:
                continue
            if race is None:
                race = stalled.race = Race(claimed=stalled.pos, end=stalled.end, members=[stalled])
            else:  # every racer went silent: they give way to a fresh request
                for m in race.members:
                    if not m.cancelled:
                        m.cancelled = True
                        if m.response is not None:
                            m.response.abort()
            twin = self._add_seg(f, start, race.end, cand)
            twin.race = race
            race.members.append(twin)
            race.hedges += 1
            f.hedges += 1
            run.events.put(
                ev.Retry(
                    f.job.path,
                    f.cands[cand].source,
                    0,
                    f"no bytes for {silent:.1f} s: a second request races the first",
                    0.0,
                )
            )
            return twin
        return None

    def _more_streams_help(self, now: float) -> tuple[bool, bool]:
        """Whether another stream can add throughput rather than only CPU work.

        Splitting a file costs CPU (its later part is read back to be hashed in order, and the
        tail is hashed after the download). That pays when the network is the limit, not when
        the CPUs are: so split while the total rate is low enough that its CPU cost does not
        matter, while each connection is held far below what the machine takes (a CDN capping
        connections: another one adds its rate, and the connection limit decides how many), or
        while the machine has idle CPU. Also says whether the link caps connections.
        """
        rates = [s.rate(now) for f in self.run.files for s in f.segs if policy.mature(s, now)]
        total = sum(rates)
        capped = bool(rates) and total / len(rates) < _CAPPED_RATE
        if total < _CHEAP_RATE or capped:
            return True, capped
        return self.cpu.idle_fraction(now) >= _IDLE_ENOUGH, capped

    def _run_seg(self, seg: Segment, buf: memoryview) -> None:
        run = self.run
        f = seg.file
        try:
            while not run.cancel.is_set():
                with run.cv:
                    if (
                        f.status is not FileStatus.ACTIVE
                        or seg.cancelled
                        or (seg.end is not None and seg.pos >= seg.end)
                    ):
                        return
                    if (
                        seg.race is not None
                        and seg.race.end is not None
                        and seg.race.claimed >= seg.race.end
                    ):
                        return  # its twin delivered every byte
                    cand = f.cands[seg.cand]
                    if cand.dead is not None:
                        nxt = self._choose(f, seg.pos)
                        if nxt is None:
                            return
                        self._move(seg, nxt)
                        cand = f.cands[nxt]
                used = cand.remote
                try:
                    self.transfer.request(seg, cand, buf)
                except TransferError as exc:
                    with run.cv:
                        lost = seg.cancelled
                    if lost:
                        return  # its twin won the race: the abort is not a failure
                    self._failed_request(seg, cand, exc, used)
        finally:
            # record what is here, also when every byte is: a run that ends before the rename (a
            # kill, a crash, a failure while finishing) then resumes with nothing to fetch
            self.staging.checkpoint(f, force=True)
            with run.cv:
                f.segs.remove(seg)
                src = f.cands[seg.cand].source
                run.inflight[src] -= 1
                if seg.got >= _RATE_SAMPLE_BYTES and not seg.cancelled:
                    self._rates.append(seg.rate(time.monotonic()))
                race = seg.race
                if race is not None:
                    race.members.remove(seg)
                    seg.race = None
                    if len(race.members) == 1:  # the one left goes on alone
                        race.members[0].race = None
                last = not f.segs
                run.cv.notify_all()
            if last and f.status is FileStatus.FAILED:
                self.staging.close(f)

    def _move(self, seg: Segment, cand: int) -> None:
        run = self.run
        old = seg.file.cands[seg.cand].source
        run.inflight[old] -= 1
        seg.cand = cand
        new = seg.file.cands[cand].source
        run.inflight[new] = run.inflight.get(new, 0) + 1

    def _failed_request(
        self, seg: Segment, cand: CandidateState, exc: TransferError, used: RemoteFile
    ) -> None:
        """``used``: the RemoteFile the failed request went to (the candidate's may be newer)."""
        run = self.run
        f = seg.file
        if exc.status in _THROTTLE_STATUSES:
            with run.cv:
                run.throttled += 1
        if self._renewed(f, cand, exc, used):
            return  # the segment goes on at once, from seg.pos, with the fresh URL
        with run.cv:
            if cand.dead is not None or f.status is not FileStatus.ACTIVE:
                return
            cand.failures += 1
            f.retries += 1
            give_up = not exc.retriable or cand.failures > run.o.retries
            if give_up:
                self._kill_candidate(f, cand, error_for(f, cand, exc))
                return
            attempt = cand.failures
        delay = policy.backoff(run.o, attempt, exc.retry_after)
        run.events.put(ev.Retry(f.job.path, cand.source, attempt, exc.reason, round(delay, 3)))
        if run.cancel.wait(delay):
            raise Cancelled()

    def _renewed(
        self, f: FileState, cand: CandidateState, exc: TransferError, used: RemoteFile
    ) -> bool:
        """A presigned URL refused (expired): get a fresh one from ``renew``. True when the
        candidate now has a URL worth trying (or was dropped here); False to handle ``exc``
        as any other failure (not presigned, no renew, or renewing did not help twice)."""
        run = self.run
        if run.renew is None or exc.status not in (401, 403) or not used.expires:
            return False
        with run.cv:
            if cand.dead is not None or f.status is not FileStatus.ACTIVE:
                return False
            if cand.remote is not used:
                return True  # another range of this file already renewed it: just go again
            if cand.renewals >= _MAX_RENEWALS:
                return False
            cand.renewals += 1
            stale = cand.remote
        try:
            fresh = run.renew(cand.source, f.job.path, stale)
        except ModelZooError as error:  # the listing itself failed (hub down, access revoked)
            with run.cv:
                if cand.dead is None:
                    self._kill_candidate(f, cand, error)
            return True
        if fresh is None:
            return False
        if f.size is not None and fresh.size is not None and fresh.size != f.size:
            with run.cv:
                if cand.dead is None:
                    self._kill_candidate(
                        f,
                        cand,
                        SizeMismatchError(f.job.path, f.size, fresh.size, source=cand.source),
                    )
            return True
        with run.cv:
            if cand.remote is stale:  # another worker may have renewed it meanwhile
                cand.remote = fresh
        run.events.put(
            ev.Retry(
                f.job.path,
                cand.source,
                cand.renewals,
                f"{exc.reason}: the URL expired; listed again for a fresh one",
                0.0,
            )
        )
        return True

    def _kill_candidate(self, f: FileState, cand: CandidateState, error: ModelZooError) -> None:
        """Called under ``cv``: this file stops using ``cand``; fail the file if nothing is left."""
        run = self.run
        cand.dead = str(error)
        cand.error = error
        left = f.usable()
        to = f.cands[left[0]].source if left else None
        fb = ev.Fallback(f.job.path, cand.source, to, str(error))
        f.fallbacks.append(fb)
        run.events.put(fb)
        if not left:
            f.error = final_error(f)
            f.status = FileStatus.FAILED
            run.events.put(ev.FileFailed(f.job.path, str(f.error)))
        run.cv.notify_all()

    # ---------------------------------------------------------------- results

    def report(self, elapsed: float) -> FetchReport:
        run = self.run
        done = tuple(f.result for f in run.files if f.result is not None)
        failed = tuple((f.job.path, f.error) for f in run.files if f.error is not None)
        return FetchReport(run.target, done, failed, elapsed, self.link_stats(elapsed))

    def link_stats(self, elapsed: float) -> LinkStats:
        run = self.run
        fetched = sum(f.downloaded for f in run.files)
        rates = sorted(self._rates)
        return LinkStats(
            peak_connections=run.peak_inflight,
            final_limit=self.control.limit,
            rate_per_connection=rates[len(rates) // 2] if rates else None,
            total_rate=fetched / elapsed if fetched and elapsed > 0 else None,
            round_trip=min(run.ttfb.values()) if run.ttfb else None,
            throttled=run.throttled,
        )
