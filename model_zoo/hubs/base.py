"""The contract between hub adapters and the download engine.

A hub adapter only *describes* a repository: it lists files and says how to fetch each one.
It never writes files. The engine knows nothing about hubs beyond a ``Manifest``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class RemoteFile:
    """One file of a remote repository and how to fetch its bytes.

    ``sha256`` is the lower-case hex digest when the hub publishes it, else None.
    ``headers`` may carry credentials: they are excluded from repr and never logged.
    ``kind`` is what the hub says the entry is: "file", or e.g. "symlink" when a listing marks
    it so; the engine writes only "file" entries.
    ``git_blob`` is the git blob id (40 hex) the hub publishes for a file stored in git itself
    (HuggingFace's ``oid``, Modelers' etag): checked when no sha256 is known.
    ``expires``: ``url`` is presigned and stops working after a while (OpenXLab): a 401/403 on it
    means "list again for a fresh URL", not "access refused".
    ``credential_domains``: https hosts under these domains may receive ``headers`` too when
    the hub redirects a download there (Modelers' CDN white list); any other origin never does.
    """

    path: str  # POSIX, relative to the repository root, exactly as the hub lists it
    size: int | None
    sha256: str | None
    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    supports_range: bool = True
    etag: str | None = None
    kind: str = "file"
    git_blob: str | None = None
    expires: bool = False
    credential_domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest:
    """Everything one source says about one revision of a repository.

    ``pinned`` is False when the file URLs name a branch that may move while they are fetched
    (a hub that cannot serve by commit): the pull then checks ``commit`` is still the branch's
    head before it trusts the files (``HubAdapter.head_commit``).
    """

    source: str  # source key from hubs.catalog (hf, modelscope, ...)
    repo_id: str
    revision: str  # what was asked for (branch, tag or commit)
    commit: str | None  # resolved commit id where the hub has one
    endpoint: str
    files: tuple[RemoteFile, ...]
    pinned: bool = True

    def by_path(self) -> dict[str, RemoteFile]:
        return {f.path: f for f in self.files}

    @property
    def total_size(self) -> int:
        return sum(f.size or 0 for f in self.files)


class HubAdapter(Protocol):
    """What every module under ``model_zoo.hubs`` provides (one instance per source)."""

    source: str

    def manifest(self, repo_id: str, revision: str | None = None) -> Manifest:
        """List every file of ``repo_id`` at ``revision`` (default branch when None).

        Raises the hub errors of ``model_zoo.errors`` (RepoNotFoundError, GatedRepoError,
        RevisionNotFoundError, RateLimitedError, HubServerError, HubUnreachableError).
        """
        ...

    def probe(self, timeout: float = 2.0) -> float:
        """One short request to the endpoint; returns latency in seconds or raises HubError."""
        ...
