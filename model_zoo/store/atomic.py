"""The one atomic file write: a temporary file beside the target, flushed, given the
permissions a plain ``open`` would give, then renamed over the target. A reader sees the old
file or the new one, never half of one, and a crash leaves no stray temporary file behind.

(The download engine's file data is different: it streams into a partial under
``.model-zoo-partial/`` and renames once verified; see ``download/staging.py``.)
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def write_atomic(
    path: Path, data: bytes | str | Iterable[bytes | memoryview], *, fsync: bool = True
) -> None:
    """Write ``data`` (bytes, text as UTF-8, or chunks) to ``path`` atomically.

    The file gets 0666 less the umask, not the owner-only mode of a temp file, so a shared
    store's manifests and a team's lock file stay readable by the others. LocalWriteError
    (structured, with the OS's reason) when the place cannot be written.
    """
    from ..errors import LocalWriteError, ModelZooError

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise LocalWriteError(str(path), exc.strerror or str(exc)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            chunks = (
                [data.encode("utf-8")]
                if isinstance(data, str)
                else [data]
                if isinstance(data, bytes)
                else data
            )
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fchmod(fh.fileno(), 0o666 & ~umask())
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, ModelZooError):  # ours stay as they are
            raise LocalWriteError(str(path), exc.strerror or str(exc)) from None
        raise


def write_json_atomic(path: Path, data: Any, *, fsync: bool = True) -> None:
    """``data`` as indented UTF-8 JSON with a final newline, through ``write_atomic``."""
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n", fsync=fsync)


def umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask sets it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current
