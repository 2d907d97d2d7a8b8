"""``model-zoo lock``: record exactly which bytes a pull gets, for every named model.

For each model: plan the sources as a pull would, list the primary source at the requested
revision (its commit is recorded), select files with the same filters, and take each file's
sha256 from the hub's listing. Files no hub publishes a hash for (small git files on some hubs)
are hashed from bytes: from a verified copy in the store when one matches, else downloaded to a
scratch directory, hashed, and deleted.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..store.lockfile import LockedFile, LockedModel, LockFile, make_lock
from .filelist import select_files
from .listing import check_listing, list_sources, plan_request
from .matching import plan_files
from .plan import AUTO
from .request import requested_revision
from .results import ProgressFn, PullEvent

if TYPE_CHECKING:  # pragma: no cover
    from ..settings import Settings


def lock_models(
    names: Sequence[str],
    *,
    source: str = AUTO,
    sources: Sequence[str] | str | None = None,
    revision: str | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    all_files: bool = False,
    settings: Settings | None = None,
    progress: ProgressFn | None = None,
) -> LockFile:
    """A LockFile for ``names`` (each may carry ``@revision``)."""
    from ..registry.api import get
    from ..settings import load_settings

    if not names:
        raise UsageError("name at least one model to lock")
    settings = settings or load_settings()
    emit = progress or (lambda _e: None)
    if settings.offline:
        from ..errors import OfflineError

        err = OfflineError(", ".join(names))
        err.message = (
            "`model-zoo lock` reads the hubs' listings, but offline mode is on "
            "(MODEL_ZOO_OFFLINE / HF_HUB_OFFLINE). Unset it, or make the lock file on a "
            "connected machine."
        )
        raise err
    models = []
    for name in names:
        info = get(name)
        rev = requested_revision(info, revision)
        plan, probes = plan_request(info, settings, source, sources, None)
        primary, others, _used, notes = list_sources(info, settings, plan, rev)
        for note in notes:
            emit(PullEvent("note", note))
        check_listing(primary)
        sel = select_files(primary.by_path(), include=include, exclude=exclude, all_files=all_files)
        plans = plan_files(list(sel.selected), primary, others)
        hashes = {fp.path: (fp.size, fp.sha256) for fp in plans if fp.sha256}
        unhashed = [fp for fp in plans if not fp.sha256]
        if unhashed:
            hashes.update(_hash_unpublished(info.slug, primary.commit, unhashed, settings, emit))
        files = tuple(
            LockedFile(p, int(size or 0), sha) for p, (size, sha) in sorted(hashes.items())
        )
        models.append(
            LockedModel(info.name, primary.source, primary.repo_id, rev, primary.commit, files)
        )
        emit(
            PullEvent(
                "note",
                f"locked {info.name}: {primary.source} {primary.repo_id} "
                f"@ {primary.commit or rev or 'default'}, {len(files)} files",
            )
        )
    return make_lock(models)


def _hash_unpublished(
    slug: str, commit: str | None, plans: Sequence, settings: Settings, emit: ProgressFn
) -> dict[str, tuple[int, str]]:
    from ..store.cache import iter_snapshots

    out: dict[str, tuple[int, str]] = {}
    if commit:
        for snap in iter_snapshots(settings.home):
            if snap.manifest.commit == commit and snap.slug == slug:
                have = snap.manifest.by_path()
                for fp in plans:
                    rec = have.get(fp.path)
                    if rec is not None and (fp.size is None or rec.size == fp.size):
                        out[fp.path] = (rec.size, rec.sha256)
    rest = [fp for fp in plans if fp.path not in out]
    if not rest:
        return out
    from .engine import FileJob, fetch

    emit(
        PullEvent(
            "verify",
            f"hashing {len(rest)} file(s) whose sha256 no hub publishes "
            f"({sum(fp.size or 0 for fp in rest) / 1e6:.1f} MB to download)",
        )
    )
    jobs = [
        FileJob(
            path=fp.path,
            size=fp.size,
            sha256=None,
            candidates=tuple(c.remote for c in fp.candidates),
            sources=fp.sources,
        )
        for fp in rest
    ]
    with tempfile.TemporaryDirectory(prefix="model-zoo-lock-") as scratch:
        report = fetch(jobs, Path(scratch), on_event=None)
        files = {fr.path: fr for fr in report.files}
        for fp in rest:
            fr = files[fp.path]
            out[fp.path] = (int(fr.size), str(fr.sha256))
    return out
