"""A loaded registry: the entries in file order, the name index, filters, selection and search."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType

from ..errors import UsageError
from ..hubs.catalog import SOURCE_KEYS
from . import memory
from .info import KINDS, SCORING_STYLES, FamilyInfo, ModelInfo
from .names import NameIndex, NameKeys, fold


def _name_keys(m: ModelInfo) -> NameKeys:
    repos = tuple(m.sources.values())
    return NameKeys(
        canonical=m.name,
        names=(m.name, m.slug, *m.aliases, *repos),
        repo_names=tuple(r.split("/", 1)[1] for r in repos),
    )


def _as_set(value: str | Iterable[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


class Registry:
    """Immutable collection of ModelInfo; every lookup goes through one NameIndex."""

    def __init__(
        self,
        models: Iterable[ModelInfo],
        families: Mapping[str, FamilyInfo],
        files: tuple[str, ...] = (),
    ) -> None:
        self.models: tuple[ModelInfo, ...] = tuple(models)
        self.families: Mapping[str, FamilyInfo] = MappingProxyType(dict(families))
        self.files = files  # the registry files this was loaded from, built-in first
        self._by_name = {m.name: m for m in self.models}
        # quantized variants answer to their own names and repo ids, not listed as entries
        for m in self.models:
            for v in m.variants:
                self._by_name[v.name] = m.as_variant(v)
        self._index = NameIndex(_name_keys(m) for m in self._by_name.values())

    def __len__(self) -> int:
        return len(self.models)

    def __iter__(self) -> Iterator[ModelInfo]:
        return iter(self.models)

    def get(self, spec: str) -> ModelInfo:
        """The entry ``spec`` names (any spelling, optional ``:level`` and ``@revision``).

        A GGUF level resolves to the model's GGUF variant with the level attached (``name`` may
        be the variant or its parent); UsageError when there is none or it lacks that level.
        """
        canonical, level, revision = self._index.resolve_spec(spec)
        info = self._by_name[canonical]
        if level is not None:
            info = self.with_gguf_level(info, level)
        return info.with_revision(revision) if revision else info

    def with_gguf_level(self, info: ModelInfo, level: str) -> ModelInfo:
        """``info``'s GGUF variant at ``level`` (the parent's variant when ``info`` is the
        parent)."""
        from dataclasses import replace

        variant = info.gguf_variant()
        if variant is None:
            raise UsageError(
                f"{info.name} has no GGUF release in the registry; "
                f"`model-zoo info {info.name}` lists its variants.",
                name=info.name,
                level=level,
            )
        if variant.file_for(level) is None:
            raise UsageError(
                f"{variant.name} has no {level} file; its levels: {', '.join(variant.levels)}.",
                name=variant.name,
                level=level,
                levels=list(variant.levels),
            )
        base = info if info.variant is variant else self._by_name[variant.name]
        return replace(base, gguf_level=level.lower())

    def suggest(self, name: str, limit: int = 5) -> list[str]:
        return self._index.suggest(name, limit)

    # ------------------------------------------------------------------ filtering

    def filter(
        self,
        *,
        family: str | Iterable[str] | None = None,
        kind: str | Iterable[str] | None = None,
        size: str | Iterable[str] | None = None,
        source: str | None = None,
        generation: float | None = None,
        max_memory_gb: float | str | None = None,
        dtype: str = "bf16",
        context: int = memory.DEFAULT_CONTEXT,
        context_min: int | None = None,
        scoring: str | Iterable[str] | None = None,
    ) -> list[ModelInfo]:
        """Entries matching every given filter, in registry order. Unknown filter values are errors.

        ``scoring`` keeps reward models that score that way (``conversation``: InternLM2-Reward's
        chats; ``reference-based``: POLAR's prompt, reference and output) and drops every other
        model, since only reward models score."""
        families = self._check_values("family", _as_set(family), list(self.families))
        kinds = self._check_values("kind", _as_set(kind), list(KINDS))
        sizes = self._check_values("size", _as_set(size), sorted({m.size for m in self.models}))
        styles = self._check_values("scoring", _as_set(scoring), list(SCORING_STYLES))
        if source is not None:
            source = source.strip().lower()  # as MODEL_ZOO_SOURCES and --source are read
        if source is not None and source not in SOURCE_KEYS:
            raise UsageError(
                f"unknown source {source!r}; use one of: {', '.join(SOURCE_KEYS)}", source=source
            )
        limit = memory.parse_memory(max_memory_gb) if max_memory_gb is not None else None
        dtype = memory.normalize_dtype(dtype)
        out = []
        for m in self.models:
            if families is not None and fold(m.family) not in families:
                continue
            if kinds is not None and m.kind not in kinds:
                continue
            if sizes is not None and fold(m.size) not in sizes:
                continue
            if styles is not None and fold(m.scoring_style or "") not in styles:
                continue
            if source is not None and source not in m.sources:
                continue
            if generation is not None and m.generation != generation:
                continue
            if context_min is not None and (m.context_length or 0) < context_min:
                continue
            if limit is not None and m.memory_gb(dtype, context) > limit:
                continue
            out.append(m)
        return out

    @staticmethod
    def _check_values(what: str, given: list[str] | None, known: list[str]) -> set[str] | None:
        if given is None:
            return None
        folded = {fold(k) for k in known}
        bad = [g for g in given if fold(g) not in folded]
        if bad:
            raise UsageError(
                f"unknown {what} {', '.join(map(repr, bad))}; use one of: {', '.join(known)}",
                **{what: bad},
            )
        return {fold(g) for g in given}

    def select(
        self,
        family: str | Iterable[str] | None = None,
        kind: str | Iterable[str] | None = None,
        size: str | Iterable[str] | None = None,
        max_memory_gb: float | str | None = None,
        dtype: str = "bf16",
        source: str | None = None,
        context_min: int | None = None,
        *,
        context: int = memory.DEFAULT_CONTEXT,
        scoring: str | Iterable[str] | None = None,
    ) -> list[ModelInfo]:
        """Matching entries best-first: newest generation, then largest, then newest release."""
        found = self.filter(
            family=family,
            kind=kind,
            size=size,
            source=source,
            max_memory_gb=max_memory_gb,
            dtype=dtype,
            context=context,
            context_min=context_min,
            scoring=scoring,
        )
        return sorted(
            found, key=lambda m: (-m.generation, -m.params_b, -m.released.toordinal(), m.name)
        )

    def search(self, text: str) -> list[ModelInfo]:
        """Entries whose names, aliases, repo ids, family, kind or description contain every
        word."""
        words = [fold(w) for w in text.split() if fold(w)]
        if not words:
            raise UsageError("search needs some text, e.g. `model-zoo search 7b chat`")
        hits = []
        for m in self.models:
            hay = " ".join(
                fold(s)
                for s in (
                    m.name,
                    m.slug,
                    *m.aliases,
                    *m.sources.values(),
                    m.family,
                    m.family_title,
                    m.kind,
                    m.size,
                    m.description or "",
                )
            )
            if all(w in hay for w in words):
                hits.append(m)
        query = fold(text)
        return sorted(
            hits, key=lambda m: (not fold(m.name).startswith(query), self.models.index(m))
        )
