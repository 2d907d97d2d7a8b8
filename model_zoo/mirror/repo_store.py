"""Repositories on disk, seen the way a hub sees them: revisions, commit ids, hashes.

The mirror (``server``) serves a directory tree of plain files; this module turns that
tree into what hubs publish: a 40-hex commit id per repository state, a sha256 and a git blob
id per file, and which files git-lfs would track.

Layout of a root::

    ROOT/<namespace>/<name>/...                       the default branch: "main" (alias "master")
    ROOT/.revisions/<namespace>/<name>/<tag>/...      one full snapshot per extra tag

A revision is served by branch name, tag name, or commit id. The commit id is
``sha1(repo_id + sorted (path, sha256) pairs)``, so it changes exactly when the content does;
``RepoStore.tag`` copies the current default branch into a tag so tests can pin an old
revision while the default branch changes.

Repositories can also be registered one by one (``RepoStore.add_repo``): that is how a
model-zoo store, whose snapshots live under their own directory names, is served; such a
revision may carry the upstream commit id so clients pinned to it keep working.

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
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_BRANCHES: tuple[str, ...] = ("main", "master")
REVISIONS_DIR = ".revisions"
# Files git-lfs tracks on real hubs when .gitattributes says nothing: HF refuses plain git
# files above 10 MiB.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
# Top-level entries of a repository directory that are tool metadata, not repository content.
SKIPPED_TOP_LEVEL: frozenset[str] = frozenset({".git", ".cache", ".model-zoo"})
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
    names: tuple[str, ...] = field(default=())  # branch / tag names this revision answers to

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
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


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
    if (
        not path
        or "\x00" in path
        or "\\" in path
        or path.startswith("/")
        or re.match(r"^[A-Za-z]:", path)
    ):
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

    def digests(
        self, real_path: Path, st: os.stat_result, want_git_oid: bool
    ) -> tuple[str, str | None]:
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


@dataclass(frozen=True)
class Revision:
    """One served state of a repository: a directory, the names it answers to, its commit."""

    directory: Path
    names: tuple[str, ...]  # branch / tag names; the first Revision of a repo also answers "main"
    commit: str | None = None  # a commit id to report instead of the computed one (mirrors)
    only: frozenset[str] | None = None  # serve just these paths (a store's manifest)


class RepoStore:
    """Read-only view of repositories: directory trees (``roots``, first root holding a repo
    wins) plus repositories registered one by one with ``add_repo`` (a model-zoo store)."""

    def __init__(self, roots: Path | str | Sequence[Path | str] = ()) -> None:
        if isinstance(roots, (str, Path)):
            roots = [roots]
        self.roots: tuple[Path, ...] = tuple(Path(r).expanduser().resolve() for r in roots)
        self.hashes = HashCache()
        self._explicit: dict[str, list[Revision]] = {}
        self._allowed: tuple[Path, ...] = self.roots
        self._snapshots: dict[tuple[str, Revision], tuple[tuple, Snapshot]] = {}
        self._guard = threading.Lock()

    def add_repo(
        self,
        repo_id: str,
        directory: Path | str,
        *,
        names: Sequence[str] = (),
        commit: str | None = None,
        only: Sequence[str] | None = None,
    ) -> None:
        """Serve ``directory`` as a revision of ``repo_id``.

        The first directory added for a repo id is its default branch ("main"/"master"); each
        answers to ``names`` and to its commit id: ``commit`` when given (a mirror reports the
        upstream commit), else the computed one. ``only`` limits the served paths.
        """
        check_repo_id(repo_id)
        if commit is not None and not COMMIT_RE.match(commit):
            commit = None  # hubs without 40-hex commits: keep the computed id
        real = Path(directory).expanduser().resolve()
        rev = Revision(real, tuple(names), commit, frozenset(only) if only is not None else None)
        with self._guard:
            self._explicit.setdefault(repo_id, []).append(rev)
            self._allowed = self._allowed + (real,)

    @classmethod
    def from_model_zoo_store(cls, home: Path | str) -> RepoStore:
        """Every repository pulled into a model-zoo store, under each repo id it came from.

        Built on ``model_zoo.store.cache.store_repo_roots`` (the store's own view of its layout),
        so a change of store layout needs no change here. A snapshot pulled from the default
        branch is served as "main"; others answer to the revision they were pulled at; each
        also answers to the upstream commit id it recorded.
        """
        from ..store.cache import store_repo_roots

        store = cls()
        pulled = store_repo_roots(Path(home))
        # Default-branch pulls first, so the newest of them becomes "main".
        pulled.sort(key=lambda r: r.revision is not None)
        for r in pulled:
            try:
                store.add_repo(
                    r.repo_id,
                    r.root,
                    names=(r.revision,) if r.revision else (),
                    commit=r.commit,
                    only=r.files,
                )
            except UnsafePath:
                continue  # a repo id no hub path can carry
        return store

    # -- discovery -------------------------------------------------------------------------
    def repo_ids(self) -> list[str]:
        """Every repository id served, sorted."""
        found: set[str] = set(self._explicit)
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

    def _tree_repo(self, repo_id: str) -> tuple[Path, Path] | None:
        """(root, repository directory) of a repository found in the directory trees."""
        ns, name = check_repo_id(repo_id)
        for root in self.roots:
            candidate = root / ns / name
            if candidate.is_dir() and self._inside_roots(candidate):
                return root, candidate
        return None

    def revisions_of(self, repo_id: str) -> list[Revision]:
        """The revisions of a repository, default branch first; raises RepoMissing."""
        check_repo_id(repo_id)
        with self._guard:
            explicit = list(self._explicit.get(repo_id, ()))
        if explicit:
            first = explicit[0]
            return [replace(first, names=DEFAULT_BRANCHES + first.names)] + explicit[1:]
        found = self._tree_repo(repo_id)
        if found is None:
            raise RepoMissing(repo_id)
        root, directory = found
        out = [Revision(directory, DEFAULT_BRANCHES)]
        tags_dir = root / REVISIONS_DIR / repo_id
        if tags_dir.is_dir():
            out += [
                Revision(d, (d.name,))
                for d in sorted(tags_dir.iterdir())
                if d.is_dir() and _TAG_RE.match(d.name) and self._inside_roots(d)
            ]
        return out

    def repo_dir(self, repo_id: str) -> Path:
        """The directory of the default branch."""
        return self.revisions_of(repo_id)[0].directory

    def _inside_roots(self, path: Path) -> bool:
        try:
            real = path.resolve()
        except OSError:
            return False
        return any(real == r or real.is_relative_to(r) for r in self._allowed)

    # -- revisions -------------------------------------------------------------------------
    def snapshot(self, repo_id: str, revision: str | None = None) -> Snapshot:
        """The files of ``repo_id`` at a branch, tag or commit id (default branch when None)."""
        revs = self.revisions_of(repo_id)
        if revision is None:
            return self._build(repo_id, revs[0])
        for rev in revs:
            if revision in rev.names:
                return self._build(repo_id, rev)
        if COMMIT_RE.match(revision):
            for rev in revs:
                snap = self._build(repo_id, rev)
                if snap.commit == revision:
                    return snap
        raise RevisionMissing(f"{repo_id}@{revision}")

    def revisions(self, repo_id: str) -> tuple[str, dict[str, str]]:
        """(default-branch commit, {tag: commit}) for every named non-default revision."""
        revs = self.revisions_of(repo_id)
        main = self._build(repo_id, revs[0]).commit
        tags: dict[str, str] = {}
        for rev in revs:
            names = [n for n in rev.names if n not in DEFAULT_BRANCHES]
            if names:
                commit = self._build(repo_id, rev).commit
                tags.update((n, commit) for n in names)
        return main, tags

    def tag(self, repo_id: str, tag: str) -> str:
        """Copy the default branch of ``repo_id`` into tag ``tag``; returns its commit id.

        A test helper, not a hub operation: the server itself never writes.
        """
        if not _TAG_RE.match(tag) or tag in DEFAULT_BRANCHES or COMMIT_RE.match(tag):
            raise ValueError(f"invalid tag name {tag!r}")
        found = self._tree_repo(repo_id)
        if found is None or repo_id in self._explicit:
            raise ValueError(f"{repo_id} is not in a directory tree of this store; tags need one")
        snap = self.snapshot(repo_id)
        dest = found[0] / REVISIONS_DIR / repo_id / tag
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

    def _build(self, repo_id: str, rev: Revision) -> Snapshot:
        directory = rev.directory
        scanned = self._scan(directory)
        if rev.only is not None:
            scanned = [item for item in scanned if item[0] in rev.only]
        fingerprint = tuple(
            (rel, str(real), st.st_size, st.st_mtime_ns, st.st_ino) for rel, real, st in scanned
        )
        key = (repo_id, rev)
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
                path=rel,
                size=st.st_size,
                sha256=sha,
                git_oid=oid,
                lfs=is_lfs,
                real_path=real,
                mtime=st.st_mtime,
            )
        snap = Snapshot(
            repo_id=repo_id,
            commit=rev.commit or commit_id(repo_id, ((p, f.sha256) for p, f in files.items())),
            directory=directory,
            files=files,
            names=rev.names,
        )
        with self._guard:
            self._snapshots[key] = (fingerprint, snap)
        return snap
