"""Where things live in the store, and how a path becomes a safe local path.

Layout under ``settings.home`` (``$MODEL_ZOO_HOME``, default ``~/.cache/model-zoo``)::

    models/<slug>/<snapshot>/                 plain files in the repository's own layout
    models/<slug>/<snapshot>/.model-zoo/manifest.json   what was pulled, from where, how verified
    locks/<slug>.lock                          model-level cross-process lock

``<snapshot>`` is the commit id the hub reported (HuggingFace, Modelers, ModelScope) or, for a
hub without commit ids, ``<source>-<revision>``. A snapshot directory is complete exactly when
its manifest exists and lists every file: the manifest is written last, atomically, after
every file was verified. ``--local-dir DIR`` uses the same shape: files in DIR and the
manifest at ``DIR/.model-zoo/manifest.json``.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from ..errors import UnsafePathError

META_DIR = ".model-zoo"
# an unfinished pull's partial files, per target directory (download.paths)
PARTIAL_DIR = ".model-zoo-partial"
MANIFEST_NAME = "manifest.json"

_SAFE_COMPONENT = re.compile(r"[^A-Za-z0-9._\-]+")
_DRIVE = re.compile(r"^[A-Za-z]:")


def models_dir(home: Path) -> Path:
    return Path(home) / "models"


def locks_dir(home: Path) -> Path:
    return Path(home) / "locks"


def model_dir(home: Path, slug: str) -> Path:
    return models_dir(home) / safe_component(slug)


def safe_component(text: str) -> str:
    """A single directory name made from free text (a slug, revision or commit)."""
    out = _SAFE_COMPONENT.sub("_", text.strip()).strip("._") or "_"
    return out[:120]


def snapshot_name(source: str, revision: str | None, commit: str | None) -> str:
    """The directory name of one revision of a model in the store."""
    if commit:
        return safe_component(commit)
    return safe_component(f"{source}-{revision or 'default'}")


def snapshot_dir(
    home: Path, slug: str, source: str, revision: str | None, commit: str | None
) -> Path:
    return model_dir(home, slug) / snapshot_name(source, revision, commit)


def meta_dir(root: Path) -> Path:
    return Path(root) / META_DIR


def manifest_path(root: Path) -> Path:
    return meta_dir(root) / MANIFEST_NAME


def model_lock_path(home: Path, slug: str) -> Path:
    return locks_dir(home) / f"{safe_component(slug)}.lock"


def check_remote_path(path: str, *, source: str | None = None) -> PurePosixPath:
    """Validate a path from a remote listing; raise UnsafePathError unless it stays inside.

    Rejects empty paths, absolute paths, drive letters, backslashes, ``..`` and ``.``
    components, NUL bytes, and anything under our own ``.model-zoo`` metadata directory.
    """

    def bad(reason: str) -> UnsafePathError:
        return UnsafePathError(path, reason, source=source)

    if not path or not isinstance(path, str):
        raise bad("empty path")
    if "\x00" in path:
        raise bad("contains a NUL byte")
    if "\\" in path:
        raise bad("contains a backslash")
    if path.startswith("/"):
        raise bad("absolute path")
    if _DRIVE.match(path):
        raise bad("drive letter")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise bad("'..', '.' or empty component")
    if parts[0] == META_DIR:
        raise bad(f"{META_DIR}/ is reserved for model-zoo's own metadata")
    return PurePosixPath(path)


def local_path(root: Path, path: str, *, source: str | None = None) -> Path:
    """``root / path`` after validation, and after checking no existing symlink leads outside."""
    rel = check_remote_path(path, source=source)
    root = Path(root)
    target = root.joinpath(*rel.parts)
    real_root = root.resolve()
    # Parents that already exist must not be symlinks pointing elsewhere.
    probe = target.parent
    while True:
        if probe.is_symlink():
            raise UnsafePathError(path, f"{probe} is a symlink", source=source)
        if probe == root or probe == probe.parent:
            break
        probe = probe.parent
    if target.is_symlink():
        raise UnsafePathError(path, "the local path is a symlink", source=source)
    resolved = target.parent.resolve() / target.name
    if real_root != resolved and real_root not in resolved.parents:
        raise UnsafePathError(path, "resolves outside the target directory", source=source)
    return target
