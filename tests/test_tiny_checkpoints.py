"""Tiny checkpoints: config fields, tensor names and shapes, sharding and the index, wqkv layout."""

from __future__ import annotations

import json
import re
import struct
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from model_zoo.errors import UsageError
from model_zoo.testing.tiny import TinyDims, make_tiny, pack_wqkv, unpack_wqkv

ARCHS = ("internlm2", "internlm2-reward", "internlm3", "internlm")


def _config(path: Path) -> dict:
    return json.loads((path / "config.json").read_text())


def _load_all(path: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(path.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as fh:
            for name in fh.keys():
                assert name not in tensors, f"{name} stored twice"
                tensors[name] = fh.get_tensor(name)
    return tensors


def _expected_shapes(arch: str, cfg: dict) -> dict[str, tuple[int, ...]]:
    """Written from the published state-dict names (facts file, section 3), not from tiny.py."""
    h, inter, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    heads, layers = cfg["num_attention_heads"], cfg["num_hidden_layers"]
    kv = cfg.get("num_key_value_heads", heads)
    d = cfg.get("head_dim", h // heads)
    out: dict[str, tuple[int, ...]] = {}
    if arch.startswith("internlm2"):
        out["model.tok_embeddings.weight"] = (vocab, h)
        for i in range(layers):
            p = f"model.layers.{i}."
            out[p + "attention.wqkv.weight"] = ((heads + 2 * kv) * d, h)
            out[p + "attention.wo.weight"] = (h, heads * d)
            out[p + "feed_forward.w1.weight"] = (inter, h)
            out[p + "feed_forward.w3.weight"] = (inter, h)
            out[p + "feed_forward.w2.weight"] = (h, inter)
            out[p + "attention_norm.weight"] = (h,)
            out[p + "ffn_norm.weight"] = (h,)
        out["model.norm.weight"] = (h,)
        if arch == "internlm2-reward":
            out["v_head.weight"] = (1, h)
        else:
            out["output.weight"] = (vocab, h)
        return out
    out["model.embed_tokens.weight"] = (vocab, h)
    for i in range(layers):
        p = f"model.layers.{i}."
        out[p + "self_attn.q_proj.weight"] = (heads * d, h)
        out[p + "self_attn.k_proj.weight"] = (kv * d, h)
        out[p + "self_attn.v_proj.weight"] = (kv * d, h)
        out[p + "self_attn.o_proj.weight"] = (h, heads * d)
        if cfg["bias"]:
            out[p + "self_attn.q_proj.bias"] = (heads * d,)
            out[p + "self_attn.k_proj.bias"] = (kv * d,)
            out[p + "self_attn.v_proj.bias"] = (kv * d,)
            out[p + "self_attn.o_proj.bias"] = (h,)
        out[p + "mlp.gate_proj.weight"] = (inter, h)
        out[p + "mlp.up_proj.weight"] = (inter, h)
        out[p + "mlp.down_proj.weight"] = (h, inter)
        out[p + "input_layernorm.weight"] = (h,)
        out[p + "post_attention_layernorm.weight"] = (h,)
    out["model.norm.weight"] = (h,)
    out["lm_head.weight"] = (vocab, h)
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_tensors_have_the_published_names_and_shapes(tiny_checkpoint, arch: str) -> None:
    path = tiny_checkpoint(arch)
    cfg = _config(path)
    tensors = _load_all(path)
    assert {k: tuple(v.shape) for k, v in tensors.items()} == _expected_shapes(arch, cfg)
    assert all(t.dtype == torch.bfloat16 for t in tensors.values())
    # Norm weights are random around 1, so a loader that ignores them gives different logits.
    norms = [v.float() for k, v in tensors.items() if k.endswith("norm.weight")]
    assert all(0.5 <= float(n.min()) and float(n.max()) <= 1.5 for n in norms)
    assert all(float(n.std()) > 0.1 for n in norms)
    assert not torch.equal(norms[0], norms[1])


def test_internlm2_config_has_the_published_fields(tiny_internlm2: Path) -> None:
    cfg = _config(tiny_internlm2)
    assert cfg["architectures"] == ["InternLM2ForCausalLM"]
    assert cfg["model_type"] == "internlm2"
    assert cfg["auto_map"]["AutoModelForCausalLM"] == "modeling_internlm2.InternLM2ForCausalLM"
    assert cfg["auto_map"]["AutoConfig"] == "configuration_internlm2.InternLM2Config"
    assert cfg["rope_scaling"] == {"type": "dynamic", "factor": 2.0}
    assert cfg["rope_theta"] == 1000000 and cfg["rms_norm_eps"] == 1e-5
    assert cfg["bias"] is False and cfg["tie_word_embeddings"] is False
    assert (cfg["bos_token_id"], cfg["eos_token_id"], cfg["pad_token_id"]) == (1, 2, 2)
    assert cfg["num_attention_heads"] != cfg["num_key_value_heads"]
    assert cfg["num_attention_heads"] % cfg["num_key_value_heads"] == 0
    assert cfg["max_position_embeddings"] <= 64 and cfg["num_hidden_layers"] == 2
    assert "head_dim" not in cfg


def test_reward_config(tiny_internlm2_reward: Path) -> None:
    cfg = _config(tiny_internlm2_reward)
    assert cfg["architectures"] == ["InternLM2ForRewardModel"]
    assert cfg["auto_map"]["AutoModel"] == "modeling_internlm2.InternLM2ForRewardModel"
    assert cfg["rope_scaling"] is None
    assert 0 < cfg["reward_token_id"] < cfg["vocab_size"]


def test_internlm3_config(tiny_internlm3: Path) -> None:
    cfg = _config(tiny_internlm3)
    assert cfg["architectures"] == ["InternLM3ForCausalLM"] and cfg["model_type"] == "internlm3"
    assert cfg["rope_scaling"] == {"rope_type": "dynamic", "factor": 6.0}
    assert cfg["qkv_bias"] is False and cfg["bias"] is False
    # head_dim is explicit and differs from hidden / heads, so loaders must read it.
    assert cfg["head_dim"] != cfg["hidden_size"] // cfg["num_attention_heads"]
    assert cfg["num_attention_heads"] != cfg["num_key_value_heads"]


def test_internlm1_config(tiny_internlm1: Path) -> None:
    cfg = _config(tiny_internlm1)
    assert cfg["architectures"] == ["InternLMForCausalLM"] and cfg["model_type"] == "internlm"
    assert cfg["bias"] is True and cfg["rms_norm_eps"] == 1e-6
    assert cfg["rotary"] == {"base": 10000, "type": "dynamic"}
    assert "num_key_value_heads" not in cfg


@pytest.mark.parametrize("arch", ARCHS)
def test_no_code_is_shipped_and_auto_map_names_the_real_modules(tiny_checkpoint, arch: str) -> None:
    path = tiny_checkpoint(arch)
    assert not list(path.rglob("*.py"))
    for target in _config(path)["auto_map"].values():
        module, _, cls = target.partition(".")
        assert re.fullmatch(r"(configuration|modeling)_internlm[23]?", module) and cls


@pytest.mark.parametrize("arch", ARCHS)
def test_index_names_every_shard_and_tensor(tiny_checkpoint, arch: str) -> None:
    path = tiny_checkpoint(arch, shards=3)
    index = json.loads((path / "model.safetensors.index.json").read_text())
    shard_files = sorted(p.name for p in path.glob("*.safetensors"))
    assert shard_files == [f"model-0000{k}-of-00003.safetensors" for k in (1, 2, 3)]
    assert sorted(set(index["weight_map"].values())) == shard_files
    total = 0
    seen: dict[str, str] = {}
    for name in shard_files:
        with safe_open(str(path / name), framework="pt") as fh:
            assert fh.metadata() == {"format": "pt"}
            for key in fh.keys():
                seen[key] = name
                tensor = fh.get_tensor(key)
                total += tensor.numel() * tensor.element_size()
    assert seen == index["weight_map"]
    assert index["metadata"]["total_size"] == total


def test_one_shard_is_model_safetensors_without_index(tiny_checkpoint) -> None:
    path = tiny_checkpoint("internlm2", shards=1)
    assert sorted(p.name for p in path.glob("model*")) == ["model.safetensors"]
    assert _load_all(path).keys() == _load_all(tiny_checkpoint("internlm2")).keys()


def test_values_do_not_depend_on_the_shard_count(tiny_checkpoint) -> None:
    one = _load_all(tiny_checkpoint("internlm3", shards=1))
    three = _load_all(tiny_checkpoint("internlm3", shards=3))
    assert all(torch.equal(one[k], three[k]) for k in one)


def test_safetensors_header_is_aligned_and_well_formed(tiny_internlm2: Path) -> None:
    raw = (tiny_internlm2 / "model-00001-of-00002.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    assert n % 8 == 0
    ends = sorted(v["data_offsets"] for k, v in header.items() if k != "__metadata__")
    assert ends[0][0] == 0 and all(a[1] == b[0] for a, b in pairwise(ends))
    assert ends[-1][1] == len(raw) - 8 - n


def test_float32_and_float16_builds_hold_the_same_values(tiny_checkpoint) -> None:
    bf16 = _load_all(tiny_checkpoint("internlm2"))
    f32 = _load_all(tiny_checkpoint("internlm2", dtype="float32"))
    f16 = _load_all(tiny_checkpoint("internlm2", dtype="float16"))
    assert _config(tiny_checkpoint("internlm2", dtype="float32"))["torch_dtype"] == "float32"
    for name, value in f32.items():
        assert value.dtype == torch.float32 and f16[name].dtype == torch.float16
        assert torch.allclose(bf16[name].float(), value, rtol=1e-2, atol=1e-2)
        assert torch.allclose(f16[name].float(), value, rtol=1e-3, atol=1e-3)


# ------------------------------------------------------------------ wqkv


def _labelled(heads: int, head_dim: int, hidden: int, base: float) -> np.ndarray:
    """Rows of head j hold base + j (+ a column ramp), so a row tells which head it came from."""
    rows = np.repeat(np.arange(heads, dtype=np.float32), head_dim)[:, None] + base
    return rows + np.arange(hidden, dtype=np.float32)[None, :] * 1e-3


def test_pack_wqkv_uses_the_grouped_layout() -> None:
    heads, kv, d, hidden = 8, 2, 4, 6
    q = _labelled(heads, d, hidden, 0)
    k, v = _labelled(kv, d, hidden, 100), _labelled(kv, d, hidden, 200)
    packed = pack_wqkv(q, k, v, heads, kv, d)
    assert packed.shape == ((heads + 2 * kv) * d, hidden)
    block_heads = [float(packed[i * d, 0]) for i in range(heads + 2 * kv)]
    # per kv group: its 4 query heads, then its key head, then its value head
    assert block_heads == [0, 1, 2, 3, 100, 200, 4, 5, 6, 7, 101, 201]
    q2, k2, v2 = unpack_wqkv(packed, heads, kv, d)
    assert np.array_equal(q2, q) and np.array_equal(k2, k) and np.array_equal(v2, v)


def test_unpack_wqkv_works_on_torch_tensors_and_biases() -> None:
    heads, kv, d = 4, 2, 3
    q, k, v = (
        np.arange(n * d, dtype=np.float32) + off for n, off in ((heads, 0), (kv, 50), (kv, 90))
    )
    packed = torch.from_numpy(pack_wqkv(q, k, v, heads, kv, d))
    assert packed[:d].tolist() == [0, 1, 2] and packed[2 * d : 3 * d].tolist() == [50, 51, 52]
    q2, k2, v2 = unpack_wqkv(packed, heads, kv, d)
    assert torch.equal(q2, torch.from_numpy(q)) and torch.equal(v2, torch.from_numpy(v))
    assert torch.equal(k2, torch.from_numpy(k))


def test_checkpoint_wqkv_unpacks_and_repacks_to_itself(tiny_checkpoint) -> None:
    path = tiny_checkpoint("internlm2", dtype="float32")
    cfg = _config(path)
    heads, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = cfg["hidden_size"] // heads
    wqkv = _load_all(path)["model.layers.1.attention.wqkv.weight"].numpy()
    q, k, v = unpack_wqkv(wqkv, heads, kv, d)
    assert q.shape == (heads * d, cfg["hidden_size"])
    assert k.shape == v.shape == (kv * d, cfg["hidden_size"])
    assert np.array_equal(pack_wqkv(q, k, v, heads, kv, d), wqkv)


# ------------------------------------------------------------------ options and errors


def test_custom_dims_and_config_overrides(tmp_path: Path) -> None:
    dims = TinyDims(
        hidden_size=96,
        num_attention_heads=6,
        num_key_value_heads=2,
        intermediate_size=160,
        num_hidden_layers=3,
        vocab_size=1280,
    )
    path = make_tiny(
        "internlm2",
        tmp_path / "m",
        dims=dims,
        shards=4,
        config_overrides={
            "model_type": "internlm",
            "rope_scaling": None,
            "attn_implementation": None,
        },
    )
    cfg = _config(path)
    assert cfg["model_type"] == "internlm" and "rope_scaling" not in cfg
    assert "attn_implementation" not in cfg and cfg["vocab_size"] == 1280
    shapes = {k: tuple(v.shape) for k, v in _load_all(path).items()}
    assert shapes == _expected_shapes("internlm2", cfg)
    assert len(list(path.glob("model-*-of-00004.safetensors"))) == 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"arch": "llama"}, "unknown tiny architecture"),
        ({"shards": 0}, "shards must be"),
        ({"shards": 1000}, "shards must be"),
        ({"dtype": "int8"}, "unknown dtype"),
        ({"dims": TinyDims(num_attention_heads=4, num_key_value_heads=3)}, "multiple of"),
        ({"dims": TinyDims(vocab_size=100)}, "vocab_size"),
        ({"arch": "internlm", "dims": TinyDims(num_key_value_heads=2)}, "grouped-query"),
        ({"config_overrides": {"hidden_size": 128}}, "through dims"),
    ],
)
def test_bad_arguments_are_usage_errors(tmp_path: Path, kwargs: dict, match: str) -> None:
    arch = kwargs.pop("arch", "internlm2")
    with pytest.raises(UsageError, match=match):
        make_tiny(arch, tmp_path / "m", **kwargs)
    assert not (tmp_path / "m").exists()


def test_non_empty_directory_needs_overwrite(tmp_path: Path) -> None:
    make_tiny("internlm2", tmp_path, shards=3)
    with pytest.raises(UsageError, match="not empty"):
        make_tiny("internlm2", tmp_path)
    make_tiny("internlm2", tmp_path, shards=2, overwrite=True)
    names = sorted(p.name for p in tmp_path.glob("model*"))
    assert names == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
    ]
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_bfloat16_encoding_rounds_like_torch() -> None:
    from model_zoo.testing.tiny_weights import encode

    values = np.random.default_rng(5).standard_normal(50_000).astype(np.float32) * 3
    expected = torch.from_numpy(values.copy()).to(torch.bfloat16).view(torch.int16).numpy()
    assert np.array_equal(encode(values.copy(), "bfloat16").view(np.int16), expected)


def test_linear_weights_are_scaled_by_fan_in(tiny_checkpoint) -> None:
    tensors = _load_all(tiny_checkpoint("internlm3", dtype="float32"))
    w = tensors["model.layers.0.mlp.down_proj.weight"]
    assert abs(float(w.std()) * w.shape[1] ** 0.5 - 1) < 0.1 and abs(float(w.mean())) < 0.02
