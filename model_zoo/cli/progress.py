"""Showing a pull's progress: rich bars on a terminal, plain lines elsewhere, JSON for scripts.

All output goes to stderr except ``--json`` events (stdout, one object per line), so that
``$(model-zoo pull NAME)`` captures only the final path. Renderers take the engine's events
(``model_zoo.download.progress``) and the pull's own ``PullEvent`` objects.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from .output import human_size


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


class Quiet:
    """``-q``: nothing at all."""

    def __call__(self, event: Any) -> None:
        pass

    def close(self) -> None:
        pass


class JsonLines:
    """``--json``: every event as one JSON object per line."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, event: Any) -> None:
        self.stream.write(json.dumps(event_dict(event), default=str) + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class _Totals:
    """Byte counts shared by the plain and rich renderers."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.start = time.monotonic()
        self.files_total = 0
        self.files_done = 0

    def rate(self) -> float:
        elapsed = time.monotonic() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta(self) -> str:
        rate = self.rate()
        if rate <= 0 or self.total <= self.done:
            return "-"
        secs = int((self.total - self.done) / rate)
        return f"{secs // 60}:{secs % 60:02d}"

    def line(self) -> str:
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        return (f"{human_size(self.done)} of {human_size(self.total)}{pct}, {self.files_done}/{self.files_total} "
                f"files, {human_size(self.rate())}/s, ETA {self.eta()}")


class PlainLines:
    """Not a terminal: a status line every ``interval`` seconds, plus notable events."""

    def __init__(self, stream: TextIO | None = None, interval: float = 5.0) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self.t = _Totals()
        self._last = time.monotonic()

    def _say(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def __call__(self, event: Any) -> None:
        kind = _kind(event)
        if kind == "start":
            self.t.total = int(event.data.get("bytes", 0))
            self.t.files_total = int(event.data.get("files", 0))
            self.t.start = time.monotonic()
            self._say(event.message)
        elif kind == "file_start":
            self.t.done += event.resumed
            if event.resumed:
                self._say(f"{event.path}: resuming at {human_size(event.resumed)} from {event.source}")
        elif kind == "progress":
            self.t.done += event.bytes
            now = time.monotonic()
            if now - self._last >= self.interval:
                self._last = now
                self._say(self.t.line())
        elif kind == "file_done":
            self.t.files_done += 1
            self._say(f"{event.path}: done, {human_size(event.size)}, {event.verification}")
        elif kind == "retry":
            self._say(f"{event.path}: retrying on {event.source} in {event.delay:.1f} s ({event.reason})")
        elif kind == "fallback":
            to = event.to_source or "no source left"
            self._say(f"{event.path}: {event.from_source} failed ({event.reason}); trying {to}")
        elif kind == "waiting":
            self._say(f"{event.path}: waiting for another process ({event.holder})")
        elif kind == "file_failed":
            self._say(f"{event.path}: failed ({event.error})")
        elif kind in ("plan", "note", "waiting_model", "reuse", "verify"):
            self._say(getattr(event, "message", ""))
        elif kind == "done":
            if self.t.files_total:
                self._say(self.t.line())

    def close(self) -> None:
        pass


class RichBars:
    """A terminal: an overall bar (bytes, speed, ETA) and one bar per file in flight."""

    def __init__(self, console: Any = None) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        from .output import err_console

        self.console = console or err_console()
        self.progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.overall: Any = None
        self.tasks: dict[str, Any] = {}
        self.started = False

    def _start(self) -> None:
        if not self.started:
            self.progress.start()
            self.started = True

    def __call__(self, event: Any) -> None:
        kind = _kind(event)
        p = self.progress
        if kind == "start":
            self._start()
            self.overall = p.add_task("[bold]total", total=int(event.data.get("bytes", 0)) or None)
        elif kind == "file_start":
            self._start()
            task = p.add_task(_short(event.path), total=event.size, completed=event.resumed)
            self.tasks[event.path] = task
            if self.overall is not None and event.resumed:
                p.advance(self.overall, event.resumed)
        elif kind == "progress":
            task = self.tasks.get(event.path)
            if task is not None:
                p.advance(task, event.bytes)
            if self.overall is not None:
                p.advance(self.overall, event.bytes)
        elif kind in ("file_done", "file_failed"):
            task = self.tasks.pop(event.path, None)
            if task is not None:
                p.remove_task(task)
            if kind == "file_failed":
                p.console.print(f"[red]{event.path}: {event.error}[/]", highlight=False)
        elif kind == "retry":
            p.console.print(f"[yellow]{event.path}: retry on {event.source} ({event.reason})[/]", highlight=False)
        elif kind == "fallback":
            to = event.to_source or "no source left"
            p.console.print(f"[yellow]{event.path}: {event.from_source} failed ({event.reason}); trying {to}[/]",
                            highlight=False)
        elif kind in ("plan", "note", "waiting_model", "reuse", "verify", "waiting"):
            msg = getattr(event, "message", None) or f"{event.path}: waiting for another process ({event.holder})"
            p.console.print(msg, highlight=False, markup=False)

    def close(self) -> None:
        if self.started:
            self.progress.stop()
            self.started = False


def _short(path: str, width: int = 40) -> str:
    return path if len(path) <= width else "…" + path[-(width - 1):]


def make_renderer(*, json_events: bool = False, quiet: bool = False, tty: bool | None = None) -> Any:
    """The renderer for these flags: ``-q`` wins, then ``--json``, then rich on a terminal."""
    if quiet:
        return Quiet()
    if json_events:
        return JsonLines()
    if tty is None:
        tty = sys.stderr.isatty()
    return RichBars() if tty else PlainLines()
