"""Showing a pull's progress: rich bars on a terminal, plain lines elsewhere, JSON for scripts.

All output goes to stderr except ``--json`` events (stdout, one object per line), so that
``$(model-zoo pull NAME)`` captures only the final path. Renderers take the engine's events
(``model_zoo.download.progress``) and the pull's own ``PullEvent`` objects.

Every number a renderer shows comes from one ``PullTally``, which keeps two counts apart:
bytes a file *has* (kept from an earlier run plus received now: they make the bars and the
percentages) and bytes *received in this run* (the only ones that make speed and ETA). A
finished file counts its final size, whatever events came before it, so the last frame of a
pull that completed is at 100%.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from .output import human_size

Clock = Callable[[], float]
RATE_WINDOW = 8.0  # seconds of arrivals a speed is averaged over: steady, yet a stall shows


def _kind(event: Any) -> str:
    return str(getattr(event, "kind", "") or "")


def event_dict(event: Any) -> dict[str, Any]:
    """A JSON-friendly form of any event (engine or pull)."""
    if hasattr(event, "to_dict"):
        return event.to_dict()
    out = {"event": _kind(event), "message": getattr(event, "message", "")}
    data = getattr(event, "data", None)
    if data:
        out.update(dict(data))
    return out


class _Rate:
    """Bytes received over the last ``window`` seconds (arrival times, not a lifetime average,
    so a stalled download shows its speed falling to zero)."""

    def __init__(self, start: float, window: float) -> None:
        self.window = window
        self.received = 0
        self._samples: deque[tuple[float, int]] = deque([(start, 0)])

    def add(self, now: float, n: int) -> None:
        self.received += n
        self._samples.append((now, self.received))
        cutoff = now - self.window
        while len(self._samples) > 1 and self._samples[1][0] <= cutoff:
            self._samples.popleft()  # keep one sample at or before the window as its baseline

    def per_second(self, now: float) -> float:
        cutoff = now - self.window
        while len(self._samples) > 1 and self._samples[1][0] <= cutoff:
            self._samples.popleft()
        t0, n0 = self._samples[0]  # the last arrival at or before the window (or the start)
        elapsed = now - max(t0, cutoff)
        return (self.received - n0) / elapsed if elapsed > 0 else 0.0


@dataclass
class FileTally:
    """One file of the pull: what it holds on disk and what arrived in this run."""

    path: str
    size: int | None
    resumed: int = 0  # bytes an earlier run left (counted as done, never as speed)
    received: int = 0  # bytes received in this run since its latest FileStart
    done: bool = False
    failed: bool = False
    already_present: bool = False  # complete on disk before this run: re-hashed, not fetched
    unsized: bool = False  # announced without a size (the plan counted it as 0 bytes)
    started: float = 0.0
    finished: float | None = None
    rate: _Rate = field(default_factory=lambda: _Rate(0.0, RATE_WINDOW))

    @property
    def completed(self) -> int:
        """Bytes of this file on disk now (never more than its size)."""
        if self.done and self.size is not None:
            return self.size
        have = self.resumed + self.received
        return min(have, self.size) if self.size is not None else have


class PullTally:
    """The state every renderer draws from, fed with the same events.

    A ``start`` event opens a new pull (its total and file count); ``FileStart`` creates or
    restarts a file, ``Progress`` adds received bytes, ``FileDone`` sets the final size (also
    for a file that had no ``FileStart``: one the engine found complete on disk). Thread-safe
    for readers: the rich renderer draws on its own thread.
    """

    def __init__(self, clock: Clock = time.monotonic, window: float = RATE_WINDOW) -> None:
        self.clock = clock
        self.window = window
        self._lock = threading.Lock()
        self._reset(None)

    def _reset(self, planned: int | None, files: int = 0, path: str | None = None) -> None:
        self.files: dict[str, FileTally] = {}
        self.planned = planned  # bytes the pull's ``start`` said it would fetch (None: not told)
        self.planned_files = files
        self.path = path  # the directory the files go to
        self.started = self.clock()
        self.rate = _Rate(self.started, self.window)
        self.began = False  # a ``start`` event arrived: bytes are on their way

    # -- feeding ---------------------------------------------------------------------------
    def __call__(self, event: Any) -> FileTally | None:
        """Account for ``event``; the file it concerns (None for pull-level events)."""
        kind = _kind(event)
        now = self.clock()
        with self._lock:
            if kind == "start":
                data = getattr(event, "data", {}) or {}
                self._reset(
                    int(data.get("bytes", 0) or 0), int(data.get("files", 0) or 0), data.get("path")
                )
                self.began = True
                return None
            if kind == "file_start":
                f = self.files.get(event.path)
                if f is None:
                    f = self.files[event.path] = FileTally(
                        event.path, event.size, unsized=event.size is None
                    )
                # a second FileStart (the pull's retry on another sha256) starts the file over
                f.size, f.resumed, f.received = event.size, int(event.resumed or 0), 0
                f.done = f.failed = f.already_present = False
                f.started, f.finished = now, None
                f.rate = _Rate(now, self.window)
                return f
            if kind == "progress":
                f = self.files.get(event.path)
                if f is None:  # bytes of a file never announced still arrived: count them
                    f = self.files[event.path] = FileTally(
                        event.path, None, unsized=True, started=now, rate=_Rate(now, self.window)
                    )
                f.received += event.bytes
                f.rate.add(now, event.bytes)
                self.rate.add(now, event.bytes)
                return f
            if kind == "file_done":
                f = self.files.get(event.path)
                if f is None:
                    f = self.files[event.path] = FileTally(
                        event.path, event.size, started=now, rate=_Rate(now, self.window)
                    )
                    f.already_present = bool(getattr(event, "already_present", False))
                f.size, f.done, f.failed, f.finished = int(event.size), True, False, now
                return f
            if kind == "file_failed":
                f = self.files.get(event.path)
                if f is not None:
                    f.failed, f.finished = True, now
                return f
        return None

    # -- reading ---------------------------------------------------------------------------
    @property
    def completed(self) -> int:
        """Bytes of this pull's files on disk: kept from earlier runs, received, or verified."""
        with self._lock:
            return sum(f.completed for f in self.files.values())

    @property
    def total(self) -> int:
        """Bytes the pull needs in all; grows by the sizes learnt only at the end (never below
        ``completed``, so a percentage stays within 100)."""
        with self._lock:
            if self.planned is None:
                total = sum(f.size or 0 for f in self.files.values())
            else:  # the plan counted unknown sizes as 0: add them once they are known
                total = self.planned + sum(
                    f.size for f in self.files.values() if f.unsized and f.size is not None
                )
            done = sum(f.completed for f in self.files.values())
        return max(total, done)

    @property
    def received(self) -> int:
        """Bytes received in this run (the only bytes that count as speed)."""
        return self.rate.received

    @property
    def files_total(self) -> int:
        return self.planned_files or len(self.files)

    @property
    def files_done(self) -> int:
        with self._lock:
            return sum(1 for f in self.files.values() if f.done)

    def speed(self, path: str | None = None) -> float:
        """Bytes per second received in this run: the whole pull, or one file (its average
        over its own transfer once it is finished)."""
        now = self.clock()
        with self._lock:
            if path is None:
                return self.rate.per_second(now)
            f = self.files.get(path)
            if f is None:
                return 0.0
            if f.finished is not None:
                took = f.finished - f.started
                return f.received / took if took > 0 else 0.0
            return f.rate.per_second(now)

    def eta(self, path: str | None = None) -> float | None:
        """Seconds left at the current speed (None: not moving, or size unknown)."""
        if path is None:
            left = self.total - self.completed
        else:
            with self._lock:
                f = self.files.get(path)
                if f is None or (f.size is None and not f.done):
                    return None
                left = 0 if f.done or f.size is None else f.size - f.completed
        rate = self.speed(path)
        if left <= 0:
            return 0.0
        return left / rate if rate > 0 else None

    def line(self) -> str:
        """One status line: ``3.1 GB of 15.5 GB (20%), 2/11 files, 41.0 MB/s, ETA 5:49``."""
        total, done = self.total, self.completed
        pct = f" ({100 * done / total:.0f}%)" if total else ""
        return (
            f"{human_size(done)} of {human_size(total)}{pct}, {self.files_done}/{self.files_total} "
            f"files, {human_size(self.speed())}/s, ETA {_clock(self.eta())}"
        )

    def interrupted_line(self) -> str:
        """What Ctrl-C leaves behind, in one line."""
        if not self.began:
            return "interrupted before the download began; run the same command again to pull"
        where = f" in {self.path}" if self.path else ""
        return (
            f"interrupted: {human_size(self.completed)} of {human_size(self.total)} kept{where}; "
            "run the same command again to resume"
        )


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    secs = int(seconds + 0.5)
    hours, rest = divmod(secs, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Quiet:
    """``-q``: nothing at all."""

    def __init__(self) -> None:
        self.tally = PullTally()

    def __call__(self, event: Any) -> None:
        self.tally(event)

    def close(self) -> None:
        pass


class JsonLines:
    """``--json``: every event as one JSON object per line."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.tally = PullTally()

    def __call__(self, event: Any) -> None:
        self.tally(event)
        self.stream.write(json.dumps(event_dict(event), default=str) + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class PlainLines:
    """Not a terminal: a status line every ``interval`` seconds, plus notable events."""

    def __init__(
        self, stream: TextIO | None = None, interval: float = 5.0, clock: Clock = time.monotonic
    ) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self.clock = clock
        self.tally = PullTally(clock)
        self._last = clock()

    def _say(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def __call__(self, event: Any) -> None:
        kind = _kind(event)
        self.tally(event)
        if kind == "start":
            self._last = self.clock()
            self._say(event.message)
        elif kind == "file_start":
            if event.resumed:
                self._say(
                    f"{event.path}: resuming at {human_size(event.resumed)} from {event.source}"
                )
        elif kind == "progress":
            now = self.clock()
            if now - self._last >= self.interval:
                self._last = now
                self._say(self.tally.line())
        elif kind == "file_done":
            how = (
                "already on disk, re-hashed" if getattr(event, "already_present", False) else "done"
            )
            self._say(f"{event.path}: {how}, {human_size(event.size)}, {event.verification}")
        elif kind == "retry":
            self._say(
                f"{event.path}: retrying on {event.source} in {event.delay:.1f} s ({event.reason})"
            )
        elif kind == "fallback":
            to = event.to_source or "no source left"
            self._say(f"{event.path}: {event.from_source} failed ({event.reason}); trying {to}")
        elif kind == "waiting":
            self._say(f"{event.path}: waiting for another process ({event.holder})")
        elif kind == "file_failed":
            self._say(f"{event.path}: failed ({event.error})")
        elif kind in ("plan", "note", "waiting_model", "reuse", "verify", "link"):
            self._say(getattr(event, "message", ""))
        elif kind == "done" and self.tally.began:
            self._say(self.tally.line())

    def close(self) -> None:
        pass


def _rich_columns(tally: PullTally) -> list[Any]:
    """The bar's columns, all reading the tally (rich is imported only when bars are drawn)."""
    from rich.progress import BarColumn, ProgressColumn, TextColumn
    from rich.text import Text

    def key(task: Any) -> str | None:
        return task.fields.get("path")

    def file_of(task: Any) -> FileTally | None:
        path = key(task)
        return tally.files.get(path) if path is not None else None

    class Bytes(ProgressColumn):
        """``12.3 MB/1.9 GB``: each side in its own unit, so a big file visibly moves."""

        def render(self, task: Any) -> Text:
            total = "?" if task.total is None else human_size(task.total)
            return Text(f"{human_size(task.completed)}/{total}", style="progress.download")

    class Percent(ProgressColumn):
        def render(self, task: Any) -> Text:
            if not task.total:
                return Text("    ", style="progress.percentage")
            return Text(
                f"{min(100.0, 100 * task.completed / task.total):5.1f}%",
                style="progress.percentage",
            )

    class Speed(ProgressColumn):
        """Bytes received in this run per second; kept bytes never count."""

        def render(self, task: Any) -> Text:
            f = file_of(task)
            if f is not None and f.already_present:
                return Text("on disk", style="progress.data.speed")
            rate = tally.speed(key(task))
            return Text(f"{human_size(rate)}/s" if rate > 0 else "-", style="progress.data.speed")

    class Eta(ProgressColumn):
        def render(self, task: Any) -> Text:
            f = file_of(task)
            if f is not None and f.failed:
                return Text("failed", style="red")
            if (f is not None and f.done) or (
                f is None and task.total and task.completed >= task.total
            ):
                return Text("done", style="green")
            if f is not None and f.size is not None and f.completed >= f.size:
                return Text(
                    "verifying", style="progress.remaining"
                )  # every byte is in: hashing, renaming
            return Text(f"ETA {_clock(tally.eta(key(task)))}", style="progress.remaining")

    return [
        TextColumn("{task.description}", justify="left"),
        BarColumn(),
        Bytes(),
        Percent(),
        Speed(),
        Eta(),
    ]


class RichBars:
    """A terminal: an overall bar and one row per file, each moving with the bytes it received.

    Finished rows stay at 100%; when the rows would not fit the screen, the oldest finished
    ones are hidden first (never a file still in flight).
    """

    def __init__(
        self, console: Any = None, *, clock: Clock = time.monotonic, max_rows: int | None = None
    ) -> None:
        from rich.progress import Progress

        from .output import err_console

        self.console = console or err_console()
        self.tally = PullTally(clock)
        self.progress = Progress(*_rich_columns(self.tally), console=self.console, transient=False)
        self.max_rows = max_rows
        self.overall: Any = None
        self.tasks: dict[str, Any] = {}  # path -> rich task id, for every file row shown or hidden
        self._finished: list[str] = []  # rows of finished files, oldest first
        self._hidden: set[str] = set()  # finished rows hidden to make room
        self.started = False

    def _start(self) -> None:
        if not self.started:
            self.progress.start()
            self.started = True

    def _rows_allowed(self) -> int:
        if self.max_rows is not None:
            return self.max_rows
        return max(4, self.console.size.height - 4)

    def _row(self, f: FileTally) -> Any:
        task = self.tasks.get(f.path)
        if task is None:  # created with its numbers: the drawing thread never sees a blank row
            from rich.markup import escape

            task = self.progress.add_task(
                escape(_short(f.path)), total=f.size, completed=f.completed, path=f.path
            )
            self.tasks[f.path] = task
        return task

    def _sync(self, f: FileTally | None) -> None:
        """Draw ``f``'s row and the total from the tally (the only place bars are moved)."""
        p = self.progress
        if f is not None:
            task = self._row(f)
            if f.failed:
                self._hidden.add(f.path)
                p.update(task, visible=False)
            else:
                if not f.done and f.path in self._finished:  # started over (a retry pass)
                    self._finished.remove(f.path)
                    self._hidden.discard(f.path)
                    p.update(task, visible=True)
                p.update(task, total=f.size, completed=f.completed)
            if (f.done or f.failed) and f.path not in self._finished:
                self._finished.append(f.path)
            self._fit()
        if self.overall is not None:
            p.update(self.overall, total=self.tally.total or None, completed=self.tally.completed)

    def _fit(self) -> None:
        """Hide the oldest finished rows while there are more rows than the screen allows."""
        extra = (
            sum(1 for t in self.progress.tasks if t.visible and t.id != self.overall)
            - self._rows_allowed()
        )
        for path in self._finished:
            if extra <= 0:
                break
            if path not in self._hidden:
                self._hidden.add(path)
                self.progress.update(self.tasks[path], visible=False)
                extra -= 1

    def __call__(self, event: Any) -> None:
        kind = _kind(event)
        f = self.tally(event)
        p = self.progress
        if kind == "start":
            self._start()
            for task in self.tasks.values():  # a second model's pull: its own rows
                p.remove_task(task)
            self.tasks.clear()
            self._finished.clear()
            self._hidden.clear()
            if self.overall is not None:
                p.remove_task(self.overall)
            self.overall = p.add_task("[bold]total", total=self.tally.total or None)
        elif kind in ("file_start", "progress", "file_done", "file_failed"):
            self._start()
            self._sync(f)
            if kind == "file_failed":
                p.console.print(f"[red]{event.path}: {event.error}[/]", highlight=False)
        elif kind == "retry":
            p.console.print(
                f"[yellow]{event.path}: retry on {event.source} ({event.reason})[/]",
                highlight=False,
            )
        elif kind == "fallback":
            to = event.to_source or "no source left"
            p.console.print(
                f"[yellow]{event.path}: {event.from_source} failed ({event.reason}); "
                f"trying {to}[/]",
                highlight=False,
            )
        elif kind in ("plan", "note", "waiting_model", "reuse", "verify", "waiting", "link"):
            msg = (
                getattr(event, "message", None)
                or f"{event.path}: waiting for another process ({event.holder})"
            )
            p.console.print(msg, highlight=False, markup=False)

    def frame(self, width: int = 120) -> str:
        """The bars as they would be drawn now, as plain text (what a test or a log can read)."""
        import io

        from rich.console import Console

        buf = io.StringIO()
        out = Console(file=buf, width=width, color_system=None, force_terminal=False)
        out.print(self.progress.get_renderable())
        return buf.getvalue()

    def close(self) -> None:
        if self.started:
            if self.overall is not None:
                self._sync(None)
            self.progress.stop()
            self.started = False


def _short(path: str, width: int = 40) -> str:
    return path if len(path) <= width else "…" + path[-(width - 1) :]


def make_renderer(
    *, json_events: bool = False, quiet: bool = False, tty: bool | None = None
) -> Any:
    """The renderer for these flags: ``-q`` wins, then ``--json``, then rich on a terminal.

    Every renderer keeps a ``tally`` (``PullTally``), so the caller can say what an interrupted
    pull kept whatever the output mode.
    """
    if quiet:
        return Quiet()
    if json_events:
        return JsonLines()
    if tty is None:
        tty = sys.stderr.isatty()
    return RichBars() if tty else PlainLines()
