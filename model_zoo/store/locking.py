"""Cross-process locks that stay safe on network filesystems.

Two ways to lock, chosen per directory:

- ``flock``: ``fcntl.flock`` on a lock file. Released by the kernel when the process dies
  (kill -9 included), so there are no stale locks. Correct on local disks and on Linux NFS
  (emulated with byte-range locks), but on Lustre mounted without ``-o flock`` it fails, and with
  ``-o localflock`` it silently locks only the local node.
- ``lockfile``: an owner file created with ``O_CREAT|O_EXCL`` (atomic on NFSv3+, Lustre, GPFS),
  holding host and pid, whose mtime a background thread refreshes every few seconds. A lock
  whose heartbeat is older than ``stale_after`` seconds belongs to a dead process and is broken;
  so is, at once, a lock whose holder ran on this very machine (same host, boot and pid
  namespace) and no longer exists (a pull killed with kill -9 no longer costs the next one a
  minute). A holder on another node is only ever judged by its heartbeat.

The default (``auto``, or ``MODEL_ZOO_LOCK=auto``) uses ``flock`` on local filesystems and
``lockfile`` on network and cluster filesystems (NFS, Lustre, GPFS, CephFS, BeeGFS, SMB, FUSE),
read from ``/proc/self/mountinfo``. ``MODEL_ZOO_LOCK=flock|lockfile`` forces one.
Whatever the lock does, files are only ever renamed into place after verification, so a lock
failure can cost a duplicate download, never a corrupt file.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType

from ..errors import ConfigError, LockTimeoutError

MODES = ("auto", "flock", "lockfile")
NETWORK_FS = frozenset(
    {
        "nfs",
        "nfs4",
        "lustre",
        "gpfs",
        "cifs",
        "smb3",
        "smbfs",
        "ceph",
        "beegfs",
        "9p",
        "afs",
        "glusterfs",
        "orangefs",
        "pvfs2",
        "panfs",
        "wekafs",
        "davfs",
        "ncpfs",
        "virtiofs",
    }
)


def mount_fs_type(path: Path) -> str | None:
    """Filesystem type of the mount holding ``path``, from /proc/self/mountinfo (Linux)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    target = str(path.resolve())
    best, best_type = "", None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        mount_point = fields[4].replace("\\040", " ")
        fs_type = right.split()[0]
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fs_type
    return best_type


def is_network_fs(path: Path) -> bool:
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    fs = mount_fs_type(probe) or ""
    return fs in NETWORK_FS or fs.startswith("fuse") or fs.split(".")[0] in NETWORK_FS


def lock_mode(path: Path, env: dict[str, str] | None = None) -> str:
    """``flock`` or ``lockfile`` for a lock at ``path`` (see the module docstring)."""
    env = dict(os.environ) if env is None else env
    mode = env.get("MODEL_ZOO_LOCK", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ConfigError(
            f"MODEL_ZOO_LOCK={mode!r}; use one of {', '.join(MODES)}", setting="MODEL_ZOO_LOCK"
        )
    if mode != "auto":
        return mode
    try:
        import fcntl  # noqa: F401
    except ImportError:  # pragma: no cover - not Unix
        return "lockfile"
    return "lockfile" if is_network_fs(path.parent) else "flock"


def _open_lock_file(path: Path, flags: int) -> int:
    """``os.open`` that re-creates the folder once when it vanished meanwhile: a pull that ends
    removes the empty folders of its partial area, which another pull may be about to lock in."""
    try:
        return os.open(path, flags, 0o644)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, flags, 0o644)


class ProcessLock:
    """An exclusive lock shared by every process (and thread) that uses the same path.

    ``timeout`` None waits forever; ``on_wait`` is called once when we have to wait, with a
    description of the holder, so a caller can tell the user why nothing moves.
    """

    def __init__(
        self,
        path: Path,
        *,
        mode: str | None = None,
        timeout: float | None = None,
        poll: float = 0.1,
        stale_after: float = 60.0,
        heartbeat: float = 5.0,
        on_wait: object = None,
    ) -> None:
        self.path = Path(path)
        self.mode = mode or lock_mode(self.path)
        self.timeout = timeout
        self.poll = poll
        self.stale_after = stale_after
        self.heartbeat = heartbeat
        self.on_wait = on_wait
        self._fd: int | None = None
        self._token = ""
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._thread_lock = threading.Lock()

    # ------------------------------------------------------------------ public

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        if not self._thread_lock.acquire(timeout=-1 if self.timeout is None else self.timeout):
            raise LockTimeoutError(str(self.path), time.monotonic() - start)
        try:
            told = False
            while not self._try_once():
                if not told and callable(self.on_wait):
                    self.on_wait(self.owner())
                    told = True
                waited = time.monotonic() - start
                if self.timeout is not None and waited >= self.timeout:
                    raise LockTimeoutError(str(self.path), waited, self.owner())
                time.sleep(self.poll)
        except BaseException:
            self._thread_lock.release()
            raise

    def release(self) -> None:
        try:
            if self.mode == "flock":
                self._release_flock()
            else:
                self._release_lockfile()
        finally:
            self._thread_lock.release()

    def owner(self) -> str:
        """Who holds the lock, as far as the lock file says (host:pid)."""
        try:
            data = json.loads(self._owner_file().read_text())
            return f"{data.get('host')}:{data.get('pid')}"
        except (OSError, ValueError, AttributeError):
            return ""

    def __enter__(self) -> ProcessLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    # ------------------------------------------------------------------ flock

    def _owner_file(self) -> Path:
        return (
            self.path if self.mode == "lockfile" else self.path.with_name(self.path.name + ".owner")
        )

    def _try_once(self) -> bool:
        return self._try_flock() if self.mode == "flock" else self._try_lockfile()

    def _try_flock(self) -> bool:
        import fcntl

        fd = _open_lock_file(self.path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            if exc.errno in (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EINVAL):
                # This filesystem cannot flock: switch to the lock-file protocol for good.
                self.mode = "lockfile"
                self.path = self.path.with_name(self.path.name + ".d")
                return self._try_lockfile()
            raise
        # A holder may unlink the lock file when done: then we locked an orphaned inode that a
        # newcomer, opening the path afresh, would not see. Only a lock on the file the path
        # names now counts.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            return False
        self._fd = fd
        try:
            self._owner_file().write_text(
                json.dumps({"host": socket.gethostname(), "pid": os.getpid()})
            )
        except OSError:
            pass
        return True

    def _release_flock(self) -> None:
        import fcntl

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    # ------------------------------------------------------------------ lockfile

    def _try_lockfile(self) -> bool:
        token = uuid.uuid4().hex
        body = json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "token": token,
                "since": time.time(),
                **_here(),
            }
        )
        try:
            fd = _open_lock_file(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            self._break_if_stale()
            return False
        with os.fdopen(fd, "w") as fh:
            fh.write(body)
        self._token = token
        self._stop.clear()
        self._beat = threading.Thread(
            target=self._heartbeat, name="model-zoo-lock-heartbeat", daemon=True
        )
        self._beat.start()
        return True

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                os.utime(self.path)
            except OSError:
                return

    def _age(self, path: Path) -> float | None:
        try:
            return time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return None

    def _break_if_stale(self) -> None:
        holder = _read_json(self.path)
        age = self._age(self.path)
        dead = holder is not None and _dead_here(holder)
        if age is None or (age < self.stale_after and not dead):
            return
        # Move it aside under a unique name; only one breaker can win that rename.
        aside = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        if dead:  # the file moved must still be the dead holder's, not a new owner's
            moved = _read_json(aside)
            took_a_live_one = moved is None or moved.get("token") != holder.get("token")  # type: ignore[union-attr]
        else:
            fresh = self._age(aside)
            took_a_live_one = fresh is not None and fresh < self.stale_after
        if took_a_live_one:
            # We raced with a new owner and took its fresh lock: put it back if still free.
            try:
                os.link(aside, self.path)
            except OSError:
                pass
        try:
            os.unlink(aside)
        except OSError:
            pass

    def _release_lockfile(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=1.0)
            self._beat = None
        try:
            data = json.loads(self.path.read_text())
            if data.get("token") == self._token:
                os.unlink(self.path)
        except (OSError, ValueError):
            pass
        self._token = ""


def _read_json(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _here() -> dict[str, object]:
    """What identifies this machine's process table: boot id and pid namespace (Linux)."""
    out: dict[str, object] = {}
    try:
        out["boot"] = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        out["pidns"] = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return {}
    return out


def _dead_here(holder: dict[str, object]) -> bool:
    """True only when the holder provably ran in this process table and is gone.

    Host, boot id and pid namespace must all match ours (containers on one host share a boot id
    but not a pid namespace; two machines may share a host name); anything unknown counts as alive.
    """
    here = _here()
    if not here or holder.get("host") != socket.gethostname():
        return False
    if any(holder.get(k) != v for k, v in here.items()):
        return False
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: it exists, under another user
        return False
    return False
