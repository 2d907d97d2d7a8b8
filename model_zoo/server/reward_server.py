"""The reward HTTP server: stdlib ``ThreadingHTTPServer`` in front of the batching scheduler.

Why the standard library: the server's work is JSON in, JSON out, and all heavy lifting happens
in one scheduler thread that owns the model; request threads only parse, tokenize and wait. A
thread per connection is plenty for that, and it keeps the reward server free of extra
dependencies (no ASGI stack to pin next to the user's RLHF framework).

Shutdown is graceful: stop accepting, close idle keep-alive connections, let every request
already read finish (the scheduler keeps scoring until its queue is empty), then stop.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..errors import UsageError
from ..reward.model import RewardModel
from .protocol import JSON, HTTPError, Routes, ServerLimits, bad_request, over_limit
from .scheduler import BatchScheduler, QueueFullError, SchedulerClosedError

log = logging.getLogger("model_zoo.server")

API_KEY_ENV = "MODEL_ZOO_API_KEY"
LOOPBACK = "127.0.0.1"


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins request threads: in-flight requests finish
    block_on_close = True
    allow_reuse_address = True
    request_queue_size = 1024  # many RLHF workers connect at once; the stdlib default is 5

    def __init__(self, address: tuple[str, int], app: RewardServer) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        self.app = app
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "model-zoo-reward"
    timeout = 60  # seconds a client may idle on a connection or take to send its body
    disable_nagle_algorithm = True  # no 40 ms Nagle / delayed-ACK stall on small responses
    wbufsize = 1 << 16  # a response leaves in one write (flushed after each request)
    server: _HTTPServer

    # ---------------------------------------------------------------- connection bookkeeping

    def setup(self) -> None:
        super().setup()
        self.server.app._connection_opened(self)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.app._connection_closed(self)

    def parse_request(self) -> bool:
        # The request line has been read: this connection is now busy until we answer.
        self.server.app._connection_busy(self, True)
        return super().parse_request()

    def handle_expect_100(self) -> bool:
        # The stdlib leaves "100 Continue" in our write buffer; a client (curl) would wait for it.
        ok = super().handle_expect_100()
        self.wfile.flush()
        return ok

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)

    # ---------------------------------------------------------------- dispatch

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        app = self.server.app
        self._body_read = False
        try:
            try:
                status, body = 200, app._handle(self, method)
            except HTTPError as exc:
                status, body = exc.status, exc.body()
                self._extra_headers = exc.headers
            except Exception as exc:  # noqa: BLE001 - a bug must still answer JSON, and be logged
                log.exception("reward server: internal error on %s %s", method, self.path)
                status, body = 500, {"error": {"type": "internal", "message": f"{type(exc).__name__}: {exc}"}}
            self._send(status, body)
        finally:
            app._connection_busy(self, False)

    def _send(self, status: int, body: JSON) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        if self.server.app.draining or not self._body_consumed():
            self.close_connection = True  # an unread body would be parsed as the next request
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in getattr(self, "_extra_headers", {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self._extra_headers = {}

    def _body_consumed(self) -> bool:
        if getattr(self, "_body_read", False):
            return True
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        return not chunked and self.headers.get("Content-Length", "0").strip() in ("", "0")

    def read_json(self, limit: int) -> JSON:
        """The request body as a JSON object, within ``limit`` bytes."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise HTTPError(411, "length_required", "send a Content-Length header, not a chunked body",
                            field="Content-Length")
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            self.close_connection = True
            raise HTTPError(411, "length_required", "a Content-Length header is required", field="Content-Length")
        try:
            length = int(raw_length)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise bad_request("Content-Length", f"must be a non-negative integer, got {raw_length!r}") from None
        if length > limit:
            self.close_connection = True  # the body stays unread
            raise over_limit("max_request_bytes", length, limit, "bytes in the request body")
        data = self.rfile.read(length)
        self._body_read = True
        try:
            body = json.loads(data)
        except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, absurd nesting
            raise bad_request("body", f"is not valid JSON ({type(exc).__name__}: {exc})") from None
        if not isinstance(body, dict):
            raise bad_request("body", f"must be a JSON object, got {type(body).__name__}")
        return body


def check_api_key(api_key: str | None) -> None:
    """Refuse a key no client could send: HTTP headers carry ASCII, and edge whitespace is trimmed."""
    if api_key and not (api_key.isascii() and api_key.isprintable() and api_key == api_key.strip()):
        raise UsageError("the API key must be printable ASCII without leading or trailing spaces (HTTP "
                         "headers carry ASCII); "
                         "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")


def check_listenable(host: str, port: int) -> None:
    """Fail now, with advice, when ``host:port`` cannot be bound: before a model spends minutes loading.

    A free port can still be taken between this check and the real bind; that case is reported
    by :class:`RewardServer` the same way.
    """
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
            probe.bind((host, port))
    except (OSError, OverflowError) as exc:
        raise _cannot_listen(host, port, exc) from None


def _cannot_listen(host: str, port: int, exc: BaseException) -> UsageError:
    reason = getattr(exc, "strerror", None) or str(exc)
    return UsageError(f"cannot listen on {host}:{port}: {reason}. {_listen_advice(exc)}")


def _listen_advice(exc: BaseException) -> str:
    """Which option to change after a failed bind: the port when it is the problem, else the host."""
    import errno

    if isinstance(exc, OverflowError):
        return "Pick a --port between 0 and 65535 (0 picks a free one)."
    code = getattr(exc, "errno", None)
    if code == errno.EADDRINUSE:
        return "Another program holds that port: pick another --port (0 picks a free one)."
    if code == errno.EACCES:
        return "Ports below 1024 need privileges: pick a --port above 1023."
    return "Check --host: it must name an address of this machine (127.0.0.1, 0.0.0.0 or a local IP)."


class RewardServer:
    """Serves one RewardModel (local, or a Ray pool) over HTTP with dynamic batching.

    Use as a context manager, or ``start()`` / ``shutdown()``; ``port=0`` picks a free port.
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
    ) -> None:
        check_api_key(api_key)
        self.rm = rm
        self.limits = limits or ServerLimits()
        self.api_key = api_key or None
        self.request_timeout = request_timeout
        self.draining = False
        self.scheduler = BatchScheduler(
            lambda ids: rm.scorer.score_ids(ids, batch_size=batch_size, max_tokens_per_batch=max_tokens_per_batch),
            wait_s=wait_s,
            max_wait_s=max_wait_s,
            max_batch_items=max_batch_items,
            max_queue=self.limits.max_queue,
        )
        self.routes = Routes(rm, self.limits, self._score, truncate=truncate)
        self._post = self.routes.post_routes()
        self._get = {"/health": self._health, "/v1/models": self.routes.models}
        self._local = threading.local()  # per request thread: announced to the scheduler?
        self._lock = threading.Lock()
        self._connections: dict[_Handler, bool] = {}  # handler -> busy
        try:
            self._httpd = _HTTPServer((host, port), self)
        except (OSError, OverflowError) as exc:
            self.scheduler.close()
            raise _cannot_listen(host, port, exc) from None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> RewardServer:
        """Serve in a background thread and return at once."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="reward-http", daemon=True
        )
        self._thread.start()
        return self

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop accepting, finish every request already received, stop the scheduler."""
        with self._lock:
            if self.draining:
                return
            self.draining = True
            for handler, busy in self._connections.items():
                if not busy:  # idle keep-alive connection: wake its read so it ends
                    _close_quietly(handler.connection)
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout)
        self._httpd.server_close()  # joins request threads
        self.scheduler.close(timeout)

    def __enter__(self) -> RewardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ---------------------------------------------------------------- request handling

    def _handle(self, handler: _Handler, method: str) -> JSON:
        path = handler.path.split("?", 1)[0].rstrip("/") or "/"
        routes = self._post if method == "POST" else self._get
        if path not in routes:
            other = self._get if method == "POST" else self._post
            if path in other:
                err = HTTPError(405, "method_not_allowed", f"{path} takes {'GET' if method == 'POST' else 'POST'}")
                err.headers["Allow"] = "GET" if method == "POST" else "POST"
                raise err
            raise HTTPError(404, "not_found", f"no route {path}; see GET /v1/models and the docs for routes")
        if path != "/health":
            self._check_auth(handler)
        if self.draining:
            handler.close_connection = True
            raise HTTPError(503, "shutting_down", "the server is shutting down; retry on another replica")
        if method == "GET":
            return routes[path]()  # type: ignore[call-arg]
        # Announce the request while it is read and tokenized, so a forming batch waits for it.
        self.scheduler.arriving(+1)
        self._local.announced = True
        try:
            return routes[path](handler.read_json(self.limits.max_request_bytes))  # type: ignore[call-arg]
        finally:
            if self._local.announced:  # refused before reaching the scheduler
                self._local.announced = False
                self.scheduler.arriving(-1)

    def _check_auth(self, handler: _Handler) -> None:
        if self.api_key is None:
            return
        header = handler.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode())
        if not ok:
            err = HTTPError(401, "unauthorized", "missing or wrong bearer token (Authorization: Bearer KEY)",
                            field="Authorization")
            err.headers["WWW-Authenticate"] = 'Bearer realm="model-zoo"'
            raise err

    def _score(self, ids: list[list[int]]) -> list[float]:
        announced = getattr(self._local, "announced", False)
        self._local.announced = False
        try:
            future = self.scheduler.submit(ids, announced=announced)
        except QueueFullError as exc:
            err = over_limit("max_queue", exc.waiting + len(ids), exc.limit, "items waiting to be scored", status=429)
            err.headers["Retry-After"] = "1"
            raise err from None
        except SchedulerClosedError:
            raise HTTPError(503, "shutting_down", "the server is shutting down; retry on another replica") from None
        try:
            return future.result(self.request_timeout)
        except TimeoutError:
            raise HTTPError(504, "timeout", f"scoring took longer than {self.request_timeout:.0f} s") from None

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

    # ---------------------------------------------------------------- connection bookkeeping

    def _connection_opened(self, handler: _Handler) -> None:
        with self._lock:
            self._connections[handler] = False
            if self.draining:
                _close_quietly(handler.connection)

    def _connection_busy(self, handler: _Handler, busy: bool) -> None:
        with self._lock:
            if handler in self._connections:
                self._connections[handler] = busy

    def _connection_closed(self, handler: _Handler) -> None:
        with self._lock:
            self._connections.pop(handler, None)


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def serve_reward(
    rm: RewardModel,
    *,
    host: str = LOOPBACK,
    port: int = 8000,
    api_key: str | None = None,
    stop: threading.Event | None = None,
    on_ready: Any = None,
    **options: Any,
) -> RewardServer:
    """Run a reward server until ``stop`` is set (the CLI sets it on SIGINT/SIGTERM), then drain.

    ``on_ready(server)`` is called once the socket is listening (to print the URL).
    """
    server = RewardServer(rm, host=host, port=port, api_key=api_key, **options).start()
    if on_ready is not None:
        on_ready(server)
    try:
        (stop or threading.Event()).wait()
    finally:
        server.shutdown()
    return server
