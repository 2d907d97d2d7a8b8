"""A file's life on disk: lock it, find it complete or resume its partial, record progress in
the sidecar, and rename it into place once its size and sha256 match (or discard it)."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import time
from collections.abc import Callable

from ..errors import DiskSpaceError, HashMismatchError, ModelZooError, UsageError
from . import progress as ev
from .hashing import OrderedHasher
from .partial import (
    IntervalSet,
    Sidecar,
    load_sidecar,
    remove_quietly,
    remove_stale_temps,
    save_sidecar,
)
from .paths import make_parents
from .state import CandidateState, FileState, FileStatus, RunState
from .types import COMPUTED_ONLY, VERIFIED_PUBLISHED, FileResult

# (file, candidate, why) -> drop the candidate for this file; called holding the run's lock
KillCandidate = Callable[[FileState, CandidateState, ModelZooError], None]


class Staging:
    """The on-disk side of a run; ``kill`` is how a sha256 mismatch drops a source."""

    def __init__(self, run: RunState, kill: KillCandidate) -> None:
        self.run = run
        self.kill = kill

    def open(self, f: FileState) -> None:
        """Lock ``f``, then find it complete or set up its partial and mark it ACTIVE."""
        from ..errors import LockTimeoutError
        from ..store.locking import ProcessLock

        make_parents(self.run.target, f.paths.lock)
        lock = ProcessLock(f.paths.lock, timeout=0)
        try:
            lock.acquire()
        except LockTimeoutError:
            self._defer(f, lock.owner())
            return
        f.lock = lock
        try:
            if self._already_complete(f):
                return
            self._prepare_partial(f)
        except BaseException:
            self.close(f)
            raise
        first = f.usable()[0]  # queued before any worker can report bytes of this file
        self.run.events.put(ev.FileStart(f.job.path, f.size, f.resumed, f.cands[first].source))
        with self.run.cv:
            f.status = FileStatus.ACTIVE
            self.run.cv.notify_all()

    def _defer(self, f: FileState, holder: str) -> None:
        from ..errors import LockTimeoutError

        run = self.run
        now = time.monotonic()
        with run.cv:
            if f.waiting_since is None:
                f.waiting_since = now
            waited = now - f.waiting_since
            if run.o.lock_timeout is not None and waited >= run.o.lock_timeout:
                f.error = LockTimeoutError(str(f.paths.lock), waited, holder)
                f.status = FileStatus.FAILED
            else:
                f.status = FileStatus.DEFERRED
                f.defer_until = now + min(1.0, 0.1 + waited / 10)
            run.cv.notify_all()
        if f.status is FileStatus.FAILED:
            run.events.put(ev.FileFailed(f.job.path, str(f.error)))
        elif not f.told_waiting:
            f.told_waiting = True
            run.events.put(ev.Waiting(f.job.path, holder))

    def _already_complete(self, f: FileState) -> bool:
        """The final file is there and matches (another process, or an earlier run, made it)."""
        from ..store.hashing import sha256_file

        final = f.paths.final
        try:
            st = os.lstat(final)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            return False  # refused with advice when the file would be renamed there
        if not stat.S_ISREG(st.st_mode) or (f.size is not None and st.st_size != f.size):
            f.replaces = True
            return False
        digest, size = sha256_file(final)
        if f.job.sha256 is not None and digest != f.job.sha256:
            f.replaces = True
            return False
        remove_quietly(f.paths.data, f.paths.sidecar)
        self._complete(f, digest, size, already_present=True)
        return True

    def _prepare_partial(self, f: FileState) -> None:
        job = f.job
        sc = load_sidecar(f.paths.sidecar)
        keep = sc is not None and sc.matches(job.path, job.size, job.sha256)
        on_disk = 0
        if keep:
            try:
                st = os.lstat(f.paths.data)
                keep = stat.S_ISREG(st.st_mode) and (job.size is None or st.st_size == job.size)
                on_disk = st.st_size
            except FileNotFoundError:
                keep = False
        if keep and job.sha256 is None and sc is not None and sc.etag:
            etags = {c.remote.etag for c in f.cands if c.remote.etag}
            keep = not etags or sc.etag in etags
        if not keep:
            remove_quietly(f.paths.data, f.paths.sidecar)
        make_parents(self.run.target, f.paths.final)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        f.fd = os.open(f.paths.data, flags, 0o644)
        if job.size is not None and os.fstat(f.fd).st_size != job.size:
            os.ftruncate(f.fd, job.size)  # sparse: ENOSPC shows up at pwrite, handled there
        written = IntervalSet()
        if keep and sc is not None:
            # a sidecar never vouches for bytes past the end of the file it describes (an
            # unknown-size partial cut short by a crash or by hand): those are fetched again
            limit = on_disk if job.size is None else min(job.size, on_disk)
            for start, end in sc.written:
                written.add(min(start, limit), min(end, limit))
            f.partial_sources = dict.fromkeys(sc.sources)
        big = job.size is None or job.size >= self.run.o.range_split_threshold
        f.hasher = OrderedHasher(f.fd, written, background=big)
        f.resumed = written.total()
        f.had_disk_bytes = f.resumed > 0
        if not big:
            # reads the resumed prefix once (for big files the hashing thread does it meanwhile)
            f.hasher.catch_up()

    def finish(self, f: FileState) -> None:
        """Every byte is on disk: check size and sha256, then rename into place (or discard)."""
        assert f.hasher is not None and f.size is not None
        f.hasher.catch_up()
        digest = f.hasher.hexdigest()
        on_disk = os.fstat(f.fd).st_size
        if f.hasher.hashed != f.size or on_disk != f.size:
            raise OSError(
                f"{f.paths.data}: {on_disk} bytes on disk, {f.hasher.hashed} hashed, "
                f"{f.size} expected"
            )
        if f.job.sha256 is not None and digest != f.job.sha256:
            self._mismatch(f, digest)
            return
        if self.run.o.fsync:
            os.fsync(f.fd)
        f.hasher.close()
        os.close(f.fd)
        f.fd = -1
        make_parents(self.run.target, f.paths.final)
        if os.path.isdir(f.paths.final) and not os.path.islink(f.paths.final):
            raise UsageError(
                f"{f.paths.final} is a directory; cannot put the file {f.job.path} there"
            )
        os.replace(f.paths.data, f.paths.final)
        remove_quietly(f.paths.sidecar)
        self._complete(f, digest, f.size, already_present=False)

    def _mismatch(self, f: FileState, digest: str) -> None:
        """sha256 mismatch: discard every byte, then decide who to blame."""
        assert f.hasher is not None and f.size is not None and f.job.sha256 is not None
        run = self.run
        srcs = list(f.partial_sources)
        error = HashMismatchError(f.job.path, f.job.sha256, digest, source=",".join(srcs) or None)
        f.hasher.reset()
        os.ftruncate(f.fd, 0)
        os.ftruncate(f.fd, f.size)
        with run.cv:
            f.discarded += f.size
            f.downloaded = 0
            f.resumed = 0
            f.by_source.clear()
            f.partial_sources.clear()
            f.status = FileStatus.ACTIVE
            f.splittable = None
            if f.had_disk_bytes:
                f.had_disk_bytes = False  # the bytes from disk may be the bad ones: one clean retry
            elif len(srcs) > 1 and f.mixed_ok:
                f.mixed_ok = (
                    False  # cannot tell which source lied: take the file from one at a time
                )
            else:
                for c in f.cands:
                    if c.dead is None and (c.source in srcs or not srcs):
                        c.mismatches += 1
                        # the last source left gets one more full try (corruption can be transient)
                        if c.mismatches >= 2 or len(f.usable()) > 1:
                            self.kill(f, c, error)
                        break
            run.cv.notify_all()
        self.checkpoint(f, force=True)

    def _complete(self, f: FileState, digest: str, size: int, *, already_present: bool) -> None:
        run = self.run
        remove_stale_temps(f.paths.sidecar)
        lock_file = f.paths.lock
        remove_quietly(lock_file, lock_file.with_name(lock_file.name + ".owner"))
        if f.lock is not None:
            f.lock.release()
            f.lock = None
        f.result = FileResult(
            path=f.job.path,
            final_path=f.paths.final,
            size=size,
            sha256=digest,
            expected_sha256=f.job.sha256,
            verification=VERIFIED_PUBLISHED if f.job.sha256 is not None else COMPUTED_ONLY,
            bytes_downloaded=f.downloaded,
            bytes_resumed=f.resumed,
            bytes_discarded=f.discarded,
            sources=tuple(f.partial_sources),
            bytes_by_source=dict(f.by_source),
            retries=f.retries,
            fallbacks=tuple(f.fallbacks),
            range_ignored=f.range_ignored,
            already_present=already_present,
            replaced_existing=f.replaces and not already_present,
            hedges=f.hedges,
        )
        with run.cv:
            f.status = FileStatus.DONE
            run.cv.notify_all()
        run.events.put(
            ev.FileDone(
                f.job.path,
                size,
                digest,
                f.result.verification,
                f.result.sources,
                f.downloaded,
                f.resumed,
                already_present,
            )
        )

    def checkpoint(self, f: FileState, *, force: bool = False) -> None:
        """Save the sidecar (about once per ``checkpoint_interval``; always when ``force``)."""
        o = self.run.o
        if f.hasher is None or f.fd < 0 or f.status in (FileStatus.FINISHING, FileStatus.DONE):
            return
        now = time.monotonic()
        if not force and now - f.last_ckpt < o.checkpoint_interval:
            return
        if not f.ckpt_lock.acquire(blocking=force):
            return
        try:
            f.last_ckpt = now
            if o.fsync:
                os.fsync(f.fd)
            etag = next((c.remote.etag for c in f.cands if c.remote.etag), None)
            state = Sidecar(
                f.job.path,
                f.job.size,
                f.job.sha256,
                etag,
                f.hasher.ranges(),
                list(f.partial_sources),
            )
            try:
                save_sidecar(f.paths.sidecar, state, fsync=o.fsync)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise  # out of space: the older sidecar names fewer bytes, which stays true
        finally:
            f.ckpt_lock.release()

    def close(self, f: FileState) -> None:
        """Save what is there, stop hashing, close the partial and release the lock."""
        try:
            self.checkpoint(f, force=True)
        except OSError:
            pass
        if f.hasher is not None:
            f.hasher.close()
        if f.fd >= 0:
            os.close(f.fd)
            f.fd = -1
        if f.lock is not None:
            f.lock.release()
            f.lock = None

    def disk_full_error(self) -> DiskSpaceError:
        needed = sum(  # a file of unknown size counts nothing, not minus what it holds
            max(0, (f.size or 0) - (f.hasher.written_total() if f.hasher else 0))
            for f in self.run.files
            if f.status not in (FileStatus.DONE, FileStatus.FAILED)
        )
        try:
            free = shutil.disk_usage(self.run.target).free
        except OSError:
            free = 0
        return DiskSpaceError(str(self.run.target), needed, free)
