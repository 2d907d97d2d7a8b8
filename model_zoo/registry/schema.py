"""The strict schema of registry files (pydantic models) and the YAML reader.

A registry file is YAML with these top-level keys (all but ``models`` optional)::

    schema_version: 1
    defaults: {...}          # fields every entry inherits (license, ...)
    families:                # shared fields declared once per family
      internlm2.5:
        title: InternLM2.5
        generation: 2.5
        defaults: {...}      # inherited by every entry of the family
        chat_defaults: {...} # inherited only by chat kinds
                             # (chat, chat-sft, instruct, chat-1m, math)
    shapes:                  # named architecture dims; ``preset:`` reuses another shape
      internlm2-7b: {hidden_size: 4096, ...}   # config.json's names
    models:
      - name: InternLM2.5-7B-Chat
        family: internlm2.5
        ...

Top-level keys starting with ``x-`` are ignored: they hold YAML anchors shared by sections.
Unknown keys anywhere else are errors. How files combine and entries inherit is in
``compiler.py``. This module imports pydantic and PyYAML, so only the loader's slow path and
``registry check`` import it; the CLI's fast path reads the compiled JSON cache instead.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import RegistryProblem
from .info import CHAT_FORMATS, KINDS, SCORING_STYLES, VARIANT_FORMATS, WEIGHT_FORMATS

SCHEMA_VERSION = 1
TOP_LEVEL_KEYS = ("schema_version", "defaults", "families", "shapes", "models")
# The short dims names registry files used before they took config.json's names: a file that
# still uses one is told the new name.
RENAMED_DIMS: dict[str, str] = {
    "hidden": "hidden_size",
    "intermediate": "intermediate_size",
    "layers": "num_hidden_layers",
    "heads": "num_attention_heads",
    "kv_heads": "num_key_value_heads",
    "vocab": "vocab_size",
    "max_positions": "max_position_embeddings",
    "tie_embeddings": "tie_word_embeddings",
}
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+\-]*$"
SLUG_PATTERN = r"^[a-z0-9][a-z0-9_.+\-]*$"

# --------------------------------------------------------------------------- pydantic models


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RopeScalingSpec(_Strict):
    type: Literal["dynamic", "linear"]
    factor: float | None = Field(default=None, gt=0)


class DimsSpec(_Strict):
    """Architecture dims under config.json's names; every field optional here, completeness is
    checked after presets merge."""

    preset: str | None = None
    hidden_size: int | None = Field(default=None, gt=0)
    intermediate_size: int | None = Field(default=None, gt=0)
    num_hidden_layers: int | None = Field(default=None, gt=0)
    num_attention_heads: int | None = Field(default=None, gt=0)
    num_key_value_heads: int | None = Field(default=None, gt=0)
    head_dim: int | None = Field(default=None, gt=0)
    vocab_size: int | None = Field(default=None, gt=0)
    max_position_embeddings: int | None = Field(default=None, gt=0)
    rope_theta: float | None = Field(default=None, gt=0)
    rope_scaling: RopeScalingSpec | None = None
    attention_bias: bool | None = None
    tie_word_embeddings: bool | None = None
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
    """How a reward model scores. ``scoring`` decides what its inputs are (see
    ``info.SCORING_STYLES``); it defaults to ``conversation``, InternLM2-Reward's style, so older
    overlays stay valid."""

    reward_token_id: int = Field(ge=0)
    scoring: Literal[SCORING_STYLES] = "conversation"  # type: ignore[valid-type]
    rewardbench: float | None = Field(default=None, ge=0, le=100)


class VariantSpec(_Strict):
    """A quantized release of an entry (same chat format and defaults): GGUF for llama.cpp and
    Ollama, AWQ or GPTQ for vLLM/LMDeploy. ``files`` maps a GGUF quantization level to its file
    in the repository; ``sizes_gb`` the file sizes seen on the hub; ``confirmed: false`` marks
    levels, files or sources not seen in a public listing (``note`` says what was)."""

    name: str = Field(pattern=NAME_PATTERN)
    format: Literal[VARIANT_FORMATS]  # type: ignore[valid-type]
    sources: dict[str, Any]
    bits: int | None = Field(default=None, gt=0, le=16)
    files: dict[str, str] = Field(default_factory=dict)
    sizes_gb: dict[str, float] = Field(default_factory=dict)
    confirmed: bool = True
    note: str | None = None


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
    variants: list[VariantSpec] = Field(default_factory=list)


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


# Dates stay text here; pydantic parses them so a bad date is a problem naming its entry.
_StrictLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", lambda loader, node: loader.construct_scalar(node)
)


def parse_yaml(data: bytes, location: str) -> tuple[Any, list[RegistryProblem]]:
    """The document in ``data`` and the problems found reading it (bad YAML, duplicate keys)."""
    loader = _StrictLoader(data)
    loader.duplicate_keys = []
    try:
        doc = loader.get_single_data()
    except (ValueError, TypeError) as exc:  # a constructor refused a value
        return None, [RegistryProblem(location, f"not valid YAML: {exc}")]
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


def pydantic_problems(
    exc: ValidationError, location: str, entry: str | None, prefix: tuple[str, ...] = ()
) -> list[RegistryProblem]:
    """One RegistryProblem per pydantic error, with the dotted field path."""
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (*prefix, *err["loc"]))
        kind = err["type"]
        if kind == "extra_forbidden":
            message = "unknown key"
            renamed = RENAMED_DIMS.get(str(err["loc"][-1])) if err["loc"] else None
            if renamed and ("dims" in loc.split(".") or loc.startswith("shapes.")):
                message += f"; dims use config.json's names: {renamed}"
        elif kind == "missing":
            message = "required field is missing"
        else:
            message = f"{err['msg']} (got {err.get('input')!r})"
        out.append(RegistryProblem(location, message, entry=entry, field=loc or None))
    return out
