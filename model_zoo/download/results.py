"""What a pull reports: its events for progress renderers, and its result."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..store.manifest import (
    StoreManifest,
)
from .plan import (
    PlannedSource,
)

if TYPE_CHECKING:  # pragma: no cover
    from .types import LinkStats

    pass

ProgressFn = Callable[[Any], None]


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
    replaced: list[str] = field(
        default_factory=list
    )  # files that were in the target with other bytes
    link: LinkStats | None = None  # what the download found out about the link

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
            "verification": {
                r.path: r.verified for r in (self.manifest.files if self.manifest else ())
            },
            "notes": self.notes,
            "link": asdict(self.link) if self.link is not None else None,
        }
