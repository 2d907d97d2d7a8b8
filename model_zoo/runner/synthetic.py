"""Randomly initialised checkpoints in the real InternLM on-disk layouts, for benches and tests.

Writes ``config.json`` and sharded safetensors with an index, one layer at a time, so a
checkpoint of several GB is produced without holding it in memory. Tokenizer files are not
written here (``model_zoo.testing.tiny`` makes complete tiny checkpoints with a tokenizer).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..store.atomic import write_json_atomic
from .config import spec_from_dict
from .convert import pack_wqkv

# InternLM2-1.8B (facts file, section 2)
INTERNLM2_1_8B: dict[str, Any] = {
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "vocab_size": 92544,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rope_scaling": {"type": "dynamic", "factor": 2.0},
}


def internlm2_config(
    dims: dict[str, Any], *, reward: bool = False, dtype: str = "bfloat16"
) -> dict[str, Any]:
    """A config.json for InternLM2 (or its reward model) with the given dimensions."""
    cfg: dict[str, Any] = {
        "architectures": ["InternLM2ForRewardModel" if reward else "InternLM2ForCausalLM"],
        "model_type": "internlm2",
        "bias": False,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 2,
        "tie_word_embeddings": False,
        "torch_dtype": dtype,
        "use_cache": True,
        "attn_implementation": "eager",
        "auto_map": {"AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"},
    }
    cfg.update(dims)
    if reward:
        cfg["reward_token_id"] = min(92527, int(cfg["vocab_size"]) - 1)
        cfg["rope_scaling"] = None
    return cfg


def _internlm2_tensors(
    cfg: dict[str, Any], gen: torch.Generator, dtype: torch.dtype
) -> Iterator[tuple[str, torch.Tensor]]:
    spec = spec_from_dict(cfg)
    h, inter, vocab = spec.hidden_size, spec.intermediate_size, spec.vocab_size
    qd, kvd = spec.num_attention_heads * spec.head_dim, spec.num_key_value_heads * spec.head_dim

    def rnd(*shape: int, scale: float = 0.02) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen) * scale).to(dtype)

    def norm() -> torch.Tensor:
        return (1.0 + 0.1 * torch.randn(h, generator=gen)).to(dtype)

    yield "model.tok_embeddings.weight", rnd(vocab, h)
    for i in range(spec.num_hidden_layers):
        p = f"model.layers.{i}."
        yield p + "attention.wqkv.weight", pack_wqkv(rnd(qd, h), rnd(kvd, h), rnd(kvd, h), spec)
        yield p + "attention.wo.weight", rnd(h, qd)
        yield p + "feed_forward.w1.weight", rnd(inter, h)
        yield p + "feed_forward.w3.weight", rnd(inter, h)
        yield p + "feed_forward.w2.weight", rnd(h, inter)
        yield p + "attention_norm.weight", norm()
        yield p + "ffn_norm.weight", norm()
    yield "model.norm.weight", norm()
    if spec.is_reward:
        yield "v_head.weight", rnd(1, h)
    else:
        yield "output.weight", rnd(vocab, h)


def write_random_internlm2(
    out_dir: Path,
    dims: dict[str, Any],
    *,
    reward: bool = False,
    seed: int = 0,
    shards: int = 2,
    dtype: torch.dtype = torch.bfloat16,
) -> Path:
    """Write a random InternLM2-layout checkpoint (packed grouped wqkv) in ``shards`` files."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = internlm2_config(dims, reward=reward, dtype=str(dtype).removeprefix("torch."))
    gen = torch.Generator().manual_seed(seed)
    spec = spec_from_dict(cfg)
    per_shard = max(1, -(-spec.num_hidden_layers // shards))
    weight_map: dict[str, str] = {}
    total = 0
    buf: dict[str, torch.Tensor] = {}
    shard_names = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]

    def flush(idx: int) -> None:
        nonlocal buf, total
        if not buf:
            return
        name = shard_names[idx]
        tmp = out_dir / f".{name}.tmp"
        save_file(buf, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, out_dir / name)
        for k, t in buf.items():
            weight_map[k] = name
            total += t.numel() * t.element_size()
        buf = {}

    shard = 0
    for name, tensor in _internlm2_tensors(cfg, gen, dtype):
        if name.startswith("model.layers."):
            layer = int(name.split(".")[2])
            want = min(layer // per_shard, shards - 1)
            if want != shard:
                flush(shard)
                shard = want
        elif name in ("model.norm.weight", "output.weight", "v_head.weight"):
            if shard != shards - 1:
                flush(shard)
                shard = shards - 1
        buf[name] = tensor
    flush(shard)
    write_json_atomic(
        out_dir / "model.safetensors.index.json",
        {"metadata": {"total_size": total}, "weight_map": weight_map},
    )
    write_json_atomic(out_dir / "config.json", cfg)
    return out_dir
