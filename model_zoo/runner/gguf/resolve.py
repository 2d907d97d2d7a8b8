"""From what the user passed to ``load`` to one GGUF file (and the registry entry it belongs to).

A path to a ``.gguf`` file is loaded as it is; a directory holding exactly one GGUF file means
that file; a registry name of a GGUF variant with its quantization level
(``internlm2_5-7b-chat-gguf:q4_k_m``, or the parent's name with ``gguf=``) is looked up in the
store and pulled (that one file) when missing. Pure file checks: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import UsageError

MAGIC = b"GGUF"


@dataclass(frozen=True)
class GGUFRequest:
    """The file to load and what the registry knows about it."""

    path: Path
    info: Any = None  # the parent model's ModelInfo (chat format, generation defaults)
    rope_scaling: Any = None  # the parent checkpoint's rotary scaling, which GGUF drops


def is_gguf_file(path: Path) -> bool:
    """True for a file that starts with GGUF's magic bytes."""
    try:
        with path.open("rb") as fh:
            return fh.read(4) == MAGIC
    except OSError:
        return False


def gguf_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.gguf") if p.is_file())


def looks_like_gguf(name_or_path: str | Path, gguf: str | None = None) -> bool:
    """Whether ``load`` should take the GGUF path for this argument (cheap: no registry load
    for plain directories)."""
    if gguf is not None:
        return True
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return is_gguf_file(path)
    if path.is_dir():
        return not (path / "config.json").is_file() and bool(gguf_files(path))
    return False


def resolve_gguf(
    name_or_path: str | Path, gguf: str | None = None, *, pull_missing: bool = True
) -> GGUFRequest:
    """The GGUF file for a path, a directory or a registry name (see the module docstring)."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        if not is_gguf_file(path):
            raise UsageError(f"{path} is not a GGUF file (it does not start with {MAGIC!r}).")
        return GGUFRequest(path)
    if path.is_dir():
        found = gguf_files(path)
        if gguf is not None:
            found = [p for p in found if gguf.lower() in p.name.lower()]
        if len(found) == 1:
            return GGUFRequest(found[0])
        if not found:
            raise UsageError(f"{path} holds no .gguf file{f' for {gguf!r}' if gguf else ''}.")
        raise UsageError(
            f"{path} holds several GGUF files ({', '.join(p.name for p in found)}): give the file."
        )
    raise UsageError(f"{text}: no such GGUF file or directory.")
