"""Where tests plug into the mirror server: a few calls at fixed points of every request.

The production mirror (``model-zoo serve-mirror``) runs with ``MirrorHooks()``, whose methods do
nothing, so it knows nothing of tests. The test hub (``model_zoo.testing.local_hub.LocalHub``)
passes hooks that break responses on purpose (``testing/faults.py``) and count what was served
(``testing/hub_stats.py``). The server calls, in this order for one request:

  ``refusal(ex)``            before it answers from a repository (after the access check):
                             a ``Refusal`` is sent instead of the answer
  ``listing(ex, entries)``   on each file listing it is about to render; returns the listing
  ``extra_file(ex, path)``   for a path the repository does not hold: bytes to serve, or None
  ``whole_body(ex)``         before honouring a Range header: True serves the whole file
  ``body(ex)``               once per file body, with ``ex.span`` set: a ``BodyHook`` or None
  ``response_started(ex)``   as the status line and headers go out (``ex.status`` set)
  ``wrote(ex, n, ...)``      before each body write of ``n`` bytes
  ``response_ended(ex)``     after every request, answered or not

A file body with no ``BodyHook`` and no rate limit goes out with ``sendfile``; with one, the server
streams it in chunks that never cross ``BodyHook.stops()``, calls ``at`` before each chunk (it may
wait, or end the body) and passes each chunk through ``edit``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from .protocols import Entry

CUT_RESET = "reset"  # end the body with a TCP reset
CUT_CLOSE = "close"  # end the body with a clean close, short of its Content-Length


@dataclass
class Exchange:
    """One request as the server routes it, filled in as routing learns more. Hooks read it;
    they may add ``notes`` (why a response differs, e.g. the fault kinds that changed it) and
    keep their own per-request data in ``state``."""

    method: str
    url: str  # path and query as received
    range_header: str | None = None
    authorization: str | None = None
    cookie: str = ""
    protocol: str | None = None  # hf | modelscope | modelers | openxlab | ollama; None: unknown
    kind: str = "other"  # "file" (bytes), "api" (metadata, listings), "sso" or "other"
    repo: str | None = None
    path: str | None = None  # file path inside the repository
    revision: str | None = None
    status: int = 0
    span: tuple[int, int] | None = None  # [first, end) file offsets of the body about to go out
    notes: tuple[str, ...] = ()
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def credential(self) -> str | None:
        """What the client sent to authenticate: ``Authorization``, else ModelScope's
        ``m_session_id`` cookie (None: nothing)."""
        if self.authorization is not None:
            return self.authorization
        return cookie_value(self.cookie, "m_session_id")


def cookie_value(header: str, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header, or None."""
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


@dataclass(frozen=True)
class Refusal:
    """An error answer a hook sends instead of the real one (a 503, a 429 with Retry-After)."""

    status: int
    code: str | None
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)


class BodyHook(Protocol):
    """What a hook does to one file body while it streams."""

    def stops(self) -> Sequence[int]:
        """Body offsets a chunk must end at, so ``at`` runs at exactly those positions."""
        ...

    def at(self, sent: int, stopping: threading.Event) -> str | None:
        """Called before each chunk and once the body is complete, ``sent`` bytes in. May wait
        (returning early once ``stopping`` is set); returns ``CUT_RESET`` or ``CUT_CLOSE`` to end
        the response here, None to go on."""
        ...

    def edit(self, offset: int, data: bytes) -> bytes:
        """The chunk that starts at file offset ``offset``, as it should go out."""
        ...


class MirrorHooks:
    """Every hook point, doing nothing: what ``serve-mirror`` runs with. Subclass and override
    the points you need; each may be called from many connection threads at once."""

    def refusal(self, ex: Exchange) -> Refusal | None:
        return None

    def listing(self, ex: Exchange, entries: list[Entry]) -> list[Entry]:
        return entries

    def extra_file(self, ex: Exchange, path: str) -> bytes | None:
        return None

    def whole_body(self, ex: Exchange) -> bool:
        return False

    def body(self, ex: Exchange) -> BodyHook | None:
        return None

    def response_started(self, ex: Exchange) -> None:
        pass

    def wrote(self, ex: Exchange, n: int, *, file_bytes: bool) -> None:
        """``n`` body bytes are about to be written; ``file_bytes``: they are a file's content
        (not JSON, not an error page)."""

    def response_ended(self, ex: Exchange) -> None:
        pass


__all__ = [
    "CUT_CLOSE",
    "CUT_RESET",
    "BodyHook",
    "Exchange",
    "MirrorHooks",
    "Refusal",
    "cookie_value",
]
