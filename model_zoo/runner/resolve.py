"""From what the user typed to a checkpoint directory the loader may trust.

A path is loaded as it is. A registry name is looked up in the store and pulled when missing.
A directory with a store manifest (anything model-zoo pulled) is checked against it first:
sizes always, sha256 of the files changed since they were verified. Origin-format (InternEvo)
checkpoints are refused with the name of the HuggingFace-format source of the same model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CheckpointError, IncompatibleCheckpointError, ModelZooError, UsageError
from .checkpoint import is_origin_format

if TYPE_CHECKING:  # pragma: no cover
    from ..registry.info import ModelInfo

ORIGIN_SOURCE = "openxlab-origin"


@dataclass(frozen=True)
class Resolved:
    path: Path
    info: ModelInfo | None  # the registry entry, when the checkpoint is a known model
    source: str | None = None  # the store manifest's primary source


def looks_like_path(text: str) -> bool:
    return text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text


def _registry_entry(name: str) -> ModelInfo | None:
    try:
        from ..registry.api import get

        return get(name)
    except ModelZooError:
        return None


def hf_format_hint(info: ModelInfo | None) -> str:
    if info is None:
        return "Load the HuggingFace-format release of the same model instead."
    hf_sources = {k: v for k, v in info.sources.items() if k != ORIGIN_SOURCE}
    if not hf_sources:
        return f"{info.name} has no HuggingFace-format source in the registry."
    key, repo = next(iter(hf_sources.items()))
    return (
        f"Load the HuggingFace-format release instead: `model-zoo run {info.name}` "
        f"(pulls {repo} from {key})."
    )


def refuse_origin(path: Path, info: ModelInfo | None) -> IncompatibleCheckpointError:
    return IncompatibleCheckpointError(
        str(path),
        "this is an origin-format (InternEvo) checkpoint, which no HuggingFace-style loader reads",
        hint=hf_format_hint(info),
    )


def check_against_manifest(path: Path) -> Any:
    """Refuse a pulled directory whose files no longer match its manifest; return the manifest."""
    from ..store.manifest import read_manifest

    manifest = read_manifest(path)
    if manifest is None:
        return None
    from ..store.verify import verify

    report = verify(path, hashes="changed", structure=False)
    if not report.ok:
        first = report.problems[0]
        more = f" ({len(report.problems) - 1} more problem(s))" if len(report.problems) > 1 else ""
        raise CheckpointError(str(path / first.path), first.detail + more)
    return manifest


def _from_store(info: ModelInfo) -> Path | None:
    """The pulled HF-format snapshot of ``info`` (origin-format snapshots are passed over)."""
    from ..settings import load_settings
    from ..store.cache import find_snapshot, iter_snapshots

    home = load_settings().home
    snap = find_snapshot(home, info.slug, info.revision)
    if snap is not None and snap.manifest.source == ORIGIN_SOURCE:
        others = [
            s
            for s in iter_snapshots(home)
            if s.slug == snap.slug
            and s.manifest.source != ORIGIN_SOURCE
            and (info.revision is None or info.revision in (s.manifest.revision, s.manifest.commit))
        ]
        snap = others[0] if others else None
    return snap.root if snap is not None else None


def _pull(name: str) -> Path:
    try:
        from ..download.pull import pull
    except ImportError:  # pragma: no cover - the download package ships with model-zoo
        from ..errors import ModelNotPulledError

        raise ModelNotPulledError(name) from None
    return Path(pull(name))


def registry_entry(name_or_path: str | Path) -> ModelInfo | None:
    """The registry entry ``name_or_path`` names, or None for a directory; nothing is pulled.

    Lets a caller refuse the wrong kind of model (a chat model for scoring) before a pull of
    many gigabytes.
    """
    text = str(name_or_path)
    if (
        isinstance(name_or_path, Path)
        or not text.strip()
        or Path(text).expanduser().exists()
        or looks_like_path(text)
    ):
        return None
    from ..registry.api import get

    return get(text)


def resolve_checkpoint(name_or_path: str | Path, *, pull_missing: bool = True) -> Resolved:
    """The directory to load, the registry entry when known, and the source it came from."""
    text = str(name_or_path)
    if not text.strip():
        raise UsageError(
            "the model name is empty: give a registry name (model-zoo list) or a checkpoint "
            "directory."
        )
    candidate = Path(text).expanduser()
    info: ModelInfo | None = None
    if isinstance(name_or_path, Path) or candidate.is_dir() or looks_like_path(text):
        if candidate.is_file():
            raise UsageError(
                f"{text} is a file: give the checkpoint directory that holds config.json "
                f"({candidate.parent})."
            )
        if not candidate.is_dir():
            raise UsageError(f"{text}: no such checkpoint directory (and not a registry name).")
        path = candidate
    else:
        from ..registry.api import get

        info = get(text)  # UnknownModelError names close matches
        if info.weight_format == "origin" or set(info.sources) == {ORIGIN_SOURCE}:
            raise refuse_origin(Path(text), info)
        found = _from_store(info)
        if found is None and pull_missing:
            found = _pull(info.spec)
        if found is None:
            from ..errors import ModelNotPulledError

            raise ModelNotPulledError(info.name)
        path = found
    manifest = check_against_manifest(path)
    source = manifest.source if manifest is not None else None
    if info is None and manifest is not None and manifest.name:
        info = _registry_entry(manifest.name)
    if source == ORIGIN_SOURCE or is_origin_format(path):
        raise refuse_origin(path, info)
    return Resolved(path, info, source)
