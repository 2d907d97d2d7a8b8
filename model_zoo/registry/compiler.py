"""Compile registry files into plain, validated entries (what ``ModelInfo.from_dict`` reads).

Files are composed first, the built-in one then the user's overlay: ``defaults``, ``families``
and ``shapes`` merge key by key; an overlay entry whose name matches an earlier entry is merged
into it (mappings such as ``sources`` merge key by key, other values replace), any other entry
is added. Each entry then inherits, weakest first: the top-level ``defaults``, its family's
``defaults``, its family's ``chat_defaults`` (chat kinds only), then its own fields.

Validation collects every problem (schema, ids, references, duplicates) instead of stopping
at the first, and names the entry and field of each.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..errors import RegistryProblem
from ..hubs.catalog import HF, REPO_ID_RE, SOURCE_KEYS
from . import memory
from .info import CHAT_KINDS
from .schema import (
    NAME_PATTERN,
    SCHEMA_VERSION,
    TOP_LEVEL_KEYS,
    DefaultableFields,
    EntrySpec,
    FamilySpec,
    pydantic_problems,
)
from .shapes import Shapes, complete_dims, resolve_dims


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
            problems.append(
                RegistryProblem(location, "the file must be a YAML mapping with a 'models' list")
            )
            continue
        for key in doc:
            if key not in TOP_LEVEL_KEYS and not str(key).startswith("x-"):
                problems.append(
                    RegistryProblem(
                        location,
                        f"unknown top-level key (allowed: {', '.join(TOP_LEVEL_KEYS)})",
                        field=str(key),
                    )
                )
        version = doc.get("schema_version", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            problems.append(
                RegistryProblem(
                    location,
                    f"schema_version {version!r} is not supported (expected {SCHEMA_VERSION})",
                    field="schema_version",
                )
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


def _compose_models(
    location: str, models: Any, out: _Composed, problems: list[RegistryProblem]
) -> None:
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
            return (
                f"{repo!r} is not a valid HuggingFace id "
                "(max 96 characters, no '--', '..' or '.git' suffix)"
            )
    return None


def _check_sources(
    raw: Any, where: str, entry: str
) -> tuple[dict[str, str], list[RegistryProblem]]:
    """Valid sources in canonical order, and a problem for each bad key or repo id."""
    if raw is None:
        return {}, [
            RegistryProblem(where, "required field is missing", entry=entry, field="sources")
        ]
    if not isinstance(raw, Mapping):
        return {}, [
            RegistryProblem(
                where, "must map source names to repo ids", entry=entry, field="sources"
            )
        ]
    if not raw:
        return {}, [
            RegistryProblem(
                where, "an entry needs at least one source", entry=entry, field="sources"
            )
        ]
    problems, sources = [], {}
    for key, repo in raw.items():
        if key not in SOURCE_KEYS:
            why: str | None = f"unknown source {key!r} (known: {', '.join(SOURCE_KEYS)})"
        else:
            why = _check_repo_id(key, repo)
        if why:
            problems.append(RegistryProblem(where, why, entry=entry, field=f"sources.{key}"))
        else:
            sources[key] = repo
    return {k: sources[k] for k in SOURCE_KEYS if k in sources}, problems


def _validated_defaults(
    raw: Any, where: str, fld: str, problems: list[RegistryProblem]
) -> dict[str, Any]:
    """``raw`` with invalid keys reported (once, here) and dropped, so entries do not repeat
    them."""
    if not isinstance(raw, Mapping):
        problems.append(RegistryProblem(where, "must be a mapping", field=fld))
        return {}
    try:
        DefaultableFields.model_validate(raw)
        return dict(raw)
    except ValidationError as exc:
        found = pydantic_problems(exc, where, None, tuple(fld.split(".")))
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
    top_defaults = _validated_defaults(
        composed.defaults, composed.defaults_location, "defaults", problems
    )

    families: dict[str, FamilySpec] = {}
    family_defaults: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for key, raw in composed.families.items():
        where = composed.family_locations[key]
        try:
            fam = FamilySpec.model_validate(raw)
        except ValidationError as exc:
            problems.extend(pydantic_problems(exc, where, None, ("families", key)))
            continue
        families[key] = fam
        family_defaults[key] = (
            _validated_defaults(fam.defaults, where, f"families.{key}.defaults", problems),
            _validated_defaults(
                fam.chat_defaults, where, f"families.{key}.chat_defaults", problems
            ),
        )

    shapes = Shapes(composed.shapes, composed.shape_locations, problems)
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
    shapes: Shapes,
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
        problems.append(
            RegistryProblem(
                where, f"unknown family {family_key!r} (known: {known})", entry=name, field="family"
            )
        )
    merged = deep_merge(merged, raw.data)
    sources, source_problems = _check_sources(merged.get("sources"), where, name)
    try:
        spec = EntrySpec.model_validate(merged)
    except ValidationError as exc:
        found = [
            p
            for p in pydantic_problems(exc, where, name)
            if not (p.field or "").startswith("sources")
        ]
        return None, problems + found + source_problems
    problems += source_problems
    if family_key not in families:
        return None, problems

    for alias in spec.aliases:
        if not isinstance(alias, str) or not _matches(NAME_PATTERN, alias):
            problems.append(
                RegistryProblem(
                    where,
                    f"alias {alias!r} may use only letters, digits and _ . + - (no '/' or '@')",
                    entry=name,
                    field="aliases",
                )
            )

    if spec.kind == "reward" and spec.reward is None:
        problems.append(
            RegistryProblem(
                where,
                "a reward model needs reward.reward_token_id (the token appended before scoring)",
                entry=name,
                field="reward.reward_token_id",
            )
        )
    if spec.kind != "reward" and spec.reward is not None:
        problems.append(
            RegistryProblem(
                where,
                f"only reward models carry a reward section (kind is {spec.kind!r})",
                entry=name,
                field="reward",
            )
        )
    if spec.generation_defaults is not None and spec.kind not in CHAT_KINDS:
        problems.append(
            RegistryProblem(
                where,
                f"generation_defaults apply only to chat kinds ({', '.join(sorted(CHAT_KINDS))})",
                entry=name,
                field="generation_defaults",
            )
        )
    if spec.updated is not None and spec.updated < spec.released:
        problems.append(
            RegistryProblem(where, "updated is earlier than released", entry=name, field="updated")
        )
    try:
        size_params = memory.params_from_size(spec.size)
    except ValueError as exc:
        problems.append(RegistryProblem(where, str(exc), entry=name, field="size"))
        size_params = None

    partial, dims_problems = resolve_dims(spec.dims, shapes, where, name)
    problems.extend(dims_problems)
    dims = None
    if partial is not None:
        dims, more = complete_dims(partial, where, name, "dims")
        problems.extend(more)
    if dims is not None and spec.params_b is not None:
        problems.append(
            RegistryProblem(
                where,
                "params_b is computed from dims; remove one of them",
                entry=name,
                field="params_b",
            )
        )
    variants = _compile_variants(spec, where, name, problems)
    if problems or size_params is None:
        return None, problems

    if dims is not None:
        params_b, params_from = (
            memory.param_count(dims, value_head=spec.kind == "reward") / 1e9,
            "dims",
        )
    elif spec.params_b is not None:
        params_b, params_from = spec.params_b, "declared"
    else:
        params_b, params_from = size_params, "size"
    family = families[spec.family]
    positions = dims["max_position_embeddings"] if dims else None
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
        "context_length": spec.context_length or positions,
        "weight_format": spec.weight_format,
        "dims": dims,
        "chat_format": spec.chat_format,
        "generation_defaults": spec.generation_defaults.model_dump()
        if spec.generation_defaults
        else None,
        "reward": spec.reward.model_dump() if spec.reward else None,
        "description": spec.description,
        "origin": raw.origin,
        "variants": variants,
    }
    return entry, []


def _compile_variants(
    spec: EntrySpec, where: str, name: str, problems: list[RegistryProblem]
) -> list[dict[str, Any]]:
    """Each variant with its sources checked and, for GGUF, its level -> file map checked
    against the file-name rule (``model_zoo.ggufnames``)."""
    from ..ggufnames import is_level, level_of, same_level

    out: list[dict[str, Any]] = []
    for i, v in enumerate(spec.variants):
        fld = f"variants[{i}]"
        sources, found = _check_sources(v.sources, where, name)
        problems += [
            RegistryProblem(p.location, p.message, entry=p.entry, field=f"{fld}.{p.field}")
            for p in found
        ]
        if v.format == "gguf" and not v.files:
            problems.append(
                RegistryProblem(
                    where,
                    "a GGUF variant needs files: level -> file name",
                    entry=name,
                    field=f"{fld}.files",
                )
            )
        if v.format != "gguf" and (v.files or v.sizes_gb):
            problems.append(
                RegistryProblem(
                    where,
                    f"only GGUF variants list files per level ({v.format} is one checkpoint)",
                    entry=name,
                    field=f"{fld}.files",
                )
            )
        for level, path in v.files.items():
            stated = level_of(path)
            if (
                not is_level(level)
                or not path.endswith(".gguf")
                or stated is None
                or not same_level(stated, level)
            ):
                problems.append(
                    RegistryProblem(
                        where,
                        f"{level!r} -> {path!r}: the key must be a quantization level and "
                        "the file a .gguf named with it",
                        entry=name,
                        field=f"{fld}.files",
                    )
                )
        for level in v.sizes_gb:
            if level not in v.files:
                problems.append(
                    RegistryProblem(
                        where,
                        f"sizes_gb names {level!r}, which files does not list",
                        entry=name,
                        field=f"{fld}.sizes_gb",
                    )
                )
        out.append(
            {
                "name": v.name,
                "format": v.format,
                "sources": sources,
                "bits": v.bits,
                "files": dict(v.files),
                "sizes_gb": dict(v.sizes_gb),
                "confirmed": v.confirmed,
                "note": v.note,
            }
        )
    return out


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
        for i, v in enumerate(m.get("variants") or ()):
            keys += [(f"variants[{i}].name", v["name"])]
            keys += [(f"variants[{i}].sources.{s}", r) for s, r in v["sources"].items()]
        for fld, key in keys:
            first = owner.setdefault(key.lower(), (index, m["name"], fld))
            if first[0] != index:
                problems.append(
                    RegistryProblem(
                        where,
                        f"{key!r} is already used by entry {first[1]!r} ({first[2]}); "
                        "names, slugs, aliases and repo ids must be unique",
                        entry=m["name"],
                        field=fld,
                    )
                )
    return problems
