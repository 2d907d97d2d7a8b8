"""Checks after the download, for files no hub published a sha256 for: their git blob id, or a
second source's bytes."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import (
    FetchFailedError,
    IntegrityError,
)
from ..store.layout import meta_dir
from ..store.manifest import (
    CROSS_BYTES,
    FileRecord,
)
from .matching import FilePlan
from .results import ProgressFn, PullEvent, PullResult

if TYPE_CHECKING:  # pragma: no cover
    pass


def clear_edited_small_files(todo: Sequence[FilePlan], target: Path, result: PullResult) -> None:
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


def check_git_blobs(todo: Sequence[FilePlan], target: Path) -> None:
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
            disagree = (
                ""
                if lister == fp.sources[0]
                else f" ({fp.sources[0]} served the bytes: the hubs disagree)"
            )
            raise IntegrityError(
                f"{fp.path}: its git blob id is {got}, but {lister} lists {fp.git_blob}{disagree}; "
                "the file was removed. Retry, or pull from another source with --source.",
                path=fp.path,
                expected=fp.git_blob,
                actual=got,
            )


def cross_check(
    todo: Sequence[FilePlan],
    target: Path,
    fetched: dict[str, FileRecord],
    emit: ProgressFn,
    connections: int | None,
    result: PullResult,
) -> dict[str, FileRecord]:
    """Files no source publishes a hash for: fetch the second source's copy, expecting the sha256
    we computed for the first. Equal bytes upgrade them to ``cross-source-bytes``; different
    bytes are an integrity error (the file is removed, since neither copy can be trusted)."""
    # Each file with the second source's candidate, narrowed once so the rest reads it as set.
    pairs = [
        (fp, fp.cross_check) for fp in todo if fp.cross_check is not None and fp.sha256 is None
    ]
    if not pairs:
        return {}
    from .engine import EngineOptions, FileJob, fetch

    scratch = meta_dir(target) / "cross-check"
    out: dict[str, FileRecord] = {}
    jobs = [
        FileJob(
            path=fp.path,
            size=fetched[fp.path].size,
            sha256=fetched[fp.path].sha256,
            candidates=(other.remote,),
            sources=(other.source,),
        )
        for fp, other in pairs
    ]
    emit(
        PullEvent(
            "verify",
            f"cross-checking {len(jobs)} unhashed file(s) against "
            + ", ".join(sorted({other.source for _fp, other in pairs})),
        )
    )
    try:
        fetch(jobs, scratch, options=EngineOptions(retries=1), on_event=None)
    except FetchFailedError as exc:
        failed = {p for p, _e in exc.report.failed}
        bad = [(fp, other) for fp, other in pairs if fp.path in failed]
        if not bad:
            raise exc.first from None
        for fp, _other in bad:
            (target / fp.path).unlink(missing_ok=True)  # neither copy can be trusted
        first, first_other = bad[0]
        raise IntegrityError(
            f"{first.path}: {first.sources[0]} and {first_other.source} serve different bytes "
            "and no hub publishes its sha256, so neither copy can be trusted. Pull with a lock "
            "file (`model-zoo lock`) made where you trust the source, or pick one with --source.",
            path=first.path,
            files=[fp.path for fp, _other in bad],
        ) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for fp, other in pairs:
        rec = fetched[fp.path]
        out[fp.path] = replace(rec, verified=CROSS_BYTES, sources=rec.sources + (other.source,))
    return out
