"""HTTP GETs for the engine: keep-alive connection pools, redirects, timeouts, typed failures.

Two transports with one interface (``Transport.get`` -> ``Response``):

- ``StdlibTransport`` (the default): ``http.client`` connections pooled per origin, bodies read
  with ``readinto`` straight into the engine's buffer. Measured on the 2-core dev machine over
  loopback, 512 MiB: ``httpx``'s ``iter_raw`` costs about 1.4 CPU-seconds per GB (h11 copies
  every 64 KiB chunk several times) and tops out near 740 MB/s; ``http.client.readinto`` with a
  1 MiB buffer costs about 0.18 CPU-s/GB (5.8 GB/s). Hashing (about 1.2 GB/s/core) and writing
  need that CPU, so the default avoids h11. It honours ``HTTP(S)_PROXY`` / ``NO_PROXY``
  (CONNECT tunnels for https), ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``, and certifi's bundle.
- ``HttpxTransport``: used when the caller passes an ``httpx.Client`` (custom auth, SOCKS
  proxies, mounts, mock transports). Same behaviour, more CPU per byte.

Redirects are followed here (at most 10) so that the headers of a ``RemoteFile`` (which may
carry a token) are sent only to the origin of its URL, never to a CDN it redirects to, except
https hosts under the domains the file names in ``credential_domains`` (Modelers' CDN, which
its official client sends the token to).
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import threading
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

if TYPE_CHECKING:  # pragma: no cover
    import httpx

REDIRECTS = frozenset({301, 302, 303, 307, 308})
CHUNKED_READ = 64 * 1024  # a chunked body is read this much at a time when asked for "some"
MAX_REDIRECTS = 10
USER_AGENT = "model-zoo"


class TransferError(Exception):
    """One request that failed: why, and whether the same source is worth asking again."""

    def __init__(
        self,
        reason: str,
        *,
        retriable: bool,
        status: int | None = None,
        retry_after: float | None = None,
        kind: str = "network",
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retriable = retriable
        self.status = status
        self.retry_after = retry_after
        self.kind = kind  # network | status | stall | short | protocol | size


def status_error(status: int, retry_after_header: str | None = None) -> TransferError:
    """The failure an HTTP status means: 408, 429 and 5xx are worth retrying, other 4xx are not."""
    from ..hubs.http import parse_retry_after  # the adapters' parser; pulls import httpx anyway

    retriable = status in (408, 429) or status >= 500
    return TransferError(
        f"HTTP {status}",
        retriable=retriable,
        status=status,
        retry_after=parse_retry_after(retry_after_header),
        kind="status",
    )


@dataclass(frozen=True)
class Timeouts:
    connect: float
    response: float  # from request sent to response headers
    stall: float  # no body bytes for this long


class Response(Protocol):
    status: int
    url: str

    def header(self, name: str) -> str | None: ...

    def readinto(self, buf: memoryview) -> int:
        """Body bytes into ``buf``, filling it unless the body ends; 0 at the end. Raises
        TransferError."""
        ...

    def read_some(self, buf: memoryview) -> int:
        """Whatever body bytes are there, at least one (waiting for them), at most ``len(buf)``;
        0 at the end of the body. Raises TransferError."""
        ...

    def abort(self) -> None:
        """From another thread: make a read blocked on this response fail now."""
        ...

    def close(self, *, reusable: bool) -> None:
        """Give the connection back (when the body was read to its end) or drop it."""
        ...


class Transport(Protocol):
    def get(
        self,
        url: str,
        headers: Mapping[str, str],
        range_header: str | None,
        credential_domains: tuple[str, ...] = (),
    ) -> Response: ...

    def abort_all(self) -> None:
        """Unblock every read in flight (used on Ctrl-C and fatal errors)."""
        ...

    def close(self) -> None: ...


def _same_origin(a: SplitResult, b: SplitResult) -> bool:
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def in_domains(parts: SplitResult, domains: tuple[str, ...]) -> bool:
    """An https URL whose host is one of ``domains`` or a subdomain of one (``cdn.modelers.cn``
    is under ``modelers.cn``; ``evilmodelers.cn`` is not)."""
    host = (parts.hostname or "").lower().rstrip(".")
    return parts.scheme == "https" and any(host == d or host.endswith("." + d) for d in domains)


def follow_redirects(
    send_once: Callable[[str, Mapping[str, str]], Response],
    url: str,
    headers: Mapping[str, str],
    range_header: str | None,
    credential_domains: tuple[str, ...] = (),
) -> Response:
    """Send with ``send_once(url, headers)``; follow redirects, dropping headers across origins
    except to https hosts under ``credential_domains``."""
    origin = urlsplit(url)
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        here = urlsplit(current)
        keep = _same_origin(origin, here) or in_domains(here, credential_domains)
        sent = dict(headers) if keep else {}
        if range_header:
            sent["Range"] = range_header
        resp = send_once(current, sent)
        if resp.status not in REDIRECTS:
            return resp
        location = resp.header("location")
        resp.close(reusable=False)
        if not location:
            raise TransferError(
                f"HTTP {resp.status} without a Location header", retriable=False, kind="protocol"
            )
        current = urljoin(current, location)
        if urlsplit(current).scheme not in ("http", "https"):
            raise TransferError(
                f"redirect to a non-http URL scheme ({urlsplit(current).scheme})",
                retriable=False,
                kind="protocol",
            )
    raise TransferError(f"more than {MAX_REDIRECTS} redirects", retriable=False, kind="protocol")


class _RedirectingTransport:
    """``Transport.get`` for both transports: redirects are followed here, one request at a
    time through the subclass's ``_send_once``."""

    def _send_once(self, url: str, headers: Mapping[str, str]) -> Response:
        raise NotImplementedError

    def get(
        self,
        url: str,
        headers: Mapping[str, str],
        range_header: str | None,
        credential_domains: tuple[str, ...] = (),
    ) -> Response:
        return follow_redirects(self._send_once, url, headers, range_header, credential_domains)


# ------------------------------------------------------------------------------ stdlib


_SSL_LOCK = threading.Lock()
_SSL_CONTEXTS: dict[tuple[str | None, str | None], ssl.SSLContext] = {}


def _ssl_context() -> ssl.SSLContext:
    """The client TLS context for the CA settings in the environment, built once per process.

    Loading a CA bundle takes ~30 ms of CPU with the GIL held; built per connection, the first
    16 connections of a pull over https queued ~0.5 s behind one another before their first
    byte. An ``SSLContext`` is safe to share between threads and connections.
    """
    key = (os.environ.get("SSL_CERT_FILE") or None, os.environ.get("SSL_CERT_DIR") or None)
    with _SSL_LOCK:
        context = _SSL_CONTEXTS.get(key)
        if context is None:
            context = _SSL_CONTEXTS[key] = _new_ssl_context(*key)
        return context


def _new_ssl_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    if cafile:
        return ssl.create_default_context(cafile=cafile)
    if capath:
        return ssl.create_default_context(capath=capath)
    try:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:  # pragma: no cover - certifi comes with httpx
        return ssl.create_default_context()


def _proxy_for(parts: SplitResult) -> SplitResult | None:
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme)
    # proxy_bypass_environment is in urllib.request on every platform, but not in typeshed.
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not proxy or bypass(parts.hostname or "", proxies):
        return None
    return urlsplit(proxy if "://" in proxy else "http://" + proxy)


def _proxy_auth(proxy: SplitResult) -> dict[str, str]:
    if proxy.username is None:
        return {}
    import base64

    raw = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}".encode()
    return {"Proxy-Authorization": "Basic " + base64.b64encode(raw).decode()}


_Key = tuple[str, str, int, str]


def _set_timeout(sock: socket.socket | None, seconds: float) -> None:
    try:
        if sock is not None:
            sock.settimeout(seconds)
    except OSError:
        pass


class _StdlibResponse:
    def __init__(
        self,
        transport: StdlibTransport,
        key: _Key,
        conn: http.client.HTTPConnection,
        resp: http.client.HTTPResponse,
        url: str,
    ) -> None:
        self._transport = transport
        self._key = key
        self._conn = conn
        self._resp = resp
        self.status = resp.status
        self.url = url

    def header(self, name: str) -> str | None:
        return self._resp.getheader(name)

    def readinto(self, buf: memoryview) -> int:
        return self._read(self._resp.readinto, buf)

    def read_some(self, buf: memoryview) -> int:
        return self._read(self._readinto1, buf)

    def _readinto1(self, buf: memoryview) -> int:
        """``HTTPResponse.readinto`` with at most one read of the socket: what ``read1`` does,
        without its copy (same bookkeeping of the remaining length)."""
        r = self._resp
        if r.chunked or r.fp is None:
            return r.readinto(buf[: min(len(buf), CHUNKED_READ)])
        if r.length is not None and len(buf) > r.length:
            buf = buf[: r.length]
        n = r.fp.readinto1(buf)
        if not n and buf:
            r._close_conn()  # type: ignore[attr-defined]  # the body ended early: as readinto does
        elif r.length is not None:
            r.length -= n
            if not r.length:
                r._close_conn()  # type: ignore[attr-defined]
        return n

    def _read(self, read: Callable[[memoryview], int], buf: memoryview) -> int:
        try:
            return read(buf)
        except TimeoutError:
            raise TransferError(
                f"stalled: no bytes for {self._transport.timeouts.stall:g} s",
                retriable=True,
                kind="stall",
            ) from None
        except http.client.IncompleteRead as exc:
            raise TransferError(f"body ended early ({exc})", retriable=True, kind="short") from None
        except (OSError, http.client.HTTPException, ValueError, AttributeError) as exc:
            # AttributeError/ValueError: the connection was closed under us by abort_all()
            raise TransferError(
                f"connection failed while reading: {exc or type(exc).__name__}", retriable=True
            ) from None

    def abort(self) -> None:
        sock = self._conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self, *, reusable: bool) -> None:
        self._transport._release(self._key, self._conn, self._resp, reusable)


class StdlibTransport(_RedirectingTransport):
    """Pooled ``http.client`` connections (HTTP/1.1 keep-alive), thread-safe."""

    def __init__(self, timeouts: Timeouts, *, max_idle_per_origin: int = 16) -> None:
        self.timeouts = timeouts
        self._max_idle = max_idle_per_origin
        self._idle: dict[_Key, list[http.client.HTTPConnection]] = {}
        self._busy: set[http.client.HTTPConnection] = set()
        self._lock = threading.Lock()
        self._closed = False

    def _connection(self, parts: SplitResult) -> tuple[_Key, http.client.HTTPConnection, bool, str]:
        """A pooled or new connection for ``parts``; also the request target to send."""
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TransferError(
                f"unsupported URL {parts.geturl()!r}", retriable=False, kind="protocol"
            )
        proxy = _proxy_for(parts)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        key: _Key = (parts.scheme, parts.hostname, port, proxy.geturl() if proxy else "")
        with self._lock:
            if self._closed:
                raise TransferError("transport closed", retriable=False)
            pool = self._idle.get(key)
            if pool:
                conn = pool.pop()
                self._busy.add(conn)
                return key, conn, True, self._target(parts, proxy)
        conn = self._new_connection(parts, port, proxy)
        with self._lock:
            self._busy.add(conn)
        return key, conn, False, self._target(parts, proxy)

    @staticmethod
    def _target(parts: SplitResult, proxy: SplitResult | None) -> str:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        if proxy is not None and parts.scheme == "http":
            return (
                f"http://{parts.netloc.rpartition('@')[2]}{path}"  # absolute-form through a proxy
            )
        return path

    def _new_connection(
        self, parts: SplitResult, port: int, proxy: SplitResult | None
    ) -> http.client.HTTPConnection:
        host = parts.hostname or ""
        timeout = self.timeouts.connect
        if parts.scheme == "https":
            context = _ssl_context()
            if proxy is not None:
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    proxy.hostname or "", proxy.port or 8080, timeout=timeout, context=context
                )
                conn.set_tunnel(host, port, headers=_proxy_auth(proxy))
            else:
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        elif proxy is not None:
            conn = http.client.HTTPConnection(
                proxy.hostname or "", proxy.port or 8080, timeout=timeout
            )
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        return conn

    def _send_once(self, url: str, headers: Mapping[str, str]) -> Response:
        parts = urlsplit(url)
        for attempt in (0, 1):
            key, conn, reused, target = self._connection(parts)
            sent = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers}
            if key[3] and parts.scheme == "http":
                sent.update(_proxy_auth(urlsplit(key[3])))
            try:
                if conn.sock is None:
                    conn.connect()
                sock = conn.sock
                sock.settimeout(self.timeouts.response)
                conn.request("GET", target, headers=sent)
                resp = conn.getresponse()
                _set_timeout(sock, self.timeouts.stall)  # conn.sock is None when the server closes
            except (
                http.client.RemoteDisconnected,
                BrokenPipeError,
                ConnectionResetError,
                http.client.BadStatusLine,
            ) as exc:
                self._drop(conn)
                if reused and attempt == 0:
                    continue  # the server closed an idle keep-alive connection: one fresh try
                raise TransferError(
                    f"connection failed: {exc or type(exc).__name__}", retriable=True
                ) from None
            except TimeoutError:
                self._drop(conn)
                raise TransferError(
                    "timed out connecting or waiting for the response", retriable=True, kind="stall"
                ) from None
            except ssl.SSLCertVerificationError as exc:
                self._drop(conn)
                raise TransferError(
                    f"TLS certificate rejected: {exc.verify_message}", retriable=False
                ) from None
            except (OSError, http.client.HTTPException, AttributeError) as exc:
                self._drop(conn)
                raise TransferError(
                    f"connection failed: {exc or type(exc).__name__}", retriable=True
                ) from None
            return _StdlibResponse(self, key, conn, resp, url)
        raise AssertionError("unreachable")  # pragma: no cover

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._busy.discard(conn)
        conn.close()

    def _release(
        self,
        key: _Key,
        conn: http.client.HTTPConnection,
        resp: http.client.HTTPResponse,
        reusable: bool,
    ) -> None:
        keep = reusable and resp.isclosed() and not resp.will_close and conn.sock is not None
        if not keep:
            try:
                resp.close()
            except Exception:  # noqa: BLE001 - closing a broken response must not raise
                pass
            self._drop(conn)
            return
        with self._lock:
            self._busy.discard(conn)
            pool = self._idle.setdefault(key, [])
            if not self._closed and len(pool) < self._max_idle:
                pool.append(conn)
                return
        conn.close()

    def abort_all(self) -> None:
        with self._lock:
            busy = list(self._busy)
        for conn in busy:
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [c for pool in self._idle.values() for c in pool]
            self._idle.clear()
        for conn in idle:
            conn.close()


# ------------------------------------------------------------------------------ httpx


class _HttpxResponse:
    def __init__(self, resp: httpx.Response, stall: float) -> None:
        self._resp = resp
        self._iter = resp.iter_raw()
        self._left = memoryview(b"")
        self._stall = stall
        self._done = False
        self.status = resp.status_code
        self.url = str(resp.url)

    def header(self, name: str) -> str | None:
        return self._resp.headers.get(name)

    def readinto(self, buf: memoryview) -> int:
        import httpx

        if not self._left:
            if self._done:
                return 0
            try:
                self._left = memoryview(next(self._iter))
            except StopIteration:
                self._done = True
                return 0
            except httpx.TimeoutException:
                raise TransferError(
                    f"stalled: no bytes for {self._stall:g} s", retriable=True, kind="stall"
                ) from None
            except httpx.RemoteProtocolError as exc:
                raise TransferError(
                    f"body ended early ({exc})", retriable=True, kind="short"
                ) from None
            except (httpx.HTTPError, OSError) as exc:
                raise TransferError(
                    f"connection failed while reading: {exc}", retriable=True
                ) from None
        n = min(len(buf), len(self._left))
        buf[:n] = self._left[:n]
        self._left = self._left[n:]
        return n

    read_some = readinto  # iter_raw already hands over what has arrived

    def abort(self) -> None:
        """httpx offers no way to interrupt a blocked read; it ends at the stall timeout."""

    def close(self, *, reusable: bool) -> None:
        self._resp.close()


class HttpxTransport(_RedirectingTransport):
    """Adapter for a caller's ``httpx.Client`` (its pool, proxies, auth and mounts are used)."""

    def __init__(self, client: httpx.Client, timeouts: Timeouts) -> None:
        self._client = client
        self.timeouts = timeouts

    def _send_once(self, url: str, headers: Mapping[str, str]) -> Response:
        import httpx

        t = self.timeouts
        timeout = httpx.Timeout(connect=t.connect, read=t.stall, write=t.response, pool=t.response)
        sent = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers}
        try:
            req = self._client.build_request("GET", url, headers=sent, timeout=timeout)
            resp = self._client.send(req, stream=True, follow_redirects=False)
        except httpx.TimeoutException:
            raise TransferError(
                "timed out connecting or waiting for the response", retriable=True, kind="stall"
            ) from None
        except (httpx.HTTPError, OSError) as exc:
            raise TransferError(f"connection failed: {exc}", retriable=True) from None
        return _HttpxResponse(resp, t.stall)

    def abort_all(self) -> None:
        """httpx offers no way to interrupt a blocked read; reads end at the stall timeout."""

    def close(self) -> None:
        """The caller owns the client."""
