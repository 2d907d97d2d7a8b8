"""Loading: strict tensor accounting, config variants, no checkpoint code, devices, dtypes,
optional dependencies, .bin checkpoints, origin format, and pulled-checkpoint integrity."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from model_zoo.errors import (
    CheckpointError,
    IncompatibleCheckpointError,
    MissingDependencyError,
    UsageError,
)
from model_zoo.runner.api import load
from model_zoo.runner.checkpoint import find_weights
from model_zoo.runner.config import read_config, spec_from_dict
from model_zoo.runner.convert import split_wqkv
from model_zoo.runner.devices import Placement, parse_memory, plan_placement, resolve_dtype
from model_zoo.testing.tiny import make_tiny, pack_wqkv, tiny_config


def copy_ck(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def single_shard(tmp_path: Path, arch: str = "internlm2", **kw) -> Path:
    return make_tiny(arch, tmp_path / f"{arch}-1", shards=1, dtype="float32", **kw)


def edit_tensors(path: Path, fn) -> None:
    from safetensors.torch import load_file, save_file

    f = path / "model.safetensors"
    tensors = load_file(str(f))
    fn(tensors)
    save_file(tensors, str(f), metadata={"format": "pt"})


def logits(path: Path, ids: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return load(path, device="cpu").model(ids).logits


IDS = torch.arange(5, 45).view(1, -1)


# ------------------------------------------------------------------ tensor accounting


def test_missing_tensor_is_named(tmp_path: Path) -> None:
    path = single_shard(tmp_path)
    edit_tensors(path, lambda t: t.pop("model.layers.1.feed_forward.w3.weight"))
    with pytest.raises(
        IncompatibleCheckpointError,
        match=r"missing tensor\(s\) model\.layers\.1\.feed_forward\.w3\.weight",
    ):
        load(path, device="cpu")


def test_unexpected_tensor_is_named(tmp_path: Path) -> None:
    path = single_shard(tmp_path)
    edit_tensors(
        path, lambda t: t.update({"model.layers.0.attention.extra.weight": torch.zeros(2)})
    )
    with pytest.raises(
        IncompatibleCheckpointError,
        match=r"unexpected tensor\(s\) model\.layers\.0\.attention\.extra\.weight",
    ):
        load(path, device="cpu")


def test_wrong_shape_is_named(tmp_path: Path) -> None:
    path = single_shard(tmp_path)
    edit_tensors(path, lambda t: t.update({"model.norm.weight": torch.ones(65)}))
    with pytest.raises(
        IncompatibleCheckpointError, match=r"model\.norm\.weight has shape \[65\], expected \[64\]"
    ):
        load(path, device="cpu")


def test_rotary_inv_freq_buffers_are_accounted_for(tmp_path: Path) -> None:
    path = single_shard(tmp_path)
    before = logits(path, IDS)
    edit_tensors(
        path,
        lambda t: t.update({"model.layers.0.attention.rotary_emb.inv_freq": torch.ones(8) * 123}),
    )
    assert torch.equal(logits(path, IDS), before)


def test_truncated_shard_is_a_checkpoint_error_naming_the_file(
    tiny_internlm2: Path, tmp_path: Path
) -> None:
    path = copy_ck(tiny_internlm2, tmp_path / "ck")
    shard = path / "model-00002-of-00002.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors"):
        load(path, device="cpu")


def test_wqkv_unpacking_is_grouped_per_kv_head() -> None:
    spec = spec_from_dict(tiny_config("internlm2"))  # 4 heads, 2 kv heads, head_dim 16
    q, k, v = torch.randn(64, 64), torch.randn(32, 64), torch.randn(32, 64)
    packed = torch.from_numpy(pack_wqkv(q.numpy(), k.numpy(), v.numpy(), 4, 2, 16))
    # rows 0-31: group 0's two query heads, 32-47 its key head, 48-63 its value head
    assert torch.equal(packed[32:48], k[:16]) and torch.equal(packed[48:64], v[:16])
    got = split_wqkv(packed, spec)
    assert all(torch.equal(a, b) for a, b in zip(got, (q, k, v), strict=True))
    assert all(t.is_contiguous() for t in got)


# ------------------------------------------------------------------ no checkpoint code


def test_checkpoint_python_files_are_never_executed(tiny_internlm2: Path, tmp_path: Path) -> None:
    path = copy_ck(tiny_internlm2, tmp_path / "ck")
    marker = tmp_path / "pwned"
    payload = f"open({str(marker)!r}, 'w').write('x')\n"
    for name in (
        "modeling_internlm2.py",
        "configuration_internlm2.py",
        "tokenization_internlm2.py",
        "tokenization_internlm2_fast.py",
    ):
        (path / name).write_text(payload)
    runner = load(path, device="cpu")
    runner.chat("hi", max_new_tokens=2, seed=0)
    assert json.loads((path / "config.json").read_text())["auto_map"]  # it was there, and ignored
    assert not marker.exists()


# ------------------------------------------------------------------ config variants


def test_early_internlm2_model_type_internlm_loads_as_internlm2(tmp_path: Path) -> None:
    base = make_tiny("internlm2", tmp_path / "a", dtype="float32", shards=1)
    variant = make_tiny(
        "internlm2",
        tmp_path / "b",
        dtype="float32",
        shards=1,
        config_overrides={"model_type": "internlm"},
    )
    assert read_config(variant).family == "internlm2"
    assert torch.equal(logits(base, IDS), logits(variant, IDS))


@pytest.mark.parametrize("key", ["type", "rope_type"])
def test_rope_scaling_spelled_type_or_rope_type(tmp_path: Path, key: str) -> None:
    path = make_tiny(
        "internlm2",
        tmp_path / key,
        dtype="float32",
        shards=1,
        config_overrides={"rope_scaling": {key: "linear", "factor": 4.0}},
    )
    spec = read_config(path)
    assert spec.rope_scaling is not None and (spec.rope_scaling.type, spec.rope_scaling.factor) == (
        "linear",
        4.0,
    )


def test_linear_scaling_equals_dividing_positions(tmp_path: Path) -> None:
    from model_zoo.runner.modeling import rope_inv_freq

    plain = spec_from_dict({**tiny_config("internlm2"), "rope_scaling": None})
    linear = spec_from_dict(
        {**tiny_config("internlm2"), "rope_scaling": {"type": "linear", "factor": 4.0}}
    )
    assert torch.allclose(rope_inv_freq(linear, 10), rope_inv_freq(plain, 10) / 4)
    dyn = spec_from_dict(tiny_config("internlm2"))  # dynamic x2, M = 64, d = 16
    assert torch.equal(rope_inv_freq(dyn, 64), rope_inv_freq(plain, 64))
    base = 1e6 * ((2 * 100 / 64) - 1) ** (16 / 14)
    want = 1.0 / base ** (torch.arange(0, 16, 2).float() / 16)
    assert torch.allclose(rope_inv_freq(dyn, 100), want)


def test_unsupported_architecture_is_refused(tmp_path: Path) -> None:
    path = single_shard(tmp_path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["architectures"] = ["MixtralForCausalLM"]
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(IncompatibleCheckpointError, match="MixtralForCausalLM"):
        load(path, device="cpu")


# ------------------------------------------------------------------ devices and dtypes


def test_auto_device_without_cuda_warns_and_uses_fp32_on_cpu(
    tiny_internlm2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="no CUDA GPU"):
        runner = load(tiny_internlm2)
    assert runner.device.type == "cpu" and runner.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in runner.model.parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(tiny_internlm2, device="cpu")


def test_explicit_dtype(tiny_internlm2: Path) -> None:
    runner = load(tiny_internlm2, device="cpu", dtype="bfloat16")
    assert {p.dtype for p in runner.model.parameters()} == {torch.bfloat16}
    assert runner.model(IDS).logits.dtype == torch.bfloat16
    with pytest.raises(UsageError, match="dtype"):
        load(tiny_internlm2, device="cpu", dtype="int3")


def test_resolve_dtype_rules() -> None:
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("fp16", torch.device("cpu")) == torch.float16
    assert resolve_dtype(torch.bfloat16, torch.device("cpu")) == torch.bfloat16


def test_layer_split_plan_honours_budgets() -> None:
    devs = (torch.device("cuda", 0), torch.device("cuda", 1))
    sizes = {"embed": 100, "layer": 10, "final": 100}
    even = plan_placement(sizes, 10, devs)
    assert (
        even.module_devices["model.embed_tokens"] == devs[0]
        and even.module_devices["lm_head"] == devs[1]
    )
    first = [i for i in range(10) if even.module_devices[f"model.layers.{i}"] == devs[0]]
    assert first == list(range(len(first))) and 0 < len(first) < 10
    tight = plan_placement(sizes, 10, devs, {devs[0]: 125, devs[1]: 1000})
    assert [tight.module_devices[f"model.layers.{i}"] for i in range(3)] == [
        devs[0],
        devs[0],
        devs[1],
    ]
    assert tight.device_for("model.layers.7.mlp.up_proj.weight") == devs[1]
    with pytest.raises(UsageError, match="max_memory"):
        plan_placement(sizes, 10, devs, {devs[0]: 140, devs[1]: 140})
    with pytest.raises(UsageError, match="max_memory"):
        plan_placement(sizes, 10, devs[:1], {devs[0]: 200})
    assert (
        parse_memory("2GiB") == 2 * 2**30
        and parse_memory("500MB") == 500 * 10**6
        and parse_memory(7) == 7
    )


def test_multi_device_dispatch_moves_activations(tiny_internlm2: Path) -> None:
    # Two "devices" that are both the CPU still exercise the hook path end to end.
    from model_zoo.runner.devices import dispatch
    from model_zoo.runner.loader import load_native

    spec = read_config(tiny_internlm2)
    cpu = torch.device("cpu")
    placement = Placement(
        (cpu, cpu),
        {
            "model.embed_tokens": cpu,
            "model.layers.0": cpu,
            "model.layers.1": cpu,
            "model.norm": cpu,
            "lm_head": cpu,
            "model.rotary_emb": cpu,
        },
    )
    model = load_native(tiny_internlm2, spec, placement, torch.float32)
    dispatch(model, placement)
    with torch.inference_mode():
        assert torch.equal(model(IDS).logits, logits(tiny_internlm2, IDS))


# ------------------------------------------------------------------ optional dependencies


def test_quantization_without_bitsandbytes_is_a_missing_dependency(tiny_internlm2: Path) -> None:
    pytest.importorskip("torch")
    import importlib.util

    from model_zoo.runner.quantize import require_bitsandbytes

    # On a CPU the answer is "needs a CUDA device", before any advice to install bitsandbytes.
    with pytest.raises(UsageError, match="CUDA device"):
        load(tiny_internlm2, device="cpu", quantization="8bit")
    with pytest.raises(UsageError, match="is not one of"):
        load(tiny_internlm2, device="cpu", quantization="3bit")
    if importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed here")
    with pytest.raises(MissingDependencyError, match="bitsandbytes"):
        require_bitsandbytes("8bit")


@pytest.mark.parametrize("engine", ["vllm", "lmdeploy"])
def test_engine_backends_without_the_engine_are_a_missing_dependency(
    tiny_internlm2: Path, engine: str
) -> None:
    import importlib.util

    if importlib.util.find_spec(engine) is not None:
        pytest.skip(f"{engine} is installed here")
    with pytest.raises(MissingDependencyError, match=engine):
        load(tiny_internlm2, backend=engine)


# ------------------------------------------------ .bin checkpoints (InternLM v1 ships only these)


def test_pytorch_bin_checkpoint_loads_like_safetensors(tiny_checkpoint, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    src = tiny_checkpoint("internlm", dtype="float32", shards=1)
    path = tmp_path / "bin"
    shutil.copytree(src, path, ignore=shutil.ignore_patterns("*.safetensors", "*.index.json"))
    state = load_file(str(src / "model.safetensors"))
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)  # old exports carry these
    torch.save(state, path / "pytorch_model.bin")
    assert torch.equal(logits(path, IDS), logits(src, IDS))


# ---------------------------------------------------------- origin format and pulled checkpoints


def test_origin_format_directory_is_refused_with_the_hf_source(tmp_path: Path) -> None:
    from model_zoo.store.manifest import FileRecord, SourceRecord, StoreManifest, write_manifest

    path = tmp_path / "origin"
    path.mkdir()
    (path / "model_tp0_pp0.pt").write_bytes(b"\0" * 16)
    with pytest.raises(IncompatibleCheckpointError, match="origin-format"):
        load(path, device="cpu")
    import hashlib

    write_manifest(
        path,
        StoreManifest(
            name="InternLM-Chat-7B",
            slug="internlm-chat-7b",
            revision=None,
            commit=None,
            sources=(
                SourceRecord(
                    "openxlab-origin", "OpenLMLab/InternLM-chat-7b-original", "http://127.0.0.1:1"
                ),
            ),
            files=(FileRecord("model_tp0_pp0.pt", 16, hashlib.sha256(b"\0" * 16).hexdigest()),),
        ),
    )
    with pytest.raises(IncompatibleCheckpointError, match="internlm/internlm-chat-7b"):
        load(path, device="cpu")


def test_registry_name_is_pulled_then_loaded_and_damage_is_refused(pull_hub) -> None:
    runner = load("internlm2_5-1_8b-chat", device="cpu")
    assert runner.name and runner.spec.family == "internlm2"
    assert runner.settings().stop_token_ids  # registry + checkpoint stops
    assert isinstance(runner.chat("hi", max_new_tokens=3, seed=0), str)
    # damage a weight file in place: sizes are always checked against the store manifest
    shard = min(runner.path.glob("*.safetensors"))
    with shard.open("r+b") as fh:
        fh.truncate(shard.stat().st_size - 8)
    with pytest.raises(CheckpointError, match=rf"{shard.name}.*model-zoo verify"):
        load("internlm2_5-1_8b-chat", device="cpu")


def test_mapped_and_read_paths_give_the_same_weights(tiny_internlm2: Path) -> None:
    # bf16 on disk: loading as bf16 on the CPU memory-maps, loading as fp32 reads and casts
    mapped = dict(load(tiny_internlm2, device="cpu", dtype="bfloat16").model.named_parameters())
    read = dict(load(tiny_internlm2, device="cpu", dtype="float32").model.named_parameters())
    assert mapped.keys() == read.keys()
    for name, p in mapped.items():
        assert torch.equal(p.float(), read[name]), name


def test_the_runner_reads_headers_with_the_store_checker(tmp_path: Path) -> None:
    """One reader: a header the store's check refuses (a hole in the data, a length that does
    not match its dtype) is refused by the loader with the same reason."""
    import json as _json
    import struct

    from model_zoo.errors import CheckpointError
    from model_zoo.runner.checkpoint import read_safetensors_header
    from model_zoo.store.safetensors_check import HeaderError, read_header

    def write(name: str, header: dict[str, object], data: bytes) -> Path:
        raw = _json.dumps(header).encode()
        p = tmp_path / name
        p.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
        return p

    good = write(
        "good.safetensors",
        {"a": {"dtype": "F8_E8M0", "shape": [4], "data_offsets": [0, 4]}},
        b"\0" * 4,
    )
    (info,) = read_safetensors_header(good).values()
    assert info.dtype == "F8_E8M0" and info.offset == good.stat().st_size - 4
    holed = write(
        "hole.safetensors", {"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8
    )
    with pytest.raises(HeaderError, match="gap") as store_err:
        read_header(holed)
    with pytest.raises(CheckpointError, match="gap") as runner_err:
        read_safetensors_header(holed)
    assert str(store_err.value) in str(runner_err.value)


# -------------------------------------------------------------------------------- load's arguments


def test_load_refuses_an_unknown_attention_implementation_before_loading(tmp_path: Path) -> None:
    from model_zoo.runner.api import load

    with pytest.raises(UsageError, match="attn 'bogus' is not one of"):
        load(tmp_path / "not-even-a-checkpoint", device="cpu", attn="bogus")


def test_load_names_a_file_given_for_a_checkpoint_directory(tiny_reward_fp32: Path) -> None:
    from model_zoo.runner.api import load

    with pytest.raises(UsageError, match="is a file") as info:
        load(tiny_reward_fp32 / "config.json", device="cpu")
    assert str(tiny_reward_fp32) in str(info.value)
    with pytest.raises(UsageError, match="empty"):
        load("  ", device="cpu")


def test_load_with_a_missing_flash_attention_package_says_what_to_install(
    tiny_reward_fp32: Path,
) -> None:
    import importlib.util

    from model_zoo.errors import MissingDependencyError
    from model_zoo.runner.api import load

    if importlib.util.find_spec("flash_attn") is not None:
        pytest.skip("flash-attn is installed here: the missing-package path cannot be reached")
    with pytest.raises(MissingDependencyError, match="flash-attn is needed"):
        load(tiny_reward_fp32, device="cpu", attn="flash_attention_2")


# -------------------------------------- odd-but-valid checkpoints, and unsafe ones refused clearly


def _set_config(path: Path, **fields: object) -> None:
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(fields)
    (path / "config.json").write_text(json.dumps(cfg))


def _bin_checkpoint(tiny_checkpoint, tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    path = copy_ck(tiny_checkpoint("internlm", shards=1, dtype="float32"), tmp_path / "ck")
    sd = load_file(path / "model.safetensors")
    (path / "model.safetensors").unlink()
    return path, sd


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize(
    ("arch", "emb", "head"),
    [
        ("internlm2", "model.tok_embeddings.weight", "output.weight"),
        ("internlm3", "model.embed_tokens.weight", "lm_head.weight"),
    ],
)
def test_tied_checkpoint_that_stores_its_head_loads_and_a_different_head_is_refused(
    tiny_checkpoint, tmp_path: Path, arch: str, emb: str, head: str
) -> None:
    path = copy_ck(tiny_checkpoint(arch, shards=1, dtype="float32"), tmp_path / "ck")
    _set_config(path, tie_word_embeddings=True)
    sd = load_file(path / "model.safetensors")
    sd[head] = sd[emb].clone()  # as torch.save of a tied model writes it
    save_file(sd, str(path / "model.safetensors"), metadata={"format": "pt"})
    runner = load(path, device="cpu")
    assert runner.model.lm_head.weight is runner.model.model.embed_tokens.weight
    assert torch.equal(runner.model.lm_head.weight, sd[emb])

    sd[head] = sd[emb] + 1.0
    save_file(sd, str(path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(IncompatibleCheckpointError, match="tie_word_embeddings"):
        load(path, device="cpu")


def test_tied_head_runs_on_the_embeddings_device_when_layers_are_split(
    tiny_checkpoint, tmp_path: Path
) -> None:
    # Two distinct device names stand in for two GPUs (the bytes stay on the CPU either way);
    # what matters is that the head is placed, and its input sent, where the tied weight lives.
    from model_zoo.runner.config import read_config
    from model_zoo.runner.devices import dispatch, plan_placement
    from model_zoo.runner.loader import load_native

    path = copy_ck(tiny_checkpoint("internlm3", shards=1, dtype="float32"), tmp_path / "ck")
    _set_config(path, tie_word_embeddings=True)
    sd = load_file(path / "model.safetensors")
    del sd["lm_head.weight"]
    save_file(sd, str(path / "model.safetensors"), metadata={"format": "pt"})
    spec = read_config(path)
    devices = (torch.device("cpu"), torch.device("cpu", 0))
    placement = plan_placement(
        {"embed": 10, "layer": 10, "final": 10}, spec.num_hidden_layers, devices
    )
    assert placement.device_for("lm_head.weight") == devices[1]  # the split puts the head last
    model = load_native(path, spec, placement, torch.float32)
    assert placement.device_for("lm_head.weight") == placement.device_for(
        "model.embed_tokens.weight"
    )
    assert model.lm_head.weight is model.model.embed_tokens.weight
    dispatch(model, placement)
    with torch.inference_mode():
        assert model(torch.tensor([[1, 5, 9]])).logits.shape == (1, 3, spec.vocab_size)


def test_single_model_safetensors_ignores_other_safetensors_beside_it(
    tiny_checkpoint, tmp_path: Path
) -> None:
    path = copy_ck(tiny_checkpoint("internlm2", shards=1, dtype="float32"), tmp_path / "ck")
    save_file(
        {"base_model.lora_A.weight": torch.ones(2, 2)}, str(path / "adapter_model.safetensors")
    )
    weights = find_weights(path)
    assert [f.name for f in weights.files] == ["model.safetensors"]
    assert "base_model.lora_A.weight" not in weights.tensors
    load(path, device="cpu")


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/hostname", None])
def test_index_naming_a_file_outside_the_checkpoint_or_no_file_is_refused(
    tiny_checkpoint, tmp_path: Path, shard: str | None
) -> None:
    path = copy_ck(tiny_checkpoint("internlm2", shards=2), tmp_path / "ck")
    save_file({"x": torch.ones(1)}, str(tmp_path / "outside.safetensors"))
    index = json.loads((path / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.norm.weight"] = shard
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="weight_map"):
        find_weights(path)


def test_shard_holding_tensors_its_index_does_not_list_is_named(
    tiny_checkpoint, tmp_path: Path
) -> None:
    path = copy_ck(tiny_checkpoint("internlm2", shards=2), tmp_path / "ck")
    index = json.loads((path / "model.safetensors.index.json").read_text())
    shard = sorted(set(index["weight_map"].values()))[1]
    sd = load_file(path / shard)
    sd["model.layers.0.attention.rotary_emb.inv_freq"] = torch.ones(8)  # accounted for: skipped
    save_file(sd, str(path / shard), metadata={"format": "pt"})
    load(path, device="cpu")
    sd["vision_tower.proj.weight"] = torch.ones(2, 2)
    save_file(sd, str(path / shard), metadata={"format": "pt"})
    with pytest.raises(
        IncompatibleCheckpointError,
        match=rf"unexpected tensor\(s\) vision_tower.proj.weight \(in {shard}\)",
    ):
        load(path, device="cpu")


def test_awq_checkpoint_is_named_as_pre_quantized_not_as_missing_tensors(
    tiny_checkpoint, tmp_path: Path
) -> None:
    path = copy_ck(tiny_checkpoint("internlm2", shards=1, dtype="float16"), tmp_path / "ck")
    _set_config(path, quantization_config={"quant_method": "awq", "bits": 4, "group_size": 128})
    sd = load_file(path / "model.safetensors")
    w = sd.pop("model.layers.0.feed_forward.w1.weight")
    sd["model.layers.0.feed_forward.w1.qweight"] = torch.zeros(
        w.shape[1], w.shape[0] // 8, dtype=torch.int32
    )
    sd["model.layers.0.feed_forward.w1.scales"] = torch.ones(1, w.shape[0], dtype=torch.float16)
    save_file(sd, str(path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(IncompatibleCheckpointError, match="awq checkpoint") as info:
        load(path, device="cpu")
    assert "qweight" in str(info.value) and "backend='vllm'" in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_attention_heads", 0),
        ("max_position_embeddings", 0),
        ("max_position_embeddings", -5),
        ("hidden_size", 0),
        ("num_hidden_layers", -1),
        ("rope_theta", 0),
        ("head_dim", -16),
    ],
)
def test_config_with_impossible_sizes_is_refused_naming_the_field(
    tiny_checkpoint, field: str, value: int
) -> None:
    from model_zoo.runner.config import spec_from_dict

    cfg = json.loads((tiny_checkpoint("internlm2") / "config.json").read_text())
    cfg[field] = value
    with pytest.raises(IncompatibleCheckpointError, match=field):
        spec_from_dict(cfg)


def test_max_position_embeddings_of_one_still_matches_dynamic_ntk(
    tiny_checkpoint, tmp_path: Path
) -> None:
    # The smallest valid limit: every position past the first is scaled.
    from test_runner_forward import Reference

    path = copy_ck(tiny_checkpoint("internlm2", dtype="float32"), tmp_path / "ck")
    _set_config(path, max_position_embeddings=1)
    ids = torch.randint(3, 500, (1, 40), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ours = load(path, device="cpu").model(ids).logits
    want, _, _ = Reference(path).forward(ids)
    assert (ours - want).abs().max().item() < 1e-4


def test_bin_shards_repeating_a_tensor_are_refused(tiny_checkpoint, tmp_path: Path) -> None:
    path, sd = _bin_checkpoint(tiny_checkpoint, tmp_path)
    names = sorted(sd)
    half = len(names) // 2
    torch.save({k: sd[k] for k in names[: half + 1]}, path / "pytorch_model-00001-of-00002.bin")
    torch.save({k: sd[k] for k in names[half:]}, path / "pytorch_model-00002-of-00002.bin")
    with pytest.raises(CheckpointError, match="appears in two shards"):
        load(path, device="cpu")


def test_bin_index_must_agree_with_the_shards(tiny_checkpoint, tmp_path: Path) -> None:
    path, sd = _bin_checkpoint(tiny_checkpoint, tmp_path)
    names = sorted(sd)
    torch.save({k: sd[k] for k in names[:3]}, path / "pytorch_model-00001-of-00002.bin")
    torch.save({k: sd[k] for k in names[3:]}, path / "pytorch_model-00002-of-00002.bin")
    wrong = {k: "pytorch_model-00001-of-00002.bin" for k in names}  # claims all are in shard 1
    (path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": wrong}))
    with pytest.raises(CheckpointError, match="index says it holds"):
        load(path, device="cpu")


def test_bin_with_pickled_code_is_refused_without_running_it_or_advising_unsafe_loading(
    tiny_checkpoint, tmp_path: Path
) -> None:
    path, sd = _bin_checkpoint(tiny_checkpoint, tmp_path)
    marker = tmp_path / "code-ran"
    torch.save({"hook": _RunsCode(marker), **sd}, path / "pytorch_model.bin")
    with pytest.raises(IncompatibleCheckpointError) as info:
        load(path, device="cpu")
    assert not marker.exists()
    msg = str(info.value)
    assert "pytorch_model.bin" in msg and "system" in msg and "safetensors" in msg
    assert "weights_only` set to `False`" not in msg and "will likely succeed" not in msg


@pytest.mark.parametrize("extra", [{"step": 5}, {"model": {"w": torch.ones(1)}}])
def test_bin_with_non_tensor_entries_is_refused_naming_the_entry(
    tiny_checkpoint, tmp_path: Path, extra: dict
) -> None:
    path, sd = _bin_checkpoint(tiny_checkpoint, tmp_path)
    torch.save({**sd, **extra}, path / "pytorch_model.bin")
    name = next(iter(extra))
    with pytest.raises(IncompatibleCheckpointError, match=f"entry '{name}'"):
        load(path, device="cpu")


def test_empty_bin_says_the_file_may_be_empty(tiny_checkpoint, tmp_path: Path) -> None:
    path, _ = _bin_checkpoint(tiny_checkpoint, tmp_path)
    (path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty or truncated"):
        load(path, device="cpu")


def test_single_bin_checkpoint_matches_its_safetensors_twin(
    tiny_checkpoint, tmp_path: Path
) -> None:
    src = tiny_checkpoint("internlm", shards=1, dtype="float32")
    path, sd = _bin_checkpoint(tiny_checkpoint, tmp_path)
    torch.save(sd, path / "pytorch_model.bin")
    ids = torch.tensor([[1, 5, 9, 200, 17]])
    with torch.inference_mode():
        a = load(path, device="cpu").model(ids).logits
        b = load(src, device="cpu").model(ids).logits
    assert torch.equal(a, b)
