"""The reward server's HTTP/1.1 layer on raw sockets: framing, keep-alive, timeouts, bad input.

Clients (requests, httpx, curl) are tested in test_server_reward.py; here the bytes on the wire
are written by hand, so every way a stream can be odd (pipelined, split, half-closed, malformed,
oversized, silent) is exercised against the event loop.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from fixtures_reward import CharCodec, fake_score, make_fake_rm

from model_zoo.server import reward_server
from model_zoo.server.protocol import ServerLimits
from model_zoo.server.reward_server import RewardServer


def post(
    path: str, body: dict | bytes, *, extra: bytes = b"", version: bytes = b"HTTP/1.1"
) -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return (
        b"POST "
        + path.encode()
        + b" "
        + version
        + b"\r\nHost: x\r\nContent-Type: application/json\r\n"
        + extra
        + b"Content-Length: "
        + str(len(data)).encode()
        + b"\r\n\r\n"
        + data
    )


def read_response(sock: socket.socket, buf: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response off ``sock`` (``buf`` keeps bytes of the next one)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside a body")
        rest += chunk
    del buf[:]
    buf += rest[length:]
    return int(lines[0].split(" ")[1]), headers, rest[:length]


def closed_by_server(sock: socket.socket, timeout: float = 5) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.fixture()
def server() -> Iterator[RewardServer]:
    with RewardServer(make_fake_rm(), limits=ServerLimits(max_request_bytes=4000)) as srv:
        yield srv


def connect(srv: RewardServer) -> socket.socket:
    s = socket.create_connection((srv.host, srv.port), timeout=10)
    return s


def score_of(text: str) -> float:
    return fake_score(CharCodec().encode(text) + [7])


def test_pipelined_requests_are_answered_in_order(server: RewardServer) -> None:
    with connect(server) as s:
        s.sendall(
            b"".join(post("/v1/score", {"texts": [f"t{i}"]}) for i in range(5))
            + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        buf = bytearray()
        for i in range(5):
            status, _, body = read_response(s, buf)
            assert status == 200 and json.loads(body) == {"scores": [score_of(f"t{i}")]}
        status, _, body = read_response(s, buf)
        assert status == 200 and json.loads(body)["status"] == "ok"


def test_a_request_split_into_single_bytes_is_read_whole(server: RewardServer) -> None:
    with connect(server) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in post("/v1/score", {"texts": ["split"]}):
            s.send(bytes([byte]))
        status, _, body = read_response(s, bytearray())
    assert status == 200 and json.loads(body) == {"scores": [score_of("split")]}


def test_connection_close_http10_and_keep_alive(server: RewardServer) -> None:
    with connect(server) as s:  # HTTP/1.1 with "Connection: close"
        s.sendall(post("/v1/score", {"texts": ["a"]}, extra=b"Connection: close\r\n"))
        status, headers, _ = read_response(s, bytearray())
        assert status == 200 and headers["connection"] == "close" and closed_by_server(s)
    with connect(server) as s:  # HTTP/1.0 closes unless asked to keep the connection
        s.sendall(post("/v1/score", {"texts": ["a"]}, version=b"HTTP/1.0"))
        assert read_response(s, bytearray())[0] == 200 and closed_by_server(s)
    with connect(server) as s:
        s.sendall(
            post(
                "/v1/score",
                {"texts": ["a"]},
                version=b"HTTP/1.0",
                extra=b"Connection: keep-alive\r\n",
            )
        )
        buf = bytearray()
        assert read_response(s, buf)[0] == 200
        s.sendall(
            post(
                "/v1/score",
                {"texts": ["b"]},
                version=b"HTTP/1.0",
                extra=b"Connection: keep-alive\r\n",
            )
        )
        assert read_response(s, buf)[0] == 200


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"NONSENSE\r\n\r\n", 400),
        (b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (
            b"GET /health HTTP/1.1\r\n"
            + b"".join(b"X-%d: y\r\n" % i for i in range(150))
            + b"\r\n",
            431,
        ),
        (b"POST /v1/score HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
        (b"POST /v1/score HTTP/1.1\r\nContent-Length: -3\r\n\r\n", 400),
        (b"POST /v1/score HTTP/1.1\r\nContent-Length: 9999999\r\n\r\n", 413),
        (
            b"POST /v1/score HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n",
            413,
        ),  # past int()'s digits
        (b"GET /health HTTP/1.1\r\nContent-Length: " + b"1" * 5000 + b"\r\n\r\n", 413),
        (
            b"POST /v1/score HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            411,
        ),
        # any other coding frames the body too: its bytes must not be read as the next request
        (
            b"POST /v1/score HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n"
            b"GET /nope HTTP/1.1\r\n\r\n",
            411,
        ),
        (
            b"GET /health HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"1f\r\nGET /nope HTTP/1.1\r\n\r\n",
            411,
        ),
    ],
)
def test_malformed_or_unframeable_requests_get_a_json_error_and_a_close(
    server: RewardServer, raw: bytes, status: int
) -> None:
    with connect(server) as s:
        s.sendall(raw)
        got, headers, body = read_response(s, bytearray())
        assert got == status and headers["connection"] == "close"
        assert json.loads(body)["error"]["message"]
        assert closed_by_server(s)
    assert httpx.get(server.url + "/health").status_code == 200  # the server is fine


def test_an_endless_head_is_refused(server: RewardServer) -> None:
    with connect(server) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nX: " + b"y" * 70000)
        assert read_response(s, bytearray())[0] == 431 and closed_by_server(s)


def test_a_client_that_goes_away_while_scored_does_not_disturb_others() -> None:
    gate = threading.Event()
    rm = make_fake_rm(gate=gate)
    with RewardServer(rm, wait_s=0) as srv:
        s = connect(srv)
        s.sendall(post("/v1/score", {"texts": ["gone"]}))
        assert rm.scorer.started.wait(10)
        s.close()  # before its answer
        gate.set()
        assert httpx.post(srv.url + "/v1/score", json={"texts": ["here"]}, timeout=10).json() == {
            "scores": [score_of("here")]
        }


def test_half_closed_client_still_gets_its_answer(server: RewardServer) -> None:
    with connect(server) as s:
        s.sendall(post("/v1/score", {"texts": ["bye"]}))
        s.shutdown(socket.SHUT_WR)  # "no more requests", as some clients do
        status, _, body = read_response(s, bytearray())
        assert status == 200 and json.loads(body) == {"scores": [score_of("bye")]}
        assert closed_by_server(s, timeout=5)  # and then the server closes its side too


def test_idle_and_stalled_connections_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reward_server, "IDLE_TIMEOUT_S", 0.3)
    with RewardServer(make_fake_rm()) as srv:
        with connect(srv) as idle:
            assert closed_by_server(idle, timeout=5)
        with connect(srv) as stalled:  # the head, then only half of the announced body
            stalled.sendall(b'POST /v1/score HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"texts":')
            assert closed_by_server(stalled, timeout=5)


def test_scoring_longer_than_request_timeout_answers_504_and_the_connection_stays_usable() -> None:
    gate = threading.Event()
    rm = make_fake_rm(gate=gate)
    with RewardServer(rm, request_timeout=0.3, wait_s=0) as srv:
        with connect(srv) as s:
            s.sendall(post("/v1/score", {"texts": ["slow"]}))
            buf = bytearray()
            status, _, body = read_response(s, buf)
            assert status == 504 and json.loads(body)["error"]["type"] == "timeout"
            gate.set()  # its scores arrive later, to nobody; the next request is answered
            s.sendall(post("/v1/score", {"texts": ["next"]}))
            status, _, body = read_response(s, buf)
            assert status == 200 and json.loads(body) == {"scores": [score_of("next")]}


def test_a_failing_model_answers_500_and_the_server_lives_on() -> None:
    rm = make_fake_rm()
    calls = {"n": 0}
    real = rm.scorer.score_ids

    def flaky(batch, **kw):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA error: device-side assert")
        return real(batch, **kw)

    rm.scorer.score_ids = flaky  # type: ignore[method-assign]
    with RewardServer(rm) as srv:
        r = httpx.post(srv.url + "/v1/score", json={"texts": ["a"]}, timeout=10)
        assert r.status_code == 500 and "device-side assert" in r.json()["error"]["message"]
        assert (
            httpx.post(srv.url + "/v1/score", json={"texts": ["a"]}, timeout=10).status_code == 200
        )


def test_many_connections_at_once() -> None:
    rm = make_fake_rm(delay_s=0.01)
    with RewardServer(rm) as srv:
        socks = [connect(srv) for _ in range(200)]
        for i, s in enumerate(socks):
            s.sendall(post("/v1/score", {"texts": [f"c{i}"]}))
        for i, s in enumerate(socks):
            status, _, body = read_response(s, bytearray())
            assert status == 200 and json.loads(body) == {"scores": [score_of(f"c{i}")]}
            s.close()
        stats = srv.scheduler.stats
    assert stats.requests == 200 and stats.batches < 200  # merged


def test_responses_carry_date_and_server_headers(server: RewardServer) -> None:
    r = httpx.get(server.url + "/health")
    assert r.headers["server"] == "model-zoo-reward" and r.headers["date"].endswith("GMT")
    assert (
        time.time()
        - __import__("email.utils").utils.parsedate_to_datetime(r.headers["date"]).timestamp()
        < 5
    )


def test_a_batch_waits_for_a_body_still_arriving() -> None:
    """A request whose head is in but whose body is still coming is announced to the scheduler."""
    rm = make_fake_rm()
    with RewardServer(rm, wait_s=0.05, max_wait_s=3) as srv:
        slow = connect(srv)
        whole = post("/v1/score", {"texts": ["slow"]})
        cut = whole.index(b"\r\n\r\n") + 6
        slow.sendall(whole[:cut])
        time.sleep(0.2)  # the head has been read
        fast = connect(srv)
        fast.sendall(post("/v1/score", {"texts": ["fast"]}))
        time.sleep(0.4)  # far past wait_s: without the announcement "fast" would be scored alone
        slow.sendall(whole[cut:])
        assert (
            read_response(fast, bytearray())[0] == 200
            and read_response(slow, bytearray())[0] == 200
        )
        slow.close(), fast.close()
    assert rm.scorer.calls == [2]


def test_a_client_leaving_mid_body_does_not_hold_batches() -> None:
    rm = make_fake_rm()
    with RewardServer(rm, wait_s=0.01, max_wait_s=5) as srv:
        gone = connect(srv)
        gone.sendall(post("/v1/score", {"texts": ["never"]})[:-3])
        time.sleep(0.2)
        gone.close()
        time.sleep(0.2)
        start = time.monotonic()
        assert (
            httpx.post(srv.url + "/v1/score", json={"texts": ["x"]}, timeout=10).status_code == 200
        )
        assert time.monotonic() - start < 2  # not max_wait_s
        assert srv.scheduler._arriving == 0


def test_a_large_request_is_prepared_off_the_loop_so_health_stays_responsive() -> None:
    from fixtures_reward import FAKE_PAD_ID, FAKE_REWARD_ID, RecordingScorer

    from model_zoo.reward.model import RewardModel

    class SlowCodec(CharCodec):
        def encode(self, text: str) -> list[int]:
            if len(text) > 50_000:
                time.sleep(3.0)  # a tokenizer working through a very large request
            return super().encode(text)

    rm = RewardModel(
        RecordingScorer(),
        SlowCodec(),
        reward_token_id=FAKE_REWARD_ID,
        max_length=10**6,
        pad_token_id=FAKE_PAD_ID,
        name="slow",
    )
    big = "b" * 100_000
    assert len(json.dumps({"texts": [big]})) > reward_server.INLINE_BODY_BYTES
    with (
        RewardServer(rm, limits=ServerLimits(max_request_bytes=10**7)) as srv,
        httpx.Client(timeout=5) as health,  # built before the clock starts (it loads a CA store)
    ):
        result: dict[str, httpx.Response] = {}
        t = threading.Thread(
            target=lambda: result.setdefault(
                "r", httpx.post(srv.url + "/v1/score", json={"texts": [big]}, timeout=30)
            )
        )
        t.start()
        time.sleep(0.3)  # the big request is being tokenized
        start = time.monotonic()
        assert health.get(srv.url + "/health").status_code == 200
        # well under the ~2.7 s of tokenizing left, with room for a loaded machine
        assert time.monotonic() - start < 1.0
        t.join(30)
    assert result["r"].status_code == 200 and result["r"].json() == {"scores": [score_of(big)]}


def test_a_get_with_a_body_does_not_smuggle_its_body_in_as_a_request(server: RewardServer) -> None:
    hidden = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
    with connect(server) as s:
        s.sendall(
            b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(hidden)
            + hidden
            + b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        buf = bytearray()
        assert read_response(s, buf)[0] == 200
        status, _, body = read_response(
            s, buf
        )  # the next request is /v1/models, not the body's /nope
        assert status == 200 and json.loads(body)["data"][0]["id"] == "fake-reward"


def test_pipelined_requests_then_half_close_are_all_answered(server: RewardServer) -> None:
    with connect(server) as s:
        s.sendall(b"".join(post("/v1/score", {"texts": [f"h{i}"]}) for i in range(3)))
        s.shutdown(socket.SHUT_WR)
        buf = bytearray()
        for i in range(3):
            status, headers, body = read_response(s, buf)
            assert status == 200 and json.loads(body) == {"scores": [score_of(f"h{i}")]}
        assert headers.get("connection") == "close" and closed_by_server(s)


def test_half_close_after_a_partial_pipelined_request_closes_without_waiting(
    server: RewardServer,
) -> None:
    with connect(server) as s:
        s.sendall(post("/v1/score", {"texts": ["a"]}) + post("/v1/score", {"texts": ["b"]})[:-4])
        s.shutdown(socket.SHUT_WR)
        assert read_response(s, bytearray())[0] == 200
        assert closed_by_server(s, timeout=3)


def test_http10_keep_alive_is_confirmed_and_the_connection_reused(server: RewardServer) -> None:
    with connect(server) as s:
        buf = bytearray()
        for _ in range(2):
            s.sendall(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, _ = read_response(s, buf)
            assert status == 200 and headers["connection"].lower() == "keep-alive"
        s.sendall(b"GET /health HTTP/1.0\r\n\r\n")  # no keep-alive asked: closed after the answer
        status, headers, _ = read_response(s, buf)
        assert status == 200 and headers["connection"] == "close" and closed_by_server(s)


def test_empty_lines_before_a_request_are_ignored(server: RewardServer) -> None:
    with connect(server) as s:
        s.sendall(
            post("/v1/score", {"texts": ["x"]})
            + b"\r\n"
            + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        buf = bytearray()
        assert read_response(s, buf)[0] == 200
        assert read_response(s, buf)[0] == 200


def test_a_client_pipelining_faster_than_it_is_answered_is_held_back() -> None:
    gate = threading.Event()
    limits = ServerLimits(max_request_bytes=4000)
    with RewardServer(make_fake_rm(gate=gate), limits=limits, wait_s=0) as srv, connect(srv) as s:
        s.sendall(post("/v1/score", {"texts": ["first"]}))
        time.sleep(0.1)
        s.settimeout(1)
        sent = 0
        with pytest.raises(TimeoutError):  # the server stops reading: the send blocks
            while sent < 200_000_000:
                s.sendall(b"X" * 1_000_000)
                sent += 1_000_000
        (conn,) = srv._connections
        assert len(conn.buffer) < 1_000_000, "pipelined bytes piled up in the server's memory"
        gate.set()
        assert read_response(s, bytearray())[0] == 200


def test_requests_nobody_waits_for_are_not_scored() -> None:
    """A request whose client left, or that timed out, is dropped from the queue, not run on the
    model."""
    gate = threading.Event()
    rm = make_fake_rm(gate=gate)
    with RewardServer(rm, request_timeout=0.5, wait_s=0) as srv, connect(srv) as busy:
        busy.sendall(post("/v1/score", {"texts": ["running"]}))
        assert rm.scorer.started.wait(10)  # the model is busy with this one; the next ones queue
        gone = connect(srv)
        gone.sendall(post("/v1/score", {"texts": ["gone"]}))
        late = connect(srv)
        late.sendall(post("/v1/score", {"texts": ["late"]}))
        time.sleep(0.2)
        gone.close()
        assert read_response(late, bytearray())[0] == 504
        late.close()
        gate.set()
        assert (
            httpx.post(srv.url + "/v1/score", json={"texts": ["after"]}, timeout=10).status_code
            == 200
        )
    codec = CharCodec()
    seen = rm.scorer.seen
    assert [x for x in seen if x[:-1] in (codec.encode("running"), codec.encode("after"))] == [
        codec.encode("running") + seen[0][-1:],
        codec.encode("after") + seen[0][-1:],
    ]
    assert not [x for x in seen if x[:-1] in (codec.encode("gone"), codec.encode("late"))]


def test_an_oversized_head_is_refused_even_when_it_arrives_in_one_piece(
    server: RewardServer,
) -> None:
    with connect(server) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nX: " + b"y" * 70000 + b"\r\n\r\n")
        assert read_response(s, bytearray())[0] == 431 and closed_by_server(s)


def test_a_client_that_pipelines_but_never_reads_its_answers_is_held_back(
    server: RewardServer,
) -> None:
    one = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    with connect(server) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(1)
        sent = 0
        with pytest.raises(TimeoutError):  # the server stops reading once its answers back up
            while sent < 100_000_000:
                s.sendall(one * 10000)
                sent += len(one) * 10000
        (conn,) = server._connections
        assert conn.transport.get_write_buffer_size() < 1_000_000
        assert len(conn.buffer) < 1_000_000
        s.settimeout(10)
        buf = bytearray()
        for _ in range(100):  # and answers again once the client reads
            assert read_response(s, buf)[0] == 200


def test_requests_pipelined_behind_one_in_flight_at_shutdown_are_answered_503() -> None:
    gate = threading.Event()
    rm = make_fake_rm(gate=gate)
    srv = RewardServer(rm, wait_s=0).start()
    with connect(srv) as s:
        s.sendall(
            post("/v1/score", {"texts": ["in flight"]})
            + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
            + b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert rm.scorer.started.wait(10)
        stopper = threading.Thread(target=srv.shutdown)
        stopper.start()
        time.sleep(0.1)
        gate.set()
        buf = bytearray()
        status, _, body = read_response(s, buf)
        assert status == 200 and json.loads(body) == {"scores": [score_of("in flight")]}
        for _ in range(2):  # told to go elsewhere, not left without an answer
            status, headers, body = read_response(s, buf)
            assert status == 503 and json.loads(body)["error"]["type"] == "shutting_down"
        assert headers["connection"] == "close" and closed_by_server(s)
        stopper.join(10)
        assert not stopper.is_alive()


def test_a_non_finite_score_is_a_json_error_naming_the_items() -> None:
    """JSON has no NaN: a model that overflows must not send unparseable answers (or NaN
    rewards)."""
    rm = make_fake_rm()
    real = rm.scorer.score_ids

    def overflowing(batch, **kw):  # type: ignore[no-untyped-def]
        return [
            float("nan") if ids[1:3] == CharCodec().encode("nn") else s
            for ids, s in zip(batch, real(batch, **kw), strict=True)
        ]

    rm.scorer.score_ids = overflowing  # type: ignore[method-assign]
    with RewardServer(rm) as srv:
        r = httpx.post(srv.url + "/v1/score", json={"texts": ["ok", "<nn|", "fine"]}, timeout=10)
        assert r.status_code == 500
        err = r.json()["error"]  # a strict parser reads it
        assert (
            err["type"] == "non_finite_score" and err["items"] == [1] and "dtype" in err["message"]
        )
        assert (
            httpx.post(srv.url + "/v1/score", json={"texts": ["ok"]}, timeout=10).status_code == 200
        )
