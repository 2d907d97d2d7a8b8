"""The engine's decisions, as pure functions of the run's state: no threads, no sockets.

Which range a worker fetches next and from which candidate, when a range is split (work
stealing), how many bytes a request asks for, when a silent range gets a hedged duplicate, how
long to back off, and how many connections the link deserves (``ConnectionController``). The
scheduler calls these under the run's lock and acts on the answers; tests call them with
hand-built states.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from .state import FileState, FileStatus, Segment
from .types import EngineOptions

MiB = 1024 * 1024
ALIGN = 64 * 1024  # splits fall on this boundary
MATURE_BYTES = (
    2 * MiB
)  # a range that has received this much (or run this long) has a meaningful rate
MATURE_AGE = 0.5
MATURE_MIN_AGE = (
    0.1  # ... but never sooner: the first milliseconds are the round trip, not the rate
)


def mature(seg: Segment, now: float) -> bool:
    age = now - seg.started
    return (seg.got >= MATURE_BYTES and age >= MATURE_MIN_AGE) or age >= MATURE_AGE


# ---------------------------------------------------------------- which bytes, from whom


def claimed_gap(f: FileState) -> tuple[int, int | None] | None:
    """The first byte range of ``f`` that is neither on disk nor being fetched."""
    assert f.hasher is not None
    if f.size is None:
        return None if f.segs else (f.hasher.written.contiguous_end(0), None)
    for start, end in f.hasher.gaps(f.size):
        for s in sorted(f.segs, key=lambda s: s.pos):
            s_end = f.size if s.end is None else s.end
            if s_end <= start or s.pos >= end:
                continue
            if s.pos <= start:
                start = max(start, s_end)
            else:
                end = s.pos
                break
        if start < end:
            return start, end
    return None


def source_rates(files: Iterable[FileState], now: float) -> dict[str, float]:
    """Bytes per second per connection of each source, from its mature ranges in flight."""
    got: dict[str, int] = {}
    age: dict[str, float] = {}
    for f in files:
        for s in f.segs:
            if mature(s, now):
                src = f.cands[s.cand].source
                got[src] = got.get(src, 0) + s.got
                age[src] = age.get(src, 0.0) + max(now - s.started, 1e-3)
    return {src: got[src] / age[src] for src in got}


def choose_candidate(
    f: FileState,
    start: int,
    *,
    multi_source: bool,
    rates: Mapping[str, float],
    inflight: Mapping[str, int],
    no_range: set[str],
    avoid: int | None = None,
) -> int | None:
    """The candidate to fetch ``f`` from ``start`` with, or None when none is left.

    With ``multi_source`` and a published sha256: the least busy source among those not far
    slower per connection than the fastest. Otherwise one source per file: the one already
    fetching it, else the one that wrote its partial, else the first usable. ``avoid`` (a
    hedge's stalled candidate) is taken only when nothing else is usable.
    """
    usable = f.usable()
    if not usable:
        return None
    if start > 0:
        usable = [i for i in usable if f.cands[i].source not in no_range] or usable
    if avoid is not None and len(usable) > 1 and (multi_source and f.job.sha256 is not None):
        usable = [i for i in usable if i != avoid] or usable
    mix = multi_source and f.mixed_ok and f.job.sha256 is not None
    if mix or (multi_source and not f.segs and not f.partial_sources):
        best = max((rates.get(f.cands[i].source, 0.0) for i in usable), default=0.0)
        fast = [i for i in usable if rates.get(f.cands[i].source, best) >= best / 4] or usable
        return min(fast, key=lambda i: (inflight.get(f.cands[i].source, 0), i))
    current = [s.cand for s in f.segs]
    current += [i for i, c in enumerate(f.cands) if c.source in f.partial_sources]
    return next((i for i in current if i in usable), usable[0])


@dataclass(frozen=True)
class Split:
    victim: Segment
    at: int
    clean: bool  # beyond the victim's request in flight (False: that request is cut short)


CAPPED_SPLIT_ETA = 0.5  # on a link that caps each connection: split ranges with this long to go...
CAPPED_ENDGAME_ETA = 0.75  # ... cutting the request in flight when this long is left...
CAPPED_PART_SECONDS = 0.25  # ... into parts of at least this long at the connection's rate...
CAPPED_PART_MIN = 2 * MiB  # ... and at least this many bytes
FAR = 0.02  # seconds to the first byte from which a source counts as far: its ranges split at once
FAR_RATE_GUESS = 20e6  # ... when this per-connection rate (a CDN's usual cap) would not finish soon


def plan_steal(
    files: Iterable[FileState],
    now: float,
    o: EngineOptions,
    rates: Mapping[str, float],
    more_streams_help: bool,
    *,
    capped: bool = False,
    ttfb: Mapping[str, float] | None = None,
) -> Split | None:
    """The tail of the range that will take longest, if splitting it is worth a connection.

    Splits happen beyond the request in flight (nothing is fetched twice); only in the endgame,
    when a range's owner still needs more than ``endgame_eta`` seconds, is its request cut short,
    costing the bytes already on the wire. Ranges in a hedge race are left alone. ``capped``: the
    link holds each connection far below what the machine takes, so every connection adds its
    rate: ranges split much finer (half a second's worth), since a split costs one request and
    buys a connection's rate, and the connection limit decides how many there are. There (and
    for a far source) a split takes everything after the request in flight rather than half the
    range: the file then arrives as pieces in file order and its hash keeps pace. A range from
    a far source (``ttfb`` of ``FAR`` or more) may split before its own rate is known: one
    connection over a long round trip rarely fills a link, and waiting to find out costs the
    first half second of the transfer. Its time to go is then judged at ``FAR_RATE_GUESS``, so a
    range that even a fast far connection finishes within ``split_min_eta`` is left whole (one
    slow first answer on a busy machine makes a near source look far).
    """
    best: tuple[bool, float, Segment, int] | None = None
    min_eta = CAPPED_SPLIT_ETA if capped else o.split_min_eta
    endgame = min(CAPPED_ENDGAME_ETA, o.endgame_eta) if capped else o.endgame_eta
    for f in files:
        if f.status is not FileStatus.ACTIVE or f.splittable is not True:
            continue
        for s in f.segs:
            if s.end is None or s.race is not None or s.cancelled:
                continue
            lo = s.pos + o.chunk_size  # the owner may be reading up to one chunk right now
            if s.req_end is None and s.response is not None:
                free_from = s.end  # an open-ended request in flight runs to the end
            else:
                free_from = max(lo, s.req_end or lo)
            grown = mature(s, now)
            source = f.cands[s.cand].source
            rate = s.rate(now) if grown else rates.get(source, 0.0)
            far = (ttfb or {}).get(source, 0.0) >= FAR
            guess = FAR_RATE_GUESS if far and rate <= 0 else rate
            eta = (s.end - s.pos) / max(guess, 1.0)
            if (not grown and not far) or eta < min_eta:
                continue  # a fast stream costs less CPU than two halves hashed in turn
            part = o.part_size
            if capped:
                part = max(
                    min(o.part_size, CAPPED_PART_MIN),
                    min(o.part_size, int(rate * CAPPED_PART_SECONDS)),
                )
            if s.end - free_from >= 2 * part and more_streams_help:
                # capped or far: split right after the request in flight, so a file is fetched as
                # request-sized pieces in file order and its hash keeps up with the bytes; halves
                # would leave most of each file to hash after its last byte arrives
                if capped or far:
                    if s.req_end is None:  # its request is not sent yet: leave room for it
                        ask = request_size(o, rate or None, (ttfb or {}).get(source))
                        free_from = max(free_from, s.pos + ask)
                    split = free_from
                else:
                    split = max(free_from, lo + (s.end - lo) // 2)
                clean = True
            elif s.end - lo >= 2 * part and rate > 0 and eta > endgame:
                split, clean = lo + (s.end - lo) // 2, False
            else:
                continue
            split -= split % ALIGN
            if clean:
                split = max(split, free_from)  # never inside the request in flight
            if split < lo or s.end - split < part:
                continue
            if best is None or (clean, eta) > best[:2]:
                best = (clean, eta, s, split)
    return None if best is None else Split(best[2], best[3], best[0])


# ---------------------------------------------------------------- requests


def request_size(o: EngineOptions, rate: float | None, rtt: float | None) -> int:
    """Bytes one ranged request asks for, from the connection's rate and the round trip.

    About ``request_seconds`` of transfer (so a capped connection's range can be split finely),
    between ``min_request_size`` and ``request_size`` (what a fast local link gets, and any
    connection whose rate is not known yet); but always ``rtt_requests`` round trips' worth, so
    a far, fast link is not dominated by its round trips; never above ``max_request_size``.
    """
    if not rate:
        if rtt is None:  # nothing heard from this source yet: a far one must not start with a
            return min(o.request_size, o.min_request_size)  # piece that outlasts the rest
        if rtt < FAR:
            return o.request_size
        rate = FAR_RATE_GUESS  # a far source: pieces it fetches in order must stay small
    want = min(o.request_size, max(o.min_request_size, int(rate * o.request_seconds)))
    if rtt:
        want = max(want, int(o.rtt_requests * rate * rtt))
    return min(want, max(o.max_request_size, o.request_size))


def range_for(
    f: FileState, seg: Segment, supports_range: bool, o: EngineOptions, size: int
) -> tuple[str | None, int | None]:
    """(Range header or None for the whole body, end of the range asked) for ``seg``'s next
    request; ``size`` is ``request_size`` for this source."""
    if not supports_range:
        return None, None
    whole = seg.pos == 0 and (seg.end is None or seg.end == f.size)
    if whole and (f.size is None or f.size < o.range_split_threshold):
        return None, None
    if seg.end is None:
        return f"bytes={seg.pos}-", None
    end = seg.end
    if f.size is not None and f.size >= o.range_split_threshold and f.splittable is not False:
        end = min(end, seg.pos + size)
    return f"bytes={seg.pos}-{end - 1}", end


def backoff(
    o: EngineOptions,
    attempt: int,
    retry_after: float | None,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """Seconds before retry ``attempt``: the server's Retry-After (capped), else exponential
    with jitter."""
    if retry_after is not None:
        return min(retry_after, o.retry_after_max)
    base = min(o.backoff_max, o.backoff_base * (2 ** (attempt - 1)))
    return base * uniform(0.5, 1.5)


# ---------------------------------------------------------------- hedging


MAX_HEDGES = 3  # duplicate requests for one range before only the stall timeout is left


def hedge_due(seg: Segment, now: float, o: EngineOptions, ttfb: float | None) -> bool:
    """A range silent for much longer than its own recent gaps (and than its source's time to
    first byte) gets a duplicate request. A steady slow link keeps short gaps, so never does.
    A range already racing its hedge counts as silent only when every racer is; it is then
    hedged again (up to ``MAX_HEDGES`` times)."""
    if seg.cancelled or (seg.end is not None and seg.pos >= seg.end):
        return False
    racers = [seg] if seg.race is None else [m for m in seg.race.members if not m.cancelled]
    if seg.race is not None and (seg.race.hedges >= MAX_HEDGES or racers[0] is not seg):
        return False  # judged once per race, through its first racer
    last = max(m.last_byte for m in racers)
    usual = max(max(m.gap for m in racers), ttfb or 0.0)
    return now - last > max(o.hedge_after, o.hedge_gap_factor * usual)


def stalled_ranges(
    files: Iterable[FileState], now: float, o: EngineOptions, ttfb: Mapping[str, float]
) -> list[Segment]:
    """Ranges in flight that are due a hedge, longest silence first."""
    due = [
        s
        for f in files
        if f.status is FileStatus.ACTIVE
        for s in f.segs
        if hedge_due(s, now, o, ttfb.get(f.cands[s.cand].source))
    ]
    return sorted(due, key=lambda s: s.last_byte)


# ---------------------------------------------------------------- how many connections


SLOWER = 3.0  # the recent time to first byte this many times its least (and SLOWER_FLOOR s more)...
SLOWER_FLOOR = 0.2
SLOWER_WINDOW = 2.0  # ... over the requests of the last this many seconds, at least SLOWER_SAMPLES
SLOWER_SAMPLES = 3


def first_bytes_slower(
    samples: Iterable[tuple[float, str, float]], least: Mapping[str, float], now: float
) -> bool:
    """Whether some source now answers far slower than it can: the median time to first byte of
    its requests in the last ``SLOWER_WINDOW`` seconds well above the least it ever took. A
    server queueing requests says so this way before it says 503. One slow answer is not enough
    (a cold cache on the server), nor are the answers from before the window."""
    recent: dict[str, list[float]] = {}
    for at, source, seconds in samples:
        if now - at <= SLOWER_WINDOW:
            recent.setdefault(source, []).append(seconds)
    for source, times in recent.items():
        if len(times) >= SLOWER_SAMPLES:
            median = sorted(times)[len(times) // 2]
            if (
                median > SLOWER * least.get(source, median)
                and median > least.get(source, 0.0) + SLOWER_FLOOR
            ):
                return True
    return False


@dataclass
class ConnectionController:
    """How many requests may be in flight: grows while the total rate still grows, backs off
    when the hub pushes back.

    Fed once per ``tick`` with the bytes delivered so far and whether work was waiting for a
    connection (growing is pointless otherwise). Over each ``window``: when the limit bound the
    run and the rate rose by ``gain`` over the best seen, the limit doubles (up to ``cap``);
    when it did not, the limit stays for ``hold`` seconds and is then probed (+25%).
    ``throttled`` (429/503 since the last tick) halves it; ``slower`` (time to first byte rising
    well above its least) takes a quarter off; either at most once per ``window``, since the
    requests that showed it were sent before the last cut. Pure: time is passed in.
    """

    cap: int
    limit: int
    adaptive: bool = True
    window: float = 0.5  # the scheduler stretches it to several round trips on far links
    gain: float = 0.10
    hold: float = 8.0
    best_rate: float = 0.0
    peak: int = 0
    _window_start: float | None = None
    _window_bytes: int = 0
    _saturated: float = 0.0  # seconds of this window during which work waited for a connection
    _last_tick: float = 0.0
    _settled_until: float = 0.0
    _probing: bool = True  # the last change was growth whose effect is not judged yet
    _cut_at: float = float("-inf")
    _far_seen: bool = False

    def __post_init__(self) -> None:
        self.limit = self.cap if not self.adaptive else max(1, min(self.limit, self.cap))
        self.peak = self.limit

    def tick(
        self,
        now: float,
        delivered: int,
        *,
        waiting: bool,
        throttled: int = 0,
        slower: bool = False,
        far: bool = False,
    ) -> int:
        """Update with the run's state at ``now``; return the limit to apply. ``far``: every
        source answers from far away (time to first byte of ``FAR`` or more); the first time it
        is seen, the limit goes straight to the cap, as one connection over a long round trip
        rarely fills a link and each doubling would cost windows of several round trips. The hub
        pushing back, or its first bytes slowing, takes it down as usual."""
        if not self.adaptive:
            return self.limit
        if far and not self._far_seen:
            self._far_seen = True
            if self.limit < self.cap and not self._cut_at > float("-inf"):
                self._set(self.cap)
                self._probing = True
                self._restart(now, delivered)
                self._last_tick = now
                return self.limit
        if self._window_start is None:
            self._restart(now, delivered)
            self._last_tick = now
            return self.limit
        if waiting:
            self._saturated += now - self._last_tick
        self._last_tick = now
        if (throttled or (slower and self.limit > 1)) and now - self._cut_at >= self.window:
            cut = self.limit // 2 if throttled else max(1, self.limit // 4)
            self._set(max(1, self.limit - cut))
            self._settled_until, self._probing, self._cut_at = now + self.hold, False, now
            self._restart(now, delivered)
            return self.limit
        span = now - self._window_start
        if span < self.window:
            return self.limit
        rate = (delivered - self._window_bytes) / span
        bound = self._saturated >= span / 2  # the limit, not the work, bounded the rate
        if rate > self.best_rate * (1 + self.gain):
            self.best_rate = rate
            if bound and now >= self._settled_until:
                self._set(self.limit * 2)
                self._probing = True
        elif bound and now >= self._settled_until:
            if self._probing:  # the last growth bought nothing: stay here a while
                self._settled_until, self._probing = now + self.hold, False
            else:  # after a while, see whether the link has room again
                self._set(self.limit + max(1, math.ceil(self.limit / 4)))
                self._probing = True
        self._restart(now, delivered)
        return self.limit

    def _set(self, limit: int) -> None:
        self.limit = max(1, min(self.cap, limit))
        self.peak = max(self.peak, self.limit)

    def _restart(self, now: float, delivered: int) -> None:
        self._window_start, self._window_bytes, self._saturated = now, delivered, 0.0
