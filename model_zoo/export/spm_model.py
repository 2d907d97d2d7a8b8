"""Read the parts of a SentencePiece ``tokenizer.model`` that decide how it encodes.

``tokenizer.model`` is a protobuf ``ModelProto``. The fields read here (pieces with score and
type, the trainer's model type and byte fallback, the normalizer's rules) are few and stable, so
they are decoded from the wire format directly (``runner/spm_proto.py``, the one reader and
writer of it): no protobuf package, no generated code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ..runner import spm_proto as sp


class PieceType(IntEnum):
    NORMAL = 1
    UNKNOWN = 2
    CONTROL = 3
    USER_DEFINED = 4
    UNUSED = 5
    BYTE = 6


class ModelType(IntEnum):
    UNIGRAM = 1
    BPE = 2
    WORD = 3
    CHAR = 4


@dataclass(frozen=True)
class Piece:
    text: str
    score: float
    type: PieceType


@dataclass(frozen=True)
class SpmModel:
    """What a SentencePiece model does when it encodes, as plain values."""

    pieces: tuple[Piece, ...]
    model_type: ModelType
    byte_fallback: bool
    unk_piece: str
    normalizer_name: str
    precompiled_charsmap: bytes
    add_dummy_prefix: bool
    remove_extra_whitespaces: bool
    escape_whitespaces: bool
    treat_whitespace_as_suffix: bool


def _piece(buf: bytes) -> Piece:
    text, score, kind = "", 0.0, PieceType.NORMAL
    for f in sp.read_fields(buf):
        if f.number == sp.PIECE_TEXT and isinstance(f.value, bytes):
            text = f.value.decode("utf-8")
        elif f.number == sp.PIECE_SCORE and f.wire == sp.FIXED32 and isinstance(f.value, int):
            score = sp.fixed32_float(f.value)
        elif f.number == sp.PIECE_TYPE and isinstance(f.value, int):
            kind = PieceType(f.value)
    return Piece(text, score, kind)


def parse_spm_model(data: bytes) -> SpmModel:
    """Decode ``data`` (the bytes of ``tokenizer.model``). Raises ValueError on a broken file."""
    pieces: list[Piece] = []
    trainer: dict[int, int | bytes] = {}
    normalizer: dict[int, int | bytes] = {}
    for f in sp.read_fields(data):
        if f.number == sp.PIECES and isinstance(f.value, bytes):
            pieces.append(_piece(f.value))
        elif f.number == sp.TRAINER_SPEC and isinstance(f.value, bytes):
            trainer = {g.number: g.value for g in sp.read_fields(f.value)}
        elif f.number == sp.NORMALIZER_SPEC and isinstance(f.value, bytes):
            normalizer = {g.number: g.value for g in sp.read_fields(f.value)}
    if not pieces:
        raise ValueError("no pieces: not a SentencePiece model")

    def flag(spec: dict[int, int | bytes], number: int, default: bool) -> bool:
        value = spec.get(number)
        return default if value is None else bool(value)

    def text(spec: dict[int, int | bytes], number: int, default: str) -> str:
        value = spec.get(number)
        return value.decode("utf-8") if isinstance(value, bytes) else default

    charsmap = normalizer.get(sp.NORMALIZER_PRECOMPILED_CHARSMAP)
    return SpmModel(
        pieces=tuple(pieces),
        model_type=ModelType(int(trainer.get(sp.TRAINER_MODEL_TYPE, ModelType.UNIGRAM))),
        byte_fallback=flag(trainer, sp.TRAINER_BYTE_FALLBACK, False),
        unk_piece=text(trainer, sp.TRAINER_UNK_PIECE, "<unk>"),
        normalizer_name=text(normalizer, sp.NORMALIZER_NAME, ""),
        precompiled_charsmap=charsmap if isinstance(charsmap, bytes) else b"",
        add_dummy_prefix=flag(normalizer, sp.NORMALIZER_ADD_DUMMY_PREFIX, True),
        remove_extra_whitespaces=flag(normalizer, sp.NORMALIZER_REMOVE_EXTRA_WHITESPACES, True),
        escape_whitespaces=flag(normalizer, sp.NORMALIZER_ESCAPE_WHITESPACES, True),
        treat_whitespace_as_suffix=flag(trainer, sp.TRAINER_TREAT_WHITESPACE_AS_SUFFIX, False),
    )
