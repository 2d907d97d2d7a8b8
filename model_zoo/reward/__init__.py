"""Reward scoring for RLHF with InternLM2-Reward (conversations) and POLAR (reference-based).

Start with ``model_zoo.load_reward(name_or_path) -> RewardModel`` (``api``). The pieces:

- ``model``: ``RewardModel`` (score, score_batch, score_text, score_ids, compare, rank, order,
  best_of) over two seams (``protocols``): a ``Scorer`` for token ids and a ``ChatCodec``.
- ``polar``: POLAR's recipe (``{prompt, reference, output}`` -> text, truncation rules in
  ``PolarOptions``, pure Python) and ``PolarRewardModel``, the same scorer behind that API.
- ``batching``: the reward-token rule, length limits and length buckets (pure, no torch).
- ``torch_scorer``: the single-process scorer (decoder backbone + ``v_head``).
- ``ray``: the same RewardModel backed by N replicas on Ray (optional extra).
- ``adapters``: TRL and OpenRLHF reward functions, and clients of the reward server.

The HTTP server lives in ``model_zoo.server``. Nothing here imports torch at import time.
"""
