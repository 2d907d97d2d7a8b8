"""Fixtures for the reward and server tests.

Two kinds of reward model:

* ``fake_rm``: the real ``RewardModel`` recipe over a character codec and a pure-Python scorer
  (a position-weighted sum of the ids). It tests mechanics (ordering, batching, the server,
  limits) in microseconds, with scores that change whenever any id or position changes.
* ``tiny_rm``: the tiny InternLM2-Reward checkpoint loaded natively (fp32, CPU), plus
  ``reference_scores``: an independent plain-torch InternLM2 forward straight from the packed
  safetensors weights, with its own v_head / reward-token / position logic.
* ``tiny_polar_rm``: the tiny POLAR checkpoint (``tiny_polar_fp32``) loaded natively, a
  ``PolarRewardModel``; ``reference_score`` scores its sequences too (same architecture).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from model_zoo.reward.model import RewardModel

FAKE_REWARD_ID = 7
FAKE_PAD_ID = 2
# What json.loads gives for the escape "\ud800": a lone surrogate, not encodable as UTF-8.
LONE_SURROGATE = "caf\ud800"


class CharCodec:
    """A codec whose template and tokens are easy to predict: one id per character."""

    def render(self, conversation: Sequence[dict[str, str]]) -> str:
        return "".join(f"<{m['role']}>{m['content']}|" for m in conversation)

    SPECIAL = {"#": FAKE_PAD_ID, "@": FAKE_REWARD_ID}  # kept whole, like special tokens

    def encode(self, text: str) -> list[int]:
        return [self.SPECIAL.get(c, ord(c) % 251 + 10) for c in text]


def fake_score(ids: Sequence[int]) -> float:
    return sum((i + 1) * t for i, t in enumerate(ids)) / 1000.0


class RecordingScorer:
    """Scores with ``fake_score`` and records every call's batch size (thread-safe)."""

    def __init__(self, delay_s: float = 0.0, gate: threading.Event | None = None) -> None:
        self.delay_s = delay_s
        self.gate = gate  # when given, every call waits for it (to hold work in flight)
        self.calls: list[int] = []
        self.seen: list[list[int]] = []
        self.started = threading.Event()  # set when a call begins (to catch work in flight)
        self._lock = threading.Lock()

    def score_ids(
        self,
        batch: Sequence[Sequence[int]],
        *,
        batch_size: int | None = None,
        max_tokens_per_batch: int | None = None,
    ) -> list[float]:
        self.started.set()
        with self._lock:
            self.calls.append(len(batch))
            self.seen.extend(list(x) for x in batch)
        if self.gate is not None:
            assert self.gate.wait(30), "test gate never opened"
        if self.delay_s:
            time.sleep(self.delay_s)
        return [fake_score(ids) for ids in batch]


def make_fake_rm(
    *,
    delay_s: float = 0.0,
    max_length: int = 200,
    truncate: bool = False,
    gate: threading.Event | None = None,
) -> RewardModel:
    return RewardModel(
        RecordingScorer(delay_s, gate),
        CharCodec(),
        reward_token_id=FAKE_REWARD_ID,
        max_length=max_length,
        pad_token_id=FAKE_PAD_ID,
        name="fake-reward",
        truncate=truncate,
    )


def conv(user: str, assistant: str | None = None) -> list[dict[str, str]]:
    out = [{"role": "user", "content": user}]
    if assistant is not None:
        out.append({"role": "assistant", "content": assistant})
    return out


@pytest.fixture()
def fake_rm() -> RewardModel:
    return make_fake_rm()


# ---------------------------------------------------------------------- the tiny real model


@pytest.fixture(scope="session")
def tiny_reward_fp32(tiny_checkpoint: Any) -> Path:
    """A tiny InternLM2-Reward checkpoint stored in fp32 (so 1e-4 comparisons are meaningful)."""
    return tiny_checkpoint("internlm2-reward", seed=3, shards=2, dtype="float32")


@pytest.fixture(scope="session")
def tiny_rm(tiny_reward_fp32: Path) -> RewardModel:
    from model_zoo.reward.api import load_reward

    return load_reward(tiny_reward_fp32, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def tiny_polar_fp32(tiny_checkpoint: Any) -> Path:
    """A tiny POLAR checkpoint (reference-based reward model) stored in fp32."""
    return tiny_checkpoint("polar", seed=5, shards=2, dtype="float32")


@pytest.fixture(scope="session")
def tiny_polar_rm(tiny_polar_fp32: Path) -> Any:
    """The tiny POLAR checkpoint loaded natively: a PolarRewardModel (style read from its
    tokenizer)."""
    from model_zoo.reward.api import load_reward

    return load_reward(tiny_polar_fp32, device="cpu", dtype="float32")


def _rms_norm(x: Any, w: Any, eps: float) -> Any:
    import torch

    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _rotate_half(x: Any) -> Any:
    import torch

    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def reference_hidden(path: Path, ids: Sequence[int]) -> Any:
    """Final hidden states [T, hidden] of one unpadded sequence, from the packed weights.

    Plain torch, written from the architecture description (facts file, sections 3 and 4):
    grouped ``wqkv`` rows (per kv head: G query heads, then its key, then its value), half-split
    rotary embedding without scaling, causal attention, SwiGLU MLP, RMSNorm.
    """
    import torch
    from safetensors.torch import load_file

    cfg = json.loads((path / "config.json").read_text())
    weights: dict[str, Any] = {}
    for file in sorted(path.glob("*.safetensors")):
        weights.update({k: v.float() for k, v in load_file(str(file)).items()})
    h, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d, g, eps = h // nh, nh // nkv, cfg["rms_norm_eps"]
    t = len(ids)
    pos = torch.arange(t, dtype=torch.float64)
    inv = 1.0 / (float(cfg["rope_theta"]) ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    ang = torch.cat([pos[:, None] * inv[None], pos[:, None] * inv[None]], dim=-1)
    cos, sin = ang.cos().float(), ang.sin().float()
    x = weights["model.tok_embeddings.weight"][torch.tensor(list(ids))]
    causal = torch.full((t, t), float("-inf")).triu(1)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        a = _rms_norm(x, weights[p + "attention_norm.weight"], eps)
        qkv = (a @ weights[p + "attention.wqkv.weight"].T).view(t, nkv, g + 2, d)
        q = qkv[:, :, :g].reshape(t, nh, d).transpose(0, 1)  # [nh, t, d], head k*g+j = group k
        k = qkv[:, :, g].transpose(0, 1)  # [nkv, t, d]
        v = qkv[:, :, g + 1].transpose(0, 1)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        k, v = k.repeat_interleave(g, dim=0), v.repeat_interleave(g, dim=0)
        att = torch.softmax(q @ k.transpose(1, 2) / d**0.5 + causal, dim=-1) @ v
        x = x + att.transpose(0, 1).reshape(t, h) @ weights[p + "attention.wo.weight"].T
        m = _rms_norm(x, weights[p + "ffn_norm.weight"], eps)
        gate = torch.nn.functional.silu(m @ weights[p + "feed_forward.w1.weight"].T)
        x = (
            x
            + (gate * (m @ weights[p + "feed_forward.w3.weight"].T))
            @ weights[p + "feed_forward.w2.weight"].T
        )
    return _rms_norm(x, weights["model.norm.weight"], eps)


def reference_score(path: Path, ids: Sequence[int]) -> float:
    """v_head . final hidden state at the last position (where the reward token must be)."""
    from safetensors.torch import load_file

    v_head = None
    for file in path.glob("*.safetensors"):
        tensors = load_file(str(file))
        if "v_head.weight" in tensors:
            v_head = tensors["v_head.weight"].float()
    assert v_head is not None and v_head.shape[0] == 1
    return float(reference_hidden(path, ids)[-1] @ v_head[0])
