"""The engine's decisions without threads or sockets: ``model_zoo.download.policy``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from model_zoo.download import policy
from model_zoo.download.hashing import OrderedHasher
from model_zoo.download.partial import IntervalSet
from model_zoo.download.paths import partial_paths
from model_zoo.download.state import CandidateState, FileState, FileStatus, Race, Segment
from model_zoo.download.types import EngineOptions, FileJob
from model_zoo.hubs.base import RemoteFile

MiB = 1024 * 1024


# ---------------------------------------------------------------- the connection limit


def run_controller(
    c: policy.ConnectionController, rates: list[float], *, waiting: bool = True, start: float = 0.0
) -> list[int]:
    """Tick once per second, with ``rates[i]`` bytes/s delivered during second i; the limits
    seen."""
    delivered, now, limits = 0, start, []
    c.tick(now, delivered, waiting=waiting)
    for r in rates:
        now += 1.0
        delivered += int(r)
        limits.append(c.tick(now, delivered, waiting=waiting))
    return limits


def simulate(
    c: policy.ConnectionController, link: Callable[[int], float], seconds: int
) -> list[int]:
    """The limits over ``seconds`` one-second windows, each delivering ``link(limit)`` bytes/s."""
    delivered, limits = 0.0, [c.limit]
    c.tick(0.0, 0, waiting=True)
    for t in range(1, seconds + 1):
        delivered += link(c.limit)
        limits.append(c.tick(float(t), int(delivered), waiting=True))
    return limits


def test_connections_double_while_the_total_rate_grows_and_stay_when_it_stops() -> None:
    # a far CDN: 20 MB/s per connection, 400 MB/s in all
    c = policy.ConnectionController(cap=32, limit=4)
    limits = simulate(c, lambda n: min(n * 20e6, 400e6), 8)
    assert limits[:5] == [4, 8, 16, 32, 32]  # 32 x 20 MB/s covers the link
    assert c.peak == 32
    # the same link with a lower cap stops at the cap
    capped = policy.ConnectionController(cap=12, limit=4)
    assert max(simulate(capped, lambda n: min(n * 20e6, 400e6), 8)) == 12


def test_connections_stop_growing_once_more_buys_nothing_then_probe_later() -> None:
    c = policy.ConnectionController(cap=32, limit=4, hold=5.0)
    saturated = 100e6  # the link's whole rate, reached with 4 connections already
    limits = run_controller(c, [saturated] * 12)
    assert limits[0] == 8  # the first window raised the best rate seen: try more
    assert limits[1] == 8  # 8 bought nothing: stay
    assert 8 < max(limits) <= 10  # after the hold, a small probe (+25%), not a doubling


def test_no_growth_when_work_never_waited_for_a_connection() -> None:
    c = policy.ConnectionController(cap=32, limit=4)
    assert run_controller(c, [1e6, 2e6, 4e6, 8e6], waiting=False) == [4, 4, 4, 4]


def test_throttling_halves_and_a_rising_first_byte_time_takes_a_quarter() -> None:
    c = policy.ConnectionController(cap=32, limit=16)
    c.tick(0.0, 0, waiting=True)
    assert c.tick(0.5, 0, waiting=True, throttled=1) == 8
    assert (
        c.tick(0.6, 0, waiting=True, throttled=1) == 8
    )  # one cut per window: these were in flight
    assert c.tick(1.5, 0, waiting=True, slower=True) == 6
    for t in range(10):
        c.tick(3.0 + t, 0, waiting=True, throttled=3)
    assert c.limit == 1  # never below one connection


def test_a_far_link_starts_at_the_cap_once_and_still_backs_off() -> None:
    c = policy.ConnectionController(cap=32, limit=16)
    c.tick(0.0, 0, waiting=True)
    assert c.tick(0.1, 0, waiting=True) == 16  # near, or not known yet: grows by windows
    assert c.tick(0.2, 0, waiting=True, far=True) == 32  # far: no window to wait for
    assert c.tick(0.8, 0, waiting=True, throttled=1, far=True) == 16  # pushback still halves
    assert c.tick(1.0, 0, waiting=True, far=True) == 16  # the jump happens once
    cut_first = policy.ConnectionController(cap=32, limit=16)
    cut_first.tick(0.0, 0, waiting=True)
    assert cut_first.tick(0.1, 0, waiting=True, throttled=1) == 8
    assert cut_first.tick(0.2, 0, waiting=True, far=True) == 8  # the hub pushed back first
    fixed = policy.ConnectionController(cap=6, limit=2, adaptive=False)
    assert fixed.tick(0.0, 0, waiting=True, far=True) == 6


def test_fixed_connections_when_not_adaptive() -> None:
    c = policy.ConnectionController(cap=6, limit=2, adaptive=False)
    assert c.limit == 6
    assert run_controller(c, [1e6, 1e9, 1e9]) == [6, 6, 6]
    assert c.tick(10.0, 0, waiting=True, throttled=5) == 6


# ---------------------------------------------------------------- request sizes


def test_requests_last_about_a_second_and_span_many_round_trips() -> None:
    o = EngineOptions()
    # nothing heard from the source yet: a modest first request, since on a far link the first
    # request of a file is the piece everything after it waits on to be hashed
    assert policy.request_size(o, None, None) == o.min_request_size
    assert policy.request_size(o, None, 0.0005) == o.request_size  # near, rate not known yet
    assert policy.request_size(o, None, 0.05) == int(policy.FAR_RATE_GUESS * o.request_seconds)
    assert (
        policy.request_size(o, 20e6, 0.05) == 20_000_000
    )  # a capped far connection: a second's worth
    assert (
        policy.request_size(o, 1e6, 0.05) == o.min_request_size
    )  # a slow one: never tiny requests
    assert policy.request_size(o, 600e6, 0.0003) == o.request_size  # a fast local link, as before
    assert policy.request_size(o, 200e6, 0.1) == int(
        16 * 200e6 * 0.1
    )  # 320 MB: the RTT is 1/16 of it
    assert policy.request_size(o, 2e9, 0.3) == o.max_request_size


# ---------------------------------------------------------------- hedging


def _file(tmp_path: Path, size: int = 100 * MiB, sources: tuple[str, ...] = ("hf",)) -> FileState:
    remotes = tuple(RemoteFile("w.bin", size, "a" * 64, f"http://127.0.0.1:1/{s}") for s in sources)
    job = FileJob("w.bin", size, "a" * 64, remotes, sources)
    f = FileState(
        0,
        job,
        partial_paths(tmp_path, "w.bin"),
        [CandidateState(r, s) for r, s in zip(remotes, sources, strict=True)],
        size,
    )
    f.status = FileStatus.ACTIVE
    f.splittable = True
    return f


def test_a_silent_range_is_hedged_a_steady_slow_one_never(tmp_path: Path) -> None:
    o = EngineOptions(hedge_after=2.0, hedge_gap_factor=8.0)
    f = _file(tmp_path)
    seg = Segment(f, 0, f.size, 0, started=0.0, last_byte=0.0)
    # a steady 100 kB/s link: bytes every read interval, so gaps stay short
    t = 0.0
    for _ in range(200):
        t += 0.05
        seg.heard(t)
        assert not policy.hedge_due(seg, t + 0.04, o, ttfb=0.05)
    assert not policy.hedge_due(seg, t + 1.9, o, ttfb=0.05)  # a pause shorter than hedge_after
    assert policy.hedge_due(seg, t + 2.1, o, ttfb=0.05)
    twin = Segment(f, seg.pos, seg.end, 0, started=t + 2.1, last_byte=t + 2.1)
    seg.race = twin.race = Race(seg.pos, seg.end, [seg, twin], hedges=1)
    assert not policy.hedge_due(seg, t + 3.0, o, ttfb=0.05)  # its twin is young: wait for it
    assert policy.hedge_due(seg, t + 4.2, o, ttfb=0.05)  # both silent: hedge again
    assert not policy.hedge_due(twin, t + 4.2, o, ttfb=0.05)  # judged once per race
    seg.race.hedges = policy.MAX_HEDGES
    assert not policy.hedge_due(seg, t + 60, o, ttfb=0.05)  # enough: the stall timeout is left


def test_a_range_with_long_usual_gaps_waits_longer(tmp_path: Path) -> None:
    o = EngineOptions(hedge_after=2.0, hedge_gap_factor=8.0)
    seg = Segment(_file(tmp_path), 0, 10 * MiB, 0, started=0.0, last_byte=0.0)
    seg.heard(1.0)  # a one-second gap is normal for this range
    assert not policy.hedge_due(seg, 1.0 + 7.5, o, ttfb=None)
    assert policy.hedge_due(seg, 1.0 + 8.5, o, ttfb=None)
    # before any byte: the source's time to first byte sets what is normal
    fresh = Segment(_file(tmp_path), 0, 10 * MiB, 0, started=0.0, last_byte=0.0)
    assert not policy.hedge_due(fresh, 3.0, o, ttfb=0.5)
    assert policy.hedge_due(fresh, 4.5, o, ttfb=0.5)


def test_stalled_ranges_longest_silence_first_and_skips_finished(tmp_path: Path) -> None:
    o = EngineOptions(hedge_after=1.0)
    f = _file(tmp_path)
    a = Segment(f, 0, 10, 0, started=0.0, last_byte=5.0)
    b = Segment(f, 10, 20, 0, started=0.0, last_byte=3.0)
    done = Segment(f, 20, 20, 0, started=0.0, last_byte=0.0)
    f.segs = [a, b, done]
    assert policy.stalled_ranges([f], 10.0, o, {}) == [b, a]


def test_a_hedge_prefers_another_source_when_the_file_allows_mixing(tmp_path: Path) -> None:
    f = _file(tmp_path, sources=("hf", "modelscope"))
    pick = policy.choose_candidate(
        f, 0, multi_source=True, rates={}, inflight={}, no_range=set(), avoid=0
    )
    assert pick == 1
    alone = _file(tmp_path, sources=("hf",))
    assert (
        policy.choose_candidate(
            alone, 0, multi_source=True, rates={}, inflight={}, no_range=set(), avoid=0
        )
        == 0
    )


# ---------------------------------------------------------------- ranges and steals


def test_claimed_gap_skips_what_is_on_disk_and_in_flight(tmp_path: Path) -> None:
    f = _file(tmp_path, size=100)
    fd = os.open(tmp_path / "p", os.O_RDWR | os.O_CREAT)
    try:
        f.hasher = OrderedHasher(fd, IntervalSet([(0, 20)]))
        f.segs = [Segment(f, 20, 50, 0)]
        assert policy.claimed_gap(f) == (50, 100)
        f.segs.append(Segment(f, 50, 100, 0))
        assert policy.claimed_gap(f) is None
    finally:
        os.close(fd)


def test_a_steal_splits_the_slowest_range_beyond_its_request(tmp_path: Path) -> None:
    o = EngineOptions(part_size=1 * MiB, chunk_size=64 * 1024, split_min_eta=1.0)
    f = _file(tmp_path, size=64 * MiB)
    seg = Segment(f, 0, 64 * MiB, 0, req_end=8 * MiB, started=0.0, got=4 * MiB)
    f.segs = [seg]
    split = policy.plan_steal([f], 4.0, o, {}, more_streams_help=True)  # 1 MiB/s: a minute to go
    assert split is not None and split.clean and split.victim is seg
    assert split.at >= 8 * MiB and split.at % policy.ALIGN == 0
    seg.race = object()  # type: ignore[assignment]  # a hedged range is never split
    assert policy.plan_steal([f], 4.0, o, {}, more_streams_help=True) is None


def test_a_capped_or_far_link_splits_right_after_the_request_in_flight(tmp_path: Path) -> None:
    """On a link that caps each connection (or a far one), a file is fetched as request-sized
    pieces in file order: a steal takes everything beyond the victim's request in flight, so
    the file's contiguous prefix, and with it its hash, keeps up with the bytes. Halves (a near,
    fast link) left most of each file to hash after its last byte: 0.2-0.4 s per 1 GB pull."""
    o = EngineOptions(part_size=1 * MiB, chunk_size=64 * 1024, split_min_eta=1.0)

    def victim() -> Segment:
        f = _file(tmp_path, size=64 * MiB)
        f.segs = [Segment(f, 0, 64 * MiB, 0, req_end=8 * MiB, started=0.0, got=4 * MiB)]
        return f.segs[0]

    seg = victim()  # 1 MiB/s: a minute to go
    capped = policy.plan_steal([seg.file], 4.0, o, {}, True, capped=True)
    assert capped is not None and capped.clean and capped.at == seg.req_end
    seg = victim()
    far = policy.plan_steal([seg.file], 4.0, o, {}, True, ttfb={"hf": 0.05})
    assert far is not None and far.at == seg.req_end
    seg = victim()  # a range whose request is not sent yet keeps room for that request
    seg.req_end = None
    young = policy.plan_steal([seg.file], 4.0, o, {}, True, ttfb={"hf": 0.05})
    assert young is not None and young.at == policy.request_size(o, seg.rate(4.0), 0.05)
    seg = victim()
    near = policy.plan_steal([seg.file], 4.0, o, {}, True, ttfb={"hf": 0.001})
    assert near is not None and near.at == 32 * MiB  # the middle of what is left


def test_an_open_ended_request_in_flight_is_never_split_as_if_clean(tmp_path: Path) -> None:
    """A file whose size came with the first response was asked for ``bytes=N-``: that request
    runs to the end, so a split there would fetch its tail twice; only an endgame cut (the
    request cut short, counted as such) may take it."""
    o = EngineOptions(part_size=1 * MiB, chunk_size=64 * 1024, split_min_eta=1.0, endgame_eta=1e9)
    f = _file(tmp_path, size=64 * MiB)
    f.splittable = True
    seg = Segment(f, 0, 64 * MiB, 0, req_end=None, started=0.0, got=4 * MiB)
    seg.response = object()  # type: ignore[assignment]  # headers in: the request is in flight
    f.segs = [seg]
    assert policy.plan_steal([f], 4.0, o, {}, more_streams_help=True) is None
    seg.response = None  # nothing in flight: the tail is free
    split = policy.plan_steal([f], 4.0, o, {}, more_streams_help=True)
    assert split is not None and split.clean


def test_a_far_source_splits_before_its_rate_is_known_unless_the_range_is_short(
    tmp_path: Path,
) -> None:
    """A young range from a far source (slow first answer) splits at once when even a fast far
    connection would need longer than ``split_min_eta``; a short one, or any young range from a
    near source, waits for its rate. A loaded machine can answer its own loopback slowly: that
    must not split a file the link delivers in a blink."""
    o = EngineOptions(part_size=1 * MiB, chunk_size=64 * 1024, split_min_eta=2.0)
    far, near = {"hf": 0.05}, {"hf": 0.003}

    def young(size: int) -> FileState:
        f = _file(tmp_path, size=size)
        f.segs = [Segment(f, 0, size, 0, req_end=8 * MiB, started=0.0, got=0)]
        return f

    long_to_go = int(policy.FAR_RATE_GUESS * o.split_min_eta * 4)
    split = policy.plan_steal([young(long_to_go)], 0.06, o, {}, True, ttfb=far)
    assert split is not None and split.clean and split.at >= 8 * MiB
    assert policy.plan_steal([young(long_to_go)], 0.06, o, {}, True, ttfb=near) is None
    short = int(policy.FAR_RATE_GUESS * o.split_min_eta / 2)  # a second at the guessed rate
    assert policy.plan_steal([young(short)], 0.06, o, {}, True, ttfb=far) is None


@pytest.mark.parametrize(
    ("pos", "end", "size", "want"),
    [
        (0, 100, 100, None),  # a small file in one piece: no Range at all
        (10, 100, 100, "bytes=10-99"),
        (0, 200 * MiB, 200 * MiB, f"bytes=0-{64 * MiB - 1}"),  # a big file: one request's worth
    ],
)
def test_range_for(tmp_path: Path, pos: int, end: int, size: int, want: str | None) -> None:
    o = EngineOptions()
    f = _file(tmp_path, size=size)
    header, _req_end = policy.range_for(f, Segment(f, pos, end, 0), True, o, o.request_size)
    assert header == want


def test_first_bytes_count_as_slower_only_when_several_recent_ones_are() -> None:
    least = {"hf": 0.05}
    one_cold = [(9.5, "hf", 0.75)]  # one slow answer (the server hashing a file it had not seen)
    assert not policy.first_bytes_slower(one_cold, least, 10.0)
    old = [(1.0, "hf", 0.9), (1.1, "hf", 0.9), (1.2, "hf", 0.9)]  # slow, but long ago
    assert not policy.first_bytes_slower(old, least, 10.0)
    queueing = [(9.0, "hf", 0.4), (9.2, "hf", 0.5), (9.4, "hf", 0.45), (9.6, "hf", 0.05)]
    assert policy.first_bytes_slower(queueing, least, 10.0)
    far = [(9.0, "hf", 0.3), (9.2, "hf", 0.31), (9.4, "hf", 0.3)]  # a far hub: slow from the start
    assert not policy.first_bytes_slower(far, {"hf": 0.29}, 10.0)
