"""``pull``: name in, verified directory out.

    name@rev -> registry entry -> planned sources (probed when ``auto``) -> manifests
    -> files selected and matched across sources by sha256 -> what is already on disk
    -> disk space -> download engine -> cross-checks -> manifest written last -> Path

Everything that can be refused (unknown name, unsafe listing, changed remote under a lock,
not enough space) is refused before a byte is written. The model-level lock is held from
the first write to the manifest, so two processes pulling one model end with one copy.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    FetchFailedError,
    HubError,
    IntegrityError,
    LockMismatchError,
    ModelZooError,
    NoSourceError,
    OfflineError,
    RevisionMovedError,
    RevisionNotFoundError,
    UnsafePathError,
    UsageError,
)
from ..store.layout import check_remote_path, meta_dir, model_lock_path, snapshot_dir
from ..store.manifest import (
    CROSS_BYTES,
    GIT_BLOB,
    PUBLISHED,
    SIZE_ONLY,
    FileRecord,
    SourceRecord,
    StoreManifest,
    read_manifest,
    stamp_epoch,
    utc_now,
    write_manifest,
)
from .filelist import select_files
from .matching import FilePlan, check_against_lock, plan_files
from .plan import (
    AUTO,
    PlannedSource,
    ProbeResult,
    describe_plan,
    parse_source_list,
    plan_sources,
    probe_sources,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..hubs.base import HubAdapter, Manifest
    from ..registry.info import ModelInfo
    from ..settings import Settings
    from ..store.lockfile import LockedModel, LockFile

ProgressFn = Callable[[Any], None]
MAX_BRANCH_MOVES = 2  # a branch that moves more often than this during one pull is reported
PROBE_BUDGET = 2.0


@dataclass(frozen=True)
class PullEvent:
    """Something the pull itself (not the engine) wants the user to see."""

    kind: str  # plan | note | waiting_model | verify | reuse | skip | start | done
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedFile:
    path: str
    size: int | None
    sha256: str | None
    method: str
    sources: tuple[str, ...]
    present: bool  # complete and verified on disk already
    resumable: int = 0  # bytes an interrupted pull left that the next one keeps (not present)


@dataclass
class PullResult:
    """What a pull did (or, for a dry run, would do)."""

    name: str
    path: Path
    source: str
    repo_id: str
    revision: str | None
    commit: str | None
    plan: list[PlannedSource]
    plan_text: str
    files: list[PlannedFile]
    skipped: list[tuple[str, str]]
    free_bytes: int | None = None
    dry_run: bool = False
    offline: bool = False
    manifest: StoreManifest | None = None
    downloaded_bytes: int = 0
    resumed_bytes: int = 0
    reused_files: int = 0
    notes: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # files that were in the target with other bytes

    @property
    def total_size(self) -> int:
        return sum(f.size or 0 for f in self.files)

    @property
    def to_download(self) -> int:
        return sum(max(0, (f.size or 0) - f.resumable) for f in self.files if not f.present)

    @property
    def fits(self) -> bool | None:
        return None if self.free_bytes is None else self.to_download <= self.free_bytes

    def verified_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        records = self.manifest.files if self.manifest else ()
        for r in records:
            out[r.verified] = out.get(r.verified, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": "result",
            "name": self.name,
            "path": str(self.path),
            "source": self.source,
            "repo_id": self.repo_id,
            "revision": self.revision,
            "commit": self.commit,
            "plan": [vars(p) for p in self.plan],
            "plan_text": self.plan_text,
            "dry_run": self.dry_run,
            "offline": self.offline,
            "files": [vars(f) for f in self.files],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "total_size": self.total_size,
            "to_download": self.to_download,
            "free_bytes": self.free_bytes,
            "fits": self.fits,
            "downloaded_bytes": self.downloaded_bytes,
            "resumed_bytes": self.resumed_bytes,
            "reused_files": self.reused_files,
            "verified": self.verified_counts(),
            "verification": {r.path: r.verified for r in (self.manifest.files if self.manifest else ())},
            "notes": self.notes,
        }


# ---------------------------------------------------------------- public API


def pull(
    name: str,
    *,
    source: str = AUTO,
    sources: Sequence[str] | str | None = None,
    revision: str | None = None,
    local_dir: str | Path | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    all_files: bool = False,
    lock: str | Path | LockFile | None = None,
    dry_run: bool = False,
    progress: ProgressFn | bool | None = None,
    offline: bool | None = None,
    settings: Settings | None = None,
    max_workers: int | None = None,
) -> Path:
    """Download ``name`` (``name@revision`` works) verified into the store; return its directory.

    ``source``: ``auto`` (probe and pick), or a source key; ``sources``: several at once, whose
    agreeing files are fetched from all of them. ``local_dir``: put the files there instead of
    the store. ``lock``: a lock file; pulls exactly what it records. ``progress``: called with
    every engine event and every ``PullEvent``, or ``True`` for the CLI's bars (stderr).
    Raises model_zoo.errors types.
    """
    opts: dict[str, Any] = dict(
        source=source, sources=sources, revision=revision, local_dir=local_dir, include=include,
        exclude=exclude, all_files=all_files, lock=lock, dry_run=dry_run, offline=offline,
        settings=settings, max_workers=max_workers,
    )
    if progress is not True:
        return pull_model(name, progress=progress or None, **opts).path
    from ..cli.progress import make_renderer

    renderer = make_renderer()
    try:
        return pull_model(name, progress=renderer, **opts).path
    finally:
        renderer.close()


def pull_model(
    name: str,
    *,
    source: str = AUTO,
    sources: Sequence[str] | str | None = None,
    revision: str | None = None,
    local_dir: str | Path | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    all_files: bool = False,
    lock: str | Path | LockFile | None = None,
    dry_run: bool = False,
    progress: ProgressFn | None = None,
    offline: bool | None = None,
    settings: Settings | None = None,
    max_workers: int | None = None,
    probes: Mapping[str, ProbeResult] | None = None,
) -> PullResult:
    """``pull`` with the full report: files, how each was verified, bytes moved, the plan."""
    from ..registry.api import get
    from ..settings import load_settings

    settings = settings or load_settings()
    offline = settings.offline if offline is None else offline
    emit = progress or (lambda _e: None)
    info = get(name)
    revision = requested_revision(info, revision)
    explicit = (source or AUTO).strip().lower()
    if sources and explicit not in (AUTO, *(parse_source_list(sources) or ())[:1]):
        raise UsageError(
            f"--source {source} and --sources {sources if isinstance(sources, str) else ','.join(sources)} "
            "conflict; pass one of them (--sources takes several, the first preferred)",
            source=source,
        )
    locked = _locked_entry(lock, info) if lock is not None else None
    if locked is not None and explicit not in (AUTO, locked.source):
        raise UsageError(
            f"the lock file pins {info.name} to {locked.source} ({locked.repo_id} @ {locked.pin}); a "
            f"commit of one hub does not exist on another. Drop --source {source}, or add the hub as "
            f"a fallback with --sources {locked.source},{explicit}, or re-lock with --source {explicit}",
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
    target_override = Path(local_dir).expanduser() if local_dir is not None else None

    # Offline, or a pinned commit already complete on disk: no network at all.
    wanted = _wanted_sources(sources, explicit, locked)
    cached = _from_disk(info, settings, revision, target_override, include, exclude, all_files, locked, offline,
                        wanted)
    if cached is not None:
        if dry_run:
            cached.dry_run = True
            cached.free_bytes = _free_space(cached.path)
        return cached
    if offline:
        what = f"{info.name}@{revision}" if revision else info.name
        if sources or explicit != AUTO:
            what += f" from {', '.join(wanted)}"
        raise OfflineError(what + (f" (in {target_override})" if target_override else ""))

    plan, probe_results = _plan(info, settings, source, sources, probes)
    plan_text = describe_plan(plan, probe_results)
    emit(PullEvent("plan", plan_text, {"plan": [vars(p) for p in plan]}))
    moves = 0
    while True:  # again from the listing when a branch moved under an unpinned pull
        try:
            return _pull_listed(info, settings, plan, plan_text, revision, locked, include, exclude, all_files,
                                dry_run, target_override, sources is not None, emit, max_workers)
        except _BranchMoved as moved:
            moves += 1
            if moves > MAX_BRANCH_MOVES:
                raise RevisionMovedError(moved.hub, moved.repo_id, moved.revision, moves) from None
            emit(PullEvent("note", f"{moved.source}: {moved.repo_id} {moved.revision} moved from "
                           f"{moved.old[:12]} to {moved.new[:12]} during the pull; listing it again"))


def _pull_listed(
    info: ModelInfo, settings: Settings, plan: list[PlannedSource], plan_text: str, revision: str | None,
    locked: LockedModel | None, include: Sequence[str] | None, exclude: Sequence[str] | None,
    all_files: bool, dry_run: bool, target_override: Path | None, multi_source: bool, emit: ProgressFn,
    max_workers: int | None,
) -> PullResult:
    """Everything of a pull from listing the planned sources on: match, plan files, fetch, record."""
    try:
        primary, others, plan, failures = _manifests(info, settings, plan, revision)
    except RevisionNotFoundError as exc:
        if locked is None:
            raise
        raise LockMismatchError(info.name, f"{exc.hub} no longer has revision {revision} of {locked.repo_id}") from None
    if failures:
        emit(PullEvent("note", "; ".join(failures)))
    _check_listing(primary)

    locked_files = {f.path: (f.size, f.sha256) for f in locked.files} if locked else None
    if locked is not None:
        check_against_lock(info.name, primary, locked_files or {}, locked_commit=locked.commit)
        # --include / --exclude narrow what the lock records (the lock already chose the formats)
        sel = select_files(locked_files or {}, include=include, exclude=exclude, all_files=True)
        selected = list(sel.selected)
        skipped = [(p, "not in the lock file") for p in sorted(primary.by_path()) if p not in (locked_files or {})]
        skipped += sel.skipped
    else:
        sel = select_files(primary.by_path(), include=include, exclude=exclude, all_files=all_files)
        selected, skipped = list(sel.selected), list(sel.skipped)
    if not selected:
        raise UsageError(
            f"no file of {primary.repo_id} on {primary.source} matches the filters "
            f"({len(skipped)} skipped); check --include / --exclude",
            model=info.name,
        )
    file_plans = plan_files(selected, primary, others, locked=locked_files)

    target = target_override or snapshot_dir(settings.home, info.slug, primary.source, revision, primary.commit)
    result = PullResult(
        name=info.name, path=target, source=primary.source, repo_id=primary.repo_id, revision=revision,
        commit=primary.commit, plan=plan, plan_text=plan_text, files=[], skipped=skipped,
        notes=list(failures),
    )
    for fp in file_plans:
        if fp.disputed:
            result.notes.append(
                f"{fp.path}: " + ", ".join(f"{c.source} lists sha256 {(c.remote.sha256 or '')[:12]}…"
                                           for c in fp.disputed)
                + f", {fp.expected_from or primary.source} lists {(fp.sha256 or '?')[:12]}…"
            )

    if dry_run:
        present = _find_present(target, file_plans)
        result.files = [_planned(fp, fp.path in present, target) for fp in file_plans]
        result.free_bytes = _free_space(target)
        result.dry_run = True
        return result

    lock_path = (meta_dir(target) / "lock") if target_override else model_lock_path(settings.home, info.slug)
    from ..store.locking import ProcessLock

    def waiting(owner: str) -> None:
        emit(PullEvent("waiting_model", f"another process{f' ({owner})' if owner else ''} is pulling "
                       f"{info.name}; waiting for it to finish"))

    model_lock = ProcessLock(lock_path, on_wait=waiting)
    _prepare_target(target, model_lock)
    try:
        return _pull_locked(info, settings, target, primary, others, file_plans, skipped, result,
                            multi_source, emit, max_workers, revision,
                            _renewer(settings, [primary, *others]), _head_check(settings, primary))
    except _BranchMoved:
        _drop_unfinished(target, settings)  # under the model lock: no other pull works in it
        raise
    finally:
        model_lock.release()


def _prepare_target(target: Path, model_lock: Any) -> None:
    """Create ``target`` and take the model lock; LocalWriteError (not a traceback) when the
    place cannot hold a checkpoint: a file in the way, no permission, a read-only disk."""
    from ..errors import LocalWriteError

    if target.exists() and not target.is_dir():
        raise LocalWriteError(str(target), "it is a file, not a directory")
    try:
        target.mkdir(parents=True, exist_ok=True)
        model_lock.acquire()
    except OSError as exc:
        where = exc.filename if isinstance(exc.filename, str) else str(target)
        raise LocalWriteError(where, exc.strerror or str(exc)) from None


# ---------------------------------------------------------------- steps


def requested_revision(info: ModelInfo, revision: str | None) -> str | None:
    """``--revision`` or the name's ``@revision``; both, when they differ, is a usage error."""
    if revision and info.revision and revision != info.revision:
        raise UsageError(
            f"--revision {revision} contradicts the @{info.revision} in the name; give the revision once",
            revision=revision,
        )
    return revision or info.revision


def _wanted_sources(sources: Sequence[str] | str | None, explicit: str,
                    locked: LockedModel | None) -> tuple[str, ...]:
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


def _locked_entry(lock: str | Path | LockFile, info: ModelInfo) -> LockedModel:
    from ..store.lockfile import LockFile, read_lock

    lock_obj = lock if isinstance(lock, LockFile) else read_lock(lock)
    found = lock_obj.find(info.name)
    if found is None:
        raise UsageError(
            f"the lock file has no entry for {info.name} (it lists "
            + ", ".join(m.name for m in lock_obj.models) + "); add it with `model-zoo lock`",
            model=info.name,
        )
    return found


def _plan(info: ModelInfo, settings: Settings, source: str, sources: Sequence[str] | str | None,
          probes: Mapping[str, ProbeResult] | None) -> tuple[list[PlannedSource], dict[str, ProbeResult]]:
    from ..hubs.factory import adapter_for

    src_list = sources.split(",") if isinstance(sources, str) else sources
    if src_list or (source or AUTO).lower() != AUTO:
        return plan_sources(info, settings, None, source=source, sources=src_list), {}
    if probes is None:
        first = plan_sources(info, settings, None)
        keys = [p.source for p in first]
        probes = probe_sources(keys, lambda k: adapter_for(k, settings), budget=PROBE_BUDGET) if len(keys) > 1 else {}
    return plan_sources(info, settings, probes), dict(probes)


def _manifests(
    info: ModelInfo, settings: Settings, plan: list[PlannedSource], revision: str | None,
) -> tuple[Manifest, list[Manifest], list[PlannedSource], list[str]]:
    """The primary manifest (first source that answers) and the others' (best effort, parallel)."""
    from ..hubs.factory import adapter_for

    def listing(p: PlannedSource, rev: str | None) -> Manifest:
        adapter: HubAdapter = adapter_for(p.source, settings)
        return adapter.manifest(p.repo_id, rev)

    failures: list[str] = []
    primary = None
    used = list(plan)
    for i, p in enumerate(plan):
        try:
            primary = listing(p, revision)
            used = plan[i:]
            break
        except HubError as exc:
            failures.append(f"{p.source}: {exc.message}")
            if len(plan) == 1:
                raise
    if primary is None:
        raise NoSourceError(info.name, [p.source for p in plan], reasons=failures)
    others: list[Manifest] = []
    rest = used[1:]
    if rest:
        # Other hubs' revision names differ (a commit id is per hub): list their default branch
        # unless the revision is a tag/branch name; files then match only where sha256 agrees.
        from ..hubs.http import is_commit_id

        other_rev = None if revision is None or is_commit_id(revision) else revision
        with ThreadPoolExecutor(max_workers=len(rest)) as pool:
            futures = [(p, pool.submit(listing, p, other_rev)) for p in rest]
            for p, fut in futures:
                try:
                    others.append(fut.result())
                except HubError as exc:
                    failures.append(f"{p.source}: {exc.message} (not used)")
    return primary, others, used, failures


class _BranchMoved(Exception):
    """The branch an unpinned listing named now points at another commit (internal: the pull
    lists again)."""

    def __init__(self, primary: Manifest, new: str, hub: str) -> None:
        super().__init__(f"{primary.repo_id} moved to {new}")
        self.source, self.repo_id, self.revision = primary.source, primary.repo_id, primary.revision
        self.old, self.new, self.hub = primary.commit or "", new, hub


def _head_check(settings: Settings, primary: Manifest) -> Callable[[], None] | None:
    """For a listing whose URLs name a branch (``pinned=False``): a check that raises
    _BranchMoved when the branch no longer points at the commit the listing resolved."""
    if primary.pinned or primary.commit is None:
        return None
    from ..hubs.catalog import hub_info
    from ..hubs.factory import adapter_for

    def check() -> None:
        adapter: Any = adapter_for(primary.source, settings)
        head = adapter.head_commit(primary.repo_id, primary.revision)
        if head is not None and head != primary.commit:
            raise _BranchMoved(primary, head, hub_info(primary.source).title)

    return check


def _drop_unfinished(target: Path, settings: Settings) -> None:
    """A store snapshot of a commit the branch left, that this pull started and never
    finished (no manifest), is removed: nothing will complete it. Local dirs are kept."""
    from ..store.layout import manifest_path

    models = (settings.home / "models").resolve()
    if models in target.resolve().parents and not manifest_path(target).exists():
        shutil.rmtree(target, ignore_errors=True)


def _renewer(settings: Settings, manifests: Sequence[Manifest]) -> Any:
    """Fresh URLs for the sources whose listings hand out expiring ones (OpenXLab), or None."""
    from ..hubs.factory import adapter_for
    from .renew import ListingRenewer

    def listing_of(m: Manifest) -> Callable[[], Manifest]:
        adapters: list[HubAdapter] = []  # built on first use, then kept (with its credentials)

        def listing() -> Manifest:
            if not adapters:
                adapters.append(adapter_for(m.source, settings))
            return adapters[0].manifest(m.repo_id, m.revision)

        return listing

    expiring = {m.source: listing_of(m) for m in manifests if any(f.expires for f in m.files)}
    return ListingRenewer(expiring) if expiring else None


def _check_listing(manifest: Manifest) -> None:
    """Refuse the whole listing if one entry is unsafe: nothing is written for any of it."""
    for f in manifest.files:
        kind = getattr(f, "kind", "file")
        if kind != "file":
            raise UnsafePathError(f.path, f"the listing marks it as a {kind}; model-zoo writes only plain files",
                                  source=manifest.source)
        check_remote_path(f.path, source=manifest.source)


def _planned(fp: FilePlan, present: bool, target: Path | None = None) -> PlannedFile:
    kept = 0 if present or target is None else _resumable_bytes(target, fp)
    return PlannedFile(fp.path, fp.size, fp.sha256, fp.method, fp.sources, present, kept)


def _resumable_bytes(target: Path, fp: FilePlan) -> int:
    """Bytes of ``fp`` an interrupted pull left that the next pull keeps: the whole file when it
    is at its final name with the right size (the pull re-hashes it), else what its partial
    recorded."""
    from .partial import load_sidecar
    from .paths import partial_paths

    try:
        paths = partial_paths(target, fp.path)
        if fp.size is not None and paths.final.is_file() and paths.final.stat().st_size == fp.size:
            return fp.size
        sidecar = load_sidecar(paths.sidecar)
    except (OSError, UnsafePathError):
        return 0
    if sidecar is None or not sidecar.matches(fp.path, fp.size, fp.sha256):
        return 0
    return sum(end - start for start, end in sidecar.written)


def _free_space(target: Path) -> int | None:
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def _find_present(target: Path, plans: Sequence[FilePlan]) -> dict[str, FileRecord]:
    """Files an earlier pull of ``target`` verified and recorded, unchanged since (same size and
    sha256, not modified after the manifest was written). Other files already at their final
    name are the engine's to check: it re-hashes them and keeps them when they match."""
    try:
        manifest = read_manifest(target)
    except IntegrityError:
        manifest = None
    if manifest is None:
        return {}
    records = manifest.by_path()
    verified_at = stamp_epoch(manifest.verified_at)
    present: dict[str, FileRecord] = {}
    for fp in plans:
        rec = records.get(fp.path)
        path = target / fp.path
        if rec is None or verified_at is None:
            continue
        try:
            st = path.lstat()
        except OSError:
            continue
        if path.is_symlink() or st.st_size != rec.size or st.st_mtime > verified_at:
            continue
        if (fp.size is None or fp.size == rec.size) and (fp.sha256 is None or rec.sha256 == fp.sha256):
            present[fp.path] = rec
    return present


def _reuse_from_store(
    settings: Settings, target: Path, plans: Sequence[FilePlan], present: dict[str, FileRecord],
    *, link: bool,
) -> dict[str, FileRecord]:
    """Files with a known sha256 that another snapshot in the store already holds: hard-link
    them (inside the store, where nobody edits files) or copy them (into a ``--local-dir``,
    where an edit must not reach the store), then re-hash before trusting them."""
    from ..store.cache import iter_snapshots
    from ..store.hashing import sha256_many

    wanted = {fp.sha256: fp for fp in plans if fp.sha256 and fp.path not in present}
    if not wanted:
        return {}
    sources: dict[str, Path] = {}
    for snap in iter_snapshots(settings.home):
        if snap.root.resolve() == target.resolve():
            continue
        for rec in snap.manifest.files:
            if rec.sha256 in wanted and rec.sha256 not in sources:
                sources[rec.sha256] = snap.root / rec.path
    placed: list[tuple[FilePlan, Path]] = []
    for sha, src in sources.items():
        fp = wanted[sha]
        dest = target / fp.path
        tmp = dest.with_name(f".{dest.name}.reuse-{os.getpid()}")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                if not link:
                    raise OSError("copy, do not share the inode")
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
            placed.append((fp, tmp))
        except OSError:
            continue
    out: dict[str, FileRecord] = {}
    digests = sha256_many([tmp for _fp, tmp in placed])
    for fp, tmp in placed:
        got = digests.get(tmp)
        if isinstance(got, tuple) and got[0] == fp.sha256 and (fp.size is None or got[1] == fp.size):
            os.replace(tmp, target / fp.path)
            out[fp.path] = FileRecord(fp.path, got[1], got[0], fp.method, fp.sources[:1])
        else:
            tmp.unlink(missing_ok=True)
    return out


def _check_space(target: Path, plans: Sequence[FilePlan]) -> None:
    from ..errors import DiskSpaceError

    needed = 0
    for fp in plans:
        size = fp.size or 0
        if size and (target / fp.path).is_file() and (target / fp.path).stat().st_size == size:
            continue  # complete from an interrupted pull: re-hashed in place, needs no new space
        needed += max(0, size - _partial_bytes(target, fp.path))
    free = _free_space(target)
    if free is not None and needed > free:
        raise DiskSpaceError(str(target), needed, free)


def _partial_bytes(target: Path, path: str) -> int:
    """Bytes already on disk in the engine's partial file for ``path`` (allocated blocks)."""
    try:
        from .paths import partial_paths

        st = partial_paths(target, path).data.stat()
    except (OSError, ImportError, UnsafePathError):
        return 0
    return min(st.st_size, getattr(st, "st_blocks", 0) * 512)


def _pull_locked(
    info: ModelInfo, settings: Settings, target: Path, primary: Manifest, others: list[Manifest],
    file_plans: list[FilePlan], skipped: list[tuple[str, str]], result: PullResult,
    multi_source: bool, emit: ProgressFn, max_workers: int | None, revision: str | None,
    renew: Any = None, head_check: Callable[[], None] | None = None,
) -> PullResult:
    present = _find_present(target, file_plans)
    in_store = settings.home.resolve() in target.resolve().parents
    reused = _reuse_from_store(settings, target, file_plans, present, link=in_store)
    if reused:
        emit(PullEvent("reuse", f"{len(reused)} file(s) taken from other snapshots in the store"))
    present.update(reused)
    result.reused_files = len(reused)
    todo = [fp for fp in file_plans if fp.path not in present]
    result.files = [_planned(fp, fp.path in present) for fp in file_plans]
    for fp in file_plans:
        if fp.path in present:
            emit(PullEvent("skip", f"{fp.path}: already complete and verified", {"path": fp.path}))
    _check_space(target, todo)

    records: dict[str, FileRecord] = dict(present)
    if todo:
        total = sum(fp.size or 0 for fp in todo)
        emit(PullEvent("start", f"downloading {len(todo)} file(s), {total / 1e6:.1f} MB, into {target}",
                       {"files": len(todo), "bytes": total, "path": str(target)}))
        _clear_edited_small_files(todo, target, result)
        try:
            fetched = _fetch(todo, target, multi_source=multi_source, emit=emit, max_workers=max_workers,
                             result=result, renew=renew)
            records.update(fetched)
            if result.replaced:
                shown = ", ".join(result.replaced[:5]) + (" …" if len(result.replaced) > 5 else "")
                result.notes.append(f"replaced {len(result.replaced)} file(s) already in {target} whose bytes "
                                    f"differed from the hub's: {shown}")
            _check_git_blobs(todo, target)
            records.update(_cross_check(todo, target, fetched, emit, max_workers, result))
        except ModelZooError:
            if head_check is not None:
                head_check()  # bytes that match nothing may be the next commit's
            raise
    if head_check is not None:
        head_check()  # the files are one commit's only if the branch still points there

    sources = [SourceRecord(primary.source, primary.repo_id, primary.endpoint, primary.commit)]
    used = {s for r in records.values() for s in r.sources}
    sources += [SourceRecord(m.source, m.repo_id, m.endpoint, m.commit) for m in others if m.source in used]
    old = None
    try:
        old = read_manifest(target)
    except IntegrityError:
        pass
    # Files an earlier pull of this directory verified and that are still there stay listed.
    remote = primary.by_path()
    if old is not None:
        for rec in old.files:
            if rec.path in records or rec.path not in remote:
                continue
            r = remote[rec.path]
            same = (r.sha256 is None or r.sha256.lower() == rec.sha256) and (r.size in (None, rec.size))
            try:
                ok_size = (target / rec.path).stat().st_size == rec.size
            except OSError:
                ok_size = False
            if same and ok_size:
                records[rec.path] = rec
    manifest = StoreManifest(
        name=info.name, slug=info.slug, revision=revision, commit=primary.commit, sources=tuple(sources),
        files=tuple(sorted(records.values(), key=lambda r: r.path)), verified_at=utc_now(),
        skipped=tuple(sorted(p for p in remote if p not in records)),
    )
    write_manifest(target, manifest)
    _tidy_partials(target)
    result.manifest = manifest
    emit(PullEvent("done", str(target), {"path": str(target), "verified": result.verified_counts()}))
    return result


def _tidy_partials(target: Path) -> None:
    """Remove the engine's working folder once no partial download is left in it (stale lock
    files only). Safe: we hold the model lock, so no other pull works in ``target``."""
    from .paths import PARTIAL_DIR, PART_SUFFIX

    work = target / PARTIAL_DIR
    if work.is_dir() and not work.is_symlink() and not any(work.rglob(f"*{PART_SUFFIX}")):
        shutil.rmtree(work, ignore_errors=True)


def _jobs(plans: Sequence[FilePlan]) -> list[Any]:
    from .engine import FileJob

    return [
        FileJob(path=fp.path, size=fp.size, sha256=fp.sha256,
                candidates=tuple(c.remote for c in fp.candidates), sources=fp.sources)
        for fp in plans
    ]


def _fetch(
    todo: Sequence[FilePlan], target: Path, *, multi_source: bool, emit: ProgressFn,
    max_workers: int | None, result: PullResult, renew: Any = None,
) -> dict[str, FileRecord]:
    """Run the engine. A file that failed while another source's listing claims a different
    sha256 is tried once more on that claim: the failure proved the first listing wrong."""
    from .engine import EngineOptions, fetch

    options = EngineOptions(multi_source=multi_source)
    if max_workers:
        options = replace(options, connections=max_workers, initial_connections=min(max_workers, 4))
    by_path = {fp.path: fp for fp in todo}
    emit = _relabelled(emit, by_path)
    try:
        report = fetch(_jobs(todo), target, options=options, on_event=emit, renew=renew)
        return _records(todo, report.files, result)
    except FetchFailedError as exc:
        first = exc.report
        failed = [p for p, _e in first.failed]
        alts = [_alternative(by_path[p]) if p in by_path else None for p in failed]
        if any(a is None for a in alts):
            raise exc.first from None  # the file's own error: its exit code, its advice
    retry = [a for a in alts if a is not None]
    for old, alt in zip((by_path[p] for p in failed), retry):
        result.notes.append(
            f"{old.path}: the bytes did not match the sha256 {old.expected_from} lists; they match "
            f"{alt.expected_from}'s, so {old.expected_from}'s listing is wrong"
        )
    emit(PullEvent("note", f"retrying {len(retry)} file(s) on the sha256 another source publishes"))
    by_path.update((fp.path, fp) for fp in retry)
    try:
        second = fetch(_jobs(retry), target, options=options, on_event=emit, renew=renew)
    except FetchFailedError as exc:
        raise exc.first from None
    records = _records([fp for fp in todo if fp.path not in failed], first.files, result)
    records.update(_records(retry, second.files, result))
    return records


def _relabelled(emit: ProgressFn, plans: Mapping[str, FilePlan]) -> ProgressFn:
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


def _alternative(fp: FilePlan) -> FilePlan | None:
    """The plan for ``fp`` trusting the first disputing source's published sha256."""
    if not fp.disputed:
        return None
    other = fp.disputed[0]
    sha = (other.remote.sha256 or "").lower()
    same = tuple(c for c in fp.disputed if (c.remote.sha256 or "").lower() == sha)
    # the first listing's own server may still serve good bytes: keep it, last
    return replace(fp, sha256=sha, method=PUBLISHED, expected_from=other.source,
                   candidates=same + fp.candidates, disputed=())


def _records(todo: Sequence[FilePlan], results: Sequence[Any], result: PullResult) -> dict[str, FileRecord]:
    out: dict[str, FileRecord] = {}
    files = {fr.path: fr for fr in results}
    for fp in todo:
        fr = files[fp.path]
        out[fp.path] = FileRecord(fp.path, fr.size, fr.sha256, fp.method, tuple(fr.sources) or fp.sources[:1])
        result.downloaded_bytes += fr.bytes_downloaded
        result.resumed_bytes += fr.bytes_resumed
        if fr.replaced_existing:
            result.replaced.append(fp.path)
    return out


def _clear_edited_small_files(todo: Sequence[FilePlan], target: Path, result: PullResult) -> None:
    """Small git files carry only a git blob id, which the engine cannot check, so it
    would keep a same-size file edited by hand as complete (and the check after the download
    would then fail the pull). Check those ids first; a file that differs is removed, fetched
    again, and reported as replaced."""
    from .matching import git_blob_sha1

    for fp in todo:
        path = target / fp.path
        if fp.git_blob is None or fp.sha256 is not None or path.is_symlink() or not path.is_file():
            continue
        if git_blob_sha1(path) != fp.git_blob:
            path.unlink()
            result.replaced.append(fp.path)


def _check_git_blobs(todo: Sequence[FilePlan], target: Path) -> None:
    """Small git files (HuggingFace, Modelers) carry only a git blob id: check it; remove the file
    on mismatch. When the id came from another source than the one that served the bytes, the
    two hubs disagree about the file, and the message says so."""
    from .matching import git_blob_sha1

    for fp in todo:
        if fp.git_blob is None or fp.sha256 is not None:
            continue
        path = target / fp.path
        got = git_blob_sha1(path)
        if got != fp.git_blob:
            path.unlink(missing_ok=True)
            lister = fp.git_blob_from or fp.sources[0]
            disagree = "" if lister == fp.sources[0] else f" ({fp.sources[0]} served the bytes: the hubs disagree)"
            raise IntegrityError(
                f"{fp.path}: its git blob id is {got}, but {lister} lists {fp.git_blob}{disagree}; the file "
                "was removed. Retry, or pull from another source with --source.",
                path=fp.path, expected=fp.git_blob, actual=got,
            )


def _cross_check(
    todo: Sequence[FilePlan], target: Path, fetched: dict[str, FileRecord], emit: ProgressFn,
    max_workers: int | None, result: PullResult,
) -> dict[str, FileRecord]:
    """Files no source publishes a hash for: fetch the second source's copy, expecting the sha256
    we computed for the first. Equal bytes upgrade them to ``cross-source-bytes``; different
    bytes are an integrity error (the file is removed, since neither copy can be trusted)."""
    checks = [fp for fp in todo if fp.cross_check is not None and fp.sha256 is None]
    if not checks:
        return {}
    from .engine import EngineOptions, FileJob, fetch

    scratch = meta_dir(target) / "cross-check"
    out: dict[str, FileRecord] = {}
    jobs = [FileJob(path=fp.path, size=fetched[fp.path].size, sha256=fetched[fp.path].sha256,
                    candidates=(fp.cross_check.remote,), sources=(fp.cross_check.source,))  # type: ignore[union-attr]
            for fp in checks]
    emit(PullEvent("verify", f"cross-checking {len(jobs)} unhashed file(s) against "
                   + ", ".join(sorted({fp.cross_check.source for fp in checks}))))  # type: ignore[union-attr]
    try:
        fetch(jobs, scratch, options=EngineOptions(retries=1), on_event=None)
    except FetchFailedError as exc:
        failed = {p for p, _e in exc.report.failed}
        bad = [fp for fp in checks if fp.path in failed]
        if not bad:
            raise exc.first from None
        for fp in bad:
            (target / fp.path).unlink(missing_ok=True)  # neither copy can be trusted
        first = bad[0]
        raise IntegrityError(
            f"{first.path}: {first.sources[0]} and {first.cross_check.source} serve different "  # type: ignore[union-attr]
            "bytes and no hub publishes its sha256, so neither copy can be trusted. Pull with a lock "
            "file (`model-zoo lock`) made where you trust the source, or pick one with --source.",
            path=first.path, files=[fp.path for fp in bad],
        ) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for fp in checks:
        rec = fetched[fp.path]
        out[fp.path] = replace(rec, verified=CROSS_BYTES, sources=rec.sources + (fp.cross_check.source,))  # type: ignore[union-attr]
    return out


# ---------------------------------------------------------------- offline / already complete


def _from_disk(
    info: ModelInfo, settings: Settings, revision: str | None, target_override: Path | None,
    include: Sequence[str] | None, exclude: Sequence[str] | None, all_files: bool,
    locked: LockedModel | None, offline: bool, wanted: Sequence[str],
) -> PullResult | None:
    """A complete copy already on disk that satisfies the request without asking any hub.

    Used always when offline; online only when the request pins a commit (or a lock does),
    since a branch or the default revision may have moved on the hub.
    """
    from ..hubs.http import is_commit_id
    from ..store.cache import Snapshot, find_snapshot, missing_files

    pinned = revision is not None and is_commit_id(revision)
    if not (offline or pinned):
        return None
    if target_override is not None:
        try:
            manifest = read_manifest(target_override)
        except IntegrityError:
            manifest = None
        snap = Snapshot(target_override, manifest) if manifest is not None else None
        if snap is not None and revision and not _same_revision(manifest, revision):  # type: ignore[arg-type]
            snap = None
        if snap is not None and (snap.manifest.source not in wanted or snap.manifest.slug != info.slug):
            snap = None  # another hub's copy, or another model altogether
    else:
        snap = find_snapshot(settings.home, info.slug, revision, sources=wanted)
    if snap is None or missing_files(snap):
        return None
    m = snap.manifest
    have = m.by_path()
    if locked is not None:
        if any(have.get(f.path) is None or have[f.path].sha256 != f.sha256 for f in locked.files):
            return None
    else:
        sel = select_files([*have, *m.skipped], include=include, exclude=exclude, all_files=all_files)
        if any(p not in have for p in sel.selected):
            return None
    files = [PlannedFile(r.path, r.size, r.sha256, r.verified, r.sources, True) for r in m.files]
    return PullResult(
        name=info.name, path=snap.root, source=m.source, repo_id=m.repo_id, revision=m.revision,
        commit=m.commit, plan=[], plan_text=f"already in the store ({snap.root}); no hub asked",
        files=files, skipped=[], offline=offline, manifest=m,
    )


def _same_revision(manifest: StoreManifest, revision: str) -> bool:
    commit = (manifest.commit or "").lower()
    return revision == manifest.revision or commit == revision.lower() or (
        len(revision) >= 7 and commit.startswith(revision.lower()))


__all__ = ["PlannedFile", "PullEvent", "PullResult", "pull", "pull_model", "SIZE_ONLY"]
