"""``verify``: re-hash every file of a pulled checkpoint and check its structure.

Hashes are checked against the directory's manifest, or a lock file when one is given; the
safetensors structure (headers, byte ranges, index, shapes against config.json) is checked in
every case, so a truncated or damaged checkpoint is caught even with no hash to compare.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import (
    CheckpointError,
    HashMismatchError,
    IntegrityError,
    ModelNotPulledError,
    SizeMismatchError,
)
from .hashing import cpu_count, sha256_many
from .layout import META_DIR, PARTIAL_DIR
from .lockfile import LockedModel, LockFile, read_lock
from .manifest import read_manifest, stamp_epoch
from .safetensors_check import Problem, check_checkpoint

HashMode = Literal["all", "changed", "none"]


@dataclass(frozen=True)
class FileCheck:
    path: str
    size: int | None  # on disk; None when missing
    expected_size: int | None
    expected_sha256: str | None
    sha256: str | None  # computed now; None when not hashed
    ok: bool


@dataclass
class VerifyReport:
    root: Path
    name: str | None
    against: str  # "manifest", "lock <file>", or "none" (structure only)
    files: list[FileCheck] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)  # files on disk the manifest does not list
    bytes_hashed: int = 0
    seconds: float = 0.0
    workers: int = 1

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def throughput(self) -> float:
        return self.bytes_hashed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "path": str(self.root),
            "name": self.name,
            "against": self.against,
            "files": [vars(f) for f in self.files],
            "problems": [
                {"path": p.path, "kind": p.kind, "detail": p.detail} for p in self.problems
            ],
            "unlisted": self.unlisted,
            "bytes_hashed": self.bytes_hashed,
            "seconds": round(self.seconds, 4),
            "workers": self.workers,
            "mb_per_s": round(self.throughput / 1e6, 1),
        }

    def error(self) -> IntegrityError | None:
        """The error to raise for this report (names the first file), None when all is well."""
        if self.ok:
            return None
        first = self.problems[0]
        more = (
            f" (and {len(self.problems) - 1} more problem(s); see `model-zoo verify --json`)"
            if len(self.problems) > 1
            else ""
        )
        check = next((f for f in self.files if f.path == first.path), None)
        if first.kind == "hash" and check is not None and check.expected_sha256 and check.sha256:
            err: IntegrityError = HashMismatchError(first.path, check.expected_sha256, check.sha256)
            err.message = (
                f"{self.root / first.path}: sha256 differs from the {self.against} (expected "
                f"{check.expected_sha256}, got {check.sha256}){more}. Delete the file and pull "
                "again to repair it (a pull trusts files whose size and time have not changed "
                "since they were verified)."
            )
            return err
        if (
            first.kind == "size"
            and check is not None
            and check.expected_size is not None
            and check.size is not None
        ):
            err = SizeMismatchError(str(self.root / first.path), check.expected_size, check.size)
            err.message = err.message.rstrip(".") + more + ". Pull again to repair."
            return err
        return CheckpointError(str(self.root / first.path), first.detail + more)

    def raise_for_problems(self) -> None:
        err = self.error()
        if err is not None:
            raise err


def _resolve_target(path_or_name: str | Path, *, settings: Any = None) -> tuple[Path, str | None]:
    """A directory to verify: an existing path as is, else a registry name looked up in the
    store."""
    from ..errors import UsageError

    p = Path(path_or_name).expanduser()
    if p.is_dir():
        return p, None
    if (
        isinstance(path_or_name, Path)
        or "/" in str(path_or_name)
        and not _looks_like_name(str(path_or_name))
    ):
        what = "is a file, not a checkpoint directory" if p.exists() else "does not exist"
        raise UsageError(
            f"{p} {what}. Give a checkpoint directory, or a model name to verify its copy "
            "in the store.",
            path=str(p),
        )
    from ..registry.api import get
    from ..settings import load_settings
    from .cache import find_snapshot

    settings = settings or load_settings()
    info = get(str(path_or_name))
    revision = getattr(info, "revision", None)
    snap = find_snapshot(settings.home, info.slug, revision)
    if snap is None:
        raise ModelNotPulledError(f"{info.name}@{revision}" if revision else info.name)
    return snap.root, info.name


def _looks_like_name(text: str) -> bool:
    # repo ids (internlm/internlm2_5-7b-chat) are names too; paths usually have more parts
    return text.count("/") == 1 and not text.startswith((".", "/", "~"))


def _pick_locked(lock: LockFile, name: str | None) -> LockedModel:
    from ..errors import UsageError

    if name:
        found = lock.find(name)
        if found is not None:
            return found
        # a known model the lock does not list: comparing another model's hashes would report
        # every file as damaged and advise a pointless re-pull
        raise UsageError(
            f"the lock file has no entry for {name} "
            f"(it lists {', '.join(m.name for m in lock.models)}); "
            f"add it with `model-zoo lock {name}`",
            models=[m.name for m in lock.models],
        )
    if len(lock.models) == 1:
        return lock.models[0]
    raise UsageError(
        f"the lock file lists {len(lock.models)} models and this directory has no manifest naming "
        "one; verify a store name, or use a lock file with one model",
        models=[m.name for m in lock.models],
    )


def verify(
    path_or_name: str | Path,
    *,
    lock: str | Path | LockFile | None = None,
    hashes: HashMode = "all",
    structure: bool = True,
    workers: int | None = None,
    settings: Any = None,
    on_bytes: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Check a pulled checkpoint; returns a report (``report.ok``, ``report.raise_for_problems()``).

    ``hashes``: ``all`` re-hashes every file; ``changed`` only files modified since the
    manifest's verification time (sizes are always checked); ``none`` checks sizes only.
    """
    root, name = _resolve_target(path_or_name, settings=settings)
    manifest = read_manifest(root)
    name = name or (manifest.name if manifest else None)
    expected: dict[str, tuple[int, str]] = {}
    against = "none"
    if lock is not None:
        lock_obj = lock if isinstance(lock, LockFile) else read_lock(lock)
        locked = _pick_locked(lock_obj, name)
        expected = {f.path: (f.size, f.sha256) for f in locked.files}
        against = "lock file"
        name = name or locked.name
    elif manifest is not None:
        expected = {f.path: (f.size, f.sha256) for f in manifest.files}
        against = "manifest"

    work_dirs = {
        META_DIR,
        PARTIAL_DIR,
    }  # model-zoo's own: the manifest, an unfinished pull's partials
    on_disk = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if (p.is_file() or p.is_symlink()) and not work_dirs.intersection(p.relative_to(root).parts)
    )
    report = VerifyReport(root=root, name=name, against=against)
    if not on_disk and not expected:
        report.problems.append(
            Problem(".", "missing", "the directory holds no files: nothing to verify")
        )
    report.unlisted = [p for p in on_disk if expected and p not in expected]
    listed = sorted(expected) if expected else on_disk

    verified_at = stamp_epoch(manifest.verified_at) if manifest and against == "manifest" else None
    to_hash: list[str] = []
    sizes: dict[str, int | None] = {}
    for rel in listed:
        path = root / rel
        try:
            st = path.stat()
            sizes[rel] = st.st_size
        except OSError:
            sizes[rel] = None
            continue
        if path.is_symlink():
            report.problems.append(
                Problem(rel, "layout", "is a symlink; pulled files are plain files")
            )
        if hashes == "all" or (
            hashes == "changed" and (verified_at is None or st.st_mtime > verified_at)
        ):
            to_hash.append(rel)

    report.workers = max(1, min(workers or cpu_count(), len(to_hash) or 1))
    start = time.perf_counter()
    digests = sha256_many([root / r for r in to_hash], workers=report.workers, on_bytes=on_bytes)
    report.seconds = time.perf_counter() - start

    for rel in listed:
        size = sizes[rel]
        exp_size, exp_sha = expected.get(rel, (None, None))
        got = digests.get(root / rel)
        sha = None
        if isinstance(got, OSError):
            report.problems.append(
                Problem(rel, "missing", f"cannot be read ({got.strerror or got})")
            )
        elif got is not None:
            sha, n = got
            report.bytes_hashed += n
        ok = True
        if size is None:
            report.problems.append(
                Problem(rel, "missing", f"is listed in the {against} but missing")
            )
            ok = False
        elif exp_size is not None and size != exp_size:
            report.problems.append(
                Problem(rel, "size", f"is {size} bytes, the {against} says {exp_size}")
            )
            ok = False
        elif sha is not None and exp_sha is not None and sha != exp_sha:
            report.problems.append(
                Problem(rel, "hash", f"sha256 {sha} differs from the {against}'s {exp_sha}")
            )
            ok = False
        report.files.append(FileCheck(rel, size, exp_size, exp_sha, sha, ok))

    if structure:
        present = [r for r in on_disk if (root / r).is_file()]
        report.problems += check_checkpoint(root, present)
    return report


__all__ = [
    "FileCheck",
    "HashMode",
    "VerifyReport",
    "verify",
]
