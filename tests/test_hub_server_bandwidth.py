"""Rate limits hold per protocol and globally (lower bounds only, so a slow machine passes)."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fixtures_local_hub import SAMPLE_REPO, HubFactory

from model_zoo.testing.local_hub import LocalHub

SHARD = "model-00001-of-00002.safetensors"  # 300_000 bytes


def fetch(hub: LocalHub, path: str) -> bytes:
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=30)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


def timed(fn: Callable[[], object]) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def test_per_protocol_limit(hub_root: Path, make_hub: HubFactory) -> None:
    hub = make_hub(bandwidth_per_protocol={"hf": 1_000_000})
    good = (hub_root / SAMPLE_REPO / SHARD).read_bytes()
    body = b""

    def hf() -> None:
        nonlocal body
        body = fetch(hub, f"/{SAMPLE_REPO}/resolve/main/{SHARD}")

    assert timed(hf) >= 0.25  # 300 kB at 1 MB/s, minus the 50 ms burst allowance
    assert body == good
    assert hub.bandwidth.limiters("modelscope") == [] and len(hub.bandwidth.limiters("hf")) == 1


def test_global_limit_is_shared_and_changeable(make_hub: HubFactory) -> None:
    hub = make_hub(bandwidth=1_000_000)
    urls = [
        f"/{SAMPLE_REPO}/resolve/main/{SHARD}",
        f"/api/v1/models/{SAMPLE_REPO}/repo?Revision=master&FilePath={SHARD}",
    ]

    def both() -> None:
        threads = [threading.Thread(target=fetch, args=(hub, u)) for u in urls]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    assert timed(both) >= 0.55  # 600 kB through one 1 MB/s budget
    hub.bandwidth.set(None)
    assert hub.bandwidth.limiters("hf") == []
    assert hub.stats.bytes_served(path=SHARD) == 600_000


def test_unknown_protocol_is_rejected(hub_root: Path) -> None:
    with pytest.raises(ValueError, match="unknown protocol"):
        LocalHub(hub_root, bandwidth_per_protocol={"github": 1.0})
