"""The manifest a pull writes beside the files: what they are, where from, how verified.

JSON at ``<dir>/.model-zoo/manifest.json``. It is written last and atomically, so a directory
with a manifest holds every file it lists, each verified as recorded under ``verified``:

- ``published-sha256``: the hub published the sha256; the streamed bytes matched it.
- ``cross-source-sha256``: this hub published none, another source did for the same path and size.
- ``lock``: the lock file's sha256 matched.
- ``cross-source-bytes``: no hub published a hash; two sources served identical bytes.
- ``git-blob-sha1``: HuggingFace and Modelers publish only the git blob id of small files; the
  bytes' git blob sha1 matched it (weaker than sha256, stronger than a size).
- ``size-only``: no published hash and no second source; only the size was checked (the sha256
  is still recorded so later ``verify`` runs catch any change on disk).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from .atomic import write_json_atomic
from .layout import manifest_path

FORMAT = 1

PUBLISHED = "published-sha256"
CROSS_SHA = "cross-source-sha256"
LOCKED = "lock"
CROSS_BYTES = "cross-source-bytes"
GIT_BLOB = "git-blob-sha1"
SIZE_ONLY = "size-only"
METHODS = (PUBLISHED, CROSS_SHA, LOCKED, CROSS_BYTES, GIT_BLOB, SIZE_ONLY)
# Methods that compared the bytes with a hash someone other than us computed.
STRONG_METHODS = frozenset({PUBLISHED, CROSS_SHA, LOCKED, CROSS_BYTES, GIT_BLOB})


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def stamp_epoch(stamp: str) -> float | None:
    """Seconds since the epoch of a ``utc_now`` stamp; None when it does not parse."""
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class FileRecord:
    path: str
    size: int
    sha256: str
    verified: str = SIZE_ONLY
    sources: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sources"] = list(self.sources)
        return d


@dataclass(frozen=True)
class SourceRecord:
    source: str
    repo_id: str
    endpoint: str
    commit: str | None = None


@dataclass(frozen=True)
class StoreManifest:
    name: str
    slug: str
    revision: str | None  # what was asked for (None: the hub's default branch)
    commit: str | None  # the commit the primary source resolved it to
    sources: tuple[SourceRecord, ...]
    files: tuple[FileRecord, ...]
    verified_at: str = field(default_factory=utc_now)
    skipped: tuple[str, ...] = ()  # remote files deliberately not pulled (filters)
    format: int = FORMAT

    @property
    def source(self) -> str:
        return self.sources[0].source if self.sources else ""

    @property
    def repo_id(self) -> str:
        return self.sources[0].repo_id if self.sources else ""

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def by_path(self) -> dict[str, FileRecord]:
        return {f.path: f for f in self.files}

    def with_files(self, files: Iterable[FileRecord], **changes: Any) -> StoreManifest:
        return replace(self, files=tuple(sorted(files, key=lambda f: f.path)), **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "name": self.name,
            "slug": self.slug,
            "source": self.source,
            "repo_id": self.repo_id,
            "revision": self.revision,
            "commit": self.commit,
            "sources": [asdict(s) for s in self.sources],
            "verified_at": self.verified_at,
            "total_size": self.total_size,
            "files": [f.to_dict() for f in self.files],
            "skipped": list(self.skipped),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "manifest") -> StoreManifest:
        try:
            if int(data.get("format", 0)) != FORMAT:
                raise ValueError(f"unsupported format {data.get('format')!r}")
            files = tuple(
                FileRecord(
                    path=str(f["path"]),
                    size=int(f["size"]),
                    sha256=str(f["sha256"]).lower(),
                    verified=str(f.get("verified", SIZE_ONLY)),
                    sources=tuple(f.get("sources", ())),
                )
                for f in data["files"]
            )
            sources = tuple(
                SourceRecord(
                    str(s["source"]), str(s["repo_id"]), str(s.get("endpoint", "")), s.get("commit")
                )
                for s in data.get("sources", ())
            )
            return cls(
                name=str(data["name"]),
                slug=str(data.get("slug") or data["name"]),
                revision=data.get("revision"),
                commit=data.get("commit"),
                sources=sources,
                files=files,
                verified_at=str(data.get("verified_at", "")),
                skipped=tuple(data.get("skipped", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(where, f"manifest is not valid ({exc})") from None


def write_manifest(root: Path, manifest: StoreManifest) -> Path:
    path = manifest_path(root)
    write_json_atomic(path, manifest.to_dict())
    return path


def read_manifest(root: Path) -> StoreManifest | None:
    """The manifest of a pulled directory, None when there is none; CheckpointError if damaged."""
    path = manifest_path(root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointError(str(path), f"manifest cannot be read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(str(path), f"manifest is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(str(path), "manifest is not a JSON object")
    return StoreManifest.from_dict(data, where=str(path))
