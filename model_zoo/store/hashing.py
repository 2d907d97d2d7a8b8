"""Hashing files fast: memory-mapped windows, many files on many threads.

hashlib releases the GIL while it hashes a large buffer, so threads scale across cores. Bytes
are hashed straight from the page cache through ``mmap`` windows (no copy into a buffer):
measured on the 2-core dev machine, 1 GB in 8 files from the page cache, two threads: 8 MiB
``readinto`` reads 2.0 GB/s, 1 MiB reads 2.2 GB/s, 64 MiB mmap windows 2.4 GB/s, which is
hashlib's own speed on bytes already in memory (2.4 GB/s).

Each window is populated with ``MADV_POPULATE_READ`` (Linux 5.14+) before it is hashed, so an
unreadable page or a file that shrank shows up as an error of that call, not as SIGBUS; the
rest of the file is then read with plain reads, which report it as an ``OSError`` or a short
file. Where a file cannot be mapped at all, plain reads do the whole of it.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

READ_SIZE = 8 * 1024 * 1024  # plain reads (fallback) and the step between progress callbacks
WINDOW = 64 * 1024 * 1024  # bytes mapped at once: bounded address space, few map/unmap calls
_POPULATE_READ: int | None = getattr(
    mmap, "MADV_POPULATE_READ", 22 if sys.platform.startswith("linux") else None
)


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def update_mapped(
    h: Any,
    fd: int,
    start: int,
    end: int,
    *,
    on_bytes: Callable[[int], None] | None = None,
    window: int | None = None,
) -> int:
    """Feed bytes ``[start, end)`` of ``fd`` to ``h`` from memory-mapped windows.

    Returns the offset reached: ``end``, or less where mapping stopped working (the file is
    shorter than ``end``, a page cannot be read, mmap is not supported); the caller reads the
    rest with plain reads, which report such problems as errors.
    """
    global _POPULATE_READ
    window = window or WINDOW
    pos = start
    while pos < end:
        base = pos - pos % mmap.ALLOCATIONGRANULARITY
        stop = min(end, base + window)
        try:
            m = mmap.mmap(fd, stop - base, access=mmap.ACCESS_READ, offset=base)
        except (OSError, ValueError, OverflowError):
            return pos
        try:
            if _POPULATE_READ is not None:
                try:
                    m.madvise(_POPULATE_READ)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        return pos  # unreadable or truncated: plain reads report it
                    _POPULATE_READ = None  # kernel older than 5.14
            with memoryview(m) as view:
                while pos < stop:
                    n = min(stop - pos, READ_SIZE)
                    h.update(view[pos - base : pos - base + n])
                    pos += n
                    if on_bytes is not None:
                        on_bytes(n)
        finally:
            m.close()
    return pos


def sha256_file(
    path: Path, *, read_size: int = READ_SIZE, on_bytes: Callable[[int], None] | None = None
) -> tuple[str, int]:
    """(hex sha256, size in bytes) of one file, read sequentially once."""
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        fd = fh.fileno()
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except (AttributeError, OSError):  # pragma: no cover - not everywhere
            pass
        total = update_mapped(h, fd, 0, os.fstat(fd).st_size, on_bytes=on_bytes)
        # whatever mapping did not cover (a file that grew, or one that cannot be mapped)
        fh.seek(total)
        buf = bytearray(read_size)
        view = memoryview(buf)
        while True:
            n = fh.readinto(buf)
            if not n:
                break
            h.update(view[:n])
            total += n
            if on_bytes is not None:
                on_bytes(n)
    return h.hexdigest(), total


def sha256_many(
    paths: Iterable[Path],
    *,
    workers: int | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> dict[Path, tuple[str, int] | OSError]:
    """Hash many files in parallel, largest first (so one big file does not finish last alone).

    Returns each path's (sha256, size), or the OSError that stopped it.
    """
    items = list(dict.fromkeys(paths))

    def size_of(p: Path) -> int:
        try:
            return p.stat().st_size
        except OSError:
            return 0

    items.sort(key=size_of, reverse=True)
    workers = max(1, min(workers or cpu_count(), len(items) or 1))

    def one(p: Path) -> tuple[str, int] | OSError:
        try:
            return sha256_file(p, on_bytes=on_bytes)
        except OSError as exc:
            return exc

    if workers == 1:
        return {p: one(p) for p in items}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="model-zoo-hash") as pool:
        return dict(zip(items, pool.map(one, items), strict=True))
