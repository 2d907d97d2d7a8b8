"""The one atomic write: all or nothing, readable per the umask, no temp file left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from model_zoo.errors import LocalWriteError
from model_zoo.store.atomic import write_atomic, write_json_atomic


def test_bytes_text_chunks_and_json(tmp_path: Path) -> None:
    write_atomic(tmp_path / "a.bin", b"\x00\x01")
    write_atomic(tmp_path / "b.txt", "héllo")
    write_atomic(tmp_path / "c.bin", [b"ab", memoryview(b"cd")])
    write_json_atomic(tmp_path / "sub" / "d.json", {"k": "ü"})
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "c.bin").read_bytes() == b"abcd"
    assert (tmp_path / "sub" / "d.json").read_text(encoding="utf-8") == '{\n  "k": "ü"\n}\n'


def test_a_failing_writer_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "keep.txt"
    target.write_text("old")

    def chunks():
        yield b"new, half"
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_atomic(target, chunks())
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_permissions_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o640


def test_an_unwritable_place_is_a_local_write_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(LocalWriteError):
        write_atomic(blocker / "x.json", b"{}")
