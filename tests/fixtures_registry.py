"""Registry test helpers: small registry files written to tmp_path, and a clean process cache."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# A complete, valid registry with one family, one shape and three entries (one reward model).
MINI_REGISTRY = """\
schema_version: 1
defaults:
  license: demo-license
families:
  demo:
    title: Demo
    generation: 1.5
    defaults: {architecture: InternLM2ForCausalLM, weight_format: safetensors}
    chat_defaults:
      chat_format: chatml
      generation_defaults: {temperature: 0.7, stop_token_ids: [2]}
shapes:
  tiny:
    {hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4,
     num_key_value_heads: 2, vocab_size: 1000, max_position_embeddings: 512}
models:
  - name: Demo-1B
    family: demo
    size: 1B
    kind: base
    released: 2024-01-01
    dims: tiny
    sources: {hf: demo-org/demo-1b, modelscope: DemoOrg/demo-1b}
  - name: Demo-1B-Chat
    aliases: [Demo-Chat-1B]
    family: demo
    size: 1B
    kind: chat
    released: 2024-02-01
    dims: tiny
    sources: {hf: demo-org/demo-1b-chat}
  - name: Demo-1B-Reward
    family: demo
    size: 1B
    kind: reward
    released: 2024-03-01
    architecture: InternLM2ForRewardModel
    reward: {reward_token_id: 7, rewardbench: 50.0}
    dims: tiny
    sources: {hf: demo-org/demo-1b-reward}
"""


@pytest.fixture
def write_registry(tmp_path: Path) -> Callable[..., Path]:
    """Write YAML text (dedented) to a fresh file under tmp_path and return its path."""
    counter = iter(range(1_000_000))

    def write(text: str, name: str | None = None) -> Path:
        path = tmp_path / (name or f"registry-{next(counter)}.yaml")
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def fresh_registry_cache() -> Iterator[None]:
    """Forget registries this process loaded before and after the test."""
    from model_zoo.registry.loader import clear_registry_cache

    clear_registry_cache()
    yield
    clear_registry_cache()
