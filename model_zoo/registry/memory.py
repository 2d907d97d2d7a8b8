"""Parameter counts and GPU memory estimates, from architecture dims alone (no weights needed).

Memory formula (all sizes in GiB, 2**30 bytes; a GPU sold as "24GB" has 24 GiB, so ask for
``24GiB``)::

    total   = weights + kv_cache + runtime
    weights = params * bytes_per_param(dtype)
    kv_cache = 2 (K and V) * layers * kv_heads * head_dim * 2 bytes * context   (16-bit cache)
    runtime = 1.0 GiB  (CUDA context, allocator slack and activations for one sequence)

``bytes_per_param``: fp32 4; bf16 / fp16 2; int8 1 (per-channel scales are negligible);
int4 0.5 + 0.03125 (a 16-bit scale and zero point per group of 128 weights).
``context`` defaults to 4096 tokens, batch size 1. When a model's dims are unknown the KV cache
allowance is 1 GiB per 4096 tokens of context.

``params`` is computed from the dims when they are known::

    embeddings  vocab * hidden
    per layer   attention  hidden * head_dim * (heads + 2 * kv_heads)      (q, k, v)
                           + heads * head_dim * hidden                      (o)
                           + head_dim * (heads + 2 * kv_heads) + hidden     (biases, when present)
                mlp        3 * hidden * intermediate                        (gate, up, down)
                norms      2 * hidden
    final norm  hidden
    output      vocab * hidden (untied), or hidden for a reward model's value head

else from the entry's declared ``params_b``, else from its size label ("7B" = 7e9, "8x22B" = 176e9).
The runner sizes each module from the same counts (``param_counts``) when it spreads a model over
several GPUs, so the two never disagree about how big a model is.
Dims are named as in config.json; the formulas abbreviate them: hidden = ``hidden_size``,
layers = ``num_hidden_layers``, heads = ``num_attention_heads``, kv_heads =
``num_key_value_heads``, intermediate = ``intermediate_size``, vocab = ``vocab_size``.
This is an estimate for choosing a GPU, not a promise: quantisation libraries keep some layers
in 16-bit, and long prompts need more activation memory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError

GIB = float(1 << 30)
DEFAULT_CONTEXT = 4096
RUNTIME_GIB = 1.0
UNKNOWN_KV_GIB_PER_4K = 1.0
INT4_GROUP = 128

BYTES_PER_PARAM: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "int8": 1.0,
    "int4": 0.5 + 4.0 / INT4_GROUP,  # 2-byte scale + 2-byte zero per group
}
# The dtypes shown by `model-zoo info` (fp16 costs the same as bf16).
SHOWN_DTYPES: tuple[str, ...] = ("bf16", "int8", "int4")

_DTYPE_ALIASES: dict[str, str] = {
    "float32": "fp32",
    "f32": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "f16": "fp16",
    "8bit": "int8",
    "8-bit": "int8",
    "q8": "int8",
    "4bit": "int4",
    "4-bit": "int4",
    "q4": "int4",
}


def normalize_dtype(dtype: str) -> str:
    """Canonical dtype key (bf16, fp16, fp32, int8, int4); UsageError for anything else."""
    key = dtype.strip().lower()
    key = _DTYPE_ALIASES.get(key, key)
    if key not in BYTES_PER_PARAM:
        raise UsageError(
            f"unknown dtype {dtype!r}; use one of: {', '.join(BYTES_PER_PARAM)}", dtype=dtype
        )
    return key


_SIZE_RE = re.compile(r"^(?:(\d+)x)?(\d+(?:\.\d+)?)([MB])$", re.IGNORECASE)


def params_from_size(size: str) -> float:
    """Billions of parameters a size label names: "7B" -> 7.0, "500M" -> 0.5, "8x22B" -> 176.0."""
    m = _SIZE_RE.match(size.strip())
    if not m:
        raise ValueError(f"size {size!r} is not like 7B, 1.8B, 500M or 8x22B")
    count = int(m.group(1) or 1)
    value = float(m.group(2)) * count
    return value / 1000.0 if m.group(3).upper() == "M" else value


@dataclass(frozen=True)
class ParamCounts:
    """Parameters by where they sit in the model: the registry sums them, and the runner sizes
    each module from them when it spreads a model over several GPUs."""

    embeddings: int
    per_layer: int
    num_hidden_layers: int
    head: int  # final norm + output (lm_head, none when tied, or a reward model's value head)

    @property
    def total(self) -> int:
        return self.embeddings + self.num_hidden_layers * self.per_layer + self.head


def param_counts(dims: Mapping[str, Any], *, value_head: bool = False) -> ParamCounts:
    """Parameters of a dense decoder with these dims, by part (see the module docstring)."""
    hidden, vocab = dims["hidden_size"], dims["vocab_size"]
    heads, kv_heads = dims["num_attention_heads"], dims["num_key_value_heads"]
    head_dim = dims.get("head_dim") or hidden // heads
    qkv_rows = head_dim * (heads + 2 * kv_heads)
    attention = hidden * qkv_rows + heads * head_dim * hidden
    if dims.get("attention_bias"):
        attention += qkv_rows + hidden
    layer = attention + 3 * hidden * dims["intermediate_size"] + 2 * hidden
    if value_head:
        output = hidden
    elif dims.get("tie_word_embeddings"):
        output = 0
    else:
        output = vocab * hidden
    return ParamCounts(vocab * hidden, layer, dims["num_hidden_layers"], hidden + output)


def param_count(dims: Mapping[str, Any], *, value_head: bool = False) -> int:
    """Exact parameter count of a dense decoder with these dims (see the module docstring)."""
    return param_counts(dims, value_head=value_head).total


def kv_cache_gib(dims: Mapping[str, Any] | None, context: int) -> float:
    """16-bit KV cache for one sequence of ``context`` tokens."""
    if context < 0:
        raise UsageError(f"context must be >= 0, got {context}", context=context)
    if not dims:
        return UNKNOWN_KV_GIB_PER_4K * context / 4096
    head_dim = dims.get("head_dim") or dims["hidden_size"] // dims["num_attention_heads"]
    per_token = 2 * dims["num_hidden_layers"] * dims["num_key_value_heads"] * head_dim * 2
    return per_token * context / GIB


@dataclass(frozen=True)
class MemoryEstimate:
    """GiB needed to run one sequence: the parts and their sum."""

    dtype: str
    context: int
    weights_gib: float
    kv_cache_gib: float
    runtime_gib: float

    @property
    def total_gib(self) -> float:
        return self.weights_gib + self.kv_cache_gib + self.runtime_gib

    def to_dict(self) -> dict[str, Any]:
        return {
            "dtype": self.dtype,
            "context": self.context,
            "weights_gib": round(self.weights_gib, 2),
            "kv_cache_gib": round(self.kv_cache_gib, 2),
            "runtime_gib": self.runtime_gib,
            "total_gib": round(self.total_gib, 2),
        }


def estimate(
    params_b: float,
    dims: Mapping[str, Any] | None,
    dtype: str = "bf16",
    context: int = DEFAULT_CONTEXT,
) -> MemoryEstimate:
    """Memory to serve one sequence of ``context`` tokens with weights stored as ``dtype``."""
    key = normalize_dtype(dtype)
    weights = params_b * 1e9 * BYTES_PER_PARAM[key] / GIB
    return MemoryEstimate(key, context, weights, kv_cache_gib(dims, context), RUNTIME_GIB)


def parse_memory(text: str | float) -> float:
    """GiB from "24GB" (24 x 10^9 bytes = 22.4 GiB), "24GiB", "12000MB"; a number is GB (10^9
    bytes), as the ``max_memory_gb`` keyword says. Text needs a unit (``units.parse_size``)."""
    from ..units import parse_size

    if isinstance(text, bool) or not isinstance(text, (int, float, str)):
        raise UsageError(f"memory size must be a number of GB or text like 24GiB, got {text!r}")
    if isinstance(text, str):
        return parse_size(text, what="memory size") / 2**30
    if not text > 0:
        raise UsageError(f"memory size must be positive, got {text!r}", memory=str(text))
    return float(text) * 1e9 / 2**30
