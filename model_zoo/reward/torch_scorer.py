"""The single-process Scorer: a decoder backbone plus the ``v_head``, run in length buckets.

Right padding with an attention mask leaves every real position's hidden state unchanged under
causal attention, so a sequence scores the same alone or in any batch; the score is read at each
sequence's own last real position (where the reward token is).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .batching import plan_buckets

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: ``backbone(input_ids, attention_mask) -> final hidden states [batch, time, hidden]``
Backbone = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


class TorchScorer:
    """Scores token-id sequences with ``v_head(final_hidden[last real position])``."""

    def __init__(
        self,
        backbone: Backbone,
        v_head: torch.Tensor,
        *,
        pad_token_id: int,
        device: torch.device | str,
        max_tokens_per_batch: int | None = None,
        runner: Any = None,
    ) -> None:
        self.runner = runner  # the loaded model behind ``backbone``, for callers that need it
        self.backbone = backbone
        self.v_head = v_head.detach().reshape(-1)  # [hidden]
        self.pad_token_id = pad_token_id
        self.device = device
        self.max_tokens_per_batch = max_tokens_per_batch
        self.forward_passes = 0  # how many batches went through the model (tests, benchmarks)

    def score_ids(
        self,
        batch: Sequence[Sequence[int]],
        *,
        batch_size: int | None = None,
        max_tokens_per_batch: int | None = None,
    ) -> list[float]:
        import torch

        lengths = [len(ids) for ids in batch]
        budget = max_tokens_per_batch if max_tokens_per_batch is not None else self.max_tokens_per_batch
        scores: list[float] = [0.0] * len(batch)
        with torch.inference_mode():
            for bucket in plan_buckets(lengths, max_tokens=budget, max_items=batch_size):
                values = self._forward([batch[i] for i in bucket])
                for i, value in zip(bucket, values):
                    scores[i] = value
        return scores

    def _forward(self, seqs: list[Sequence[int]]) -> list[float]:
        import torch

        longest = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), longest), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), longest), dtype=torch.long)
        for row, seq in enumerate(seqs):
            ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
            mask[row, : len(seq)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        hidden = self.backbone(ids, mask)
        last = mask.sum(dim=1) - 1
        at_reward = hidden[torch.arange(len(seqs), device=hidden.device), last]
        self.forward_passes += 1
        out = at_reward @ self.v_head.to(device=at_reward.device, dtype=at_reward.dtype)
        return [float(x) for x in out.float().cpu()]
