"""Pure batching logic for reward scoring: the reward-token rule, length limits, and buckets.

No torch here, so the server, the Ray layer and the tests can plan work without a model.

Why buckets: padding is wasted compute. Sorting by length and cutting buckets under a budget of
*padded* tokens (``longest item x items``) keeps batches dense and bounds peak memory, while the
caller still gets scores back in input order.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputTooLongError, UsageError

#: Padded tokens per forward pass when the caller does not say (fits a 20B model's activations
#: comfortably on one GPU and keeps CPU batches short enough to stay cache-friendly).
DEFAULT_MAX_TOKENS_PER_BATCH = 16384

#: An item shorter than this fraction of its bucket's longest item starts a new bucket.
DEFAULT_MIN_FILL = 0.75


def with_reward_token(ids: Sequence[int], reward_token_id: int) -> list[int]:
    """``ids`` ending in exactly one appended reward token: appended only when not already last."""
    out = list(ids)
    if not out or out[-1] != reward_token_id:
        out.append(reward_token_id)
    return out


def fit_length(ids: list[int], limit: int, *, truncate: bool, index: int) -> list[int]:
    """``ids`` unchanged when within ``limit``; else its last ``limit`` tokens (``truncate``) or an error.

    Truncating from the left keeps the end of the response and the reward token after it, which
    is what the score is read from.
    """
    if len(ids) <= limit:
        return ids
    if not truncate:
        raise InputTooLongError(index, len(ids), limit)
    return ids[len(ids) - limit :]


def prepare_ids(
    batch: Sequence[Sequence[int]], *, reward_token_id: int, limit: int, truncate: bool
) -> list[list[int]]:
    """The reward-token rule and the length limit applied to every sequence of a batch."""
    out = []
    for i, ids in enumerate(batch):
        if isinstance(ids, (str, bytes)):
            raise UsageError(f"input {i} must be a list of token ids, got a string; use score_text for text")
        out.append(fit_length(with_reward_token(ids, reward_token_id), limit, truncate=truncate, index=i))
    return out


def plan_buckets(
    lengths: Sequence[int],
    *,
    max_tokens: int | None = None,
    max_items: int | None = None,
    min_fill: float = DEFAULT_MIN_FILL,
) -> list[list[int]]:
    """Indices of ``lengths`` grouped into buckets, longest first, each under the padded-token budget.

    A bucket holds at most ``max_items`` items and at most ``max_tokens`` padded tokens
    (its longest item times its size); an item longer than the budget on its own gets a bucket
    of its own rather than failing. An item shorter than ``min_fill`` of its bucket's longest
    starts a new bucket, so no item is more than ``1 - min_fill`` padding (compute spent on
    padding is wasted, and a few extra forward passes cost less than padding a long tail).
    Longest first, so a batch that does not fit in memory fails on the first pass, not the last.
    """
    budget = DEFAULT_MAX_TOKENS_PER_BATCH if max_tokens is None else max_tokens
    if budget < 1 or (max_items is not None and max_items < 1):
        raise UsageError("max_tokens_per_batch and batch_size must be at least 1")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    buckets: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        full = max_items is not None and len(current) >= max_items
        sparse = lengths[i] < min_fill * longest
        if current and (full or sparse or longest * (len(current) + 1) > budget):
            buckets.append(current)
            current = []
        if not current:
            longest = max(lengths[i], 1)
        current.append(i)
    if current:
        buckets.append(current)
    return buckets


def split_for_workers(lengths: Sequence[int], workers: int) -> list[list[int]]:
    """Indices dealt to ``workers`` so each gets about the same number of tokens.

    Longest first, each to the worker with the fewest tokens so far (greedy balancing); each
    worker then buckets its share itself. Workers with nothing to do get an empty list.
    """
    shares: list[list[int]] = [[] for _ in range(max(workers, 1))]
    load = [0] * len(shares)
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        w = min(range(len(shares)), key=lambda k: (load[k], k))
        shares[w].append(i)
        load[w] += lengths[i]
    return shares
