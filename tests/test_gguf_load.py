"""Native loading of GGUF files: logits against the HuggingFace checkpoint, tokenizer ids, errors.

The GGUF files are written from tiny HF checkpoints the way llama.cpp's converter lays them out
(``model_zoo.testing.tiny_gguf``); the reference is the same checkpoint loaded by the native HF
loader, which other tests hold to InternLM's reference implementation. Each format has the
tolerance its rounding allows; a wrong name, split or permutation is far outside all of them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_gguf import tiny_gguf  # noqa: F401  (fixture)

import model_zoo
from model_zoo.errors import IncompatibleCheckpointError, MissingDependencyError, UsageError
from model_zoo.runner.api import load
from model_zoo.runner.gguf.layout import permute, unpermute
from model_zoo.runner.gguf.load import load_gguf
from model_zoo.runner.gguf.metadata import read_gguf
from model_zoo.runner.tokenizer import InternLMTokenizer
from model_zoo.testing.tiny_corpus import corpus_lines

ARCHS = ("internlm2", "internlm3")
PROMPT = "The quick brown fox jumps over the lazy dog. 上海人工智能实验室 1234"

# Per format: F32 must give the same logits (absolute 1e-5); the others are bounded by
# ||got - want|| / ||want||. F16 holds the bfloat16 weights exactly, Q8_0 keeps ~8 bits and
# Q4_K_M ~4.5 (measured on these random weights: 0, ~0.01 and ~0.12). Un-permuting nothing (a
# layout bug) measures ~0.37 here, since random tiny weights make attention nearly uniform: the
# F32 test is the strict check of the layout, the others check each format's dequantization.
TOLERANCE = {"f32": 1e-5, "f16": 1e-3, "q8_0": 0.05, "q4_k_m": 0.2}


def _logits(runner, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return runner.model(torch.tensor([ids])).logits[0].float()


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).norm() / want.norm())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("outtype", ["f32", "f16", "q8_0"])
def test_logits_match_the_checkpoint(tiny_gguf, arch: str, outtype: str) -> None:  # noqa: F811
    hf_dir, path = tiny_gguf(arch, outtype)
    ref = load(hf_dir, device="cpu", dtype="float32")
    got_runner = load(path, device="cpu", dtype="float32")
    ids = ref.tokenizer.encode(PROMPT)
    want, got = _logits(ref, ids), _logits(got_runner, ids)
    assert got.shape == want.shape
    if outtype == "f32":
        torch.testing.assert_close(got, want, atol=TOLERANCE["f32"], rtol=0)
    else:
        assert _relative(got, want) < TOLERANCE[outtype]
    assert got_runner.spec.family == arch
    assert got_runner.path == path


@pytest.mark.parametrize("arch", ARCHS)
def test_kquant_file_is_close_and_reads_both_block_types(tiny_gguf, arch: str) -> None:  # noqa: F811
    hf_dir, path = tiny_gguf(arch, "q4_k_m", kquant_dims=True)
    kinds = {t.qtype for t in read_gguf(path).tensors.values()}
    assert {"Q4_K", "Q6_K", "F32"} <= kinds
    ref = load(hf_dir, device="cpu", dtype="float32")
    runner = load(path, device="cpu", dtype="float32")
    ids = ref.tokenizer.encode(PROMPT)
    rel = _relative(_logits(runner, ids), _logits(ref, ids))
    assert rel < TOLERANCE["q4_k_m"]
    # and it is not merely "close to anything": the F32 file of the same checkpoint is exact
    _, f32 = tiny_gguf(arch, "f32", kquant_dims=True)
    exact = load(f32, device="cpu", dtype="float32")
    torch.testing.assert_close(_logits(exact, ids), _logits(ref, ids), atol=1e-5, rtol=0)


def test_a_wrong_layout_is_far_outside_the_tolerances(tiny_gguf) -> None:  # noqa: F811
    """The tolerance checks can fail: q and k loaded without undoing the permutation are far off."""
    from model_zoo.runner.gguf import load as gguf_load

    hf_dir, path = tiny_gguf("internlm2", "q8_0")
    ref = load(hf_dir, device="cpu", dtype="float32")
    original = gguf_load.unpermute
    try:
        gguf_load.unpermute = lambda values, heads: values  # type: ignore[assignment]
        broken = load(path, device="cpu", dtype="float32")
    finally:
        gguf_load.unpermute = original
    ids = ref.tokenizer.encode(PROMPT)
    off = _relative(_logits(broken, ids), _logits(ref, ids))
    assert off > 5 * TOLERANCE["q8_0"] and off > TOLERANCE["q4_k_m"]


@pytest.mark.parametrize("arch", ARCHS)
def test_tokenizer_ids_equal_the_native_tokenizer(tiny_gguf, arch: str) -> None:  # noqa: F811
    hf_dir, path = tiny_gguf(arch, "q8_0")
    native = InternLMTokenizer.from_pretrained(hf_dir)
    runner = load(path, device="cpu", dtype="float32")
    tok = runner.tokenizer
    texts = corpus_lines() + [
        "  two leading spaces and trailing  ",
        "line one\nline two\n\n\ttabbed",
        "emoji 🤖 and rare ✓ ∑ ǅ characters",
        "<|im_start|>user\nHi 你好<|im_end|>\n<|im_start|>assistant\n",
        "x<|im_end|><|im_start|>y",
        "a<s>b</s>c <unk>",
        "[UNUSED_TOKEN_130] and <|im_start",
        "",
        "<restate>text</restate><planning>p</planning>",
    ]
    for text in texts:
        assert tok.encode(text) == native.encode(text), text
        assert tok.encode(text, add_special_tokens=False) == native.encode(
            text, add_special_tokens=False
        ), text
        ids = native.encode(text, add_special_tokens=False)
        assert tok.decode(ids) == native.decode(ids), text
    convo = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi 你好"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "2+2?"},
    ]
    assert runner.chat_ids(convo) == native.apply_chat_template(
        convo, add_generation_prompt=True, tokenize=True
    )
    assert tok.bos_token_id == native.bos_token_id and tok.eos_token_id == native.eos_token_id
    assert tok.vocab_size == native.vocab_size


@pytest.mark.parametrize("arch", ARCHS)
def test_chat_profile_and_greedy_reply_match_the_checkpoint(tiny_gguf, arch: str) -> None:  # noqa: F811
    hf_dir, path = tiny_gguf(arch, "f32")
    ref = load(hf_dir, device="cpu", dtype="float32")
    runner = model_zoo.load(str(path), device="cpu", dtype="float32")
    assert set(runner.profile.stop_token_ids) == set(ref.profile.stop_token_ids)
    assert runner.profile.template == ref.profile.template
    assert runner.profile.generation == ref.profile.generation
    # within context_length (64 here) the rotary embedding needs no scaling
    short = {"max_new_tokens": 12, "do_sample": False, "system": ""}
    assert (
        len(ref.chat_ids("Tell me about Shanghai.", system="")) + 12
        <= ref.spec.max_position_embeddings
    )
    assert runner.chat("Tell me about Shanghai.", **short) == ref.chat(
        "Tell me about Shanghai.", **short
    )
    # past it, GGUF has no dynamic NTK scaling (the converter drops it) until it is restored
    long = {"max_new_tokens": 12, "do_sample": False}  # the default system prompt: > 64 tokens
    assert ref.spec.rope_scaling is not None and runner.spec.rope_scaling is None
    restored = load_gguf(path, device="cpu", dtype="float32", rope_scaling=ref.spec.rope_scaling)
    assert restored.chat("Tell me about Shanghai.", **long) == ref.chat(
        "Tell me about Shanghai.", **long
    )


def test_a_directory_with_one_gguf_file_loads_it(tiny_gguf, tmp_path: Path) -> None:  # noqa: F811
    _, path = tiny_gguf("internlm2", "q8_0")
    shutil.copy(path, tmp_path / path.name)
    runner = load(tmp_path, device="cpu", dtype="float32")
    assert runner.path == tmp_path / path.name
    shutil.copy(path, tmp_path / "second.gguf")
    with pytest.raises(UsageError, match="several GGUF files"):
        load(tmp_path, device="cpu")


def test_permutation_round_trip() -> None:
    w = np.arange(4 * 16 * 3, dtype=np.float32).reshape(4 * 16, 3)
    assert np.array_equal(unpermute(permute(w, 4), 4), w)
    assert not np.array_equal(permute(w, 4), w)


def test_not_a_gguf_file_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(IncompatibleCheckpointError, match="not a readable GGUF"):
        load(bogus, device="cpu")
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(UsageError, match="not a GGUF file"):
        load(text, device="cpu", gguf="q4_k_m")


def test_a_llama_gguf_that_is_not_internlm_is_refused(tiny_gguf, tmp_path: Path) -> None:  # noqa: F811
    from model_zoo.testing.tiny_gguf import write_gguf

    hf_dir, _ = tiny_gguf("internlm3", "f32")
    other = tmp_path / "some-model"
    shutil.copytree(hf_dir, other)
    config = (other / "tokenizer_config.json").read_text().replace("<restate>", "<other>")
    (other / "tokenizer_config.json").write_text(config)
    path = write_gguf(other, tmp_path / "other.gguf", "f32", name="Some Llama")
    with pytest.raises(IncompatibleCheckpointError, match="does not say it is InternLM"):
        load(path, device="cpu")


def test_a_missing_tensor_is_named_before_loading(tiny_gguf, tmp_path: Path) -> None:  # noqa: F811
    import gguf

    _, path = tiny_gguf("internlm2", "f32")
    reader = gguf.GGUFReader(str(path))
    writer = gguf.GGUFWriter(str(tmp_path / "cut.gguf"), "internlm2")
    for key, fld in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value = fld.contents()
        if isinstance(value, list):
            writer.add_array(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        elif isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, float):
            writer.add_float32(key, value)
        else:
            writer.add_uint32(key, int(value))
    for t in reader.tensors:
        if t.name != "blk.1.ffn_up.weight":
            writer.add_tensor(t.name, np.array(t.data), raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(
        IncompatibleCheckpointError, match=r"missing tensor\(s\) blk\.1\.ffn_up\.weight"
    ):
        load(tmp_path / "cut.gguf", device="cpu")


def test_quantization_option_is_refused_for_gguf(tiny_gguf) -> None:  # noqa: F811
    _, path = tiny_gguf("internlm2", "q8_0")
    with pytest.raises(UsageError, match="already quantized"):
        load(path, device="cpu", quantization="4bit")
    with pytest.raises(UsageError, match="does not read GGUF"):
        load(path, device="cpu", backend="vllm")


def test_llama_cpp_backend_names_its_package_when_missing(
    tiny_gguf,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    _, path = tiny_gguf("internlm2", "q8_0")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llama_cpp" else real(name, *a),
    )
    with pytest.raises(MissingDependencyError, match="llama-cpp-python"):
        load(path, backend="llama.cpp")


def test_cli_run_answers_from_a_gguf_file(tiny_gguf, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    from model_zoo.cli.main import main

    hf_dir, path = tiny_gguf("internlm3", "f32")
    ref = load(hf_dir, device="cpu", dtype="float32")
    want = ref.chat("Hello", max_new_tokens=5, do_sample=False, system="")
    assert (
        main(["run", str(path), "Hello", "--device", "cpu", "--greedy", "-n", "5", "--system", ""])
        == 0
    )
    assert capsys.readouterr().out.rstrip("\n") == want
    assert main(["run", str(path), "Hello", "--device", "cpu", "--backend", "vllm"]) == 2
