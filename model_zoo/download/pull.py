"""``pull``: name in, verified directory out. A short pipeline over one resolved request:

    arguments   request.resolve_request      name@rev, sources, lock, target, checked once
    store       local.from_store             offline, pinned, or the hub's head already here
    listing     listing.plan_request / list_sources / select_files_for   (probing for ``auto``)
    on disk     local.find_present / reuse_from_store / check_space
    fetch       fetching.fetch_files         the engine, with fresh URLs for expiring ones
    after       after.check_git_blobs / cross_check
    record      record.write_record          the manifest, written last

Everything that can be refused (unknown name, unsafe listing, changed remote under a lock,
not enough space) is refused before a byte is written. The model-level lock is held from
the first write to the manifest, so two processes pulling one model end with one copy.
Progress is a callback (``progress=``) that gets every ``PullEvent`` and engine event; the CLI
passes its renderer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Unpack

from ..errors import (
    LockMismatchError,
    ModelZooError,
    OfflineError,
    RevisionMovedError,
    RevisionNotFoundError,
)
from ..store.layout import meta_dir, model_lock_path, snapshot_dir
from ..store.manifest import SIZE_ONLY, FileRecord
from . import listing, local
from .plan import describe_plan
from .record import write_record
from .request import PullOptions, PullRequest, resolve_request
from .results import PlannedFile, ProgressFn, PullEvent, PullResult

if TYPE_CHECKING:  # pragma: no cover
    from ..hubs.base import Manifest
    from .fetching import Renew
    from .matching import FilePlan
    from .plan import PlannedSource

MAX_BRANCH_MOVES = 2  # a branch that moves more often than this during one pull is reported

__all__ = [
    "PlannedFile",
    "PullEvent",
    "PullOptions",
    "PullResult",
    "ProgressFn",
    "SIZE_ONLY",
    "pull",
    "pull_model",
]


def pull(name: str, **options: Unpack[PullOptions]) -> Path:
    """Download ``name`` (``name@revision`` works) verified into the store; return its directory.

    Keywords (``PullOptions``): ``source``: ``auto`` (probe and pick), or a source key;
    ``sources``: several at once, whose agreeing files are fetched from all of them;
    ``revision``: a branch, tag or commit; ``local_dir``: put the files there instead of the
    store; ``include`` / ``exclude``: globs of files; ``all_files``: also formats a safetensors
    checkpoint makes redundant; ``lock``: a lock file, pulled exactly; ``dry_run``: plan only;
    ``progress``: called with every engine event and every ``PullEvent``; ``offline``: the
    store only; ``settings``; ``connections``: most requests at once (default: as many as the
    link rewards, up to 32). Raises model_zoo.errors types.
    """
    return pull_model(name, **options).path


def pull_model(name: str, **options: Unpack[PullOptions]) -> PullResult:
    """``pull`` with the full report: files, how each was verified, bytes moved, the plan."""
    req = resolve_request(name, options)
    cached = local.from_store(req)
    if cached is not None:
        if req.dry_run:
            cached.dry_run = True
            cached.free_bytes = local.free_space(cached.path)
        return cached
    if req.offline:
        raise OfflineError(local.offline_what(req))
    plan, probe_results = listing.plan_request(
        req.info, req.settings, req.source, req.sources, req.probes
    )
    plan_text = describe_plan(plan, probe_results)
    req.emit(PullEvent("plan", plan_text, {"plan": [vars(p) for p in plan]}))
    moves = 0
    while True:  # again from the listing when a branch moved under an unpinned pull
        try:
            return _pull_listed(req, plan, plan_text)
        except listing.BranchMoved as moved:
            moves += 1
            if moves > MAX_BRANCH_MOVES:
                raise RevisionMovedError(moved.hub, moved.repo_id, moved.revision, moves) from None
            req.emit(
                PullEvent(
                    "note",
                    f"{moved.source}: {moved.repo_id} {moved.revision} moved from "
                    f"{moved.old[:12]} to {moved.new[:12]} during the pull; listing it again",
                )
            )


def _pull_listed(req: PullRequest, plan: list[PlannedSource], plan_text: str) -> PullResult:
    """From listing the planned sources on: match, plan files, then fetch under the model lock."""
    info, settings = req.info, req.settings
    try:
        primary, others, plan, failures = listing.list_sources(info, settings, plan, req.revision)
    except RevisionNotFoundError as exc:
        if req.locked is None:
            raise
        raise LockMismatchError(
            info.name, f"{exc.hub} no longer has revision {req.revision} of {req.locked.repo_id}"
        ) from None
    if failures:
        req.emit(PullEvent("note", "; ".join(failures)))
    listing.check_listing(primary)
    file_plans, skipped = listing.select_files_for(req, primary, others)
    target = req.target_override or snapshot_dir(
        settings.home, info.slug, primary.source, req.revision, primary.commit
    )
    result = PullResult(
        name=info.name,
        path=target,
        source=primary.source,
        repo_id=primary.repo_id,
        revision=req.revision,
        commit=primary.commit,
        plan=plan,
        plan_text=plan_text,
        files=[],
        skipped=skipped,
        notes=list(failures) + listing.disputes(file_plans, primary),
    )
    if req.dry_run:
        present = local.find_present(target, file_plans)
        result.files = [local.planned_file(fp, fp.path in present, target) for fp in file_plans]
        result.free_bytes = local.free_space(target)
        result.dry_run = True
        return result

    lock_path = (
        (meta_dir(target) / "lock")
        if req.target_override
        else model_lock_path(settings.home, info.slug)
    )
    from ..store.locking import ProcessLock

    def waiting(owner: str) -> None:
        req.emit(
            PullEvent(
                "waiting_model",
                f"another process{f' ({owner})' if owner else ''} is pulling "
                f"{info.name}; waiting for it to finish",
            )
        )

    model_lock = ProcessLock(lock_path, on_wait=waiting)
    local.prepare_target(target, model_lock)
    try:
        return _pull_into(
            req,
            target,
            primary,
            others,
            file_plans,
            result,
            listing.renewer(settings, [primary, *others]),
            listing.head_check(settings, primary),
        )
    except listing.BranchMoved:
        local.drop_unfinished(target, settings)  # under the model lock: no other pull works in it
        raise
    finally:
        model_lock.release()


def _pull_into(
    req: PullRequest,
    target: Path,
    primary: Manifest,
    others: list[Manifest],
    file_plans: list[FilePlan],
    result: PullResult,
    renew: Renew | None,
    head_check: Callable[[], None] | None,
) -> PullResult:
    """Under the model lock: what is on disk, what to fetch, the checks after it, the record."""
    # The engine is imported here, not at the top: a pull with nothing to fetch (the common
    # rerun) never loads it, which is a sixth of a no-op pull's start-up.
    from . import after, fetching

    emit = req.emit
    present = local.find_present(target, file_plans)
    in_store = req.settings.home.resolve() in target.resolve().parents
    reused = local.reuse_from_store(req.settings, target, file_plans, present, link=in_store)
    if reused:
        emit(PullEvent("reuse", f"{len(reused)} file(s) taken from other snapshots in the store"))
    present.update(reused)
    result.reused_files = len(reused)
    todo = [fp for fp in file_plans if fp.path not in present]
    result.files = [local.planned_file(fp, fp.path in present) for fp in file_plans]
    for fp in file_plans:
        if fp.path in present:
            emit(PullEvent("skip", f"{fp.path}: already complete and verified", {"path": fp.path}))
    local.check_space(target, todo)

    records: dict[str, FileRecord] = dict(present)
    if todo:
        total = sum(fp.size or 0 for fp in todo)
        emit(
            PullEvent(
                "start",
                f"downloading {len(todo)} file(s), {total / 1e6:.1f} MB, into {target}",
                {"files": len(todo), "bytes": total, "path": str(target)},
            )
        )
        after.clear_edited_small_files(todo, target, result)
        try:
            fetched = fetching.fetch_files(
                todo,
                target,
                multi_source=req.multi_source,
                emit=emit,
                connections=req.connections,
                result=result,
                renew=renew,
            )
            records.update(fetched)
            if result.replaced:
                shown = ", ".join(result.replaced[:5]) + (" …" if len(result.replaced) > 5 else "")
                result.notes.append(
                    f"replaced {len(result.replaced)} file(s) already in {target} whose bytes "
                    f"differed from the hub's: {shown}"
                )
            after.check_git_blobs(todo, target)
            records.update(after.cross_check(todo, target, fetched, emit, req.connections, result))
        except ModelZooError:
            if head_check is not None:
                head_check()  # bytes that match nothing may be the next commit's
            raise
    if head_check is not None:
        head_check()  # the files are one commit's only if the branch still points there
    result.manifest = write_record(req.info, target, req.revision, primary, others, records)
    emit(
        PullEvent("done", str(target), {"path": str(target), "verified": result.verified_counts()})
    )
    return result
