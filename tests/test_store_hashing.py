"""File hashing through memory-mapped windows, and the plain reads it falls back to."""

from __future__ import annotations

import hashlib
import mmap
import os
from pathlib import Path
from typing import Any

import pytest

from model_zoo.store import hashing
from model_zoo.store.hashing import sha256_file, sha256_many, update_mapped

PAGE = mmap.ALLOCATIONGRANULARITY
_REAL_MMAP = mmap.mmap


@pytest.mark.parametrize("size", [0, 1, PAGE - 1, PAGE, PAGE + 1, 3 * 65536 + 17])
def test_sha256_file_across_window_edges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setattr(hashing, "WINDOW", 65536)  # many windows, one of them partial
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    seen: list[int] = []
    assert sha256_file(path, on_bytes=seen.append) == (hashlib.sha256(data).hexdigest(), size)
    assert sum(seen) == size


def test_update_mapped_unaligned_ranges(tmp_path: Path) -> None:
    data = os.urandom(5 * PAGE + 123)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        for start, end in [(0, 10), (PAGE - 1, 2 * PAGE + 1), (7, len(data)), (3 * PAGE, 3 * PAGE)]:
            h = hashlib.sha256()
            assert update_mapped(h, fd, start, end, window=2 * PAGE) == end
            assert h.hexdigest() == hashlib.sha256(data[start:end]).hexdigest()
    finally:
        os.close(fd)


def test_update_mapped_stops_where_the_file_ends(tmp_path: Path) -> None:
    path = tmp_path / "short.bin"
    path.write_bytes(b"x" * (2 * PAGE + 10))
    fd = os.open(path, os.O_RDONLY)
    try:
        h = hashlib.sha256()
        reached = update_mapped(h, fd, 0, 10 * PAGE, window=PAGE)
    finally:
        os.close(fd)
    assert reached < 2 * PAGE + 10  # never maps past the end (that would be SIGBUS)
    assert h.hexdigest() == hashlib.sha256(b"x" * reached).hexdigest()


class _Unmappable:
    def __init__(self, *_a: Any, **_k: Any) -> None:
        raise OSError(19, "No such device")  # what a filesystem without mmap support answers


class _PopulateFails:
    """A real mapping whose populate call reports an unreadable page (EIO)."""

    def __init__(self, *a: Any, **k: Any) -> None:
        self._m = _REAL_MMAP(*a, **k)

    def madvise(self, *_a: Any) -> None:
        raise OSError(5, "Input/output error")

    def close(self) -> None:
        self._m.close()


@pytest.mark.parametrize("fake", [_Unmappable, _PopulateFails], ids=["no-mmap", "populate-error"])
def test_falls_back_to_plain_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: type
) -> None:
    data = os.urandom(3 * PAGE + 5)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    monkeypatch.setattr(hashing.mmap, "mmap", fake)
    monkeypatch.setattr(hashing, "_POPULATE_READ", 22)
    assert sha256_file(path) == (hashlib.sha256(data).hexdigest(), len(data))
    got = sha256_many([path, tmp_path / "missing.bin"])
    assert got[path] == (hashlib.sha256(data).hexdigest(), len(data))
    assert isinstance(got[tmp_path / "missing.bin"], OSError)
