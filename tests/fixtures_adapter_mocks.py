"""Fixtures for the hub adapter tests: a recording httpx MockTransport and a tiny HF-like server.

The HF adapter lists through huggingface_hub, whose shared client cannot take a mock
transport, so its tests talk to a real HTTP server on 127.0.0.1 (``fake_hf``). The other hubs
are tested through ``httpx.MockTransport`` (``mock_hub``), which also lets tests use made-up
host names to check that credentials stay on their own host.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from model_zoo.hubs.http import build_client

Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class MockHub:
    """An httpx client whose transport records every request and answers with ``handler``."""

    handler: Handler
    requests: list[httpx.Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        def record(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return self.handler(request)

        self.client = build_client(transport=httpx.MockTransport(record))

    def hosts(self) -> list[str]:
        return [r.url.host for r in self.requests]


@pytest.fixture
def mock_hub() -> Iterator[Callable[[Handler], MockHub]]:
    made: list[MockHub] = []

    def make(handler: Handler) -> MockHub:
        hub = MockHub(handler)
        made.append(hub)
        return hub

    yield make
    for hub in made:
        hub.client.close()


# ---------------------------------------------------------------- a small HF-protocol server


@dataclass
class HfFile:
    path: str
    size: int
    oid: str  # git blob id
    sha256: str | None = None  # set for LFS files


@dataclass
class HfRepo:
    sha: str
    files: list[HfFile]
    revisions: tuple[str, ...] = ("main",)


@dataclass
class FakeHf:
    """Serves model info and paged recursive trees; records (method, path, headers)."""

    repos: dict[str, HfRepo] = field(default_factory=dict)
    page_size: int = 2
    # path prefix -> (status, headers, body) answered instead of the normal route
    overrides: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    # path prefix -> seconds to wait before answering (a silent server)
    stalls: dict[str, float] = field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, str]]] = field(
        default_factory=list
    )  # header names lower-cased
    url: str = ""
    # answer ``?blobs=true`` with every file's size, blob id and LFS details, as the Hub does
    # (off: a mirror that ignores the flag, so only the tree listing is complete)
    blobs: bool = False

    def answer(
        self, method: str, target: str, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        self.seen.append((method, target, headers))
        parts = urlsplit(target)
        path = unquote(parts.path)
        for prefix, seconds in self.stalls.items():
            if path.startswith(prefix):
                time.sleep(seconds)
        for prefix, reply in self.overrides.items():
            if path.startswith(prefix):
                return reply
        if method == "HEAD" and path == "/":
            return 200, {}, b""
        if not path.startswith("/api/models/"):
            return 404, {}, b"not found"
        rest = path[len("/api/models/") :]
        ns, name, *tail = rest.split("/")
        repo = self.repos.get(f"{ns}/{name}")
        if repo is None:
            return 404, {"X-Error-Code": "RepoNotFound"}, _json({"error": "Repository not found"})
        if not tail:
            return 200, {}, self._info(f"{ns}/{name}", repo)
        if tail[0] == "revision":
            if tail[1] not in repo.revisions and tail[1] != repo.sha:
                return 404, {"X-Error-Code": "RevisionNotFound"}, _json({"error": "Invalid rev id"})
            blobs = self.blobs and parse_qs(parts.query).get("blobs") == ["true"]
            return 200, {}, self._info(f"{ns}/{name}", repo, blobs=blobs)
        if tail[0] == "tree" and tail[1] == repo.sha:
            return self._tree_page(repo, parse_qs(parts.query), target)
        return 404, {}, _json({"error": "no route"})

    def _info(self, repo_id: str, repo: HfRepo, *, blobs: bool = False) -> bytes:
        siblings: list[dict[str, Any]] = [{"rfilename": f.path} for f in repo.files]
        if blobs:
            for sib, f in zip(siblings, repo.files, strict=True):
                sib.update(size=f.size, blobId=f.oid)
                if f.sha256:
                    sib["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
        return _json({"id": repo_id, "sha": repo.sha, "siblings": siblings, "private": False})

    def _tree_page(
        self, repo: HfRepo, query: dict[str, list[str]], target: str
    ) -> tuple[int, dict[str, str], bytes]:
        entries: list[dict[str, Any]] = []
        folders = sorted({f.path.rsplit("/", 1)[0] for f in repo.files if "/" in f.path})
        for folder in folders:
            entries.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": folder})
        for f in repo.files:
            item: dict[str, Any] = {"type": "file", "oid": f.oid, "size": f.size, "path": f.path}
            if f.sha256:
                item["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
            entries.append(item)
        start = int(query.get("cursor", ["0"])[0])
        page = entries[start : start + self.page_size]
        headers: dict[str, str] = {}
        if start + self.page_size < len(entries):
            base = target.split("?")[0]
            nxt = f"{self.url}{base}?recursive=true&expand=false&cursor={start + self.page_size}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        return 200, headers, _json(page)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


@pytest.fixture
def fake_hf() -> Iterator[FakeHf]:
    hub = FakeHf()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            status, headers, body = hub.answer(
                self.command, self.path, {k.lower(): v for k, v in self.headers.items()}
            )
            self.send_response(status)
            headers = {"Content-Type": "application/json", **headers}
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False  # a stalled handler must not hold up teardown
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
