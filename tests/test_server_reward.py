"""The reward server through a real HTTP client: routes, bad input, limits, batching, auth,
shutdown.

The model here is the real RewardModel recipe over a predictable scorer (fixtures_reward), so
each test is about the server; the tiny real model is served in test_reward_model.py.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fixtures_reward import FAKE_PAD_ID, LONE_SURROGATE, CharCodec, conv, fake_score, make_fake_rm

from model_zoo.errors import UsageError
from model_zoo.reward.model import RewardModel
from model_zoo.server.protocol import ServerLimits
from model_zoo.server.reward_server import RewardServer

CONVS = [conv("hello", "hi there"), conv("what is 2+2?", "4"), conv("x", "")]


@pytest.fixture()
def served() -> Iterator[tuple[RewardServer, RewardModel, httpx.Client]]:
    rm = make_fake_rm()
    limits = ServerLimits(
        max_request_bytes=4000, max_items_per_request=5, max_tokens_per_item=60, max_queue=50
    )
    with (
        RewardServer(rm, limits=limits) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        yield server, rm, client


def test_binds_loopback_by_default() -> None:
    with RewardServer(make_fake_rm()) as server:
        assert server.host == "127.0.0.1" and server.port > 0


def test_score_rank_compare_health_models(served: Any) -> None:
    server, rm, client = served
    expected = rm.score_batch(CONVS)
    assert client.post("/v1/score", json={"conversations": CONVS}).json() == {"scores": expected}
    texts = ["<user>a|", "<user>b|"]
    assert client.post("/v1/score", json={"texts": texts}).json() == {
        "scores": rm.score_text(texts)
    }
    ranked = client.post("/v1/rank", json={"conversations": CONVS}).json()
    assert ranked == {
        "ranks": rm.rank(CONVS),
        "order": rm.order(CONVS),
        "best": rm.best_of(CONVS),
        "scores": expected,
    }
    cmp = client.post("/v1/compare", json={"a": CONVS[0], "b": CONVS[1]}).json()
    assert cmp == {"a_better": expected[0] > expected[1], "scores": expected[:2]}
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == "fake-reward" and health["items"] >= 8
    models = client.get("/v1/models").json()
    assert (
        models["data"][0]["id"] == "fake-reward" and models["data"][0]["max_tokens_per_item"] == 60
    )


def test_openrlhf_shaped_request(served: Any) -> None:
    """What OpenRLHF's --remote_rm_url client sends: templated queries, prompts and labels."""
    _, rm, client = served
    queries = ["##<user>2+2?|<assistant>4|", "<user>2+2?|<assistant>5|#"]  # "#" is the pad token
    body = {"query": queries, "prompts": ["<user>2+2?|"] * 2, "labels": ["4", "4"]}
    r = client.post("/get_reward", json=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    out = r.json()
    ids = [CharCodec().encode(q.strip("#")) + [7] for q in queries]
    assert out["rewards"] == pytest.approx([fake_score(x) for x in ids])
    assert out["scores"] == out["rewards"]
    assert out["extra_logs"] == {"num_tokens": [len(x) for x in ids]}
    assert FAKE_PAD_ID not in rm.scorer.seen[-1] and FAKE_PAD_ID not in rm.scorer.seen[-2]


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/v1/score", b"{not json", "body"),
        ("/v1/score", b"\xff\xfe", "body"),
        ("/v1/score", b"[1, 2]", "body"),
        ("/v1/score", b"[" * 1900 + b"]" * 1900, "body"),  # nesting past the recursion limit
        ("/v1/score", {}, "conversations"),
        ("/v1/score", {"conversations": CONVS, "texts": ["a"]}, "conversations"),
        ("/v1/score", {"conversations": []}, "conversations"),
        ("/v1/score", {"conversations": "hi"}, "conversations"),
        ("/v1/score", {"conversations": [[{"role": "user"}]]}, "conversations[0][0].content"),
        (
            "/v1/score",
            {"conversations": [CONVS[0], [{"role": "user", "content": 5}]]},
            "conversations[1][0].content",
        ),
        ("/v1/score", {"conversations": [[{"content": "x"}]]}, "conversations[0][0].role"),
        ("/v1/score", {"texts": ["a", None]}, "texts[1]"),
        ("/get_reward", {"prompts": ["a"]}, "query"),
        ("/get_reward", {"query": "abc"}, "query"),
        ("/get_reward", {"query": ["a", 3]}, "query[1]"),
        ("/get_reward", {"query": ["a"], "prompts": "a"}, "prompts"),
        ("/v1/compare", {"a": CONVS[0]}, "b"),
        ("/v1/compare", {"a": CONVS[0], "b": [1]}, "b[0]"),
        ("/v1/rank", {"conversations": [[]]}, "conversations[0]"),
    ],
)
def test_bad_input_answers_400_naming_the_field(
    served: Any, route: str, body: Any, field: str
) -> None:
    _, _, client = served
    r = (
        client.post(route, content=body)
        if isinstance(body, bytes)
        else client.post(route, json=body)
    )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request" and err["field"] == field and field in err["message"]


def test_limits_answer_413_naming_the_limit(served: Any) -> None:
    _, _, client = served
    r = client.post("/v1/score", json={"texts": ["a"] * 6})
    assert r.status_code == 413 and r.json()["error"]["limit"] == "max_items_per_request"
    assert r.json()["error"]["value"] == 6 and r.json()["error"]["max"] == 5
    r = client.post("/v1/score", json={"texts": ["a", "b" * 100]})
    err = r.json()["error"]
    assert (
        r.status_code == 413
        and err["limit"] == "max_tokens_per_item"
        and err["field"] == "texts[1]"
    )
    r = client.post("/v1/compare", json={"a": CONVS[0], "b": conv("z" * 100)})
    assert r.status_code == 413 and r.json()["error"]["field"] == "b"
    r = client.post("/v1/score", json={"texts": ["a", "x" * 5000]})
    assert r.status_code == 413 and r.json()["error"]["limit"] == "max_request_bytes"
    # the connection was closed after the unread body; the client recovers on a new one
    assert client.post("/v1/score", json={"texts": ["a"]}).status_code == 200


def test_expect_100_continue_is_answered_at_once(served: Any) -> None:
    """curl sends larger bodies only after "100 Continue"; it must not sit in a write buffer."""
    server, rm, _ = served
    body = json.dumps({"texts": ["abc"]}).encode()
    with socket.create_connection((server.host, server.port), timeout=5) as s:
        s.sendall(
            b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Expect: 100-continue\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        assert s.recv(100).startswith(b"HTTP/1.1 100")  # within the 5 s timeout, not after a stall
        s.sendall(body)
        reply = b""
        while b"scores" not in reply:
            reply += s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 200") and json.loads(reply.split(b"\r\n\r\n", 1)[1]) == {
        "scores": rm.score_text(["abc"])
    }


def test_server_truncation_keeps_the_reward_token() -> None:
    rm = make_fake_rm()
    with RewardServer(rm, truncate=True, limits=ServerLimits(max_tokens_per_item=10)) as server:
        r = httpx.post(server.url + "/v1/score", json={"texts": ["y" * 30]})
    assert r.status_code == 200
    assert rm.scorer.seen[-1] == CharCodec().encode("y" * 9) + [7]


def test_routing_errors(served: Any) -> None:
    _, _, client = served
    assert client.get("/nope").status_code == 404
    r = client.get("/v1/score")
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    assert client.post("/health", json={}).status_code == 405
    conn = http.client.HTTPConnection(client.base_url.host, client.base_url.port, timeout=5)
    conn.putrequest("POST", "/v1/score")
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 411 and json.loads(resp.read())["error"]["field"] == "Content-Length"
    conn.close()


def test_queue_limit_answers_429() -> None:
    gate = threading.Event()
    rm = make_fake_rm(gate=gate)
    with RewardServer(rm, limits=ServerLimits(max_queue=3), wait_s=0) as server:
        results: dict[str, httpx.Response] = {}

        def post(key: str, n: int) -> None:
            texts = [
                f"{key}{i}" for i in range(n)
            ]  # distinct: copies in one request are queued once
            results[key] = httpx.post(server.url + "/v1/score", json={"texts": texts}, timeout=30)

        first = threading.Thread(target=post, args=("a", 1))
        first.start()
        assert rm.scorer.started.wait(10)  # "a" is being scored; the scheduler is busy
        second = threading.Thread(target=post, args=("b", 3))
        second.start()
        deadline = time.monotonic() + 10
        while server.scheduler.waiting < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = httpx.post(server.url + "/v1/score", json={"texts": ["c"]}, timeout=30)
        gate.set()
        first.join(30), second.join(30)
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["limit"] == "max_queue"
    assert results["a"].status_code == 200 and results["b"].status_code == 200
    assert len(results["b"].json()["scores"]) == 3


def test_concurrent_clients_are_merged_into_shared_batches() -> None:
    rm = make_fake_rm(delay_s=0.02)
    texts = [f"<user>question {i}|<assistant>{'a' * i}|" for i in range(16)]
    expected = rm.score_text(texts)
    rm.scorer.calls.clear()
    # As in test_reward_model's concurrency test: every client is built and its connection open
    # before the barrier (building one loads the CA store, ~50 ms of CPU each under the GIL), and
    # the merge window is wider than scheduling jitter on a loaded machine (a parallel test run).
    clients = [httpx.Client(timeout=30) for _ in texts]
    with RewardServer(rm, wait_s=0.1) as server:
        for c in clients:
            assert c.get(server.url + "/health").status_code == 200
        got: list[Any] = [None] * 16
        barrier = threading.Barrier(16)

        def client(i: int) -> None:
            barrier.wait()
            answer = clients[i].post(server.url + "/get_reward", json={"query": [texts[i]]})
            got[i] = answer.json()["rewards"][0]

        threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        stats = httpx.get(server.url + "/health").json()
    for c in clients:
        c.close()
    assert got == expected  # every client got its own score
    assert (
        stats["requests"] == 16
        and stats["largest_batch_requests"] > 1
        and stats["merged_batches"] >= 1
    )
    assert len(rm.scorer.calls) < 16 and max(rm.scorer.calls) > 1


def test_bearer_token() -> None:
    with (
        RewardServer(make_fake_rm(), api_key="s3cret") as server,
        httpx.Client(base_url=server.url) as c,
    ):
        body = {"texts": ["a"]}
        missing = c.post("/v1/score", json=body)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith(
            "Bearer"
        )
        assert missing.json()["error"]["field"] == "Authorization"
        assert (
            c.post("/v1/score", json=body, headers={"Authorization": "Bearer wrong"}).status_code
            == 401
        )
        assert (
            c.post("/v1/score", json=body, headers={"Authorization": "Basic s3cret"}).status_code
            == 401
        )
        assert c.get("/v1/models").status_code == 401
        assert (
            c.post("/v1/score", json=body, headers={"Authorization": "Bearer s3cret"}).status_code
            == 200
        )
        assert c.get("/health").status_code == 200  # probes need no token


def test_graceful_shutdown_finishes_in_flight_requests() -> None:
    gate = threading.Event()
    rm = make_fake_rm(gate=gate)
    server = RewardServer(rm).start()
    idle = httpx.Client(base_url=server.url, timeout=10)
    assert idle.get("/health").status_code == 200  # leaves an idle keep-alive connection
    result: dict[str, Any] = {}

    def in_flight() -> None:
        result["r"] = httpx.post(server.url + "/v1/score", json={"texts": ["abc"]}, timeout=30)

    t = threading.Thread(target=in_flight)
    t.start()
    assert rm.scorer.started.wait(10)
    stopper = threading.Thread(target=server.shutdown)
    stopper.start()
    time.sleep(0.2)
    assert stopper.is_alive()  # waiting for the in-flight request
    with pytest.raises(httpx.TransportError):  # no longer accepting
        httpx.post(server.url + "/v1/score", json={"texts": ["x"]}, timeout=2)
    gate.set()
    t.join(10)
    stopper.join(10)
    assert not stopper.is_alive()
    assert result["r"].status_code == 200
    assert result["r"].json()["scores"] == [fake_score(CharCodec().encode("abc") + [7])]
    idle.close()


def test_a_second_shutdown_returns_only_once_the_server_has_stopped() -> None:
    gate = threading.Event()
    rm = make_fake_rm(gate=gate)
    server = RewardServer(rm, wait_s=0).start()
    result: dict[str, Any] = {}
    client = threading.Thread(
        target=lambda: result.update(
            r=httpx.post(server.url + "/v1/score", json={"texts": ["abc"]}, timeout=30)
        )
    )
    client.start()
    assert rm.scorer.started.wait(10)
    first = threading.Thread(target=server.shutdown)
    first.start()
    threading.Timer(0.5, gate.set).start()
    began = time.monotonic()
    server.shutdown()  # e.g. a signal handler and a `finally` both stop the server
    assert time.monotonic() - began > 0.3  # it waited for the first one's drain
    first.join(2)
    assert not first.is_alive()
    client.join(10)
    assert result["r"].status_code == 200
    server.shutdown()  # and once stopped, another call is a no-op


def test_scores_finishing_after_a_shutdown_gave_up_waiting_log_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = threading.Event()
    rm = make_fake_rm(gate=gate)
    server = RewardServer(rm, wait_s=0).start()
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        body = json.dumps({"texts": ["late"]}).encode()
        s.sendall(b"POST /v1/score HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        assert rm.scorer.started.wait(10)
        server.shutdown(timeout=0.2)  # the model is still busy: the drain gives up
        with caplog.at_level("ERROR"):
            gate.set()  # its scores now arrive at a closed event loop
            server.scheduler._thread.join(10)
        assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text


def test_start_twice_serves_once_and_start_after_shutdown_says_what_to_do() -> None:
    from model_zoo.errors import UsageError

    server = RewardServer(make_fake_rm())
    assert server.start() is server.start()
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200
    server.shutdown()
    with pytest.raises(UsageError, match="create a new RewardServer"):
        server.start()


def test_serve_reward_stops_the_server_when_on_ready_fails() -> None:
    from model_zoo.server.reward_server import serve_reward

    seen: list[RewardServer] = []

    def broken(server: RewardServer) -> None:
        seen.append(server)
        raise OSError("stdout is gone")

    with pytest.raises(OSError, match="stdout is gone"):
        serve_reward(make_fake_rm(), port=0, on_ready=broken)
    (server,) = seen
    with pytest.raises(httpx.TransportError):  # nothing listens any more
        httpx.get(server.url + "/health", timeout=2)


def test_a_host_of_another_machine_is_refused_before_loading_even_with_port_0() -> None:
    from model_zoo.errors import UsageError
    from model_zoo.server.reward_server import check_listenable

    with pytest.raises(UsageError, match="--host"):
        check_listenable(
            "203.0.113.77", 0
        )  # TEST-NET-3: an address no machine here has (nothing is sent)
    check_listenable("127.0.0.1", 0)


# ----------------------------------- text that is not Unicode, ties, and options no client can use


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


def test_reward_server_refuses_an_api_key_no_client_can_send() -> None:
    with pytest.raises(UsageError, match="ASCII"):
        RewardServer(make_fake_rm(), api_key="sëkret")
    with pytest.raises(UsageError, match="ASCII"):
        RewardServer(make_fake_rm(), api_key=" padded ")
