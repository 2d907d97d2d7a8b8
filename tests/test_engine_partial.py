"""Written-range bookkeeping, the in-order hasher, and the sidecar format."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import threading
from itertools import pairwise
from pathlib import Path

import pytest

from model_zoo.download.hashing import OrderedHasher
from model_zoo.download.partial import IntervalSet, Sidecar, load_sidecar, save_sidecar


def test_interval_set_matches_a_byte_map() -> None:
    rng = random.Random(7)
    size = 500
    for _ in range(200):
        ivs = IntervalSet()
        covered = [False] * size
        for _ in range(rng.randint(0, 12)):
            a = rng.randint(0, size)
            b = rng.randint(a, min(size, a + 80))
            ivs.add(a, b)
            for i in range(a, b):
                covered[i] = True
        assert ivs.total() == sum(covered)
        gaps = ivs.gaps(size)
        assert sum(e - s for s, e in gaps) == size - sum(covered)
        for s, e in gaps:
            assert not any(covered[s:e])
        ranges = ivs.ranges()
        assert all(r1[1] < r2[0] for r1, r2 in pairwise(ranges)), "merged and disjoint"
        for off in range(0, size, 7):
            end = ivs.contiguous_end(off)
            assert all(covered[off:end]) and (end == size or not covered[end] or end == off)


@pytest.mark.parametrize("background", [False, True], ids=["inline", "hashing-thread"])
def test_ordered_hasher_with_out_of_order_writes_from_threads(
    tmp_path: Path, background: bool
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    path = tmp_path / "f.part"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    os.ftruncate(fd, len(data))
    hasher = OrderedHasher(fd, background=background)
    pieces = [(i, min(i + 65536, len(data))) for i in range(0, len(data), 65536)]
    random.Random(3).shuffle(pieces)
    chunks = [pieces[i::4] for i in range(4)]

    def writer(mine: list[tuple[int, int]]) -> None:
        for a, b in mine:
            view = memoryview(data)[a:b]
            os.pwrite(fd, view, a)
            hasher.wrote(a, view)

    threads = [threading.Thread(target=writer, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hasher.catch_up()
    assert hasher.hashed == len(data)
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
    hasher.close()
    os.close(fd)


def test_hashing_thread_reports_a_read_error_to_the_waiter(tmp_path: Path) -> None:
    path = tmp_path / "short.part"
    path.write_bytes(b"x" * 100)
    fd = os.open(path, os.O_RDWR)
    hasher = OrderedHasher(
        fd, IntervalSet([(0, 1000)]), background=True
    )  # claims more than is there
    with pytest.raises(OSError, match="shorter"):
        hasher.catch_up()
    hasher.close()
    os.close(fd)


def test_ordered_hasher_resumes_by_reading_the_prefix_once(tmp_path: Path) -> None:
    data = os.urandom(1_000_000)
    path = tmp_path / "f.part"
    path.write_bytes(data[:600_000] + b"\0" * 400_000)
    fd = os.open(path, os.O_RDWR)
    hasher = OrderedHasher(fd, IntervalSet([(0, 600_000)]))
    hasher.catch_up()
    assert hasher.hashed == 600_000
    rest = memoryview(data)[600_000:]
    os.pwrite(fd, rest, 600_000)
    hasher.wrote(600_000, rest)
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
    hasher.reset()
    assert hasher.hashed == 0 and hasher.written_total() == 0
    os.close(fd)


def test_sidecar_round_trip_and_garbage(tmp_path: Path) -> None:
    sc = tmp_path / "x.part.json"
    state = Sidecar("a/b.bin", 10, "ab" * 32, '"etag"', [(0, 4), (6, 8)], ["hf", "modelscope"])
    save_sidecar(sc, state)
    back = load_sidecar(sc)
    assert back == state
    assert back.matches("a/b.bin", 10, "ab" * 32) and not back.matches("a/b.bin", 11, "ab" * 32)
    assert [p.name for p in tmp_path.iterdir()] == ["x.part.json"]  # no temporary left behind
    for junk in (
        "",
        "{",
        '{"format": "other", "version": 1}',
        '{"format": "model-zoo-partial", "version": 1}',
        '{"format": "model-zoo-partial", "version": 1, "path": "a", "written": [[5, 2]]}',
    ):
        sc.write_text(junk)
        assert load_sidecar(sc) is None
    assert load_sidecar(tmp_path / "missing.json") is None


# ------------------------------------------------------------------------- sidecar saves cut short


@pytest.mark.timeout(60)
def test_sidecar_save_cut_short_by_a_full_disk_keeps_the_older_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sidecar = tmp_path / "f.part.json"
    old = Sidecar("f", 100, None, None, [(0, 10)], ["hf"])
    save_sidecar(sidecar, old)
    real_write = os.write
    calls = {"n": 0}

    def nearly_full(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, memoryview(data)[:7])  # what fits, as write(2) does
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", nearly_full)
    with pytest.raises(OSError):
        save_sidecar(sidecar, Sidecar("f", 100, None, None, [(0, 50)], ["hf"]))
    monkeypatch.setattr(os, "write", real_write)
    assert load_sidecar(sidecar) == old  # not half a JSON document that discards every byte
    assert [p.name for p in tmp_path.iterdir()] == ["f.part.json"]  # no temporary left behind


@pytest.mark.timeout(60)
def test_short_writes_still_save_the_whole_sidecar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sidecar = tmp_path / "f.part.json"
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, memoryview(data)[:5]))
    state = Sidecar("f", 100, None, None, [(0, 50), (60, 70)], ["hf"])
    save_sidecar(sidecar, state)
    monkeypatch.setattr(os, "write", real_write)
    assert load_sidecar(sidecar) == state
