"""Fixtures for pull / lock / verify tests: the local hub over tiny checkpoints under real ids.

    def test_x(pull_hub):                 # LocalHub over the shared (read-only) tiny hub tree,
        pull("internlm2_5-1_8b-chat")     # every hub endpoint variable pointing at it
    def test_y(own_hub):                  # a private copy of the tree you may change
        hub, root = own_hub()

Also ``probes(*keys)``: fake probe results that fix the ``auto`` order (first = fastest).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from model_zoo.download.plan import ProbeResult
from model_zoo.testing.local_hub import LocalHub

MODEL = "internlm2_5-1_8b-chat"  # registry name whose repos exist on every hub but modelers
HF_REPO = "internlm/internlm2_5-1_8b-chat"
MS_REPO = "Shanghai_AI_Laboratory/internlm2_5-1_8b-chat"


def probes(*keys: str) -> dict[str, ProbeResult]:
    """Probe results that order ``auto`` as ``keys`` (all reachable, first fastest)."""
    return {k: ProbeResult(k, True, 0.001 * (i + 1)) for i, k in enumerate(keys)}


def _point_at(hub: LocalHub, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in hub.env().items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def pull_hub(tiny_hub_tree: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    hub = LocalHub(tiny_hub_tree.root).start()
    _point_at(hub, monkeypatch)
    try:
        yield hub
    finally:
        hub.stop()


@pytest.fixture
def own_hub(
    tiny_hub_tree: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., tuple[LocalHub, Path]]]:
    hubs: list[LocalHub] = []

    def make(**kwargs: Any) -> tuple[LocalHub, Path]:
        root = tmp_path / f"hub-copy-{len(hubs)}"
        shutil.copytree(tiny_hub_tree.root, root)
        hub = LocalHub(root, **kwargs).start()
        hubs.append(hub)
        _point_at(hub, monkeypatch)
        return hub, root

    yield make
    for hub in hubs:
        hub.stop()
