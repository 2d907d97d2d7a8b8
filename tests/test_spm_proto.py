"""The one protobuf wire-format reader and writer (runner/spm_proto.py) that the export's
tokenizer reading, the GGUF tokenizer rebuild and the tiny test tokenizers share."""

from __future__ import annotations

import pytest

from model_zoo.runner import spm_proto as sp


def test_fields_encode_as_the_protobuf_wire_format_says() -> None:
    assert sp.int_field(1, 150) == b"\x08\x96\x01"  # the protobuf documentation's example
    assert sp.string_field(2, "testing") == b"\x12\x07testing"
    assert sp.float_field(2, 1.0) == b"\x15\x00\x00\x80\x3f"
    assert sp.int_field(41, -1) == b"\xc8\x02" + b"\xff" * 9 + b"\x01"  # ten bytes, as int32 -1


def test_read_fields_gives_values_and_the_raw_bytes_back() -> None:
    nested = sp.string_field(sp.PIECE_TEXT, "▁hi") + sp.float_field(sp.PIECE_SCORE, -2.5)
    message = (
        sp.string_field(sp.PIECES, nested)
        + sp.int_field(sp.TRAINER_UNK_ID, 0)
        + sp.int_field(sp.TRAINER_BOS_ID, -1)
        + sp.string_field(sp.NORMALIZER_SPEC, b"")
    )
    fields = sp.read_fields(message)
    assert [(f.number, f.wire) for f in fields] == [
        (sp.PIECES, sp.LEN),
        (sp.TRAINER_UNK_ID, sp.VARINT),
        (sp.TRAINER_BOS_ID, sp.VARINT),
        (sp.NORMALIZER_SPEC, sp.LEN),
    ]
    assert b"".join(f.raw for f in fields) == message  # a message rebuilds from its fields
    assert fields[0].value == nested and fields[3].value == b""
    assert fields[2].value == (1 << 64) - 1  # -1 read back as the uint64 it is on the wire
    text, score = sp.read_fields(nested)
    assert text.value == "▁hi".encode() and score.wire == sp.FIXED32
    assert isinstance(score.value, int) and sp.fixed32_float(score.value) == -2.5


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x08\x96", "truncated varint"),
        (b"\x12\x07test", "truncated field"),
        (b"\x15\x00\x00", "truncated message"),
        (b"\x09" + b"\x00" * 7, "truncated message"),
        (b"\x0b", "wire type 3"),  # a group: SentencePiece models have none
    ],
)
def test_a_broken_message_is_a_value_error(data: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        sp.read_fields(data)
