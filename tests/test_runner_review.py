"""Odd-but-valid checkpoints the runner must load correctly, and unsafe ones it must refuse clearly.

Found in a review: tied checkpoints that still store their head, stray safetensors beside a
single ``model.safetensors``, ``.bin`` shards that repeat a tensor, and ``.bin`` pickles that
reference code (torch's own message advised ``weights_only=False``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from model_zoo.errors import CheckpointError, IncompatibleCheckpointError
from model_zoo.runner.api import load
from model_zoo.runner.checkpoint import find_weights


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _set_config(path: Path, **fields: object) -> None:
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(fields)
    (path / "config.json").write_text(json.dumps(cfg))


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
    path = _copy(tiny_checkpoint(arch, shards=1, dtype="float32"), tmp_path / "ck")
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


def test_single_model_safetensors_ignores_other_safetensors_beside_it(
    tiny_checkpoint, tmp_path: Path
) -> None:
    path = _copy(tiny_checkpoint("internlm2", shards=1, dtype="float32"), tmp_path / "ck")
    save_file(
        {"base_model.lora_A.weight": torch.ones(2, 2)}, str(path / "adapter_model.safetensors")
    )
    weights = find_weights(path)
    assert [f.name for f in weights.files] == ["model.safetensors"]
    assert "base_model.lora_A.weight" not in weights.tensors
    load(path, device="cpu")


def _bin_checkpoint(tiny_checkpoint, tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    path = _copy(tiny_checkpoint("internlm", shards=1, dtype="float32"), tmp_path / "ck")
    sd = load_file(path / "model.safetensors")
    (path / "model.safetensors").unlink()
    return path, sd


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


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


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


# ------------------------------------------------------------------ tokenizer configs


def _edit_tokenizer_config(src: Path, dst: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    path = _copy(src, dst)
    cfg = json.loads((path / "tokenizer_config.json").read_text())
    edit(cfg)
    (path / "tokenizer_config.json").write_text(json.dumps(cfg))
    return path


@pytest.mark.parametrize("arch", ["internlm3", "internlm"])
def test_special_tokens_listed_only_in_additional_special_tokens_are_kept_whole(
    tiny_checkpoint, tmp_path: Path, arch: str
) -> None:
    from model_zoo.runner.tokenizer import InternLMTokenizer

    src = tiny_checkpoint(arch, shards=1)
    old_style = _edit_tokenizer_config(
        src, tmp_path / "ck", lambda c: c.pop("added_tokens_decoder")
    )
    text = "<|User|>:hi<eoh>\n<|im_start|>user\nhi<|im_end|><review>"
    want = InternLMTokenizer.from_pretrained(src).encode(text)
    assert InternLMTokenizer.from_pretrained(old_style).encode(text) == want


def test_chat_template_given_as_a_named_list_uses_the_default_entry(
    tiny_checkpoint, tmp_path: Path
) -> None:
    from model_zoo.runner.tokenizer import InternLMTokenizer

    src = tiny_checkpoint("internlm2", shards=1)
    marker = "{{ 'NAMED-DEFAULT' }}"

    def to_list(cfg: dict) -> None:
        cfg["chat_template"] = [
            {"name": "tool_use", "template": "{{ 'TOOLS' }}"},
            {"name": "default", "template": marker + cfg["chat_template"]},
        ]

    path = _edit_tokenizer_config(src, tmp_path / "ck", to_list)
    tok = InternLMTokenizer.from_pretrained(path)
    assert tok.chat_template is not None and tok.chat_template.startswith(marker)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert text.startswith("NAMED-DEFAULT")


def test_malformed_added_tokens_decoder_is_a_clear_error(tiny_checkpoint, tmp_path: Path) -> None:
    from model_zoo.runner.tokenizer import InternLMTokenizer

    def damage(cfg: dict) -> None:
        cfg["added_tokens_decoder"]["1023"] = {"special": True}  # no content

    path = _edit_tokenizer_config(tiny_checkpoint("internlm2", shards=1), tmp_path / "ck", damage)
    with pytest.raises(
        IncompatibleCheckpointError, match="tokenizer_config.json.*added_tokens_decoder"
    ):
        InternLMTokenizer.from_pretrained(path)


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/hostname", None])
def test_index_naming_a_file_outside_the_checkpoint_or_no_file_is_refused(
    tiny_checkpoint, tmp_path: Path, shard: str | None
) -> None:
    path = _copy(tiny_checkpoint("internlm2", shards=2), tmp_path / "ck")
    save_file({"x": torch.ones(1)}, str(tmp_path / "outside.safetensors"))
    index = json.loads((path / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.norm.weight"] = shard
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="weight_map"):
        find_weights(path)


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

    path = _copy(tiny_checkpoint("internlm2", dtype="float32"), tmp_path / "ck")
    _set_config(path, max_position_embeddings=1)
    ids = torch.randint(3, 500, (1, 40), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ours = load(path, device="cpu").model(ids).logits
    want, _, _ = Reference(path).forward(ids)
    assert (ours - want).abs().max().item() < 1e-4


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


@pytest.mark.parametrize("bad", [1024, -3])
def test_prompt_ids_outside_the_vocabulary_are_a_usage_error(tiny_checkpoint, bad: int) -> None:
    from model_zoo.errors import UsageError

    runner = load(tiny_checkpoint("internlm2"), device="cpu")
    assert runner.spec.vocab_size == 1024
    with pytest.raises(UsageError, match=rf"prompt 1 holds token id {bad}"):
        runner.generate_ids([[1, 5], [1, bad]], max_new_tokens=2)


def test_chat_template_missing_from_tokenizer_config(tiny_checkpoint, tmp_path: Path) -> None:
    from model_zoo.errors import UsageError

    src = tiny_checkpoint("internlm2", shards=1)
    path = _edit_tokenizer_config(src, tmp_path / "ck", lambda c: c.pop("chat_template"))
    runner, reference = load(path, device="cpu"), load(src, device="cpu")
    msgs = [{"role": "user", "content": "hi"}]
    # the runner falls back to the family's ChatML template: same ids as the shipped template
    assert runner.chat_ids(msgs) == reference.chat_ids(msgs)
    assert runner.profile.stop_token_ids == reference.profile.stop_token_ids
    # the bare tokenizer has no template to use: an error, not an empty rendering
    with pytest.raises(UsageError, match="no chat template"):
        runner.tokenizer.apply_chat_template(msgs, add_generation_prompt=True)
    assert runner.tokenizer.apply_chat_template(msgs, template=runner.profile.template).endswith(
        "hi<|im_end|>\n"
    )


def test_tied_head_runs_on_the_embeddings_device_when_layers_are_split(
    tiny_checkpoint, tmp_path: Path
) -> None:
    # Two distinct device names stand in for two GPUs (the bytes stay on the CPU either way);
    # what matters is that the head is placed, and its input sent, where the tied weight lives.
    from model_zoo.runner.config import read_config
    from model_zoo.runner.devices import dispatch, plan_placement
    from model_zoo.runner.loader import load_native

    path = _copy(tiny_checkpoint("internlm3", shards=1, dtype="float32"), tmp_path / "ck")
    _set_config(path, tie_word_embeddings=True)
    sd = load_file(path / "model.safetensors")
    del sd["lm_head.weight"]
    save_file(sd, str(path / "model.safetensors"), metadata={"format": "pt"})
    spec = read_config(path)
    devices = (torch.device("cpu"), torch.device("cpu", 0))
    placement = plan_placement({"embed": 10, "layer": 10, "final": 10}, spec.num_layers, devices)
    assert placement.device_for("lm_head.weight") == devices[1]  # the split puts the head last
    model = load_native(path, spec, placement, torch.float32)
    assert placement.device_for("lm_head.weight") == placement.device_for(
        "model.embed_tokens.weight"
    )
    assert model.lm_head.weight is model.model.embed_tokens.weight
    dispatch(model, placement)
    with torch.inference_mode():
        assert model(torch.tensor([[1, 5, 9]])).logits.shape == (1, 3, spec.vocab_size)


def test_awq_checkpoint_is_named_as_pre_quantized_not_as_missing_tensors(
    tiny_checkpoint, tmp_path: Path
) -> None:
    path = _copy(tiny_checkpoint("internlm2", shards=1, dtype="float16"), tmp_path / "ck")
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


def test_shard_holding_tensors_its_index_does_not_list_is_named(
    tiny_checkpoint, tmp_path: Path
) -> None:
    path = _copy(tiny_checkpoint("internlm2", shards=2), tmp_path / "ck")
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
