"""Routes that answer in the wire shapes of vLLM, SGLang and LMDeploy, on the same batching.

Why: RLHF code already written against one of those serving runtimes (POLAR's own
``RewardModelClient`` in xtuner and in the POLAR repository, verl recipes, hand-written scripts)
then works against model-zoo by changing only the address. Each shape was read from the
runtime's own source (the files are named below); the code here is model-zoo's.

``POST /pooling`` in vLLM's shape (also at ``/vllm/pooling``)
    Request: ``vllm/entrypoints/pooling/base/protocol.py`` (``PoolingBasicRequestMixin``,
    ``CompletionRequestMixin``, ``ChatRequestOptionsMixin``) and
    ``vllm/entrypoints/pooling/pooling/protocol.py`` (``PoolingCompletionRequest``,
    ``PoolingChatRequest``): ``input`` is a string, a list of strings, one list of token ids, or
    a list of them; text is tokenized with the tokenizer's special tokens (``add_special_tokens``,
    default true: InternLM2's bos first); token ids are taken as they are. ``messages`` (one
    chat) goes through the chat template instead. Answer: ``PoolingResponse`` /
    ``PoolingResponseData`` in the same file and ``vllm/entrypoints/pooling/pooling/serving.py``:
    ``{"id", "object": "list", "created", "model", "data": [{"index", "object": "pooling",
    "data"}], "usage"}``. vLLM runs InternLM2-Reward with a token-wise pooler
    (``InternLM2ForRewardModel`` in ``vllm/model_executor/models/internlm2.py``), so its
    ``data[i].data`` holds one ``[reward]`` row per token and clients read the last row (POLAR's
    client: ``data[i].data[-1][0]``). A reward model is trained to be read at its reward token
    only, so model-zoo computes that one and answers a single row, ``[[score]]``: the same
    ``[-1][0]``. Scores are raw ``v_head`` values, as vLLM's ``--task reward`` gave them; recent
    vLLM releases put a sigmoid on token-classify outputs unless ``use_activation`` is false, and
    here ``"use_activation": true`` asks for that sigmoid.

``POST /pooling`` in LMDeploy's shape (``/lmdeploy/pooling``, or ``/pooling`` with
``serve-reward --pooling-format lmdeploy``)
    ``lmdeploy/serve/openai/protocol.py`` (``PoolingRequest``, ``PoolingResponse``,
    ``UsageInfo.build``) and ``lmdeploy/serve/openai/endpoints/auxiliary.py`` (``pooling``): the
    same request as vLLM's, text tokenized with bos (``tokenizer.encode(p)``; LMDeploy added
    the bos in July 2025, #3703), but ``data[i].data`` is the score itself, a number (its engine
    keeps the last token's logit: ``async_get_reward_score`` in
    ``lmdeploy/serve/core/async_engine.py``). The two runtimes share the path and the request,
    so one ``/pooling`` cannot tell their clients apart: the prefixed paths serve both at once
    (POLAR's client takes ``server_address="host:port/lmdeploy"``).

``POST /classify`` in SGLang's shape
    ``python/sglang/srt/entrypoints/http_server.py`` (``classify_request`` takes an
    ``EmbeddingReqInput``: ``text`` a string or a list, or ``input_ids``; ``model`` is not
    checked) and ``python/sglang/srt/managers/tokenizer_manager.py`` (each output is
    ``{"embedding", "meta_info"}``; one object for one input, a list for a list). SGLang's
    ``InternLM2ForRewardModel`` (``python/sglang/srt/models/internlm2_reward.py``) pools the last
    token and applies ``v_head``, so ``embedding`` is ``[score]``. ``meta_info`` here carries
    ``id`` and ``prompt_tokens`` (SGLang adds timing and version fields).

All three runtimes score exactly the tokens they are given; none appends the reward token,
which is why their users write it into the text (POLAR's client ends every text with
``[UNUSED_TOKEN_130]``). Here the reward token is appended when it is not already last, once,
as for every other route. ``model`` is echoed, never checked: model-zoo serves one model.
Limits, authentication, batching and errors are the server's, as for ``/get_reward``.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import InvalidConversationError, UsageError
from ..reward.batching import prepare_ids
from ..runner.messages import check_conversation, check_texts
from .protocol import ITEMS_ADVICE, JSON, Answer, NeedsScores, Routes, bad_request, over_limit

POOLING_FORMATS = ("vllm", "lmdeploy")

# vLLM's task names for what InternLM2-Reward serves: the current one, and those of releases
# before the pooling tasks were renamed (``encode``, ``reward``).
_VLLM_TASKS = ("token_classify", "encode", "reward")
_VLLM_TRUNCATE = ', send "truncate_prompt_tokens": -1 (keeps the last tokens that fit)'


def _kind(value: Any) -> str:
    """A JSON value's type in JSON's words, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


class Prompts:
    """What one request asks to score: texts or token-id lists, and whether it was one item."""

    def __init__(self, items: list[Any], *, texts: bool, single: bool) -> None:
        self.items = items
        self.texts = texts
        self.single = single


def read_prompts(value: Any, field: str, *, max_items: int, vocab_size: int | None) -> Prompts:
    """A string, a list of strings, one list of token ids, or a list of such lists.

    That is the ``input`` of vLLM's and LMDeploy's ``/pooling`` (and, as ``text`` or
    ``input_ids``, of SGLang's ``/classify``). Anything else is a 400 naming the item.
    """
    what = "a string, a list of strings, a list of token ids or a list of lists of token ids"
    if isinstance(value, str):
        _check_text(value, field)
        return Prompts([value], texts=True, single=True)
    if not isinstance(value, list):
        raise bad_request(field, f"must be {what}, got {_kind(value)}")
    if not value:
        raise bad_request(field, "must not be empty")
    first = value[0]
    if isinstance(first, str):
        _check_count(value, field, max_items)
        try:
            return Prompts(check_texts(value, field), texts=True, single=False)
        except InvalidConversationError as exc:
            raise bad_request(exc.fields["field"], exc.fields["detail"]) from None
    if isinstance(first, int) and not isinstance(first, bool):
        return Prompts([_token_ids(value, field, vocab_size)], texts=False, single=True)
    if isinstance(first, list):
        _check_count(value, field, max_items)
        seqs = [_token_ids(seq, f"{field}[{i}]", vocab_size) for i, seq in enumerate(value)]
        return Prompts(seqs, texts=False, single=False)
    raise bad_request(
        f"{field}[0]", f"must be a string, a token id or a list of token ids, got {_kind(first)}"
    )


def _check_text(text: str, field: str) -> None:
    try:
        check_texts([text], field)
    except InvalidConversationError as exc:
        raise bad_request(field, exc.fields["detail"]) from None


def _check_count(items: list[Any], field: str, max_items: int) -> None:
    if len(items) > max_items:
        raise over_limit(
            "max_items_per_request", len(items), max_items, f"items in {field}", advice=ITEMS_ADVICE
        )


def _token_ids(seq: Any, field: str, vocab_size: int | None) -> list[int]:
    """One prompt given as token ids; every id must be an integer the embedding has a row for."""
    if not isinstance(seq, list):
        raise bad_request(field, f"must be a list of token ids, got {_kind(seq)}")
    if not seq:
        raise bad_request(field, "must not be empty")
    for j, token in enumerate(seq):
        if isinstance(token, bool) or not isinstance(token, int):
            raise bad_request(
                f"{field}[{j}]", f"must be a token id (an integer), got {_kind(token)}"
            )
        if token < 0 or (vocab_size is not None and token >= vocab_size):
            top = f"0 to {vocab_size - 1}" if vocab_size is not None else "0 or more"
            raise bad_request(
                f"{field}[{j}]", f"token id {token} is outside this model's vocabulary ({top})"
            )
    return seq


def _option(body: JSON, key: str, kinds: tuple[type, ...], default: Any, expected: str) -> Any:
    """``body[key]`` when present and not null, checked against ``kinds``; else ``default``."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise bad_request(key, f"must be {expected}, got {_kind(value)}")
    return value


def _encoder(tokenizer: Any, special: bool) -> Callable[[str], list[int]]:
    """Text to ids through a transformers tokenizer, with or without its special tokens."""
    return lambda text: list(tokenizer.encode(text, add_special_tokens=special))


class RuntimeRoutes:
    """vLLM's and LMDeploy's ``/pooling`` and SGLang's ``/classify`` over one :class:`Routes`."""

    def __init__(self, routes: Routes, *, pooling_format: str = "vllm") -> None:
        if pooling_format not in POOLING_FORMATS:
            raise UsageError(
                f"pooling format must be one of {', '.join(POOLING_FORMATS)}, "
                f"got {pooling_format!r}"
            )
        self.routes = routes
        self.rm = routes.rm
        self.pooling_format = pooling_format
        # The runtimes tokenize text with the tokenizer's default special tokens (InternLM2: bos
        # first), unlike the InternLM2-Reward recipe, whose chat template writes the bos itself;
        # vLLM's add_special_tokens=false leaves them out. A codec without a tokenizer (a test's)
        # has no special tokens to add.
        tokenizer = getattr(self.rm.codec, "tokenizer", None)
        self._tokenize: dict[bool, Callable[[str], list[int]]] = (
            {special: _encoder(tokenizer, special) for special in (True, False)}
            if tokenizer is not None
            else {True: self.rm.codec.encode, False: self.rm.codec.encode}
        )

    def post_routes(self) -> dict[str, Callable[[JSON], Answer]]:
        default = self.vllm_pooling if self.pooling_format == "vllm" else self.lmdeploy_pooling
        return {
            "/pooling": default,
            "/vllm/pooling": self.vllm_pooling,
            "/lmdeploy/pooling": self.lmdeploy_pooling,
            "/classify": self.sglang_classify,
        }

    # ------------------------------------------------------------------ encoding

    def _prompts(self, body: JSON, key: str) -> Prompts:
        return read_prompts(
            body[key],
            key,
            max_items=self.routes.limits.max_items_per_request,
            vocab_size=self.rm.vocab_size,
        )

    def _ids(
        self,
        prompts: Prompts,
        field: str,
        *,
        special: bool = True,
        max_length: int | None = None,
        truncate: bool | None = None,
        advice: str = "",
    ) -> list[list[int]]:
        """Token ids as scored: tokenized (texts), reward token appended, within the length
        limit."""
        tokenize = self._tokenize[special]

        def encode(items: Sequence[Any], *, truncate: bool, max_length: int) -> list[list[int]]:
            raw = [tokenize(x) for x in items] if prompts.texts else items
            return prepare_ids(
                raw, reward_token_id=self.rm.reward_token_id, limit=max_length, truncate=truncate
            )

        return self.routes._encode(
            encode,
            prompts.items,
            field,
            single=prompts.single,
            max_length=max_length,
            truncate=truncate,
            advice=advice,
        )

    # ------------------------------------------------------------------ vLLM

    def vllm_pooling(self, body: JSON) -> Answer:
        """vLLM's ``POST /pooling`` (see the module doc for the source files)."""
        model = _option(body, "model", (str,), self.rm.name, "a string")
        if body.get("dimensions") is not None:  # (vLLM refuses it on /pooling too)
            raise bad_request(
                "dimensions", "is not supported: a reward model gives one number; leave it out"
            )
        fmt = _option(body, "encoding_format", (str,), "float", 'the string "float"')
        if fmt != "float":
            raise bad_request(
                "encoding_format",
                f'only "float" is served, got {fmt!r}; leave it out or send "float"',
            )
        task = _option(body, "task", (str,), None, "a string")
        if task is not None and task not in _VLLM_TASKS:
            raise bad_request(
                "task",
                f"{task!r} is not served by a reward model; use {_VLLM_TASKS[0]!r} or leave it out",
            )
        if _option(body, "truncation_side", (str,), "left", '"left"') != "left":
            raise bad_request(
                "truncation_side",
                'only "left" is served (the end of the text holds the reward token)',
            )
        activation = _option(body, "use_activation", (bool,), False, "true or false")
        max_length = self._truncate_prompt_tokens(body)
        truncate = True if max_length is not None else None
        if ("input" in body) == ("messages" in body):
            raise bad_request(
                "input", 'give exactly one of "input" (text or token ids) or "messages" (a chat)'
            )
        if "messages" in body:
            if _option(body, "add_special_tokens", (bool,), False, "true or false"):
                raise bad_request(
                    "add_special_tokens",
                    "must be false with messages: the chat template writes "
                    "the special tokens itself",
                )
            try:
                conversation = check_conversation(body["messages"], "messages")
            except InvalidConversationError as exc:
                raise bad_request(exc.fields["field"], exc.fields["detail"]) from None
            ids = self.routes._encode(
                self.rm.encode_conversations,
                [conversation],
                "messages",
                single=True,
                max_length=max_length,
                truncate=truncate,
                advice=_VLLM_TRUNCATE,
            )
        else:
            special = _option(body, "add_special_tokens", (bool,), True, "true or false")
            ids = self._ids(
                self._prompts(body, "input"),
                "input",
                special=special,
                max_length=max_length,
                truncate=truncate,
                advice=_VLLM_TRUNCATE,
            )
        request_id = body.get("request_id")
        given_id = request_id if isinstance(request_id, str) and request_id else None
        answer_id = f"pooling-{given_id or uuid.uuid4().hex}"
        tokens = sum(len(x) for x in ids)

        def answer(scores: list[float]) -> JSON:
            values = [_sigmoid(s) for s in scores] if activation else scores
            return {
                "id": answer_id,
                "object": "list",
                "created": int(time.time()),
                "model": model,
                "data": [
                    {"index": i, "object": "pooling", "data": [[v]]} for i, v in enumerate(values)
                ],
                "usage": {
                    "prompt_tokens": tokens,
                    "total_tokens": tokens,
                    "completion_tokens": 0,
                    "prompt_tokens_details": None,
                },
            }

        return NeedsScores(ids, answer)

    def _truncate_prompt_tokens(self, body: JSON) -> int | None:
        """vLLM's ``truncate_prompt_tokens``: keep the last k tokens (-1: the server's limit)."""
        k = _option(body, "truncate_prompt_tokens", (int,), None, "an integer")
        if k is None:
            return None
        limit = self.routes.max_tokens
        if k == -1:
            return limit
        if not 1 <= k <= limit:
            raise bad_request(
                "truncate_prompt_tokens",
                f"must be -1 or between 1 and this server's limit of "
                f"{limit} tokens per item, got {k}",
            )
        return int(k)

    # ------------------------------------------------------------------ LMDeploy

    def lmdeploy_pooling(self, body: JSON) -> Answer:
        """LMDeploy's ``POST /pooling``: vLLM's request, each ``data`` the score itself."""
        model = _option(body, "model", (str,), self.rm.name, "a string")
        if "input" not in body:
            raise bad_request("input", "is required")
        ids = self._ids(self._prompts(body, "input"), "input")
        tokens = sum(len(x) for x in ids)

        def answer(scores: list[float]) -> JSON:
            return {
                "id": f"pool-{uuid.uuid4().hex}",
                "object": "list",
                "created": int(time.time()),
                "model": model,
                "data": [
                    {"index": i, "object": "pooling", "data": s} for i, s in enumerate(scores)
                ],
                "usage": {
                    "prompt_tokens": tokens,
                    "total_tokens": tokens,
                    "completion_tokens": 0,
                    "prompt_tokens_details": {"cached_tokens": 0},
                    "completion_tokens_details": None,
                },
            }

        return NeedsScores(ids, answer)

    # ------------------------------------------------------------------ SGLang

    def sglang_classify(self, body: JSON) -> Answer:
        """SGLang's ``POST /classify``: ``text`` or ``input_ids``; one object per input."""
        given = [key for key in ("text", "input_ids") if body.get(key) is not None]
        if len(given) != 1:
            hint = ' (vLLM-style {"input": ...} goes to POST /pooling)' if "input" in body else ""
            raise bad_request("text", f'give exactly one of "text" or "input_ids"{hint}')
        key = given[0]
        prompts = self._prompts(body, key)
        if key == "input_ids" and prompts.texts:
            raise bad_request(key, 'must hold token ids; send text as "text"')
        if key == "text" and not prompts.texts:
            raise bad_request(
                key, 'must be a string or a list of strings; send token ids as "input_ids"'
            )
        ids = self._ids(prompts, key)
        lengths = [len(x) for x in ids]

        def answer(scores: list[float]) -> JSON | list[JSON]:
            out = [
                {"embedding": [s], "meta_info": {"id": uuid.uuid4().hex, "prompt_tokens": n}}
                for s, n in zip(scores, lengths, strict=True)
            ]
            return out[0] if prompts.single else out

        return NeedsScores(ids, answer)
