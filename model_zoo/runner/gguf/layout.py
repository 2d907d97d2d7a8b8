"""llama.cpp's tensor layout for InternLM, and how to undo it.

The converter (``convert_hf_to_gguf.py``: ``InternLM2Model`` and ``InternLM3Model``) writes
every InternLM checkpoint with llama.cpp's tensor names and separate q, k and v:

- InternLM2's packed ``wqkv`` is cut per key/value group (G query heads, a key head, a value
  head; see ``runner.convert``) into ``attn_q``, ``attn_k`` and ``attn_v``;
- the rows of q and k (weights and biases) are permuted from the half-split ("rotate_half")
  rotary layout of HuggingFace checkpoints to the interleaved one ggml's RoPE expects: within
  each head, the rows ``[0, d/2)`` and ``[d/2, d)`` are interleaved. For q the head count is
  ``attention.head_count``, for k ``head_count_kv``.

``native_plan`` maps each GGUF tensor name to the Llama module parameter it fills, with its
shape and the head count to un-permute with; ``unpermute`` is the inverse of the converter's
permutation. Pure (numpy only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import ModelSpec

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Target:
    """Where one GGUF tensor goes: the native parameter, its shape, and the heads to un-permute."""

    param: str
    shape: Shape
    unpermute_heads: int | None = None


_LAYER = {  # GGUF suffix -> (native suffix, kind)
    "attn_norm.weight": ("input_layernorm.weight", "norm"),
    "ffn_norm.weight": ("post_attention_layernorm.weight", "norm"),
    "attn_q.weight": ("self_attn.q_proj.weight", "q"),
    "attn_k.weight": ("self_attn.k_proj.weight", "k"),
    "attn_v.weight": ("self_attn.v_proj.weight", "v"),
    "attn_output.weight": ("self_attn.o_proj.weight", "o"),
    "ffn_gate.weight": ("mlp.gate_proj.weight", "gate"),
    "ffn_up.weight": ("mlp.up_proj.weight", "up"),
    "ffn_down.weight": ("mlp.down_proj.weight", "down"),
}


def native_plan(spec: ModelSpec) -> dict[str, Target]:
    """Every tensor an InternLM GGUF of this spec holds, keyed by its GGUF name."""
    h, inter, vocab = spec.hidden_size, spec.intermediate_size, spec.vocab_size
    qd, kvd = spec.num_attention_heads * spec.head_dim, spec.num_key_value_heads * spec.head_dim
    shapes = {
        "norm": (h,),
        "q": (qd, h),
        "k": (kvd, h),
        "v": (kvd, h),
        "o": (h, qd),
        "gate": (inter, h),
        "up": (inter, h),
        "down": (h, inter),
    }
    heads = {"q": spec.num_attention_heads, "k": spec.num_key_value_heads}
    plan: dict[str, Target] = {
        "token_embd.weight": Target("model.embed_tokens.weight", (vocab, h)),
        "output_norm.weight": Target("model.norm.weight", (h,)),
    }
    if not spec.tie_word_embeddings:
        plan["output.weight"] = Target("lm_head.weight", (vocab, h))
    for i in range(spec.num_hidden_layers):
        blk, layer = f"blk.{i}.", f"model.layers.{i}."
        for suffix, (native, kind) in _LAYER.items():
            plan[blk + suffix] = Target(layer + native, shapes[kind], heads.get(kind))
        if spec.qkv_bias:
            plan[blk + "attn_q.bias"] = Target(
                layer + "self_attn.q_proj.bias", (qd,), spec.num_attention_heads
            )
            plan[blk + "attn_k.bias"] = Target(
                layer + "self_attn.k_proj.bias", (kvd,), spec.num_key_value_heads
            )
            plan[blk + "attn_v.bias"] = Target(layer + "self_attn.v_proj.bias", (kvd,))
        if spec.o_bias:
            plan[blk + "attn_output.bias"] = Target(layer + "self_attn.o_proj.bias", (h,))
    return plan


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """The converter's permutation: half-split rotary rows -> interleaved, per head."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """Undo ``permute``: interleaved rotary rows -> the half-split layout Llama modules use."""
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
