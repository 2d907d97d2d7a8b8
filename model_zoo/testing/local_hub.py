"""The test hub: the mirror server with fault injection and statistics plugged in as hooks.

    with LocalHub(root) as hub:                  # or hub.start() / hub.stop()
        os.environ.update(hub.env())             # HF_ENDPOINT, MODELSCOPE_ENDPOINT, ...
        hub.faults.add(Fault.status(503, times=2))
        ...
        hub.stats.bytes_served(path="model.safetensors")

Everything else (protocols, gating, rate limits, latency, TLS) is ``MirrorServer``'s, so the
tests exercise the very server ``model-zoo serve-mirror`` runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..mirror.repo_store import RepoStore
from ..mirror.server import MirrorServer
from .faults import Fault, FaultHooks, FaultSet
from .hub_stats import HubStats, StatsHooks


class _TestHooks(FaultHooks, StatsHooks):
    """Faults first change a response, then the statistics record it (with the fault kinds)."""

    def __init__(self, faults: FaultSet, stats: HubStats) -> None:
        FaultHooks.__init__(self, faults)
        StatsHooks.__init__(self, stats)


class LocalHub(MirrorServer):
    """``MirrorServer`` with ``.faults`` (a ``FaultSet``, changeable while requests are in flight;
    ``faults``: the initial rules) and ``.stats`` (a ``HubStats``: request log, bytes per file).

    Other keyword arguments are ``MirrorServer``'s.
    """

    def __init__(
        self,
        root: Path | str | Sequence[Path | str] | RepoStore,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        faults: Sequence[Fault] | None = None,
        **options: Any,
    ) -> None:
        self.faults = FaultSet(list(faults or ()))
        self.stats = HubStats()
        super().__init__(root, host, port, hooks=_TestHooks(self.faults, self.stats), **options)


__all__ = ["Fault", "LocalHub"]
