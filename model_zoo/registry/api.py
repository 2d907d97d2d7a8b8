"""The Python API over the registry: ``list_models``, ``get``, ``select``, ``search``.

Each function uses the process's registry (built-in file plus the user's overlay, see
``loader.load_registry``) unless a ``registry`` is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .collection import Registry
from .info import Dims, FamilyInfo, GenerationDefaults, ModelInfo, RewardInfo, RopeScaling
from .loader import load_registry
from .memory import DEFAULT_CONTEXT

__all__ = [
    "Dims",
    "FamilyInfo",
    "GenerationDefaults",
    "ModelInfo",
    "Registry",
    "RewardInfo",
    "RopeScaling",
    "get",
    "list_models",
    "search",
    "select",
]


def list_models(*, registry: Registry | None = None, **filters: Any) -> list[ModelInfo]:
    """Every entry matching the filters, in registry order (newest family first).

    Filters are those of ``Registry.filter``: family, kind, size, source, generation,
    max_memory_gb (with dtype and context), context_min. Unknown values raise UsageError.
    """
    return (registry or load_registry()).filter(**filters)


def get(name: str, *, registry: Registry | None = None) -> ModelInfo:
    """The entry ``name`` refers to (any spelling, optional ``@revision``); raises
    UnknownModelError."""
    return (registry or load_registry()).get(name)


def select(
    family: str | Iterable[str] | None = None,
    kind: str | Iterable[str] | None = None,
    size: str | Iterable[str] | None = None,
    max_memory_gb: float | str | None = None,
    dtype: str = "bf16",
    source: str | None = None,
    context_min: int | None = None,
    *,
    context: int = DEFAULT_CONTEXT,
    scoring: str | Iterable[str] | None = None,
    registry: Registry | None = None,
) -> list[ModelInfo]:
    """Matching entries, best first: newest generation, then the largest that fits.

    ``scoring="conversation"`` picks reward models that score chats (InternLM2-Reward);
    ``"reference-based"`` those that score an output against a reference (POLAR)."""
    return (registry or load_registry()).select(
        family=family,
        kind=kind,
        size=size,
        max_memory_gb=max_memory_gb,
        dtype=dtype,
        source=source,
        context_min=context_min,
        context=context,
        scoring=scoring,
    )


def search(text: str, *, registry: Registry | None = None) -> list[ModelInfo]:
    """Entries whose names, aliases, repo ids, family or kind contain every word of ``text``."""
    return (registry or load_registry()).search(text)
