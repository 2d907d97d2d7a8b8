"""What a pull can answer from disk: a copy already in the store or the target, files an earlier
pull verified, files other snapshots hold (linked or copied, then re-hashed), the free space."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    IntegrityError,
    UnsafePathError,
)
from ..store.manifest import (
    FileRecord,
    StoreManifest,
    read_manifest,
    stamp_epoch,
)
from .filelist import select_files
from .matching import FilePlan
from .plan import (
    AUTO,
)
from .results import PlannedFile, PullResult

if TYPE_CHECKING:  # pragma: no cover
    from ..store.cache import StoreSnapshot
    from .request import PullRequest

if TYPE_CHECKING:  # pragma: no cover
    from ..settings import Settings


def _complete_copy(req: PullRequest, *, exact_revision: bool) -> StoreSnapshot | None:
    """The copy on disk (``--local-dir``, or the store's newest) that holds what ``req`` selects,
    for its revision: the revision name as pulled (``exact_revision``), or also its commit."""
    from ..store.cache import StoreSnapshot, find_snapshot, missing_files

    info, revision = req.info, req.revision
    if req.target_override is not None:
        try:
            manifest = read_manifest(req.target_override)
        except IntegrityError:
            manifest = None
        snap = StoreSnapshot(req.target_override, manifest) if manifest is not None else None
        if snap is not None and (
            snap.manifest.source not in req.wanted or snap.manifest.slug != info.slug
        ):
            snap = None  # another hub's copy, or another model altogether
    else:
        snap = find_snapshot(req.settings.home, info.slug, revision, sources=req.wanted)
    if snap is None:
        return None
    if exact_revision and snap.manifest.revision != revision:
        return None
    if not exact_revision and revision and not same_revision(snap.manifest, revision):
        return None
    if missing_files(snap):
        return None
    have = snap.manifest.by_path()
    if req.locked is not None:
        if any(
            have.get(f.path) is None or have[f.path].sha256 != f.sha256 for f in req.locked.files
        ):
            return None
    else:
        sel = select_files(
            [*have, *snap.manifest.skipped],
            include=req.include,
            exclude=req.exclude,
            all_files=req.all_files,
        )
        if any(p not in have for p in sel.selected):
            return None
    return snap


def _touched_since(snap: StoreSnapshot) -> bool:
    """Whether any recorded file was modified after the manifest was written (a hand edit)."""
    verified_at = stamp_epoch(snap.manifest.verified_at)
    if verified_at is None:
        return True
    for rec in snap.manifest.files:
        try:
            if (snap.root / rec.path).stat().st_mtime > verified_at:
                return True
        except OSError:
            return True
    return False


def _answer(req: PullRequest, snap: StoreSnapshot, plan_text: str) -> PullResult:
    m = snap.manifest
    files = [PlannedFile(r.path, r.size, r.sha256, r.verified, r.sources, True) for r in m.files]
    return PullResult(
        name=req.info.name,
        path=snap.root,
        source=m.source,
        repo_id=m.repo_id,
        revision=m.revision,
        commit=m.commit,
        plan=[],
        plan_text=plan_text,
        files=files,
        skipped=[],
        offline=req.offline,
        manifest=m,
    )


def _still_current(req: PullRequest) -> PullResult | None:
    """A complete copy of the commit the requested branch or tag points at now: one small
    request to the hub the copy came from (``hubs.heads``), no listing."""
    from ..hubs.catalog import hub_info
    from ..hubs.heads import head_commit

    snap = _complete_copy(req, exact_revision=True)
    commit = snap.manifest.commit if snap is not None else None
    if snap is None or not commit or _touched_since(snap):
        return None  # a file edited since it was verified: the full pull repairs it
    m = snap.manifest
    token = req.settings.token(m.source)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    head = head_commit(
        m.source, req.settings.endpoint(m.source), m.repo_id, req.revision, headers=headers
    )
    if head is None or head != commit.lower():
        return None
    what = req.revision or "the default branch"
    return _answer(
        req,
        snap,
        f"up to date: {hub_info(m.source).title} {m.repo_id} {what} is still "
        f"{commit[:12]}, complete in {snap.root}",
    )


def same_revision(manifest: StoreManifest, revision: str) -> bool:
    commit = (manifest.commit or "").lower()
    return (
        revision == manifest.revision
        or commit == revision.lower()
        or (len(revision) >= 7 and commit.startswith(revision.lower()))
    )


def find_present(target: Path, plans: Sequence[FilePlan]) -> dict[str, FileRecord]:
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
        if (fp.size is None or fp.size == rec.size) and (
            fp.sha256 is None or rec.sha256 == fp.sha256
        ):
            present[fp.path] = rec
    return present


def reuse_from_store(
    settings: Settings,
    target: Path,
    plans: Sequence[FilePlan],
    present: dict[str, FileRecord],
    *,
    link: bool,
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
        if (
            isinstance(got, tuple)
            and got[0] == fp.sha256
            and (fp.size is None or got[1] == fp.size)
        ):
            os.replace(tmp, target / fp.path)
            out[fp.path] = FileRecord(fp.path, got[1], got[0], fp.method, fp.sources[:1])
        else:
            tmp.unlink(missing_ok=True)
    return out


def check_space(target: Path, plans: Sequence[FilePlan]) -> None:
    from ..errors import DiskSpaceError

    needed = 0
    for fp in plans:
        size = fp.size or 0
        if size and (target / fp.path).is_file() and (target / fp.path).stat().st_size == size:
            continue  # complete from an interrupted pull: re-hashed in place, needs no new space
        needed += max(0, size - partial_bytes(target, fp.path))
    free = free_space(target)
    if free is not None and needed > free:
        raise DiskSpaceError(str(target), needed, free)


def free_space(target: Path) -> int | None:
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def partial_bytes(target: Path, path: str) -> int:
    """Bytes already on disk in the engine's partial file for ``path`` (allocated blocks)."""
    try:
        from .paths import partial_paths

        st = partial_paths(target, path).data.stat()
    except (OSError, ImportError, UnsafePathError):
        return 0
    return min(st.st_size, getattr(st, "st_blocks", 0) * 512)


def resumable_bytes(target: Path, fp: FilePlan) -> int:
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


def planned_file(fp: FilePlan, present: bool, target: Path | None = None) -> PlannedFile:
    kept = 0 if present or target is None else resumable_bytes(target, fp)
    return PlannedFile(fp.path, fp.size, fp.sha256, fp.method, fp.sources, present, kept)


def prepare_target(target: Path, model_lock: Any) -> None:
    """Create ``target`` and take the model lock; LocalWriteError (not a traceback) when the
    place cannot hold a checkpoint: a file in the way, no permission, a read-only disk."""
    from ..errors import LocalWriteError, ModelZooError

    if target.exists() and not target.is_dir():
        raise LocalWriteError(str(target), "it is a file, not a directory")
    try:
        target.mkdir(parents=True, exist_ok=True)
        model_lock.acquire()
    except ModelZooError:
        raise  # a LockTimeoutError is an OSError too, but says what happened itself
    except OSError as exc:
        where = exc.filename if isinstance(exc.filename, str) else str(target)
        raise LocalWriteError(where, exc.strerror or str(exc)) from None


def drop_unfinished(target: Path, settings: Settings) -> None:
    """A store snapshot of a commit the branch left, that this pull started and never
    finished (no manifest), is removed: nothing will complete it. Local dirs are kept."""
    from ..store.layout import manifest_path

    models = (settings.home / "models").resolve()
    if models in target.resolve().parents and not manifest_path(target).exists():
        shutil.rmtree(target, ignore_errors=True)


def from_store(req: PullRequest) -> PullResult | None:
    """A complete copy on disk that answers ``req`` without a download, or None.

    Offline, or for a pinned commit (or a lock), without asking any hub. For a branch or tag,
    when the hub it was pulled from says the revision still points at the copy's commit.
    """
    from ..hubs.heads import is_commit_id

    pinned = req.revision is not None and is_commit_id(req.revision)
    if req.offline or pinned:
        snap = _complete_copy(req, exact_revision=False)
        return (
            None
            if snap is None
            else _answer(req, snap, f"already in the store ({snap.root}); no hub asked")
        )
    if req.locked is not None:
        return None
    return _still_current(req)


def offline_what(req: PullRequest) -> str:
    """What an offline pull could not find, for OfflineError."""
    what = f"{req.info.name}@{req.revision}" if req.revision else req.info.name
    if req.sources or req.explicit != AUTO:
        what += f" from {', '.join(req.wanted)}"
    return what + (f" (in {req.target_override})" if req.target_override else "")
