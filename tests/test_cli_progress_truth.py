"""What the pull's progress shows is true: file rows move with their bytes, kept bytes are not
speed, a finished pull ends at 100%, and Ctrl-C says what it kept and exits 130.

Unit tests drive the renderers with a fake clock and read their frames; the end-to-end tests
run real pulls against the local hub (slowed down with its bandwidth limit).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fixtures_pull import HF_REPO, MODEL

from model_zoo.cli.progress import PlainLines, PullTally, RichBars
from model_zoo.download import progress as ev
from model_zoo.download.pull import PullEvent, pull_model

SCRIPT = str(Path(sys.executable).parent / "model-zoo")
MB = 1_000_000


class FakeClock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _console(width: int = 160) -> Any:
    from rich.console import Console

    return Console(
        file=io.StringIO(), width=width, height=40, color_system=None, force_terminal=False
    )


def _row(frame: str, name: str) -> str:
    """The line of ``frame`` whose first word is ``name``."""
    rows = [line for line in frame.splitlines() if line.split()[:1] == [name]]
    assert len(rows) == 1, f"no single row {name!r} in:\n{frame}"
    return rows[0]


def _size(text: str) -> float:
    """``12.3 MB`` -> bytes (decimal units, as ``human_size`` writes them)."""
    num, unit = text.split()
    return float(num) * {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[unit]


# ---------------------------------------------------------------- file rows move with the bytes


def test_a_file_row_moves_with_each_progress_event_before_the_file_ends() -> None:
    clock = FakeClock()
    bars = RichBars(_console(), clock=clock)
    bars(PullEvent("start", "go", {"files": 2, "bytes": 2_100 * MB, "path": "/x"}))
    bars(ev.FileStart("model-00001-of-00002.safetensors", 2_000 * MB, 0, "hf"))
    bars(ev.FileStart("config.json", 100 * MB, 0, "hf"))
    seen = []
    for _ in range(4):
        clock.now += 1
        bars(ev.Progress("model-00001-of-00002.safetensors", 25 * MB))
        seen.append(_row(bars.frame(), "model-00001-of-00002.safetensors"))
    # a 2 GB file 100 MB in: its row says so (not "0.0/2.0 GB"), and it moved at every event
    assert "100.0 MB/2.0 GB" in seen[-1] and "5.0%" in seen[-1]
    assert [re.search(r"(\S+ \S+)/2\.0 GB", r).group(1) for r in seen] == [  # type: ignore[union-attr]
        "25.0 MB",
        "50.0 MB",
        "75.0 MB",
        "100.0 MB",
    ]
    assert "0 B/100.0 MB" in _row(bars.frame(), "config.json")  # no bytes yet: honestly at 0
    assert "100.0 MB/2.1 GB" in _row(bars.frame(), "total")
    bars.close()


def test_rows_follow_a_real_pull_event_by_event(own_hub, tmp_path: Path) -> None:
    """The engine's own events: after each one, every row holds exactly the bytes reported for
    its file so far, and the big file's row was seen part-way (not only at 0 and at the end)."""
    hub, root = own_hub(bandwidth=6 * MB)
    (root / HF_REPO / "extra.dat").write_bytes(os.urandom(4 * 1024 * 1024))
    bars = RichBars(_console())
    reported: dict[str, int] = {}
    partway: set[str] = set()

    def watch(event: Any) -> None:
        bars(event)
        if event.kind == "file_start":
            reported[event.path] = event.resumed
        elif event.kind == "progress":
            reported[event.path] += event.bytes
            task = bars.progress._tasks[bars.tasks[event.path]]
            assert task.completed == reported[event.path], event.path
            if 0 < task.completed < (task.total or 0):
                partway.add(event.path)
        elif event.kind == "file_done":
            assert reported.get(event.path, event.size) == event.size

    pull_model(MODEL, source="hf", local_dir=tmp_path / "ckpt", progress=watch)
    bars.close()
    assert "extra.dat" in partway
    total = bars.progress._tasks[bars.overall]
    assert total.completed == total.total == sum(reported.values())


# ---------------------------------------------------------------- kept bytes are not speed


def _resumed_pull(renderer: Any, clock: FakeClock) -> None:
    """900 MB kept from an earlier run, then 10 MB received per second for 3 seconds."""
    renderer(PullEvent("start", "go", {"files": 1, "bytes": 1_000 * MB, "path": "/x"}))
    renderer(ev.FileStart("model.safetensors", 1_000 * MB, 900 * MB, "hf"))
    for _ in range(3):
        clock.now += 1
        renderer(ev.Progress("model.safetensors", 10 * MB))


def test_resumed_bytes_count_toward_completion_but_not_speed_in_the_bars() -> None:
    clock = FakeClock()
    bars = RichBars(_console(), clock=clock)
    _resumed_pull(bars, clock)
    assert bars.tally.speed() == pytest.approx(10 * MB)
    assert bars.tally.speed("model.safetensors") == pytest.approx(10 * MB)
    frame = bars.frame()
    for name in ("total", "model.safetensors"):
        row = _row(frame, name)
        assert "930.0 MB/1.0 GB" in row and "93.0%" in row
        assert "10.0 MB/s" in row, row  # not 310 MB/s (930 MB over 3 s)
        assert "ETA 0:07" in row  # 70 MB left at 10 MB/s
    bars.close()


def test_resumed_bytes_count_toward_completion_but_not_speed_in_plain_lines() -> None:
    clock = FakeClock()
    out = io.StringIO()
    lines = PlainLines(out, interval=0.0, clock=clock)
    _resumed_pull(lines, clock)
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("930.0 MB of 1.0 GB (93%), 0/1 files, 10.0 MB/s, ETA 0:07"), last


def test_speed_is_recent_arrivals_and_falls_to_zero_when_bytes_stop() -> None:
    clock = FakeClock()
    tally = PullTally(clock, window=5.0)
    tally(PullEvent("start", "go", {"files": 1, "bytes": 100 * MB}))
    tally(ev.FileStart("a", 100 * MB, 0, "hf"))
    for _ in range(5):
        clock.now += 1
        tally(ev.Progress("a", 4 * MB))
    assert tally.speed() == pytest.approx(4 * MB)
    clock.now += 2.5  # half a window without a byte: only the last 3 arrivals are in it
    assert tally.speed() == pytest.approx(12 * MB / 5)
    clock.now += 10
    assert tally.speed() == 0 and tally.eta() is None


# ---------------------------------------------------------------- the last frame is 100%


def test_last_frame_of_a_resumed_pull_is_100_percent_everywhere() -> None:
    """The resumed pull the engine reports: one file resumed, one re-hashed on disk (FileDone
    without a FileStart, as the engine does for a file an earlier run completed), one whose
    sha256 mismatch made the engine fetch it again (more bytes than its size arrived)."""
    clock = FakeClock()
    con = _console()
    bars = RichBars(con, clock=clock)
    bars(PullEvent("start", "go", {"files": 3, "bytes": 600, "path": "/x"}))
    bars(ev.FileStart("a.bin", 300, 200, "hf"))
    clock.now += 1
    bars(ev.Progress("a.bin", 100))
    bars(ev.FileDone("a.bin", 300, "0" * 64, "sha256-published", ("hf",), 100, 200, False))
    bars(ev.FileDone("config.json", 100, "1" * 64, "git-blob-sha1", (), 0, 0, True))
    bars(ev.FileStart("b.bin", 200, 0, "hf"))
    bars(ev.Progress("b.bin", 200))
    bars(ev.Progress("b.bin", 150))  # the first 200 were discarded and fetched again
    bars(ev.FileDone("b.bin", 200, "2" * 64, "sha256-published", ("hf",), 200, 0, False))
    bars(PullEvent("done", "/x", {"path": "/x"}))
    bars.close()
    final = con.file.getvalue()  # a non-terminal console gets exactly the last frame
    rows = {name: _row(final, name) for name in ("total", "a.bin", "config.json", "b.bin")}
    assert all("100.0%" in row for row in rows.values()), final
    assert "600 B/600 B" in rows["total"] and "done" in rows["total"]
    assert "on disk" in rows["config.json"]
    assert bars.tally.received == 450  # what arrived this run, discarded bytes included


def test_finished_rows_make_room_for_files_in_flight() -> None:
    bars = RichBars(_console(), max_rows=3)
    bars(PullEvent("start", "go", {"files": 5, "bytes": 500}))
    for name in "abcd":
        bars(ev.FileStart(name, 100, 0, "hf"))
        bars(ev.Progress(name, 100))
        bars(ev.FileDone(name, 100, "0" * 64, "sha256-published", ("hf",), 100, 0, False))
    bars(ev.FileStart("e", 100, 0, "hf"))
    shown = [t.fields["path"] for t in bars.progress.tasks if t.visible and t.id != bars.overall]
    assert shown == ["c", "d", "e"]  # the oldest finished rows gave way; the file in flight shows
    bars.close()


def test_last_frame_after_a_real_resume_is_100_percent(own_hub, tmp_path: Path) -> None:
    """A pull killed part-way leaves finished files (not yet in a manifest) and a partial; the
    rerun's bars end at 100%, and its speed counted only the bytes it received."""
    hub, root = own_hub(bandwidth=2 * MB)
    (root / HF_REPO / "extra.dat").write_bytes(os.urandom(6 * 1024 * 1024))
    target = tmp_path / "ckpt"
    proc = subprocess.Popen(
        [SCRIPT, "pull", MODEL, "--source", "hf", "-q", "--local-dir", str(target)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    kept = _wait_for_partial(target, 1_000_000)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert any(p.is_file() for p in target.glob("*.json")), "no file finished before the kill"

    hub.bandwidth.set(None, None)
    con = _console()
    bars = RichBars(con)
    result = pull_model(MODEL, source="hf", local_dir=target, progress=bars)
    bars.close()
    final = con.file.getvalue()
    frame = final[final.index("total ") :]
    rows = [line for line in frame.splitlines() if line.strip()]
    assert rows and all("100.0%" in line for line in rows), frame
    assert len(rows) == 1 + len(bars.tasks)
    assert (
        bars.tally.completed
        == bars.tally.total
        == sum(f.size or 0 for f in result.files if not f.present)
    )
    assert bars.tally.received == result.downloaded_bytes  # speed saw these bytes only
    assert result.resumed_bytes >= kept - 1


# ---------------------------------------------------------------- Ctrl-C


def _wait_for_partial(target_or_home: Path, at_least: int, timeout: float = 30) -> int:
    """Bytes a running pull's sidecars record (at least ``at_least``, or the test fails)."""
    deadline = time.monotonic() + timeout
    kept = 0
    while time.monotonic() < deadline and kept < at_least:
        time.sleep(0.1)
        for sidecar in target_or_home.rglob(".model-zoo-partial/*.part.json"):
            with contextlib.suppress(OSError, ValueError):  # being rewritten right now
                kept = max(kept, sum(e - s for s, e in json.loads(sidecar.read_text())["written"]))
    assert kept >= at_least, "the pull never checkpointed a partial"
    return kept


INTERRUPTED = re.compile(
    r"^interrupted: (\S+ \S+) of (\S+ \S+) kept in (.+); "
    r"run the same command again to resume$"
)


@pytest.mark.slow
def test_ctrl_c_mid_pull_says_what_it_kept_exits_130_and_a_rerun_resumes(own_hub) -> None:
    hub, root = own_hub(bandwidth=2 * MB)
    (root / HF_REPO / "extra.dat").write_bytes(os.urandom(6 * 1024 * 1024))
    proc = subprocess.Popen(
        [SCRIPT, "pull", MODEL, "--source", "hf"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    home = Path(os.environ["MODEL_ZOO_HOME"])
    seen = _wait_for_partial(home, 1_000_000)
    # the engine reports bytes every 0.1 s and drops the last report when interrupted (see the
    # engine note in progress.py): give it time to report what the sidecar already holds
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert out == ""  # no path: the checkpoint is not there yet
    said = [line for line in err.splitlines() if "interrupted" in line]
    assert said == [err.splitlines()[-1]], err  # one line, the last
    m = INTERRUPTED.match(said[0])
    assert m, said[0]
    kept, total, where = _size(m.group(1)), _size(m.group(2)), Path(m.group(3))
    assert where.is_dir() and where.is_relative_to(home)
    assert seen - 0.05 * MB <= kept < total

    before = hub.stats.bytes_served()
    hub.bandwidth.set(None, None)
    rerun = subprocess.run(
        [SCRIPT, "pull", MODEL, "--source", "hf", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert rerun.returncode == 0, rerun.stderr
    final = json.loads(rerun.stdout.splitlines()[-1])
    assert Path(final["path"]) == where
    assert final["total_size"] == pytest.approx(total, abs=0.05 * MB)
    fetched_again = hub.stats.bytes_served() - before
    on_disk_before = final["total_size"] - final["downloaded_bytes"]
    assert (
        fetched_again <= final["total_size"] - kept + 0.05 * MB
    )  # what the line called kept was kept
    # the line told the truth within the bytes of the last event interval (at most one 1 MiB read)
    assert on_disk_before - 1.1 * 1024 * 1024 - 0.05 * MB <= kept <= on_disk_before + 0.05 * MB


def _pull_then_ctrl_c(monkeypatch: pytest.MonkeyPatch, *events: Any) -> None:
    """Make ``pull_model`` report ``events`` and then meet a Ctrl-C."""
    import model_zoo.download.pull as pull_mod

    def fake_pull(name: str, *, progress: Any, **_: Any) -> Any:
        for e in events:
            progress(e)
        raise KeyboardInterrupt

    monkeypatch.setattr(pull_mod, "pull_model", fake_pull)


def test_ctrl_c_line_with_json_and_quiet(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal as sig

    from model_zoo.cli.main import main

    _pull_then_ctrl_c(
        monkeypatch,
        PullEvent("start", "go", {"files": 2, "bytes": 3 * MB, "path": "/data/ckpt"}),
        ev.FileStart("a", 2 * MB, 500_000, "hf"),
        ev.Progress("a", 700_000),
        ev.FileDone("b", MB, "0" * 64, "sha256-published", ("hf",), 0, 0, True),
    )
    assert main(["pull", MODEL, "--json"]) == 130
    out, err = capsys.readouterr()
    assert err == (
        "interrupted: 2.2 MB of 3.0 MB kept in /data/ckpt; run the same command again to resume\n"
    )
    last = json.loads(out.splitlines()[-1])
    assert last == {
        "event": "interrupted",
        "path": "/data/ckpt",
        "kept_bytes": 2_200_000,
        "total_bytes": 3_000_000,
        "files_done": 1,
        "files_total": 2,
    }
    assert sig.getsignal(sig.SIGINT) is sig.default_int_handler  # the pull's handler is gone

    assert main(["pull", MODEL, "-q"]) == 130
    out, err = capsys.readouterr()
    assert (
        out == "" and err.count("\n") == 1 and err.startswith("interrupted: 2.2 MB of 3.0 MB kept")
    )


def test_ctrl_c_before_the_download_started(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from model_zoo.cli.main import main

    _pull_then_ctrl_c(monkeypatch, PullEvent("plan", "source hf"))
    assert main(["pull", MODEL]) == 130
    err = capsys.readouterr().err
    assert (
        err.splitlines()[-1]
        == "interrupted before the download began; run the same command again to pull"
    )


def test_a_second_ctrl_c_while_stopping_exits_at_once(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from model_zoo.cli.cmd_pull import _second_interrupt_stops_at_once

    class Exited(BaseException):
        pass

    def fake_exit(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(os, "_exit", fake_exit)
    with pytest.raises(KeyboardInterrupt), _second_interrupt_stops_at_once():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            with pytest.raises(Exited) as exited:  # the pull winds down; the user presses it again
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
            assert exited.value.args == (130,)
            raise
    assert "interrupted again: stopped at once" in capfd.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
