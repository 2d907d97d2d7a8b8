"""What the test hub did: a request log and body bytes per file, for tests and benchmarks.

Plugged into the mirror server as hooks (``StatsHooks``, see ``model_zoo.mirror.hooks``), so the
production mirror keeps no log; ``LocalHub.stats`` is the ``HubStats`` the hooks fill.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass

from ..mirror.hooks import Exchange, MirrorHooks


@dataclass
class RequestRecord:
    """One request as the server saw it.

    Logged when the response headers are sent, before any body byte, and ``bytes_sent`` grows
    before each body write, so a client that has read a response always finds it counted.
    """

    method: str
    url: str  # path and query as received
    protocol: str | None  # hf | modelscope | modelers | openxlab | ollama; None: unknown route
    kind: str  # "file" (bytes), "api" (metadata/listing) or "other"
    repo: str | None
    path: str | None  # file path inside the repository (file requests)
    revision: str | None
    range: str | None  # the Range header as sent
    status: int
    bytes_sent: int  # body bytes written (JSON included for API requests)
    faults: tuple[str, ...]  # kinds of the fault rules that changed this response
    authorization: str | None  # Authorization header (or ModelScope session cookie) as sent


class HubStats:
    """What the server did: body bytes per (protocol, repo, path) and a request log.

    Bytes are counted just before they are written, so a client that has read some bytes
    always finds them counted, and one killed mid-transfer is charged for what was sent (at
    most one chunk more). Thread-safe; ``reset()`` between test phases.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes: dict[tuple[str, str, str], int] = defaultdict(int)
        self._requests: list[RequestRecord] = []
        self._open: dict[str, int] = defaultdict(int)  # file bodies being sent, per path
        self._peak: dict[str, int] = defaultdict(int)

    def add_bytes(self, protocol: str, repo: str, path: str, n: int) -> None:
        with self._lock:
            self._bytes[(protocol, repo, path)] += n

    def record(self, rec: RequestRecord) -> None:
        with self._lock:
            self._requests.append(rec)

    def reset(self) -> None:
        with self._lock:
            self._bytes.clear()
            self._requests.clear()
            self._peak = defaultdict(int, self._open)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    @property
    def bytes_by_file(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self._bytes)

    def bytes_served(
        self, *, protocol: str | None = None, repo: str | None = None, path: str | None = None
    ) -> int:
        """File body bytes sent, summed over the entries that match every given filter."""
        with self._lock:
            return sum(
                n
                for (p, r, f), n in self._bytes.items()
                if (protocol is None or p == protocol)
                and (repo is None or r == repo)
                and (path is None or f == path)
            )

    def body_started(self, path: str) -> None:
        with self._lock:
            self._open[path] += 1
            self._peak[path] = max(self._peak[path], self._open[path])

    def body_ended(self, path: str) -> None:
        with self._lock:
            self._open[path] -= 1

    def peak_bodies(self, path: str) -> int:
        """The most responses for ``path`` whose bodies were being sent at the same time: how
        many ranges of one file a client fetched at once."""
        with self._lock:
            return self._peak.get(path, 0)

    def bytes_sent_to(self, credential: str, *, path: str | None = None) -> int:
        """File body bytes sent in answer to requests carrying ``credential`` (as sent, e.g.
        ``Bearer abc``): one run's bytes, even while an earlier run's response is still being
        sent."""
        return sum(
            r.bytes_sent for r in self.file_requests(path=path) if r.authorization == credential
        )

    def sent_to_two_clients(self) -> list[tuple[str, tuple[int, int], tuple[int, int]]]:
        """Bytes of one file sent to two clients, told apart by their credential (Authorization
        header or session cookie): ``(path, span, span)`` for each pair of overlapping
        ``[start, end)`` body spans of different clients. Empty when every byte went to one
        client only. A client's own repeats (a request it cut short in flight, then asked again
        for the rest) are not counted: they cost it bytes on the wire, not a second download."""
        spans: dict[str, dict[str | None, list[tuple[int, int]]]] = defaultdict(dict)
        for r in self.file_requests(method="GET"):
            if r.path is None or not r.bytes_sent:
                continue
            start = 0
            if r.status == 206 and r.range and r.range.startswith("bytes="):
                first = r.range.removeprefix("bytes=").split("-", 1)[0]
                start = int(first) if first.isdigit() else 0
            spans[r.path].setdefault(r.authorization, []).append((start, start + r.bytes_sent))
        shared = []
        for path, by_client in spans.items():
            clients = list(by_client.values())
            for i, mine in enumerate(clients):
                for theirs in clients[i + 1 :]:
                    shared += [
                        (path, a, b)
                        for a in mine
                        for b in theirs
                        if max(a[0], b[0]) < min(a[1], b[1])
                    ]
        return shared

    def file_requests(
        self, *, path: str | None = None, protocol: str | None = None, method: str | None = None
    ) -> list[RequestRecord]:
        """Byte-serving requests, optionally filtered."""
        return [
            r
            for r in self.requests
            if r.kind == "file"
            and (path is None or r.path == path)
            and (protocol is None or r.protocol == protocol)
            and (method is None or r.method == method)
        ]


class StatsHooks(MirrorHooks):
    """Fills a ``HubStats``: one ``RequestRecord`` per request, logged as its headers go out (or
    at the end for a request never answered), and its body bytes counted before each write."""

    def __init__(self, stats: HubStats) -> None:
        self.stats = stats

    def _record(self, ex: Exchange) -> RequestRecord:
        rec = RequestRecord(
            method=ex.method,
            url=ex.url,
            protocol=ex.protocol,
            kind=ex.kind,
            repo=ex.repo,
            path=ex.path,
            revision=ex.revision,
            range=ex.range_header,
            status=ex.status,
            bytes_sent=0,
            faults=ex.notes,
            authorization=ex.credential,
        )
        ex.state["record"] = rec
        self.stats.record(rec)
        return rec

    def response_started(self, ex: Exchange) -> None:
        self._record(ex)
        if ex.kind == "file" and ex.path is not None:
            self.stats.body_started(ex.path)
            ex.state["body"] = ex.path

    def wrote(self, ex: Exchange, n: int, *, file_bytes: bool) -> None:
        rec = ex.state.get("record") or self._record(ex)
        rec.bytes_sent += n
        if file_bytes and ex.protocol and ex.repo and ex.path is not None:
            self.stats.add_bytes(ex.protocol, ex.repo, ex.path, n)

    def response_ended(self, ex: Exchange) -> None:
        if "body" in ex.state:
            self.stats.body_ended(ex.state.pop("body"))
        rec = ex.state.get("record")
        if rec is None:
            self._record(ex)
        elif rec.faults != ex.notes:
            rec.faults = ex.notes
