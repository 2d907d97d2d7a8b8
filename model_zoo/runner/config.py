"""Read a checkpoint's config.json into one typed description of the architecture.

The InternLM families write their configs in slightly different dialects (``bias`` vs
``qkv_bias``, ``rope_scaling`` with ``type`` or ``rope_type``, v1's ``rotary`` block,
``model_type: internlm`` on early InternLM2 uploads). ``ModelSpec`` is the one shape the
rest of the runner reads, so those differences live here only. Pure: no torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from ..errors import IncompatibleCheckpointError
from ..registry.info import RopeScaling
from ..registry.memory import ParamCounts, param_counts

Family = Literal["internlm2", "internlm3", "internlm"]
Head = Literal["lm", "reward"]

# architectures[0] -> (family, head)
ARCHITECTURES: dict[str, tuple[Family, Head]] = {
    "InternLM2ForCausalLM": ("internlm2", "lm"),
    "InternLM2ForRewardModel": ("internlm2", "reward"),
    "InternLM3ForCausalLM": ("internlm3", "lm"),
    "InternLMForCausalLM": ("internlm", "lm"),
}

# model_type -> architecture, used only when config.json names no architecture
_MODEL_TYPES: dict[str, str] = {
    "internlm2": "InternLM2ForCausalLM",
    "internlm3": "InternLM3ForCausalLM",
    "internlm": "InternLMForCausalLM",
}


@dataclass(frozen=True)
class ModelSpec:
    """What the loader needs to know about a checkpoint's architecture."""

    architecture: str
    family: Family
    head: Head
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    max_position_embeddings: int
    rope_theta: float
    rope_scaling: RopeScaling | None
    rms_norm_eps: float
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    tie_word_embeddings: bool
    bos_token_id: int | None
    eos_token_id: int | list[int] | None
    pad_token_id: int | None
    reward_token_id: int | None = None
    hidden_act: str = "silu"
    torch_dtype: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def groups(self) -> int:
        """Query heads per key/value head (GQA group size)."""
        return self.num_attention_heads // self.num_key_value_heads

    @property
    def is_reward(self) -> bool:
        return self.head == "reward"

    def param_counts(self) -> ParamCounts:
        """Parameters by part, by the registry's formula (``registry.memory``), so the runner's
        placement across GPUs and the registry's memory estimate count the same model."""
        dims = {
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "vocab_size": self.vocab_size,
            "attention_bias": self.qkv_bias or self.o_bias,
            "tie_word_embeddings": self.tie_word_embeddings,
        }
        return param_counts(dims, value_head=self.is_reward)


def read_config(path: Path) -> ModelSpec:
    """Parse ``path/config.json``. Raises IncompatibleCheckpointError naming what is wrong."""
    cfg_file = Path(path) / "config.json"
    if not cfg_file.is_file():
        raise IncompatibleCheckpointError(
            str(path), "no config.json", hint="Point model-zoo at a HuggingFace-format checkpoint."
        )
    try:
        raw = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IncompatibleCheckpointError(
            str(cfg_file), f"config.json cannot be read ({exc})"
        ) from None
    if not isinstance(raw, dict):
        raise IncompatibleCheckpointError(str(cfg_file), "config.json is not a JSON object")
    return spec_from_dict(raw, where=str(path))


def _architecture(raw: dict[str, Any], where: str) -> str:
    archs = raw.get("architectures") or []
    if isinstance(archs, list) and archs:
        arch = str(archs[0])
    else:
        arch = _MODEL_TYPES.get(str(raw.get("model_type", "")), "")
    if arch not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise IncompatibleCheckpointError(
            where,
            f"architecture {arch or raw.get('model_type')!r} is not an InternLM architecture "
            f"model-zoo loads natively",
            hint=f"Supported: {known}.",
        )
    return arch


def _rope(raw: dict[str, Any], family: Family) -> tuple[float, RopeScaling | None]:
    theta = float(raw.get("rope_theta", 10000.0))
    scaling = raw.get("rope_scaling")
    params = raw.get("rope_parameters")  # configs re-saved by transformers 5
    if isinstance(params, dict):
        theta = float(params.get("rope_theta", theta))
        if scaling is None and params.get("rope_type", "default") not in (None, "default"):
            scaling = params
    rotary = raw.get(
        "rotary"
    )  # InternLM v1: {"base": 10000, "type": "dynamic", "scaling_factor": 1.0}
    if family == "internlm" and isinstance(rotary, dict):
        theta = float(rotary.get("base", theta))
        if rotary.get("type", "origin") == "dynamic" and scaling is None:
            scaling = {"type": "dynamic", "factor": float(rotary.get("scaling_factor", 1.0))}
    if not scaling:
        return theta, None
    if not isinstance(scaling, dict):
        raise TypeError(f"rope_scaling must be an object, got {scaling!r}")
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind in (None, "default"):
        return theta, None
    if kind not in ("linear", "dynamic"):
        raise ValueError(f"rope scaling type {kind!r} is not one InternLM uses (linear, dynamic)")
    factor = float(scaling.get("factor", 1.0))
    if factor < 1.0:
        raise ValueError(f"rope scaling factor must be >= 1, got {factor}")
    return theta, RopeScaling(type=cast(Literal["linear", "dynamic"], kind), factor=factor)


def spec_from_dict(raw: dict[str, Any], *, where: str = "config.json") -> ModelSpec:
    """Build a ModelSpec from a parsed config.json (exposed for tests and tools)."""
    arch = _architecture(raw, where)
    family, head = ARCHITECTURES[arch]
    try:
        hidden = int(raw["hidden_size"])
        heads = int(raw["num_attention_heads"])
        kv_heads = int(raw.get("num_key_value_heads") or heads)
        head_dim = int(raw.get("head_dim") or hidden // heads)
        theta, scaling = _rope(raw, family)
        if family == "internlm3":
            qkv_bias = bool(raw.get("qkv_bias", False))
            o_bias = mlp_bias = bool(raw.get("bias", False))
        else:
            # InternLM2 and v1: ``bias`` switches every attention projection's bias (v1 7B: true).
            qkv_bias = o_bias = bool(raw.get("bias", False))
            mlp_bias = False
        spec = ModelSpec(
            architecture=arch,
            family=family,
            head=head,
            hidden_size=hidden,
            intermediate_size=int(raw["intermediate_size"]),
            num_hidden_layers=int(raw["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            head_dim=head_dim,
            vocab_size=int(raw["vocab_size"]),
            max_position_embeddings=int(raw.get("max_position_embeddings", 2048)),
            rope_theta=theta,
            rope_scaling=scaling,
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)),
            qkv_bias=qkv_bias,
            o_bias=o_bias,
            mlp_bias=mlp_bias,
            tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
            bos_token_id=raw.get("bos_token_id"),
            eos_token_id=raw.get("eos_token_id"),
            pad_token_id=raw.get("pad_token_id"),
            reward_token_id=raw.get("reward_token_id"),
            hidden_act=str(raw.get("hidden_act", "silu")),
            torch_dtype=raw.get("torch_dtype") or raw.get("dtype"),
            raw=raw,
        )
    except KeyError as exc:
        raise IncompatibleCheckpointError(
            where, f"config.json lacks the field {exc.args[0]!r}"
        ) from None
    except ZeroDivisionError:
        raise IncompatibleCheckpointError(where, "config.json has num_attention_heads 0") from None
    except (TypeError, ValueError) as exc:
        raise IncompatibleCheckpointError(
            where, f"config.json has an unusable value ({exc})"
        ) from None
    sizes = {
        "hidden_size": hidden,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "vocab_size": spec.vocab_size,
        "max_position_embeddings": spec.max_position_embeddings,
    }
    bad = [f"{k} {v}" for k, v in sizes.items() if v <= 0]
    if spec.rope_theta <= 0 or spec.rms_norm_eps < 0:
        bad.append(f"rope_theta {spec.rope_theta} / rms_norm_eps {spec.rms_norm_eps}")
    if bad:
        raise IncompatibleCheckpointError(
            where,
            f"config.json has impossible values ({', '.join(bad)}); sizes must be positive",
            hint="Restore config.json from the model's repository (pull the model again).",
        )
    if heads % kv_heads:
        raise IncompatibleCheckpointError(
            where,
            f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}",
        )
    if spec.hidden_act != "silu":
        raise IncompatibleCheckpointError(where, f"hidden_act {spec.hidden_act!r} is not silu")
    return spec
