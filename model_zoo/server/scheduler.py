"""Dynamic batching: one thread owns the model and merges concurrent requests into shared batches.

The server's event loop tokenizes requests and submits their ids. The scheduler thread takes the
oldest request, waits a short window (or until the batch is full, or the requests of the previous
batch are all back) for more, scores everything gathered in one call to the scorer (which
buckets by length), and hands each request its own slice back. While the model is
busy, new requests pile up and form the next batch, so many clients sending one query each are
served at batch throughput.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

ScoreFn = Callable[[list[list[int]]], list[float]]


class QueueFullError(Exception):
    """More items are waiting than ``max_queue`` allows; the caller should answer 429."""

    def __init__(self, waiting: int, limit: int) -> None:
        super().__init__(f"{waiting} items are already waiting, the limit is {limit}")
        self.waiting = waiting
        self.limit = limit


class SchedulerClosedError(Exception):
    """The scheduler is shutting down and takes no new work; the caller should answer 503."""


@dataclass
class _Job:
    items: list[list[int]]
    future: Future[list[float]] = field(default_factory=Future)


@dataclass
class SchedulerStats:
    """Counters for /health, tests and benchmarks."""

    requests: int = 0
    items: int = 0
    batches: int = 0
    largest_batch_items: int = 0
    largest_batch_requests: int = 0
    merged_batches: int = 0  # batches that served more than one request


class BatchScheduler:
    """Owns ``score_fn``; call :meth:`submit` from any thread, :meth:`close` to drain and stop."""

    def __init__(
        self,
        score_fn: ScoreFn,
        *,
        wait_s: float = 0.005,
        max_wait_s: float | None = None,
        max_batch_items: int = 256,
        max_batch_tokens: int | None = None,
        max_queue: int = 4096,
        expect_back_s: float = 1.0,
    ) -> None:
        self._score = score_fn
        self.expect_back_s = expect_back_s
        self.wait_s = wait_s
        self.max_wait_s = 10 * wait_s if max_wait_s is None else max_wait_s
        self._arriving = 0  # requests read but not yet submitted (still being tokenized)
        self.max_batch_items = max_batch_items
        self.max_batch_tokens = max_batch_tokens
        self.max_queue = max_queue
        self.stats = SchedulerStats()
        self._jobs: deque[_Job] = deque()
        self._waiting_items = 0
        self._cond = threading.Condition()
        self._closing = False
        self._last_batch_requests = 0  # requests in the batch scored last: how many to expect back
        self._last_batch_done = float("-inf")  # when it was answered (monotonic seconds)
        self._thread = threading.Thread(target=self._loop, name="reward-scheduler", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Items queued and not yet taken into a batch."""
        return self._waiting_items

    def arriving(self, delta: int) -> None:
        """Announce (+1) or withdraw (-1) a request that will be submitted soon.

        While requests are announced, a forming batch waits for them (up to ``max_wait_s``), so
        a burst of clients posting at once is scored as one batch, not split at ``wait_s``.
        """
        with self._cond:
            self._arriving = max(self._arriving + delta, 0)
            self._cond.notify()

    def submit(
        self, items: Sequence[Sequence[int]], *, announced: bool = False
    ) -> Future[list[float]]:
        """Queue ``items`` (final token ids); the future resolves to their scores in order.

        ``announced``: this request was announced with ``arriving(+1)``; submitting withdraws it.
        """
        job = _Job([list(x) for x in items])
        if not job.items:
            if announced:
                self.arriving(-1)
            job.future.set_result([])
            return job.future
        with self._cond:
            if announced:
                self._arriving = max(self._arriving - 1, 0)
            if self._closing:
                raise SchedulerClosedError("the reward server is shutting down")
            if self._waiting_items + len(job.items) > self.max_queue and self._jobs:
                raise QueueFullError(self._waiting_items, self.max_queue)
            self._jobs.append(job)
            self._waiting_items += len(job.items)
            self._cond.notify()
        return job.future

    def score(self, items: Sequence[Sequence[int]], timeout: float | None = None) -> list[float]:
        """Submit and wait."""
        return self.submit(items).result(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Refuse new work, finish everything queued, stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # ------------------------------------------------------------------ the scheduler thread

    def _loop(self) -> None:
        while True:
            batch = self._gather()
            if batch is None:
                return
            self._run(batch)

    def _gather(self) -> list[_Job] | None:
        """The next batch: the oldest job, plus whatever arrives within the wait window and fits.

        The window is ``wait_s``, stretched up to ``max_wait_s`` while announced requests are
        still being tokenized. It ends early once as many requests wait as the previous batch
        served and none is still arriving: clients that each wait for their answer before
        sending again (an RLHF worker loop) are all back, and waiting longer only idles the model.
        That expectation holds only for ``expect_back_s`` after the previous batch was answered;
        after a pause (a trainer generating its next rollouts) the full window applies again.
        """
        with self._cond:
            while not self._jobs:
                if self._closing:
                    return None
                self._cond.wait()
            start = time.monotonic()
            expect = (
                self._last_batch_requests
                if start - self._last_batch_done <= self.expect_back_s
                else 0
            )
            while not self._closing and not self._full():
                if not self._arriving and 0 < expect <= len(self._jobs):
                    break
                window = self.max_wait_s if self._arriving else self.wait_s
                left = start + window - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch: list[_Job] = []
            items = tokens = 0
            while self._jobs:
                job = self._jobs[0]
                job_tokens = sum(len(x) for x in job.items)
                over = items + len(job.items) > self.max_batch_items or (
                    self.max_batch_tokens is not None
                    and tokens + job_tokens > self.max_batch_tokens
                )
                if batch and over:
                    break
                self._jobs.popleft()
                if job.future.set_running_or_notify_cancel():
                    batch.append(job)
                    items += len(job.items)
                    tokens += job_tokens
                self._waiting_items -= len(job.items)
            return batch

    def _full(self) -> bool:
        items = sum(len(j.items) for j in self._jobs)
        if items >= self.max_batch_items:
            return True
        if self.max_batch_tokens is not None:
            return sum(len(x) for j in self._jobs for x in j.items) >= self.max_batch_tokens
        return False

    def _run(self, batch: list[_Job]) -> None:
        merged = [ids for job in batch for ids in job.items]
        self._last_batch_requests = len(batch)
        try:
            scores = self._score(merged) if merged else []
        except BaseException as exc:  # noqa: BLE001 - every waiter must hear about the failure
            for job in batch:
                job.future.set_exception(exc)
            return
        s = self.stats
        s.requests += len(batch)
        s.items += len(merged)
        s.batches += 1
        s.largest_batch_items = max(s.largest_batch_items, len(merged))
        s.largest_batch_requests = max(s.largest_batch_requests, len(batch))
        s.merged_batches += len(batch) > 1
        start = 0
        for job in batch:
            job.future.set_result(scores[start : start + len(job.items)])
            start += len(job.items)
        self._last_batch_done = time.monotonic()
