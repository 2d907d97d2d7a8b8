"""Read the parts of a SentencePiece ``tokenizer.model`` that decide how it encodes.

``tokenizer.model`` is a protobuf ``ModelProto``. The fields read here (pieces with score and
type, the trainer's model type and byte fallback, the normalizer's rules) are few and stable, so
they are decoded from the wire format directly: no protobuf package, no generated code.
Field numbers follow sentencepiece's ``sentencepiece_model.proto``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum


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


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of every field: ints for varint/fixed, bytes for length."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value = int.from_bytes(buf[pos : pos + 8], "little")
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value = buf[pos : pos + length]
            if len(value) != length:
                raise ValueError("truncated field")
            pos += length
        elif wire == 5:
            value = int.from_bytes(buf[pos : pos + 4], "little")
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, wire, value))
    if pos != len(buf):
        raise ValueError("truncated message")
    return out


def _piece(buf: bytes) -> Piece:
    text, score, kind = "", 0.0, PieceType.NORMAL
    for number, wire, value in _fields(buf):
        if number == 1 and isinstance(value, bytes):
            text = value.decode("utf-8")
        elif number == 2 and wire == 5 and isinstance(value, int):
            score = struct.unpack("<f", value.to_bytes(4, "little"))[0]
        elif number == 3 and isinstance(value, int):
            kind = PieceType(value)
    return Piece(text, score, kind)


def parse_spm_model(data: bytes) -> SpmModel:
    """Decode ``data`` (the bytes of ``tokenizer.model``). Raises ValueError on a broken file."""
    pieces: list[Piece] = []
    trainer: dict[int, int | bytes] = {}
    normalizer: dict[int, int | bytes] = {}
    for number, _wire, value in _fields(data):
        if number == 1 and isinstance(value, bytes):
            pieces.append(_piece(value))
        elif number == 2 and isinstance(value, bytes):
            trainer = {n: v for n, _w, v in _fields(value)}
        elif number == 3 and isinstance(value, bytes):
            normalizer = {n: v for n, _w, v in _fields(value)}
    if not pieces:
        raise ValueError("no pieces: not a SentencePiece model")

    def flag(spec: dict[int, int | bytes], number: int, default: bool) -> bool:
        value = spec.get(number)
        return default if value is None else bool(value)

    def text(spec: dict[int, int | bytes], number: int, default: str) -> str:
        value = spec.get(number)
        return value.decode("utf-8") if isinstance(value, bytes) else default

    charsmap = normalizer.get(2)
    return SpmModel(
        pieces=tuple(pieces),
        model_type=ModelType(int(trainer.get(3, ModelType.UNIGRAM))),
        byte_fallback=flag(trainer, 35, False),
        unk_piece=text(trainer, 45, "<unk>"),
        normalizer_name=text(normalizer, 1, ""),
        precompiled_charsmap=charsmap if isinstance(charsmap, bytes) else b"",
        add_dummy_prefix=flag(normalizer, 3, True),
        remove_extra_whitespaces=flag(normalizer, 4, True),
        escape_whitespaces=flag(normalizer, 5, True),
        treat_whitespace_as_suffix=flag(trainer, 24, False),
    )
