"""One ranged request of one segment: which Range to ask, what the answer must look like, and
the loop that streams its body into the partial file while hashing it.

Reads gather what arrives for at most ``read_interval`` before it is written and counted, so
progress (and the silence that triggers a hedge) is seen within a fraction of a second on any
link, while a fast link still writes whole chunks. A range in a hedge race writes only the
bytes its twin has not (``Race.claimed``); the one that falls behind stops.
"""

from __future__ import annotations

import os
import time
from typing import Any

from . import policy
from .http_fetch import Response, TransferError, status_error
from .staging import Staging
from .state import Cancelled, CandidateState, FileStatus, Race, RunState, Segment

_PROGRESS_RESETS_FAILURES = 4 * 1024 * 1024  # one request this productive forgives earlier failures


class Transfer:
    """Runs requests for the scheduler; ``staging`` saves the sidecar as bytes arrive."""

    def __init__(self, run: RunState, staging: Staging) -> None:
        self.run = run
        self.staging = staging

    def request(self, seg: Segment, cand: CandidateState, buf: memoryview) -> None:
        """One request for ``seg`` from ``cand``: its body, as far as it goes, into the file."""
        run = self.run
        f = seg.file
        size = self.request_size(cand.source)
        with run.cv:
            rng, seg.req_end = policy.range_for(f, seg, cand.remote.supports_range, run.o, size)
        remote = cand.remote
        sent = time.monotonic()
        resp = run.transport.get(remote.url, remote.headers, rng, remote.credential_domains)
        self._heard_headers(cand.source, time.monotonic() - sent)
        with run.cv:
            seg.response = resp
            gone = seg.cancelled
        try:
            if gone:
                return
            skip, body_end = self._check_response(seg, cand, resp, rng)
            self._stream(seg, cand, resp, buf, skip, body_end)
        finally:
            with run.cv:
                seg.response = None
            resp.close(reusable=True)

    def request_size(self, source: str) -> int:
        """Bytes to ask for: many round trips' worth at this source's per-connection rate."""
        run = self.run
        with run.cv:
            rate = policy.source_rates(run.files, time.monotonic()).get(source)
            rtt = run.ttfb.get(source)
        return policy.request_size(run.o, rate, rtt)

    def _heard_headers(self, source: str, seconds: float) -> None:
        run = self.run
        with run.cv:
            run.ttfb[source] = min(seconds, run.ttfb.get(source, seconds))
            run.ttfb_samples.append((time.monotonic(), source, seconds))

    def _check_response(
        self, seg: Segment, cand: CandidateState, resp: Any, rng: str | None
    ) -> tuple[int, int | None]:
        """Validate status and lengths: (leading body bytes to skip, file offset the body ends
        at)."""
        run = self.run
        f = seg.file
        status = resp.status
        if status == 206:
            start, end, total = _content_range(resp.header("content-range"))
            if start != seg.pos or end is None or end < start:
                raise TransferError(
                    f"asked for {rng}, got Content-Range {resp.header('content-range')}",
                    retriable=True,
                    kind="protocol",
                )
            self._learn_size(seg, total)
            with run.cv:
                if f.splittable is None:
                    f.splittable = f.size is not None and f.size >= run.o.range_split_threshold
                    run.cv.notify_all()  # idle workers may now take ranges of this file
            return 0, end + 1
        if status == 200:
            length = resp.header("content-length")
            self._learn_size(seg, int(length) if length and length.isdigit() else None)
            if rng is None and seg.pos == 0:
                with run.cv:
                    if f.splittable is None:
                        f.splittable = False
                return 0, f.size
            with (
                run.cv
            ):  # the server ignored Range: read the body from its start, skip what we have
                f.range_ignored = True
                f.splittable = False
                run.no_range.add(cand.source)
            return seg.pos, f.size
        if status == 416 and f.size is None and seg.end is None and seg.pos > 0:
            # an unknown-size partial that already holds every byte (the run ended before its
            # rename): "bytes */N" with N where the partial ends means the file is complete
            total = _content_range(resp.header("content-range"))[2]
            if total == seg.pos:
                self._learn_size(seg, total)
                return 0, total
            if total is not None and total < seg.pos:
                self._restart_unsized(seg)
        raise status_error(status, resp.header("retry-after"))

    def _learn_size(self, seg: Segment, total: int | None) -> None:
        f = seg.file
        if total is None:
            return
        if f.size is not None and total != f.size:
            raise TransferError(
                f"serves {total} bytes, expected {f.size}", retriable=False, kind="size"
            )
        if f.size is None:
            if total < seg.pos:
                self._restart_unsized(seg)
            with self.run.cv:
                f.size = total
                if seg.end is None:
                    seg.end = total
            os.ftruncate(f.fd, total)

    def _restart_unsized(self, seg: Segment) -> None:
        """An unknown-size partial holds more bytes than the file now served, so it was another
        version of it: forget its bytes and fetch the file from the start (one stream, no peers)."""
        f = seg.file
        assert f.hasher is not None
        f.hasher.catch_up()  # the hashing thread must be idle before its state is reset
        f.hasher.reset()
        os.ftruncate(f.fd, 0)
        with self.run.cv:
            f.discarded += seg.pos
            f.downloaded = f.resumed = 0
            f.by_source.clear()
            f.partial_sources.clear()
            seg.pos = 0
        raise TransferError(
            "the partial file holds more bytes than the file now served (it changed "
            "since): fetching it again from the start",
            retriable=True,
            kind="protocol",
        )

    def _fill(self, resp: Response, view: memoryview) -> int:
        """Read into ``view`` until it is full, the body ends, or ``read_interval`` has passed
        since bytes first arrived: 0 only at the end of the body."""
        n = resp.read_some(view)
        if n == 0:
            return 0
        deadline = time.monotonic() + self.run.o.read_interval
        while n < len(view) and time.monotonic() < deadline:
            got = resp.read_some(view[n:])
            if got == 0:
                break
            n += got
        return n

    def _stream(
        self,
        seg: Segment,
        cand: CandidateState,
        resp: Any,
        buf: memoryview,
        skip: int,
        body_end: int | None,
    ) -> None:
        run = self.run
        f = seg.file
        assert f.hasher is not None
        start_pos = seg.pos
        while skip > 0:
            if run.cancel.is_set():
                raise Cancelled()
            n = resp.readinto(buf[: min(len(buf), skip)])
            if n == 0:
                raise TransferError(
                    "body ended before the requested range", retriable=True, kind="short"
                )
            skip -= n
            with run.cv:
                f.discarded += n
        with run.cv:
            active = f.status is FileStatus.ACTIVE and not seg.cancelled
            end = seg.end if body_end is None or seg.end is None else min(seg.end, body_end)
        while active:
            if run.cancel.is_set():
                raise Cancelled()
            want = len(buf) if end is None else min(len(buf), end - seg.pos)
            if want <= 0:
                return
            # a stream that fills a chunk within the read interval anyway reads whole chunks (in C,
            # far less CPU per byte); a slower one gathers what arrives for at most that long
            fast = seg.got >= len(buf) and seg.rate(time.monotonic()) * run.o.read_interval >= len(
                buf
            )
            n = resp.readinto(buf[:want]) if fast else self._fill(resp, buf[:want])
            if n == 0:
                if end is None:  # unknown size: the body ended, so the file did
                    with run.cv:
                        f.size = seg.end = seg.pos
                    os.ftruncate(f.fd, seg.pos)
                    return
                raise TransferError(
                    f"body ended early: {seg.pos - start_pos} bytes of the "
                    f"{end - start_pos} asked for",
                    retriable=True,
                    kind="short",
                )
            pos, now = seg.pos, time.monotonic()
            with run.cv:  # a hedged range writes only what its twin has not
                if seg.cancelled:  # gave way while these bytes came in: they are its twin's
                    f.discarded += n
                    return
                lo = pos
                race = seg.race
                if race is not None:
                    lo = min(max(pos, race.claimed), pos + n)
                    race.claimed = max(race.claimed, pos + n)
            if lo < pos + n:
                view = buf[lo - pos : n]
                _pwrite_all(f.fd, view, lo)
                f.hasher.wrote(lo, view)
            with run.cv:  # one short critical section per chunk: account, and re-read the end
                fresh = pos + n - lo
                seg.pos = pos + n
                seg.got += n
                seg.heard(now)
                f.downloaded += fresh
                f.unreported += fresh  # the calling thread turns these into Progress events
                f.discarded += n - fresh
                if fresh:
                    f.by_source[cand.source] = f.by_source.get(cand.source, 0) + fresh
                    if cand.source not in f.partial_sources:
                        f.partial_sources[cand.source] = None
                if seg.pos - start_pos >= _PROGRESS_RESETS_FAILURES:
                    cand.failures = 0
                cand.renewals = 0  # this URL works: a later refusal may renew it again
                if race is not None:
                    _settle_race(seg, race, behind=fresh == 0)
                active = f.status is FileStatus.ACTIVE and not seg.cancelled
                end = seg.end if body_end is None or seg.end is None else min(seg.end, body_end)
            self.staging.checkpoint(f)


def _settle_race(seg: Segment, race: Race, *, behind: bool) -> None:
    """Under the run's lock, after ``seg`` wrote a chunk: a racer that only repeated its twin's
    bytes gives up; one that reached the end wins and stops the other."""
    if behind:
        seg.cancelled = True
        return
    if race.end is not None and race.claimed >= race.end:
        for other in race.members:
            if other is not seg and not other.cancelled:
                other.cancelled = True
                if other.response is not None:
                    other.response.abort()


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
