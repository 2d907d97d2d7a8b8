"""``model-zoo score``, ``compare`` and ``serve-reward`` on the tiny reward checkpoint."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fixtures_reward import conv

from model_zoo.cli.main import main
from model_zoo.reward.model import RewardModel

CONVS = [conv("hi", "hello"), conv("2+2?", "4"), conv("2+2?", "5")]
OPTS = ["--device", "cpu", "--dtype", "float32"]


def test_score_writes_jsonl_in_input_order(
    tmp_path: Path, tiny_reward_fp32: Path, tiny_rm: RewardModel
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps(CONVS[0])
        + "\n\n"
        + json.dumps({"id": "b", "messages": CONVS[1]})
        + "\n"
        + json.dumps(CONVS[2])
        + "\n"
    )
    out = tmp_path / "out" / "scores.jsonl"
    assert (
        main(
            ["score", str(tiny_reward_fp32), "--input", str(src), "--output", str(out), "-q", *OPTS]
        )
        == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1, 2] and rows[1]["id"] == "b" and "id" not in rows[0]
    assert [r["score"] for r in rows] == pytest.approx(tiny_rm.score_batch(CONVS), abs=1e-5)
    assert [p.name for p in out.parent.iterdir()] == ["scores.jsonl"]  # no temp file left behind


def test_score_refuses_a_bad_line_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(CONVS[0]) + "\n" + '[{"role": "user"}]\n')
    assert main(["score", str(tmp_path / "no-such-model-dir"), "--input", str(src)]) == 2
    err = capsys.readouterr().err
    assert f"{src}:2[0].content" in err.replace("\n", "")


def test_compare_json(
    tmp_path: Path, tiny_reward_fp32: Path, tiny_rm: RewardModel, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(CONVS[1]))
    b.write_text(json.dumps({"messages": CONVS[2]}))
    assert main(["compare", str(tiny_reward_fp32), str(a), str(b), "--json", *OPTS]) == 0
    out = json.loads(capsys.readouterr().out)
    sa, sb = tiny_rm.score_batch(CONVS[1:])
    assert out["a"] == pytest.approx(sa, abs=1e-5) and out["b"] == pytest.approx(sb, abs=1e-5)
    assert out["better"] == ("a" if sa > sb else "b") and out["a_better"] is (sa > sb)


def test_serve_reward_process_with_api_key_and_sigterm(
    tiny_reward_fp32: Path, tiny_rm: RewardModel
) -> None:
    env = {**os.environ, "MODEL_ZOO_API_KEY": "k-123", "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "model_zoo.cli.main",
            "serve-reward",
            str(tiny_reward_fp32),
            "--port",
            "0",
            *OPTS,
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        url = None
        deadline = time.monotonic() + 180
        assert proc.stderr is not None
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            found = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
            url = found.group(1) if found else None
        assert url, "the server never said where it listens"
        body = {"conversations": CONVS}
        assert httpx.post(url + "/v1/score", json=body, timeout=30).status_code == 401
        r = httpx.post(
            url + "/v1/score", json=body, headers={"Authorization": "Bearer k-123"}, timeout=30
        )
        assert r.json()["scores"] == pytest.approx(tiny_rm.score_batch(CONVS), abs=1e-5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert "stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _serve(checkpoint: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "model_zoo.cli.main",
            "serve-reward",
            str(checkpoint),
            "--port",
            "0",
            *OPTS,
            *extra,
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        found = re.search(r"on (http://127\.0\.0\.1:(\d+))", line)
        if found:
            return proc, found.group(2)
        if not line:
            break
    proc.kill()
    raise AssertionError("the server never said where it listens")


def _stalled_request(port: str) -> socket.socket:
    """A request whose body never finishes: the drain waits for it."""
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
    s.sendall(b'POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"texts"')
    time.sleep(0.3)
    return s


def test_serve_reward_drain_timeout_and_a_second_signal(tiny_reward_fp32: Path) -> None:
    proc, port = _serve(tiny_reward_fp32, "--drain-timeout", "1")
    try:
        stalled = _stalled_request(port)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert proc.stderr is not None
        assert "1 connection(s) still had requests unanswered" in proc.stderr.read()
        stalled.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    proc, port = _serve(tiny_reward_fp32, "--drain-timeout", "120")
    try:
        stalled = _stalled_request(port)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert proc.poll() is None  # draining, waiting for the stalled request
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130 and time.monotonic() - start < 10
        assert proc.stderr is not None and "stopping at once" in proc.stderr.read()
        stalled.close()
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("flag", ["--request-timeout", "--drain-timeout"])
def test_serve_reward_refuses_a_timeout_that_is_not_positive(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from model_zoo.cli.main import main

    assert main(["serve-reward", "internlm2-1_8b-reward", flag, "0"]) == 2
    assert flag in capsys.readouterr().err
