"""The reward HTTP server: one asyncio event loop in front of the batching scheduler.

The loop thread reads requests, checks and tokenizes them and submits their token ids to the
scheduler; the scheduler thread owns the model. When a batch is scored, each request's answer
is written from the loop. Why not a thread per connection (``http.server``): per request the
stdlib's parsing and thread hand-offs cost 0.7 ms of CPU, more than scoring a conversation
with a small model, and 16 request threads contending with the model thread for the GIL made
small batches slow. Measured on the tiny model (bench/reward.py): ~0.3 ms per request here.

Shutdown is graceful: stop accepting, close idle keep-alive connections, answer every request
already read (the scheduler keeps scoring until its queue is empty; requests pipelined
behind them are answered 503), then stop. A client that sends faster than it reads its answers
is held back by TCP flow control (reading pauses), so its bytes never pile up in memory.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import socket
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from ..errors import UsageError
from ..reward.model import RewardModel
from .http11 import CONTINUE, MAX_HEAD_BYTES, Request, parse_head, response
from .protocol import (
    JSON,
    Body,
    HTTPError,
    NeedsScores,
    Routes,
    ServerLimits,
    bad_request,
    over_limit,
)
from .runtimes import RuntimeRoutes
from .scheduler import BatchScheduler, QueueFullError, SchedulerClosedError

log = logging.getLogger("model_zoo.server")

API_KEY_ENV = "MODEL_ZOO_API_KEY"
LOOPBACK = "127.0.0.1"
INLINE_BODY_BYTES = 64 * 1024  # larger request bodies are parsed and tokenized on a helper thread
IDLE_TIMEOUT_S = (
    60.0  # a client may idle on a connection, or take this long between bytes of a request
)


class _Connection(asyncio.Protocol):
    """One client connection: requests are answered one at a time, in order (pipelining works)."""

    def __init__(self, app: RewardServer) -> None:
        self.app = app
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False  # a request's head has been read and its answer not yet written
        self.closed = False
        self.peer = "-"
        self._timer: asyncio.TimerHandle | None = None
        self._continue_sent = False
        self._request: Request | None = None
        self._route: Any = None
        self._head_end = 0  # where the current request's body starts in the buffer
        self._length = 0  # its body's length
        self._awaiting_body = False  # head read, body not complete yet
        self._eof = False  # the client has finished sending (half-close)
        self._announced = (
            False  # told the scheduler a request is arriving (see BatchScheduler.arriving)
        )
        self._scoring: Future[list[float]] | None = (
            None  # the scheduler's future for the current request
        )
        self._paused = False  # reading paused (see _flow)
        self._write_paused = False  # the client is not reading its answers: take no new request

    # ---------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )  # no Nagle stall on small answers
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]) if isinstance(peer, tuple) else "-"
        self.app._connections.add(self)
        if self.app.draining:
            self.close()
            return
        self._arm_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._withdraw()
        self._drop_scoring()
        self.app._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._arm_timer()
        if not self.busy:
            self._next()
        elif self._awaiting_body:
            self._body()
        self._flow()

    def pause_writing(self) -> None:
        self._write_paused = True
        self._flow()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._flow()
        if self.buffer and not self.busy:
            self.app._loop.call_soon(self._resume)

    def _flow(self) -> None:
        """Back-pressure: a client that pipelines faster than it is answered, or does not read its
        answers, waits in its own socket buffers, not in this process's memory."""
        if self.transport is None or self.closed:
            return
        cap = self.app.limits.max_request_bytes + MAX_HEAD_BYTES
        hold = self._write_paused or (len(self.buffer) > cap and not self._awaiting_body)
        if hold and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        elif not hold and self._paused:
            self._paused = False
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        # Keep the write side open until the answer being prepared is sent; a request whose
        # body will never arrive ends here (returning False closes the transport).
        self._eof = True
        if self.busy:
            return not self._awaiting_body
        return (
            self.buffer.find(b"\r\n\r\n") >= 0
        )  # a pipelined request still to start (see _resume)

    # ---------------------------------------------------------------- request cycle

    def _next(self) -> None:
        """Start on the next complete request head in the buffer, if any."""
        while self.buffer.startswith(
            b"\r\n"
        ):  # empty lines before a request line are ignored (RFC 9112 2.2)
            del self.buffer[:2]
        end = self.buffer.find(b"\r\n\r\n")
        if (
            end < 0 or end > MAX_HEAD_BYTES
        ):  # (the same limit whether the head came in one read or many)
            if len(self.buffer) > MAX_HEAD_BYTES:
                self._fail(
                    HTTPError(
                        431, "headers_too_large", f"the request head is over {MAX_HEAD_BYTES} bytes"
                    )
                )
            elif self._eof:  # the client sent its last request and will send no more
                self.close()
            return
        self.busy = True
        self._continue_sent = False
        try:
            request = parse_head(bytes(self.buffer[:end]))
        except HTTPError as exc:
            self._fail(exc)
            return
        self._head_end = end + 4
        self._request = request
        try:
            self._route = self.app._route(request)
            # A GET may carry a body too: it is read (and ignored), so its bytes are never taken
            # for a request.
            framed = request.method == "POST" or request.has_body
            self._length = request.body_length(self.app.limits.max_request_bytes) if framed else 0
        except (
            HTTPError
        ) as exc:  # routing, auth, draining, body size: answered without reading the body
            del self.buffer[
                : self._head_end
            ]  # (with a body, the connection closes: the stream is unusable)
            self._answer(
                exc.status, exc.body(), exc.headers, close=request.has_body or exc.status == 413
            )
            return
        self._body()

    def _body(self) -> None:
        """Dispatch once the whole body is here; until then, ask for it (100 Continue) and wait."""
        request, start = self._request, self._head_end
        assert request is not None
        self._awaiting_body = len(self.buffer) - start < self._length
        if self._awaiting_body:
            if self._eof:  # half-closed before the body was complete: it will never arrive
                self.close()
                return
            self._flow()  # the rest of the body must be read
            if request.method == "POST" and not self._announced:
                # A batch forming now waits for this body (up to max_wait_s) instead of leaving
                # without it.
                self._announced = True
                self.app.scheduler.arriving(+1)
            expect = request.headers.get("expect", "").lower()
            if (
                not self._continue_sent
                and "100-continue" in expect
                and request.version == "HTTP/1.1"
            ):
                self._continue_sent = True
                self._write(CONTINUE)
            return
        raw = bytes(self.buffer[start : start + self._length])
        del self.buffer[: start + self._length]
        route = self._route
        prepare = route if request.method == "GET" else (lambda: route(_json_object(raw)))
        if len(raw) > INLINE_BODY_BYTES:
            # Parsing and tokenizing a large request takes a while: do it off the loop, so that
            # other connections (health probes included) are answered meanwhile.
            loop = self.app._loop
            pending = self.app._prepare_pool.submit(prepare)
            pending.add_done_callback(lambda f: _call_in_loop(loop, self._prepared, f))
            return
        try:
            answer = prepare()
        except Exception as exc:  # noqa: BLE001 - sorted out in _settle
            self._settle(None, exc)
        else:
            self._settle(answer, None)

    def _prepared(self, future: Future[Any]) -> None:
        exc = future.exception()
        self._settle(None if exc is not None else future.result(), exc)

    def _settle(self, answer: Any, exc: BaseException | None) -> None:
        """Answer, or hand the token ids to the scheduler; every error becomes a JSON answer."""
        try:
            if self.closed:
                return
            if exc is not None:
                raise exc
            if isinstance(answer, NeedsScores):
                self._submit(answer)
                return
            self._answer(200, answer)
        except HTTPError as err:
            self._answer(err.status, err.body(), err.headers)
        except Exception as err:  # noqa: BLE001 - a bug must still answer JSON, and be logged
            self._internal_error(err)
        finally:
            self._withdraw()

    def _withdraw(self) -> None:
        """Take back an announcement that no submission consumed (refused, or the client left)."""
        if self._announced:
            self._announced = False
            self.app.scheduler.arriving(-1)

    def _submit(self, pending: NeedsScores) -> None:
        app = self.app
        announced, self._announced = self._announced, False
        try:
            future = app.scheduler.submit(pending.ids, announced=announced)
        except QueueFullError as exc:
            err = over_limit(
                "max_queue",
                exc.waiting + len(pending.ids),
                exc.limit,
                "items waiting to be scored",
                status=429,
            )
            err.headers["Retry-After"] = "1"
            raise err from None
        except SchedulerClosedError:
            raise HTTPError(
                503, "shutting_down", "the server is shutting down; retry on another replica"
            ) from None
        loop = app._loop
        self._scoring = future
        timer = loop.call_later(app.request_timeout, self._timed_out, future)
        future.add_done_callback(lambda f: _call_in_loop(loop, self._scored, f, pending, timer))

    def _scored(
        self, future: Future[list[float]], pending: NeedsScores, timer: asyncio.TimerHandle
    ) -> None:
        timer.cancel()
        if self._scoring is future:
            self._scoring = None
        if getattr(future, "_mz_timed_out", False) or self.closed:
            return
        try:
            body = pending.finish(future.result())
        except HTTPError as exc:
            self._answer(exc.status, exc.body(), exc.headers)
        except Exception as exc:  # noqa: BLE001 - the model failed: answer JSON, log the traceback
            self._internal_error(exc)
        else:
            self._answer(200, body)

    def _timed_out(self, future: Future[list[float]]) -> None:
        future._mz_timed_out = True  # type: ignore[attr-defined] # its scores arrive to nobody
        self._drop_scoring()
        timeout = self.app.request_timeout
        message = (
            f"scoring took longer than {timeout:g} s (the server is overloaded); "
            "retry later or send fewer items"
        )
        self._answer(504, HTTPError(504, "timeout", message).body())

    def _drop_scoring(self) -> None:
        """Nobody will read the current request's scores: if it is still queued, the model skips
        it."""
        if self._scoring is not None:
            self._scoring.cancel()  # a no-op once its batch is running
            self._scoring = None

    def _internal_error(self, exc: BaseException) -> None:
        where = (
            f"{self._request.method} {self._request.target}"
            if self._request is not None
            else "a request"
        )
        log.error("reward server: internal error on %s", where, exc_info=exc)
        self._answer(
            500, {"error": {"type": "internal", "message": f"{type(exc).__name__}: {exc}"}}
        )

    def _answer(
        self, status: int, body: Body, headers: dict[str, str] | None = None, *, close: bool = False
    ) -> None:
        if self.closed:
            return
        request = self._request
        # After a half-close, requests already pipelined are still answered; the last one closes.
        # While draining, requests already pipelined behind this one are answered 503, not dropped.
        close = (
            close
            or (self._eof and not self.buffer.strip(b"\r\n"))
            or (self.app.draining and not self.has_next)
            or request is None
            or not request.keep_alive
        )
        data = json.dumps(body, ensure_ascii=False).encode()
        if request is not None:
            log.debug("%s - %s %s %d", self.peer, request.method, request.target, status)
            if (
                not close and request.version == "HTTP/1.0"
            ):  # a 1.0 client assumes close unless told
                headers = {**(headers or {}), "Connection": "keep-alive"}
        self._write(response(status, data, headers=headers, close=close))
        self.busy = False
        if close:
            self.close()
            return
        self._flow()
        if (
            self.buffer and not self._write_paused
        ):  # a pipelined request: start it from the loop, not by recursion
            self.app._loop.call_soon(self._resume)

    @property
    def has_next(self) -> bool:
        """A pipelined request's head is waiting in the buffer."""
        return not self.closed and self.buffer.find(b"\r\n\r\n") >= 0

    @property
    def pending(self) -> bool:
        """A request is being answered, or is waiting to be."""
        return not self.closed and (self.busy or self.has_next)

    def _resume(self) -> None:
        if not self.busy and not self.closed and not self._write_paused:
            self._next()

    def _fail(self, exc: HTTPError) -> None:
        """A request we cannot even frame: answer and close (the rest of the stream is unusable)."""
        self._request = None
        self._answer(exc.status, exc.body(), exc.headers, close=True)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        """Close after what was written has been sent."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.app._loop.call_later(IDLE_TIMEOUT_S, self._idle)

    def _idle(self) -> None:
        if self.busy and not self._awaiting_body:
            self._arm_timer()  # waiting for its scores, not for the client
            return
        self.close()  # idle keep-alive connection, or a client that stopped mid-request


def _call_in_loop(loop: asyncio.AbstractEventLoop, callback: Any, *args: Any) -> None:
    """Run ``callback`` on the loop from another thread; after a shutdown that gave up waiting
    (the loop is closed), work finishing late has nobody left to answer."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        if not loop.is_closed():
            raise


def _json_object(raw: bytes) -> JSON:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd nesting
        raise bad_request("body", f"is not valid JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(body, dict):
        raise bad_request("body", f"must be a JSON object, got {type(body).__name__}")
    return body


def check_api_key(api_key: str | None) -> None:
    """Refuse a key no client could send: HTTP headers carry ASCII, and edge whitespace is
    trimmed."""
    if api_key and not (api_key.isascii() and api_key.isprintable() and api_key == api_key.strip()):
        raise UsageError(
            "the API key must be printable ASCII without leading or trailing spaces (HTTP "
            "headers carry ASCII); "
            "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )


def check_listenable(host: str, port: int) -> None:
    """Fail now, with advice, when ``host:port`` cannot be bound: before a model spends minutes
    loading.

    A free port can still be taken between this check and the real bind; that case is reported
    by :class:`RewardServer` the same way.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:  # (with port 0 too: a wrong --host must fail before the model loads)
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
            probe.bind((host, port))
    except (OSError, OverflowError) as exc:
        raise _cannot_listen(host, port, exc) from None


def _cannot_listen(host: str, port: int, exc: BaseException) -> UsageError:
    reason = getattr(exc, "strerror", None) or str(exc)
    return UsageError(f"cannot listen on {host}:{port}: {reason}. {_listen_advice(exc)}")


def _listen_advice(exc: BaseException) -> str:
    """Which option to change after a failed bind: the port when it is the problem, else the
    host."""
    import errno

    if isinstance(exc, OverflowError):
        return "Pick a --port between 0 and 65535 (0 picks a free one)."
    code = getattr(exc, "errno", None)
    if code == errno.EADDRINUSE:
        return "Another program holds that port: pick another --port (0 picks a free one)."
    if code == errno.EACCES:
        return "Ports below 1024 need privileges: pick a --port above 1023."
    return (
        "Check --host: it must name an address of this machine (127.0.0.1, 0.0.0.0 or a local IP)."
    )


class RewardServer:
    """Serves one RewardModel (local, or a Ray pool) over HTTP with dynamic batching.

    Use as a context manager, or ``start()`` / ``shutdown()``; ``port=0`` picks a free port.
    ``pooling_format`` says whose answer ``POST /pooling`` gives, vLLM's or LMDeploy's (their
    clients send the same request); ``/vllm/pooling`` and ``/lmdeploy/pooling`` always give each.
    """

    def __init__(
        self,
        rm: RewardModel,
        *,
        host: str = LOOPBACK,
        port: int = 0,
        api_key: str | None = None,
        limits: ServerLimits | None = None,
        wait_s: float = 0.005,
        max_wait_s: float | None = None,
        max_batch_items: int = 256,
        batch_size: int | None = None,
        max_tokens_per_batch: int | None = None,
        truncate: bool = False,
        request_timeout: float = 600.0,
        pooling_format: str = "vllm",
    ) -> None:
        check_api_key(api_key)
        self.rm = rm
        self.limits = limits or ServerLimits()
        self.api_key = api_key or None
        self.request_timeout = request_timeout
        self.draining = False
        self.routes = Routes(rm, self.limits, truncate=truncate)
        # vLLM's and LMDeploy's /pooling and SGLang's /classify (runtimes.py), on the same batching
        self.runtime_routes = RuntimeRoutes(self.routes, pooling_format=pooling_format)
        self._post = {**self.routes.post_routes(), **self.runtime_routes.post_routes()}
        self._get = {"/health": self._health, "/v1/models": self.routes.models}
        self._connections: set[_Connection] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()  # set when the first shutdown() has finished
        self.unanswered = 0  # requests still unanswered when shutdown() stopped waiting
        self._thread: threading.Thread | None = None
        try:
            sock = _listen(host, port)
        except (OSError, OverflowError) as exc:
            raise _cannot_listen(host, port, exc) from None
        self._address = sock.getsockname()
        self._prepare_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="reward-prepare")
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            self._loop.create_server(lambda: _Connection(self), sock=sock, backlog=1024)
        )
        self.scheduler = BatchScheduler(
            lambda ids: rm.scorer.score_ids(
                ids, batch_size=batch_size, max_tokens_per_batch=max_tokens_per_batch
            ),
            wait_s=wait_s,
            max_wait_s=max_wait_s,
            max_batch_items=max_batch_items,
            max_queue=self.limits.max_queue,
        )

    @property
    def host(self) -> str:
        return str(self._address[0])

    @property
    def port(self) -> int:
        return int(self._address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> RewardServer:
        """Serve in a background thread and return at once."""
        if self.draining:
            raise UsageError(
                "this reward server was shut down; create a new RewardServer to serve again"
            )
        if self._thread is not None:
            return self  # already serving
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="reward-http", daemon=True
        )
        self._thread.start()
        return self

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop accepting, answer every request already received (waiting up to ``timeout``
        seconds for them), stop the scheduler. ``unanswered`` then says how many were cut off."""
        with self._lock:
            first, self.draining = not self.draining, True
        if not first:  # a second caller returns once the server has stopped, as the first does
            self._stopped.wait(timeout + 10)
            return
        try:
            self._stop(timeout)
        finally:
            self._stopped.set()

    def _stop(self, timeout: float) -> None:
        if self._thread is not None and self._thread.is_alive():
            drained = asyncio.run_coroutine_threadsafe(self._drain(timeout), self._loop)
            try:
                self.unanswered = drained.result(timeout + 5)
            except Exception:  # noqa: BLE001 - stopping anyway
                log.exception("reward server: draining failed")
                self.unanswered = sum(c.pending for c in list(self._connections))
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        else:
            self._server.close()
        if not self._loop.is_running():
            self._loop.close()
        self._prepare_pool.shutdown(wait=False)
        self.scheduler.close(timeout)

    async def _drain(self, timeout: float) -> int:
        """Close idle connections, wait for the others' answers; returns how many were cut off."""
        self._server.close()  # no new connections
        for conn in list(self._connections):
            if not conn.pending:
                conn.close()
        deadline = self._loop.time() + timeout
        while any(c.pending for c in self._connections) and self._loop.time() < deadline:
            await asyncio.sleep(0.01)
        unanswered = sum(c.pending for c in self._connections)
        for conn in list(self._connections):
            conn.close()
        await asyncio.sleep(0)  # let the transports flush and close
        return unanswered

    def __enter__(self) -> RewardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ---------------------------------------------------------------- request handling

    def _route(self, request: Request) -> Any:
        """The route function for ``request``; 404/405/401/503 as an HTTPError."""
        path, method = request.path, request.method
        routes = self._post if method == "POST" else self._get if method == "GET" else {}
        if path not in routes:
            allow = "POST" if path in self._post else "GET" if path in self._get else None
            if allow is not None:
                err = HTTPError(405, "method_not_allowed", f"{path} takes {allow}")
                err.headers["Allow"] = allow
                raise err
            raise HTTPError(
                404, "not_found", f"no route {path}; see GET /v1/models and the docs for routes"
            )
        if path != "/health":
            self._check_auth(request)
        if self.draining:
            raise HTTPError(
                503, "shutting_down", "the server is shutting down; retry on another replica"
            )
        return routes[path]

    def _check_auth(self, request: Request) -> None:
        if self.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.api_key.encode()
        )
        if not ok:
            err = HTTPError(
                401,
                "unauthorized",
                "missing or wrong bearer token (Authorization: Bearer KEY)",
                field="Authorization",
            )
            err.headers["WWW-Authenticate"] = 'Bearer realm="model-zoo"'
            raise err

    def _health(self) -> JSON:
        s = self.scheduler.stats
        return {
            "status": "draining" if self.draining else "ok",
            "model": self.rm.name,
            "queue": self.scheduler.waiting,
            "batches": s.batches,
            "requests": s.requests,
            "items": s.items,
            "merged_batches": s.merged_batches,
            "largest_batch_items": s.largest_batch_items,
            "largest_batch_requests": s.largest_batch_requests,
        }


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)  # many RLHF workers connect at once
    except BaseException:
        sock.close()
        raise
    return sock


def serve_reward(
    rm: RewardModel,
    *,
    host: str = LOOPBACK,
    port: int = 8000,
    api_key: str | None = None,
    stop: threading.Event | None = None,
    on_ready: Any = None,
    drain_timeout: float = 30.0,
    **options: Any,
) -> RewardServer:
    """Run a reward server until ``stop`` is set (the CLI sets it on SIGINT/SIGTERM), then drain.

    ``on_ready(server)`` is called once the socket is listening (to print the URL).
    """
    server = RewardServer(rm, host=host, port=port, api_key=api_key, **options).start()
    try:
        if on_ready is not None:
            on_ready(server)
        (stop or threading.Event()).wait()
    finally:
        server.shutdown(drain_timeout)
    return server
