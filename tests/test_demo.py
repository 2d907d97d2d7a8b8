"""`model-zoo demo` runs the whole offline flow through the real console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_json_through_console_script(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("model-zoo")
    out = subprocess.run(
        [str(exe), "demo", "--json", "--workdir", str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    titles = [s["title"] for s in report["steps"]]
    assert any(t.startswith("Pulled InternLM2.5-1.8B-Chat") for t in titles)
    assert any("Verified" in t for t in titles)
    # the second pull reused the store: nothing downloaded
    again = next(s for s in report["steps"] if s["title"] == "Pulled it again")
    assert again["detail"][0].startswith("0 bytes downloaded")
    # the checkpoint really is in the work dir's store, complete with its manifest
    chat = Path(report["chat_path"])
    assert chat.is_relative_to(tmp_path / "work" / "store")
    assert (chat / "config.json").is_file() and any(chat.glob("*.safetensors"))
    assert len(report["scores"]) == 2 and all(isinstance(x, float) for x in report["scores"])
    assert report["scores"][0] != report["scores"][1]
    assert isinstance(report["reply"], str)


def test_demo_workdir_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("model-zoo")
    target = tmp_path / "a-file"
    target.write_text("keep me", encoding="utf-8")
    out = subprocess.run(
        [str(exe), "demo", "--workdir", str(target)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    assert f"cannot use {target} as the demo's work directory" in out.stderr
    assert target.read_text(encoding="utf-8") == "keep me"
