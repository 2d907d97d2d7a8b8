"""How fast the mirror may send: a total cap, one per protocol, and one per TCP connection.

These are ``serve-mirror``'s ``--bandwidth`` and ``--conn-bandwidth`` (a far CDN caps each
connection); the server paces file bodies through them and never ``sendfile``s a capped body.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping

from .protocols import PROTOCOLS


class RateLimiter:
    """A shared byte budget: callers reserve time slots so the aggregate stays at ``rate`` B/s."""

    def __init__(self, rate: float) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError("rate must be a finite number > 0 bytes/s")
        self.rate = float(rate)
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def consume(self, n: int, stop: threading.Event | None = None) -> None:
        """Wait until ``n`` more bytes fit the budget. ``stop``, when set, ends the wait at once
        (the server is shutting down: a slow body must not hold ``MirrorServer.stop()``)."""
        with self._lock:
            now = time.monotonic()
            start = max(self._next, now - 0.05)  # allow a 50 ms burst after idle time
            self._next = start + n / self.rate
            wait = self._next - now
        if wait > 0:
            if stop is None:
                time.sleep(wait)
            else:
                stop.wait(wait)


class Bandwidth:
    """Rate limits, changeable at runtime (None = unlimited): the total over every connection,
    one per protocol, and one per TCP connection (``conn``), as a far CDN caps each connection.

    ``set()`` replaces all three; assign ``.conn`` to change only the per-connection cap.
    """

    def __init__(
        self,
        total: float | None = None,
        per_protocol: Mapping[str, float] | None = None,
        conn: float | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._total: RateLimiter | None = None
        self._per: dict[str, RateLimiter] = {}
        self._conn: float | None = None
        self.set(total, per_protocol, conn)

    def set(
        self,
        total: float | None = None,
        per_protocol: Mapping[str, float] | None = None,
        conn: float | None = None,
    ) -> None:
        unknown = set(per_protocol or ()) - set(PROTOCOLS)
        if unknown:
            raise ValueError(f"unknown protocol(s) {sorted(unknown)}; valid: {PROTOCOLS}")
        _check_rate("conn", conn)
        with self._lock:
            self._total = RateLimiter(total) if total else None
            self._per = {p: RateLimiter(r) for p, r in (per_protocol or {}).items() if r}
            self._conn = float(conn) if conn else None

    @property
    def conn(self) -> float | None:
        """Bytes/s each TCP connection may send (None: no per-connection cap)."""
        with self._lock:
            return self._conn

    @conn.setter
    def conn(self, rate: float | None) -> None:
        _check_rate("conn", rate)
        with self._lock:
            self._conn = float(rate) if rate else None

    @property
    def total(self) -> float | None:
        """Bytes/s over every connection together (None: no total cap)."""
        with self._lock:
            return self._total.rate if self._total else None

    def limiters(self, protocol: str) -> list[RateLimiter]:
        """The shared limiters a body of ``protocol`` must pass (total, then the protocol's)."""
        with self._lock:
            out = [self._total] if self._total else []
            if protocol in self._per:
                out.append(self._per[protocol])
            return out

    def connection_limiter(self, current: RateLimiter | None) -> RateLimiter | None:
        """The limiter one connection uses now: its ``current`` one while the cap is unchanged
        (so keep-alive requests share it), a fresh one after the cap changed, None uncapped."""
        rate = self.conn
        if rate is None:
            return None
        if current is not None and current.rate == rate:
            return current
        return RateLimiter(rate)


def _check_rate(name: str, rate: float | None) -> None:
    if rate is not None and rate != 0 and (not rate > 0 or math.isinf(rate)):
        raise ValueError(f"{name} must be a finite rate > 0 bytes/s, or None for no limit")


__all__ = ["Bandwidth", "RateLimiter"]
