"""Hashing files fast: large reads into one reused buffer, many files on many threads.

hashlib releases the GIL while it hashes a large buffer, so threads scale across cores; the
reads are 8 MiB so the per-call overhead stays far below the hashing cost.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

READ_SIZE = 8 * 1024 * 1024


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def sha256_file(path: Path, *, read_size: int = READ_SIZE, on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
    """(hex sha256, size in bytes) of one file, read sequentially once."""
    h = hashlib.sha256()
    buf = bytearray(read_size)
    view = memoryview(buf)
    total = 0
    with open(path, "rb", buffering=0) as fh:
        try:
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except (AttributeError, OSError):  # pragma: no cover - not everywhere
            pass
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
        return dict(zip(items, pool.map(one, items)))
