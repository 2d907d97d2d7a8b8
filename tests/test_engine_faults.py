"""Every fault the local hub can inject: the engine recovers (retry or another candidate) or
fails with a typed error, and never leaves a corrupt file under a final name."""

from __future__ import annotations

import errno
import os
import time
from dataclasses import replace
from pathlib import Path

import pytest
from fixtures_engine import (
    BIG,
    ENGINE_FILES,
    ENGINE_REPO,
    assert_tree_matches,
    fast_options,
    jobs_for,
    sha256_of,
)

from model_zoo.download import progress as ev
from model_zoo.download.engine import FileJob, fetch
from model_zoo.download.partial import Sidecar, load_sidecar, save_sidecar
from model_zoo.download.paths import partial_paths
from model_zoo.errors import (
    DownloadFailedError,
    FetchFailedError,
    HashMismatchError,
    HubError,
    LocalWriteError,
    ModelZooError,
)
from model_zoo.hubs.base import RemoteFile
from model_zoo.testing.faults import Fault
from model_zoo.testing.local_hub import LocalHub

MID = "model-00002-of-00002.safetensors"


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


def _expect_ok(hub: LocalHub, out: Path, path: str) -> None:
    assert sha256_of(out / path) == hub.store.snapshot(ENGINE_REPO).files[path].sha256


def _no_final(out: Path, path: str) -> None:
    assert not (out / path).exists(), f"{path} must not exist under its final name"


@pytest.mark.parametrize("code", [429, 500, 503, 408])
def test_retriable_status_is_retried(engine_hub: LocalHub, out: Path, code: int) -> None:
    engine_hub.faults.add(
        Fault.status(code, times=2, path=MID, retry_after=0 if code == 429 else None)
    )
    events: list[ev.Event] = []
    report = fetch(
        jobs_for(engine_hub, paths=[MID]), out, options=fast_options(), on_event=events.append
    )
    _expect_ok(engine_hub, out, MID)
    assert report.files[0].retries == 2
    retries = [e for e in events if isinstance(e, ev.Retry)]
    assert [e.reason for e in retries] == [f"HTTP {code}"] * 2


def test_retry_after_is_honoured_up_to_the_cap(engine_hub: LocalHub, out: Path) -> None:
    engine_hub.faults.add(Fault.status(429, times=1, path="config.json", retry_after=0.4))
    events: list[ev.Event] = []
    t0 = time.monotonic()
    fetch(
        jobs_for(engine_hub, paths=["config.json"]),
        out,
        options=fast_options(retry_after_max=10.0),
        on_event=events.append,
    )
    assert time.monotonic() - t0 >= 0.4
    assert [e.delay for e in events if isinstance(e, ev.Retry)] == [0.4]
    engine_hub.faults.add(Fault.status(429, times=1, path="config.json", retry_after=3600))
    t0 = time.monotonic()
    fetch(
        jobs_for(engine_hub, paths=["config.json"]),
        out / "b",
        options=fast_options(retry_after_max=0.1),
    )
    assert time.monotonic() - t0 < 5


def test_persistent_5xx_falls_back_to_next_candidate(engine_hub: LocalHub, out: Path) -> None:
    engine_hub.faults.add(Fault.status(500, times=None, protocol="hf"))
    events: list[ev.Event] = []
    report = fetch(
        jobs_for(engine_hub, protocols=("hf", "modelscope")),
        out,
        options=fast_options(),
        on_event=events.append,
    )
    assert_tree_matches(engine_hub, out)
    for f in report.files:
        if f.size:
            assert f.sources == ("modelscope",)
            assert [(fb.from_source, fb.to_source) for fb in f.fallbacks] == [("hf", "modelscope")]
    assert engine_hub.stats.bytes_served(protocol="hf") == 0
    assert any(isinstance(e, ev.Fallback) for e in events)


def test_persistent_5xx_on_only_source_fails_cleanly(engine_hub: LocalHub, out: Path) -> None:
    engine_hub.faults.add(Fault.status(503, times=None, path=MID))
    with pytest.raises(FetchFailedError) as info:
        fetch(jobs_for(engine_hub), out, options=fast_options(retries=2))
    err = info.value.first
    assert isinstance(err, DownloadFailedError) and info.value.exit_code == err.exit_code == 4
    assert err.path == MID and "HTTP 503" in str(err) and isinstance(err, HubError)
    _no_final(out, MID)
    assert len(engine_hub.stats.file_requests(path=MID)) == 3  # first try + 2 retries
    report = info.value.report
    assert [p for p, _ in report.failed] == [MID]
    # the other files were completed regardless
    assert {f.path for f in report.files} == set(ENGINE_FILES) - {MID}


@pytest.mark.parametrize("code", [403, 404, 410])
def test_other_4xx_is_not_retried_and_moves_on(engine_hub: LocalHub, out: Path, code: int) -> None:
    engine_hub.faults.add(Fault.status(code, times=None, path=MID, protocol="hf"))
    report = fetch(
        jobs_for(engine_hub, paths=[MID], protocols=("hf", "modelers")), out, options=fast_options()
    )
    _expect_ok(engine_hub, out, MID)
    assert len(engine_hub.stats.file_requests(path=MID, protocol="hf")) == 1
    assert report.files[0].sources == ("modelers",)


def test_a_refusal_on_the_only_source_names_the_token_variable(
    engine_hub: LocalHub, out: Path
) -> None:
    engine_hub.faults.add(Fault.status(403, times=None, path=MID, protocol="hf"))
    with pytest.raises(FetchFailedError) as info:
        fetch(jobs_for(engine_hub, paths=[MID], protocols=("hf",)), out, options=fast_options())
    assert isinstance(info.value.first, DownloadFailedError)
    assert "HF_TOKEN" in str(info.value) and "None" not in str(info.value)
    _no_final(out, MID)


def test_unreachable_mirror_falls_back(engine_hub: LocalHub, out: Path) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead_port = s.getsockname()[1]
    s.close()  # nothing listens there now
    job = jobs_for(engine_hub, paths=["config.json"])[0]
    dead = RemoteFile(job.path, job.size, job.sha256, f"http://127.0.0.1:{dead_port}/x")
    good = job.candidates[0]
    report = fetch(
        [FileJob(job.path, job.size, job.sha256, (dead, good), ("modelscope", "hf"))],
        out,
        options=fast_options(retries=1),
    )
    _expect_ok(engine_hub, out, "config.json")
    assert report.files[0].sources == ("hf",)
    assert "cannot reach" in report.files[0].fallbacks[0].reason


@pytest.mark.parametrize("path", [MID, BIG])
def test_reset_mid_body_resumes_from_where_it_stopped(
    engine_hub: LocalHub, out: Path, path: str
) -> None:
    engine_hub.faults.add(Fault.reset(after=200_000, times=2, path=path))
    report = fetch(jobs_for(engine_hub, paths=[path]), out, options=fast_options())
    _expect_ok(engine_hub, out, path)
    assert report.files[0].retries == 2
    # bytes received before the reset were kept: the file was not fetched again from zero
    assert engine_hub.stats.bytes_served(path=path) < ENGINE_FILES[path] + 2 * 200_000  # type: ignore[operator]


def test_short_body_is_detected_and_completed(engine_hub: LocalHub, out: Path) -> None:
    engine_hub.faults.add(Fault.short_body(after=1000, times=1, path=MID))
    events: list[ev.Event] = []
    report = fetch(
        jobs_for(engine_hub, paths=[MID]), out, options=fast_options(), on_event=events.append
    )
    _expect_ok(engine_hub, out, MID)
    assert report.files[0].retries == 1
    assert "ended early" in next(e for e in events if isinstance(e, ev.Retry)).reason


def test_stall_times_out_and_retries(engine_hub: LocalHub, out: Path) -> None:
    engine_hub.faults.add(Fault.stall(5.0, after=50_000, times=1, path=MID))
    events: list[ev.Event] = []
    t0 = time.monotonic()
    fetch(
        jobs_for(engine_hub, paths=[MID]),
        out,
        options=fast_options(stall_timeout=0.5),
        on_event=events.append,
    )
    assert time.monotonic() - t0 < 4.0
    _expect_ok(engine_hub, out, MID)
    assert any("stalled" in e.reason for e in events if isinstance(e, ev.Retry))


def test_flipped_byte_once_is_discarded_and_fetched_again(engine_hub: LocalHub, out: Path) -> None:
    engine_hub.faults.add(Fault.flip_byte(offset=123_456, times=1, path=MID))
    report = fetch(jobs_for(engine_hub, paths=[MID]), out, options=fast_options())
    _expect_ok(engine_hub, out, MID)
    f = report.files[0]
    assert f.bytes_discarded == ENGINE_FILES[MID]
    assert engine_hub.stats.bytes_served(path=MID) == 2 * ENGINE_FILES[MID]  # type: ignore[operator]


def test_corrupting_mirror_is_dropped_for_the_next(engine_hub: LocalHub, out: Path) -> None:
    engine_hub.faults.add(Fault.flip_byte(offset=10, times=None, path=MID, protocol="hf"))
    report = fetch(
        jobs_for(engine_hub, paths=[MID], protocols=("hf", "modelscope")),
        out,
        options=fast_options(),
    )
    _expect_ok(engine_hub, out, MID)
    f = report.files[0]
    assert f.sources == ("modelscope",)
    assert "sha256 mismatch" in f.fallbacks[0].reason


def test_always_corrupt_fails_with_hash_mismatch_and_keeps_nothing(
    engine_hub: LocalHub, out: Path
) -> None:
    engine_hub.faults.add(Fault.flip_byte(offset=ENGINE_FILES[BIG] - 1, times=None, path=BIG))  # type: ignore[operator]
    with pytest.raises(FetchFailedError) as info:
        fetch(jobs_for(engine_hub, paths=[BIG]), out, options=fast_options())
    first = info.value.first
    assert isinstance(first, HashMismatchError) and first.path == BIG and info.value.exit_code == 3
    _no_final(out, BIG)
    pp = partial_paths(out, BIG)
    sc = load_sidecar(pp.sidecar)
    assert sc is not None and sc.written == []  # the corrupt bytes are not kept for resume


def test_wrong_advertised_sha256_fails_and_keeps_nothing(engine_hub: LocalHub, out: Path) -> None:
    jobs = jobs_for(
        engine_hub, paths=[MID], protocols=("hf", "modelscope"), sha_override={MID: "ab" * 32}
    )
    with pytest.raises(FetchFailedError) as info:
        fetch(jobs, out, options=fast_options())
    first = info.value.first
    assert isinstance(first, HashMismatchError) and first.expected == "ab" * 32
    assert first.actual == engine_hub.store.snapshot(ENGINE_REPO).files[MID].sha256
    _no_final(out, MID)


def test_range_ignored_streams_the_whole_body(engine_hub: LocalHub, out: Path) -> None:
    engine_hub.faults.add(Fault.ignore_range(times=None, path=BIG))
    report = fetch(jobs_for(engine_hub, paths=[BIG]), out, options=fast_options())
    _expect_ok(engine_hub, out, BIG)
    f = report.files[0]
    assert f.range_ignored and f.bytes_downloaded == ENGINE_FILES[BIG]
    assert engine_hub.stats.bytes_served(path=BIG) == ENGINE_FILES[BIG]  # one request, no split


def test_range_ignored_on_resume_skips_the_prefix(engine_hub: LocalHub, out: Path) -> None:
    entry = engine_hub.store.snapshot(ENGINE_REPO).files[MID]
    data = entry.real_path.read_bytes()
    pp = partial_paths(out, MID)
    pp.data.parent.mkdir(parents=True)
    pp.data.write_bytes(data[:400_000] + b"\0" * (len(data) - 400_000))
    save_sidecar(pp.sidecar, Sidecar(MID, len(data), entry.sha256, None, [(0, 400_000)], ["hf"]))
    engine_hub.faults.add(Fault.ignore_range(times=None, path=MID))
    report = fetch(jobs_for(engine_hub, paths=[MID]), out, options=fast_options())
    assert (out / MID).read_bytes() == data
    f = report.files[0]
    assert f.range_ignored and f.bytes_resumed == 400_000 and f.bytes_discarded == 400_000
    assert f.bytes_downloaded == len(data) - 400_000


# -------------------------------------------------------------- a server that misstates its ranges


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
                first, last, total = (
                    (start + 4096, end, len(data))
                    if lie == "start"
                    else (start, end, len(data) + 1)
                )
                self.send_header("Content-Range", f"bytes {first}-{last}/{total}")
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


@pytest.mark.timeout(60)
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


# --------------------------------------------------------------------- what a failed download says


def test_engine_local_io_error_becomes_a_clear_error(
    engine_hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_disk(fd: int, data: object, offset: int) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "pwrite", broken_disk)
    with pytest.raises(LocalWriteError, match="Input/output error"):
        fetch(jobs_for(engine_hub), tmp_path / "out", options=fast_options())


def test_mismatch_on_every_source_says_what_to_do(engine_hub, tmp_path: Path) -> None:
    from model_zoo.errors import FetchFailedError, HashMismatchError

    jobs = jobs_for(
        engine_hub,
        protocols=("hf", "modelscope"),
        paths=["config.json"],
        sha_override={"config.json": "0" * 64},
    )
    with pytest.raises(FetchFailedError) as info:
        fetch(jobs, tmp_path / "out", options=fast_options(retries=0))
    assert isinstance(info.value.first, HashMismatchError) and info.value.exit_code == 3
    assert "--source" in info.value.message and "retry later" in info.value.message
    assert not (tmp_path / "out" / "config.json").exists()


def test_download_failed_names_each_source_once(engine_hub, tmp_path: Path) -> None:
    from model_zoo.errors import DownloadFailedError, FetchFailedError
    from model_zoo.testing.faults import Fault

    engine_hub.faults.add(Fault.status(503, times=None, path="config.json"))
    with pytest.raises(FetchFailedError) as info:
        fetch(
            jobs_for(engine_hub, paths=["config.json"]),
            tmp_path / "out",
            options=fast_options(retries=0),
        )
    assert isinstance(info.value.first, DownloadFailedError)
    message = info.value.message
    assert "hf: hf:" not in message and ".." not in message, message
    assert message.count("hf:") == 1 and "HTTP 503" in message
