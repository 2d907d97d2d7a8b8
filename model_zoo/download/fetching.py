"""The fetch step of a pull: run the engine on the files still to get, retry a file on another
hub's sha256 when the download proved the first listing wrong, and say how each was verified."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    FetchFailedError,
)
from ..store.manifest import (
    CROSS_BYTES,
    GIT_BLOB,
    PUBLISHED,
    FileRecord,
)
from ..units import human_size
from .matching import FilePlan
from .results import ProgressFn, PullEvent, PullResult
from .types import LinkStats, Renew

if TYPE_CHECKING:  # pragma: no cover
    pass


def jobs_for_plans(plans: Sequence[FilePlan]) -> list[Any]:
    from .engine import FileJob

    return [
        FileJob(
            path=fp.path,
            size=fp.size,
            sha256=fp.sha256,
            candidates=tuple(c.remote for c in fp.candidates),
            sources=fp.sources,
        )
        for fp in plans
    ]


def fetch_files(
    todo: Sequence[FilePlan],
    target: Path,
    *,
    multi_source: bool,
    emit: ProgressFn,
    connections: int | None,
    result: PullResult,
    renew: Renew | None = None,
) -> dict[str, FileRecord]:
    """Run the engine. A file that failed while another source's listing claims a different
    sha256 is tried once more on that claim: the failure proved the first listing wrong."""
    from .engine import EngineOptions, fetch

    options = EngineOptions(multi_source=multi_source)
    if connections:
        options = replace(
            options,
            connections=connections,
            initial_connections=min(connections, options.initial_connections),
        )
    by_path = {fp.path: fp for fp in todo}
    emit = relabelled(emit, by_path)
    try:
        report = fetch(jobs_for_plans(todo), target, options=options, on_event=emit, renew=renew)
        _tell_link(report.link, result, emit)
        return records_of(todo, report.files, result)
    except FetchFailedError as exc:
        first = exc.report
        failed = [p for p, _e in first.failed]
        alts = [alternative(by_path[p]) if p in by_path else None for p in failed]
        if any(a is None for a in alts):
            raise exc.first from None  # the file's own error: its exit code, its advice
    retry = [a for a in alts if a is not None]
    for old, alt in zip((by_path[p] for p in failed), retry, strict=True):
        result.notes.append(
            f"{old.path}: the bytes did not match the sha256 {old.expected_from} lists; they match "
            f"{alt.expected_from}'s, so {old.expected_from}'s listing is wrong"
        )
    emit(PullEvent("note", f"retrying {len(retry)} file(s) on the sha256 another source publishes"))
    by_path.update((fp.path, fp) for fp in retry)
    try:
        second = fetch(jobs_for_plans(retry), target, options=options, on_event=emit, renew=renew)
    except FetchFailedError as exc:
        raise exc.first from None
    records = records_of([fp for fp in todo if fp.path not in failed], first.files, result)
    records.update(records_of(retry, second.files, result))
    return records


def describe_link(link: LinkStats) -> str:
    """What the fetch found out about the link, in one line."""
    parts = [
        f"{link.peak_connections} connection{'s' if link.peak_connections != 1 else ''} at most"
    ]
    if link.rate_per_connection:
        parts.append(f"{human_size(int(link.rate_per_connection))}/s each")
    if link.total_rate:
        parts.append(f"{human_size(int(link.total_rate))}/s in all")
    if link.round_trip is not None:
        parts.append(f"{link.round_trip * 1000:.0f} ms to the first byte")
    if link.throttled:
        parts.append(f"the hub pushed back {link.throttled} time(s) (429/503)")
    return "link: " + ", ".join(parts)


def _tell_link(link: LinkStats | None, result: PullResult, emit: ProgressFn) -> None:
    if link is None or not link.total_rate:
        return
    result.link = link
    emit(PullEvent("link", describe_link(link), {"link": asdict(link)}))


def relabelled(emit: ProgressFn, plans: Mapping[str, FilePlan]) -> ProgressFn:
    """Report each finished file in the manifest's words (``published-sha256``, ``lock``, ...),
    not the engine's, so the per-file lines and ``--json`` events agree with the summary; for
    the checks that run after the download (git blob id, second source) say they follow."""
    from . import progress as ev

    after = {GIT_BLOB, CROSS_BYTES}

    def relabel(event: Any) -> None:
        fp = plans.get(getattr(event, "path", ""))
        if isinstance(event, ev.FileDone) and fp is not None:
            label = f"{fp.method}, checked next" if fp.method in after else fp.method
            event = replace(event, verification=label)
        emit(event)

    return relabel


def alternative(fp: FilePlan) -> FilePlan | None:
    """The plan for ``fp`` trusting the first disputing source's published sha256."""
    if not fp.disputed:
        return None
    other = fp.disputed[0]
    sha = (other.remote.sha256 or "").lower()
    same = tuple(c for c in fp.disputed if (c.remote.sha256 or "").lower() == sha)
    # the first listing's own server may still serve good bytes: keep it, last
    return replace(
        fp,
        sha256=sha,
        method=PUBLISHED,
        expected_from=other.source,
        candidates=same + fp.candidates,
        disputed=(),
    )


def records_of(
    todo: Sequence[FilePlan], results: Sequence[Any], result: PullResult
) -> dict[str, FileRecord]:
    out: dict[str, FileRecord] = {}
    files = {fr.path: fr for fr in results}
    for fp in todo:
        fr = files[fp.path]
        out[fp.path] = FileRecord(
            fp.path, fr.size, fr.sha256, fp.method, tuple(fr.sources) or fp.sources[:1]
        )
        result.downloaded_bytes += fr.bytes_downloaded
        result.resumed_bytes += fr.bytes_resumed
        if fr.replaced_existing:
            result.replaced.append(fp.path)
    return out
