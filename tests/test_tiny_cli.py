"""`model-zoo dev make-tiny` and `make-hub-tree` through the installed console script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model_zoo.testing.tiny import make_tiny


def _model_zoo(*args: str) -> subprocess.CompletedProcess[str]:
    script = shutil.which("model-zoo", path=str(Path(sys.executable).parent)) or "model-zoo"
    return subprocess.run([script, *args], capture_output=True, text=True, timeout=120)


def test_make_tiny_writes_the_same_files_as_the_api(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = _model_zoo(
        "dev", "make-tiny", "internlm3", str(out), "--seed", "3", "--shards", "1", "--json"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["path"] == str(out) and "model.safetensors" in report["files"]
    assert report["special_token_ids"]["<|im_end|>"] > 2
    api = make_tiny("internlm3", tmp_path / "api", seed=3, shards=1)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in api.iterdir())
    assert all((out / p.name).read_bytes() == p.read_bytes() for p in api.iterdir())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dev", "make-tiny", "llama"], "unknown tiny architecture"),
        (["dev", "make-tiny", "internlm2", "--shards", "0"], "shards must be"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    result = _model_zoo(*args[:3], str(tmp_path / "x"), *args[3:])
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_non_empty_directory_needs_force(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    refused = _model_zoo("dev", "make-tiny", "internlm2", str(tmp_path))
    assert refused.returncode == 2 and "--force" in refused.stderr
    assert _model_zoo("dev", "make-tiny", "internlm2", str(tmp_path), "--force").returncode == 0
    assert (tmp_path / "keep.txt").read_text() == "mine" and (tmp_path / "config.json").is_file()


def test_make_hub_tree(tmp_path: Path) -> None:
    result = _model_zoo("dev", "make-hub-tree", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    repos = json.loads(result.stdout)["repos"]
    chat = "internlm/internlm2_5-1_8b-chat"
    assert repos[chat] == str(tmp_path / chat)
    assert (tmp_path / "Intern/internlm3-8b-instruct/tokenizer.model").is_file()


def test_make_hub_tree_for_chosen_models(tmp_path: Path) -> None:
    result = _model_zoo(
        "dev", "make-hub-tree", str(tmp_path), "--model", "internlm2-math-plus-1_8b", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(result.stdout)["repos"]) == [
        "Shanghai_AI_Laboratory/internlm2-math-plus-1_8b",
        "internlm/internlm2-math-plus-1_8b",
    ]


@pytest.mark.slow
def test_make_tiny_says_how_to_run_and_serve_the_result(tmp_path: Path) -> None:
    helped = _model_zoo("dev", "make-tiny", "--help")
    assert helped.returncode == 0
    assert "make-hub-tree" in helped.stdout and "serve-mirror" in helped.stdout
    made = _model_zoo("dev", "make-tiny", "internlm2", str(tmp_path / "t"))
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines() == [made.stdout.splitlines()[0]]  # stdout: the result line only
    hint = made.stderr.splitlines()[-1]
    assert f"model-zoo run {tmp_path / 't'}" in hint and "serve-mirror" in hint
    # the command it prints works as printed
    ran = _model_zoo("run", str(tmp_path / "t"), "Hello", "-n", "4", "--device", "cpu")
    assert ran.returncode == 0, ran.stderr
