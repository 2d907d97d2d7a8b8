"""Which sources a pull uses, in which order, and why: a pure planner plus a separate prober.

``plan_sources`` does no I/O: it takes the registry entry, the settings and (optionally) the
results of probing each hub, so every decision can be tested with tables and explained to the
user. ``probe_sources`` is the impure half: one short request per hub, all in parallel.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..errors import NoSourceError, UsageError
from ..hubs.catalog import OPENXLAB_ORIGIN, SOURCE_KEYS
from ..netaddr import redact_url

if TYPE_CHECKING:  # pragma: no cover
    from ..settings import Settings

AUTO = "auto"
# Probes within this much of the fastest count as equally fast: the configured order decides.
NEAR_ABS = 0.05  # seconds
NEAR_REL = 0.5  # of the fastest latency


class SourceEntry(Protocol):
    """The part of a registry entry the planner reads (read-only, as on a frozen ``ModelInfo``)."""

    @property
    def name(self) -> str: ...

    @property
    def sources(self) -> Mapping[str, str]: ...


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of one short request to a hub: latency in seconds, or why it failed."""

    source: str
    ok: bool
    latency: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class PlannedSource:
    """One source a pull may use, with the reason it is where it is in the order."""

    source: str
    endpoint: str
    repo_id: str
    reason: str
    latency: float | None = None


def parse_source_list(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"hf,modelscope"`` or a list -> validated keys; None stays None."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    keys = tuple(dict.fromkeys(s.strip().lower() for s in items if s and s.strip()))
    bad = [k for k in keys if k not in SOURCE_KEYS]
    if bad:
        raise UsageError(
            f"unknown source(s) {', '.join(bad)}; valid sources: {', '.join(SOURCE_KEYS)}",
            sources=list(bad),
        )
    if not keys:
        raise UsageError("--sources needs at least one source", sources=[])
    return keys


def candidate_sources(entry: SourceEntry, settings: Settings) -> list[str]:
    """Sources ``auto`` may use: the entry's, in the settings' order, never origin format."""
    ordered = [s for s in settings.sources if s in entry.sources and s != OPENXLAB_ORIGIN]
    return ordered


def _planned(
    entry: SourceEntry, settings: Settings, key: str, reason: str, probe: ProbeResult | None = None
) -> PlannedSource:
    return PlannedSource(
        source=key,
        endpoint=settings.endpoint(key),
        repo_id=entry.sources[key],
        reason=reason,
        latency=probe.latency if probe is not None and probe.ok else None,
    )


def _explicit(
    entry: SourceEntry, settings: Settings, keys: Sequence[str], why: str
) -> list[PlannedSource]:
    missing = [k for k in keys if k not in entry.sources]
    if missing:
        have = ", ".join(sorted(entry.sources)) or "none"
        raise UsageError(
            f"{entry.name} is not published on {', '.join(missing)} (it is on: {have}). "
            "Pick one of those with --source.",
            model=entry.name,
            sources=list(missing),
        )
    return [_planned(entry, settings, k, why) for k in keys]


def plan_sources(
    entry: SourceEntry,
    settings: Settings,
    probes: Mapping[str, ProbeResult] | None = None,
    *,
    source: str = AUTO,
    sources: Sequence[str] | None = None,
) -> list[PlannedSource]:
    """Order the sources for one pull. Pure: probing happens elsewhere and is passed in.

    ``sources`` (several at once) wins over ``source``; an explicit source is used as given.
    ``auto`` keeps the entry's sources that the settings list, drops those whose probe failed,
    and orders the rest by latency, except that hubs within ``NEAR_ABS`` / ``NEAR_REL`` of the
    fastest keep the settings' order (a few ms must not override the user's preference); with
    no probes the settings' order stands. openxlab-origin is never chosen unless named.
    """
    if sources:
        keys = parse_source_list(sources) or ()
        return _explicit(entry, settings, keys, "named with --sources")
    key = source.strip().lower() if source else AUTO
    if key != AUTO:
        parse_source_list([key])
        return _explicit(entry, settings, [key], "named with --source")

    candidates = candidate_sources(entry, settings)
    if not candidates:
        raise NoSourceError(
            entry.name,
            [],
            reasons=[
                f"it is published on {', '.join(sorted(entry.sources)) or 'no hub'}, but the "
                f"configured sources are {', '.join(settings.sources)} (set MODEL_ZOO_SOURCES)"
            ],
        )
    if not probes:
        return [
            _planned(entry, settings, k, f"configured order, position {i + 1} (not probed)")
            for i, k in enumerate(candidates)
        ]
    rank = {k: i for i, k in enumerate(candidates)}
    reachable = [k for k in candidates if k in probes and probes[k].ok]
    unprobed = [k for k in candidates if k not in probes]
    failed = [k for k in candidates if k in probes and not probes[k].ok]
    if not reachable and not unprobed:
        raise NoSourceError(
            entry.name,
            failed,
            reasons=[f"{k}: {probes[k].error or 'unreachable'}" for k in failed],
        )

    def latency(k: str) -> float:
        measured = probes[k].latency
        return measured if measured is not None else 1e9

    fastest = min((latency(k) for k in reachable), default=0.0)
    near = fastest + max(NEAR_ABS, NEAR_REL * fastest)
    # Hubs about as fast as the fastest keep the configured order (the user's preference);
    # clearly slower ones follow, fastest first.
    reachable.sort(key=lambda k: (0, rank[k]) if latency(k) <= near else (1, latency(k), rank[k]))
    plan = []
    for i, k in enumerate(reachable):
        ms = latency(k) * 1000
        if latency(k) <= near:
            why = f"reachable in {ms:.0f} ms"
            if len(reachable) > 1:
                why += ", the fastest" if latency(k) == fastest and i == 0 else ""
                why += (
                    "; configured order among hubs within "
                    f"{(near - fastest) * 1000:.0f} ms of the fastest"
                )
        else:
            why = f"reachable in {ms:.0f} ms, slower"
        plan.append(_planned(entry, settings, k, why, probes[k]))
    plan += [_planned(entry, settings, k, "not probed; configured order") for k in unprobed]
    return plan


def describe_plan(
    plan: Sequence[PlannedSource], probes: Mapping[str, ProbeResult] | None = None
) -> str:
    """One line for the user: what will be used and why; what was skipped and why."""
    if not plan:
        return "no source"
    first = plan[0]
    # a mirror's user:password never reaches the terminal
    text = f"source {first.source} ({redact_url(first.endpoint)}, {first.repo_id}): {first.reason}"
    if len(plan) > 1:
        text += "; then " + ", ".join(p.source for p in plan[1:])
    skipped = [p for p in (probes or {}).values() if not p.ok]
    if skipped:
        text += "; skipped " + ", ".join(
            f"{p.source} ({p.error or 'unreachable'})" for p in skipped
        )
    return text


class _Prober(Protocol):
    def probe(self, timeout: float = 2.0) -> float: ...


def probe_sources(
    keys: Iterable[str],
    adapter_for: Callable[[str], _Prober],
    *,
    budget: float = 2.0,
    reason: Callable[[BaseException], str] | None = None,
) -> dict[str, ProbeResult]:
    """Probe every hub in parallel, all within about ``budget`` seconds (``pull`` and ``doctor``).

    A hub that has not answered when the budget runs out counts as unreachable; its thread is
    left to finish on its own (``deadline``), so neither the caller nor the process's exit is
    held. ``reason`` words a failure (default: the error's whole message, on one line).
    """
    from ..deadline import run_all_within

    keys = list(dict.fromkeys(keys))
    if not keys:
        return {}
    why = reason or _full_reason

    def one(key: str) -> Callable[[object], float]:
        def call(_cancel: object) -> float:
            start = time.monotonic()
            latency = adapter_for(key).probe(timeout=budget)
            return float(latency if latency is not None else time.monotonic() - start)

        return call

    outcomes = run_all_within({key: one(key) for key in keys}, budget + 0.2, name="model-zoo-probe")
    out: dict[str, ProbeResult] = {}
    for key, got in outcomes.items():
        if not got.finished:
            out[key] = ProbeResult(key, False, None, f"no answer within {budget:.1f} s")
        elif got.error is not None:
            if not isinstance(got.error, Exception):
                raise got.error  # KeyboardInterrupt and the like are not findings
            out[key] = ProbeResult(key, False, None, why(got.error))
        else:
            out[key] = ProbeResult(key, True, got.value, None)
    return out


def _full_reason(exc: BaseException) -> str:
    return _one_line(getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}")


def _one_line(text: str) -> str:
    """The reason whole (its advice is the useful part), on one line."""
    return " ".join(str(text).split())
