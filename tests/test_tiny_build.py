"""Tiny checkpoint builds are deterministic (also across processes), seeded, and small."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from model_zoo.testing.tiny import make_tiny

ARCHS = ("internlm2", "internlm2-reward", "internlm3", "internlm")


def _digests(path: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


@pytest.mark.parametrize("arch", ARCHS)
def test_same_seed_gives_identical_bytes(tiny_checkpoint, tmp_path: Path, arch: str) -> None:
    again = make_tiny(arch, tmp_path / "again")
    assert _digests(again) == _digests(tiny_checkpoint(arch))


def test_identical_bytes_from_a_fresh_process(tiny_internlm3: Path, tmp_path: Path) -> None:
    """SentencePiece training and the weights do not depend on process state."""
    code = (
        "import sys; from model_zoo.testing.tiny import make_tiny; "
        "make_tiny('internlm3', sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "fresh")], check=True, timeout=120)
    assert _digests(tmp_path / "fresh") == _digests(tiny_internlm3)


def test_another_seed_changes_the_weights_only(tiny_checkpoint) -> None:
    base = _digests(tiny_checkpoint("internlm2"))
    other = _digests(tiny_checkpoint("internlm2", seed=1))
    assert base.keys() == other.keys()
    differ = {name for name in base if base[name] != other[name]}
    assert differ == {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}


def test_reward_model_shares_the_internlm2_tokenizer(
    tiny_internlm2: Path, tiny_internlm2_reward: Path
) -> None:
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        assert (tiny_internlm2 / name).read_bytes() == (tiny_internlm2_reward / name).read_bytes()


@pytest.mark.parametrize("arch", ARCHS)
def test_a_checkpoint_is_small(tiny_checkpoint, arch: str) -> None:
    total = sum(p.stat().st_size for p in tiny_checkpoint(arch).iterdir())
    assert 100_000 < total < 2_000_000
