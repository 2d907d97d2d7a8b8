"""``model-zoo run`` and ``model-zoo chat`` through the installed console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
