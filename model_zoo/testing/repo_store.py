"""Repositories on disk, seen the way a hub sees them: revisions, commit ids, hashes.

The local hub (``hub_server``) serves a directory tree of plain files; this module turns that
tree into what hubs publish: a 40-hex commit id per repository state, a sha256 and a git blob
id per file, and which files git-lfs would track.

Layout of a root::

    ROOT/<namespace>/<name>/...                       the default branch: "main" (alias "master")
    ROOT/.revisions/<namespace>/<name>/<tag>/...      one full snapshot per extra tag

A revision is served by branch name, tag name, or commit id. The commit id is
``sha1(repo_id + sorted (path, sha256) pairs)``, so it changes exactly when the content does;
``RepoStore.tag`` copies the current default branch into a tag so tests can pin an old
revision while the default branch changes.

Hashes are cached by (real path, size, mtime, inode), so a large repository is hashed once.
Symlinks are followed only while they resolve inside one of the roots; anything else is
neither listed nor served.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_BRANCHES: tuple[str, ...] = ("main", "master")
REVISIONS_DIR = ".revisions"
# Files git-lfs tracks on real hubs when .gitattributes says nothing: HF refuses plain git
# files above 10 MiB.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
# Top-level entries of a repository directory that are tool metadata, not repository content.
SKIPPED_TOP_LEVEL: frozenset[str] = frozenset({".git", ".cache"})
HASH_CHUNK = 1 << 20

_SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


class RepoMissing(LookupError):
    """No repository with this id under any root."""


class RevisionMissing(LookupError):
    """The repository exists but has no such branch, tag or commit."""


class UnsafePath(ValueError):
    """A requested path is malformed or would leave the repository."""


@dataclass(frozen=True)
class FileEntry:
    """One served file of one revision."""

    path: str  # POSIX path relative to the repository root
    size: int
    sha256: str
    git_oid: str  # git blob id: of the content, or of the LFS pointer when ``lfs``
    lfs: bool
    real_path: Path  # resolved on-disk path, checked to lie inside a root
    mtime: float

    @property
    def lfs_pointer(self) -> bytes:
        return lfs_pointer(self.sha256, self.size)


@dataclass(frozen=True)
class Snapshot:
    """Every file of one revision of one repository."""

    repo_id: str
    commit: str
    directory: Path
    files: Mapping[str, FileEntry]  # sorted by path
    tags: tuple[str, ...] = field(default=())

    @property
    def last_modified(self) -> float:
        return max((f.mtime for f in self.files.values()), default=0.0)

    def directories(self) -> list[str]:
        """Every folder implied by the file paths, sorted."""
        dirs: set[str] = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        return sorted(dirs)

    def tree_oid(self, directory: str) -> str:
        """A stable 40-hex id for a folder (git's tree ids are not needed, only stability)."""
        prefix = directory + "/"
        h = hashlib.sha1(directory.encode())
        for path, entry in self.files.items():
            if path.startswith(prefix):
                h.update(f"{path}\0{entry.sha256}\n".encode())
        return h.hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file git stores in place of a tracked file."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def commit_id(repo_id: str, files: Iterable[tuple[str, str]]) -> str:
    """Deterministic 40-hex commit id of a repository state from (path, sha256) pairs."""
    h = hashlib.sha1(f"model-zoo local hub\0{repo_id}\n".encode())
    for path, sha in sorted(files):
        h.update(f"{path}\0{sha}\n".encode())
    return h.hexdigest()


def check_repo_id(repo_id: str) -> tuple[str, str]:
    """Split ``namespace/name``; refuses anything that could name a path outside a root."""
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_SEGMENT_RE.match(p) for p in parts):
        raise UnsafePath(f"not a repository id: {repo_id!r}")
    return parts[0], parts[1]


def check_rel_path(path: str) -> str:
    """Validate a file path inside a repository: relative, POSIX, no empty/dot segments."""
    if not path or "\x00" in path or "\\" in path or path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise UnsafePath(f"unsafe path: {path!r}")
    if any(seg in ("", ".", "..") for seg in path.split("/")):
        raise UnsafePath(f"unsafe path: {path!r}")
    return path


class _GitAttributes:
    """The LFS patterns of a .gitattributes file (the subset real model repos use)."""

    def __init__(self, text: str) -> None:
        self.patterns: list[str] = []
        for line in text.splitlines():
            fields = line.strip().split()
            if fields and not fields[0].startswith("#") and "filter=lfs" in fields[1:]:
                self.patterns.append(fields[0])

    def tracks(self, path: str) -> bool:
        name = path.rsplit("/", 1)[-1]
        for pat in self.patterns:
            if "/" in pat.strip("/"):
                if fnmatch.fnmatchcase(path, pat.lstrip("/")):
                    return True
            elif fnmatch.fnmatchcase(name, pat) or fnmatch.fnmatchcase(path, pat):
                return True
        return False


class HashCache:
    """sha256 (and git blob ids for small files) keyed by (real path, size, mtime, inode)."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, int, int, int], tuple[str, str | None]] = {}
        self._locks: dict[tuple[str, int, int, int], threading.Lock] = {}
        self._guard = threading.Lock()

    def digests(self, real_path: Path, st: os.stat_result, want_git_oid: bool) -> tuple[str, str | None]:
        key = (str(real_path), st.st_size, st.st_mtime_ns, st.st_ino)
        with self._guard:
            cached = self._values.get(key)
            if cached is not None and (cached[1] is not None or not want_git_oid):
                return cached
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one thread hashes a given file; the others wait for its result
            with self._guard:
                cached = self._values.get(key)
            if cached is not None and (cached[1] is not None or not want_git_oid):
                return cached
            value = _hash_file(real_path, st.st_size, want_git_oid)
            with self._guard:
                self._values[key] = value
                self._locks.pop(key, None)
            return value


def _hash_file(path: Path, size: int, want_git_oid: bool) -> tuple[str, str | None]:
    sha = hashlib.sha256()
    git = hashlib.sha1(b"blob %d\0" % size) if want_git_oid else None
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            sha.update(chunk)
            if git is not None:
                git.update(chunk)
    return sha.hexdigest(), git.hexdigest() if git is not None else None


class RepoStore:
    """Read-only view of one or more roots of repositories (first root holding a repo wins)."""

    def __init__(self, roots: Path | str | Sequence[Path | str]) -> None:
        if isinstance(roots, (str, Path)):
            roots = [roots]
        self.roots: tuple[Path, ...] = tuple(Path(r).expanduser().resolve() for r in roots)
        if not self.roots:
            raise ValueError("RepoStore needs at least one root directory")
        self.hashes = HashCache()
        self._snapshots: dict[tuple[str, Path], tuple[tuple, Snapshot]] = {}
        self._guard = threading.Lock()

    # -- discovery -------------------------------------------------------------------------
    def repo_ids(self) -> list[str]:
        """Every repository id under the roots, sorted."""
        found: set[str] = set()
        for root in self.roots:
            if not root.is_dir():
                continue
            for ns in root.iterdir():
                if ns.name.startswith(".") or not ns.is_dir() or not _SEGMENT_RE.match(ns.name):
                    continue
                for repo in ns.iterdir():
                    if repo.is_dir() and _SEGMENT_RE.match(repo.name) and self._inside_roots(repo):
                        found.add(f"{ns.name}/{repo.name}")
        return sorted(found)

    def repo_dir(self, repo_id: str) -> Path:
        ns, name = check_repo_id(repo_id)
        for root in self.roots:
            candidate = root / ns / name
            if candidate.is_dir() and self._inside_roots(candidate):
                return candidate
        raise RepoMissing(repo_id)

    def _tags_dir(self, repo_id: str) -> Path:
        ns, name = check_repo_id(repo_id)
        repo = self.repo_dir(repo_id)
        for root in self.roots:
            if repo.parent.parent == root:
                return root / REVISIONS_DIR / ns / name
        return self.roots[0] / REVISIONS_DIR / ns / name  # pragma: no cover - repo_dir guarantees a root

    def tags(self, repo_id: str) -> dict[str, Path]:
        """Tag name -> snapshot directory."""
        base = self._tags_dir(repo_id)
        if not base.is_dir():
            return {}
        return {
            d.name: d
            for d in sorted(base.iterdir())
            if d.is_dir() and _TAG_RE.match(d.name) and self._inside_roots(d)
        }

    def _inside_roots(self, path: Path) -> bool:
        try:
            real = path.resolve()
        except OSError:
            return False
        return any(real == r or real.is_relative_to(r) for r in self.roots)

    # -- revisions -------------------------------------------------------------------------
    def snapshot(self, repo_id: str, revision: str | None = None) -> Snapshot:
        """The files of ``repo_id`` at a branch, tag or commit id (default branch when None)."""
        repo = self.repo_dir(repo_id)
        if revision is None or revision in DEFAULT_BRANCHES:
            return self._build(repo_id, repo, tags=())
        tags = self.tags(repo_id)
        if revision in tags:
            return self._build(repo_id, tags[revision], tags=(revision,))
        if COMMIT_RE.match(revision):
            main = self._build(repo_id, repo, tags=())
            if main.commit == revision:
                return main
            for name, directory in tags.items():
                snap = self._build(repo_id, directory, tags=(name,))
                if snap.commit == revision:
                    return snap
        raise RevisionMissing(f"{repo_id}@{revision}")

    def revisions(self, repo_id: str) -> tuple[str, dict[str, str]]:
        """(default-branch commit, {tag: commit})."""
        main = self.snapshot(repo_id).commit
        return main, {name: self._build(repo_id, d, tags=(name,)).commit for name, d in self.tags(repo_id).items()}

    def tag(self, repo_id: str, tag: str) -> str:
        """Copy the default branch of ``repo_id`` into tag ``tag``; returns its commit id.

        A test helper, not a hub operation: the server itself never writes.
        """
        if not _TAG_RE.match(tag) or tag in DEFAULT_BRANCHES or COMMIT_RE.match(tag):
            raise ValueError(f"invalid tag name {tag!r}")
        snap = self.snapshot(repo_id)
        dest = self._tags_dir(repo_id) / tag
        tmp = dest.with_name(f".{tag}.tmp-{os.getpid()}-{threading.get_ident()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        for path, entry in snap.files.items():
            target = tmp / path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(entry.real_path, target)
        tmp.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
        return self.snapshot(repo_id, tag).commit

    # -- building ----------------------------------------------------------------------------
    def _scan(self, directory: Path) -> list[tuple[str, Path, os.stat_result]]:
        out: list[tuple[str, Path, os.stat_result]] = []
        for dirpath, dirnames, filenames in os.walk(directory):
            rel_dir = os.path.relpath(dirpath, directory)
            if rel_dir == ".":
                rel_dir = ""
                dirnames[:] = [d for d in dirnames if d not in SKIPPED_TOP_LEVEL]
                filenames = [f for f in filenames if f not in SKIPPED_TOP_LEVEL]
            dirnames.sort()
            for fname in sorted(filenames):
                rel = f"{rel_dir}/{fname}" if rel_dir else fname
                rel = rel.replace(os.sep, "/")
                full = Path(dirpath) / fname
                try:
                    check_rel_path(rel)
                    real = full.resolve(strict=True)
                    st = real.stat()
                except (OSError, UnsafePath):
                    continue
                if not (os.path.isfile(real) and self._inside_roots(real)):
                    continue  # symlinks out of the roots, sockets, devices: never served
                out.append((rel, real, st))
        return out

    def _build(self, repo_id: str, directory: Path, tags: tuple[str, ...]) -> Snapshot:
        scanned = self._scan(directory)
        fingerprint = tuple((rel, str(real), st.st_size, st.st_mtime_ns, st.st_ino) for rel, real, st in scanned)
        key = (repo_id, directory)
        with self._guard:
            cached = self._snapshots.get(key)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        attrs = _GitAttributes("")
        for rel, real, _ in scanned:
            if rel == ".gitattributes":
                attrs = _GitAttributes(real.read_text(errors="replace"))
        files: dict[str, FileEntry] = {}
        for rel, real, st in scanned:
            is_lfs = st.st_size >= LFS_SIZE_THRESHOLD or attrs.tracks(rel)
            sha, oid = self.hashes.digests(real, st, want_git_oid=not is_lfs)
            if is_lfs:
                oid = git_blob_oid(lfs_pointer(sha, st.st_size))
            assert oid is not None
            files[rel] = FileEntry(
                path=rel, size=st.st_size, sha256=sha, git_oid=oid, lfs=is_lfs, real_path=real, mtime=st.st_mtime
            )
        snap = Snapshot(
            repo_id=repo_id,
            commit=commit_id(repo_id, ((p, f.sha256) for p, f in files.items())),
            directory=directory,
            files=files,
            tags=tags,
        )
        with self._guard:
            self._snapshots[key] = (fingerprint, snap)
        return snap


def write_repo(root: Path | str, repo_id: str, files: Mapping[str, bytes | str | int], *, seed: int = 0) -> Path:
    """Create ``ROOT/<repo_id>/`` with the given files; returns the repository directory.

    Values: bytes or str are written as is; an int N writes N deterministic pseudo-random bytes
    (derived from ``seed`` and the path), streamed so large files never sit in memory.
    """
    ns, name = check_repo_id(repo_id)
    repo = Path(root) / ns / name
    for rel, content in files.items():
        check_rel_path(rel)
        target = repo / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        with tmp.open("wb") as fh:
            if isinstance(content, int):
                for block in pseudo_random_blocks(f"{seed}:{rel}", content):
                    fh.write(block)
            else:
                fh.write(content.encode() if isinstance(content, str) else content)
        os.replace(tmp, target)
    repo.mkdir(parents=True, exist_ok=True)
    return repo


def pseudo_random_blocks(key: str, size: int, block: int = 1 << 20) -> Iterable[bytes]:
    """``size`` deterministic bytes for ``key``, in blocks (fast: one sha256 per 1 MiB pattern)."""
    counter = 0
    remaining = size
    while remaining > 0:
        seed = hashlib.sha256(f"{key}:{counter}".encode()).digest()
        n = min(block, remaining)
        # Repeat a 4 KiB random pattern, varied per block, so content differs across offsets.
        pattern = hashlib.shake_256(seed).digest(4096)
        data = (pattern * (n // 4096 + 1))[:n]
        yield data
        remaining -= n
        counter += 1
