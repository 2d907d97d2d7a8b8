"""The single-process Scorer: a decoder backbone plus the ``v_head``, run in length buckets.

Right padding with an attention mask leaves every real position's hidden state unchanged under
causal attention, so a sequence scores the same alone or in any batch; the score is read at each
sequence's own last real position (where the reward token is).

When the runner offers ``last_hidden`` (a single-device SDPA model: ``runner.unpadded``), the
pass skips padding altogether: projections and MLPs run on real tokens only and the last layer
only at each final position, so small, mixed-length batches (a reward server's) cost about what
their tokens cost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .batching import plan_buckets

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: ``backbone(input_ids, attention_mask) -> final hidden states [batch, time, hidden]``
Backbone = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
#: ``last_hidden(sequences) -> final hidden state at each sequence's last token [batch, hidden]``
LastHidden = Callable[[list[Sequence[int]]], "torch.Tensor"]


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
        last_hidden: LastHidden | None = None,
    ) -> None:
        self.runner = runner  # the loaded model behind ``backbone``, for callers that need it
        self.backbone = backbone
        self.last_hidden = last_hidden
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
        budget = (
            max_tokens_per_batch if max_tokens_per_batch is not None else self.max_tokens_per_batch
        )
        scores: list[float] = [0.0] * len(batch)
        with torch.inference_mode():
            for bucket in plan_buckets(lengths, max_tokens=budget, max_items=batch_size):
                values = self._forward([batch[i] for i in bucket])
                for i, value in zip(bucket, values, strict=True):
                    scores[i] = value
        return scores

    def _forward(self, seqs: list[Sequence[int]]) -> list[float]:
        at_reward = (
            self.last_hidden(seqs)
            if self.last_hidden is not None
            else self._padded_last_hidden(seqs)
        )
        self.forward_passes += 1
        out = at_reward @ self.v_head.to(device=at_reward.device, dtype=at_reward.dtype)
        return [float(x) for x in out.float().cpu()]

    def _padded_last_hidden(self, seqs: list[Sequence[int]]) -> torch.Tensor:
        import torch

        from ..runner.unpadded import right_pad

        ids, mask = right_pad(seqs, self.pad_token_id)
        ids, mask = ids.to(self.device), mask.to(self.device)
        hidden = self.backbone(ids, mask)
        last = mask.sum(dim=1) - 1
        return hidden[torch.arange(len(seqs), device=hidden.device), last]
