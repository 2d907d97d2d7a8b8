"""Sizes and memory of a model's quantized variants, for ``model-zoo info``.

A GGUF file is the weights as llama.cpp loads them, so its size is the weights' memory: the
size seen on the hub (``sizes_gb``) when the registry has it, else the parameter count times
the level's nominal bits per weight (llama.cpp's ``llama-quantize`` list; mixed k-quant
levels keep some tensors at higher precision, hence e.g. 4.85 for Q4_K_M). AWQ and GPTQ use
the int4 estimate of ``memory``. KV cache (16-bit) and runtime are added as for the original.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import memory
from .info import ModelInfo, VariantInfo

# Nominal bits per weight of llama.cpp's file types (approximate: the mix varies by model).
GGUF_BITS: dict[str, float] = {
    "f32": 32.0,
    "f16": 16.0,
    "bf16": 16.0,
    "q8_0": 8.5,
    "q6_k": 6.56,
    "q5_k_m": 5.69,
    "q5_k_s": 5.54,
    "q5_1": 6.0,
    "q5_0": 5.5,
    "q4_k_m": 4.85,
    "q4_k_s": 4.58,
    "q4_1": 5.0,
    "q4_0": 4.5,
    "q3_k_l": 4.27,
    "q3_k_m": 3.91,
    "q3_k_s": 3.5,
    "q2_k": 3.35,
}


@dataclass(frozen=True)
class VariantRow:
    """One downloadable form of a model: a GGUF level's file, or an AWQ/GPTQ checkpoint."""

    variant: str
    format: str
    level: str | None
    file: str | None
    size_gb: float | None  # seen on the hub
    weights_gib: float
    weights_from: str  # "file size", "bits per weight" or "int4"
    memory_gib: float
    confirmed: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _gguf_weights(m: ModelInfo, level: str, size_gb: float | None) -> tuple[float, str]:
    from ..ggufnames import canonical

    if size_gb is not None:
        return size_gb * 1e9 / memory.GIB, "file size"
    bits = GGUF_BITS.get(canonical(level), 16.0)
    return m.params_b * 1e9 * bits / 8 / memory.GIB, "bits per weight"


def variant_rows(m: ModelInfo, context: int = memory.DEFAULT_CONTEXT) -> list[VariantRow]:
    """Every variant of ``m`` (of its parent when ``m`` is itself a variant: just that one)."""
    variants: tuple[VariantInfo, ...] = (m.variant,) if m.variant is not None else m.variants
    parent = m.memory_estimate("bf16", context)  # only its KV cache and runtime are used
    extra = parent.kv_cache_gib + parent.runtime_gib
    rows: list[VariantRow] = []
    for v in variants:
        if v.format == "gguf":
            for level, path in v.files.items():
                size = v.sizes_gb.get(level)
                weights, how = _gguf_weights(m, level, size)
                rows.append(
                    VariantRow(
                        v.name,
                        v.format,
                        level,
                        path,
                        size,
                        weights,
                        how,
                        weights + extra,
                        v.confirmed,
                    )
                )
        else:
            est = m.memory_estimate("int4", context)
            rows.append(
                VariantRow(
                    v.name,
                    v.format,
                    None,
                    None,
                    None,
                    est.weights_gib,
                    "int4",
                    est.total_gib,
                    v.confirmed,
                )
            )
    return rows
