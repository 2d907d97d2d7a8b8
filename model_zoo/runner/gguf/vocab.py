"""The native tokenizer, rebuilt from a GGUF file's vocabulary.

A GGUF file keeps a SentencePiece model as three arrays (token text, score, type) plus a few
flags, not the ``tokenizer.model`` it came from. ``sentencepiece_model`` writes those back into a
SentencePiece ``ModelProto`` (a BPE model with byte fallback, identity normalisation, the file's
``add_space_prefix``), so SentencePiece itself encodes, exactly as it does for the original;
``tokenizer_config`` turns the special tokens into the ``added_tokens_decoder`` the native
tokenizer splits on first. Undone on the way back:

- the converter renames InternLM2's ``[UNUSED_TOKEN_n]`` chat pieces to ``<|im_start|>`` etc. and
  marks the other reserved pieces UNUSED; they are user-defined symbols again here, so the text
  ``[UNUSED_TOKEN_130]`` stays one token as with the original model;
- for chat models it writes ``<|im_end|>`` as the eos id; the tokenizer's eos is ``</s>`` again
  (both stay stop tokens, see ``metadata``);
- ``<unk>`` listed as a special token comes out CONTROL; SentencePiece needs it UNKNOWN.

The protobuf wire format is written by hand (five fields), so no protobuf package is needed.
"""

from __future__ import annotations

import re
import struct
from typing import Any

from .metadata import BYTE, CONTROL, NORMAL, UNKNOWN, UNUSED, USER_DEFINED, GGUFVocab

_RESERVED = re.compile(r"^\[UNUSED_TOKEN_\d+\]$")
_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
_BPE = 2  # TrainerSpec.ModelType


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int32/int64 negatives are ten-byte varints
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _string(number: int, data: str | bytes) -> bytes:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return _tag(number, 2) + _varint(len(raw)) + raw


def _int(number: int, value: int) -> bytes:
    return _tag(number, 0) + _varint(int(value))


def _float(number: int, value: float) -> bytes:
    return _tag(number, 5) + struct.pack("<f", value)


def piece_types(vocab: GGUFVocab) -> list[int]:
    """Each token's SentencePiece type (see the module docstring for what changes)."""
    unk = vocab.unk_id if vocab.unk_id is not None else vocab.id_of("<unk>")
    out: list[int] = []
    for i, (text, kind) in enumerate(zip(vocab.tokens, vocab.types, strict=True)):
        if i == unk:
            kind = UNKNOWN
        elif kind == UNKNOWN:
            kind = CONTROL
        elif kind == UNUSED and _RESERVED.match(text):
            kind = USER_DEFINED
        elif (kind == BYTE and not _BYTE_PIECE.match(text)) or kind not in (
            NORMAL,
            CONTROL,
            USER_DEFINED,
            UNUSED,
            BYTE,
        ):
            kind = NORMAL
        out.append(kind)
    return out


def sentencepiece_model(vocab: GGUFVocab) -> bytes:
    """A serialized SentencePiece ``ModelProto`` equivalent to the GGUF vocabulary."""
    types = piece_types(vocab)
    if UNKNOWN not in types:
        raise ValueError("the vocabulary has no <unk> token (tokenizer.ggml.unknown_token_id)")
    seen: set[str] = set()
    body = bytearray()
    for i, (text, score, kind) in enumerate(zip(vocab.tokens, vocab.scores, types, strict=True)):
        if not text or text in seen:  # SentencePiece refuses empty and repeated pieces
            text, kind = f"[GGUF_UNREACHABLE_{i}]", UNUSED
        seen.add(text)
        piece = _string(1, text) + _float(2, float(score)) + _int(3, kind)
        body += _string(1, piece)

    def name(index: int | None, default: str) -> str:
        return vocab.tokens[index] if index is not None else default

    eos = _eos_id(vocab)
    trainer = (
        _int(3, _BPE)
        + _int(4, len(vocab.tokens))
        + _int(35, int(BYTE in types))
        + _int(40, vocab.unk_id if vocab.unk_id is not None else types.index(UNKNOWN))
        + _int(41, vocab.bos_id if vocab.bos_id is not None else -1)
        + _int(42, eos if eos is not None else -1)
        + _int(43, vocab.pad_id if vocab.pad_id is not None else -1)
        + _string(45, name(vocab.unk_id, "<unk>"))
        + _string(46, name(vocab.bos_id, "<s>"))
        + _string(47, name(_eos_id(vocab), "</s>"))
        + _string(48, name(vocab.pad_id, "<pad>"))
    )
    normalizer = (
        _string(1, "identity")
        + _int(3, int(vocab.add_space_prefix))
        + _int(4, int(vocab.remove_extra_whitespaces))
        + _int(5, 1)
    )
    return bytes(body) + _string(2, trainer) + _string(3, normalizer)


def _eos_id(vocab: GGUFVocab) -> int | None:
    """The tokenizer's eos: ``</s>`` when the converter swapped in ``<|im_end|>``."""
    eos = vocab.eos_id
    if eos is not None and vocab.tokens[eos] == "<|im_end|>":
        plain = vocab.id_of("</s>")
        if plain is not None and vocab.types[plain] in (CONTROL, UNKNOWN):
            return plain
    return eos


def tokenizer_config(vocab: GGUFVocab) -> dict[str, Any]:
    """The ``tokenizer_config.json`` equivalent: added tokens, special tokens, flags, template."""
    decoder = {
        str(i): {"content": text, "special": kind != USER_DEFINED, "lstrip": False, "rstrip": False}
        for i, (text, kind) in enumerate(zip(vocab.tokens, vocab.types, strict=True))
        if kind in (CONTROL, UNKNOWN, USER_DEFINED) or i == vocab.unk_id
    }
    config: dict[str, Any] = {
        "added_tokens_decoder": decoder,
        "add_bos_token": vocab.add_bos,
        "add_eos_token": vocab.add_eos,
    }
    for key, index in (
        ("bos_token", vocab.bos_id),
        ("eos_token", _eos_id(vocab)),
        ("unk_token", vocab.unk_id),
        ("pad_token", vocab.pad_id),
    ):
        if index is not None:
            config[key] = vocab.tokens[index]
    if vocab.chat_template:
        config["chat_template"] = vocab.chat_template
    return config


def gguf_tokenizer(vocab: GGUFVocab) -> Any:
    """An ``InternLMTokenizer`` that gives the original checkpoint's token ids."""
    from ..tokenizer import InternLMTokenizer

    return InternLMTokenizer(sentencepiece_model(vocab), tokenizer_config(vocab))
