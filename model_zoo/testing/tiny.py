"""Tiny InternLM checkpoints with the real layout, for tests and users' CI.

``make_tiny(arch, out_dir)`` writes a HuggingFace-format directory shaped like a published
InternLM checkpoint: ``config.json`` with the real field names, architecture class and
``auto_map`` (no Python files are shipped), weights under the real state-dict names (InternLM2's
packed ``wqkv`` in its grouped layout) as sharded safetensors with an index,
``generation_config.json``, and a real SentencePiece tokenizer trained at build time. Dimensions
are scaled down (2 layers, hidden 64, GQA, ``max_position_embeddings`` 64) so that a test can run
past the rope scaling threshold in milliseconds. The same seed gives byte-identical files.

Architectures: ``internlm2`` (InternLM2, 2.5 and Math), ``internlm2-reward``, ``polar`` (POLAR:
the reward architecture with POLAR-7B's rope settings and a tokenizer whose ``<|reward|>``
separator renames the reserved piece ``[UNUSED_TOKEN_0]``, as POLAR's does), ``internlm3`` and
``internlm`` (v1, attention biases).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from .tiny_tokenizer import TINY_VOCAB_SIZE, dump_json, special_token_ids, tokenizer_files
from .tiny_weights import DTYPES, TensorPlan, pack_wqkv, unpack_wqkv, write_atomic, write_weights

__all__ = [
    "ARCHS",
    "TINY_VOCAB_SIZE",
    "TinyDims",
    "default_dims",
    "make_tiny",
    "pack_wqkv",
    "special_token_ids",
    "tensor_shapes",
    "tiny_config",
    "unpack_wqkv",
]

ARCHS: tuple[str, ...] = ("internlm2", "internlm2-reward", "polar", "internlm3", "internlm")
# Architectures with a value head (InternLM2ForRewardModel) instead of the output projection.
REWARD_ARCHS: tuple[str, ...] = ("internlm2-reward", "polar")
_INTERNLM2_ARCHS: tuple[str, ...] = ("internlm2", *REWARD_ARCHS)


@dataclass(frozen=True)
class TinyDims:
    """Model dimensions. ``head_dim`` None means ``hidden_size // num_attention_heads``; only
    InternLM3 writes an explicit ``head_dim`` (and may differ from that quotient)."""

    hidden_size: int = 64
    intermediate_size: int = 96
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int | None = None
    max_position_embeddings: int = 64
    vocab_size: int = TINY_VOCAB_SIZE

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads


def default_dims(arch: str) -> TinyDims:
    """The tiny dimensions of ``arch``: GQA 4 heads / 2 kv heads, except v1, which has no GQA."""
    _check_arch(arch)
    if arch == "internlm3":
        return TinyDims(head_dim=32)  # explicit, and != hidden / heads, as a check for loaders
    if arch == "internlm":
        return TinyDims(num_key_value_heads=4)
    if arch == "polar":  # room for prompt twice, reference and output without rope scaling
        return TinyDims(max_position_embeddings=512)
    return TinyDims()


# Fields that decide tensor shapes: set them through ``dims``, not ``config_overrides``.
_SHAPE_FIELDS = frozenset(
    {
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "vocab_size",
        "bias",
        "qkv_bias",
        "tie_word_embeddings",
    }
)


def tiny_config(
    arch: str, dims: TinyDims | None = None, *, dtype: str = "bfloat16"
) -> dict[str, Any]:
    """The ``config.json`` of a tiny ``arch`` checkpoint, with the published field names."""
    dims = _checked_dims(arch, dims)
    common: dict[str, Any] = {
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": dims.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": dims.intermediate_size,
        "max_position_embeddings": dims.max_position_embeddings,
        "num_attention_heads": dims.num_attention_heads,
        "num_hidden_layers": dims.num_hidden_layers,
        "tie_word_embeddings": False,
        "torch_dtype": dtype,
        "use_cache": True,
        "vocab_size": dims.vocab_size,
    }
    if arch in _INTERNLM2_ARCHS:
        reward = arch in REWARD_ARCHS
        model_class = "InternLM2ForRewardModel" if reward else "InternLM2ForCausalLM"
        auto_map = {
            "AutoConfig": "configuration_internlm2.InternLM2Config",
            "AutoModel": f"modeling_internlm2.{model_class}",
        }
        if not reward:
            auto_map["AutoModelForCausalLM"] = f"modeling_internlm2.{model_class}"
        config = {
            **common,
            "architectures": [model_class],
            "attn_implementation": "eager",
            "auto_map": auto_map,
            "bias": False,
            "model_type": "internlm2",
            "num_key_value_heads": dims.num_key_value_heads,
            "pad_token_id": 2,
            "pretraining_tp": 1,
            "rms_norm_eps": 1e-05,
            "rope_scaling": None
            if arch == "internlm2-reward"
            else {"factor": 2.0, "type": "dynamic"},
            "rope_theta": 50000000 if arch == "polar" else 1000000,
            "transformers_version": "4.41.0",
        }
        if reward:
            config["reward_token_id"] = special_token_ids(arch)["[UNUSED_TOKEN_130]"]
        return config
    if arch == "internlm3":
        return {
            **common,
            "architectures": ["InternLM3ForCausalLM"],
            "attention_dropout": 0.0,
            "auto_map": {
                "AutoConfig": "configuration_internlm3.InternLM3Config",
                "AutoModel": "modeling_internlm3.InternLM3Model",
                "AutoModelForCausalLM": "modeling_internlm3.InternLM3ForCausalLM",
            },
            "bias": False,
            "head_dim": dims.resolved_head_dim,
            "model_type": "internlm3",
            "num_key_value_heads": dims.num_key_value_heads,
            "pad_token_id": 2,
            "qkv_bias": False,
            "rms_norm_eps": 1e-05,
            "rope_scaling": {"factor": 6.0, "rope_type": "dynamic"},
            "rope_theta": 50000000,
            "transformers_version": "4.47.1",
        }
    # InternLM v1: no num_key_value_heads (multi-head attention), rope in "rotary".
    return {
        **common,
        "architectures": ["InternLMForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_internlm.InternLMConfig",
            "AutoModel": "modeling_internlm.InternLMForCausalLM",
            "AutoModelForCausalLM": "modeling_internlm.InternLMForCausalLM",
        },
        "bias": True,
        "model_type": "internlm",
        "pad_token_id": 0,
        "rms_norm_eps": 1e-06,
        "rotary": {"base": 10000, "type": "dynamic"},
        "transformers_version": "4.33.2",
    }


def generation_config(arch: str) -> dict[str, Any]:
    """``generation_config.json``: chat models stop on ``</s>`` or their end-of-turn token."""
    ids = special_token_ids(arch)
    version = tiny_config(arch)["transformers_version"]
    if arch == "internlm":
        return {
            "bos_token_id": 1,
            "eos_token_id": [2, ids["<eoa>"]],
            "pad_token_id": 0,
            "transformers_version": version,
        }
    eos: int | list[int] = 2 if arch in REWARD_ARCHS else [2, ids["<|im_end|>"]]
    return {
        "bos_token_id": 1,
        "eos_token_id": eos,
        "pad_token_id": 2,
        "transformers_version": version,
    }


def tensor_plans(arch: str, dims: TinyDims | None = None) -> list[TensorPlan]:
    """Every tensor of the checkpoint, in state-dict order, with its real name and shape."""
    dims = _checked_dims(arch, dims)
    h, inter, vocab = dims.hidden_size, dims.intermediate_size, dims.vocab_size
    d = dims.resolved_head_dim
    q_rows, kv_rows = dims.num_attention_heads * d, dims.num_key_value_heads * d
    plans: list[TensorPlan] = []
    if arch in _INTERNLM2_ARCHS:
        plans.append(TensorPlan("model.tok_embeddings.weight", (vocab, h), "embedding"))
        for i in range(dims.num_hidden_layers):
            p = f"model.layers.{i}."
            plans += [
                TensorPlan(p + "attention.wqkv.weight", (q_rows + 2 * kv_rows, h), "linear"),
                TensorPlan(p + "attention.wo.weight", (h, q_rows), "linear"),
                TensorPlan(p + "feed_forward.w1.weight", (inter, h), "linear"),
                TensorPlan(p + "feed_forward.w3.weight", (inter, h), "linear"),
                TensorPlan(p + "feed_forward.w2.weight", (h, inter), "linear"),
                TensorPlan(p + "attention_norm.weight", (h,), "norm"),
                TensorPlan(p + "ffn_norm.weight", (h,), "norm"),
            ]
        plans.append(TensorPlan("model.norm.weight", (h,), "norm"))
        if arch in REWARD_ARCHS:
            plans.append(TensorPlan("v_head.weight", (1, h), "linear"))
        else:
            plans.append(TensorPlan("output.weight", (vocab, h), "linear"))
        return plans
    bias = arch == "internlm"
    plans.append(TensorPlan("model.embed_tokens.weight", (vocab, h), "embedding"))
    for i in range(dims.num_hidden_layers):
        p = f"model.layers.{i}."
        for proj, rows, cols in (
            ("q_proj", q_rows, h),
            ("k_proj", kv_rows, h),
            ("v_proj", kv_rows, h),
            ("o_proj", h, q_rows),
        ):
            plans.append(TensorPlan(f"{p}self_attn.{proj}.weight", (rows, cols), "linear"))
            if bias:
                plans.append(TensorPlan(f"{p}self_attn.{proj}.bias", (rows,), "bias"))
        plans += [
            TensorPlan(p + "mlp.gate_proj.weight", (inter, h), "linear"),
            TensorPlan(p + "mlp.up_proj.weight", (inter, h), "linear"),
            TensorPlan(p + "mlp.down_proj.weight", (h, inter), "linear"),
            TensorPlan(p + "input_layernorm.weight", (h,), "norm"),
            TensorPlan(p + "post_attention_layernorm.weight", (h,), "norm"),
        ]
    plans += [
        TensorPlan("model.norm.weight", (h,), "norm"),
        TensorPlan("lm_head.weight", (vocab, h), "linear"),
    ]
    return plans


def tensor_shapes(arch: str, dims: TinyDims | None = None) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor a tiny ``arch`` checkpoint holds (and nothing else)."""
    return {p.name: p.shape for p in tensor_plans(arch, dims)}


def make_tiny(
    arch: str,
    out_dir: str | Path,
    *,
    seed: int = 0,
    shards: int = 2,
    dtype: str = "bfloat16",
    dims: TinyDims | None = None,
    config_overrides: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a tiny ``arch`` checkpoint into ``out_dir`` (created if missing) and return it.

    ``shards`` > 1 writes ``model-0000k-of-0000n.safetensors`` and ``model.safetensors.index.json``;
    1 writes ``model.safetensors``. ``dtype`` is the stored dtype (``bfloat16`` like the published
    checkpoints, ``float16`` or ``float32``). ``config_overrides`` replaces top-level config.json
    fields to mimic variants seen on the hubs (``{"model_type": "internlm"}``, ``{"rope_scaling":
    {"rope_type": "linear", "factor": 2.0}}``; a None value deletes the field); fields that decide
    tensor shapes must go through ``dims``. A non-empty ``out_dir`` is refused unless
    ``overwrite``, which also removes weight files an earlier build left behind.
    """
    _check_arch(arch)
    dims = _checked_dims(arch, dims)
    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}; use one of: {', '.join(DTYPES)}.", dtype=dtype)
    plans = tensor_plans(arch, dims)
    if not 1 <= shards <= len(plans):
        raise UsageError(
            f"shards must be between 1 and {len(plans)} for this model, got {shards}.",
            shards=shards,
        )
    config = tiny_config(arch, dims, dtype=dtype)
    for key, value in (config_overrides or {}).items():
        if key in _SHAPE_FIELDS:
            raise UsageError(
                f"config field {key!r} decides tensor shapes; set it through dims.", field=key
            )
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value

    out = Path(out_dir)
    _prepare_dir(out, overwrite)
    files = {
        "config.json": dump_json(config),
        "generation_config.json": dump_json(generation_config(arch)),
        **tokenizer_files(arch),
    }
    for name, data in files.items():
        write_atomic(out / name, [data])
    write_weights(out, plans, seed=seed, shards=shards, dtype=dtype)
    return out


def _prepare_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise UsageError(
                f"{out} is not empty; choose an empty directory or pass overwrite "
                "(--force on the command line).",
                path=str(out),
            )
        for stale in [*out.glob("model*.safetensors"), out / "model.safetensors.index.json"]:
            stale.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise UsageError(
            f"unknown tiny architecture {arch!r}; use one of: {', '.join(ARCHS)}.", arch=arch
        )


def _checked_dims(arch: str, dims: TinyDims | None) -> TinyDims:
    dims = dims or default_dims(arch)
    problems = []
    if dims.num_attention_heads % dims.num_key_value_heads:
        problems.append("num_attention_heads must be a multiple of num_key_value_heads")
    if dims.resolved_head_dim % 2:
        problems.append("head_dim must be even (rotary embedding)")
    quotient = dims.hidden_size // dims.num_attention_heads
    if arch != "internlm3" and dims.head_dim not in (None, quotient):
        problems.append(f"{arch} has no head_dim field: head_dim must be hidden_size / heads")
    if arch != "internlm3" and dims.hidden_size % dims.num_attention_heads:
        problems.append("hidden_size must be a multiple of num_attention_heads")
    if arch == "internlm" and dims.num_key_value_heads != dims.num_attention_heads:
        problems.append("InternLM v1 has no grouped-query attention: kv heads must equal heads")
    if dims.vocab_size < TINY_VOCAB_SIZE:
        problems.append(f"vocab_size must be at least the tokenizer's {TINY_VOCAB_SIZE} pieces")
    if problems:
        raise UsageError(
            f"invalid tiny dims for {arch}: " + "; ".join(problems) + ".",
            dims=dataclasses.asdict(dims),
        )
    return dims
