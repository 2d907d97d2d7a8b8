"""The CPU-idle sampler that decides whether splitting a fast stream can help."""

from __future__ import annotations

import time

from model_zoo.download.cpu import CpuIdle


def test_idle_fraction_is_a_share_and_is_sampled_at_most_every_period() -> None:
    cpu = CpuIdle(every=0.2)
    now = time.monotonic()
    first = cpu.idle_fraction(now)
    assert 0.0 <= first <= 1.0
    busy_until = time.monotonic() + 0.25
    while time.monotonic() < busy_until:  # keep one CPU busy for a while
        pass
    assert cpu.idle_fraction(now + 0.1) == first  # within the period: the cached value
    second = cpu.idle_fraction(now + 0.3)
    assert 0.0 <= second <= 1.0


def test_unreadable_proc_stat_counts_as_idle(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from model_zoo.download import cpu as cpu_module

    monkeypatch.setattr(cpu_module, "_read", lambda: None)
    assert CpuIdle().idle_fraction(time.monotonic() + 10) == 1.0
