"""The one run-with-deadline helper: values, errors, a stuck call given up on without holding
the caller, and a looping call that stops once the caller has given up."""

from __future__ import annotations

import threading
import time

import pytest

from model_zoo.deadline import run_all_within, run_within


def test_values_and_errors_come_back_per_call() -> None:
    def boom(_: threading.Event) -> int:
        raise ValueError("no")

    got = run_all_within({"a": lambda _: 1, "b": boom}, 2.0)
    assert got["a"].finished and got["a"].result() == 1
    assert got["b"].finished and isinstance(got["b"].error, ValueError)
    with pytest.raises(ValueError, match="no"):
        got["b"].result()


def test_a_stuck_call_is_given_up_at_the_deadline_in_a_daemon_thread() -> None:
    release = threading.Event()
    t0 = time.monotonic()
    got = run_within(lambda _: release.wait(30), 0.2, name="t-stuck")
    assert time.monotonic() - t0 < 2.0
    assert not got.finished and got.cancel.is_set()
    stuck = [t for t in threading.enumerate() if t.name.startswith("t-stuck")]
    assert stuck and all(t.daemon for t in stuck)  # cannot hold the process's exit
    release.set()
    stuck[0].join(5)
    assert not got.finished  # a late answer is not taken after the caller gave up


def test_a_looping_call_sees_the_cancel_and_stops() -> None:
    steps: list[int] = []

    def pages(cancel: threading.Event) -> list[int]:
        for i in range(1000):
            if cancel.is_set():
                break
            steps.append(i)
            time.sleep(0.01)
        return steps

    run_within(pages, 0.1, name="t-pages")
    time.sleep(0.3)
    n = len(steps)
    time.sleep(0.2)
    assert n == len(steps) < 1000  # stopped asking once given up
