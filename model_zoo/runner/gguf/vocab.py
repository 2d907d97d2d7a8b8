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

The protobuf wire format is written by ``runner/spm_proto.py``, so no protobuf package is
needed.
"""

from __future__ import annotations

import re
from typing import Any

from .. import spm_proto as sp
from .metadata import BYTE, CONTROL, NORMAL, UNKNOWN, UNUSED, USER_DEFINED, GGUFVocab

_RESERVED = re.compile(r"^\[UNUSED_TOKEN_\d+\]$")
_BYTE_PIECE = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
_BPE = 2  # TrainerSpec.ModelType


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
        piece = (
            sp.string_field(sp.PIECE_TEXT, text)
            + sp.float_field(sp.PIECE_SCORE, float(score))
            + sp.int_field(sp.PIECE_TYPE, kind)
        )
        body += sp.string_field(sp.PIECES, piece)

    def name(index: int | None, default: str) -> str:
        return vocab.tokens[index] if index is not None else default

    eos = _eos_id(vocab)
    unk = vocab.unk_id if vocab.unk_id is not None else types.index(UNKNOWN)
    trainer = (
        sp.int_field(sp.TRAINER_MODEL_TYPE, _BPE)
        + sp.int_field(sp.TRAINER_VOCAB_SIZE, len(vocab.tokens))
        + sp.int_field(sp.TRAINER_BYTE_FALLBACK, int(BYTE in types))
        + sp.int_field(sp.TRAINER_UNK_ID, unk)
        + sp.int_field(sp.TRAINER_BOS_ID, vocab.bos_id if vocab.bos_id is not None else -1)
        + sp.int_field(sp.TRAINER_EOS_ID, eos if eos is not None else -1)
        + sp.int_field(sp.TRAINER_PAD_ID, vocab.pad_id if vocab.pad_id is not None else -1)
        + sp.string_field(sp.TRAINER_UNK_PIECE, name(vocab.unk_id, "<unk>"))
        + sp.string_field(sp.TRAINER_BOS_PIECE, name(vocab.bos_id, "<s>"))
        + sp.string_field(sp.TRAINER_EOS_PIECE, name(eos, "</s>"))
        + sp.string_field(sp.TRAINER_PAD_PIECE, name(vocab.pad_id, "<pad>"))
    )
    normalizer = (
        sp.string_field(sp.NORMALIZER_NAME, "identity")
        + sp.int_field(sp.NORMALIZER_ADD_DUMMY_PREFIX, int(vocab.add_space_prefix))
        + sp.int_field(sp.NORMALIZER_REMOVE_EXTRA_WHITESPACES, int(vocab.remove_extra_whitespaces))
        + sp.int_field(sp.NORMALIZER_ESCAPE_WHITESPACES, 1)
    )
    return (
        bytes(body)
        + sp.string_field(sp.TRAINER_SPEC, trainer)
        + sp.string_field(sp.NORMALIZER_SPEC, normalizer)
    )


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
