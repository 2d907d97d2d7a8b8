"""One ranged request of one segment: which Range to ask, what the answer must look like, and
the loop that streams its body into the partial file while hashing it."""

from __future__ import annotations

import os
from typing import Any

from .http_fetch import TransferError, status_error
from .state import ACTIVE, Cancelled, Candidate, FileState, RunState, Segment

_PROGRESS_RESETS_FAILURES = 4 * 1024 * 1024  # one request this productive forgives earlier failures


class TransferMixin(RunState):
    def _range_header(self, f: FileState, seg: Segment, cand: Candidate) -> str | None:
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

    def _request(self, seg: Segment, cand: Candidate, buf: memoryview) -> None:
        f = seg.file
        rng = self._range_header(f, seg, cand)
        remote = cand.remote
        resp = self.transport.get(remote.url, remote.headers, rng, remote.credential_domains)
        try:
            skip, body_end = self._check_response(seg, cand, resp, rng)
            self._stream(seg, cand, resp, buf, skip, body_end)
        finally:
            resp.close(reusable=True)

    def _check_response(self, seg: Segment, cand: Candidate, resp: Any, rng: str | None) -> tuple[int, int | None]:
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
                    self.cv.notify_all()  # idle workers may now take ranges of this file
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
            raise TransferError(f"serves {total} bytes, expected {f.size}", retriable=False, kind="size")
        if f.size is None:
            if total < seg.pos:
                self._restart_unsized(seg)
            with self.cv:
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
        with self.cv:
            f.discarded += seg.pos
            f.downloaded = f.resumed = 0
            f.by_source.clear()
            f.partial_sources.clear()
            seg.pos = 0
        raise TransferError("the partial file holds more bytes than the file now served (it changed "
                            "since): fetching it again from the start", retriable=True, kind="protocol")

    def _stream(self, seg: Segment, cand: Candidate, resp: Any, buf: memoryview, skip: int,
                body_end: int | None) -> None:
        f = seg.file
        assert f.hasher is not None
        start_pos = seg.pos
        while skip > 0:
            if self.cancel.is_set():
                raise Cancelled()
            n = resp.readinto(buf[: min(len(buf), skip)])
            if n == 0:
                raise TransferError("body ended before the requested range", retriable=True, kind="short")
            skip -= n
            with self.cv:
                f.discarded += n
        with self.cv:
            active = f.state == ACTIVE
            end = seg.end if body_end is None or seg.end is None else min(seg.end, body_end)
        while active:
            if self.cancel.is_set():
                raise Cancelled()
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
            with self.cv:  # one short critical section per chunk: account, and re-read the end
                seg.pos += n
                seg.got += n
                f.downloaded += n
                f.unreported += n  # the calling thread turns these into Progress events
                f.by_source[cand.source] = f.by_source.get(cand.source, 0) + n
                if cand.source not in f.partial_sources:
                    f.partial_sources[cand.source] = None
                if seg.pos - start_pos >= _PROGRESS_RESETS_FAILURES:
                    cand.failures = 0
                cand.renewals = 0  # this URL works: a later refusal may renew it again
                active = f.state == ACTIVE
                end = seg.end if body_end is None or seg.end is None else min(seg.end, body_end)
            self._checkpoint(f)


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
