"""Match one file across several sources, and decide how its bytes will be verified.

Content is addressed by sha256: two sources serve "the same file" only when they publish the
same sha256 (or one publishes none and the size agrees while another's published hash is the
expectation). Pure functions over manifests, so every rule is tested with tables.

Per file, the expected sha256 comes from (first that applies):

1. the lock file (``lock``);
2. the primary source's listing (``published-sha256``);
3. another source's listing for the same path and size (``cross-source-sha256``).

With no sha256 anywhere, the git blob id that HuggingFace or Modelers publish for a small file
is checked (``git-blob-sha1``: the primary's, else another source's for the same path and
size); else the bytes are cross-checked against a second source that lists the file with the
same size (``cross-source-bytes``: the second copy must hash the same); else only the size is
checked (``size-only``). Sources whose published hash differs from the expectation are
never used for that file; they are kept as ``disputed`` so the pull can say so, and can retry
with them if the primary's listing turns out to be the wrong one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import LockMismatchError
from ..hubs.base import Manifest, RemoteFile
from ..store.manifest import CROSS_BYTES, CROSS_SHA, GIT_BLOB, LOCKED, PUBLISHED, SIZE_ONLY


@dataclass(frozen=True)
class Candidate:
    """A source whose listing offers these bytes, as planned (the engine tracks each one's
    failures during a run as a ``state.CandidateState``)."""

    source: str
    remote: RemoteFile


@dataclass(frozen=True)
class FilePlan:
    """Everything a pull knows about one file before fetching it."""

    path: str
    size: int | None
    sha256: str | None  # expected digest; None when nobody publishes one
    method: str  # how the bytes will be verified (store.manifest METHODS)
    expected_from: str | None  # which source (or "lock") the expected digest came from
    candidates: tuple[Candidate, ...]  # sources that may serve these bytes, primary first
    cross_check: Candidate | None = None  # second copy to compare when no hash is known
    git_blob: str | None = (
        None  # a git blob id (HuggingFace, Modelers), checked when no sha256 is known
    )
    git_blob_from: str | None = None  # the source that published it
    disputed: tuple[Candidate, ...] = ()  # sources whose listing claims a different sha256

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(c.source for c in self.candidates)


def _agrees(remote: RemoteFile, sha: str | None, size: int | None) -> bool:
    if size is not None and remote.size is not None and remote.size != size:
        return False
    if sha is not None and remote.sha256 is not None:
        return remote.sha256.lower() == sha
    return True


def plan_file(
    path: str,
    primary: Manifest,
    others: Sequence[Manifest] = (),
    *,
    locked: tuple[int, str] | None = None,
) -> FilePlan:
    """The plan for ``path`` (listed by ``primary``) given the other sources' listings."""
    first = primary.by_path()[path]
    listings = [(primary.source, first)] + [
        (m.source, m.by_path()[path]) for m in others if path in m.by_path()
    ]
    size = first.size
    sha = first.sha256.lower() if first.sha256 else None
    if locked is not None:
        size, sha = locked
        method, origin = LOCKED, "lock"
    elif sha is not None:
        method, origin = PUBLISHED, primary.source
    else:
        method, origin = SIZE_ONLY, None
        for src, remote in listings[1:]:
            if remote.sha256 and (size is None or remote.size in (None, size)):
                sha, method, origin = remote.sha256.lower(), CROSS_SHA, src
                size = size if size is not None else remote.size
                break

    candidates: list[Candidate] = []
    disputed: list[Candidate] = []
    for src, remote in listings:
        if _agrees(remote, sha, size):
            if sha is None and src != primary.source:
                continue  # with no hash to check, only the primary serves the bytes
            candidates.append(Candidate(src, remote))
        elif remote.sha256 and (sha is None or remote.sha256.lower() != sha):
            disputed.append(Candidate(src, remote))

    cross = None
    blob, blob_from = None, None
    if sha is None:  # the primary's git blob id, else another source's for the same size
        blob, blob_from = next(
            (
                (r.git_blob, src)
                for src, r in listings
                if r.git_blob and (size is None or r.size in (None, size))
            ),
            (None, None),
        )
    if blob is not None:
        method = GIT_BLOB
    elif sha is None:
        for src, remote in listings[1:]:
            if remote.sha256 is None and (size is None or remote.size in (None, size)):
                cross = Candidate(src, remote)
                method = CROSS_BYTES
                break
    return FilePlan(
        path,
        size,
        sha,
        method,
        origin,
        tuple(candidates),
        cross_check=cross,
        disputed=tuple(disputed),
        git_blob=blob,
        git_blob_from=blob_from,
    )


def git_blob_sha1(path: Path) -> str:
    """git's object id of a file's content: sha1 over ``blob <size>\0`` and the bytes."""
    import hashlib

    h = hashlib.sha1(usedforsecurity=False)
    h.update(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def plan_files(
    paths: Sequence[str],
    primary: Manifest,
    others: Sequence[Manifest] = (),
    *,
    locked: Mapping[str, tuple[int, str]] | None = None,
) -> list[FilePlan]:
    return [plan_file(p, primary, others, locked=(locked or {}).get(p)) for p in paths]


def check_against_lock(
    model: str,
    primary: Manifest,
    locked_files: Mapping[str, tuple[int, str]],
    *,
    locked_commit: str | None,
) -> None:
    """Raise LockMismatchError when the remote is no longer what the lock recorded."""
    if locked_commit and primary.commit and primary.commit.lower() != locked_commit.lower():
        raise LockMismatchError(
            model,
            f"{primary.source} resolved commit {primary.commit}, the lock has {locked_commit}",
        )
    listed = primary.by_path()
    problems = []
    for path, (size, sha) in sorted(locked_files.items()):
        remote = listed.get(path)
        if remote is None:
            problems.append(f"{path} is gone")
        elif remote.size is not None and remote.size != size:
            problems.append(f"{path} is {remote.size} bytes, locked {size}")
        elif remote.sha256 and remote.sha256.lower() != sha:
            problems.append(f"{path} has sha256 {remote.sha256.lower()[:12]}…, locked {sha[:12]}…")
    if problems:
        more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise LockMismatchError(model, f"on {primary.source}: " + "; ".join(problems[:3]) + more)
