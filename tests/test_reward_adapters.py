"""TRL and OpenRLHF adapters, and the HTTP clients, against the recipe and a live server."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures_reward import CharCodec, conv, fake_score, make_fake_rm

from model_zoo.errors import RewardServerError, UsageError
from model_zoo.reward.adapters import (
    RemoteRewardModel,
    openrlhf_reward_func,
    remote_rm_fn,
    trl_reward_func,
)
from model_zoo.reward.model import RewardModel
from model_zoo.server.protocol import ServerLimits
from model_zoo.server.reward_server import RewardServer

CONVS = [conv("hello", "hi"), conv("2+2?", "4"), conv("2+2?", "five"), conv("?", "")]


def test_trl_reward_func_conversational_and_plain() -> None:
    rm = make_fake_rm()
    fn = trl_reward_func(rm, name="rm_score")
    assert fn.__name__ == "rm_score"
    prompts = [[m for m in c if m["role"] == "user"] for c in CONVS]
    completions = [[m for m in c if m["role"] == "assistant"] for c in CONVS]
    assert fn(prompts=prompts, completions=completions, completion_ids=[[1]] * 4) == rm.score_batch(
        CONVS
    )
    plain = fn(["hello", "2+2?"], ["hi", "4"])
    assert plain == rm.score_batch(CONVS[:2])  # a string pair is one user turn, one assistant turn
    with pytest.raises(UsageError, match="pair up"):
        fn(["a"], ["b", "c"])


def test_openrlhf_reward_func_returns_tensors_and_ignores_pads() -> None:
    rm = make_fake_rm()
    fn = openrlhf_reward_func(rm)
    out = fn(["##<user>a|<assistant>b|", "<user>c|#"], ["<user>a|", "<user>c|"], [None, None])
    want = [fake_score(CharCodec().encode(t) + [7]) for t in ("<user>a|<assistant>b|", "<user>c|")]
    assert out["rewards"].tolist() == pytest.approx(want, rel=1e-6)
    assert out["scores"].tolist() == out["rewards"].tolist()
    assert set(out["extra_logs"]) == {"reward_model_score"}


def test_adapters_load_a_path_lazily_on_first_call(
    tiny_reward_fp32: Path, tiny_rm: RewardModel
) -> None:
    fn = trl_reward_func(str(tiny_reward_fp32), device="cpu", dtype="float32")
    got = fn([[CONVS[0][0]], [CONVS[1][0]]], [[CONVS[0][1]], [CONVS[1][1]]])
    assert got == pytest.approx(tiny_rm.score_batch(CONVS[:2]), abs=1e-5)


def test_remote_clients_match_local_scoring() -> None:
    rm = make_fake_rm()
    with RewardServer(rm, api_key="tok") as server:
        queries = ["#<user>a|<assistant>b|", "<user>c|"]
        assert remote_rm_fn(
            server.url + "/get_reward", queries, ["p", "p"], ["l", "l"], api_key="tok"
        ) == rm.score_text(queries, strip_pad=True)
        remote = RemoteRewardModel(server.url, api_key="tok")
        assert remote.score_batch(CONVS) == rm.score_batch(CONVS)
        assert remote.score(CONVS[2]) == rm.score(CONVS[2])
        assert remote.score_text(["<user>x|"]) == rm.score_text(["<user>x|"])
        assert remote.rank(CONVS) == rm.rank(CONVS) and remote.order(CONVS) == rm.order(CONVS)
        assert remote.best_of(CONVS) == rm.best_of(CONVS)
        assert remote.compare(CONVS[1], CONVS[2]) is rm.compare(CONVS[1], CONVS[2])
        assert trl_reward_func(remote)(["hello"], ["hi"]) == rm.score_batch(CONVS[:1])
        with pytest.raises(RewardServerError) as exc:
            RemoteRewardModel(server.url, api_key="wrong").score_batch(CONVS)
        assert exc.value.status == 401
        with pytest.raises(RewardServerError) as exc:
            remote.score_batch([[{"role": "user"}]])
        assert exc.value.status == 400 and "conversations[0][0].content" in str(exc.value)


def test_client_gives_up_on_an_unreachable_server() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RewardServerError, match="no answer after 2 tries"):
        remote_rm_fn(f"http://127.0.0.1:{port}/get_reward", ["x"], retries=2, timeout=2)


def test_client_retries_after_429() -> None:
    gate = threading.Event()
    rm = make_fake_rm(gate=gate)
    with RewardServer(rm, limits=ServerLimits(max_queue=1), wait_s=0) as server:
        holder = threading.Thread(
            target=lambda: httpx.post(server.url + "/v1/score", json={"texts": ["a"]}, timeout=30)
        )
        holder.start()
        assert rm.scorer.started.wait(10)
        filler = threading.Thread(
            target=lambda: httpx.post(server.url + "/v1/score", json={"texts": ["b"]}, timeout=30)
        )
        filler.start()
        while server.scheduler.waiting < 1:
            threading.Event().wait(0.01)
        assert httpx.post(server.url + "/get_reward", json={"query": ["c"]}).status_code == 429
        threading.Timer(0.3, gate.set).start()
        assert remote_rm_fn(server.url + "/get_reward", ["c"], retries=5) == rm.score_text(["c"])
        holder.join(10), filler.join(10)


def test_adapters_score_polar_against_the_reference(tiny_polar_rm: Any) -> None:
    """POLAR through every adapter: TRL's reference column, OpenRLHF's labels, the server's
    inputs."""
    rm = tiny_polar_rm
    items = [
        {"prompt": "2+2?", "reference": "4", "output": "4"},
        {"prompt": "2+2?", "reference": "4", "output": "5"},
    ]
    want = rm.score_batch(items)
    fn = trl_reward_func(rm, name="polar")
    assert fn(["2+2?", "2+2?"], ["4", "5"], reference=["4", "4"]) == want
    with pytest.raises(UsageError, match="'answer' column"):
        trl_reward_func(rm, reference_key="answer")(["2+2?"], ["4"], reference=["4"])
    out = openrlhf_reward_func(rm)(["<p>2+2?4", "<p>2+2?5"], ["<p>2+2?", "<p>2+2?"], ["4", "4"])
    assert out["rewards"].tolist() == pytest.approx(
        rm.score_batch([{**i, "prompt": "<p>2+2?"} for i in items]), abs=1e-6
    )
    with pytest.raises(UsageError, match="labels"):
        openrlhf_reward_func(rm)(["<p>2+2?4"], ["<p>2+2?"], None)
    with RewardServer(rm) as server:
        remote = RemoteRewardModel(server.url)
        assert remote.scoring_style == "reference-based"
        assert remote.score_batch(items) == pytest.approx(want, abs=1e-6)
        assert remote.score(prompt="2+2?", reference="4", output="5") == pytest.approx(
            want[1], abs=1e-6
        )
        assert trl_reward_func(remote)(["2+2?"], ["5"], reference=["4"]) == pytest.approx(
            want[1:], abs=1e-6
        )
        remote.close()
    with RewardServer(make_fake_rm()) as server:
        assert RemoteRewardModel(server.url).scoring_style == "conversation"


# ---------------------------------------------------------- the HTTP clients against other servers


class _Canned:
    """A loopback HTTP server that answers every POST with the next canned (status, headers,
    body)."""

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
