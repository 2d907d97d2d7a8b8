"""The listing step of a pull: plan the sources (probing for ``auto``), list the primary and the
others, refuse an unsafe listing, and keep what later steps need from the hubs (fresh URLs for
expiring ones, the branch head for an unpinned listing)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ..errors import (
    HubError,
    NoSourceError,
    UnsafePathError,
    UsageError,
)
from ..store.layout import check_remote_path
from .filelist import select_files
from .matching import FilePlan, check_against_lock, plan_files
from .plan import (
    AUTO,
    PlannedSource,
    ProbeResult,
    plan_sources,
    probe_sources,
)

if TYPE_CHECKING:  # pragma: no cover
    from .request import PullRequest

if TYPE_CHECKING:  # pragma: no cover
    from ..hubs.base import HubAdapter, Manifest
    from ..registry.info import ModelInfo
    from ..settings import Settings

PROBE_BUDGET = 2.0


def plan_request(
    info: ModelInfo,
    settings: Settings,
    source: str,
    sources: Sequence[str] | str | None,
    probes: Mapping[str, ProbeResult] | None,
) -> tuple[list[PlannedSource], dict[str, ProbeResult]]:
    from ..hubs.factory import adapter_for

    src_list = sources.split(",") if isinstance(sources, str) else sources
    if src_list or (source or AUTO).lower() != AUTO:
        return plan_sources(info, settings, None, source=source, sources=src_list), {}
    if probes is None:
        first = plan_sources(info, settings, None)
        keys = [p.source for p in first]
        probes = (
            probe_sources(keys, lambda k: adapter_for(k, settings), budget=PROBE_BUDGET)
            if len(keys) > 1
            else {}
        )
    return plan_sources(info, settings, probes), dict(probes)


def list_sources(
    info: ModelInfo,
    settings: Settings,
    plan: list[PlannedSource],
    revision: str | None,
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
        from ..hubs.heads import is_commit_id

        other_rev = None if revision is None or is_commit_id(revision) else revision
        with ThreadPoolExecutor(max_workers=len(rest)) as pool:
            futures = [(p, pool.submit(listing, p, other_rev)) for p in rest]
            for p, fut in futures:
                try:
                    others.append(fut.result())
                except HubError as exc:
                    failures.append(f"{p.source}: {exc.message} (not used)")
    return primary, others, used, failures


def check_listing(manifest: Manifest) -> None:
    """Refuse the whole listing if one entry is unsafe: nothing is written for any of it."""
    for f in manifest.files:
        kind = getattr(f, "kind", "file")
        if kind != "file":
            raise UnsafePathError(
                f.path,
                f"the listing marks it as a {kind}; model-zoo writes only plain files",
                source=manifest.source,
            )
        check_remote_path(f.path, source=manifest.source)


class BranchMoved(Exception):
    """The branch an unpinned listing named now points at another commit (internal: the pull
    lists again)."""

    def __init__(self, primary: Manifest, new: str, hub: str) -> None:
        super().__init__(f"{primary.repo_id} moved to {new}")
        self.source, self.repo_id, self.revision = primary.source, primary.repo_id, primary.revision
        self.old, self.new, self.hub = primary.commit or "", new, hub


def head_check(settings: Settings, primary: Manifest) -> Callable[[], None] | None:
    """For a listing whose URLs name a branch (``pinned=False``): a check that raises
    BranchMoved when the branch no longer points at the commit the listing resolved."""
    if primary.pinned or primary.commit is None:
        return None
    from ..hubs.catalog import hub_info
    from ..hubs.factory import adapter_for

    def check() -> None:
        adapter: Any = adapter_for(primary.source, settings)
        head = adapter.head_commit(primary.repo_id, primary.revision)
        if head is not None and head != primary.commit:
            raise BranchMoved(primary, head, hub_info(primary.source).title)

    return check


def renewer(settings: Settings, manifests: Sequence[Manifest]) -> Any:
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


def select_files_for(
    req: PullRequest, primary: Manifest, others: Sequence[Manifest]
) -> tuple[list[FilePlan], list[tuple[str, str]]]:
    """The files to pull (filters, or the lock's files) with how each will be verified, and the
    files left out with why. UsageError when nothing is left."""
    info, locked = req.info, req.locked
    locked_files = {f.path: (f.size, f.sha256) for f in locked.files} if locked else None
    if locked is not None:
        check_against_lock(info.name, primary, locked_files or {}, locked_commit=locked.commit)
        # --include / --exclude narrow what the lock records (the lock already chose the formats)
        sel = select_files(
            locked_files or {}, include=req.include, exclude=req.exclude, all_files=True
        )
        selected = list(sel.selected)
        skipped = [
            (p, "not in the lock file")
            for p in sorted(primary.by_path())
            if p not in (locked_files or {})
        ]
        skipped += sel.skipped
    else:
        sel = select_files(
            primary.by_path(), include=req.include, exclude=req.exclude, all_files=req.all_files
        )
        selected, skipped = list(sel.selected), list(sel.skipped)
    if not selected:
        raise UsageError(
            f"no file of {primary.repo_id} on {primary.source} matches the filters "
            f"({len(skipped)} skipped); check --include / --exclude",
            model=info.name,
        )
    return plan_files(selected, primary, list(others), locked=locked_files), skipped


def disputes(file_plans: Sequence[FilePlan], primary: Manifest) -> list[str]:
    """A note per file whose sha256 another hub lists differently."""
    return [
        f"{fp.path}: "
        + ", ".join(f"{c.source} lists sha256 {(c.remote.sha256 or '')[:12]}…" for c in fp.disputed)
        + f", {fp.expected_from or primary.source} lists {(fp.sha256 or '?')[:12]}…"
        for fp in file_plans
        if fp.disputed
    ]
