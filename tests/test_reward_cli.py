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
import warnings
from pathlib import Path

import httpx
import pytest
from fixtures_reward import conv, make_fake_rm

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


@pytest.mark.slow
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


@pytest.mark.slow
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


# --------------------------------------------- bad input files and options, refused before loading


def test_score_cli_refuses_a_lone_surrogate_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('[{"role": "user", "content": "\\ud800"}]\n')
    assert main(["score", str(tmp_path / "no-such-model"), "--input", str(src)]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert f"{src}:1[0].content" in err and "Traceback" not in err


def test_score_cli_input_keys_never_replace_the_computed_index_and_score(
    tmp_path: Path, tiny_reward_fp32: Path, tiny_rm: RewardModel
) -> None:
    messages = conv("2+2?", "4")
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(
        json.dumps({"index": "q-17", "score": 9.5, "id": 3, "messages": messages}) + "\n"
    )
    assert main(["score", str(tiny_reward_fp32), "-i", str(src), "-o", str(out), "-q", *OPTS]) == 0
    row = json.loads(out.read_text())
    assert row["index"] == 0 and row["score"] == pytest.approx(tiny_rm.score(messages), abs=1e-5)
    assert row["id"] == 3


def test_score_cli_refuses_an_output_directory_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(conv("a", "b")) + "\n")
    assert (
        main(["score", str(tmp_path / "no-such-model"), "-i", str(src), "-o", str(tmp_path)]) == 2
    )
    err = capsys.readouterr().err
    assert "is a directory" in err and "Traceback" not in err


def test_score_cli_write_failure_is_a_clear_error(
    tmp_path: Path, tiny_reward_fp32: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(conv("a", "b")) + "\n")
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert (
        main(
            [
                "score",
                str(tiny_reward_fp32),
                "-i",
                str(src),
                "-o",
                str(blocker / "out.jsonl"),
                "-q",
                *OPTS,
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert (
        f"cannot write {blocker / 'out.jsonl'}" in err.replace("\n", "") and "Traceback" not in err
    )


@pytest.mark.parametrize("value", ["0", "-3"])
def test_score_cli_refuses_a_max_length_below_one(
    tmp_path: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(conv("a", "b")) + "\n")
    assert (
        main(["score", str(tmp_path / "no-such-model"), "-i", str(src), "--max-length", value]) == 2
    )
    assert "max_length must be at least 1" in capsys.readouterr().err


def test_score_cli_names_the_file_and_line_of_an_overlong_conversation(
    tmp_path: Path, tiny_reward_fp32: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    short, long = conv("a", "b"), conv("a " * 200, "b")
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(c) for c in [short] * 300 + [long]) + "\n")
    assert main(["score", str(tiny_reward_fp32), "-i", str(src), "-q", *OPTS]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert f"{src}:301" in err and "--truncate" in err


def test_compare_cli_names_the_file_of_an_overlong_conversation(
    tmp_path: Path, tiny_reward_fp32: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(conv("a", "b")))
    b.write_text(json.dumps(conv("a " * 200, "b")))
    assert main(["compare", str(tiny_reward_fp32), str(a), str(b), *OPTS]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert str(b) in err and "--truncate" in err


def test_score_and_compare_cli_refuse_a_file_that_is_not_utf8(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "latin1.jsonl"
    src.write_bytes('[{"role": "user", "content": "caf\u00e9"}]\n'.encode("latin-1"))
    assert main(["score", str(tmp_path / "no-such-model"), "-i", str(src)]) == 2
    assert "is not UTF-8 text" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "no-such-model"), str(src), str(src)]) == 2
    err = capsys.readouterr().err
    assert "is not UTF-8 text" in err and "Traceback" not in err


def test_score_cli_refuses_to_overwrite_its_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.jsonl"
    original = json.dumps(conv("a", "b")) + "\n"
    src.write_text(original)
    same = tmp_path / "." / "in.jsonl"
    assert main(["score", str(tmp_path / "no-such-model"), "-i", str(src), "-o", str(same)]) == 2
    assert "would replace the input" in capsys.readouterr().err.replace("\n", " ")
    assert src.read_text() == original


def test_score_cli_batch_size_above_256_is_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import model_zoo.cli.cmd_reward as cmd

    rm = make_fake_rm()
    monkeypatch.setattr(cmd, "_load", lambda *a, **k: rm)
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(conv(f"q{i}", "a")) + "\n" for i in range(300)))
    assert (
        main(
            [
                "score",
                "fake",
                "-i",
                str(src),
                "-o",
                str(tmp_path / "out.jsonl"),
                "-q",
                "--batch-size",
                "300",
            ]
        )
        == 0
    )
    assert rm.scorer.calls == [300]  # one call: the progress chunks do not cap --batch-size


def test_score_cli_output_file_follows_the_umask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import model_zoo.cli.cmd_reward as cmd

    monkeypatch.setattr(cmd, "_load", lambda *a, **k: make_fake_rm())
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(json.dumps(conv("a", "b")) + "\n")
    old = os.umask(0o022)
    try:
        assert main(["score", "fake", "-i", str(src), "-o", str(out), "-q"]) == 0
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_score_cli_reads_a_file_with_a_utf8_bom(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import model_zoo.cli.cmd_reward as cmd

    monkeypatch.setattr(cmd, "_load", lambda *a, **k: make_fake_rm())
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(
        json.dumps(conv("a", "b")) + "\n", encoding="utf-8-sig"
    )  # as Windows editors save
    assert main(["score", "fake", "-i", str(src), "-o", str(out), "-q"]) == 0
    assert json.loads(out.read_text())["score"] == pytest.approx(
        make_fake_rm().score(conv("a", "b"))
    )


def test_score_cli_keeps_unicode_line_separators_inside_a_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import model_zoo.cli.cmd_reward as cmd

    monkeypatch.setattr(cmd, "_load", lambda *a, **k: make_fake_rm())
    odd = conv(
        "line\u2028sep\x85nel\x1cfs", "ok"
    )  # str.splitlines() would cut the record at each of these
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(
        json.dumps(odd, ensure_ascii=False) + "\r\n" + json.dumps(conv("b", "c")) + "\n",
        encoding="utf-8",
    )
    assert main(["score", "fake", "-i", str(src), "-o", str(out), "-q"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in rows] == [0, 1]
    assert rows[0]["score"] == pytest.approx(make_fake_rm().score(odd))


def test_compare_cli_calls_a_conversation_against_itself_a_tie(
    tmp_path: Path, tiny_reward_fp32: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = tmp_path / "a.json"
    a.write_text(json.dumps(conv("2+2?", "4")))
    assert main(["compare", str(tiny_reward_fp32), str(a), str(a), "--json", *OPTS]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["a"] == out["b"] and out["better"] == "tie" and out["a_better"] is False


def test_cpu_fallback_warning_is_one_cli_line_naming_the_flag(
    tiny_reward_fp32: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    a = tiny_reward_fp32.parent / "a-for-warning.json"
    a.write_text(json.dumps(conv("a", "b")))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["compare", str(tiny_reward_fp32), str(a), str(a), "--dtype", "float32"]) == 0
    err = capsys.readouterr().err.replace("\n", " ")
    assert "warning: no CUDA GPU found" in err and "--device cpu" in err
    assert "RuntimeWarning" not in err and ".py:" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "--port must be between 0 and 65535"),
        (["--max-items", "0"], "--max-items must be at least 1"),
        (["--max-request-bytes", "0"], "--max-request-bytes must be at least 1"),
        (["--max-tokens-per-item", "-1"], "--max-tokens-per-item must be at least 1"),
        (["--wait-ms", "-5"], "--wait-ms must be 0 or more"),
    ],
)
def test_serve_reward_refuses_bad_options_before_loading(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve-reward", str(tmp_path / "no-such-model"), *args]) == 2
    assert message in capsys.readouterr().err.replace("\n", " ")


def test_serve_reward_checks_the_port_before_loading_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve-reward", str(tmp_path / "no-such-model"), "--port", str(port)]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "Another program holds that port" in err and "no such checkpoint" not in err


def test_serve_reward_checks_the_api_key_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve-reward", str(tmp_path / "no-such-model"), "--api-key", "schlüssel"]) == 2
    assert "printable ASCII" in capsys.readouterr().err
