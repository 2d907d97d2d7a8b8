"""The two seams a RewardModel is built from, so each can be swapped independently.

``Scorer`` turns final token-id sequences into scores (one process with torch, or a pool of Ray
actors). ``ChatCodec`` turns conversations and text into token ids (the checkpoint's tokenizer and
chat template). The server, the Ray layer and the adapters only ever talk to these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..runner.messages import Conversation


@runtime_checkable
class Scorer(Protocol):
    """Scores sequences that already end in the reward token and fit the model's length."""

    def score_ids(
        self,
        batch: Sequence[Sequence[int]],
        *,
        batch_size: int | None = None,
        max_tokens_per_batch: int | None = None,
    ) -> list[float]:
        """One score per sequence, in input order."""
        ...


@runtime_checkable
class ChatCodec(Protocol):
    """The checkpoint's chat template and tokenizer, as the reward recipe uses them."""

    def render(self, conversation: Conversation) -> str:
        """The conversation through the chat template, without a generation prompt."""
        ...

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without added special tokens (special tokens in the text kept
        whole)."""
        ...
