"""The batching scheduler on its own: merging, order, announced arrivals, queue limit, draining."""

from __future__ import annotations

import threading
import time

import pytest

from model_zoo.server.scheduler import BatchScheduler, QueueFullError, SchedulerClosedError


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[list[int]]] = []

    def __call__(self, ids: list[list[int]]) -> list[float]:
        self.batches.append(ids)
        return [float(sum(x)) for x in ids]


def test_each_request_gets_its_own_slice_in_order() -> None:
    rec = Recorder()
    sched = BatchScheduler(rec, wait_s=0.2)
    f1 = sched.submit([[1], [2, 3]])
    f2 = sched.submit([[10]])
    f3 = sched.submit([])
    assert f1.result(5) == [1.0, 5.0] and f2.result(5) == [10.0] and f3.result(5) == []
    assert rec.batches == [[[1], [2, 3], [10]]]  # one merged batch
    assert sched.stats.merged_batches == 1 and sched.stats.largest_batch_requests == 2
    sched.close()


def test_a_batch_waits_for_announced_requests_beyond_the_window() -> None:
    rec = Recorder()
    sched = BatchScheduler(rec, wait_s=0.01, max_wait_s=5)
    sched.arriving(+1)
    sched.arriving(+1)
    first = sched.submit([[1]])  # not announced: the window starts
    time.sleep(0.2)  # 20 windows later, the two announced requests arrive
    second = sched.submit([[2]], announced=True)
    third = sched.submit([[3]], announced=True)
    assert [f.result(5) for f in (first, second, third)] == [[1.0], [2.0], [3.0]]
    assert rec.batches == [[[1], [2], [3]]]
    sched.close()


def test_without_announcements_the_window_closes_on_time() -> None:
    rec = Recorder()
    sched = BatchScheduler(rec, wait_s=0.01, max_wait_s=5)
    first = sched.submit([[1]])
    first.result(5)
    sched.arriving(+1)
    sched.arriving(-1)  # withdrawn (refused before scoring): nothing to wait for
    second = sched.submit([[2]])
    second.result(5)
    assert rec.batches == [[[1]], [[2]]]
    sched.close()


def test_the_window_ends_when_the_previous_batch_s_clients_are_back() -> None:
    """Closed-loop clients (send, wait for the answer, send again): no idle window between
    rounds."""
    rec = Recorder()
    # A window long enough that "scored without waiting for it" (half of it, below) holds on a
    # loaded machine too.
    sched = BatchScheduler(rec, wait_s=1.2, max_wait_s=1.2)
    first_round = [sched.submit([[k]]) for k in range(3)]
    assert [f.result(5) for f in first_round] == [
        [0.0],
        [1.0],
        [2.0],
    ]  # one batch, after the window
    start = time.monotonic()
    second_round = [sched.submit([[k]]) for k in range(3)]
    assert [f.result(5) for f in second_round] == [[0.0], [1.0], [2.0]]
    assert time.monotonic() - start < 0.6  # all three were back: scored without waiting 1.2 s
    start = time.monotonic()
    third_round = [sched.submit([[k]]) for k in range(2)]  # one client left: the window runs out
    assert [f.result(5) for f in third_round] == [[0.0], [1.0]]
    assert time.monotonic() - start >= 1.1
    assert rec.batches == [[[0], [1], [2]]] * 2 + [[[0], [1]]]
    sched.close()


def test_after_a_pause_the_window_applies_again() -> None:
    """Clients back long after their answer (a trainer generating rollouts) are not "expected"."""
    rec = Recorder()
    sched = BatchScheduler(rec, wait_s=0.4, max_wait_s=0.4, expect_back_s=0.1)
    assert [f.result(5) for f in [sched.submit([[k]]) for k in range(2)]] == [[0.0], [1.0]]
    time.sleep(0.3)  # longer than expect_back_s
    start = time.monotonic()
    assert [f.result(5) for f in [sched.submit([[k]]) for k in range(2)]] == [[0.0], [1.0]]
    assert time.monotonic() - start >= 0.35  # waited the window, though both were back
    sched.close()


def test_queue_limit_and_close() -> None:
    gate = threading.Event()

    def slow(ids: list[list[int]]) -> list[float]:
        gate.wait(10)
        return [0.0] * len(ids)

    sched = BatchScheduler(slow, wait_s=0, max_queue=2)
    busy = sched.submit([[1]])
    while sched.waiting:  # taken into a batch, blocked in the scorer
        time.sleep(0.01)
    queued = sched.submit([[2], [3]])
    with pytest.raises(QueueFullError) as exc:
        sched.submit([[4]])
    assert exc.value.limit == 2 and exc.value.waiting == 2
    closer = threading.Thread(target=sched.close)
    closer.start()
    time.sleep(0.05)
    with pytest.raises(SchedulerClosedError):
        sched.submit([[5]])
    gate.set()
    closer.join(10)
    assert busy.result(1) == [0.0] and queued.result(1) == [0.0, 0.0]  # drained before stopping


def test_a_failing_scorer_fails_every_waiter_and_keeps_serving() -> None:
    calls = []

    def flaky(ids: list[list[int]]) -> list[float]:
        calls.append(len(ids))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return [1.0] * len(ids)

    sched = BatchScheduler(flaky, wait_s=0.05)
    a, b = sched.submit([[1]]), sched.submit([[2]])
    for f in (a, b):
        with pytest.raises(RuntimeError, match="out of memory"):
            f.result(5)
    assert sched.submit([[3]]).result(5) == [1.0]
    sched.close()
