"""Run calls in daemon threads and stop waiting for them at a deadline: the one way model-zoo
bounds a network call it cannot interrupt (hub probes, a silent listing).

Daemon threads, not an executor: an executor's workers are joined at interpreter exit, so a
request stuck in name resolution would hold the process after its caller gave up. A call still
running at the deadline is reported as not finished and left to end on its own; a ``cancel``
event is set for it, which a call that loops (pages of a listing) can check between steps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass
class Outcome(Generic[T]):
    """What one call gave: ``value``, or the ``error`` it raised; ``finished`` False when it was
    still running at the deadline."""

    finished: bool = False
    value: T | None = None
    error: BaseException | None = None
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    def result(self) -> T:
        """The value, or the call's own exception raised again (only for a finished call)."""
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


def run_all_within(
    calls: Mapping[K, Callable[[threading.Event], T]],
    seconds: float,
    *,
    name: str = "model-zoo-deadline",
) -> dict[K, Outcome[T]]:
    """Start every call at once (each gets its cancel event) and wait at most ``seconds`` in all."""
    outcomes: dict[K, Outcome[T]] = {key: Outcome() for key in calls}
    lock = threading.Lock()

    def run(key: K, call: Callable[[threading.Event], T]) -> None:
        out = outcomes[key]
        try:
            value, error = call(out.cancel), None
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, who decides what it means
            value, error = None, exc
        with lock:
            if not out.cancel.is_set():  # the caller has not given up on it
                out.value, out.error, out.finished = value, error, True

    threads = [
        threading.Thread(target=run, args=(key, call), daemon=True, name=f"{name}-{key}")
        for key, call in calls.items()
    ]
    deadline = time.monotonic() + seconds
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    with lock:
        for out in outcomes.values():
            if not out.finished:
                out.cancel.set()
    return outcomes


def run_within(
    call: Callable[[threading.Event], T], seconds: float, *, name: str = "model-zoo-deadline"
) -> Outcome[T]:
    """``run_all_within`` for one call."""
    return run_all_within({0: call}, seconds, name=name)[0]


__all__ = ["Outcome", "run_all_within", "run_within"]
