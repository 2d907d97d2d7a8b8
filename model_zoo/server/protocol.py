"""The reward server's wire protocol: limits, JSON errors, and one function per route.

Kept apart from the HTTP plumbing so every route reads as ``dict in -> dict out``: a route
either answers at once or returns :class:`NeedsScores` (the token ids to score, and how to turn
their scores into the answer), so the event loop never blocks on the model. Every refusal is an
:class:`HTTPError` with a JSON body that names the field or the limit; nothing a client sends
can turn into a 500.

Routes (all JSON):

- ``POST /get_reward`` (OpenRLHF ``--reward.remote_url``, formerly ``--remote_rm_url``):
  ``{"query": [str], "prompts": [str]?, "labels": [...]?}`` ->
  ``{"rewards": [float], "scores": [float], "extra_logs": {"num_tokens": [int]}}``.
  A query is already-templated prompt+response text; pad tokens at either end are dropped.
- ``POST /v1/score``: ``{"conversations": [[message]]}`` or ``{"texts": [str]}`` ->
  ``{"scores": [float]}``.
- ``POST /v1/compare``: ``{"a": [message], "b": [message]}`` ->
  ``{"a_better": bool, "scores": [a, b]}``.
- ``POST /v1/rank``: ``{"conversations": [[message]]}`` -> ``{"ranks", "order", "best", "scores"}``
  where ``ranks[i]`` is conversation i's rank (0 = best) and ``order`` lists indices best-first.

A reference-based model (POLAR, ``scoring_style == "reference-based"``) takes the other style's
inputs, as its Python API does: ``/v1/score`` ``{"inputs": [{"prompt", "reference", "output"}]}``
(also under ``"conversations"``), ``/v1/compare`` ``{"a": input, "b": input}``, ``/v1/rank``
``{"prompt", "reference", "outputs": [...]}``, and ``/get_reward`` scores the response that
follows ``prompts[i]`` in ``query[i]`` against the reference answer ``labels[i]`` (how OpenRLHF
sends a dataset's label). Conversations given to it, or a reference given to a conversation
model, are a 400 that says what to send.
- ``GET /health``, ``GET /v1/models``.
- vLLM's and LMDeploy's ``POST /pooling`` and SGLang's ``POST /classify``: see ``runtimes.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InputTooLongError, InvalidConversationError, UsageError
from ..reward.model import RewardModel, order_from_scores, ranks_from_scores, unique_sequences
from ..runner.messages import check_conversation, check_conversations, check_texts

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
    limit: str,
    value: int,
    maximum: int,
    what: str,
    *,
    status: int = 413,
    advice: str = "",
    **extra: Any,
) -> HTTPError:
    """A 413 (or ``status``) naming the limit; ``advice`` says what the client can do about it."""
    return HTTPError(
        status,
        "limit_exceeded",
        f"{what}: {value}, over the server's {limit} of {maximum}"
        + (f"; {advice}" if advice else ""),
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
            raise HTTPError(
                500,
                "non_finite_score",
                f"the model produced {per_item[bad[0]]} for item {bad[0]} ({len(bad)} of "
                f"{len(per_item)} items): an fp16 overflow is the usual cause; serve the model "
                "in bfloat16 or float32 (--dtype)",
                items=bad[:100],
            )
        return self._finish(per_item)


Answer = JSON | NeedsScores

ITEMS_ADVICE = "split the list over several requests"
REFERENCE_BASED = (
    "reference-based"  # a reward model's scoring style: POLAR's (RewardModel.scoring_style)
)


class Routes:
    """The route functions, bound to one model and the server's limits."""

    def __init__(self, rm: RewardModel, limits: ServerLimits, *, truncate: bool = False) -> None:
        self.rm = rm
        self.limits = limits
        self.truncate = truncate
        per_item = limits.max_tokens_per_item
        self.max_tokens = rm.max_length if per_item is None else min(per_item, rm.max_length)
        self.style = str(getattr(rm, "scoring_style", "conversation"))

    @property
    def reference_based(self) -> bool:
        """The model scores ``{prompt, reference, output}`` (POLAR), not conversations."""
        return self.style == REFERENCE_BASED

    # ------------------------------------------------------------------ field checks

    def _items(self, body: JSON, key: str, check: Callable[[Any, str], Any]) -> Any:
        if key not in body:
            raise bad_request(key, "is required")
        value = body[key]
        if isinstance(value, list) and len(value) > self.limits.max_items_per_request:
            raise over_limit(
                "max_items_per_request",
                len(value),
                self.limits.max_items_per_request,
                f"items in {key}",
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
        rename: Callable[[str], str] | None = None,
        **kw: Any,
    ) -> list[list[int]]:
        """``encode(items, ...)`` under the per-item token limit; over it, a 413 naming the item.

        ``max_length`` / ``truncate`` narrow the server's own settings for one request (vLLM's
        ``truncate_prompt_tokens``); ``advice`` adds the route's own way out of the limit.
        A malformed item is a 400 naming its field (``rename`` maps the model's field names to the
        request's); any other refusal of the model (a conversation for POLAR) a 400 saying why.
        """
        limit = self.max_tokens if max_length is None else min(max_length, self.max_tokens)
        cut = self.truncate if truncate is None else truncate
        try:
            return encode(items, truncate=cut, max_length=limit, **kw)
        except InputTooLongError as exc:
            where = field if single else f"{field}[{exc.fields['index']}]"
            advice = (
                f"shorten it{advice}, or serve with --truncate to keep the last {limit} tokens "
                "(reward token last)"
            )
            raise over_limit(
                "max_tokens_per_item",
                exc.fields["tokens"],
                limit,
                f"tokens in {where}",
                field=where,
                advice=advice,
            ) from None
        except InvalidConversationError as exc:
            where = exc.fields["field"]
            raise bad_request(
                rename(where) if rename is not None else where, exc.fields["detail"]
            ) from None
        except UsageError as exc:
            raise HTTPError(400, "invalid_request", str(exc), field=field) from None

    def _conversation_ids(self, body: JSON, key: str) -> list[list[int]]:
        if self.reference_based:
            raise bad_request(
                key,
                f"{self.rm.name} is a reference-based reward model (POLAR): it scores an output "
                'against a reference answer, not a conversation; send {"inputs": [{"prompt", '
                '"reference", "output"}]} to /v1/score, {"prompt", "reference", "outputs"} to '
                "/v1/rank, or the text POLAR's client builds to /pooling",
            )
        convs = self._items(body, key, check_conversations)
        return self._encode(self.rm.encode_conversations, convs, key)

    # ------------------------------------------------------------------ routes

    def get_reward(self, body: JSON) -> Answer:
        texts = self._items(body, "query", check_texts)
        for key in ("prompts", "labels"):
            if body.get(key) is not None and not isinstance(body[key], list):
                raise bad_request(key, f"must be a list when given, got {type(body[key]).__name__}")
        if self.reference_based:
            ids = self._openrlhf_reference_ids(body, texts)
        else:
            ids = self._encode(self.rm.encode_texts, texts, "query", strip_pad=True)
        lengths = [len(x) for x in ids]
        return NeedsScores(
            ids,
            lambda scores: {
                "rewards": scores,
                "scores": scores,
                "extra_logs": {"num_tokens": lengths},
            },
        )

    def score_route(self, body: JSON) -> Answer:
        given = [key for key in ("conversations", "texts", "inputs") if key in body]
        if len(given) != 1:
            raise bad_request(
                "conversations", 'give exactly one of "conversations", "texts" or "inputs"'
            )
        key = given[0]
        if key == "texts":
            texts = self._items(body, "texts", check_texts)
            ids = self._encode(self.rm.encode_texts, texts, "texts")
        elif key == "inputs" or (self.reference_based and _objects(body["conversations"])):
            # reference-based inputs; under "conversations" too, as score_batch takes them
            ids = self._reference_ids(self._items(body, key, _check_list), key)
        else:
            ids = self._conversation_ids(body, "conversations")
        return NeedsScores(ids, lambda scores: {"scores": scores})

    # ------------------------------------------------------------------ reference-based (POLAR)

    def _reference_ids(
        self, items: list[Any], key: str, rename: Callable[[str], str] | None = None
    ) -> list[list[int]]:
        """Token ids of ``{prompt, reference, output}`` items through the model's own recipe."""
        if not self.reference_based:
            raise bad_request(
                key,
                f"{self.rm.name} scores conversations and takes no reference answer; send "
                '"conversations" (lists of {"role", "content"} messages) or "texts"',
            )
        if key != "inputs" and rename is None:
            rename = _renamed(key)
        return self._encode(self.rm.encode_inputs, items, key, rename=rename)  # type: ignore[attr-defined]

    def _openrlhf_reference_ids(self, body: JSON, texts: list[str]) -> list[list[int]]:
        """OpenRLHF's request for a reference-based model: the response is what follows
        ``prompts[i]`` in ``query[i]``, and the reference answer arrives as ``labels[i]``."""

        def per_query(key: str) -> list[Any]:
            value = body.get(key)  # a list when given: get_reward checked
            if value is None:
                raise bad_request(
                    key,
                    f"is required: {self.rm.name} is a reference-based reward model, which scores "
                    "the response against a reference answer (OpenRLHF sends the prompt in prompts "
                    "and the reference in labels)",
                )
            if len(value) != len(texts):
                raise bad_request(
                    key, f"must hold one entry per query ({len(texts)}), got {len(value)}"
                )
            return list(value)

        prompts, labels = per_query("prompts"), per_query("labels")
        items = []
        for i, (query, prompt, label) in enumerate(zip(texts, prompts, labels, strict=True)):
            if not isinstance(prompt, str):
                raise bad_request(f"prompts[{i}]", f"must be a string, got {type(prompt).__name__}")
            at = query.find(prompt)
            if at < 0:
                raise bad_request(
                    f"query[{i}]",
                    f"does not contain prompts[{i}]: the response scored is what "
                    "follows the prompt in the query",
                )
            items.append(
                {"prompt": prompt, "reference": label, "output": query[at + len(prompt) :]}
            )
        rename = _renamed(
            "query",
            {"prompt": ("prompts", True), "reference": ("labels", True), "output": ("query", True)},
        )
        return self._reference_ids(items, "query", rename)

    def compare(self, body: JSON) -> Answer:
        if (
            self.reference_based
        ):  # a and b are {prompt, reference, output} inputs, as compare(a, b) takes them
            pair = [body.get("a"), body.get("b")]
            ids = self._reference_ids(
                pair, "a", lambda f: f.replace("inputs[0]", "a", 1).replace("inputs[1]", "b", 1)
            )
            return NeedsScores(
                ids, lambda scores: {"a_better": scores[0] > scores[1], "scores": scores}
            )
        convs = []
        for key in ("a", "b"):
            if key not in body:
                raise bad_request(key, "is required")
            try:
                convs.append(check_conversation(body[key], key))
            except InvalidConversationError as exc:
                raise bad_request(exc.fields["field"], exc.fields["detail"]) from None
        ids = []
        for key, conv in zip(("a", "b"), convs, strict=True):
            ids += self._encode(self.rm.encode_conversations, [conv], key, single=True)
        return NeedsScores(
            ids, lambda scores: {"a_better": scores[0] > scores[1], "scores": scores}
        )

    def rank(self, body: JSON) -> Answer:
        def ranked(scores: list[float]) -> JSON:
            order = order_from_scores(scores)
            return {
                "ranks": ranks_from_scores(scores),
                "order": order,
                "best": order[0],
                "scores": scores,
            }

        if self.reference_based and "conversations" not in body:
            return NeedsScores(self._rank_outputs_ids(body), ranked)
        return NeedsScores(self._conversation_ids(body, "conversations"), ranked)

    def _rank_outputs_ids(self, body: JSON) -> list[list[int]]:
        """``{"prompt", "reference", "outputs": [...]}``: the outputs of one prompt, ranked."""
        for key in ("prompt", "reference", "outputs"):
            if key not in body:
                raise bad_request(
                    key, 'is required: give "prompt", "reference" and "outputs" (a list)'
                )
        outputs = self._items(body, "outputs", _check_list)
        extra = {"wrapper": body["wrapper"]} if body.get("wrapper") is not None else {}
        items = [
            {"prompt": body["prompt"], "reference": body["reference"], "output": o, **extra}
            for o in outputs
        ]
        rename = _renamed(
            "outputs",
            {
                "prompt": ("prompt", False),
                "reference": ("reference", False),
                "output": ("outputs", True),
                "wrapper": ("wrapper", False),
            },
        )
        return self._reference_ids(items, "outputs", rename)

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
                    "scoring": self.style,
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


def _check_list(value: Any, field: str) -> list[Any]:
    """A JSON list (its items are checked by the model's recipe)."""
    if not isinstance(value, list):
        raise InvalidConversationError(
            field, f"expected a list, got {type(value).__name__}", hint=""
        )
    return value


def _objects(value: Any) -> bool:
    """A list of JSON objects: reference-based inputs, where a conversation would be a list of
    lists."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _renamed(listed: str, parts: dict[str, tuple[str, bool]] | None = None) -> Callable[[str], str]:
    """Map the recipe's field names (``inputs[2].reference``) to the request's (``labels[2]``).

    The list ``inputs`` becomes ``listed``; ``parts[name] = (field, per_item)`` moves that part
    of item i to ``field[i]`` (``per_item``) or to ``field`` (one value for every item).
    """
    import re

    def rename(field: str) -> str:
        m = re.fullmatch(r"inputs\[(\d+)\](?:\.(prompt|reference|output|wrapper))?(.*)", field)
        if m is None:
            return field
        index, part, rest = m.groups()
        if part is not None and parts and part in parts:
            target, per_item = parts[part]
            return f"{target}[{index}]{rest}" if per_item else f"{target}{rest}"
        return f"{listed}[{index}]" + (f".{part}" if part else "") + rest

    return rename
