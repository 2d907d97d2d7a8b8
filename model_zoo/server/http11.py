"""Just enough HTTP/1.1 for a JSON API: request heads in, responses out, every malformed input a
4xx.

Why not ``http.server``: it parses headers with the ``email`` package and needs a thread per
connection; per request that cost more CPU than scoring a conversation with a small model, and
the threads fought the model's thread for the GIL. The reward server's clients send
``Content-Length`` bodies (requests, httpx, aiohttp, curl), so a strict, small parser suffices:
chunked bodies (any Transfer-Encoding) are refused with 411, as before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

from .protocol import HTTPError, bad_request, over_limit

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
SERVER = "model-zoo-reward"


@dataclass
class Request:
    method: str
    target: str
    version: str  # "HTTP/1.1" or "HTTP/1.0"
    headers: dict[str, str]  # lower-case names; a repeated header keeps its values joined by ", "

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0].rstrip("/") or "/"

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens

    @property
    def has_body(self) -> bool:
        # Any Transfer-Encoding (chunked, gzip, identity...) means a body of unknown framing
        # follows.
        return "transfer-encoding" in self.headers or self.headers.get(
            "content-length", "0"
        ).strip() not in ("", "0")

    def body_length(self, limit: int) -> int:
        """The announced body size; 411 / 400 / 413 when it is missing, malformed or too large."""
        coding = self.headers.get("transfer-encoding")
        if coding is not None:
            what = (
                "a chunked body"
                if "chunked" in coding.lower()
                else f"Transfer-Encoding: {coding[:40]}"
            )
            raise HTTPError(
                411,
                "length_required",
                f"send a Content-Length header, not {what}",
                field="Content-Length",
            )
        raw = self.headers.get("content-length")
        if raw is None:
            raise HTTPError(
                411,
                "length_required",
                "a Content-Length header is required",
                field="Content-Length",
            )
        text = raw.strip()
        if not text.isdigit() or not text.isascii():
            raise bad_request("Content-Length", f"must be a non-negative integer, got {raw!r}")
        digits = text.lstrip("0") or "0"
        if len(digits) > 18:  # (int() refuses over 4300 digits; no body is this large anyway)
            raise HTTPError(
                413,
                "limit_exceeded",
                f"bytes in the request body: a {len(digits)}-digit Content-Length, "
                f"over the server's max_request_bytes of {limit}",
                limit="max_request_bytes",
                max=limit,
            )
        length = int(digits)
        if length > limit:
            raise over_limit("max_request_bytes", length, limit, "bytes in the request body")
        return length


def parse_head(head: bytes) -> Request:
    """The request line and headers (``head`` ends before the blank line)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise bad_request("request", "the request head is not latin-1 text") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1]:
        raise bad_request("request", f"malformed request line {lines[0][:100]!r}")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HTTPError(
            505, "http_version_not_supported", f"{version[:20]!r} is not supported; use HTTP/1.1"
        )
    if len(lines) - 1 > MAX_HEADERS:
        raise HTTPError(431, "headers_too_large", f"more than {MAX_HEADERS} header fields")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise bad_request("headers", f"malformed header line {line[:100]!r}")
        key = name.lower()
        value = value.strip()
        if key == "content-length" and key in headers and headers[key] != value:
            raise bad_request("Content-Length", "given twice with different values")
        headers[key] = (
            f"{headers[key]}, {value}" if key in headers and key != "content-length" else value
        )
    return Request(method, target, version, headers)


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """The Date header, formatted once per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


def response(
    status: int,
    body: bytes,
    *,
    headers: dict[str, str] | None = None,
    close: bool = False,
    content_type: str = "application/json",
) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"Server: {SERVER}",
        f"Date: {http_date()}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
