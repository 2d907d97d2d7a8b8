"""Tiny tokenizers: real SentencePiece models whose special tokens stay whole, byte fallback,
round trips, and tokenizer_config.json / chat templates laid out like the published ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sentencepiece as spm
from jinja2.sandbox import ImmutableSandboxedEnvironment

ARCHS = ("internlm2", "internlm2-reward", "internlm3", "internlm")
TEXTS = (
    "Hello, world!  Two  spaces\tand a tab\nand a new line",
    "  leading spaces and trailing ones  ",
    "书生浦语 龘 你好，世界 😀🚀 مرحبا ñandú",
    "def f(x):\n    return x ** 2  # 12345 67890",
)


def _sp(path: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(path / "tokenizer.model"))


def _json(path: Path, name: str) -> dict:
    return json.loads((path / name).read_text())


def _added(path: Path) -> dict[str, int]:
    decoder = _json(path, "tokenizer_config.json")["added_tokens_decoder"]
    return {entry["content"]: int(i) for i, entry in decoder.items()}


def _encode(sp: spm.SentencePieceProcessor, added: dict[str, int], text: str) -> list[int]:
    """What an HF-style tokenizer does: added tokens first, SentencePiece for the rest."""
    pattern = "(" + "|".join(re.escape(t) for t in sorted(added, key=len, reverse=True)) + ")"
    ids: list[int] = []
    for part in re.split(pattern, text):
        if part in added:
            ids.append(added[part])
        elif part:
            ids += sp.encode(part)
    return ids


def _decode(sp: spm.SentencePieceProcessor, added: dict[str, int], ids: list[int]) -> str:
    by_id = {i: t for t, i in added.items()}
    out, run = [], []
    for i in [*ids, None]:
        if i is None or i in by_id:
            out.append(sp.decode(run))
            run = []
            if i is not None:
                out.append(by_id[i])
        else:
            run.append(i)
    return "".join(out)


@pytest.mark.parametrize("arch", ARCHS)
def test_sentencepiece_model_basics(tiny_checkpoint, arch: str) -> None:
    path = tiny_checkpoint(arch)
    sp = _sp(path)
    assert sp.get_piece_size() == _json(path, "config.json")["vocab_size"]
    assert [sp.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    assert (sp.unk_id(), sp.bos_id(), sp.eos_id()) == (0, 1, 2)
    assert sum(sp.is_byte(i) for i in range(sp.get_piece_size())) == 256
    assert 500 <= sp.get_piece_size() <= 4096


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("text", TEXTS)
def test_text_round_trips_with_byte_fallback(tiny_checkpoint, arch: str, text: str) -> None:
    sp = _sp(tiny_checkpoint(arch))
    ids = sp.encode(text)
    assert sp.decode(ids) == text
    assert 0 not in ids  # nothing became <unk>


def test_rare_characters_fall_back_to_bytes(tiny_internlm2: Path) -> None:
    sp = _sp(tiny_internlm2)
    pieces = sp.encode("😀", out_type=str)
    assert pieces[-4:] == ["<0xF0>", "<0x9F>", "<0x98>", "<0x80>"]
    assert sp.encode("x你", out_type=str)[-1] == "你"  # CJK seen in the corpus is one piece


def test_internlm2_chat_tokens_rename_reserved_pieces(tiny_internlm2: Path) -> None:
    """As published: tokenizer.model holds [UNUSED_TOKEN_*]; added_tokens_decoder renames them."""
    sp, added = _sp(tiny_internlm2), _added(tiny_internlm2)
    expected = {
        "<|im_start|>": 146,
        "<|im_end|>": 145,
        "<|action_start|>": 144,
        "<|action_end|>": 143,
        "<|interpreter|>": 142,
        "<|plugin|>": 141,
    }
    for token, k in expected.items():
        assert sp.id_to_piece(added[token]) == f"[UNUSED_TOKEN_{k}]"
        assert sp.piece_to_id(token) == 0  # not a piece of the SentencePiece model itself
    assert added["<|im_start|>"] == sp.get_piece_size() - 1  # reserved pieces end the vocab
    assert {added[t] for t in ("<unk>", "<s>", "</s>")} == {0, 1, 2}
    generation = _json(tiny_internlm2, "generation_config.json")
    assert generation["eos_token_id"] == [2, added["<|im_end|>"]]


def test_reward_token_is_one_piece(tiny_internlm2_reward: Path) -> None:
    sp = _sp(tiny_internlm2_reward)
    reward_id = _json(tiny_internlm2_reward, "config.json")["reward_token_id"]
    assert sp.id_to_piece(reward_id) == "[UNUSED_TOKEN_130]"
    assert sp.encode("good answer[UNUSED_TOKEN_130]")[-1] == reward_id


@pytest.mark.parametrize(
    ("arch", "tokens"),
    [
        (
            "internlm3",
            ["<|im_start|>", "<|im_end|>", "<|action_start|>", "<|plugin|>", "<restate>"],
        ),
        ("internlm", ["<|User|>", "<|Bot|>", "<eoh>", "<eoa>"]),
    ],
)
def test_literal_special_pieces_encode_as_one_id(
    tiny_checkpoint, arch: str, tokens: list[str]
) -> None:
    path = tiny_checkpoint(arch)
    sp, added = _sp(path), _added(path)
    for token in tokens:
        ids = sp.encode(f"x{token}y")
        assert added[token] in ids and sp.id_to_piece(added[token]) == token
        assert sp.decode(ids) == f"x{token}y"


@pytest.mark.parametrize("arch", ARCHS)
def test_chat_with_special_tokens_round_trips_through_added_tokens(
    tiny_checkpoint, arch: str
) -> None:
    path = tiny_checkpoint(arch)
    sp, added = _sp(path), _added(path)
    specials = [t for t in added if t not in ("<unk>", "<s>", "</s>")]
    text = "".join(f"{tok}数学 😀 line\n" for tok in specials)
    ids = _encode(sp, added, text)
    assert [i for i in ids if i in added.values()] == [added[t] for t in specials]
    assert _decode(sp, added, ids) == text


def _render(path: Path, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    config = _json(path, "tokenizer_config.json")
    template = ImmutableSandboxedEnvironment().from_string(config["chat_template"])
    return template.render(
        messages=messages,
        add_generation_prompt=generation_prompt,
        bos_token=config["bos_token"],
        eos_token=config["eos_token"],
    )


MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "你好"},
    {"role": "assistant", "content": "Hi!"},
    {"role": "user", "content": "2+2?"},
]


@pytest.mark.parametrize("arch", ["internlm2", "internlm2-reward", "internlm3"])
def test_chatml_template(tiny_checkpoint, arch: str) -> None:
    rendered = _render(tiny_checkpoint(arch), MESSAGES, True)
    assert rendered == (
        "<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n你好<|im_end|>\n"
        "<|im_start|>assistant\nHi!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_v1_template(tiny_internlm1: Path) -> None:
    assert _render(tiny_internlm1, MESSAGES[1:], True) == (
        "<s><|User|>:你好<eoh>\n<|Bot|>:Hi!<eoa>\n<|User|>:2+2?<eoh>\n<|Bot|>:"
    )
    assert _json(tiny_internlm1, "generation_config.json")["eos_token_id"] == [
        2,
        _added(tiny_internlm1)["<eoa>"],
    ]


@pytest.mark.parametrize(
    ("arch", "cls", "module"),
    [
        ("internlm2", "InternLM2Tokenizer", "tokenization_internlm2"),
        ("internlm3", "InternLM3Tokenizer", "tokenization_internlm3"),
        ("internlm", "InternLMTokenizer", "tokenization_internlm"),
    ],
)
def test_tokenizer_config_fields(tiny_checkpoint, arch: str, cls: str, module: str) -> None:
    path = tiny_checkpoint(arch)
    config = _json(path, "tokenizer_config.json")
    assert config["tokenizer_class"] == cls
    assert config["auto_map"]["AutoTokenizer"][0] == f"{module}.{cls}"
    assert config["add_bos_token"] is True and config["add_eos_token"] is False
    specials = (config["bos_token"], config["eos_token"], config["unk_token"])
    assert specials == ("<s>", "</s>", "<unk>")
    assert all(e["special"] for e in config["added_tokens_decoder"].values())
    special_map = _json(path, "special_tokens_map.json")
    assert special_map["additional_special_tokens"] == config["additional_special_tokens"]
    assert special_map["pad_token"] == config["pad_token"]
    pad_id = _json(path, "config.json")["pad_token_id"]
    assert _added(path)[config["pad_token"]] == pad_id
