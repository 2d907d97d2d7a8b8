"""The last step of a pull: the manifest, written atomically once every file is in place, so a
directory with a manifest holds every file it lists, each verified as recorded."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import IntegrityError
from ..store.manifest import (
    FileRecord,
    SourceRecord,
    StoreManifest,
    read_manifest,
    utc_now,
    write_manifest,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..hubs.base import Manifest
    from ..registry.info import ModelInfo


def write_record(
    info: ModelInfo,
    target: Path,
    revision: str | None,
    primary: Manifest,
    others: list[Manifest],
    records: dict[str, FileRecord],
) -> StoreManifest:
    """Record ``records`` (plus files an earlier pull of ``target`` verified that are still
    there and still what the hub lists) as ``target``'s manifest; tidy the partial area."""
    sources = [SourceRecord(primary.source, primary.repo_id, primary.endpoint, primary.commit)]
    used = {s for r in records.values() for s in r.sources}
    sources += [
        SourceRecord(m.source, m.repo_id, m.endpoint, m.commit) for m in others if m.source in used
    ]
    old = None
    try:
        old = read_manifest(target)
    except IntegrityError:
        pass
    remote = primary.by_path()
    if old is not None:
        for rec in old.files:
            if rec.path in records or rec.path not in remote:
                continue
            r = remote[rec.path]
            same = (r.sha256 is None or r.sha256.lower() == rec.sha256) and (
                r.size in (None, rec.size)
            )
            try:
                ok_size = (target / rec.path).stat().st_size == rec.size
            except OSError:
                ok_size = False
            if same and ok_size:
                records[rec.path] = rec
    manifest = StoreManifest(
        name=info.name,
        slug=info.slug,
        revision=revision,
        commit=primary.commit,
        sources=tuple(sources),
        files=tuple(sorted(records.values(), key=lambda r: r.path)),
        verified_at=utc_now(),
        skipped=tuple(sorted(p for p in remote if p not in records)),
    )
    write_manifest(target, manifest)
    tidy_partials(target)
    return manifest


def tidy_partials(target: Path) -> None:
    """Remove the engine's working folder once no partial download is left in it (stale lock
    files only). Safe: we hold the model lock, so no other pull works in ``target``."""
    from .paths import PART_SUFFIX, PARTIAL_DIR

    work = target / PARTIAL_DIR
    if work.is_dir() and not work.is_symlink() and not any(work.rglob(f"*{PART_SUFFIX}")):
        shutil.rmtree(work, ignore_errors=True)
