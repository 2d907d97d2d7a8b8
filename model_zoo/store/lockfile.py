"""Lock files: the exact bytes of one or more checkpoints, so a team pulls identical copies.

``model-zoo lock NAME... > model-zoo.lock`` writes JSON::

    {"model_zoo_lock": 1, "generated_at": "...Z",
     "models": [{"name": "InternLM2.5-7B-Chat", "source": "hf",
                 "repo_id": "internlm/internlm2_5-7b-chat", "revision": "main",
                 "commit": "<40 hex>", "files": [{"path": "config.json", "size": 1234,
                 "sha256": "<64 hex>"}, ...]}]}

Every file has a sha256: where no hub publishes one (small git files), ``lock`` downloads the
file and hashes it. ``pull --lock`` pins ``commit`` (or ``revision`` when the hub has no commits),
fetches exactly the listed files, and fails with LockMismatchError when the remote differs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .manifest import utc_now

LOCK_FORMAT = 1
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class LockedFile:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class LockedModel:
    name: str
    source: str
    repo_id: str
    revision: str | None
    commit: str | None
    files: tuple[LockedFile, ...]

    @property
    def pin(self) -> str | None:
        """The revision a locked pull asks for: the commit where there is one."""
        return self.commit or self.revision

    def by_path(self) -> dict[str, LockedFile]:
        return {f.path: f for f in self.files}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "repo_id": self.repo_id,
            "revision": self.revision,
            "commit": self.commit,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
        }


@dataclass(frozen=True)
class LockFile:
    models: tuple[LockedModel, ...]
    generated_at: str = ""

    def find(self, name: str) -> LockedModel | None:
        """The entry for ``name`` (its canonical name, case-insensitive), else None."""
        low = name.lower()
        for m in self.models:
            if m.name.lower() == low:
                return m
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_zoo_lock": LOCK_FORMAT,
            "generated_at": self.generated_at or utc_now(),
            "models": [m.to_dict() for m in self.models],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"


def _bad(where: str, detail: str) -> UsageError:
    return UsageError(
        f"lock file {where} is not valid: {detail}. Re-create it with `model-zoo lock`.", path=where
    )


def parse_lock(data: Any, *, where: str = "lock file") -> LockFile:
    if not isinstance(data, dict) or data.get("model_zoo_lock") != LOCK_FORMAT:
        raise _bad(where, f'expected an object with "model_zoo_lock": {LOCK_FORMAT}')
    models = []
    for i, m in enumerate(data.get("models") or []):
        try:
            files = []
            seen: set[str] = set()
            for f in m["files"]:
                sha = str(f["sha256"]).lower()
                if not _HEX64.match(sha):
                    raise ValueError(f"file {f.get('path')!r} has no valid sha256")
                if f["path"] in seen:
                    raise ValueError(f"file {f['path']!r} is listed twice")
                seen.add(f["path"])
                files.append(LockedFile(str(f["path"]), int(f["size"]), sha))
            models.append(
                LockedModel(
                    name=str(m["name"]),
                    source=str(m["source"]),
                    repo_id=str(m["repo_id"]),
                    revision=m.get("revision"),
                    commit=m.get("commit"),
                    files=tuple(files),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad(where, f"models[{i}]: {exc}") from None
    if not models:
        raise _bad(where, "it lists no models")
    return LockFile(tuple(models), str(data.get("generated_at", "")))


def read_lock(path: str | Path) -> LockFile:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read lock file {p}: {exc}", path=str(p)) from None
    if not text.strip():
        raise UsageError(
            f"lock file {p} is empty: a `model-zoo lock ... > {p.name}` that failed leaves an "
            f"empty file (the shell creates it before the command runs). Make it again with "
            f"`model-zoo lock NAME -o {p.name}`, which writes the file only when locking succeeds.",
            path=str(p),
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _bad(str(p), f"not JSON ({exc})") from None
    return parse_lock(data, where=str(p))


def make_lock(models: Sequence[LockedModel]) -> LockFile:
    return LockFile(tuple(models), utc_now())
