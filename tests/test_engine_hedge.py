"""Stalls heal in seconds: a range silent far longer than usual gets a racing duplicate request,
nothing is written twice, and a steady slow link never triggers one."""

from __future__ import annotations

import time
from pathlib import Path

from fixtures_engine import BIG, ENGINE_FILES, ENGINE_REPO, fast_options, jobs_for

from model_zoo.download import progress as ev
from model_zoo.download.engine import fetch
from model_zoo.testing.faults import Fault
from model_zoo.testing.local_hub import LocalHub

SMALL = "sub/deeper/tokenizer.model"  # 300 kB: one stream


def _bytes(hub: LocalHub, path: str) -> bytes:
    return (hub.store.repo_dir(ENGINE_REPO) / path).read_bytes()


def test_a_body_that_stalls_midway_is_hedged_and_finishes_in_seconds(
    engine_hub: LocalHub, tmp_path: Path
) -> None:
    # 30 s of silence after 100 kB; the old answer was the 30 s stall timeout, then a retry
    engine_hub.faults.add(Fault.stall(30.0, after=100_000, path=SMALL, times=1))
    events: list[ev.Event] = []
    start = time.monotonic()
    report = fetch(
        jobs_for(engine_hub, paths=[SMALL]),
        tmp_path / "out",
        on_event=events.append,
        options=fast_options(stall_timeout=60.0, hedge_after=0.5, retries=0),
    )
    took = time.monotonic() - start
    assert took < 10, took
    (f,) = report.files
    assert f.hedges == 1 and f.retries == 0
    assert (tmp_path / "out" / SMALL).read_bytes() == _bytes(engine_hub, SMALL)
    # nothing twice: every byte was written once; the hedge asked from where the stalled request's
    # written bytes ended (what it held unwritten when it gave way, at most a read, is discarded)
    assert f.bytes_downloaded == ENGINE_FILES[SMALL] and f.bytes_discarded < 64 * 1024
    starts = [
        int(r.range.split("=")[1].split("-")[0])
        for r in engine_hub.stats.file_requests(path=SMALL)
        if r.range is not None
    ]
    assert any(100_000 - 64 * 1024 < start <= 100_000 for start in starts), (
        starts
    )  # the hedge's range
    assert any(isinstance(e, ev.Retry) and "races" in e.reason for e in events)


def test_the_hedge_goes_to_another_source_when_one_serves_the_same_bytes(
    engine_hub: LocalHub, tmp_path: Path
) -> None:
    engine_hub.faults.add(Fault.stall(30.0, after=100_000, path=SMALL, protocol="hf", times=None))
    report = fetch(
        jobs_for(engine_hub, paths=[SMALL], protocols=("hf", "modelscope")),
        tmp_path / "out",
        options=fast_options(stall_timeout=60.0, hedge_after=0.5, multi_source=True),
    )
    (f,) = report.files
    assert f.hedges == 1 and set(f.bytes_by_source) == {"hf", "modelscope"}
    assert f.bytes_by_source["hf"] + f.bytes_by_source["modelscope"] == ENGINE_FILES[SMALL]
    assert (tmp_path / "out" / SMALL).read_bytes() == _bytes(engine_hub, SMALL)


def test_a_hedge_that_stalls_too_is_hedged_again(engine_hub: LocalHub, tmp_path: Path) -> None:
    # the first response and the hedge both go silent after 50 kB: a third request finishes it
    engine_hub.faults.add(Fault.stall(30.0, after=50_000, path=BIG, times=2))
    start = time.monotonic()
    report = fetch(
        jobs_for(engine_hub, paths=[BIG]),
        tmp_path / "out",
        options=fast_options(stall_timeout=60.0, hedge_after=0.5),
    )
    assert time.monotonic() - start < 10
    (f,) = report.files
    assert f.hedges == 2 and f.bytes_downloaded == ENGINE_FILES[BIG]
    assert (tmp_path / "out" / BIG).read_bytes() == _bytes(engine_hub, BIG)


def test_a_steady_slow_link_is_never_hedged(engine_hub: LocalHub, tmp_path: Path) -> None:
    engine_hub.bandwidth.set(150_000)  # 150 kB/s: two seconds for the file, bytes all the time
    report = fetch(
        jobs_for(engine_hub, paths=[SMALL]),
        tmp_path / "out",
        options=fast_options(stall_timeout=60.0, hedge_after=0.5, range_split_threshold=1 << 30),
    )
    (f,) = report.files
    assert f.hedges == 0 and len(engine_hub.stats.file_requests(path=SMALL)) == 1
    assert (tmp_path / "out" / SMALL).read_bytes() == _bytes(engine_hub, SMALL)


# ---------------------------------------------------------------- connections that follow the link


def test_connections_grow_on_a_link_that_caps_each_one(
    hub_root: Path, make_hub, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from model_zoo.download.engine import EngineOptions, FileJob
    from model_zoo.hubs.base import RemoteFile
    from model_zoo.testing.hub_repos import write_repo

    write_repo(hub_root, "internlm/far", {"w.bin": 16 * 1024 * 1024})
    hub = make_hub(conn_bandwidth=2e6, latency=0.03)  # a far CDN: 2 MB/s per connection, 30 ms away
    entry = hub.store.snapshot("internlm/far").files["w.bin"]
    remote = RemoteFile(
        "w.bin", entry.size, entry.sha256, hub.file_url("hf", "internlm/far", "w.bin")
    )
    job = FileJob("w.bin", entry.size, entry.sha256, (remote,), ("hf",))
    options = EngineOptions(
        connections=16,
        initial_connections=2,
        range_split_threshold=1024 * 1024,
        part_size=512 * 1024,
        chunk_size=64 * 1024,
    )
    start = time.monotonic()
    report = fetch([job], tmp_path / "out", options=options)
    took = time.monotonic() - start
    assert report.link is not None and report.link.peak_connections >= 8, report.link
    assert took < 5.0, took  # two connections alone need 4 s; one, 8 s
    assert report.link.round_trip is not None and report.link.round_trip >= 0.03
    assert (tmp_path / "out" / "w.bin").read_bytes() == (
        hub_root / "internlm/far" / "w.bin"
    ).read_bytes()


def test_throttling_is_counted_and_the_file_still_arrives(
    engine_hub: LocalHub, tmp_path: Path
) -> None:
    engine_hub.faults.add(Fault.status(503, times=3, path=BIG))
    report = fetch(jobs_for(engine_hub, paths=[BIG]), tmp_path / "out", options=fast_options())
    assert report.link is not None and report.link.throttled == 3
    assert (tmp_path / "out" / BIG).read_bytes() == _bytes(engine_hub, BIG)
