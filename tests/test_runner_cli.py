"""``model-zoo run`` and ``model-zoo chat`` through the installed console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from model_zoo.cli.main import main
from model_zoo.runner.api import load

GEN = ["--greedy", "-n", "6", "--device", "cpu"]


def console_script() -> list[str]:
    exe = Path(sys.executable).with_name("model-zoo")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("model-zoo")
    if found is None:
        pytest.fail("the model-zoo console script is not installed (pip install -e .)")
    return [found]


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [*console_script(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
        env=env,
    )


@pytest.fixture(scope="module")
def ck(tiny_checkpoint) -> Path:
    return tiny_checkpoint("internlm2", dtype="float32")


@pytest.mark.slow
def test_run_prints_one_reply_streamed_or_not(ck: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from model_zoo.cli.main import main

    runner = load(ck, device="cpu")
    want = runner.chat("Hello there", do_sample=False, max_new_tokens=6)
    thinking = runner.chat("Hello there", thinking=True, do_sample=False, max_new_tokens=6)
    assert want != thinking  # the system prompt really changes the reply
    assert (
        main(["run", str(ck), "Hello there", *GEN]) == 0
    )  # in process: same code, no startup cost
    assert capsys.readouterr().out == want + "\n"
    streamed = run_cli("run", str(ck), "Hello there", "--stream", "--thinking", *GEN)
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == thinking + "\n"


@pytest.mark.slow
def test_chat_keeps_history_and_handles_reset_system_and_eof(ck: Path) -> None:
    runner = load(ck, device="cpu")
    opts = {"do_sample": False, "max_new_tokens": 6}
    r1 = runner.chat([{"role": "user", "content": "first"}], **opts)
    r2 = runner.chat(
        [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": r1},
            {"role": "user", "content": "second"},
        ],
        **opts,
    )
    r3 = runner.chat("third", system="Be terse.", **opts)
    r4 = runner.chat("fourth", system="Be terse.", **opts)
    stdin = (
        "first\nsecond\n/system Be terse.\nthird\n/reset\nfourth\n"  # then end of input (Ctrl-D)
    )
    out = run_cli("chat", str(ck), *GEN, stdin=stdin)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{r1}\n{r2}\n{r3}\n{r4}\n"
    assert "history cleared" in out.stderr and "system prompt set" in out.stderr


def test_unknown_path_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from model_zoo.cli.main import main

    assert main(["run", str(tmp_path / "nope" / "nothing"), "hi", "--device", "cpu"]) == 2
    assert "no such checkpoint directory" in capsys.readouterr().err


# ---------------------------------------------- refused before loading, and the CLI's own messages


def test_run_refuses_a_reward_model_before_loading_and_names_the_commands(
    tiny_reward_fp32: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(tiny_reward_fp32), "hi", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "reward model" in err and "model-zoo score" in err and "loading" not in err


def test_run_refuses_a_reward_model_name_before_pulling(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODEL_ZOO_OFFLINE", "1")
    assert main(["run", "internlm2-1_8b-reward", "hi"]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "reward model" in err and "model-zoo score" in err


def test_run_cli_refuses_a_negative_temperature(
    tiny_checkpoint, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    ck = tiny_checkpoint("internlm2", dtype="float32")
    assert main(["run", str(ck), "hi", "-t", "-0.5", "-n", "2", "--device", "cpu"]) == 2
    assert "temperature must be >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["run", "PLACEHOLDER", "hi"], ["chat", "PLACEHOLDER"]])
def test_run_and_chat_check_generation_options_before_loading(
    tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(tmp_path / "no-such-model") if a == "PLACEHOLDER" else a for a in command]
    assert main([*argv, "--top-p", "2"]) == 2
    err = capsys.readouterr().err
    assert "top_p must be in (0, 1], got 2" in err.replace("\n", " ")


def test_chat_commands_are_parsed_by_their_first_word(
    tiny_checkpoint,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
    capsys: pytest.CaptureFixture[str],
) -> None:
    import io

    ck = tiny_checkpoint("internlm2", dtype="float32")
    monkeypatch.setattr("sys.stdin", io.StringIO("/reset all\n/systemfoo\n/system  Be brief.\n"))
    assert main(["chat", str(ck), "--device", "cpu", "--greedy", "-n", "1"]) == 0
    err = capsys.readouterr().err
    assert "unknown command /reset" not in err and "(history cleared)" in err
    assert "unknown command /systemfoo" in err
    assert "(system prompt set; history cleared)" in err


def test_cli_warnings_keep_square_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    from model_zoo.cli.cmd_run import cli_warnings

    with cli_warnings():
        warnings.warn("checkpoint /data/run[1]/ckpt looks odd", UserWarning, stacklevel=1)
    assert "warning: checkpoint /data/run[1]/ckpt looks odd" in capsys.readouterr().err.replace(
        "\n", ""
    )
