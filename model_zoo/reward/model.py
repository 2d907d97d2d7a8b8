"""``RewardModel``: the reward recipe (template, tokens, reward token, limits) over any Scorer.

The recipe matches InternLM2-Reward's own: render the conversation with the chat template
without a generation prompt, tokenize without added special tokens, append the reward token
when it is not already last, and read ``v_head`` at that last real token.

About ``rank``: upstream's ``rank(tokenizer, conversations)`` returns conversation *indices*
ordered best-first (an argsort of the scores, descending), although its model card calls the
result each conversation's rank. Here :meth:`RewardModel.rank` returns each conversation's rank
(``0`` = best) and :meth:`RewardModel.order` returns upstream's best-first indices. The two are
inverse permutations: ``rank[order[k]] == k`` and ``order[rank[i]] == i``; they coincide for two
conversations (and whenever the permutation is its own inverse), which is why the difference
goes unnoticed in two-way examples. Ties keep input order (the earlier conversation ranks better).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from ..errors import ScoringStyleError, UsageError
from ..runner.messages import Conversation, check_conversation, check_conversations, check_texts
from .batching import prepare_ids
from .protocols import ChatCodec, Scorer

#: Keys that mark a reference-based input ({"prompt", "reference", "output"}), not a conversation.
_REFERENCE_KEYS = frozenset({"prompt", "reference", "output"})


class RewardModel:
    """Scores conversations for RLHF: one at a time, batched, compared, ranked or best-of-N.

    ``scoring_style`` says what its inputs are: ``conversation`` here; ``reference-based`` for
    :class:`~model_zoo.reward.polar.PolarRewardModel`. Each refuses the other's inputs with
    :class:`~model_zoo.errors.ScoringStyleError`.
    """

    scoring_style: ClassVar[str] = "conversation"

    def __init__(
        self,
        scorer: Scorer,
        codec: ChatCodec,
        *,
        reward_token_id: int,
        max_length: int,
        pad_token_id: int | None = None,
        name: str = "reward-model",
        truncate: bool = False,
        vocab_size: int | None = None,
    ) -> None:
        if max_length < 1:
            raise UsageError(f"max_length must be at least 1, got {max_length}")
        self.scorer = scorer
        self.codec = codec
        self.reward_token_id = reward_token_id
        self.max_length = max_length
        self.pad_token_id = pad_token_id
        self.name = name
        self.truncate = truncate  # default for every call that does not say
        self.vocab_size = vocab_size  # token ids must lie in [0, vocab_size) when known

    def close(self) -> None:
        """Release the scorer's resources (a Ray pool's actors); a no-op for a local model."""
        close = getattr(self.scorer, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> RewardModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"RewardModel(name={self.name!r}, reward_token_id={self.reward_token_id}, "
            f"max_length={self.max_length})"
        )

    # ------------------------------------------------------------------ encoding (no model run)

    def encode_conversations(
        self,
        conversations: Sequence[Conversation],
        *,
        truncate: bool | None = None,
        max_length: int | None = None,
    ) -> list[list[int]]:
        """Token ids exactly as the model scores them (reward token last, within the length limit).

        ``max_length`` lowers the limit below the model's own (the server's per-item limit).
        """
        self._refuse_reference_inputs(conversations)
        convs = check_conversations(conversations)
        raw = [self.codec.encode(self.codec.render(conv)) for conv in convs]
        return self._finish(raw, truncate, max_length)

    def encode_texts(
        self,
        texts: Sequence[str],
        *,
        truncate: bool | None = None,
        max_length: int | None = None,
        strip_pad: bool = False,
    ) -> list[list[int]]:
        """Token ids of already-templated texts (special tokens in the text kept whole).

        ``strip_pad`` drops pad tokens at both ends first: RLHF frameworks decode left-padded
        batches without skipping special tokens, so their queries can start or end with pads.
        """
        raw = [self.codec.encode(text) for text in check_texts(texts)]
        if strip_pad and self.pad_token_id is not None:
            raw = [_strip(ids, self.pad_token_id) for ids in raw]
        return self._finish(raw, truncate, max_length)

    def prepare_ids(
        self, batch: Sequence[Sequence[int]], *, truncate: bool | None = None
    ) -> list[list[int]]:
        """The reward-token rule and the length limit applied to raw token ids."""
        out = self._finish(batch, truncate)
        if self.vocab_size is not None:
            check_vocabulary(out, self.vocab_size)
        return out

    def _finish(
        self, raw: Sequence[Sequence[int]], truncate: bool | None, max_length: int | None = None
    ) -> list[list[int]]:
        return prepare_ids(
            raw,
            reward_token_id=self.reward_token_id,
            limit=self.max_length if max_length is None else min(max_length, self.max_length),
            truncate=self.truncate if truncate is None else truncate,
        )

    # ------------------------------------------------------------------ scoring

    def score(
        self,
        conversation: Conversation | None = None,
        *,
        prompt: Any = None,
        reference: Any = None,
        output: Any = None,
        truncate: bool | None = None,
    ) -> float:
        """The reward of one conversation.

        ``prompt``/``reference``/``output`` belong to reference-based models; given here they
        raise :class:`ScoringStyleError` rather than a bare TypeError.
        """
        if reference is not None or prompt is not None or output is not None:
            raise self._reference_given()
        self._refuse_reference_inputs([conversation])
        return self.score_batch([check_conversation(conversation)], truncate=truncate)[0]

    def score_batch(
        self,
        conversations: Sequence[Conversation],
        *,
        batch_size: int | None = None,
        max_tokens_per_batch: int | None = None,
        truncate: bool | None = None,
    ) -> list[float]:
        """Rewards of many conversations, in input order, computed in length-sorted buckets.

        ``batch_size`` caps conversations per forward pass; ``max_tokens_per_batch`` caps padded
        tokens per forward pass (the scorer's default when ``None``).
        """
        ids = self.encode_conversations(conversations, truncate=truncate)
        return self._run(ids, batch_size, max_tokens_per_batch)

    def score_text(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        max_tokens_per_batch: int | None = None,
        truncate: bool | None = None,
        strip_pad: bool = False,
    ) -> list[float]:
        """Rewards of already-templated strings (prompt and response rendered by the caller)."""
        ids = self.encode_texts(texts, truncate=truncate, strip_pad=strip_pad)
        return self._run(ids, batch_size, max_tokens_per_batch)

    def score_ids(
        self,
        batch: Sequence[Sequence[int]],
        *,
        batch_size: int | None = None,
        max_tokens_per_batch: int | None = None,
        truncate: bool | None = None,
    ) -> list[float]:
        """Rewards of token-id sequences; the reward token is appended where it is not last."""
        return self._run(
            self.prepare_ids(batch, truncate=truncate), batch_size, max_tokens_per_batch
        )

    def _reference_given(self) -> ScoringStyleError:
        return ScoringStyleError(self.name, self.scoring_style, "reference-based")

    def _refuse_reference_inputs(self, values: Any) -> None:
        """Refuse ``{"prompt", "reference", "output"}`` inputs: they are the other scoring style."""
        if (
            isinstance(values, Sequence)
            and not isinstance(values, (str, bytes))
            and any(isinstance(v, Mapping) and _REFERENCE_KEYS & set(v) for v in values)
        ):
            raise self._reference_given()

    def _run(
        self, ids: list[list[int]], batch_size: int | None, max_tokens: int | None
    ) -> list[float]:
        if not ids:
            return []
        return score_unique(
            ids,
            lambda batch: self.scorer.score_ids(
                batch, batch_size=batch_size, max_tokens_per_batch=max_tokens
            ),
        )

    # ------------------------------------------------------------------ decisions on scores

    def compare(self, a: Conversation, b: Conversation, **kw: Any) -> bool:
        """Whether ``a`` scores strictly higher than ``b`` (upstream's ``compare``)."""
        sa, sb = self.score_batch([a, b], **kw)
        return sa > sb

    def rank(
        self,
        conversations: Sequence[Conversation],
        reference: Any = None,
        outputs: Any = None,
        **kw: Any,
    ) -> list[int]:
        """Each conversation's rank, 0 = best. The inverse of :meth:`order` (see the module doc).

        ``reference``/``outputs`` (reference-based models' ``rank(prompt, reference, outputs)``)
        raise :class:`ScoringStyleError` here.
        """
        self._refuse_reference_args(reference, outputs)
        return ranks_from_scores(self.score_batch(conversations, **kw))

    def order(
        self,
        conversations: Sequence[Conversation],
        reference: Any = None,
        outputs: Any = None,
        **kw: Any,
    ) -> list[int]:
        """Conversation indices best-first: what upstream's ``rank`` returns."""
        self._refuse_reference_args(reference, outputs)
        return order_from_scores(self.score_batch(conversations, **kw))

    def best_of(
        self,
        conversations: Sequence[Conversation],
        reference: Any = None,
        outputs: Any = None,
        **kw: Any,
    ) -> int:
        """Index of the best-scoring conversation (the first one on a tie)."""
        self._refuse_reference_args(reference, outputs)
        if not conversations:
            raise UsageError("best_of needs at least one conversation")
        return order_from_scores(self.score_batch(conversations, **kw))[0]

    def _refuse_reference_args(self, reference: Any, outputs: Any) -> None:
        if reference is not None or outputs is not None:
            raise self._reference_given()


def score_unique(
    ids: Sequence[Sequence[int]], score: Callable[[list[list[int]]], list[float]]
) -> list[float]:
    """Score each distinct sequence once and give every copy that score.

    Why: a batched forward pass can differ in the last bits between rows, so two copies of one
    conversation could score 1e-7 apart, and ``compare(x, x)`` or a tie in ``rank`` would then
    be decided by noise instead of by input order.
    """
    distinct, where = unique_sequences(ids)
    if len(distinct) == len(where):
        return score(distinct)
    scores = score(distinct)
    return [scores[i] for i in where]


def unique_sequences(ids: Sequence[Sequence[int]]) -> tuple[list[list[int]], list[int]]:
    """``(distinct, where)``: each distinct sequence once, and for every input its index in it."""
    slots: dict[tuple[int, ...], int] = {}
    where = [slots.setdefault(tuple(seq), len(slots)) for seq in ids]
    return [list(seq) for seq in slots], where


def check_vocabulary(batch: Sequence[Sequence[int]], vocab_size: int) -> None:
    """Refuse a token id the embedding has no row for (torch would fail with "index out of range
    in self")."""
    for i, ids in enumerate(batch):
        if ids and (min(ids) < 0 or max(ids) >= vocab_size):
            bad = next(t for t in ids if not 0 <= t < vocab_size)
            raise UsageError(
                f"input {i} holds token id {bad}, outside the vocabulary of this model "
                f"(0 to {vocab_size - 1}); encode text with the model's own tokenizer, or use "
                "score_text"
            )


def check_positive(**values: int | None) -> None:
    """Refuse a size limit below 1 before any model loads (``None`` means "the default")."""
    for name, value in values.items():
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")


def order_from_scores(scores: Sequence[float]) -> list[int]:
    """Indices sorted by score, highest first; ties keep input order."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def ranks_from_scores(scores: Sequence[float]) -> list[int]:
    """Each index's position in :func:`order_from_scores` (0 = best)."""
    ranks = [0] * len(scores)
    for position, index in enumerate(order_from_scores(scores)):
        ranks[index] = position
    return ranks


def _strip(ids: list[int], pad: int) -> list[int]:
    start, end = 0, len(ids)
    while start < end and ids[start] == pad:
        start += 1
    while end > start and ids[end - 1] == pad:
        end -= 1
    return ids[start:end]
