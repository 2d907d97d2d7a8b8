"""SentencePiece's ``ModelProto`` on the protobuf wire, read and written by hand.

``tokenizer.model`` is a protobuf message, and the few fields model-zoo touches are stable, so
one small reader and writer of the wire format serve every place that needs one: the export's
reading of a model (``export/spm_model.py``), the GGUF loader rebuilding a model from a GGUF
vocabulary (``runner/gguf/vocab.py``) and the test checkpoints reordering pieces
(``testing/tiny_tokenizer.py``). No protobuf package, no generated code. Field numbers follow
sentencepiece's ``sentencepiece_model.proto``. Pure: no torch.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Wire types.
VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5

# ModelProto
PIECES, TRAINER_SPEC, NORMALIZER_SPEC = 1, 2, 3
# ModelProto.SentencePiece
PIECE_TEXT, PIECE_SCORE, PIECE_TYPE = 1, 2, 3
# TrainerSpec
TRAINER_MODEL_TYPE, TRAINER_VOCAB_SIZE = 3, 4
TRAINER_TREAT_WHITESPACE_AS_SUFFIX = 24
TRAINER_BYTE_FALLBACK = 35
TRAINER_UNK_ID, TRAINER_BOS_ID, TRAINER_EOS_ID, TRAINER_PAD_ID = 40, 41, 42, 43
TRAINER_UNK_PIECE, TRAINER_BOS_PIECE, TRAINER_EOS_PIECE, TRAINER_PAD_PIECE = 45, 46, 47, 48
# NormalizerSpec
NORMALIZER_NAME, NORMALIZER_PRECOMPILED_CHARSMAP = 1, 2
NORMALIZER_ADD_DUMMY_PREFIX, NORMALIZER_REMOVE_EXTRA_WHITESPACES = 3, 4
NORMALIZER_ESCAPE_WHITESPACES = 5


@dataclass(frozen=True)
class ProtoField:
    """One field of a message as it lies on the wire.

    ``value`` is the number for varint and fixed-width fields and the payload for
    length-delimited ones (strings, bytes, nested messages); ``raw`` is the whole field, tag
    included, so a message can be rebuilt with its fields moved but not re-encoded."""

    number: int
    wire: int
    value: int | bytes
    raw: bytes


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it; ValueError when ``buf`` ends inside it."""
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


def read_fields(buf: bytes) -> list[ProtoField]:
    """Every field of the message ``buf``, in order (repeated fields repeat). Raises ValueError
    for a truncated message or a wire type SentencePiece models do not use (groups)."""
    out: list[ProtoField] = []
    pos = 0
    while pos < len(buf):
        start = pos
        tag, pos = read_varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == VARINT:
            value, pos = read_varint(buf, pos)
        elif wire in (FIXED64, FIXED32):
            width = 8 if wire == FIXED64 else 4
            if pos + width > len(buf):
                raise ValueError("truncated message")
            value = int.from_bytes(buf[pos : pos + width], "little")
            pos += width
        elif wire == LEN:
            length, pos = read_varint(buf, pos)
            value = buf[pos : pos + length]
            if len(value) != length:
                raise ValueError("truncated field")
            pos += length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append(ProtoField(number, wire, value, buf[start:pos]))
    return out


def fixed32_float(value: int) -> float:
    """A ``float`` field's value as read by ``read_fields`` (its four little-endian bytes)."""
    return float(struct.unpack("<f", value.to_bytes(4, "little"))[0])


def encode_varint(value: int) -> bytes:
    """``value`` as a varint; a negative int32/int64 takes ten bytes (two's complement)."""
    if value < 0:
        value += 1 << 64
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
    return encode_varint(number << 3 | wire)


def string_field(number: int, data: str | bytes) -> bytes:
    """A length-delimited field: text (UTF-8), bytes or an encoded nested message."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return _tag(number, LEN) + encode_varint(len(raw)) + raw


def int_field(number: int, value: int) -> bytes:
    """A varint field (int32, int64, bool or enum)."""
    return _tag(number, VARINT) + encode_varint(int(value))


def float_field(number: int, value: float) -> bytes:
    """A ``float`` field (fixed32)."""
    return _tag(number, FIXED32) + struct.pack("<f", value)
