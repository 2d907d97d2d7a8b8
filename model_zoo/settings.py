"""User settings: store location, source order, per-hub endpoints, tokens, offline mode.

Read from (later wins): built-in defaults, the settings file, environment variables.
The settings file is TOML at ``$MODEL_ZOO_CONFIG`` or ``~/.config/model-zoo/config.toml``::

    sources = ["modelscope", "hf"]        # default order for --source auto
    home = "/data/model-zoo"              # the store
    [endpoints]
    hf = "https://hf-mirror.com"

Tokens come only from the environment (see ``HubInfo.token_envs``), never from the file,
and ``Settings`` never shows them in its repr. OpenXLab's access key pair is read where its
own client keeps it (``OPENXLAB_AK``/``OPENXLAB_SK`` or ``~/.openxlab/config.json``; see
``hubs.openxlab_auth``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .hubs.catalog import HUBS, SOURCE_KEYS
from .hubs.openxlab_auth import AccessKey, access_key_from

_TRUE = {"1", "true", "yes", "on"}

# Default order for `--source auto` before probing: HuggingFace first, then the hubs in China.
# openxlab-origin is never a default: its checkpoints are not HF format.
DEFAULT_SOURCE_ORDER: tuple[str, ...] = ("hf", "modelscope", "modelers", "openxlab")


@dataclass(frozen=True)
class Settings:
    home: Path
    sources: tuple[str, ...]
    endpoints: Mapping[str, str]
    tokens: Mapping[str, str] = field(repr=False)
    offline: bool = False
    registry_path: Path | None = None
    config_path: Path | None = None
    # OpenXLab's key pair, or the ConfigError its config file gave (raised only when it is
    # needed, so a broken ~/.openxlab/config.json does not stop `model-zoo list`).
    openxlab_key: AccessKey | ConfigError | None = field(default=None, repr=False)

    def endpoint(self, source: str) -> str:
        return self.endpoints[source]

    def token(self, source: str) -> str | None:
        return self.tokens.get(source)

    def openxlab_access_key(self) -> AccessKey | None:
        """The OpenXLab access key pair; raises ConfigError when its config file is broken."""
        if isinstance(self.openxlab_key, ConfigError):
            raise self.openxlab_key
        return self.openxlab_key


def default_config_path(env: Mapping[str, str]) -> Path:
    if env.get("MODEL_ZOO_CONFIG"):
        return Path(env["MODEL_ZOO_CONFIG"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME", "~")).expanduser() / ".config")
    return Path(base) / "model-zoo" / "config.toml"


def _read_file(path: Path) -> dict:
    if not path.is_file():
        return {}
    import tomllib

    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"settings file {path} cannot be read: {exc}", setting=str(path)
        ) from None
    unknown = set(data) - {"sources", "home", "endpoints", "registry"}
    if unknown:
        raise ConfigError(
            f"settings file {path}: unknown key(s) {', '.join(sorted(unknown))}; "
            "allowed: sources, home, endpoints, registry",
            setting=str(path),
        )
    _check_types(data, path)
    return data


def _check_types(data: dict, path: Path) -> None:
    """Each key of the file holds the kind of value it must, or a ConfigError names it."""

    def wrong(key: str, want: str, example: str) -> ConfigError:
        got = type(data[key]).__name__
        return ConfigError(
            f"settings file {path}: {key} must be {want} (got {got}); for example {example}",
            setting=f"{path}: {key}",
        )

    for key in ("home", "registry"):
        if key in data and not (isinstance(data[key], str) and data[key].strip()):
            raise wrong(key, "a path as a string", f'{key} = "/data/model-zoo"')
    if "sources" in data:
        value = data["sources"]
        if not (
            isinstance(value, str)
            or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        ):
            raise wrong("sources", "a list of source names", 'sources = ["modelscope", "hf"]')
    if "endpoints" in data:
        table = data["endpoints"]
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise wrong(
                "endpoints", "a table of source = URL", '[endpoints] hf = "https://hf-mirror.com"'
            )


def _parse_sources(value: str | list[str], *, setting: str) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    out = tuple(s.strip().lower() for s in items if s and s.strip())
    bad = [s for s in out if s not in SOURCE_KEYS]
    if bad:
        raise ConfigError(
            f"{setting}: unknown source(s) {', '.join(bad)}; valid: {', '.join(SOURCE_KEYS)}",
            setting=setting,
        )
    return out


def _check_endpoint(url: str, setting: str) -> str:
    url = url.strip().rstrip("/")
    if not (url.startswith("http://") or url.startswith("https://")):
        raise ConfigError(f"{setting}={url!r} is not an http(s) URL", setting=setting)
    return url


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Settings from the file and the environment (``env`` defaults to ``os.environ``)."""
    env = os.environ if env is None else env
    config_path = default_config_path(env)
    data = _read_file(config_path)

    default_home = Path(env.get("HOME") or "~").expanduser() / ".cache" / "model-zoo"
    home = Path(env.get("MODEL_ZOO_HOME") or data.get("home") or default_home).expanduser()

    if env.get("MODEL_ZOO_SOURCES"):
        sources = _parse_sources(env["MODEL_ZOO_SOURCES"], setting="MODEL_ZOO_SOURCES")
    elif "sources" in data:
        sources = _parse_sources(data["sources"], setting=f"{config_path}: sources")
    else:
        sources = DEFAULT_SOURCE_ORDER

    file_endpoints = data.get("endpoints", {}) or {}
    unknown = set(file_endpoints) - set(SOURCE_KEYS)
    if unknown:
        raise ConfigError(
            f"{config_path}: [endpoints] has unknown source(s) {', '.join(sorted(unknown))}",
            setting="endpoints",
        )
    endpoints: dict[str, str] = {}
    tokens: dict[str, str] = {}
    for key, info in HUBS.items():
        if env.get(info.endpoint_env):
            endpoints[key] = _check_endpoint(env[info.endpoint_env], info.endpoint_env)
        elif key in file_endpoints:
            endpoints[key] = _check_endpoint(str(file_endpoints[key]), f"endpoints.{key}")
        else:
            endpoints[key] = info.default_endpoint
        for var in info.token_envs:
            if env.get(var):
                tokens[key] = env[var]
                break

    openxlab_key: AccessKey | ConfigError | None
    try:
        openxlab_key = access_key_from(env)
    except ConfigError as exc:
        openxlab_key = exc

    offline = any(
        env.get(v, "").strip().lower() in _TRUE for v in ("MODEL_ZOO_OFFLINE", "HF_HUB_OFFLINE")
    )
    registry = env.get("MODEL_ZOO_REGISTRY") or data.get("registry")
    return Settings(
        home=home,
        sources=sources,
        endpoints=endpoints,
        tokens=tokens,
        offline=offline,
        registry_path=Path(registry).expanduser() if registry else None,
        config_path=config_path if config_path.is_file() else None,
        openxlab_key=openxlab_key,
    )


__all__ = [
    "DEFAULT_SOURCE_ORDER",
    "Settings",
    "default_config_path",
    "load_settings",
]
