"""What a conversation is, and the checks that turn a malformed one into an error naming the field.

The same checks back chat (the runner), reward scoring (``InvalidConversationError``) and the
reward server (a 400 answer naming the JSON field), so all reject exactly the same inputs. It
lives with the runner, which reward builds on, so the runner never imports reward.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidConversationError

Message = Mapping[str, str]
Conversation = Sequence[Message]


def check_conversation(value: Any, field: str = "conversation") -> list[dict[str, str]]:
    """Return ``value`` as a list of plain ``{"role", "content"}`` dicts, or raise naming the field.

    Extra keys in a message (``name``, ``tool_calls``...) are dropped: the chat template reads only
    the role and the content.
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InvalidConversationError(
            field, f"expected a list of messages, got {type(value).__name__}"
        )
    if not value:
        raise InvalidConversationError(field, "is empty")
    out: list[dict[str, str]] = []
    for i, message in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(message, Mapping):
            raise InvalidConversationError(
                where, f"expected a message object, got {type(message).__name__}"
            )
        for key in ("role", "content"):
            item = message.get(key)
            if not isinstance(item, str):
                got = "missing" if key not in message else f"a {type(item).__name__}"
                raise InvalidConversationError(f"{where}.{key}", f"must be a string, got {got}")
            _check_unicode(item, f"{where}.{key}")
        if not message["role"]:
            raise InvalidConversationError(f"{where}.role", "must not be empty")
        out.append({"role": message["role"], "content": message["content"]})
    return out


def check_conversations(value: Any, field: str = "conversations") -> list[list[dict[str, str]]]:
    """A list of conversations, each checked by :func:`check_conversation`."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InvalidConversationError(
            field, f"expected a list of conversations, got {type(value).__name__}"
        )
    return [check_conversation(conv, f"{field}[{i}]") for i, conv in enumerate(value)]


def check_texts(value: Any, field: str = "texts") -> list[str]:
    """A list of strings (already-templated inputs); a bare string is refused, not split into
    characters."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InvalidConversationError(
            field, f"expected a list of strings, got {type(value).__name__}", hint=""
        )
    for i, text in enumerate(value):
        if not isinstance(text, str):
            raise InvalidConversationError(
                f"{field}[{i}]", f"must be a string, got {type(text).__name__}", hint=""
            )
        _check_unicode(text, f"{field}[{i}]", hint="")
    return list(value)


def _check_unicode(text: str, field: str, hint: str | None = None) -> None:
    """Refuse text that is not valid Unicode (a lone surrogate such as JSON's ``"\\ud800"``).

    The tokenizer cannot encode it and would fail deep inside SentencePiece with a message that
    names nothing; this names the field instead.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidConversationError(
            field,
            f"holds a lone surrogate ({text[exc.start]!r} at character {exc.start}), "
            "which is not valid Unicode; send UTF-8 text",
            hint=hint,
        ) from None
