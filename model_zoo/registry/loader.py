"""Find, read, validate and cache the registry.

The built-in ``registry.yaml`` ships inside the wheel as ``model_zoo/registry.yaml`` and is
found through ``importlib.resources``; in a source checkout it is the file at the repository
root. A user file (``MODEL_ZOO_REGISTRY`` or ``registry = ...`` in the settings file) is laid
over it: entries with a built-in name are merged into that entry, others are added.

Validation (PyYAML + pydantic, see ``schema.py`` and ``compiler.py``) costs more than the rest
of ``model-zoo list`` together, so the compiled result is cached as JSON under
``$MODEL_ZOO_HOME/cache/registry/``, keyed by the sha256 of the registry files (paths and bytes)
and of the code that compiles them. A cache hit imports neither pydantic nor PyYAML. Within one
process the loaded Registry is reused until a file's size or mtime changes.
"""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ConfigError, RegistryError, RegistryProblem
from ..settings import Settings, load_settings
from .collection import Registry
from .info import FamilyInfo, ModelInfo

BUILTIN_NAME = "registry.yaml"
CACHE_FORMAT = 1
CACHE_KEEP = 8
# Modules whose code decides what a compiled registry contains; their text salts the cache key.
_COMPILER_MODULES = ("schema.py", "shapes.py", "compiler.py", "info.py", "memory.py")

_loaded: dict[tuple[Any, ...], Registry] = {}


def builtin_registry_path() -> Path:
    """The built-in registry file: inside the installed package, else at the source-tree root.

    For an unpacked install the first candidate is exactly what
    ``importlib.resources.files("model_zoo")`` resolves to; importlib.resources itself is
    only imported for other loaders (zip imports), as it costs ~10 ms of start-up.
    """
    package_dir = Path(__file__).resolve().parents[1]
    for candidate in (package_dir / BUILTIN_NAME, package_dir.parent / BUILTIN_NAME):
        if candidate.is_file():
            return candidate
    from importlib.resources import files

    packaged = files("model_zoo").joinpath(BUILTIN_NAME)
    if packaged.is_file():
        return Path(str(packaged))
    raise RegistryError(
        str(packaged),
        [
            RegistryProblem(
                str(packaged),
                "the built-in registry is missing from this install; reinstall model-zoo",
            )
        ],
    )


def clear_registry_cache() -> None:
    """Forget registries loaded by this process (the on-disk cache is keyed by content and
    stays)."""
    _loaded.clear()


def load_registry(
    path: str | Path | None = None, *, settings: Settings | None = None, use_cache: bool = True
) -> Registry:
    """The registry: ``path`` (default: the built-in file) with the user's file laid over it.

    Raises RegistryError listing every problem when a file does not validate, and ConfigError
    when the configured user file does not exist.
    """
    settings = settings or load_settings()
    files = [Path(path) if path is not None else builtin_registry_path()]
    if settings.registry_path is not None:
        files.append(settings.registry_path)
    stamps = []
    for i, f in enumerate(files):
        try:
            st = f.stat()
        except OSError:
            if i == 0:
                raise RegistryError(str(f), [RegistryProblem(str(f), "file not found")]) from None
            raise ConfigError(
                f"the user registry {f} (MODEL_ZOO_REGISTRY or `registry` in the settings file) "
                "does not exist; fix the path or unset it",
                setting="MODEL_ZOO_REGISTRY",
            ) from None
        if stat.S_ISDIR(st.st_mode):  # (/dev/null, an empty overlay, stays allowed)
            problem = "is a directory, not a YAML file"
            if i == 0:
                raise RegistryError(str(f), [RegistryProblem(str(f), problem)])
            raise ConfigError(
                f"the user registry {f} (MODEL_ZOO_REGISTRY or `registry` in the settings file) "
                f"{problem}; point it at a YAML file or unset it",
                setting="MODEL_ZOO_REGISTRY",
            )
        stamps.append((str(f), st.st_mtime_ns, st.st_size))
    key = (tuple(stamps), use_cache)
    if key in _loaded:
        return _loaded[key]
    datas = [_read(f) for f in files]
    cache_file = _cache_path(settings, files, datas) if use_cache else None
    registry = _from_cache(cache_file, files) if cache_file else None
    if registry is None:
        compiled = compile_files(files, datas)
        registry = _build(compiled, files)
        if cache_file is not None:
            _write_cache(cache_file, compiled)
    _loaded[key] = registry
    return registry


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RegistryError(
            str(path),
            [
                RegistryProblem(
                    str(path), f"cannot be read ({exc.strerror or exc}); check its permissions"
                )
            ],
        ) from None


def compile_files(files: list[Path], datas: list[bytes]) -> dict[str, Any]:
    """Parse and validate registry files (built-in first); RegistryError lists every problem."""
    compiled, problems = _check(files, datas)
    if problems:
        raise RegistryError(" + ".join(str(f) for f in files), problems)
    return compiled


def _check(files: list[Path], datas: list[bytes]) -> tuple[dict[str, Any], list[RegistryProblem]]:
    from . import compiler, schema

    docs, problems = [], []
    for f, data in zip(files, datas, strict=True):
        doc, found = schema.parse_yaml(data, str(f))
        problems.extend(found)
        docs.append((str(f), doc))
    compiled, found = compiler.compile_documents(docs)
    return compiled, problems + found


def check_registry_file(
    path: str | Path | None = None, *, standalone: bool = False
) -> list[RegistryProblem]:
    """Every problem in a registry file (default: the built-in one); empty when it is valid.

    A user file is checked as it will be used, laid over the built-in registry, unless
    ``standalone`` is set.
    """
    builtin = builtin_registry_path()
    target = Path(path) if path is not None else builtin
    if target.is_dir():
        return [RegistryProblem(str(target), "is a directory, not a YAML file")]
    if not target.exists():
        return [RegistryProblem(str(target), "file not found")]
    files = [target] if standalone or _same_file(target, builtin) else [builtin, target]
    try:
        datas = [f.read_bytes() for f in files]
    except OSError as exc:
        return [
            RegistryProblem(str(exc.filename or target), f"cannot be read ({exc.strerror or exc})")
        ]
    _, problems = _check(files, datas)
    return problems


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


# --------------------------------------------------------------------------- building


def _build(compiled: dict[str, Any], files: list[Path]) -> Registry:
    families = {k: FamilyInfo(**v) for k, v in compiled["families"].items()}
    models = [ModelInfo.from_dict(d) for d in compiled["models"]]
    return Registry(models, families, tuple(str(f) for f in files))


# --------------------------------------------------------------------------- on-disk cache


def _code_salt() -> bytes:
    here = Path(__file__).parent
    h = hashlib.sha256(f"{__version__}:{CACHE_FORMAT}".encode())
    for name in _COMPILER_MODULES:
        try:
            h.update((here / name).read_bytes())
        except OSError:
            pass
    return h.digest()


def _cache_path(settings: Settings, files: list[Path], datas: list[bytes]) -> Path:
    """Keyed by each file's path as well as its bytes: the compiled entries record where they
    came from, and two checkouts sharing one cache dir must not report each other's files."""
    h = hashlib.sha256(_code_salt())
    for path, data in zip(files, datas, strict=True):
        name = str(Path(path).resolve()).encode()
        h.update(len(name).to_bytes(8, "big"))
        h.update(name)
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return settings.home / "cache" / "registry" / f"{h.hexdigest()[:40]}.json"


def _from_cache(cache_file: Path, files: list[Path]) -> Registry | None:
    try:
        compiled = json.loads(cache_file.read_text(encoding="utf-8"))
        if compiled.get("format") != CACHE_FORMAT:
            return None
        return _build(compiled, files)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # absent, unreadable or from other code: compile again


def _write_cache(cache_file: Path, compiled: dict[str, Any]) -> None:
    """Atomic write; a store we cannot write to only costs speed, never correctness."""
    from ..store.atomic import write_atomic

    try:
        write_atomic(cache_file, json.dumps({**compiled, "format": CACHE_FORMAT}), fsync=False)
        old = sorted(
            cache_file.parent.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True
        )
        for stale in old[CACHE_KEEP:]:
            stale.unlink(missing_ok=True)
    except OSError:  # LocalWriteError included: the cache is an optimisation
        pass


__all__ = [
    "load_registry",
]
