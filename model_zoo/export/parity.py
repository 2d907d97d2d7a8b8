"""Prove a written ``tokenizer.json`` gives the native tokenizer's ids, on a fixed corpus.

Every export runs this before it writes anything (a tokenizer that disagrees is an error, not a
warning), and the tests run it on every tiny tokenizer. The corpus covers what InternLM models
are fed: English, Chinese, code, numbers, whitespace runs (spaces, tabs, newlines, leading and
trailing), emoji and rare characters (byte fallback), every added token alone and inside text,
and each chat template rendered for several conversations.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from ..runner.tokenizer import InternLMTokenizer

BASE_TEXTS: tuple[str, ...] = (
    "hello world",
    "Hello, World! How are you today?",
    "The quick brown fox jumps over the lazy dog.",
    "上海人工智能实验室发布了书生浦语大模型。",
    "你好，世界！今天天气很好。",
    "混合 mixed 文本 text，标点。",
    "def add(a: int, b: int) -> int:\n    return a + b\n",
    'for i in range(10):\n\tprint(f"{i:>3}", i ** 2)  # tab-indented\n',
    "if x != y && z >= 0 { return -1; }",
    "0 1 2 3 12 345 6789 3.14159 1e-5 0xFF 2024-01-23",
    "  two leading spaces",
    "trailing spaces   ",
    "runs    of     spaces",
    "\n\nnewlines\n\n\nand\r\nCRLF\n",
    "\t\ttabs\tand  \t mixed\t",
    " ",
    "   ",
    "\n",
    "emoji 😀🚀 and symbols ∑∫√ ©®™",
    "Ελληνικά, русский, العربية, हिन्दी, 日本語のテキスト, 한국어",
    "a\u00a0non-breaking\u3000ideographic space",
    "zero\u200bwidth and combining e\u0301",
    "<|not a token|> <s > </s",
)


@dataclass(frozen=True)
class Mismatch:
    text: str
    native: list[int]
    exported: list[int]

    def __str__(self) -> str:
        return f"{self.text!r}: native {self.native[:24]} exported {self.exported[:24]}"


def added_token_texts(tok: InternLMTokenizer) -> list[str]:
    """Every added token alone, between words, glued to words, and after a space."""
    out: list[str] = []
    for t in sorted(tok.added.values(), key=lambda t: t.id):
        out += [
            t.content,
            f"a{t.content}b",
            f"word {t.content} word",
            f" {t.content}",
            f"{t.content}\n",
        ]
    return out


def conversations() -> list[list[dict[str, str]]]:
    """Conversations the chat templates are rendered for."""
    return [
        [{"role": "user", "content": "Hello!"}],
        [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "用一句话介绍上海。"},
            {"role": "assistant", "content": "上海是中国的一座国际化大都市。"},
            {"role": "user", "content": "And in English?"},
        ],
        [
            {"role": "user", "content": "Write code:\n```python\nprint('hi')\n```"},
            {"role": "assistant", "content": "  indented answer with trailing space "},
        ],
    ]


def chat_texts(tok: InternLMTokenizer, templates: Sequence[str]) -> list[str]:
    """``templates`` rendered (as text) for :func:`conversations`, with and without the prompt."""
    out: list[str] = []
    for template in templates:
        for convo in conversations():
            for prompt in (False, True):
                out.append(
                    str(
                        tok.apply_chat_template(
                            convo, add_generation_prompt=prompt, template=template
                        )
                    )
                )
    return out


def corpus(tok: InternLMTokenizer, templates: Sequence[str] = ()) -> list[str]:
    return [*BASE_TEXTS, *added_token_texts(tok), *chat_texts(tok, templates)]


def check_parity(
    tok: InternLMTokenizer, document: dict[str, Any], texts: Sequence[str]
) -> list[Mismatch]:
    """Texts whose ids differ between ``tok`` and ``document`` (with and without special tokens).

    Needs the ``tokenizers`` package (a transformers dependency, so present with the runner).
    """
    from tokenizers import Tokenizer

    exported = Tokenizer.from_str(json.dumps(document))
    bad: list[Mismatch] = []
    for text in texts:
        for special in (True, False):
            native = tok.encode(text, add_special_tokens=special)
            got = exported.encode(text, add_special_tokens=special).ids
            if native != got:
                bad.append(Mismatch(text, native, got))
                break
    return bad
