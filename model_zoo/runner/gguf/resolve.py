"""From what the user passed to ``load`` to one GGUF file (and the registry entry it belongs to).

A path to a ``.gguf`` file is loaded as it is; a directory holding exactly one GGUF file means
that file; a registry name of a GGUF variant with its quantization level
(``internlm2_5-7b-chat-gguf:q4_k_m``, or the parent's name with ``gguf=``) is looked up in the
store and pulled (that one file) when missing. Pure file checks: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from ...registry.info import RopeScaling

MAGIC = b"GGUF"


@dataclass(frozen=True)
class GGUFRequest:
    """The file to load and what the registry knows about it."""

    path: Path
    info: Any = None  # the parent model's ModelInfo (chat format, generation defaults)
    rope_scaling: RopeScaling | None = None  # the parent checkpoint's, which GGUF drops


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
    if looks_like_path(text):
        return False
    from ...errors import ModelZooError
    from ...registry.api import get

    try:  # NAME:LEVEL, or the name of a GGUF variant
        return get(text).quant_format == "gguf"
    except ModelZooError:
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
    if looks_like_path(text):
        raise UsageError(f"{text}: no such GGUF file or directory.")
    return resolve_registry_gguf(text, gguf, pull_missing=pull_missing)


def resolve_registry_gguf(
    name: str, gguf: str | None = None, *, pull_missing: bool = True
) -> GGUFRequest:
    """A registry name's GGUF file: from the store, or pulled (that one file) when missing.

    Without a level, the variant's ``q4_k_m`` when it lists one, else its first level.
    """
    from ...ggufnames import DEFAULT_LEVEL
    from ...registry.api import get
    from ...registry.loader import load_registry

    info = get(name)
    registry = load_registry()
    if gguf is not None or info.gguf_level is None:
        variant = info.gguf_variant()
        if variant is None:
            raise UsageError(
                f"{info.name} has no GGUF release in the registry; `model-zoo info {info.name}` "
                "lists its variants.",
                name=info.name,
            )
        level = gguf or (DEFAULT_LEVEL if variant.file_for(DEFAULT_LEVEL) else variant.levels[0])
        info = registry.with_gguf_level(info, level)
    file = info.gguf_file()
    assert file is not None
    if pull_missing:
        from ...download.pull import pull

        directory = Path(pull(info.spec))
    else:
        from ...errors import ModelNotPulledError
        from ...settings import load_settings
        from ...store.cache import find_snapshot

        snap = find_snapshot(load_settings().home, info.slug, info.revision)
        if snap is None or not (snap.root / file).is_file():
            raise ModelNotPulledError(info.spec)
        directory = snap.root
    scaling = info.dims.rope_scaling if info.dims is not None else None
    if scaling is not None and not scaling.factor:  # a factor the registry did not record
        scaling = None
    return GGUFRequest(directory / file, info, scaling)


def looks_like_path(text: str) -> bool:
    from ..resolve import looks_like_path as _looks

    return _looks(text) or text.endswith(".gguf")
