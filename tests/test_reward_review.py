"""Defects found by reviewing reward scoring and running from the user's side, each pinned by a test."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import httpx
import pytest
from fixtures_reward import conv, make_fake_rm

from model_zoo.cli.main import main
from model_zoo.errors import InvalidConversationError, UsageError
from model_zoo.reward.model import RewardModel
from model_zoo.server.protocol import ServerLimits
from model_zoo.server.reward_server import RewardServer

OPTS = ["--device", "cpu", "--dtype", "float32"]
LONE_SURROGATE = (
    "caf\ud800"  # what json.loads gives for the escape "\ud800": not encodable as UTF-8
)


# ---------------------------------------------------------------------- text that is not valid Unicode


def test_api_refuses_a_lone_surrogate_naming_the_field(tiny_rm: RewardModel) -> None:
    with pytest.raises(InvalidConversationError) as info:
        tiny_rm.score(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": LONE_SURROGATE}]
        )
    assert info.value.fields["field"] == "conversation[1].content"
    with pytest.raises(InvalidConversationError) as info:
        tiny_rm.score_text(["ok", LONE_SURROGATE])
    assert info.value.fields["field"] == "texts[1]"


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        (
            "/v1/score",
            {"conversations": [[{"role": "user", "content": LONE_SURROGATE}]]},
            "conversations[0][0].content",
        ),
        ("/v1/score", {"texts": ["a", LONE_SURROGATE]}, "texts[1]"),
        ("/get_reward", {"query": [LONE_SURROGATE]}, "query[0]"),
        (
            "/v1/compare",
            {"a": [{"role": "user", "content": "a"}], "b": [{"role": "\ud800", "content": "b"}]},
            "b[0].role",
        ),
    ],
)
def test_server_answers_400_for_a_lone_surrogate(route: str, body: object, field: str) -> None:
    raw = json.dumps(
        body
    )  # ensure_ascii keeps the surrogate as the escape \ud800, as a client would send it
    with RewardServer(make_fake_rm(), limits=ServerLimits()) as server:
        r = httpx.post(server.url + route, content=raw, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == field


def test_score_cli_refuses_a_lone_surrogate_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('[{"role": "user", "content": "\\ud800"}]\n')
    assert main(["score", str(tmp_path / "no-such-model"), "--input", str(src)]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert f"{src}:1[0].content" in err and "Traceback" not in err


# ---------------------------------------------------------------------- model-zoo score's output


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


def test_load_reward_refuses_max_length_zero_instead_of_ignoring_it(tiny_reward_fp32: Path) -> None:
    from model_zoo.reward.api import load_reward

    with pytest.raises(UsageError, match="max_length must be at least 1"):
        load_reward(tiny_reward_fp32, device="cpu", max_length=0)


# ---------------------------------------------------------------------- identical inputs, identical scores


def test_identical_conversations_score_identically_so_ties_keep_input_order(
    tiny_rm: RewardModel,
) -> None:
    same = conv("2+2?", "4")
    other = conv("hi", "hello")
    scores = tiny_rm.score_batch([same, other, same, same])
    assert scores[0] == scores[2] == scores[3]
    assert tiny_rm.rank([same, same, same]) == [0, 1, 2]
    assert tiny_rm.order([same, same, same]) == [0, 1, 2]
    assert tiny_rm.compare(same, same) is False and tiny_rm.best_of([same, same]) == 0


def test_compare_cli_calls_a_conversation_against_itself_a_tie(
    tmp_path: Path, tiny_reward_fp32: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = tmp_path / "a.json"
    a.write_text(json.dumps(conv("2+2?", "4")))
    assert main(["compare", str(tiny_reward_fp32), str(a), str(a), "--json", *OPTS]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["a"] == out["b"] and out["better"] == "tie" and out["a_better"] is False


def test_server_rank_and_compare_give_identical_items_identical_scores(
    tiny_rm: RewardModel,
) -> None:
    same = conv("2+2?", "4")
    with (
        RewardServer(tiny_rm, limits=ServerLimits()) as server,
        httpx.Client(base_url=server.url, timeout=30) as c,
    ):
        ranked = c.post("/v1/rank", json={"conversations": [same, same, same]}).json()
        compared = c.post("/v1/compare", json={"a": same, "b": same}).json()
    assert ranked["ranks"] == [0, 1, 2] and len(set(ranked["scores"])) == 1
    assert compared["a_better"] is False and compared["scores"][0] == compared["scores"][1]


# ---------------------------------------------------------------------- the CLI's messages


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


def test_run_refuses_a_reward_model_before_loading_and_names_the_commands(
    tiny_reward_fp32: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(tiny_reward_fp32), "hi", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "reward model" in err and "model-zoo score" in err and "loading" not in err


# ---------------------------------------------------------------------- serve-reward's options


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


def test_reward_server_bind_errors_say_which_option_to_change() -> None:
    import socket

    with pytest.raises(UsageError, match="between 0 and 65535"):
        RewardServer(make_fake_rm(), port=70000)
    with pytest.raises(UsageError, match="Check --host"):
        RewardServer(make_fake_rm(), host="192.0.2.1")  # TEST-NET-1: not an address of this machine
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(UsageError, match="Another program holds that port"):
            RewardServer(make_fake_rm(), port=taken.getsockname()[1])


# ---------------------------------------------------------------------- token ids and text the model cannot take


@pytest.mark.parametrize("bad", [10**6, -3])
def test_score_ids_refuses_ids_outside_the_vocabulary_naming_the_input(
    tiny_rm: RewardModel, bad: int
) -> None:
    with pytest.raises(UsageError, match=r"input 1 .*outside the vocabulary") as info:
        tiny_rm.score_ids([[1, 5], [1, bad, 6]])
    assert str(bad) in str(info.value)


@pytest.fixture(scope="module")
def chat_runner(tiny_checkpoint):  # type: ignore[no-untyped-def]
    from model_zoo.runner.api import load

    return load(tiny_checkpoint("internlm2", dtype="float32"), device="cpu")


def test_chat_refuses_a_lone_surrogate_with_a_clear_error(chat_runner) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match="lone surrogate"):
        chat_runner.chat("caf\ud800", max_new_tokens=2)
    with pytest.raises(UsageError, match="lone surrogate"):
        chat_runner.generate(["ok", "\udcff"], max_new_tokens=2)


def test_chat_refuses_an_empty_message_list(chat_runner) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match="at least one message"):
        chat_runner.chat([], max_new_tokens=2)


def test_generation_options_out_of_range_are_named(chat_runner) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match=r"temperature must be >= 0 \(0 = greedy\), got -1"):
        chat_runner.chat("hi", temperature=-1, max_new_tokens=2)
    with pytest.raises(UsageError, match=r"top_p must be in \(0, 1\], got 2") as info:
        chat_runner.chat("hi", top_p=2, max_new_tokens=2)
    assert "top_k" not in str(info.value)


def test_run_cli_refuses_a_negative_temperature(
    tiny_checkpoint, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    ck = tiny_checkpoint("internlm2", dtype="float32")
    assert main(["run", str(ck), "hi", "-t", "-0.5", "-n", "2", "--device", "cpu"]) == 2
    assert "temperature must be >= 0" in capsys.readouterr().err


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


# ---------------------------------------------------------------------- the HTTP clients against other servers


class _Canned:
    """A loopback HTTP server that answers every POST with the next canned (status, headers, body)."""

    def __init__(self, answers: list[tuple[int, dict[str, str], bytes]]) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        queue = list(answers)
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, headers, body = queue.pop(0) if len(queue) > 1 else queue[0]
                outer.hits += 1
                self.send_response(status)
                for k, v in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def __enter__(self) -> _Canned:
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_remote_client_reports_a_non_json_or_wrong_shaped_answer() -> None:
    from model_zoo.errors import RewardServerError
    from model_zoo.reward.adapters import RemoteRewardModel, remote_rm_fn

    html = [(200, {"Content-Type": "text/html"}, b"<html>welcome</html>")]
    with _Canned(html) as srv, pytest.raises(RewardServerError, match="not a JSON"):
        remote_rm_fn(srv.url + "/get_reward", ["x"], retries=1)
    with _Canned([(200, {}, b'{"result": [1.0]}')]) as srv:
        with pytest.raises(RewardServerError, match='no "rewards"'):
            remote_rm_fn(srv.url + "/get_reward", ["x"], retries=1)
        with pytest.raises(RewardServerError, match='no "scores"'):
            RemoteRewardModel(srv.url, retries=1).score_batch([conv("a", "b")])


def test_remote_client_understands_retry_after_as_an_http_date() -> None:
    from model_zoo.reward.adapters import remote_rm_fn

    answers = [
        (503, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, b"busy"),
        (200, {}, b'{"rewards": [0.5]}'),
    ]
    with _Canned(answers) as srv:
        assert remote_rm_fn(srv.url + "/get_reward", ["x"], retries=3) == [0.5]
    assert srv.hits == 2


def test_remote_reward_model_handles_empty_lists_like_a_local_one() -> None:
    from model_zoo.reward.adapters import RemoteRewardModel

    with _Canned([(400, {}, b'{"error": {"message": "must not be empty"}}')]) as srv:
        remote = RemoteRewardModel(srv.url, retries=1)
        assert (
            remote.score_batch([]) == [] and remote.score_text([]) == [] and remote.rank([]) == []
        )
        with pytest.raises(UsageError, match="at least one"):
            remote.best_of([])
    assert srv.hits == 0


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


# ---------------------------------------------------------------------- model_zoo.load's arguments


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


# ---------------------------------------------------------------------- model-zoo chat's commands


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


# ---------------------------------------------------------------------- registry names of the wrong kind, before any pull


def test_load_reward_refuses_a_chat_model_name_before_pulling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from model_zoo.errors import IncompatibleCheckpointError
    from model_zoo.reward.api import load_reward

    monkeypatch.setenv("MODEL_ZOO_OFFLINE", "1")  # were it to pull, this would fail differently
    with pytest.raises(IncompatibleCheckpointError, match="not a reward model"):
        load_reward("internlm2_5-7b-chat", device="cpu")


def test_run_refuses_a_reward_model_name_before_pulling(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODEL_ZOO_OFFLINE", "1")
    assert main(["run", "internlm2-1_8b-reward", "hi"]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "reward model" in err and "model-zoo score" in err


def test_remote_reward_model_splits_lists_over_the_servers_item_limit() -> None:
    from model_zoo.reward.adapters import RemoteRewardModel

    local = make_fake_rm()
    convs = [conv(f"q{i}", "a") for i in range(11)]
    with RewardServer(make_fake_rm(), limits=ServerLimits(max_items_per_request=4)) as server:
        remote = RemoteRewardModel(server.url, max_items=4)
        assert remote.score_batch(convs) == pytest.approx(local.score_batch(convs))
        assert remote.rank(convs) == local.rank(convs) and remote.best_of(convs) == local.best_of(
            convs
        )
        assert remote.order(convs) == local.order(convs)
        texts = [f"t{i}" for i in range(9)]
        assert remote.score_text(texts) == pytest.approx(local.score_text(texts))
        remote.close()


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        (["hi"], "messages[0]"),
        ([{"role": "user", "content": 5}], "messages[0].content"),
        (5, "messages"),
        ([{"content": "x"}], "messages[0].role"),
    ],
)
def test_chat_names_a_malformed_message(chat_runner, messages: object, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidConversationError) as info:
        chat_runner.chat(messages, max_new_tokens=1)
    assert info.value.fields["field"] == field


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


@pytest.mark.parametrize("command", [["run", "PLACEHOLDER", "hi"], ["chat", "PLACEHOLDER"]])
def test_run_and_chat_check_generation_options_before_loading(
    tmp_path: Path, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(tmp_path / "no-such-model") if a == "PLACEHOLDER" else a for a in command]
    assert main([*argv, "--top-p", "2"]) == 2
    err = capsys.readouterr().err
    assert "top_p must be in (0, 1], got 2" in err.replace("\n", " ")


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


def test_generate_of_no_prompts_is_an_empty_list(chat_runner) -> None:  # type: ignore[no-untyped-def]
    assert chat_runner.generate([], max_new_tokens=2) == []
    assert chat_runner.generate_ids([], max_new_tokens=2) == []
    with pytest.raises(UsageError, match="prompt 1 has no tokens"):
        chat_runner.generate(["hi", ""], add_special_tokens=False, max_new_tokens=2)


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


def test_reward_server_refuses_an_api_key_no_client_can_send() -> None:
    with pytest.raises(UsageError, match="ASCII"):
        RewardServer(make_fake_rm(), api_key="sëkret")
    with pytest.raises(UsageError, match="ASCII"):
        RewardServer(make_fake_rm(), api_key=" padded ")


def test_serve_reward_checks_the_api_key_before_loading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve-reward", str(tmp_path / "no-such-model"), "--api-key", "schlüssel"]) == 2
    assert "printable ASCII" in capsys.readouterr().err
