"""How idle the machine's CPUs are, sampled from /proc/stat (Linux) at most twice a second.

The scheduler splits fast streams only when there is CPU to spare (see ``Run._more_streams_help``).
Where /proc/stat cannot be read the machine counts as idle, so splitting stays on.
"""

from __future__ import annotations

import threading


def _read() -> tuple[int, int] | None:
    """(idle + iowait jiffies, total jiffies) over all CPUs, or None."""
    try:
        with open("/proc/stat", "rb") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != b"cpu":
        return None
    values = [int(v) for v in fields[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return idle, sum(values[:8])


class CpuIdle:
    """``idle_fraction(now)``: share of CPU time idle since the previous sample (1.0 unknown)."""

    def __init__(self, every: float = 0.5) -> None:
        self._every = every
        self._lock = threading.Lock()
        self._last = _read()
        self._at = 0.0
        self._fraction = 1.0

    def idle_fraction(self, now: float) -> float:
        with self._lock:
            if now - self._at < self._every:
                return self._fraction
            current = _read()
            if current is not None and self._last is not None and current[1] > self._last[1]:
                self._fraction = (current[0] - self._last[0]) / (current[1] - self._last[1])
            self._last, self._at = current, now
            return self._fraction
