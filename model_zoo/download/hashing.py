"""sha256 of a file whose byte ranges arrive out of order, computed without a second full pass.

sha256 must see the bytes in file order. ``OrderedHasher`` keeps a *frontier*: everything
before it is hashed. A worker that writes a chunk starting exactly at the frontier hashes that
chunk from memory, straight after ``pwrite`` (the common case: one stream per file, or the
first range of a split file). Chunks written further on are only recorded; when the frontier
reaches them, whichever thread holds the frontier hashes them from the page cache (they were
written moments ago) through a memory map, which saves the copy a read would make. One thread
hashes at a time (a busy flag, checked and cleared under the same lock as the written ranges,
so no chunk is ever forgotten), and hashing runs outside that lock, with the GIL released by
hashlib, so other workers keep receiving.

Large files hash on a thread of their own (``background``), hashing each contiguous run from
the page cache as soon as it is written: receiving and hashing then use two cores.

On resume, ``catch_up`` reads the partial's written prefix once to rebuild the state; Python's
hashlib cannot save a sha256 midway, so that read is the cost of resuming.
"""

from __future__ import annotations

import hashlib
import os
import threading

from ..store.hashing import update_mapped
from .partial import IntervalSet

READ_BACK = 4 * 1024 * 1024
# Bytes mapped at once to hash what workers wrote out of order. Mapped pages count in the
# process's resident set while mapped, and every large file in flight hashes at once, so this
# bounds the pull's memory (files x window), whatever the checkpoint's size.
WINDOW = 16 * 1024 * 1024


class OrderedHasher:
    """Written ranges of one file plus the sha256 of its contiguous prefix; thread-safe.

    ``background=True`` (large files) hashes on a thread of its own instead of on the workers:
    workers only record their writes, and the hashing thread hashes the new contiguous bytes from
    the page cache moments later (memory-mapped, no copy). That lets receiving and hashing
    run on different cores at once, which is what a CPU-bound download needs.
    """

    def __init__(
        self, fd: int, written: IntervalSet | None = None, *, background: bool = False
    ) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.written = written if written is not None else IntervalSet()
        self._h = hashlib.sha256()
        self.hashed = 0
        self._busy = False
        self._buf: bytearray | None = None
        self._background = background
        self._closed = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="model-zoo-hash", daemon=True)
            self._thread.start()

    def wrote(self, start: int, data: memoryview) -> None:
        """Record that ``data`` is now on disk at ``start``; hash it now if it extends the
        frontier."""
        end = start + len(data)
        with self._lock:
            self.written.add(start, end)
            extends = start <= self.hashed < end
            if self._background:
                if extends:
                    self._cond.notify_all()
                return
            take = not self._busy and extends
            if take:
                self._busy = True
                skip = self.hashed - start
        if not take:
            return
        self._h.update(data[skip:])
        with self._lock:
            self.hashed = end
        self._drain()

    def catch_up(self) -> None:
        """Hash whatever written bytes the frontier can reach (reading them back from disk);
        with a hashing thread, wait until it has."""
        if self._background:
            with self._lock:
                while (
                    self._error is None
                    and not self._closed
                    and (self._busy or self.written.contiguous_end(self.hashed) > self.hashed)
                ):
                    self._cond.wait()
                if self._error is not None:
                    raise self._error
            return
        with self._lock:
            if self._busy:
                return
            self._busy = True
        self._drain()

    def close(self) -> None:
        """Stop the hashing thread (call before closing the file descriptor)."""
        with self._lock:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._closed and (
                    self._busy or self.written.contiguous_end(self.hashed) <= self.hashed
                ):
                    self._cond.wait()
                if self._closed:
                    return
                self._busy = True
            try:
                self._drain()
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits in catch_up
                with self._lock:
                    self._error = exc
                    self._cond.notify_all()
                return

    def _drain(self) -> None:
        """Called holding the busy flag; releases it once nothing contiguous is left unhashed."""
        try:
            while True:
                with self._lock:
                    start = self.hashed
                    end = self.written.contiguous_end(start)
                    if end <= start or self._closed:
                        self._busy = False
                        self._cond.notify_all()
                        return
                # straight from the page cache (no copy), a window at a time; plain reads where
                # mapping stops working, which also report a file shorter than its ranges
                reached = update_mapped(self._h, self._fd, start, min(end, start + WINDOW))
                if reached == start:
                    if self._buf is None:
                        self._buf = bytearray(READ_BACK)
                    view = memoryview(self._buf)[: min(READ_BACK, end - start)]
                    n = os.preadv(self._fd, [view], start)
                    if n <= 0:
                        raise OSError(
                            f"partial file is shorter than its recorded ranges (at byte {start})"
                        )
                    self._h.update(view[:n])
                    reached = start + n
                with self._lock:
                    self.hashed = reached
        except BaseException:
            with self._lock:
                self._busy = False
                self._cond.notify_all()
            raise

    def ranges(self) -> list[tuple[int, int]]:
        with self._lock:
            return self.written.ranges()

    def written_total(self) -> int:
        with self._lock:
            return self.written.total()

    def gaps(self, size: int) -> list[tuple[int, int]]:
        with self._lock:
            return self.written.gaps(size)

    def hexdigest(self) -> str:
        with self._lock:
            return self._h.hexdigest()

    def reset(self) -> None:
        """Forget every byte (after a hash mismatch the partial is discarded)."""
        with self._lock:
            self.written = IntervalSet()
            self._h = hashlib.sha256()
            self.hashed = 0
