"""The strict schema of registry files, and their compilation into plain, validated entries.

A registry file is YAML with these top-level keys (all but ``models`` optional)::

    schema_version: 1
    defaults: {...}          # fields every entry inherits (license, ...)
    families:                # shared fields declared once per family
      internlm2.5:
        title: InternLM2.5
        generation: 2.5
        defaults: {...}      # inherited by every entry of the family
        chat_defaults: {...} # inherited only by chat kinds (chat, chat-sft, instruct, chat-1m, math)
    shapes:                  # named architecture dims; ``preset:`` reuses another shape
      internlm2-7b: {hidden: 4096, ...}
    models:
      - name: InternLM2.5-7B-Chat
        family: internlm2.5
        ...

An entry's value wins over its family's chat_defaults, which win over the family's defaults,
which win over the top-level defaults; nested mappings merge key by key. A user file (the
overlay) has the same shape: an entry whose name matches a built-in one is merged into it,
any other entry is added. Unknown keys anywhere are errors.

This module imports pydantic and PyYAML, so only the loader's slow path and ``registry check``
import it; the CLI's fast path reads the compiled JSON cache instead.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import RegistryProblem
from ..hubs.catalog import HF, REPO_ID_RE, SOURCE_KEYS
from . import memory
from .info import CHAT_FORMATS, CHAT_KINDS, KINDS, WEIGHT_FORMATS

SCHEMA_VERSION = 1
TOP_LEVEL_KEYS = ("schema_version", "defaults", "families", "shapes", "models")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+\-]*$"
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_.+\-]*$"
REQUIRED_DIMS = ("hidden", "intermediate", "layers", "heads", "kv_heads", "vocab", "max_positions")

# --------------------------------------------------------------------------- pydantic models


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RopeScalingSpec(_Strict):
    type: Literal["dynamic", "linear"]
    factor: float | None = Field(default=None, gt=0)


class DimsSpec(_Strict):
    """Architecture dims; every field optional here, completeness is checked after presets merge."""

    preset: str | None = None
    hidden: int | None = Field(default=None, gt=0)
    intermediate: int | None = Field(default=None, gt=0)
    layers: int | None = Field(default=None, gt=0)
    heads: int | None = Field(default=None, gt=0)
    kv_heads: int | None = Field(default=None, gt=0)
    head_dim: int | None = Field(default=None, gt=0)
    vocab: int | None = Field(default=None, gt=0)
    max_positions: int | None = Field(default=None, gt=0)
    rope_theta: float | None = Field(default=None, gt=0)
    rope_scaling: RopeScalingSpec | None = None
    attention_bias: bool | None = None
    tie_embeddings: bool | None = None
    confirmed: bool | None = None
    note: str | None = None


class GenerationDefaultsSpec(_Strict):
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    repetition_penalty: float | None = Field(default=None, gt=0)
    max_new_tokens: int | None = Field(default=None, gt=0)
    max_new_tokens_thinking: int | None = Field(default=None, gt=0)
    stop_token_ids: list[int] = Field(default_factory=list)
    stop_strings: list[str] = Field(default_factory=list)


class RewardSpec(_Strict):
    reward_token_id: int = Field(ge=0)
    rewardbench: float | None = Field(default=None, ge=0, le=100)


class DefaultableFields(_Strict):
    """Fields that ``defaults`` / ``families.*.defaults`` may set for many entries at once."""

    license: str | None = None
    license_note: str | None = None
    architecture: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    weight_format: Literal[WEIGHT_FORMATS] | None = None  # type: ignore[valid-type]
    context_length: int | None = Field(default=None, gt=0)
    dims: Any = None  # preset name or DimsSpec mapping; checked in _resolve_dims
    chat_format: Literal[CHAT_FORMATS] | None = None  # type: ignore[valid-type]
    generation_defaults: GenerationDefaultsSpec | None = None
    reward: RewardSpec | None = None
    description: str | None = None


class EntrySpec(DefaultableFields):
    name: str = Field(pattern=NAME_PATTERN)
    slug: str | None = Field(default=None, pattern=SLUG_PATTERN)
    aliases: list[str] = Field(default_factory=list)
    family: str
    size: str
    params_b: float | None = Field(default=None, gt=0)
    kind: Literal[KINDS]  # type: ignore[valid-type]
    released: date
    updated: date | None = None
    license: str
    architecture: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    sources: dict[str, Any]


class FamilySpec(_Strict):
    title: str
    generation: float = Field(gt=0)
    description: str | None = None
    defaults: dict[str, Any] = Field(default_factory=dict)
    chat_defaults: dict[str, Any] = Field(default_factory=dict)


# --------------------------------------------------------------------------- YAML reading


class _StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loader that records duplicate mapping keys instead of silently keeping the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str) and key in seen:
                self.duplicate_keys.append((key, key_node.start_mark.line + 1))
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(data: bytes, location: str) -> tuple[Any, list[RegistryProblem]]:
    """The document in ``data`` and the problems found reading it (bad YAML, duplicate keys)."""
    loader = _StrictLoader(data)
    loader.duplicate_keys = []
    try:
        doc = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [RegistryProblem(location, f"not valid YAML{where}: {problem}")]
    finally:
        loader.dispose()
    problems = [
        RegistryProblem(location, f"duplicate key {key!r} on line {line}; each key may appear once")
        for key, line in loader.duplicate_keys
    ]
    return doc, problems


# --------------------------------------------------------------------------- composing files


@dataclass
class _RawEntry:
    data: dict[str, Any]
    location: str
    origin: str


@dataclass
class _Composed:
    defaults: dict[str, Any] = field(default_factory=dict)
    families: dict[str, Any] = field(default_factory=dict)
    family_locations: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, Any] = field(default_factory=dict)
    shape_locations: dict[str, str] = field(default_factory=dict)
    entries: list[_RawEntry] = field(default_factory=list)
    defaults_location: str = ""


def deep_merge(base: Any, over: Any) -> Any:
    """``over`` laid on ``base``: mappings merge key by key, anything else replaces."""
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        out = dict(base)
        for key, value in over.items():
            out[key] = deep_merge(out[key], value) if key in out else copy.deepcopy(value)
        return out
    return copy.deepcopy(over)


def _compose(docs: list[tuple[str, Any]], problems: list[RegistryProblem]) -> _Composed:
    out = _Composed()
    for location, doc in docs:
        if doc is None:
            doc = {}
        if not isinstance(doc, Mapping):
            problems.append(RegistryProblem(location, "the file must be a YAML mapping with a 'models' list"))
            continue
        for key in doc:
            if key not in TOP_LEVEL_KEYS and not str(key).startswith("x-"):
                problems.append(
                    RegistryProblem(location, f"unknown top-level key (allowed: {', '.join(TOP_LEVEL_KEYS)})", field=str(key))
                )
        version = doc.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            problems.append(
                RegistryProblem(location, f"schema_version {version!r} is not supported (expected {SCHEMA_VERSION})", field="schema_version")
            )
        for section in ("defaults", "families", "shapes"):
            value = doc.get(section) or {}
            if not isinstance(value, Mapping):
                problems.append(RegistryProblem(location, "must be a mapping", field=section))
                continue
            if section == "defaults":
                out.defaults = deep_merge(out.defaults, value)
                out.defaults_location = location
            else:
                target = out.families if section == "families" else out.shapes
                where = out.family_locations if section == "families" else out.shape_locations
                for key, spec in value.items():
                    target[str(key)] = deep_merge(target.get(str(key), {}), spec)
                    where[str(key)] = location
        _compose_models(location, doc.get("models"), out, problems)
    return out


def _compose_models(location: str, models: Any, out: _Composed, problems: list[RegistryProblem]) -> None:
    if models is None:
        return
    if not isinstance(models, list):
        problems.append(RegistryProblem(location, "must be a list of entries", field="models"))
        return
    by_name = {str(e.data.get("name", "")).lower(): e for e in out.entries}
    for i, item in enumerate(models):
        where = f"{location}: models[{i}]"
        if not isinstance(item, Mapping):
            problems.append(RegistryProblem(where, "an entry must be a mapping"))
            continue
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append(RegistryProblem(where, "an entry needs a name", field="name"))
            continue
        existing = by_name.get(name.lower())
        if existing is not None and existing.origin != location:
            existing.data = deep_merge(existing.data, item)
            existing.location = f"{where} (overriding {existing.location})"
            existing.origin = location
            continue
        entry = _RawEntry(copy.deepcopy(dict(item)), where, location)
        out.entries.append(entry)
        by_name.setdefault(name.lower(), entry)


# --------------------------------------------------------------------------- validation helpers


def _pydantic_problems(
    exc: ValidationError, location: str, entry: str | None, prefix: tuple[str, ...] = ()
) -> list[RegistryProblem]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (*prefix, *err["loc"]))
        kind = err["type"]
        if kind == "extra_forbidden":
            message = "unknown key"
        elif kind == "missing":
            message = "required field is missing"
        else:
            message = f"{err['msg']} (got {err.get('input')!r})"
        out.append(RegistryProblem(location, message, entry=entry, field=loc or None))
    return out


def _check_repo_id(source: str, repo: Any) -> str | None:
    """Why ``repo`` is not a valid id on ``source``, or None when it is."""
    if repo is None or (isinstance(repo, str) and not repo.strip()):
        return f"source {source!r} has no repo id"
    if not isinstance(repo, str):
        return f"repo id must be a string, got {repo!r}"
    if not REPO_ID_RE.match(repo):
        return f"{repo!r} is not a repo id of the form namespace/name"
    if source == HF:
        name = repo.split("/", 1)[1]
        if len(name) > 96 or "--" in repo or ".." in repo or repo.endswith(".git"):
            return f"{repo!r} is not a valid HuggingFace id (max 96 characters, no '--', '..' or '.git' suffix)"
    return None


def _complete_dims(dims: dict[str, Any], where: str, entry: str | None, fld: str) -> tuple[dict[str, Any] | None, list[RegistryProblem]]:
    problems = [
        RegistryProblem(where, "missing (a complete shape needs it)", entry=entry, field=f"{fld}.{key}")
        for key in REQUIRED_DIMS
        if dims.get(key) is None
    ]
    if problems:
        return None, problems
    heads, kv_heads = dims["heads"], dims["kv_heads"]
    if heads % kv_heads:
        problems.append(RegistryProblem(where, f"heads ({heads}) must be a multiple of kv_heads ({kv_heads})", entry=entry, field=f"{fld}.kv_heads"))
    head_dim = dims.get("head_dim")
    if head_dim is None:
        if dims["hidden"] % heads:
            problems.append(RegistryProblem(where, "hidden is not a multiple of heads; give head_dim", entry=entry, field=f"{fld}.head_dim"))
        head_dim = dims["hidden"] // heads
    full = {
        "hidden": dims["hidden"], "intermediate": dims["intermediate"], "layers": dims["layers"],
        "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim, "vocab": dims["vocab"],
        "max_positions": dims["max_positions"], "rope_theta": dims.get("rope_theta"),
        "rope_scaling": (
            {"type": rs["type"], "factor": rs.get("factor")} if (rs := dims.get("rope_scaling")) else None
        ),
        "attention_bias": bool(dims.get("attention_bias")),
        "tie_embeddings": bool(dims.get("tie_embeddings")),
        "confirmed": dims.get("confirmed") is not False,
        "note": dims.get("note"),
    }
    return (None if problems else full), problems


class _Shapes:
    """Named shapes with their ``preset`` chains resolved (cycles and unknown names reported)."""

    def __init__(self, raw: dict[str, Any], locations: dict[str, str], problems: list[RegistryProblem]) -> None:
        self._raw = raw
        self._locations = locations
        self._problems = problems
        self._resolved: dict[str, dict[str, Any] | None] = {}
        for name in raw:
            self.partial(name, ())

    def partial(self, name: str, chain: tuple[str, ...]) -> dict[str, Any] | None:
        if name in self._resolved:
            return self._resolved[name]
        where = self._locations.get(name, "")
        if name in chain:
            self._problems.append(RegistryProblem(where, f"preset cycle: {' -> '.join((*chain, name))}", field=f"shapes.{name}.preset"))
            return None
        try:
            spec = DimsSpec.model_validate(self._raw[name])
        except ValidationError as exc:
            self._problems.extend(_pydantic_problems(exc, where, None, ("shapes", name)))
            self._resolved[name] = None
            return None
        values = spec.model_dump(exclude_unset=True, exclude={"preset"})
        if spec.preset is not None:
            if spec.preset not in self._raw:
                self._problems.append(RegistryProblem(where, f"unknown shape {spec.preset!r}", field=f"shapes.{name}.preset"))
                self._resolved[name] = None
                return None
            base = self.partial(spec.preset, (*chain, name))
            if base is None:
                self._resolved[name] = None
                return None
            values = {**base, **values}
        self._resolved[name] = values
        return values

    def complete(self, name: str) -> dict[str, Any] | None:
        values = self._resolved.get(name)
        if values is None:
            return None
        full, problems = _complete_dims(values, self._locations.get(name, ""), None, f"shapes.{name}")
        self._problems.extend(problems)
        return full

    def __contains__(self, name: str) -> bool:
        return name in self._raw


def _resolve_dims(value: Any, shapes: _Shapes, where: str, entry: str) -> tuple[dict[str, Any] | None, list[RegistryProblem]]:
    if value is None:
        return None, []
    if isinstance(value, str):
        if value not in shapes:
            return None, [RegistryProblem(where, f"unknown shape {value!r} (see the shapes section)", entry=entry, field="dims")]
        return shapes.partial(value, ()), []
    try:
        spec = DimsSpec.model_validate(value)
    except ValidationError as exc:
        return None, _pydantic_problems(exc, where, entry, ("dims",))
    values = spec.model_dump(exclude_unset=True, exclude={"preset"})
    if spec.preset is not None:
        if spec.preset not in shapes:
            return None, [RegistryProblem(where, f"unknown shape {spec.preset!r}", entry=entry, field="dims.preset")]
        base = shapes.partial(spec.preset, ())
        if base is None:
            return None, []
        values = {**base, **values}
    return values, []


def _validated_defaults(raw: Any, where: str, fld: str, problems: list[RegistryProblem]) -> dict[str, Any]:
    """``raw`` with invalid keys reported (once, here) and dropped, so entries do not repeat them."""
    if not isinstance(raw, Mapping):
        problems.append(RegistryProblem(where, "must be a mapping", field=fld))
        return {}
    try:
        DefaultableFields.model_validate(raw)
        return dict(raw)
    except ValidationError as exc:
        found = _pydantic_problems(exc, where, None, tuple(fld.split(".")))
        problems.extend(found)
        bad = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
        return {k: v for k, v in raw.items() if k not in bad}


# --------------------------------------------------------------------------- compile


def compile_documents(docs: list[tuple[str, Any]]) -> tuple[dict[str, Any], list[RegistryProblem]]:
    """Validate parsed registry documents (built-in first, overlays after) and expand them.

    Returns ``({"families": {...}, "models": [entry dicts]}, problems)``; the entry dicts are
    what ``ModelInfo.from_dict`` reads. Every problem is collected; none stops the others.
    """
    problems: list[RegistryProblem] = []
    composed = _compose(docs, problems)
    top_defaults = _validated_defaults(composed.defaults, composed.defaults_location, "defaults", problems)

    families: dict[str, FamilySpec] = {}
    family_defaults: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for key, raw in composed.families.items():
        where = composed.family_locations[key]
        try:
            fam = FamilySpec.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(exc, where, None, ("families", key)))
            continue
        families[key] = fam
        family_defaults[key] = (
            _validated_defaults(fam.defaults, where, f"families.{key}.defaults", problems),
            _validated_defaults(fam.chat_defaults, where, f"families.{key}.chat_defaults", problems),
        )

    shapes = _Shapes(composed.shapes, composed.shape_locations, problems)
    for name in composed.shapes:
        shapes.complete(name)

    located: list[tuple[str, dict[str, Any]]] = []
    for raw in composed.entries:
        entry, found = _compile_entry(raw, families, family_defaults, top_defaults, shapes)
        problems.extend(found)
        if entry is not None:
            located.append((raw.location, entry))
    problems.extend(_cross_entry_problems(located))
    models = [entry for _, entry in located]
    out_families = {
        k: {"key": k, "title": f.title, "generation": f.generation, "description": f.description}
        for k, f in families.items()
    }
    return {"families": out_families, "models": models}, problems


def _compile_entry(
    raw: _RawEntry,
    families: dict[str, FamilySpec],
    family_defaults: dict[str, tuple[dict[str, Any], dict[str, Any]]],
    top_defaults: dict[str, Any],
    shapes: _Shapes,
) -> tuple[dict[str, Any] | None, list[RegistryProblem]]:
    where, name = raw.location, str(raw.data.get("name"))
    problems: list[RegistryProblem] = []
    family_key = raw.data.get("family")
    merged: dict[str, Any] = dict(top_defaults)
    if isinstance(family_key, str) and family_key in family_defaults:
        fam_defaults, chat_defaults = family_defaults[family_key]
        merged = deep_merge(merged, fam_defaults)
        if raw.data.get("kind") in CHAT_KINDS:
            merged = deep_merge(merged, chat_defaults)
    elif family_key is not None:
        known = ", ".join(families) or "none"
        problems.append(RegistryProblem(where, f"unknown family {family_key!r} (known: {known})", entry=name, field="family"))
    merged = deep_merge(merged, raw.data)
    try:
        spec = EntrySpec.model_validate(merged)
    except ValidationError as exc:
        return None, problems + _pydantic_problems(exc, where, name)
    if family_key not in families:
        return None, problems

    for alias in spec.aliases:
        if not isinstance(alias, str) or not _matches(NAME_PATTERN, alias):
            problems.append(RegistryProblem(where, f"alias {alias!r} may use only letters, digits and _ . + - (no '/' or '@')", entry=name, field="aliases"))
    if not spec.sources:
        problems.append(RegistryProblem(where, "an entry needs at least one source", entry=name, field="sources"))
    sources: dict[str, str] = {}
    for key, repo in spec.sources.items():
        if key not in SOURCE_KEYS:
            problems.append(RegistryProblem(where, f"unknown source {key!r} (known: {', '.join(SOURCE_KEYS)})", entry=name, field=f"sources.{key}"))
            continue
        why = _check_repo_id(key, repo)
        if why:
            problems.append(RegistryProblem(where, why, entry=name, field=f"sources.{key}"))
        else:
            sources[key] = repo
    sources = {k: sources[k] for k in SOURCE_KEYS if k in sources}

    if spec.kind == "reward" and spec.reward is None:
        problems.append(RegistryProblem(where, "a reward model needs reward.reward_token_id (the token appended before scoring)", entry=name, field="reward.reward_token_id"))
    if spec.kind != "reward" and spec.reward is not None:
        problems.append(RegistryProblem(where, f"only reward models carry a reward section (kind is {spec.kind!r})", entry=name, field="reward"))
    if spec.generation_defaults is not None and spec.kind not in CHAT_KINDS:
        problems.append(RegistryProblem(where, f"generation_defaults apply only to chat kinds ({', '.join(sorted(CHAT_KINDS))})", entry=name, field="generation_defaults"))
    if spec.updated is not None and spec.updated < spec.released:
        problems.append(RegistryProblem(where, "updated is earlier than released", entry=name, field="updated"))
    try:
        size_params = memory.params_from_size(spec.size)
    except ValueError as exc:
        problems.append(RegistryProblem(where, str(exc), entry=name, field="size"))
        size_params = None

    partial, dims_problems = _resolve_dims(spec.dims, shapes, where, name)
    problems.extend(dims_problems)
    dims = None
    if partial is not None:
        dims, more = _complete_dims(partial, where, name, "dims")
        problems.extend(more)
    if dims is not None and spec.params_b is not None:
        problems.append(RegistryProblem(where, "params_b is computed from dims; remove one of them", entry=name, field="params_b"))
    if problems or size_params is None:
        return None, problems

    if dims is not None:
        params_b, params_from = memory.param_count(dims, value_head=spec.kind == "reward") / 1e9, "dims"
    elif spec.params_b is not None:
        params_b, params_from = spec.params_b, "declared"
    else:
        params_b, params_from = size_params, "size"
    family = families[spec.family]
    entry = {
        "name": spec.name,
        "slug": spec.slug or spec.name.lower(),
        "aliases": list(spec.aliases),
        "family": spec.family,
        "family_title": family.title,
        "generation": family.generation,
        "size": spec.size,
        "params_b": round(params_b, 4),
        "params_from": params_from,
        "kind": spec.kind,
        "released": spec.released.isoformat(),
        "updated": spec.updated.isoformat() if spec.updated else None,
        "license": spec.license,
        "license_note": spec.license_note,
        "architecture": spec.architecture,
        "sources": sources,
        "context_length": spec.context_length or (dims["max_positions"] if dims else None),
        "weight_format": spec.weight_format,
        "dims": dims,
        "chat_format": spec.chat_format,
        "generation_defaults": spec.generation_defaults.model_dump() if spec.generation_defaults else None,
        "reward": spec.reward.model_dump() if spec.reward else None,
        "description": spec.description,
        "origin": raw.origin,
    }
    return entry, []


def _matches(pattern: str, text: str) -> bool:
    return re.match(pattern, text) is not None


def _cross_entry_problems(located: list[tuple[str, dict[str, Any]]]) -> list[RegistryProblem]:
    """Names, slugs, aliases and repo ids that two entries share (case-insensitively)."""
    owner: dict[str, tuple[int, str, str]] = {}
    problems: list[RegistryProblem] = []
    for index, (where, m) in enumerate(located):
        keys = [("name", m["name"]), ("slug", m["slug"])]
        keys += [("aliases", a) for a in m["aliases"]]
        keys += [(f"sources.{s}", r) for s, r in m["sources"].items()]
        for fld, key in keys:
            first = owner.setdefault(key.lower(), (index, m["name"], fld))
            if first[0] != index:
                problems.append(
                    RegistryProblem(
                        where,
                        f"{key!r} is already used by entry {first[1]!r} ({first[2]}); names, slugs, "
                        "aliases and repo ids must be unique",
                        entry=m["name"],
                        field=fld,
                    )
                )
    return problems
