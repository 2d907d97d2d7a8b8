"""A native tokenizer for InternLM checkpoints: ``tokenizer.model`` + ``tokenizer_config.json``.

It reproduces what the hub's ``InternLM2Tokenizer`` / ``InternLM3Tokenizer`` do (both run on
transformers' slow-tokenizer machinery) without running their code:

1. split the text on the added tokens of ``added_tokens_decoder`` and the bos/eos/unk/pad
   strings (longest match first), honouring each token's ``lstrip`` / ``rstrip``;
2. encode every other segment with SentencePiece on its own (byte fallback included), so a
   segment after a special token is encoded exactly as the reference encodes it;
3. prepend bos when ``add_bos_token`` (the default), append eos when ``add_eos_token``.

Added tokens may rename pieces of the SentencePiece model (InternLM2's ``<|im_start|>`` is the
piece ``[UNUSED_TOKEN_146]``): ids in ``added_tokens_decoder`` always decode to their content.
Decoding turns each run of ordinary ids back into text with SentencePiece and each special id
into its text, so ``decode(encode(text, add_special_tokens=False)) == text``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

from ..errors import IncompatibleCheckpointError, MissingDependencyError, UsageError


@dataclass(frozen=True)
class AddedToken:
    id: int
    content: str
    special: bool = True
    lstrip: bool = False
    rstrip: bool = False


def _default_template(value: Any) -> str | None:
    """``chat_template`` is a string, or a list of ``{name, template}`` where "default" is used."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        for entry in value:
            if (
                isinstance(entry, dict)
                and entry.get("name") == "default"
                and isinstance(entry.get("template"), str)
            ):
                return str(entry["template"])
    return None


def _token_text(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


class InternLMTokenizer:
    """SentencePiece tokenizer with InternLM's special-token handling (see module docstring)."""

    def __init__(
        self, model_file: Path | str | bytes, config: dict[str, Any] | None = None
    ) -> None:
        """``model_file``: a ``tokenizer.model`` path, or a serialized model (rebuilt from GGUF)."""
        try:
            import sentencepiece as spm
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise MissingDependencyError(
                "sentencepiece", extra="runner", feature="tokenizing"
            ) from exc
        self.config = dict(config or {})
        if isinstance(model_file, bytes):
            self.sp = spm.SentencePieceProcessor(model_proto=model_file)
        else:
            self.sp = spm.SentencePieceProcessor(model_file=str(model_file))
        self.add_bos_token = bool(self.config.get("add_bos_token", True))
        self.add_eos_token = bool(self.config.get("add_eos_token", False))
        self.chat_template: str | None = _default_template(self.config.get("chat_template"))
        self.added: dict[str, AddedToken] = {}
        for key, value in (self.config.get("added_tokens_decoder") or {}).items():
            tok = AddedToken(
                id=int(key),
                content=str(value["content"]),
                special=bool(value.get("special", True)),
                lstrip=bool(value.get("lstrip", False)),
                rstrip=bool(value.get("rstrip", False)),
            )
            self.added[tok.content] = tok
        # Configs saved before ``added_tokens_decoder`` existed list special tokens only here; the
        # reference keeps each whole when it is a piece of the SentencePiece model.
        extra = self.config.get("additional_special_tokens")
        extra_texts = [_token_text(v) for v in extra] if isinstance(extra, list) else []
        for text in [
            _token_text(self.config.get(f))
            for f in ("bos_token", "eos_token", "unk_token", "pad_token")
        ] + extra_texts:
            if text and text not in self.added:
                piece_id = self.sp.piece_to_id(text)
                if self.sp.id_to_piece(piece_id) == text:
                    self.added[text] = AddedToken(piece_id, text)
        self.id_to_added: dict[int, AddedToken] = {t.id: t for t in self.added.values()}
        self._splitter = (
            re.compile(
                "("
                + "|".join(re.escape(t) for t in sorted(self.added, key=len, reverse=True))
                + ")"
            )
            if self.added
            else None
        )
        self.bos_token_id = self._special_id("bos_token", self.sp.bos_id())
        self.eos_token_id = self._special_id("eos_token", self.sp.eos_id())
        self.unk_token_id = self._special_id("unk_token", self.sp.unk_id())
        self.pad_token_id = self._special_id("pad_token", None)

    # ---------------------------------------------------------------- construction

    @classmethod
    def from_pretrained(cls, path: Path | str) -> InternLMTokenizer:
        """Build from a checkpoint directory (never runs the checkpoint's tokenizer code)."""
        path = Path(path)
        model = path / "tokenizer.model"
        if not model.is_file():
            raise IncompatibleCheckpointError(
                str(path),
                "no tokenizer.model",
                hint="InternLM checkpoints ship a SentencePiece tokenizer.model.",
            )
        config: dict[str, Any] = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):  # later wins
            f = path / name
            if f.is_file():
                try:
                    config.update(json.loads(f.read_text(encoding="utf-8")))
                except ValueError:
                    raise IncompatibleCheckpointError(str(f), "is not valid JSON") from None
        template_file = path / "chat_template.jinja"
        if "chat_template" not in config and template_file.is_file():
            config["chat_template"] = template_file.read_text(encoding="utf-8")
        try:
            return cls(model, config)
        except (RuntimeError, OSError) as exc:
            raise IncompatibleCheckpointError(
                str(model), f"is not a SentencePiece model ({exc})"
            ) from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise IncompatibleCheckpointError(
                str(path / "tokenizer_config.json"),
                f"added_tokens_decoder is malformed ({type(exc).__name__}: {exc}); "
                'each entry must be "<id>": {"content": "<text>", ...}',
                hint="Restore tokenizer_config.json from the model's repository "
                "(pull the model again).",
            ) from None

    def _special_id(self, field: str, fallback: int | None) -> int | None:
        text = _token_text(self.config.get(field))
        if text and text in self.added:
            return self.added[text].id
        if fallback is None or fallback < 0:
            return None
        return fallback

    # ---------------------------------------------------------------- vocabulary

    @property
    def vocab_size(self) -> int:
        top = max(self.id_to_added, default=-1) + 1
        return max(self.sp.get_piece_size(), top)

    def __len__(self) -> int:
        return self.vocab_size

    def token_to_id(self, token: str) -> int | None:
        if token in self.added:
            return self.added[token].id
        i = self.sp.piece_to_id(token)
        return i if self.sp.id_to_piece(i) == token else None

    def id_to_token(self, index: int) -> str:
        if index in self.id_to_added:
            return self.id_to_added[index].content
        return self.sp.id_to_piece(index)

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.id_to_token(i) for i in ids]

    @property
    def special_ids(self) -> set[int]:
        return {t.id for t in self.added.values() if t.special}

    # ---------------------------------------------------------------- encoding

    def segments(self, text: str) -> list[tuple[str, AddedToken | None]]:
        """Split ``text`` into plain segments and whole added tokens (with lstrip/rstrip)."""
        if self._splitter is None:
            return [(text, None)]
        parts = self._splitter.split(text)
        out: list[list[Any]] = []
        for i, part in enumerate(parts):
            out.append([part, self.added[part] if i % 2 == 1 else None])
        for i, (_part, tok) in enumerate(out):
            if tok is None:
                continue
            if tok.lstrip and i > 0:
                out[i - 1][0] = out[i - 1][0].rstrip()
            if tok.rstrip and i + 1 < len(out):
                out[i + 1][0] = out[i + 1][0].lstrip()
        return [(p, t) for p, t in out if p]

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        _require_unicode(text)
        ids: list[int] = []
        if add_special_tokens and self.add_bos_token and self.bos_token_id is not None:
            ids.append(self.bos_token_id)
        for part, tok in self.segments(text):
            if tok is not None:
                ids.append(tok.id)
            else:
                ids.extend(self.sp.encode(part))
        if add_special_tokens and self.add_eos_token and self.eos_token_id is not None:
            ids.append(self.eos_token_id)
        return ids

    def tokenize(self, text: str) -> list[str]:
        """Token strings of ``text`` (no bos), as the reference's ``tokenize`` returns them."""
        return self.convert_ids_to_tokens(self.encode(text, add_special_tokens=False))

    def __call__(
        self, text: str | Sequence[str], *, add_special_tokens: bool = True
    ) -> dict[str, Any]:
        if isinstance(text, str):
            return {"input_ids": self.encode(text, add_special_tokens=add_special_tokens)}
        return {"input_ids": [self.encode(t, add_special_tokens=add_special_tokens) for t in text]}

    # ---------------------------------------------------------------- decoding

    def decode(self, ids: Iterable[int], *, skip_special_tokens: bool = False) -> str:
        pieces: list[str] = []
        run: list[int] = []
        for i in (int(x) for x in ids):
            tok = self.id_to_added.get(i)
            if tok is None:
                run.append(i)
                continue
            if run:
                pieces.append(self.sp.decode(run))
                run = []
            if not (skip_special_tokens and tok.special):
                pieces.append(tok.content)
        if run:
            pieces.append(self.sp.decode(run))
        return "".join(pieces)

    def batch_decode(
        self, batch: Iterable[Iterable[int]], *, skip_special_tokens: bool = False
    ) -> list[str]:
        return [self.decode(ids, skip_special_tokens=skip_special_tokens) for ids in batch]

    # ---------------------------------------------------------------- chat

    @overload
    def apply_chat_template(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        add_generation_prompt: bool = ...,
        tokenize: Literal[False] = ...,
        template: str | None = ...,
        **extra: Any,
    ) -> str: ...

    @overload
    def apply_chat_template(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        add_generation_prompt: bool = ...,
        tokenize: Literal[True],
        template: str | None = ...,
        **extra: Any,
    ) -> list[int]: ...

    def apply_chat_template(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        add_generation_prompt: bool = False,
        tokenize: bool = False,
        template: str | None = None,
        **extra: Any,
    ) -> str | list[int]:
        """Render ``messages`` with the checkpoint's chat template (or the family default)."""
        from .chat import render_chat

        template = template or self.chat_template
        if not template:  # rendering "" would silently drop the whole conversation
            raise UsageError(
                "this tokenizer has no chat template (tokenizer_config.json has no "
                "chat_template); pass template=..., e.g. runner.profile.template, which holds the "
                "model family's default."
            )
        text = render_chat(
            template,
            messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.id_to_token(self.bos_token_id) if self.bos_token_id is not None else "",
            eos_token=self.id_to_token(self.eos_token_id) if self.eos_token_id is not None else "",
            **extra,
        )
        return self.encode(text, add_special_tokens=False) if tokenize else text


class StreamDecoder:
    """Turns a growing list of token ids into text pieces without splitting a character.

    Each ``push`` decodes a short window (so cost stays flat) and returns only the new text,
    holding back output while the window ends in an incomplete UTF-8 sequence (U+FFFD).
    """

    def __init__(self, tokenizer: InternLMTokenizer, *, skip_special_tokens: bool = True) -> None:
        self.tok = tokenizer
        self.skip = skip_special_tokens
        self.ids: list[int] = []
        self.prefix = 0  # window start
        self.read = 0  # ids already turned into emitted text

    def push(self, token_id: int) -> str:
        self.ids.append(int(token_id))
        return self._emit(final=False)

    def flush(self) -> str:
        return self._emit(final=True)

    def _emit(self, *, final: bool) -> str:
        before = self.tok.decode(self.ids[self.prefix : self.read], skip_special_tokens=self.skip)
        now = self.tok.decode(self.ids[self.prefix :], skip_special_tokens=self.skip)
        if len(now) <= len(before) or (now.endswith("\ufffd") and not final):
            return ""
        new = now[len(before) :]
        # start the next window at the last emitted id, so leading-space rules stay right
        self.prefix = self.read
        self.read = len(self.ids)
        return new


def load_tokenizer(path: Path | str) -> InternLMTokenizer:
    return InternLMTokenizer.from_pretrained(path)


def _require_unicode(text: str) -> None:
    """SentencePiece fails on a lone surrogate with a message that names nothing; say what is
    wrong."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(
            f"the text holds a lone surrogate ({text[exc.start]!r} at character {exc.start}), "
            "which is not valid Unicode and cannot be tokenized; pass UTF-8 text "
            "(decode bytes with errors='replace')"
        ) from None
