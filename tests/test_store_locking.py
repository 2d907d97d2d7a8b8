"""Cross-process locks: mutual exclusion in both modes, stale lock files, mode selection."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from model_zoo.errors import ConfigError
from model_zoo.store.locking import LockTimeoutError, ProcessLock, lock_mode, mount_fs_type

WORKER = r"""
import sys, time
from pathlib import Path
from model_zoo.store.locking import ProcessLock
lock_path, log, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
for _ in range(5):
    with ProcessLock(lock_path, mode=mode, poll=0.01):
        with log.open("a") as fh:
            fh.write("in\n"); fh.flush()
            time.sleep(0.02)
            fh.write("out\n"); fh.flush()
"""


@pytest.mark.parametrize("mode", ["flock", "lockfile"])
def test_processes_never_overlap(tmp_path: Path, mode: str) -> None:
    lock, log = tmp_path / "m.lock", tmp_path / "log"
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(lock), str(log), mode])
        for _ in range(3)
    ]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    lines = log.read_text().split()
    assert len(lines) == 30
    # strictly alternating in/out: no two holders at once
    assert lines == ["in", "out"] * 15


@pytest.mark.parametrize("mode", ["flock", "lockfile"])
def test_threads_with_separate_objects_exclude(tmp_path: Path, mode: str) -> None:
    inside = 0
    worst = 0
    guard = threading.Lock()

    def work() -> None:
        nonlocal inside, worst
        for _ in range(10):
            with ProcessLock(tmp_path / "t.lock", mode=mode, poll=0.005):
                with guard:
                    inside += 1
                    worst = max(worst, inside)
                time.sleep(0.002)
                with guard:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert worst == 1


def _hold(lock: Path, mode: str) -> subprocess.Popen[str]:
    """A child process that takes ``lock`` and keeps it until killed."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time;from pathlib import Path;"
            "from model_zoo.store.locking import ProcessLock;"
            "l=ProcessLock(Path(sys.argv[1]),mode=sys.argv[2]);l.acquire();"
            "print('held',flush=True);time.sleep(60)",
            str(lock),
            mode,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_flock_is_released_when_holder_is_killed(tmp_path: Path) -> None:
    lock = tmp_path / "k.lock"
    holder = _hold(lock, "flock")
    with pytest.raises(LockTimeoutError):
        ProcessLock(lock, mode="flock", timeout=0.2).acquire()
    holder.kill()
    holder.wait()
    with ProcessLock(lock, mode="flock", timeout=5):
        pass


def test_stale_lockfile_is_broken_and_fresh_one_is_not(tmp_path: Path) -> None:
    lock = tmp_path / "s.lock"
    lock.write_text(json.dumps({"host": "gone", "pid": 1, "token": "old"}))
    waits: list[str] = []
    with pytest.raises(LockTimeoutError, match="gone:1"):
        ProcessLock(
            lock, mode="lockfile", timeout=0.3, stale_after=30, on_wait=waits.append
        ).acquire()
    assert waits == ["gone:1"]
    old = time.time() - 120
    os.utime(lock, (old, old))
    with ProcessLock(lock, mode="lockfile", timeout=2, stale_after=30):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_lockfile_heartbeat_keeps_a_long_holder_alive(tmp_path: Path) -> None:
    lock = tmp_path / "h.lock"
    with ProcessLock(lock, mode="lockfile", stale_after=0.6, heartbeat=0.1):
        time.sleep(1.0)  # longer than stale_after: only the heartbeat keeps it fresh
        with pytest.raises(LockTimeoutError):
            ProcessLock(lock, mode="lockfile", timeout=0.4, stale_after=0.6).acquire()


def test_mode_selection(tmp_path: Path) -> None:
    assert lock_mode(tmp_path / "x.lock", {"MODEL_ZOO_LOCK": "lockfile"}) == "lockfile"
    assert lock_mode(tmp_path / "x.lock", {"MODEL_ZOO_LOCK": "flock"}) == "flock"
    with pytest.raises(ConfigError):
        lock_mode(tmp_path / "x.lock", {"MODEL_ZOO_LOCK": "nfs-magic"})
    # the test directory is on a local filesystem here, so auto means flock
    fs = mount_fs_type(tmp_path)
    if fs is not None:
        expected = "lockfile" if fs.startswith(("nfs", "lustre", "fuse")) else "flock"
        assert lock_mode(tmp_path / "x.lock", {}) == expected


def test_flock_on_an_unlinked_lock_file_does_not_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A holder that deletes the lock file on release must not let two waiters in at once: a
    lock taken on the orphaned file (unlinked between our open and our flock) is retried."""
    import fcntl

    path = tmp_path / "u.lock"
    real_flock = fcntl.flock
    calls = []

    def racing_flock(fd: int, op: int) -> None:
        calls.append(op)
        if len(calls) == 1:  # the previous holder releases and unlinks right now
            path.unlink()
            path.write_text("")
        real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", racing_flock)
    lock = ProcessLock(path, mode="flock", timeout=2, poll=0.01)
    with lock:
        assert len([c for c in calls if c & fcntl.LOCK_EX]) == 2  # the first lock did not count
        assert os.path.samestat(os.fstat(lock._fd), os.stat(path))


def test_a_lockfile_whose_holder_died_on_this_machine_is_broken_at_once(tmp_path: Path) -> None:
    lock = tmp_path / "d.lock"
    holder = _hold(lock, "lockfile")
    try:
        with pytest.raises(LockTimeoutError):  # alive: its fresh heartbeat is respected
            ProcessLock(lock, mode="lockfile", timeout=0.5, stale_after=60).acquire()
    finally:
        holder.kill()
        holder.wait()
    start = time.monotonic()
    with ProcessLock(lock, mode="lockfile", timeout=10, stale_after=60):  # not after stale_after
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert time.monotonic() - start < 5


def test_a_dead_pid_from_another_machine_or_namespace_waits_for_the_heartbeat(
    tmp_path: Path,
) -> None:
    from model_zoo.store.locking import _here

    dead_pid = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    here = _here()
    assert here, "this test needs Linux /proc"
    for other in ({"host": "another-node"}, {"boot": "another-boot"}, {"pidns": 1}):
        lock = tmp_path / f"x{len(other)}-{list(other)[0]}.lock"
        record = {"host": socket.gethostname(), "pid": int(dead_pid), "token": "t", **here, **other}
        lock.write_text(json.dumps(record))
        with pytest.raises(LockTimeoutError):
            ProcessLock(lock, mode="lockfile", timeout=0.3, stale_after=60).acquire()
        assert json.loads(lock.read_text()) == record  # left alone


# ---------------------------------------------------------- a folder removed while a lock is taken


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", ["flock", "lockfile"])
def test_lock_taken_in_a_folder_another_pull_just_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """A pull that ends removes the empty folders of its partial area; one that is about to lock
    a file there (folder created, lock file not yet) failed with FileNotFoundError."""
    import shutil

    from model_zoo.store.locking import ProcessLock

    folder = tmp_path / ".model-zoo-partial" / "sub"
    lock = ProcessLock(folder / "x.lock", mode=mode, timeout=0)
    real_mkdir = Path.mkdir

    def mkdir_then_other_pull_tidies(self: Path, *args: object, **kwargs: object) -> None:
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]
        if self == folder and not getattr(mkdir_then_other_pull_tidies, "done", False):
            mkdir_then_other_pull_tidies.done = True  # type: ignore[attr-defined]
            shutil.rmtree(tmp_path / ".model-zoo-partial")

    monkeypatch.setattr(Path, "mkdir", mkdir_then_other_pull_tidies)
    lock.acquire()
    try:
        assert (folder / "x.lock").exists()
    finally:
        lock.release()
