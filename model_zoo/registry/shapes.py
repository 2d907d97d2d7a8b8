"""Architecture dims in registry files: named shapes, ``preset`` chains, completeness checks."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..errors import RegistryProblem
from .schema import DimsSpec, pydantic_problems

REQUIRED_DIMS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "vocab_size",
    "max_position_embeddings",
)


def complete_dims(
    dims: dict[str, Any], where: str, entry: str | None, fld: str
) -> tuple[dict[str, Any] | None, list[RegistryProblem]]:
    """All dims filled in (head_dim derived), or None with the missing or inconsistent fields."""
    problems = [
        RegistryProblem(
            where, "missing (a complete shape needs it)", entry=entry, field=f"{fld}.{key}"
        )
        for key in REQUIRED_DIMS
        if dims.get(key) is None
    ]
    if problems:
        return None, problems
    heads, kv_heads = dims["num_attention_heads"], dims["num_key_value_heads"]
    if heads % kv_heads:
        problems.append(
            RegistryProblem(
                where,
                f"num_attention_heads ({heads}) must be a multiple of "
                f"num_key_value_heads ({kv_heads})",
                entry=entry,
                field=f"{fld}.num_key_value_heads",
            )
        )
    head_dim = dims.get("head_dim")
    if head_dim is None:
        if dims["hidden_size"] % heads:
            problems.append(
                RegistryProblem(
                    where,
                    "hidden_size is not a multiple of num_attention_heads; give head_dim",
                    entry=entry,
                    field=f"{fld}.head_dim",
                )
            )
        head_dim = dims["hidden_size"] // heads
    full = {
        "hidden_size": dims["hidden_size"],
        "intermediate_size": dims["intermediate_size"],
        "num_hidden_layers": dims["num_hidden_layers"],
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "vocab_size": dims["vocab_size"],
        "max_position_embeddings": dims["max_position_embeddings"],
        "rope_theta": dims.get("rope_theta"),
        "rope_scaling": (
            {"type": rs["type"], "factor": rs.get("factor")}
            if (rs := dims.get("rope_scaling"))
            else None
        ),
        "attention_bias": bool(dims.get("attention_bias")),
        "tie_word_embeddings": bool(dims.get("tie_word_embeddings")),
        "confirmed": dims.get("confirmed") is not False,
        "note": dims.get("note"),
    }
    return (None if problems else full), problems


class Shapes:
    """Named shapes with their ``preset`` chains resolved (cycles and unknown names reported)."""

    def __init__(
        self, raw: dict[str, Any], locations: dict[str, str], problems: list[RegistryProblem]
    ) -> None:
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
            self._problems.append(
                RegistryProblem(
                    where,
                    f"preset cycle: {' -> '.join((*chain, name))}",
                    field=f"shapes.{name}.preset",
                )
            )
            return None
        try:
            spec = DimsSpec.model_validate(self._raw[name])
        except ValidationError as exc:
            self._problems.extend(pydantic_problems(exc, where, None, ("shapes", name)))
            self._resolved[name] = None
            return None
        values = spec.model_dump(exclude_unset=True, exclude={"preset"})
        if spec.preset is not None:
            if spec.preset not in self._raw:
                self._problems.append(
                    RegistryProblem(
                        where, f"unknown shape {spec.preset!r}", field=f"shapes.{name}.preset"
                    )
                )
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
        full, problems = complete_dims(
            values, self._locations.get(name, ""), None, f"shapes.{name}"
        )
        self._problems.extend(problems)
        return full

    def __contains__(self, name: str) -> bool:
        return name in self._raw


def resolve_dims(
    value: Any, shapes: Shapes, where: str, entry: str
) -> tuple[dict[str, Any] | None, list[RegistryProblem]]:
    """An entry's ``dims`` (a shape name or a mapping with optional ``preset``), not yet
    completed."""
    if value is None:
        return None, []
    if isinstance(value, str):
        if value not in shapes:
            return None, [
                RegistryProblem(
                    where,
                    f"unknown shape {value!r} (see the shapes section)",
                    entry=entry,
                    field="dims",
                )
            ]
        return shapes.partial(value, ()), []
    try:
        spec = DimsSpec.model_validate(value)
    except ValidationError as exc:
        return None, pydantic_problems(exc, where, entry, ("dims",))
    values = spec.model_dump(exclude_unset=True, exclude={"preset"})
    if spec.preset is not None:
        if spec.preset not in shapes:
            return None, [
                RegistryProblem(
                    where, f"unknown shape {spec.preset!r}", entry=entry, field="dims.preset"
                )
            ]
        base = shapes.partial(spec.preset, ())
        if base is None:
            return None, []
        values = {**base, **values}
    return values, []
