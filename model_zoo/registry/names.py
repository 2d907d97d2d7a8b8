"""The one name grammar and resolver for models.

Grammar::

    spec      := name [ ":" level ] [ "@" revision ]
    name      := canonical name | slug | alias | source repo id ("namespace/name")
                 | the name part of a source repo id
                 (a quantized variant's name and repo ids too: ``internlm3-8b-instruct-gguf``)
    level     := a GGUF quantization level (``q4_k_m``, ``q8_0``, ``fp16``): the one file of
                 the model's GGUF variant, as Ollama's ``hf.co/{repo}:{level}`` names it
    revision  := a branch, tag or commit, no spaces or "@"

Matching is case-insensitive and tries three tiers, stopping at the first that matches:

1. exact: canonical names, slugs, aliases and full repo ids, compared case-insensitively;
2. folded: the same keys with every run of ``_ - .`` and spaces read as one separator
   (``internlm2_5-7b-chat`` = ``InternLM2.5-7B-Chat``);
3. bare: the name part of any repo id, folded (``internlm2-base-1.8b``).

A tier that matches more than one entry raises AmbiguousNameError listing them; no match
anywhere raises UnknownModelError with the closest names as suggestions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import AmbiguousNameError, UnknownModelError, UsageError

_SEPARATORS = re.compile(r"[\s_.\-]+")
_BAD_REVISION = re.compile(r"[\s@]")


def fold(text: str) -> str:
    """Lower-case, with each run of separators (``_ - .`` space) read as one ``-``.

    A repo id keeps its ``/``; each side is folded on its own.
    """
    parts = text.strip().lower().split("/")
    return "/".join(_SEPARATORS.sub("-", p).strip("-") for p in parts)


def split_revision(spec: str) -> tuple[str, str | None]:
    """``"name@rev"`` -> ``("name", "rev")``; ``"name"`` -> ``("name", None)``."""
    text = spec.strip()
    if "@" not in text:
        return text, None
    name, _, revision = text.rpartition("@")
    name, revision = name.strip(), revision.strip()
    if not name or not revision or "@" in name or _BAD_REVISION.search(revision):
        raise UsageError(
            f"cannot read model spec {spec!r}: write NAME or NAME@REVISION "
            "(one @, a non-empty revision without spaces)",
            spec=spec,
        )
    return name, revision


def split_level(name: str) -> tuple[str, str | None]:
    """``"name:q4_k_m"`` -> ``("name", "q4_k_m")``; a name without ``:`` -> ``(name, None)``.

    UsageError when what follows the last ``:`` is not a quantization level.
    """
    from ..ggufnames import is_level

    text = name.strip()
    if ":" not in text:
        return text, None
    base, _, level = text.rpartition(":")
    if not base.strip() or not is_level(level):
        raise UsageError(
            f"cannot read model spec {name!r}: after ':' comes a GGUF quantization level such as "
            "q4_k_m, q8_0 or fp16 (NAME:LEVEL[@REVISION])",
            spec=name,
        )
    return base.strip(), level.strip().lower()


def split_spec(spec: str) -> tuple[str, str | None, str | None]:
    """``"name:level@rev"`` -> ``(name, level, revision)``, either part optional."""
    name, revision = split_revision(spec)
    name, level = split_level(name)
    return name, level, revision


@dataclass(frozen=True)
class NameKeys:
    """Everything one entry answers to."""

    canonical: str
    names: tuple[str, ...]  # canonical name, slug, aliases, full repo ids
    repo_names: tuple[str, ...]  # the part after "/" of each repo id


class NameIndex:
    """Maps every spelling of every entry to its canonical name."""

    def __init__(self, entries: Iterable[NameKeys]) -> None:
        self._exact: dict[str, set[str]] = {}
        self._folded: dict[str, set[str]] = {}
        self._bare: dict[str, set[str]] = {}
        self._order: list[str] = []
        for e in entries:
            self._order.append(e.canonical)
            for key in e.names:
                self._exact.setdefault(key.strip().lower(), set()).add(e.canonical)
                self._folded.setdefault(fold(key), set()).add(e.canonical)
            for key in e.repo_names:
                self._bare.setdefault(fold(key), set()).add(e.canonical)

    def resolve(self, spec: str) -> tuple[str, str | None]:
        """Canonical name and revision for ``spec``; raises Unknown/AmbiguousNameError."""
        canonical, _level, revision = self.resolve_spec(spec)
        return canonical, revision

    def resolve_spec(self, spec: str) -> tuple[str, str | None, str | None]:
        """Canonical name, GGUF level and revision for ``spec`` (see the grammar above)."""
        name, level, revision = split_spec(spec)
        return self._lookup(spec, name), level, revision

    def _lookup(self, spec: str, name: str) -> str:
        if not name:
            raise UnknownModelError(spec, [])
        for table, key in (
            (self._exact, name.lower()),
            (self._folded, fold(name)),
            (self._bare, fold(name)),
        ):
            found = table.get(key)
            if not found:
                continue
            if len(found) > 1:
                raise AmbiguousNameError(name, self._ordered(found))
            return next(iter(found))
        raise UnknownModelError(name, self.suggest(name))

    def suggest(self, name: str, limit: int = 5) -> list[str]:
        """Canonical names that look most like ``name`` (close spellings, then containment)."""
        import difflib

        query = fold(name)
        keys = list(self._folded) + list(self._bare)
        out: list[str] = []
        for key in difflib.get_close_matches(query, keys, n=limit * 3, cutoff=0.6):
            for canonical in self._ordered(
                self._folded.get(key, set()) | self._bare.get(key, set())
            ):
                if canonical not in out:
                    out.append(canonical)
        if len(out) < limit and len(query) >= 3:
            for key in keys:
                if query in key:
                    for canonical in self._ordered(
                        self._folded.get(key, set()) | self._bare.get(key, set())
                    ):
                        if canonical not in out:
                            out.append(canonical)
        return out[:limit]

    def _ordered(self, canonicals: set[str]) -> list[str]:
        return [c for c in self._order if c in canonicals]
