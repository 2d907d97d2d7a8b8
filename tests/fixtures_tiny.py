"""Session-cached tiny InternLM checkpoints and a local-hub repository tree for tests.

The directories are shared by every test of a session (per xdist worker): treat them as
read-only, and copy one (``shutil.copytree``) before changing or damaging it.

Fixtures:
    tiny_checkpoint   factory ``(arch, *, seed=0, shards=2, dtype="bfloat16") -> Path``, cached
    tiny_internlm2, tiny_internlm2_reward, tiny_internlm3, tiny_internlm1   default builds
    tiny_hub_tree     ``HubTree(root, repos)`` from ``make_hub_tree`` with the default ids
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from model_zoo.testing.tiny import make_tiny
from model_zoo.testing.tiny_hub import make_hub_tree

TinyFactory = Callable[..., Path]


class HubTree(NamedTuple):
    root: Path
    repos: dict[str, Path]  # repo id -> directory under root


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> TinyFactory:
    cache: dict[tuple[str, int, int, str], Path] = {}

    def build(arch: str, *, seed: int = 0, shards: int = 2, dtype: str = "bfloat16") -> Path:
        key = (arch, seed, shards, dtype)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"tiny-{arch}-s{seed}-{shards}-{dtype}")
            cache[key] = make_tiny(arch, out, seed=seed, shards=shards, dtype=dtype)
        return cache[key]

    return build


@pytest.fixture(scope="session")
def tiny_internlm2(tiny_checkpoint: TinyFactory) -> Path:
    return tiny_checkpoint("internlm2")


@pytest.fixture(scope="session")
def tiny_internlm2_reward(tiny_checkpoint: TinyFactory) -> Path:
    return tiny_checkpoint("internlm2-reward")


@pytest.fixture(scope="session")
def tiny_internlm3(tiny_checkpoint: TinyFactory) -> Path:
    return tiny_checkpoint("internlm3")


@pytest.fixture(scope="session")
def tiny_internlm1(tiny_checkpoint: TinyFactory) -> Path:
    return tiny_checkpoint("internlm")


@pytest.fixture(scope="session")
def tiny_hub_tree(tmp_path_factory: pytest.TempPathFactory) -> HubTree:
    root = tmp_path_factory.mktemp("tiny-hub")
    return HubTree(root, make_hub_tree(root))
