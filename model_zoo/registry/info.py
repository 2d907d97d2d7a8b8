"""The typed, immutable objects the registry hands out: ModelInfo and its parts.

Plain frozen dataclasses built from already-validated data (see ``schema.py``): building them
needs no pydantic, so ``model-zoo list`` stays fast when the validated registry is cached.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any, Literal

from ..hubs.catalog import HUBS
from . import memory as _mem

KINDS: tuple[str, ...] = (
    "base",
    "chat",
    "chat-sft",
    "instruct",
    "chat-1m",
    "reward",
    "math-base",
    "math",
)
# Kinds that generate replies in a chat format (and so carry generation defaults).
CHAT_KINDS: frozenset[str] = frozenset({"chat", "chat-sft", "instruct", "chat-1m", "math"})
CHAT_FORMATS: tuple[str, ...] = ("chatml", "internlm-v1")
WEIGHT_FORMATS: tuple[str, ...] = ("safetensors", "bin", "bin+safetensors")
# What a reward model scores: a chat conversation (InternLM2-Reward), or a candidate output
# against a reference answer for the same prompt (POLAR). The loader picks its API from this.
SCORING_STYLES: tuple[str, ...] = ("conversation", "reference-based")
# Quantized releases an entry can have (``variants``): llama.cpp's GGUF, and AWQ / GPTQ checkpoints.
VARIANT_FORMATS: tuple[str, ...] = ("gguf", "awq", "gptq")


@dataclass(frozen=True)
class RopeScaling:
    """Rotary scaling as config.json declares it: ``linear``, or ``dynamic`` (InternLM's NTK).

    One type for the registry's record and the runner's ``ModelSpec``. ``factor`` is None only in
    the registry, where a checkpoint's factor was not recorded; a loaded config.json always has
    one (1.0 when it names none)."""

    type: Literal["dynamic", "linear"]
    factor: float | None


@dataclass(frozen=True)
class Dims:
    """Architecture numbers from config.json, under its names (as ``runner.config.ModelSpec``);
    ``confirmed`` is False where only derived copies were seen."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    rope_theta: float | None = None
    rope_scaling: RopeScaling | None = None
    attention_bias: bool = False
    tie_word_embeddings: bool = False
    confirmed: bool = True
    note: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Dims:
        rs = d.get("rope_scaling")
        return cls(**{**d, "rope_scaling": RopeScaling(**rs) if rs else None})


@dataclass(frozen=True)
class GenerationDefaults:
    """Recommended sampling settings for a chat model; None means "the runtime's default"."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    max_new_tokens: int | None = None
    max_new_tokens_thinking: int | None = None
    stop_token_ids: tuple[int, ...] = ()
    stop_strings: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GenerationDefaults:
        return cls(
            **{
                **d,
                "stop_token_ids": tuple(d.get("stop_token_ids") or ()),
                "stop_strings": tuple(d.get("stop_strings") or ()),
            }
        )


@dataclass(frozen=True)
class RewardInfo:
    reward_token_id: int  # appended to a conversation before scoring (config.json reward_token_id)
    rewardbench: float | None = None
    scoring: str = "conversation"  # one of SCORING_STYLES


@dataclass(frozen=True)
class VariantInfo:
    """A quantized release of a model (see ``schema.VariantSpec``); ``files``: GGUF level ->
    path."""

    name: str
    format: str  # one of VARIANT_FORMATS
    sources: Mapping[str, str] = field(hash=False)
    bits: int | None = None
    files: Mapping[str, str] = field(default_factory=dict, hash=False)
    sizes_gb: Mapping[str, float] = field(default_factory=dict, hash=False)
    confirmed: bool = True
    note: str | None = None

    @property
    def levels(self) -> tuple[str, ...]:
        return tuple(self.files)

    def file_for(self, level: str) -> str | None:
        """The file of a GGUF level (``fp16`` and ``f16`` are the same level)."""
        from ..ggufnames import same_level

        return next((path for lvl, path in self.files.items() if same_level(lvl, level)), None)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {
            **out,
            "sources": dict(self.sources),
            "files": dict(self.files),
            "sizes_gb": dict(self.sizes_gb),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VariantInfo:
        return cls(
            **{
                **d,
                "sources": MappingProxyType(dict(d["sources"])),
                "files": MappingProxyType(dict(d.get("files") or {})),
                "sizes_gb": MappingProxyType(dict(d.get("sizes_gb") or {})),
            }
        )


@dataclass(frozen=True)
class FamilyInfo:
    key: str
    title: str
    generation: float
    description: str | None = None


@dataclass(frozen=True)
class ModelInfo:
    """One registry entry, fully resolved (family defaults applied, dims expanded).

    ``revision`` is None unless the caller asked for ``name@revision``.
    """

    name: str
    slug: str
    aliases: tuple[str, ...]
    family: str
    family_title: str
    generation: float
    size: str
    params_b: float
    params_from: str  # "dims", "declared" or "size": how params_b was obtained
    kind: str
    released: date
    license: str
    architecture: str
    sources: Mapping[str, str] = field(hash=False)
    updated: date | None = None
    license_note: str | None = None
    context_length: int | None = None
    weight_format: str | None = None
    dims: Dims | None = None
    chat_format: str | None = None
    generation_defaults: GenerationDefaults | None = None
    reward: RewardInfo | None = None
    description: str | None = None
    origin: str | None = field(default=None, compare=False)  # registry file it came from
    revision: str | None = None
    variants: tuple[VariantInfo, ...] = ()  # quantized releases (GGUF, AWQ, GPTQ)
    variant_of: str | None = None  # for a variant's own ModelInfo: the parent entry's name
    variant: VariantInfo | None = None  # ... and the variant itself
    gguf_level: str | None = None  # the GGUF quantization level asked for (``name:q4_k_m``)

    # ------------------------------------------------------------------ derived views

    @property
    def spec(self) -> str:
        """``name[:level][@revision]``: what to pass back to ``get``."""
        text = f"{self.name}:{self.gguf_level}" if self.gguf_level else self.name
        return f"{text}@{self.revision}" if self.revision else text

    @property
    def quant_format(self) -> str | None:
        """``gguf``, ``awq`` or ``gptq`` for a variant, None for the original checkpoint."""
        return self.variant.format if self.variant else None

    def gguf_variant(self) -> VariantInfo | None:
        """This entry's GGUF release (itself when it is one)."""
        if self.variant is not None:
            return self.variant if self.variant.format == "gguf" else None
        return next((v for v in self.variants if v.format == "gguf"), None)

    def gguf_file(self) -> str | None:
        """The repository path of the GGUF file ``gguf_level`` names, for a GGUF variant."""
        if self.variant is None or self.variant.format != "gguf" or not self.gguf_level:
            return None
        return self.variant.file_for(self.gguf_level)

    @property
    def is_chat(self) -> bool:
        return self.kind in CHAT_KINDS

    @property
    def reward_token_id(self) -> int | None:
        return self.reward.reward_token_id if self.reward else None

    @property
    def scoring_style(self) -> str | None:
        """``conversation`` or ``reference-based`` for a reward model, else None."""
        return self.reward.scoring if self.reward else None

    def repo_id(self, source: str = "hf") -> str | None:
        return self.sources.get(source)

    def web_urls(self) -> dict[str, str]:
        """Each source's web page for this model, in source order."""
        return {key: HUBS[key].web_url.format(repo_id=repo) for key, repo in self.sources.items()}

    def memory_estimate(
        self, dtype: str = "bf16", context: int = _mem.DEFAULT_CONTEXT
    ) -> _mem.MemoryEstimate:
        """Weights, KV cache and runtime allowance (formula in ``model_zoo.registry.memory``)."""
        dims = dataclasses.asdict(self.dims) if self.dims else None
        return _mem.estimate(self.params_b, dims, dtype, context)

    def memory_gb(self, dtype: str = "bf16", context: int = _mem.DEFAULT_CONTEXT) -> float:
        """Estimated GiB to serve one sequence of ``context`` tokens."""
        return self.memory_estimate(dtype, context).total_gib

    def with_revision(self, revision: str | None) -> ModelInfo:
        return dataclasses.replace(self, revision=revision)

    def as_variant(self, variant: VariantInfo) -> ModelInfo:
        """The ModelInfo of one of this entry's variants: its name and sources, the parent's
        chat format, defaults, dims and licence."""
        return dataclasses.replace(
            self,
            name=variant.name,
            slug=variant.name.lower(),
            aliases=(),
            sources=variant.sources,
            weight_format="gguf" if variant.format == "gguf" else "safetensors",
            variants=(),
            variant_of=self.name,
            variant=variant,
            revision=None,
            gguf_level=None,
        )

    # ------------------------------------------------------------------ (de)serialisation

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (dates as ISO strings)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, date):
                value = value.isoformat()
            elif isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, VariantInfo):
                value = value.to_dict()
            elif dataclasses.is_dataclass(value) and not isinstance(value, type):
                value = dataclasses.asdict(value)
            elif isinstance(value, tuple):
                value = [v.to_dict() if isinstance(v, VariantInfo) else v for v in value]
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelInfo:
        """Inverse of ``to_dict`` (also reads the validated-registry cache)."""
        data = dict(d)
        data["aliases"] = tuple(data.get("aliases") or ())
        data["sources"] = MappingProxyType(dict(data["sources"]))
        data["released"] = date.fromisoformat(data["released"])
        if data.get("updated"):
            data["updated"] = date.fromisoformat(data["updated"])
        if data.get("dims"):
            data["dims"] = Dims.from_dict(data["dims"])
        if data.get("generation_defaults"):
            data["generation_defaults"] = GenerationDefaults.from_dict(data["generation_defaults"])
        if data.get("reward"):
            data["reward"] = RewardInfo(**data["reward"])
        data["variants"] = tuple(VariantInfo.from_dict(v) for v in data.get("variants") or ())
        if data.get("variant"):
            data["variant"] = VariantInfo.from_dict(data["variant"])
        return cls(**data)
