"""Review of the engine under odd partials and failures: sidecars that claim more than the
partial holds, sidecar saves cut short by a full disk or a kill, and servers that misbehave."""

from __future__ import annotations

import errno
import os
from dataclasses import replace
from pathlib import Path

import pytest
from fixtures_engine import ENGINE_REPO, assert_tree_matches, fast_options, jobs_for, sha256_of

from model_zoo.download.engine import FileJob, fetch
from model_zoo.download.partial import Sidecar, load_sidecar, save_sidecar
from model_zoo.download.paths import partial_paths
from model_zoo.errors import ModelZooError
from model_zoo.testing.faults import Fault
from model_zoo.testing.hub_server import LocalHub

pytestmark = pytest.mark.timeout(60)

SHARD2 = "model-00002-of-00002.safetensors"


def _unsized(jobs: list[FileJob]) -> list[FileJob]:
    """The jobs as a hub that lists neither size nor sha256 would make them."""
    return [
        FileJob(
            j.path,
            None,
            None,
            tuple(replace(c, size=None, sha256=None) for c in j.candidates),
            j.sources,
        )
        for j in jobs
    ]


def test_unknown_size_partial_shorter_than_its_sidecar_is_resumed_not_fatal(
    engine_hub: LocalHub, tmp_path: Path
) -> None:
    """The sidecar names 500 kB but the partial holds 1000 bytes: keep those, fetch the rest."""
    out = tmp_path / "out"
    data = engine_hub.store.snapshot(ENGINE_REPO).files[SHARD2].real_path.read_bytes()
    jobs = _unsized(jobs_for(engine_hub, paths=[SHARD2]))
    pp = partial_paths(out, SHARD2)
    pp.data.parent.mkdir(parents=True)
    pp.data.write_bytes(data[:1000])
    save_sidecar(
        pp.sidecar, Sidecar(SHARD2, None, None, jobs[0].candidates[0].etag, [(0, 500_000)], ["hf"])
    )
    report = fetch(jobs, out, options=fast_options())
    assert (out / SHARD2).read_bytes() == data
    assert report.files[0].bytes_resumed == 1000
    assert engine_hub.stats.bytes_served(path=SHARD2) == len(data) - 1000


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


def test_sidecar_temporary_of_a_killed_run_is_removed_when_the_file_completes(
    engine_hub: LocalHub, tmp_path: Path
) -> None:
    """kill -9 during a sidecar save leaves ``<sidecar>.<pid>.tmp``; the next run cleans it up."""
    out = tmp_path / "out"
    pp = partial_paths(out, SHARD2)
    pp.data.parent.mkdir(parents=True)
    stale = pp.sidecar.with_name(pp.sidecar.name + ".999999.tmp")
    stale.write_text('{"format": "model-zoo-par')
    fetch(jobs_for(engine_hub), out, options=fast_options())
    assert not stale.exists()
    assert_tree_matches(engine_hub, out)  # nothing but the model's files is left


def test_unknown_size_partial_holding_every_byte_completes_without_refetching(
    engine_hub: LocalHub, tmp_path: Path
) -> None:
    """A run killed between the last byte and the rename: the next asks ``bytes=N-`` and gets
    416 (``bytes */N``), which means complete, not a failure that every later run repeats."""
    out = tmp_path / "out"
    data = engine_hub.store.snapshot(ENGINE_REPO).files[SHARD2].real_path.read_bytes()
    jobs = _unsized(jobs_for(engine_hub, paths=[SHARD2]))
    pp = partial_paths(out, SHARD2)
    pp.data.parent.mkdir(parents=True)
    pp.data.write_bytes(data)
    save_sidecar(
        pp.sidecar,
        Sidecar(SHARD2, None, None, jobs[0].candidates[0].etag, [(0, len(data))], ["hf"]),
    )
    report = fetch(jobs, out, options=fast_options())
    assert (out / SHARD2).read_bytes() == data
    assert report.files[0].bytes_resumed == len(data) and report.files[0].bytes_downloaded == 0
    assert engine_hub.stats.bytes_served(path=SHARD2) == 0


class _LyingRangeServer:
    """Serves one file; every 206 names a Content-Range (or total) other than the bytes sent."""

    def __init__(self, data: bytes, lie: str) -> None:
        import http.server
        import threading

        outer = self
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests += 1
                rng = self.headers.get("Range", "")
                start_s, _, end_s = rng.removeprefix("bytes=").partition("-")
                start = int(start_s or 0)
                end = min(int(end_s) if end_s else len(data) - 1, len(data) - 1)
                body = data[start : end + 1]
                self.send_response(206)
                named = (
                    (start + 4096, end, len(data))
                    if lie == "start"
                    else (start, end, len(data) + 1)
                )
                self.send_header("Content-Range", "bytes %d-%d/%d" % named)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/file"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("lie", ["start", "total"])
def test_206_with_a_wrong_content_range_falls_back_and_keeps_nothing_it_sent(
    engine_hub: LocalHub, tmp_path: Path, lie: str
) -> None:
    from fixtures_engine import BIG

    out = tmp_path / "out"
    data = engine_hub.store.snapshot(ENGINE_REPO).files[BIG].real_path.read_bytes()
    good = jobs_for(engine_hub, paths=[BIG])[0]
    liar = _LyingRangeServer(data, lie)
    try:
        bad = replace(good.candidates[0], url=liar.url)
        job = FileJob(BIG, good.size, good.sha256, (bad, good.candidates[0]), ("liar", "hf"))
        report = fetch([job], out, options=fast_options())
        alone = FileJob(BIG, good.size, good.sha256, (bad,), ("liar",))
        with pytest.raises(ModelZooError) as info:
            fetch([alone], tmp_path / "alone", options=fast_options())
    finally:
        liar.close()
    assert (out / BIG).read_bytes() == data
    assert report.files[0].bytes_by_source.get("liar", 0) == 0
    assert report.files[0].fallbacks[0].from_source == "liar"
    assert liar.requests >= 1
    assert "liar" in str(info.value) and not (tmp_path / "alone" / BIG).exists()


@pytest.mark.parametrize("ignores_range", [False, True])
def test_unknown_size_partial_longer_than_the_file_now_served_is_fetched_again(
    engine_hub: LocalHub, tmp_path: Path, ignores_range: bool
) -> None:
    """The file shrank since the interrupted run (no size or sha256 listed): the server answers
    416 ``bytes */N`` (or 200 with N bytes) with N below the partial's end. Start again instead
    of failing every run."""
    if ignores_range:
        engine_hub.faults.add(Fault.ignore_range(times=None))
    out = tmp_path / "out"
    data = engine_hub.store.snapshot(ENGINE_REPO).files[SHARD2].real_path.read_bytes()
    jobs = _unsized(jobs_for(engine_hub, paths=[SHARD2]))
    pp = partial_paths(out, SHARD2)
    pp.data.parent.mkdir(parents=True)
    old = b"an older, longer version " * 80_000
    pp.data.write_bytes(old)
    save_sidecar(
        pp.sidecar, Sidecar(SHARD2, None, None, jobs[0].candidates[0].etag, [(0, len(old))], ["hf"])
    )
    report = fetch(jobs, out, options=fast_options())
    assert (out / SHARD2).read_bytes() == data
    f = report.files[0]
    assert f.size == len(data) and f.bytes_resumed == 0 and f.bytes_downloaded == len(data)
    assert f.sha256 == engine_hub.store.snapshot(ENGINE_REPO).files[SHARD2].sha256


def test_directory_at_a_final_name_is_refused_before_any_byte_is_fetched(
    engine_hub: LocalHub, tmp_path: Path
) -> None:
    """Was found only at the rename: the whole file was fetched, then the fetch failed."""
    from fixtures_engine import BIG

    from model_zoo.errors import UsageError

    out = tmp_path / "out"
    (out / BIG).mkdir(parents=True)
    (out / BIG / "notes.txt").write_text("the user's")
    with pytest.raises(UsageError) as info:
        fetch(jobs_for(engine_hub), out, options=fast_options())
    assert "is a directory" in str(info.value) and "Move that directory away" in str(info.value)
    assert engine_hub.stats.bytes_served() == 0
    assert (out / BIG / "notes.txt").read_text() == "the user's"


def test_a_run_that_ends_between_the_last_byte_and_the_rename_leaves_a_complete_sidecar(
    engine_hub: LocalHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sidecar was saved only while bytes were missing (and otherwise about once a second),
    so a run that stopped while finishing left one naming up to a second's bytes too few, and
    the next run fetched them again (all of a small file fetched within that second)."""
    from fixtures_engine import BIG

    from model_zoo.download.staging import Staging
    from model_zoo.errors import LocalWriteError

    out = tmp_path / "out"
    size = engine_hub.store.snapshot(ENGINE_REPO).files[BIG].size

    def crash(self: Staging, f: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(Staging, "finish", crash)
    with pytest.raises(LocalWriteError):
        fetch(
            jobs_for(engine_hub, paths=[BIG]), out, options=fast_options(checkpoint_interval=60.0)
        )
    monkeypatch.undo()
    sc = load_sidecar(partial_paths(out, BIG).sidecar)
    assert sc is not None and sc.written == [(0, size)]
    engine_hub.stats.reset()
    report = fetch(jobs_for(engine_hub, paths=[BIG]), out, options=fast_options())
    assert report.files[0].bytes_resumed == size and engine_hub.stats.bytes_served() == 0
    assert report.files[0].sha256 == report.files[0].expected_sha256


def test_a_file_name_near_the_255_byte_limit_is_fetched(
    engine_hub: LocalHub, tmp_path: Path
) -> None:
    """Its partial's name plus ``.part.json`` passed 255 bytes: 'File name too long', a
    LocalWriteError for a file the hub serves and the disk can hold."""
    from fixtures_engine import BIG

    names = [
        "\u00e9" * 120 + "-a.bin",
        "\u00e9" * 120 + "-b.bin",
        "x" * 255,
    ]  # 246, 246 and 255 bytes
    served = [BIG, SHARD2, "config.json"]
    jobs = []
    for name, job in zip(names, jobs_for(engine_hub, paths=served)):
        jobs.append(
            FileJob(
                name, job.size, job.sha256, (replace(job.candidates[0], path=name),), job.sources
            )
        )
    out = tmp_path / "out"
    report = fetch(jobs, out, options=fast_options())
    assert len(report.files) == 3
    for job in jobs:
        assert sha256_of(out / job.path) == job.sha256
    assert partial_paths(out, names[0]).data != partial_paths(out, names[1]).data
    assert not (out / ".model-zoo-partial").exists()


@pytest.mark.parametrize("where", ["target", "above", "partial-folder"])
def test_a_file_where_a_folder_belongs_is_a_local_write_error(
    engine_hub: LocalHub, tmp_path: Path, where: str
) -> None:
    """Was a NotADirectoryError traceback (target is a file), or an UnsafePathError blaming a
    'remote path' named '.model-zoo-partial/.model-zoo-partial' (a file at the partial folder)."""
    from model_zoo.download.paths import PARTIAL_DIR
    from model_zoo.errors import LocalWriteError

    if where == "target":
        (tmp_path / "out").write_text("a file")
        out, in_the_way = tmp_path / "out", tmp_path / "out"
    elif where == "above":
        (tmp_path / "f").write_text("a file")
        out, in_the_way = tmp_path / "f" / "out", tmp_path / "f"
    else:
        out = tmp_path / "out"
        out.mkdir()
        in_the_way = out / PARTIAL_DIR
        in_the_way.write_text("a file")
    with pytest.raises(LocalWriteError) as info:
        fetch(jobs_for(engine_hub), out, options=fast_options())
    assert str(in_the_way if where != "above" else out) in str(info.value)
    assert in_the_way.read_text() == "a file"
    assert engine_hub.stats.file_requests() == [] or where == "partial-folder"


@pytest.mark.parametrize("mode", ["flock", "lockfile"])
def test_lock_taken_in_a_folder_another_pull_just_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A pull that ends removes the empty folders of its partial area; one that is about to lock
    a file there (folder created, lock file not yet) failed with FileNotFoundError."""
    import shutil

    from model_zoo.store.locking import ProcessLock

    folder = tmp_path / ".model-zoo-partial" / "sub"
    lock = ProcessLock(folder / "x.lock", mode=mode, timeout=0)
    real_mkdir = Path.mkdir

    def mkdir_then_other_pull_tidies(self: Path, *args: object, **kwargs: object) -> None:
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]
        if self == folder and not getattr(mkdir_then_other_pull_tidies, "done", False):
            mkdir_then_other_pull_tidies.done = True  # type: ignore[attr-defined]
            shutil.rmtree(tmp_path / ".model-zoo-partial")

    monkeypatch.setattr(Path, "mkdir", mkdir_then_other_pull_tidies)
    lock.acquire()
    try:
        assert (folder / "x.lock").exists()
    finally:
        lock.release()


def test_disk_full_never_reports_a_negative_need(engine_hub: LocalHub, tmp_path: Path) -> None:
    """A file of unknown size counted minus its written bytes: 'need -1000 B' on a full disk."""
    from model_zoo.download.hashing import OrderedHasher
    from model_zoo.download.partial import IntervalSet
    from model_zoo.download.scheduler import Scheduler

    jobs = _unsized(jobs_for(engine_hub, paths=[SHARD2]))
    run = Scheduler(jobs, tmp_path, fast_options(), transport=None)  # type: ignore[arg-type]
    fd = os.open(tmp_path / "p", os.O_RDWR | os.O_CREAT)
    try:
        run.files[0].hasher = OrderedHasher(fd, IntervalSet([(0, 1000)]))
        error = run.staging.disk_full_error()
    finally:
        os.close(fd)
    assert error.needed == 0 and "need 0" in str(error)
