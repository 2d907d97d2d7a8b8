"""A pull's arguments, checked and resolved once: which model, revision, sources, lock, target.

``PullOptions`` is the one keyword signature of ``pull`` and ``pull_model``; ``resolve_request``
turns it into a ``PullRequest`` every later step reads, refusing contradictions (``--source``
against ``--sources`` or the lock, ``--revision`` against the name or the lock) up front.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from ..errors import (
    UsageError,
)
from .plan import (
    AUTO,
    ProbeResult,
    parse_source_list,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..registry.info import ModelInfo
    from ..settings import Settings
    from ..store.lockfile import LockedModel, LockFile


from .results import ProgressFn


class PullOptions(TypedDict, total=False):
    """The keywords of ``pull`` and ``pull_model``."""

    source: str  # "auto" (probe and pick), or a source key
    sources: Sequence[str] | str | None  # several hubs at once; their agreeing files come from all
    revision: str | None  # a branch, tag or commit (``name@rev`` works too)
    local_dir: str | Path | None  # put the files there instead of the store
    include: Sequence[str] | None  # globs of files to take
    exclude: Sequence[str] | None  # globs of files to leave
    all_files: bool  # also the formats a safetensors checkpoint makes redundant
    gguf: str | None  # a GGUF quantization level: exactly that file of the model's GGUF variant
    lock: str | Path | LockFile | None  # pull exactly what a lock file records
    dry_run: bool  # plan and report, fetch nothing
    progress: ProgressFn | None  # called with every engine event and every PullEvent
    offline: bool | None  # the store only (default: the settings')
    settings: Settings | None
    connections: int | None  # most requests at once (default: adapt to the link, up to 32)
    max_workers: int | None  # the old name of ``connections``
    probes: Mapping[str, ProbeResult] | None  # probe results to plan ``auto`` with (tests, benches)


@dataclass(frozen=True)
class PullRequest:
    """A pull's arguments, resolved: what every step reads."""

    info: ModelInfo
    settings: Settings
    revision: str | None
    source: str
    sources: Sequence[str] | str | None
    explicit: str  # the --source asked for, lower-case ("auto" when none)
    locked: LockedModel | None
    include: Sequence[str] | None
    exclude: Sequence[str] | None
    all_files: bool
    target_override: Path | None
    dry_run: bool
    offline: bool
    emit: ProgressFn
    connections: int | None
    probes: Mapping[str, ProbeResult] | None
    wanted: tuple[str, ...]  # the hubs whose copy on disk answers the request

    @property
    def multi_source(self) -> bool:
        return self.sources is not None


def resolve_request(name: str, options: PullOptions) -> PullRequest:
    """Check and resolve ``options`` for ``name``; UsageError for contradictions."""
    from ..registry.api import get
    from ..settings import load_settings

    unknown = set(options) - set(PullOptions.__annotations__)
    if unknown:
        raise UsageError(f"pull got unknown option(s) {', '.join(sorted(unknown))}")
    settings = options.get("settings") or load_settings()
    offline = options.get("offline")
    source = options.get("source") or AUTO
    sources = options.get("sources")
    info = get(name)
    info, include = gguf_selection(info, options.get("gguf"), options.get("include"))
    revision = requested_revision(info, options.get("revision"))
    explicit = source.strip().lower()
    if sources and explicit not in (AUTO, *(parse_source_list(sources) or ())[:1]):
        given = sources if isinstance(sources, str) else ",".join(sources)
        raise UsageError(
            f"--source {source} and --sources {given} conflict; pass one of them "
            "(--sources takes several, the first preferred)",
            source=source,
        )
    lock = options.get("lock")
    locked = locked_entry(lock, info) if lock is not None else None
    if locked is not None and explicit not in (AUTO, locked.source):
        raise UsageError(
            f"the lock file pins {info.name} to {locked.source} "
            f"({locked.repo_id} @ {locked.pin}); a commit of one hub does not exist on another. "
            f"Drop --source {source}, or add the hub as a fallback with "
            f"--sources {locked.source},{explicit}, or re-lock with --source {explicit}",
            source=source,
        )
    if locked is not None:
        if revision and revision not in (locked.commit, locked.revision):
            raise UsageError(
                f"--revision {revision} contradicts the lock file ({locked.pin}); drop one of them",
                revision=revision,
            )
        revision = locked.pin
        if sources is None and source == AUTO:
            source = locked.source
    local_dir = options.get("local_dir")
    connections = options.get("connections") or options.get("max_workers")
    if connections is not None and connections < 1:
        raise UsageError(f"connections must be at least 1, got {connections}")
    return PullRequest(
        info=info,
        settings=settings,
        revision=revision,
        source=source,
        sources=sources,
        explicit=explicit,
        locked=locked,
        include=include,
        exclude=options.get("exclude"),
        all_files=bool(options.get("all_files")),
        target_override=Path(local_dir).expanduser() if local_dir is not None else None,
        dry_run=bool(options.get("dry_run")),
        offline=settings.offline if offline is None else offline,
        emit=options.get("progress") or (lambda _e: None),
        connections=connections,
        probes=options.get("probes"),
        wanted=wanted_sources(sources, explicit, locked),
    )


def gguf_selection(
    info: ModelInfo, level: str | None, include: Sequence[str] | None
) -> tuple[ModelInfo, Sequence[str] | None]:
    """For ``--gguf LEVEL`` or ``NAME:LEVEL``: the GGUF variant and exactly its one file."""
    if level is not None:
        from ..registry.loader import load_registry

        if info.gguf_level is not None and info.gguf_level.lower() != level.lower():
            raise UsageError(
                f"--gguf {level} contradicts the :{info.gguf_level} in the name; "
                "give the level once",
                level=level,
            )
        info = load_registry().with_gguf_level(info, level)
    path = info.gguf_file()
    if path is None:
        return info, include
    if include:
        raise UsageError(
            f"a GGUF level names one file ({path}); leave out --include", include=list(include)
        )
    return info, [path]


def requested_revision(info: ModelInfo, revision: str | None) -> str | None:
    """``--revision`` or the name's ``@revision``; both, when they differ, is a usage error."""
    if revision and info.revision and revision != info.revision:
        raise UsageError(
            f"--revision {revision} contradicts the @{info.revision} in the name; "
            "give the revision once",
            revision=revision,
        )
    return revision or info.revision


def wanted_sources(
    sources: Sequence[str] | str | None, explicit: str, locked: LockedModel | None
) -> tuple[str, ...]:
    """The hubs whose copy on disk answers the request: those named, else the lock's, else any
    hub ``auto`` may pick (never the InternEvo-format openxlab-origin)."""
    from ..hubs.catalog import OPENXLAB_ORIGIN, SOURCE_KEYS

    if sources:
        return parse_source_list(sources) or ()
    if explicit != AUTO:
        return parse_source_list([explicit]) or ()
    if locked is not None:
        return (locked.source,)
    return tuple(k for k in SOURCE_KEYS if k != OPENXLAB_ORIGIN)


def locked_entry(lock: str | Path | LockFile, info: ModelInfo) -> LockedModel:
    from ..store.lockfile import LockFile, read_lock

    lock_obj = lock if isinstance(lock, LockFile) else read_lock(lock)
    found = lock_obj.find(info.name)
    if found is None:
        raise UsageError(
            f"the lock file has no entry for {info.name} (it lists "
            + ", ".join(m.name for m in lock_obj.models)
            + "); add it with `model-zoo lock`",
            model=info.name,
        )
    return found
