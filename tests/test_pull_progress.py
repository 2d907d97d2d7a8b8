"""Progress renderers: plain periodic lines off a terminal, JSON lines, silence, rich bars."""

from __future__ import annotations

import io
import json

from model_zoo.cli.progress import JsonLines, PlainLines, Quiet, RichBars, make_renderer
from model_zoo.download import progress as ev
from model_zoo.download.pull import PullEvent

EVENTS = [
    PullEvent("plan", "source hf (http://127.0.0.1:1, internlm/x): named with --source"),
    PullEvent("start", "downloading 2 file(s)", {"files": 2, "bytes": 3000}),
    ev.FileStart("a.safetensors", 2000, 500, "hf"),
    ev.Progress("a.safetensors", 1000),
    ev.Retry("a.safetensors", "hf", 1, "HTTP 503", 0.5),
    ev.Progress("a.safetensors", 500),
    ev.FileDone("a.safetensors", 2000, "0" * 64, "sha256-published", ("hf",), 1500, 500, False),
    ev.FileStart("b.json", 1000, 0, "hf"),
    ev.Fallback("b.json", "hf", "modelscope", "sha256 mismatch"),
    ev.Progress("b.json", 1000),
    ev.FileDone("b.json", 1000, "1" * 64, "sha256-published", ("modelscope",), 1000, 0, False),
    PullEvent("done", "/x", {"path": "/x"}),
]


def test_plain_lines_report_progress_and_notable_events() -> None:
    out = io.StringIO()
    r = PlainLines(out, interval=0.0)
    for e in EVENTS:
        r(e)
    text = out.getvalue()
    assert "resuming at 500 B from hf" in text
    assert "retrying on hf in 0.5 s (HTTP 503)" in text
    assert "hf failed (sha256 mismatch); trying modelscope" in text
    assert "a.safetensors: done, 2.0 KB, sha256-published" in text
    # status lines count resumed + received bytes against the total
    assert text.strip().splitlines()[-1].startswith("3.0 KB of 3.0 KB (100%), 2/2 files")


def test_plain_lines_are_periodic_not_per_chunk() -> None:
    out = io.StringIO()
    r = PlainLines(out, interval=3600)
    r(PullEvent("start", "go", {"files": 1, "bytes": 10**6}))
    for _ in range(1000):
        r(ev.Progress("a", 1000))
    assert len(out.getvalue().splitlines()) == 1  # only the start line within the interval


def test_json_lines_one_object_per_event() -> None:
    out = io.StringIO()
    r = JsonLines(out)
    for e in EVENTS:
        r(e)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [row["event"] for row in rows] == [e.kind for e in EVENTS]
    assert rows[1]["bytes"] == 3000 and rows[6]["sources"] == ["hf"]


def test_rich_bars_track_totals_and_keep_finished_files_at_100_percent() -> None:
    from rich.console import Console

    r = RichBars(Console(file=io.StringIO(), force_terminal=True))
    for e in EVENTS[:6]:
        r(e)
    row = r.progress._tasks[r.tasks["a.safetensors"]]
    assert (
        row.completed == 2000 and row.total == 2000
    )  # 500 resumed + 1500 received, before its FileDone
    for e in EVENTS[6:]:
        r(e)
    r.close()
    total, *rows = r.progress.tasks
    assert (total.completed, total.total) == (3000, 3000)
    assert [(t.fields["path"], t.completed, t.total, t.visible) for t in rows] == [
        ("a.safetensors", 2000, 2000, True),
        ("b.json", 1000, 1000, True),
    ]


def test_make_renderer_flags() -> None:
    assert isinstance(make_renderer(quiet=True, json_events=True), Quiet)
    assert isinstance(make_renderer(json_events=True), JsonLines)
    assert isinstance(make_renderer(tty=False), PlainLines)
    assert isinstance(make_renderer(tty=True), RichBars)
