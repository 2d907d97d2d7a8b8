"""Where the engine may write: remote paths checked before a single byte lands on disk.

A hub listing is untrusted input. Every path is checked as text first (no ``..``, no absolute
path, no drive letter, no backslash, no empty or ``.`` segment, no NUL or control character,
no name the engine reserves for itself) and then against the filesystem: no existing component
below ``target_dir`` may be a symlink, and the resolved path must stay inside ``target_dir``.

Partial downloads live in one hidden folder per target directory, ``PARTIAL_DIR``, mirroring
the listing's layout::

    <target_dir>/.model-zoo-partial/<path>.part       the bytes so far (preallocated, sparse)
    <target_dir>/.model-zoo-partial/<path>.part.json  the sidecar: which byte ranges are written
    <target_dir>/.model-zoo-partial/<path>.lock       the per-file cross-process lock

A file name too long to take those suffixes (over 207 bytes) is shortened there to a prefix
plus part of its sha256. They share the target's filesystem, so the final ``os.replace`` is
atomic, and they never sit under a name a loader or a glob like ``*.safetensors`` could mistake
for a complete file.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import LocalWriteError, UnsafePathError, UsageError
from ..store.layout import PARTIAL_DIR  # the store names it (verify skips it); re-exported here

PART_SUFFIX = ".part"
SIDECAR_SUFFIX = ".part.json"
LOCK_SUFFIX = ".lock"

_DRIVE = re.compile(r"^[A-Za-z]:")
_MAX_PATH_BYTES = 4096
_MAX_SEGMENT_BYTES = 255


def check_relpath(path: str) -> tuple[str, ...]:
    """The segments of a safe relative POSIX path, or UnsafePathError saying what is wrong."""
    if not isinstance(path, str) or not path:
        raise UnsafePathError(str(path), "empty path")
    if "\x00" in path:
        raise UnsafePathError(path, "contains a NUL byte")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise UnsafePathError(path, "contains a control character")
    if "\\" in path:
        raise UnsafePathError(path, "contains a backslash (Windows separator)")
    if path.startswith("/"):
        raise UnsafePathError(path, "is an absolute path")
    if _DRIVE.match(path):
        raise UnsafePathError(path, "starts with a drive letter")
    if len(path.encode("utf-8", "surrogatepass")) > _MAX_PATH_BYTES:
        raise UnsafePathError(path, "is too long")
    segments = tuple(path.split("/"))
    for seg in segments:
        if seg == "":
            raise UnsafePathError(path, "has an empty segment (// or a trailing /)")
        if seg == ".":
            raise UnsafePathError(path, "has a '.' segment")
        if seg == "..":
            raise UnsafePathError(path, "has a '..' segment")
        if len(seg.encode("utf-8", "surrogatepass")) > _MAX_SEGMENT_BYTES:
            raise UnsafePathError(path, "has a segment longer than 255 bytes")
    if segments[0] == PARTIAL_DIR:
        raise UnsafePathError(
            path, f"uses {PARTIAL_DIR}/, which model-zoo reserves for partial downloads"
        )
    return segments


def _lexists_kind(p: Path) -> int | None:
    try:
        return os.lstat(p).st_mode
    except FileNotFoundError:
        return None


def check_on_disk(target_dir: Path, path: str) -> Path:
    """The final location of ``path`` if writing there cannot escape ``target_dir``.

    No existing directory between ``target_dir`` and the file may be a symlink or a non-directory.
    A symlink *at* the final name is allowed: the engine replaces the link itself, never writes
    through it.
    """
    segments = check_relpath(path)
    root = Path(target_dir)
    current = root
    for seg in segments[:-1]:
        current = current / seg
        mode = _lexists_kind(current)
        if mode is None:
            continue
        if stat.S_ISLNK(mode):
            raise UnsafePathError(
                path, f"{current} is a symlink; model-zoo never writes through one"
            )
        if not stat.S_ISDIR(mode):
            raise UnsafePathError(path, f"{current} exists and is not a directory")
    final = root / Path(*segments)
    real_root = os.path.realpath(root)
    real_parent = os.path.realpath(final.parent)
    if os.path.commonpath([real_root, real_parent]) != real_root:
        raise UnsafePathError(path, "resolves outside the target directory")
    mode = _lexists_kind(final)
    if mode is not None and stat.S_ISDIR(mode):  # found before fetching the file, not after
        raise UsageError(
            f"{final} is a directory; cannot put the file {path} there. Move that "
            "directory away (or pull into another directory) and run again."
        )
    return final


def validate_paths(target_dir: Path, paths: Iterable[str]) -> dict[str, Path]:
    """Check every path (text and disk) before anything is written; map each to its final path.

    Also refuses listings that name one path twice or use a path both as a file and as a folder.
    """
    try:
        if not stat.S_ISDIR(os.stat(target_dir).st_mode):
            raise LocalWriteError(str(target_dir), "it is a file, not a directory")
    except FileNotFoundError:
        pass  # created when the first file is written
    except NotADirectoryError:
        raise LocalWriteError(str(target_dir), "a folder above it is a file") from None
    finals: dict[str, Path] = {}
    for path in paths:
        if path in finals:
            raise UnsafePathError(path, "is listed twice")
        finals[path] = check_on_disk(target_dir, path)
    prefixes = {"/".join(p.split("/")[:i]) for p in finals for i in range(1, p.count("/") + 1)}
    clash = sorted(prefixes & finals.keys())
    if clash:
        raise UnsafePathError(clash[0], "is listed both as a file and as a folder")
    return finals


@dataclass(frozen=True)
class PartialPaths:
    """The engine's working files for one target file (see the module docstring)."""

    final: Path
    data: Path
    sidecar: Path
    lock: Path


# The longest suffix the engine and its lock add to a partial's name is ".lock.stale-" + 32 hex
# digits (44 bytes); names are at most 255 bytes, so longer names are shortened (see below).
_PARTIAL_NAME_MAX = 255 - 48


def _partial_name(name: str) -> str:
    """``name``, or for a name too long to take the engine's suffixes, a shortened one that
    stays unique (a prefix plus part of the name's sha256)."""
    raw = name.encode("utf-8", "surrogatepass")
    if len(raw) <= _PARTIAL_NAME_MAX:
        return name
    import hashlib

    digest = hashlib.sha256(raw).hexdigest()[:20]
    prefix = raw[: _PARTIAL_NAME_MAX - 21].decode("utf-8", "ignore")  # never half a character
    return f"{prefix}~{digest}"


def partial_paths(target_dir: Path, path: str) -> PartialPaths:
    segments = check_relpath(path)
    base = Path(target_dir) / PARTIAL_DIR / Path(*segments[:-1], _partial_name(segments[-1]))
    return PartialPaths(
        final=Path(target_dir) / Path(*segments),
        data=base.with_name(base.name + PART_SUFFIX),
        sidecar=base.with_name(base.name + SIDECAR_SUFFIX),
        lock=base.with_name(base.name + LOCK_SUFFIX),
    )


def make_parents(root: Path, file_path: Path) -> None:
    """Create the folders between ``root`` and ``file_path``, refusing to pass through a symlink."""
    rel = file_path.parent.relative_to(root)
    current = root
    current.mkdir(parents=True, exist_ok=True)
    for seg in rel.parts:
        current = current / seg
        try:
            os.mkdir(current)
        except FileExistsError:
            mode = os.lstat(current).st_mode
            if stat.S_ISLNK(mode):
                raise UnsafePathError(
                    current.relative_to(root).as_posix(),
                    f"{current} is a symlink; refusing to write through it",
                ) from None
            if not stat.S_ISDIR(mode):
                raise LocalWriteError(
                    str(current),
                    "a file is in the way of the folder model-zoo needs there; move it away",
                ) from None


def is_partial_artifact(rel_path: str) -> bool:
    """True for paths inside the engine's working folder (for verify / cache listings to skip)."""
    return rel_path == PARTIAL_DIR or rel_path.startswith(PARTIAL_DIR + "/")
