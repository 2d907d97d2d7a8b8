"""Reading and managing the store: list what is there, sizes, find a snapshot, remove safely.

Also ``store_repo_roots``, which tells ``model-zoo serve-mirror`` where each pulled repository
lives so one machine's store can be served to a cluster as a hub.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError, UsageError
from ..hubs.catalog import OPENXLAB_ORIGIN
from .layout import META_DIR, manifest_path, model_dir, model_lock_path, models_dir
from .manifest import StoreManifest, read_manifest

if TYPE_CHECKING:  # pragma: no cover
    from ..settings import Settings


@dataclass(frozen=True)
class StoreSnapshot:
    """One pulled revision of one model in the store (complete: it has a manifest); the mirror's
    ``repo_store.Snapshot`` is a revision as the local hub serves it."""

    root: Path
    manifest: StoreManifest

    @property
    def slug(self) -> str:
        return self.root.parent.name

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def revision_label(self) -> str:
        m = self.manifest
        return (m.commit or "")[:12] or (m.revision or "default")


@dataclass(frozen=True)
class StoreRepo:
    """A pulled repository as a hub would serve it: ``root`` holds its files at ``commit``."""

    source: str
    repo_id: str
    revision: str | None
    commit: str | None
    root: Path
    files: tuple[str, ...]


def iter_snapshots(home: Path) -> list[StoreSnapshot]:
    """Every complete snapshot in the store, newest verification first. Damaged manifests are
    skipped."""
    out: list[StoreSnapshot] = []
    base = models_dir(home)
    if not base.is_dir():
        return out
    for mdir in sorted(p for p in base.iterdir() if p.is_dir() and not p.is_symlink()):
        for sdir in sorted(p for p in mdir.iterdir() if p.is_dir() and not p.is_symlink()):
            try:
                manifest = read_manifest(sdir)
            except CheckpointError:
                continue
            if manifest is not None:
                out.append(StoreSnapshot(sdir, manifest))
    out.sort(key=lambda s: s.manifest.verified_at, reverse=True)
    return out


def incomplete_dirs(home: Path) -> list[Path]:
    """Snapshot directories without a readable manifest: interrupted pulls whose partial files
    can resume, and snapshots whose manifest was damaged (the next pull re-verifies them)."""
    base = models_dir(home)
    if not base.is_dir():
        return []
    return sorted(
        s
        for m in base.iterdir()
        if m.is_dir() and not m.is_symlink()
        for s in m.iterdir()
        if s.is_dir() and not s.is_symlink() and not _has_manifest(s)
    )


def _has_manifest(snapshot_dir: Path) -> bool:
    try:
        return read_manifest(snapshot_dir) is not None
    except CheckpointError:
        return False


def find_snapshot(
    home: Path, slug: str, revision: str | None = None, *, sources: Collection[str] | None = None
) -> StoreSnapshot | None:
    """The snapshot of ``slug`` for ``revision`` (commit, commit prefix or the revision asked for).

    With no revision: the newest one pulled from a default branch, else the newest of any.
    ``sources``: only snapshots pulled from these hubs. Either way HF-format snapshots come
    before InternEvo-format (openxlab-origin) ones, which nothing but that name loads.
    """
    mine = [
        s
        for s in iter_snapshots(home)
        if s.root.parent == model_dir(home, slug)
        and (sources is None or s.manifest.source in sources)
    ]
    mine.sort(key=lambda s: s.manifest.source == OPENXLAB_ORIGIN)  # stable: newest first otherwise
    if revision is None:
        default = [s for s in mine if s.manifest.revision is None]
        picked = default or mine
        return picked[0] if picked else None
    rev = revision.lower()
    for s in mine:
        commit = (s.manifest.commit or "").lower()
        if commit == rev or (len(rev) >= 7 and commit.startswith(rev)):
            return s
    for s in mine:
        if s.manifest.revision == revision:
            return s
    return None


def missing_files(snapshot: StoreSnapshot) -> list[str]:
    """Files the manifest lists that are absent or of the wrong size (a cheap stat check)."""
    out = []
    for f in snapshot.manifest.files:
        try:
            if (snapshot.root / f.path).stat().st_size != f.size:
                out.append(f.path)
        except OSError:
            out.append(f.path)
    return out


def store_repo_roots(home: Path | Settings) -> list[StoreRepo]:
    """Every repository the store can serve, once per source it was pulled from.

    ``home`` is the store directory or the Settings whose ``home`` it is.
    ``root`` holds the repository's files in their own layout (skip ``.model-zoo/``); serve
    ``files`` only, at ``commit``. The newest snapshot of a repo id comes first.
    """
    if not isinstance(home, (str, os.PathLike)):
        home = home.home
    out: list[StoreRepo] = []
    for snap in iter_snapshots(Path(home)):
        m = snap.manifest
        files = tuple(f.path for f in m.files)
        for src in m.sources:
            out.append(
                StoreRepo(
                    src.source, src.repo_id, m.revision, src.commit or m.commit, snap.root, files
                )
            )
    return out


def disk_usage(path: Path, *, freed_by_removal: bool = False) -> int:
    """Bytes the tree at ``path`` occupies on disk (allocated blocks, so sparse partials count
    right).

    Hard links are counted once: pulls link files that snapshots share. With
    ``freed_by_removal``, only files with no link outside the tree count: what deleting it frees.
    """
    seen: dict[
        tuple[int, int], list[int]
    ] = {}  # (dev, inode) -> [bytes, links inside, links in all]
    for dirpath, _dirs, names in os.walk(path):
        for n in names:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            entry = seen.setdefault(
                (st.st_dev, st.st_ino),
                [getattr(st, "st_blocks", 0) * 512 or st.st_size, 0, st.st_nlink],
            )
            entry[1] += 1
    return sum(
        size for size, inside, links in seen.values() if not freed_by_removal or inside >= links
    )


def resolve_store_target(home: Path, target: Path) -> Path:
    """``target`` if it is a model or snapshot directory inside the store; UsageError otherwise."""
    base = models_dir(home).resolve()
    real = Path(target).resolve()
    if real == base or base not in real.parents:
        raise UsageError(
            f"{target} is not a model in the store {base}; refusing to delete it.", path=str(target)
        )
    depth = len(real.relative_to(base).parts)
    if depth > 2 or (depth == 2 and real.name == META_DIR):
        raise UsageError(
            f"{target} is inside a model directory; give the model or snapshot directory itself.",
            path=str(target),
        )
    if not real.is_dir():
        raise UsageError(f"{target} does not exist in the store", path=str(target))
    return real


def remove_from_store(home: Path, target: Path) -> int:
    """Delete one model or snapshot directory of the store; returns the bytes freed.

    Takes the model's lock so a pull in progress is never cut from under it.
    """
    from .locking import ProcessLock

    real = resolve_store_target(home, target)
    slug = real.name if real.parent == models_dir(home).resolve() else real.parent.name
    freed = disk_usage(real, freed_by_removal=True)
    with ProcessLock(model_lock_path(home, slug), timeout=30):
        # manifests first: a removal cut short leaves incomplete snapshots, never ones that
        # claim to be complete with files missing
        snapshots = (
            [real]
            if real.parent != models_dir(home).resolve()
            else [p for p in real.iterdir() if p.is_dir()]
        )
        for snap in snapshots:
            manifest_path(snap).unlink(missing_ok=True)
        shutil.rmtree(real)
        parent = real.parent
        if parent != models_dir(home).resolve() and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
    return freed
