"""Repositories written for the test hub: given files, or deterministic pseudo-random bytes.

A test or benchmark lays a repository out under a root the mirror server serves
(``ROOT/<namespace>/<name>/...``, ``model_zoo.mirror.repo_store``); large files are streamed, so
a multi-GiB benchmark file never sits in memory.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..mirror.repo_store import check_rel_path, check_repo_id


def write_repo(
    root: Path | str, repo_id: str, files: Mapping[str, bytes | str | int], *, seed: int = 0
) -> Path:
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


__all__ = ["pseudo_random_blocks", "write_repo"]
