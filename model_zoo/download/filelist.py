"""Which files of a listing a pull takes: include/exclude globs and redundant weight formats.

By default a pull skips weights that duplicate others in a better format: when a repository
has ``*.safetensors`` weights, its ``.bin`` / ``.pth`` / ``.pt`` / ``.ckpt`` / TF / Flax copies
(and the index files that describe them) are left out. ``--all-files`` takes everything;
``--include`` / ``--exclude`` globs (fnmatch on the full path, ``*`` crosses folders) apply in
both cases, and a file an include glob names explicitly is never skipped as redundant.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import PurePosixPath

REDUNDANT_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt", ".h5", ".msgpack")
REDUNDANT_INDEXES = (
    "pytorch_model.bin.index.json",
    "tf_model.h5.index.json",
    "flax_model.msgpack.index.json",
)


@dataclass(frozen=True)
class Selection:
    selected: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]  # (path, reason)


def _matches(path: str, patterns: Sequence[str]) -> bool:
    name = PurePosixPath(path).name
    return any(fnmatchcase(path, p) or ("/" not in p and fnmatchcase(name, p)) for p in patterns)


def has_safetensors_weights(paths: Iterable[str]) -> bool:
    return any(p.endswith(".safetensors") for p in paths)


def is_redundant_weight(path: str) -> bool:
    name = PurePosixPath(path).name
    return name.endswith(REDUNDANT_SUFFIXES) or name in REDUNDANT_INDEXES


def select_files(
    paths: Iterable[str],
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    all_files: bool = False,
) -> Selection:
    """Split ``paths`` into those to pull and those skipped, each skip with its reason."""
    paths = sorted(dict.fromkeys(paths))
    include = [p for p in (include or ()) if p]
    exclude = [p for p in (exclude or ()) if p]
    drop_redundant = not all_files and has_safetensors_weights(paths)
    selected: list[str] = []
    skipped: list[tuple[str, str]] = []
    for path in paths:
        if include and not _matches(path, include):
            skipped.append((path, "not matched by --include"))
        elif exclude and _matches(path, exclude):
            skipped.append((path, "matched by --exclude"))
        elif (
            drop_redundant
            and is_redundant_weight(path)
            and not (include and _explicit(path, include))
        ):
            skipped.append(
                (path, "redundant weight format (safetensors present; --all-files takes it)")
            )
        else:
            selected.append(path)
    return Selection(tuple(selected), tuple(skipped))


def _explicit(path: str, include: Sequence[str]) -> bool:
    """An include glob that names this redundant format (``*.bin``), not a catch-all like ``*``
    or ``*.json``."""
    name = PurePosixPath(path).name
    markers = [m for m in REDUNDANT_SUFFIXES if m in name]
    return any(_matches(path, [p]) and (name in p or any(m in p for m in markers)) for p in include)
