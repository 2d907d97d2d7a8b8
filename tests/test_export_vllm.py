"""``export_vllm`` and its CLI: what the exported directory holds, and that transformers reads it
without checkpoint code (vLLM itself runs on the exports in ``test_vllm_*.py``)."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from model_zoo.cli.main import main
from model_zoo.errors import ExportTargetError, IncompatibleCheckpointError
from model_zoo.export.serve import engine_command
from model_zoo.export.vllm import EXPORT_RECORD, export_vllm


@pytest.fixture
def source(tiny_internlm2: Path, tmp_path: Path) -> Path:
    src = tmp_path / "ckpt"
    shutil.copytree(tiny_internlm2, src)
    (src / "modeling_internlm2.py").write_text("raise SystemExit('checkpoint code ran')\n")
    return src


def test_export_links_weights_and_writes_configs_without_code(source: Path, tmp_path: Path) -> None:
    result = export_vllm(source, tmp_path / "out")
    out = result.path
    assert out == (tmp_path / "out").resolve() and not result.reused
    for weights in source.glob("*.safetensors"):
        assert (out / weights.name).stat().st_ino == weights.stat().st_ino  # a hard link, no copy
    assert result.copied == 0 and result.linked >= 3
    assert not list(out.rglob("*.py"))
    config = json.loads((out / "config.json").read_text())
    original = json.loads((source / "config.json").read_text())
    assert "auto_map" not in config and config["model_type"] == "internlm2"
    expected = {k: v for k, v in original.items() if k != "auto_map"}
    assert original["rope_scaling"]["type"] == "dynamic"
    assert config == {
        **expected,
        "rope_scaling": None,
    }  # vLLM's dynamic NTK is NaN past max positions
    assert any("max_position_embeddings (64 tokens)" in note for note in result.notes)
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    assert (
        tok_config["tokenizer_class"] == "PreTrainedTokenizerFast" and "auto_map" not in tok_config
    )
    record = json.loads((out / EXPORT_RECORD).read_text())
    assert (
        record["source"] == str(source.resolve())
        and record["tokenizer_texts"] == result.tokenizer_texts > 50
    )
    assert not list(tmp_path.glob(".out.partial-*"))


def test_transformers_reads_the_export_without_remote_code(source: Path, tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoTokenizer

    from model_zoo.export.hf_config import register
    from model_zoo.runner.api import load

    out = export_vllm(source, tmp_path / "out").path
    register()
    config = AutoConfig.from_pretrained(out)  # no trust_remote_code: model-zoo's class answers
    assert type(config).__name__ == "InternLM2Config" and config.num_key_value_heads == 2
    hf = AutoTokenizer.from_pretrained(out)
    runner_tok = load(source, device="cpu", dtype="float32").tokenizer
    native_on_export = load(
        out, device="cpu", dtype="float32"
    ).tokenizer  # model-zoo reads its export too
    for text in ["hello world", "上海 <|im_start|>user\nhi<|im_end|>\n", "  x\n\ty"]:
        assert hf(text)["input_ids"] == runner_tok.encode(text) == native_on_export.encode(text)
        assert hf.decode(runner_tok.encode(text)) == runner_tok.decode(runner_tok.encode(text))


def test_chat_template_and_sampling_match_the_runner(source: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from model_zoo.runner.api import load

    out = export_vllm(source, tmp_path / "out").path
    runner = load(source, device="cpu", dtype="float32")
    hf = AutoTokenizer.from_pretrained(out)
    for convo in (
        [{"role": "user", "content": "Hi"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
    ):
        text = hf.apply_chat_template(convo, add_generation_prompt=True, tokenize=False)
        assert hf(text, add_special_tokens=False)["input_ids"] == runner.chat_ids(
            convo
        )  # the default system prompt is in the template
    gen = json.loads((out / "generation_config.json").read_text())
    s = runner.settings()
    assert (gen["temperature"], gen["top_p"], gen["max_new_tokens"]) == (
        s.temperature,
        s.top_p,
        s.max_new_tokens,
    )
    assert gen["eos_token_id"] == list(runner.profile.stop_token_ids)


def test_reward_export_appends_the_reward_token(
    tiny_internlm2_reward: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from model_zoo.reward.api import load_reward

    out = export_vllm(tiny_internlm2_reward, tmp_path / "out").path
    hf = AutoTokenizer.from_pretrained(out)
    convo = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    with load_reward(tiny_internlm2_reward, device="cpu", dtype="float32") as rm:
        expected = rm.encode_conversations([convo])[0]
        text = rm.codec.render(convo)
    assert hf(text)["input_ids"] == expected  # /pooling "input": the tokenizer appends it
    rendered = hf.apply_chat_template(convo, tokenize=False)
    assert (
        hf(rendered, add_special_tokens=False)["input_ids"] == expected
    )  # "messages": the template does
    assert not (out / "generation_config.json").exists()


def test_exporting_again_reuses_and_a_changed_source_needs_force(
    source: Path, tmp_path: Path
) -> None:
    first = export_vllm(source, tmp_path / "out")
    again = export_vllm(source, tmp_path / "out")
    assert again.reused and again.path == first.path
    (source / "generation_config.json").write_text("{}\n")
    with pytest.raises(ExportTargetError, match="earlier state"):
        export_vllm(source, tmp_path / "out")
    assert not export_vllm(source, tmp_path / "out", force=True).reused


def test_refused_targets(source: Path, tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ExportTargetError, match="not a model-zoo export"):
        export_vllm(source, tmp_path / "busy")
    with pytest.raises(ExportTargetError, match="inside the checkpoint"):
        export_vllm(source, source / "export")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_copies_where_links_cannot_be_made(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    result = export_vllm(source, tmp_path / "out")
    assert result.linked == 0 and result.copied >= 3 and result.notes
    weights = next(source.glob("*.safetensors"))
    assert (result.path / weights.name).read_bytes() == weights.read_bytes()


def test_internlm_v1_is_refused_with_the_reason(tiny_internlm1: Path, tmp_path: Path) -> None:
    with pytest.raises(IncompatibleCheckpointError, match="not a vLLM architecture"):
        export_vllm(tiny_internlm1, tmp_path / "out")


def test_cli_export_prints_the_directory_last(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "vllm", str(source), str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str((tmp_path / "out").resolve())
    assert main(["export", "vllm", str(source), str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["reused"] is True


def test_cli_serve_dry_run_builds_engine_commands(
    source: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODEL_ZOO_HOME", str(tmp_path / "home"))
    assert (
        main(
            [
                "serve",
                str(source),
                "--backend",
                "vllm",
                "--port",
                "8123",
                "--dry-run",
                "--",
                "--max-model-len",
                "64",
            ]
        )
        == 0
    )
    cmd = capsys.readouterr().out.strip()
    assert (
        "vllm.entrypoints.openai.api_server --model" in cmd
        and "--port 8123" in cmd
        and cmd.endswith("--max-model-len 64")
    )
    assert str(tmp_path / "home" / "exports" / "vllm") in cmd
    assert main(["serve", str(source), "--backend", "lmdeploy", "--dry-run"]) == 0
    assert "model_zoo.export.launch lmdeploy serve api_server" in capsys.readouterr().out
    assert main(["serve", str(source), "--backend", "tgi", "--dry-run"]) == 2
    assert (
        main(["serve", str(source), "--backend", "vllm", "--dry-run", "--", "--trust-remote-code"])
        == 2
    )


def test_reward_models_are_served_for_pooling(tmp_path: Path) -> None:
    cmd = engine_command(
        "vllm", tmp_path, python="py", host="127.0.0.1", port=1, model="m", reward=True
    )
    assert cmd[-4:] == ["--runner", "pooling", "--pooler-config", '{"use_activation": false}']
    assert not any("trust" in part for part in cmd)


def test_gpu_check_reports_engines_as_skipped_off_gpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "gpu_check", Path(__file__).parents[1] / "bench" / "gpu_check.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.main(
        [
            "--tiny",
            "--device",
            "cpu",
            "--new-tokens",
            "4",
            "--batch",
            "2",
            "--shards",
            "2",
            "--workdir",
            str(tmp_path),
        ]
    )
    assert result["engines"] == {
        "vllm": {"skipped": "needs a CUDA GPU"},
        "lmdeploy": {"skipped": "needs a CUDA GPU"},
    }
    assert list(tmp_path.iterdir()) == []
