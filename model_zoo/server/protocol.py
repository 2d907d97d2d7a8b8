"""The reward server's wire protocol: limits, JSON errors, and one function per route.

Kept apart from the HTTP plumbing so every route reads as ``dict in -> dict out``: a route
either answers at once or returns :class:`NeedsScores` (the token ids to score, and how to turn
their scores into the answer), so the event loop never blocks on the model. Every refusal is an :class:`HTTPError` with a JSON body that names the
field or the limit; nothing a client sends can turn into a 500.

Routes (all JSON):

- ``POST /get_reward`` (OpenRLHF ``--reward.remote_url``, formerly ``--remote_rm_url``): ``{"query": [str], "prompts": [str]?,
  "labels": [...]?}`` -> ``{"rewards": [float], "scores": [float], "extra_logs": {"num_tokens": [int]}}``.
  A query is already-templated prompt+response text; pad tokens at either end are dropped.
- ``POST /v1/score``: ``{"conversations": [[message]]}`` or ``{"texts": [str]}`` -> ``{"scores": [float]}``.
- ``POST /v1/compare``: ``{"a": [message], "b": [message]}`` -> ``{"a_better": bool, "scores": [a, b]}``.
- ``POST /v1/rank``: ``{"conversations": [[message]]}`` -> ``{"ranks", "order", "best", "scores"}``
  where ``ranks[i]`` is conversation i's rank (0 = best) and ``order`` lists indices best-first.
- ``GET /health``, ``GET /v1/models``.
- vLLM's and LMDeploy's ``POST /pooling`` and SGLang's ``POST /classify``: see ``runtimes.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InputTooLongError, InvalidConversationError
from ..reward.conversation import check_conversation, check_conversations, check_texts
from ..reward.model import RewardModel, order_from_scores, ranks_from_scores, unique_sequences

JSON = dict[str, Any]
Body = JSON | list[JSON]  # an answer's JSON body: an object, or a list (SGLang's /classify)


@dataclass(frozen=True)
class ServerLimits:
    """What one request may ask for. Over a limit: 413 (or 429 for the queue), naming the limit."""

    max_request_bytes: int = 8 * 1024 * 1024
    max_items_per_request: int = 1024
    max_tokens_per_item: int | None = None  # None: the model's own max_length
    max_queue: int = 4096  # items waiting for the scheduler, over all requests


class HTTPError(Exception):
    """A refusal with a status and a JSON body: ``{"error": {"type", "message", ...}}``."""

    def __init__(self, status: int, kind: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.details = details
        self.headers: dict[str, str] = {}

    def body(self) -> JSON:
        return {"error": {"type": self.kind, "message": self.message, **self.details}}


def bad_request(field: str, message: str) -> HTTPError:
    return HTTPError(400, "invalid_request", f"{field}: {message}", field=field)


def over_limit(
    limit: str, value: int, maximum: int, what: str, *, status: int = 413, advice: str = "", **extra: Any
) -> HTTPError:
    """A 413 (or ``status``) naming the limit; ``advice`` says what the client can do about it."""
    return HTTPError(
        status,
        "limit_exceeded",
        f"{what}: {value}, over the server's {limit} of {maximum}" + (f"; {advice}" if advice else ""),
        limit=limit,
        value=value,
        max=maximum,
        **extra,
    )


class NeedsScores:
    """A route's answer once ``ids`` are scored: ``finish(scores)`` gives the JSON body.

    Copies of one sequence in a request are scored once and share that score (see
    ``score_unique``); ``ids`` holds the distinct sequences, ``finish`` takes their scores.
    """

    def __init__(self, ids: list[list[int]], finish: Callable[[list[float]], Body]) -> None:
        self.ids, where = unique_sequences(ids)
        self._where = where
        self._finish = finish

    def finish(self, scores: list[float]) -> Body:
        per_item = [scores[i] for i in self._where]
        bad = [i for i, x in enumerate(per_item) if not math.isfinite(x)]
        if bad:  # JSON has no NaN/inf, and a NaN reward would poison a training run unnoticed
            raise HTTPError(500, "non_finite_score",
                            f"the model produced {per_item[bad[0]]} for item {bad[0]} ({len(bad)} of "
                            f"{len(per_item)} items): an fp16 overflow is the usual cause; serve the model "
                            "in bfloat16 or float32 (--dtype)", items=bad[:100])
        return self._finish(per_item)


Answer = JSON | NeedsScores

ITEMS_ADVICE = "split the list over several requests"


class Routes:
    """The route functions, bound to one model and the server's limits."""

    def __init__(self, rm: RewardModel, limits: ServerLimits, *, truncate: bool = False) -> None:
        self.rm = rm
        self.limits = limits
        self.truncate = truncate
        per_item = limits.max_tokens_per_item
        self.max_tokens = rm.max_length if per_item is None else min(per_item, rm.max_length)

    # ------------------------------------------------------------------ field checks

    def _items(self, body: JSON, key: str, check: Callable[[Any, str], Any]) -> Any:
        if key not in body:
            raise bad_request(key, "is required")
        value = body[key]
        if isinstance(value, list) and len(value) > self.limits.max_items_per_request:
            raise over_limit(
                "max_items_per_request", len(value), self.limits.max_items_per_request, f"items in {key}",
                advice=ITEMS_ADVICE,
            )
        try:
            items = check(value, key)
        except InvalidConversationError as exc:
            raise bad_request(exc.fields["field"], exc.fields["detail"]) from None
        if not items:
            raise bad_request(key, "must not be empty")
        return items

    def _encode(
        self,
        encode: Callable[..., list[list[int]]],
        items: Any,
        field: str,
        *,
        single: bool = False,
        max_length: int | None = None,
        truncate: bool | None = None,
        advice: str = "",
        **kw: Any,
    ) -> list[list[int]]:
        """``encode(items, ...)`` under the per-item token limit; over it, a 413 naming the item.

        ``max_length`` / ``truncate`` narrow the server's own settings for one request (vLLM's
        ``truncate_prompt_tokens``); ``advice`` adds the route's own way out of the limit.
        """
        limit = self.max_tokens if max_length is None else min(max_length, self.max_tokens)
        cut = self.truncate if truncate is None else truncate
        try:
            return encode(items, truncate=cut, max_length=limit, **kw)
        except InputTooLongError as exc:
            where = field if single else f"{field}[{exc.fields['index']}]"
            advice = f"shorten it{advice}, or serve with --truncate to keep the last {limit} tokens (reward token last)"
            raise over_limit(
                "max_tokens_per_item", exc.fields["tokens"], limit, f"tokens in {where}", field=where, advice=advice
            ) from None

    def _conversation_ids(self, body: JSON, key: str) -> list[list[int]]:
        convs = self._items(body, key, check_conversations)
        return self._encode(self.rm.encode_conversations, convs, key)

    # ------------------------------------------------------------------ routes

    def get_reward(self, body: JSON) -> Answer:
        texts = self._items(body, "query", check_texts)
        for key in ("prompts", "labels"):
            if body.get(key) is not None and not isinstance(body[key], list):
                raise bad_request(key, f"must be a list when given, got {type(body[key]).__name__}")
        ids = self._encode(self.rm.encode_texts, texts, "query", strip_pad=True)
        lengths = [len(x) for x in ids]
        return NeedsScores(ids, lambda scores: {"rewards": scores, "scores": scores,
                                                "extra_logs": {"num_tokens": lengths}})

    def score_route(self, body: JSON) -> Answer:
        has_conv, has_text = "conversations" in body, "texts" in body
        if has_conv == has_text:
            raise bad_request("conversations", 'give exactly one of "conversations" or "texts"')
        if has_text:
            texts = self._items(body, "texts", check_texts)
            ids = self._encode(self.rm.encode_texts, texts, "texts")
        else:
            ids = self._conversation_ids(body, "conversations")
        return NeedsScores(ids, lambda scores: {"scores": scores})

    def compare(self, body: JSON) -> Answer:
        convs = []
        for key in ("a", "b"):
            if key not in body:
                raise bad_request(key, "is required")
            try:
                convs.append(check_conversation(body[key], key))
            except InvalidConversationError as exc:
                raise bad_request(exc.fields["field"], exc.fields["detail"]) from None
        ids = []
        for key, conv in zip(("a", "b"), convs):
            ids += self._encode(self.rm.encode_conversations, [conv], key, single=True)
        return NeedsScores(ids, lambda scores: {"a_better": scores[0] > scores[1], "scores": scores})

    def rank(self, body: JSON) -> Answer:
        def ranked(scores: list[float]) -> JSON:
            order = order_from_scores(scores)
            return {"ranks": ranks_from_scores(scores), "order": order, "best": order[0], "scores": scores}

        return NeedsScores(self._conversation_ids(body, "conversations"), ranked)

    def models(self) -> JSON:
        return {
            "object": "list",
            "data": [
                {
                    "id": self.rm.name,
                    "object": "model",
                    "owned_by": "model-zoo",
                    "max_tokens_per_item": self.max_tokens,
                    "reward_token_id": self.rm.reward_token_id,
                }
            ],
        }

    def post_routes(self) -> dict[str, Callable[[JSON], Answer]]:
        return {
            "/get_reward": self.get_reward,
            "/v1/score": self.score_route,
            "/v1/compare": self.compare,
            "/v1/rank": self.rank,
        }
