"""Fault injection for the test hub: the failures real hubs and mirrors produce.

Rules (``Fault``) are applied through the mirror server's hook points (``FaultHooks``, see
``model_zoo.mirror.hooks``), so the production mirror carries none of this.

A ``Fault`` says *what* goes wrong and *which* requests it hits (protocol, repository, file glob,
whether the request is for file bytes or for an API listing) and *how often* (skip the first
``skip`` matching requests, then hit ``times`` of them; ``times=None`` hits every one).
Rules live in a ``FaultSet`` that tests change at runtime::

    hub.faults.add(Fault.status(503, times=2, path="*.safetensors"))
    rule = hub.faults.add(Fault.reset(after=4096))
    ...
    assert rule.hits == 1
    hub.faults.clear()

Kinds (factory -> effect):
  ``status(code, times=1, retry_after=None)``  answer ``code`` with an error body (429 carries
                                              ``Retry-After``); target "file" by default,
                                              ``target="api"`` for listings, "any" for both.
  ``reset(after)``          send ``after`` body bytes, then abort the connection (TCP RST).
  ``short_body(after)``     announce the full Content-Length, send ``after`` bytes, close cleanly.
  ``flip_byte(offset)``     serve the byte at file offset ``offset`` XOR 0xFF (when in range).
  ``stall(seconds, after)`` send ``after`` bytes, send nothing for ``seconds``, then go on.
  ``ignore_range()``        answer a Range request with 200 and the whole body.
  ``wrong_sha256()``        listings advertise a wrong sha256 for matching files.
  ``malicious_listing(entries)``  listings gain entries with unsafe paths / symlinks.

``status`` with target "file" counts byte-serving requests, HEAD included. Body faults (reset,
short_body, flip_byte, stall, ignore_range) count only GETs whose body they really change:
``ignore_range`` needs a Range header, ``flip_byte`` a body covering ``offset``, and reset /
short_body / stall a body longer than ``after`` bytes, so ``rule.hits`` is the number of
responses the fault actually damaged. Listing faults (wrong_sha256, malicious_listing) count
listing requests and default to ``times=None`` (every listing), the others to ``times=1``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..mirror.hooks import CUT_CLOSE, CUT_RESET, Exchange, MirrorHooks, Refusal
from ..mirror.protocols import Entry
from ..mirror.repo_store import git_blob_oid, lfs_pointer

STATUS = "status"
RESET = "reset"
SHORT_BODY = "short_body"
FLIP_BYTE = "flip_byte"
STALL = "stall"
IGNORE_RANGE = "ignore_range"
WRONG_SHA256 = "wrong_sha256"
MALICIOUS_LISTING = "malicious_listing"

BODY_KINDS = frozenset({RESET, SHORT_BODY, FLIP_BYTE, STALL, IGNORE_RANGE})
LISTING_KINDS = frozenset({WRONG_SHA256, MALICIOUS_LISTING})
TARGETS = ("file", "api", "any")


@dataclass(frozen=True)
class ListingEntry:
    """An extra entry a malicious listing advertises.

    ``kind`` is "file" or "symlink" (with ``target``). Symlinks are rendered as
    ``type: "symlink"`` (ModelScope ``Type: "symlink"``) with a ``target`` field in every
    protocol: no hub documents symlinks, so a client must refuse any type it does not know.
    Requests for ``path`` through a file URL get ``content`` (never a file from disk).
    """

    path: str
    kind: str = "file"
    target: str | None = None
    content: bytes = b"written by a malicious listing\n"

    @property
    def size(self) -> int:
        return (
            len(self.target.encode())
            if self.kind == "symlink" and self.target
            else len(self.content)
        )


DEFAULT_MALICIOUS_ENTRIES: tuple[ListingEntry, ...] = (
    ListingEntry("../../escaped.txt"),
    ListingEntry("sub/../../escaped-nested.txt"),
    ListingEntry("/etc/model-zoo-absolute.txt"),
    ListingEntry("C:\\model-zoo\\drive.txt"),
    ListingEntry("C:/model-zoo/drive-slash.txt"),
    ListingEntry("link-out", kind="symlink", target="/etc/passwd"),
    ListingEntry("link-up", kind="symlink", target="../../outside"),
)


@dataclass(frozen=True)
class RequestInfo:
    """What a fault rule can match on."""

    protocol: str  # hf | modelscope | modelers | openxlab | ollama
    target: str  # "file" (bytes) or "api" (metadata, listings)
    repo: str | None
    path: str | None  # file path inside the repository, for file requests
    has_range: bool = False
    method: str = "GET"
    span: tuple[int, int] | None = None  # [first, end) file offsets of the body about to be sent


@dataclass(eq=False)
class Fault:
    """One fault rule. Build with the classmethod factories; fields are documented on the module."""

    kind: str
    path: str = "*"
    repo: str = "*"
    protocol: str = "*"
    target: str = "file"
    times: int | None = 1
    skip: int = 0
    status_code: int = 503
    retry_after: float | None = None
    after: int = 0
    offset: int = 0
    seconds: float = 0.0
    entries: tuple[ListingEntry, ...] = ()
    hits: int = field(default=0, init=False)  # requests this rule changed
    seen: int = field(default=0, init=False)  # matching requests, including skipped ones

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, not {self.target!r}")
        if self.times is not None and self.times < 0:
            raise ValueError("times must be >= 0 or None")

    # -- factories ---------------------------------------------------------------------------
    @classmethod
    def status(
        cls,
        code: int = 503,
        *,
        times: int | None = 1,
        retry_after: float | None = None,
        **match: Any,
    ) -> Fault:
        if code == 429 and retry_after is None:
            retry_after = 1
        return cls(STATUS, status_code=code, times=times, retry_after=retry_after, **match)

    @classmethod
    def reset(cls, after: int = 0, *, times: int | None = 1, **match: Any) -> Fault:
        return cls(RESET, after=after, times=times, **match)

    @classmethod
    def short_body(cls, after: int = 0, *, times: int | None = 1, **match: Any) -> Fault:
        return cls(SHORT_BODY, after=after, times=times, **match)

    @classmethod
    def flip_byte(cls, offset: int = 0, *, times: int | None = 1, **match: Any) -> Fault:
        return cls(FLIP_BYTE, offset=offset, times=times, **match)

    @classmethod
    def stall(cls, seconds: float, after: int = 0, *, times: int | None = 1, **match: Any) -> Fault:
        return cls(STALL, seconds=seconds, after=after, times=times, **match)

    @classmethod
    def ignore_range(cls, *, times: int | None = 1, **match: Any) -> Fault:
        return cls(IGNORE_RANGE, times=times, **match)

    @classmethod
    def wrong_sha256(cls, *, times: int | None = None, **match: Any) -> Fault:
        return cls(WRONG_SHA256, times=times, target="api", **match)

    @classmethod
    def malicious_listing(
        cls,
        entries: tuple[ListingEntry, ...] | list[ListingEntry] | None = None,
        *,
        times: int | None = None,
        **match: Any,
    ) -> Fault:
        chosen = tuple(entries) if entries is not None else DEFAULT_MALICIOUS_ENTRIES
        return cls(MALICIOUS_LISTING, entries=chosen, times=times, target="api", **match)

    # -- matching ----------------------------------------------------------------------------
    def matches(self, req: RequestInfo) -> bool:
        if self.protocol != "*" and self.protocol != req.protocol:
            return False
        if self.target != "any" and self.target != req.target:
            return False
        if self.repo != "*" and not fnmatch.fnmatchcase(req.repo or "", self.repo):
            return False
        if self.kind in BODY_KINDS and not self._bites(req):
            return False
        if self.kind in LISTING_KINDS:
            return True  # ``path`` selects which listed files a listing fault changes
        return self.path == "*" or (
            req.path is not None and fnmatch.fnmatchcase(req.path, self.path)
        )

    def _bites(self, req: RequestInfo) -> bool:
        """A body fault only counts where it changes the body: a GET whose body reaches it."""
        if req.method != "GET":
            return False
        if self.kind == IGNORE_RANGE:
            return req.has_range
        if req.span is None:
            return False
        first, end = req.span
        if self.kind == FLIP_BYTE:
            return first <= self.offset < end
        return self.after < end - first

    def covers_file(self, path: str) -> bool:
        """For listing faults: does this rule alter the entry for ``path``?"""
        return self.path == "*" or fnmatch.fnmatchcase(path, self.path)

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


class FaultSet:
    """The live rules of one server; thread-safe, changeable while requests are in flight."""

    def __init__(self, rules: list[Fault] | tuple[Fault, ...] | None = None) -> None:
        self._rules: list[Fault] = list(rules or ())
        self._lock = threading.Lock()

    def add(self, rule: Fault) -> Fault:
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: Fault) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if r is not rule]

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[Fault]:
        with self._lock:
            return list(self._rules)

    def take(
        self, req: RequestInfo, kinds: frozenset[str] | set[str], *, first: bool = False
    ) -> list[Fault]:
        """Rules of ``kinds`` that apply to this request, each counted as one hit.

        With ``first`` only the earliest applicable rule is taken (one status per response).
        """
        taken: list[Fault] = []
        with self._lock:
            for rule in self._rules:
                if rule.kind not in kinds or rule.exhausted or not rule.matches(req):
                    continue
                rule.seen += 1
                if rule.seen <= rule.skip:
                    continue
                rule.hits += 1
                taken.append(rule)
                if first:
                    break
        return taken

    def malicious_entries(self, req: RequestInfo) -> dict[str, ListingEntry]:
        """Entries active malicious-listing rules advertise for this request (counts no hit)."""
        out: dict[str, ListingEntry] = {}
        req = replace(req, target="api")
        with self._lock:
            for rule in self._rules:
                if rule.kind == MALICIOUS_LISTING and not rule.exhausted and rule.matches(req):
                    out.update((e.path, e) for e in rule.entries)
        return out


def wrong_sha256(real: str) -> str:
    """The sha256 a ``wrong_sha256`` listing advertises in place of ``real``."""
    return hashlib.sha256(b"model-zoo local hub: wrong sha256 for " + real.encode()).hexdigest()


def _request_info(ex: Exchange) -> RequestInfo:
    return RequestInfo(
        protocol=ex.protocol or "",
        target="file" if ex.kind == "file" else "api",
        repo=ex.repo,
        path=ex.path,
        has_range=ex.range_header is not None,
        method=ex.method,
        span=ex.span,
    )


def _damage_listing(entries: list[Entry], rules: list[Fault]) -> list[Entry]:
    """``entries`` with the listing faults applied: wrong hashes, then extra entries at the end."""
    wrong = [r for r in rules if r.kind == WRONG_SHA256]
    out = []
    for e in entries:
        if e.type == "file" and any(rule.covers_file(e.path) for rule in wrong):
            bad = wrong_sha256(e.sha256)
            oid = (
                git_blob_oid(lfs_pointer(bad, e.size))
                if e.lfs
                else hashlib.sha1(b"wrong" + e.git_oid.encode()).hexdigest()
            )
            e = replace(e, sha256=bad, git_oid=oid)
        out.append(e)
    for rule in rules:
        if rule.kind == MALICIOUS_LISTING:
            for m in rule.entries:
                data = (m.target or "").encode() if m.kind == "symlink" else m.content
                out.append(
                    Entry(
                        path=m.path,
                        type="symlink" if m.kind == "symlink" else "file",
                        size=len(data),
                        sha256=hashlib.sha256(data).hexdigest(),
                        git_oid=git_blob_oid(data),
                        target=m.target,
                        injected=True,
                    )
                )
    return out


class _DamagedBody:
    """One body under its faults: stalls and a cut at byte positions, flipped bytes."""

    def __init__(self, rules: list[Fault]) -> None:
        self.cut = min(
            (r for r in rules if r.kind in (RESET, SHORT_BODY)), key=lambda r: r.after, default=None
        )
        self.stalls = sorted((r for r in rules if r.kind == STALL), key=lambda r: r.after)
        self.flips = {r.offset for r in rules if r.kind == FLIP_BYTE}

    def stops(self) -> Sequence[int]:
        return [s.after for s in self.stalls] + ([self.cut.after] if self.cut else [])

    def at(self, sent: int, stopping: threading.Event) -> str | None:
        while self.stalls and self.stalls[0].after <= sent:
            if stopping.wait(self.stalls.pop(0).seconds):  # stop() ends a stall early
                return None
        if self.cut is not None and sent >= self.cut.after:
            return CUT_RESET if self.cut.kind == RESET else CUT_CLOSE
        return None

    def edit(self, offset: int, data: bytes) -> bytes:
        hit = [o - offset for o in self.flips if offset <= o < offset + len(data)]
        if not hit:
            return data
        buf = bytearray(data)
        for i in hit:
            buf[i] ^= 0xFF
        return bytes(buf)


class FaultHooks(MirrorHooks):
    """Applies the rules of a ``FaultSet`` at the mirror server's hook points; each response
    notes the kinds of the rules that changed it (``RequestRecord.faults``)."""

    def __init__(self, faults: FaultSet) -> None:
        self.faults = faults

    def refusal(self, ex: Exchange) -> Refusal | None:
        rules = self.faults.take(_request_info(ex), {STATUS}, first=True)
        if not rules:
            return None
        rule = rules[0]
        ex.notes += (STATUS,)
        headers = {} if rule.retry_after is None else {"Retry-After": f"{rule.retry_after:g}"}
        code = "RateLimited" if rule.status_code == 429 else None
        return Refusal(rule.status_code, code, f"injected fault: HTTP {rule.status_code}", headers)

    def listing(self, ex: Exchange, entries: list[Entry]) -> list[Entry]:
        rules = self.faults.take(_request_info(ex), LISTING_KINDS)
        ex.notes += tuple(r.kind for r in rules)
        return _damage_listing(entries, rules) if rules else entries

    def extra_file(self, ex: Exchange, path: str) -> bytes | None:
        fake = self.faults.malicious_entries(_request_info(ex)).get(path)
        if fake is None:
            return None
        ex.notes += (MALICIOUS_LISTING,)
        return (fake.target or "").encode() if fake.kind == "symlink" else fake.content

    def whole_body(self, ex: Exchange) -> bool:
        taken = self.faults.take(_request_info(ex), {IGNORE_RANGE})
        ex.notes += tuple(r.kind for r in taken)
        return bool(taken)

    def body(self, ex: Exchange) -> _DamagedBody | None:
        rules = self.faults.take(_request_info(ex), BODY_KINDS - {IGNORE_RANGE})
        ex.notes += tuple(r.kind for r in rules)
        return _DamagedBody(rules) if rules else None
