"""POLAR's reference-based reward recipe: ``{prompt, reference, output}`` -> the text it scores.

POLAR (policy-discriminative reward models, InternLM 2025) scores a candidate output by its
consistency with a reference answer to the same prompt. The encoding here follows InternLM's
own client (``RewardModelClient`` in the POLAR repository and in xtuner), step by step:

1. Each of prompt, reference and output is a string or a list of messages; a list becomes its
   messages' ``content`` joined by ``"\\n"`` (roles are dropped).
2. Each part is tokenized with the tokenizer's default special tokens (bos first), and the bos
   counts toward every length below.
3. Reference and output are cut to ``max_response_length`` tokens each: from the left by default
   (their ends are kept), or from the right.
4. The prompt, which appears twice, is cut from the left to
   ``(max_length - 4 - len(reference) - len(output)) // 2`` tokens (4: the reward token, the
   ``<|reward|>`` separator and two newlines).
5. Every part is decoded back to text without special tokens, whether it was cut or not (so
   special-token text inside a message, such as ``<|im_end|>``, does not survive).
6. The scored text is ``prompt + "\\n" + reference + "<|reward|>" + prompt + "\\n" + output +
   "[UNUSED_TOKEN_130]"``; the ``pretrain`` wrapper leaves out both newlines.
7. That text is tokenized with the default special tokens (bos first, as the serving runtimes
   do), and the score is read at its last token, the reward token, as for InternLM2-Reward.

Where this differs from the client on purpose: options under which the prompt would get no
budget are refused (the client's ``ids[-0:]`` would keep the whole prompt), and malformed
inputs are errors naming the field instead of a ``KeyError``. Scores are unnormalized: an
output equal to the reference scores about 0, better outputs higher.

Pure Python: no torch here. :class:`PolarRewardModel` runs on any ``Scorer``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol

from ..errors import InvalidReferenceInputError, ScoringStyleError, UsageError
from ..runner.messages import Conversation
from .model import RewardModel, order_from_scores, ranks_from_scores
from .protocols import Scorer

#: The separator between the reference half and the output half (a special token of POLAR's
#: tokenizer: the reserved piece ``[UNUSED_TOKEN_0]``, id 92397, renamed in tokenizer_config.json).
SEPARATOR = "<|reward|>"
#: The reward token written at the end of the text (id 92527 in the published tokenizers).
_END_TOKEN = "[UNUSED_TOKEN_130]"
#: Tokens the budget keeps free for the reward token, the separator and the two newlines.
RESERVED_TOKENS = 4
WRAPPERS: tuple[str, ...] = ("sft", "pretrain")
CUT_SIDES: tuple[str, ...] = ("left", "right")
FIELDS: tuple[str, ...] = ("prompt", "reference", "output")
_STYLE = "reference-based"


class TextTokenizer(Protocol):
    """What the recipe needs from a tokenizer (``runner.tokenizer.InternLMTokenizer`` has it)."""

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]: ...

    def decode(self, ids: Iterable[int], *, skip_special_tokens: bool = False) -> str: ...


@dataclass(frozen=True)
class PolarOptions:
    """The truncation rules of POLAR's client; the defaults are the client's.

    ``max_length``: tokens for the whole text (``RESERVED_TOKENS`` of them kept free);
    ``max_response_length``: tokens for the reference and for the output, each;
    ``cut_side``: which end of an over-long reference or output is dropped (``left`` keeps the
    end, as xtuner's client does; the POLAR repository's verl client uses ``right``);
    ``wrapper``: ``sft`` (newline between prompt and answer) or ``pretrain`` (none), for inputs
    that do not name their own.
    """

    max_length: int = 16384
    max_response_length: int = 4096
    cut_side: str = "left"
    wrapper: str = "sft"

    def __post_init__(self) -> None:
        if self.cut_side not in CUT_SIDES:
            raise UsageError(
                f"cut_side must be one of {', '.join(CUT_SIDES)}, got {self.cut_side!r}"
            )
        if self.wrapper not in WRAPPERS:
            raise UsageError(f"wrapper must be one of {', '.join(WRAPPERS)}, got {self.wrapper!r}")
        if self.max_response_length < 1:
            raise UsageError(
                f"max_response_length must be at least 1, got {self.max_response_length}"
            )
        floor = RESERVED_TOKENS + 2 * self.max_response_length + 2
        if self.max_length < floor:
            raise UsageError(
                f"max_length {self.max_length} leaves the prompt no room: it must be at least "
                f"{RESERVED_TOKENS} + 2 x max_response_length + 2 = {floor}"
            )

    @property
    def budget(self) -> int:
        """Tokens shared by prompt (twice), reference and output."""
        return self.max_length - RESERVED_TOKENS

    def with_changes(self, **changes: Any) -> PolarOptions:
        """A copy with some rules changed (checked again)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class ReferenceInput:
    """One checked input: each part already flattened to a string."""

    prompt: str
    reference: str
    output: str
    wrapper: str | None = None  # None: the options' wrapper


# --------------------------------------------------------------------------- input checks


def _flatten(value: Any, field: str) -> str:
    """A string as it is; a list of messages as their contents joined by newlines."""
    if isinstance(value, str):
        _check_text(value, field)
        return value
    if isinstance(value, bytes) or not isinstance(value, Sequence):
        got = "missing" if value is None else f"a {type(value).__name__}"
        raise InvalidReferenceInputError(
            field, f"must be a string or a list of messages, got {got}"
        )
    parts = []
    for i, message in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(message, Mapping):
            raise InvalidReferenceInputError(
                where, f"expected a message object, got {type(message).__name__}"
            )
        content = message.get("content")
        if not isinstance(content, str):
            got = "missing" if "content" not in message else f"a {type(content).__name__}"
            raise InvalidReferenceInputError(f"{where}.content", f"must be a string, got {got}")
        _check_text(content, f"{where}.content")
        parts.append(content)
    return "\n".join(parts)


def _check_text(text: str, field: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidReferenceInputError(
            field,
            f"holds a lone surrogate ({text[exc.start]!r} at character {exc.start}), "
            "which is not valid Unicode",
        ) from None


def _looks_like_conversation(value: Any) -> bool:
    """Whether ``value`` is a chat conversation (a list of ``{"role", ...}`` messages)."""
    return (
        not isinstance(value, (str, bytes, Mapping))
        and isinstance(value, Sequence)
        and len(value) > 0
        and all(isinstance(m, Mapping) and "role" in m for m in value)
    )


def check_reference_input(value: Any, field: str = "input") -> ReferenceInput:
    """``value`` as a :class:`ReferenceInput`, or an error naming the field that is wrong."""
    if isinstance(value, ReferenceInput):
        return value
    if not isinstance(value, Mapping):
        got = type(value).__name__
        raise InvalidReferenceInputError(
            field, f"expected an object with prompt, reference and output, got {got}"
        )
    unknown = sorted(str(k) for k in value if k not in (*FIELDS, "wrapper"))
    if unknown:
        raise InvalidReferenceInputError(
            f"{field}.{unknown[0]}",
            "is not a field of a reference-based input (prompt, reference, output, wrapper)",
        )
    for key in FIELDS:
        if key not in value:
            raise InvalidReferenceInputError(f"{field}.{key}", "is missing")
    wrapper = value.get("wrapper")
    if wrapper is not None and wrapper not in WRAPPERS:
        raise InvalidReferenceInputError(
            f"{field}.wrapper", f"must be one of {', '.join(WRAPPERS)}, got {wrapper!r}"
        )
    prompt, reference, output = (_flatten(value[k], f"{field}.{k}") for k in FIELDS)
    return ReferenceInput(prompt, reference, output, wrapper=wrapper)


def _check_reference_inputs(
    values: Any, field: str = "inputs", *, model: str = "this model"
) -> list[ReferenceInput]:
    """A list of inputs, each checked; conversations are refused as the other scoring style."""
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence):
        got = type(values).__name__
        raise InvalidReferenceInputError(
            field, f"expected a list of {{prompt, reference, output}} objects, got {got}"
        )
    out = []
    for i, value in enumerate(values):
        if _looks_like_conversation(value):
            raise _conversation_given(model)
        out.append(check_reference_input(value, f"{field}[{i}]"))
    return out


def _conversation_given(model: str) -> ScoringStyleError:
    """The error for conversations given to a reference-based model."""
    return ScoringStyleError(model, _STYLE, "conversation")


# --------------------------------------------------------------------------- encoding


def _cut(ids: list[int], limit: int, side: str) -> list[int]:
    if len(ids) <= limit:
        return ids
    return ids[len(ids) - limit :] if side == "left" else ids[:limit]


def render(item: ReferenceInput, tokenizer: TextTokenizer, options: PolarOptions) -> str:
    """The exact text POLAR scores for ``item`` (the module docstring has the steps)."""
    prompt_ids = tokenizer.encode(item.prompt, add_special_tokens=True)
    reference_ids = _cut(
        tokenizer.encode(item.reference, add_special_tokens=True),
        options.max_response_length,
        options.cut_side,
    )
    output_ids = _cut(
        tokenizer.encode(item.output, add_special_tokens=True),
        options.max_response_length,
        options.cut_side,
    )
    prompt_budget = (
        options.budget - len(reference_ids) - len(output_ids)
    ) // 2  # >= 1 by PolarOptions
    prompt_ids = _cut(prompt_ids, prompt_budget, "left")
    prompt, reference, output = (
        tokenizer.decode(ids, skip_special_tokens=True)
        for ids in (prompt_ids, reference_ids, output_ids)
    )
    joint = "" if (item.wrapper or options.wrapper) == "pretrain" else "\n"
    return prompt + joint + reference + SEPARATOR + prompt + joint + output + _END_TOKEN


def detect_style(tokenizer: Any, reward_token_id: int) -> str:
    """``reference-based`` when the tokenizer has POLAR's separator as a token of its own.

    Why this rule: POLAR's format needs ``<|reward|>`` as one token distinct from the reward
    token; InternLM2-Reward checkpoints either lack it or (in some revisions) give that name to
    the reward token itself, which marks no second half to compare against.
    """
    token_to_id = getattr(tokenizer, "token_to_id", None)
    sep = token_to_id(SEPARATOR) if token_to_id is not None else None
    return _STYLE if sep is not None and sep != reward_token_id else "conversation"


# --------------------------------------------------------------------------- the model


class _PolarCodec:
    """The codec seam for a reference-based model: text is tokenized as the serving runtimes do
    (default special tokens, so bos first); there is no chat template to render."""

    def __init__(self, tokenizer: TextTokenizer, name: str) -> None:
        self.tokenizer = tokenizer
        self.name = name

    def render(self, conversation: Conversation) -> str:
        raise _conversation_given(self.name)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=True))


class PolarRewardModel(RewardModel):
    """A reference-based reward model (POLAR): scores outputs against a reference answer.

    The batching, the length limit (``max_length``, the model's positions by default), ``score_ids``
    and ``score_text`` (already-built POLAR text, tokenized with bos as vLLM/SGLang/LMDeploy do) are
    :class:`RewardModel`'s. Conversations are refused with :class:`ScoringStyleError`.
    """

    scoring_style: ClassVar[str] = _STYLE

    def __init__(
        self,
        scorer: Scorer,
        tokenizer: TextTokenizer,
        *,
        reward_token_id: int,
        max_length: int,
        pad_token_id: int | None = None,
        name: str = "reward-model",
        truncate: bool = False,
        vocab_size: int | None = None,
        options: PolarOptions | None = None,
    ) -> None:
        super().__init__(
            scorer,
            _PolarCodec(tokenizer, name),
            reward_token_id=reward_token_id,
            max_length=max_length,
            pad_token_id=pad_token_id,
            name=name,
            truncate=truncate,
            vocab_size=vocab_size,
        )
        self.tokenizer = tokenizer
        self.options = options or PolarOptions()

    def __repr__(self) -> str:
        return (
            f"PolarRewardModel(name={self.name!r}, reward_token_id={self.reward_token_id}, "
            f"max_length={self.max_length}, options={self.options})"
        )

    # ------------------------------------------------------------------ encoding (no model run)

    def render(self, items: Sequence[Any], *, options: PolarOptions | None = None) -> list[str]:
        """The texts scored for ``items``: what POLAR's client sends to a serving runtime."""
        opts = options or self.options
        return [
            render(item, self.tokenizer, opts)
            for item in _check_reference_inputs(items, model=self.name)
        ]

    def encode_inputs(
        self,
        items: Sequence[Any],
        *,
        options: PolarOptions | None = None,
        truncate: bool | None = None,
        max_length: int | None = None,
    ) -> list[list[int]]:
        """Token ids exactly as the model scores them (bos first, reward token last)."""
        return self.encode_texts(
            self.render(items, options=options), truncate=truncate, max_length=max_length
        )

    def encode_conversations(
        self, conversations: Sequence[Conversation], **kw: Any
    ) -> list[list[int]]:
        """Refused: a reference-based model takes no conversations (:class:`ScoringStyleError`)."""
        raise _conversation_given(self.name)

    # ------------------------------------------------------------------ scoring

    def score(
        self,
        conversation: Conversation | None = None,
        *,
        prompt: Any = None,
        reference: Any = None,
        output: Any = None,
        wrapper: str | None = None,
        options: PolarOptions | None = None,
        truncate: bool | None = None,
    ) -> float:
        """The reward of ``output`` given ``prompt`` and ``reference`` (each a string or
        messages)."""
        if conversation is not None:
            raise _conversation_given(self.name)
        missing = [
            k
            for k, v in (("prompt", prompt), ("reference", reference), ("output", output))
            if v is None
        ]
        if missing:
            raise UsageError(
                f"score needs prompt=, reference= and output= ({', '.join(missing)} missing); "
                f"{self.name} scores an output against a reference answer"
            )
        item: dict[str, Any] = {"prompt": prompt, "reference": reference, "output": output}
        if wrapper is not None:
            item["wrapper"] = wrapper
        return self.score_batch([item], options=options, truncate=truncate)[0]

    def score_batch(
        self,
        items: Sequence[Any],
        *,
        batch_size: int | None = None,
        max_tokens_per_batch: int | None = None,
        truncate: bool | None = None,
        options: PolarOptions | None = None,
    ) -> list[float]:
        """Rewards of many ``{"prompt", "reference", "output"}`` inputs, in input order, batched."""
        ids = self.encode_inputs(items, options=options, truncate=truncate)
        return self._run(ids, batch_size, max_tokens_per_batch)

    def _items(self, prompt: Any, reference: Any, outputs: Any) -> Sequence[Any]:
        """``rank(items)`` or ``rank(prompt, reference, outputs)``: the inputs either way."""
        if reference is None and outputs is None:
            return prompt  # already a list of inputs
        if reference is None or outputs is None:
            raise UsageError(
                "give prompt, reference and a list of outputs, "
                "or one list of {prompt, reference, output}"
            )
        if isinstance(outputs, (str, bytes, Mapping)) or not isinstance(outputs, Sequence):
            raise InvalidReferenceInputError(
                "outputs", f"expected a list of outputs, got {type(outputs).__name__}"
            )
        return [{"prompt": prompt, "reference": reference, "output": out} for out in outputs]

    def compare(self, a: Any, b: Any, **kw: Any) -> bool:
        """Whether input ``a`` scores strictly higher than input ``b``."""
        sa, sb = self.score_batch([a, b], **kw)
        return sa > sb

    # rank, order and best_of take the prompt (or a list of inputs) where RewardModel's take
    # conversations; both are passed positionally, so only the first parameter's name differs.
    def rank(  # type: ignore[override]
        self, prompt: Any, reference: Any = None, outputs: Any = None, **kw: Any
    ) -> list[int]:
        """Each output's rank, 0 = best: ``rank(prompt, reference, outputs)`` or ``rank(items)``."""
        return ranks_from_scores(self.score_batch(self._items(prompt, reference, outputs), **kw))

    def order(  # type: ignore[override]
        self, prompt: Any, reference: Any = None, outputs: Any = None, **kw: Any
    ) -> list[int]:
        """Output indices best-first (the inverse of :meth:`rank`)."""
        return order_from_scores(self.score_batch(self._items(prompt, reference, outputs), **kw))

    def best_of(  # type: ignore[override]
        self, prompt: Any, reference: Any = None, outputs: Any = None, **kw: Any
    ) -> int:
        """Index of the best output (the first one on a tie)."""
        items = self._items(prompt, reference, outputs)
        if not items:
            raise UsageError("best_of needs at least one output")
        return order_from_scores(self.score_batch(items, **kw))[0]


__all__ = [
    "CUT_SIDES",
    "FIELDS",
    "RESERVED_TOKENS",
    "SEPARATOR",
    "WRAPPERS",
    "PolarOptions",
    "PolarRewardModel",
    "ReferenceInput",
    "TextTokenizer",
    "render",
]
