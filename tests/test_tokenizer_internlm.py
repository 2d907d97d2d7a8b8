"""The native tokenizer against the reference InternLM tokenizers' behaviour.

The oracle is what the hub's ``InternLM2Tokenizer`` is: transformers' slow-tokenizer machinery
(added-token trie split, lstrip/rstrip handling) with ``_tokenize`` = SentencePiece ``encode``
and bos prepended. It is rebuilt here on transformers' own ``PreTrainedTokenizer`` from the
checkpoint's ``tokenizer_config.json``, so the splitting logic is transformers', not ours.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from model_zoo.errors import IncompatibleCheckpointError
from model_zoo.runner.api import load
from model_zoo.runner.tokenizer import InternLMTokenizer, StreamDecoder

TEXTS = [
    "hello world",
    "Hello, World! 1234567890",
    "  two leading spaces and trailing  ",
    "line one\nline two\n\n\ttabbed",
    "上海人工智能实验室 书生·浦语",
    "emoji 🤖 and rare ✓ ∑ ǅ characters",
    "<|im_start|>user\nHi 你好<|im_end|>\n<|im_start|>assistant\n",
    "x<|im_end|><|im_start|>y",
    "a<s>b</s>c <unk>",
    "<|im_start|> spaced <|im_end|>",
    '<|action_start|><|plugin|>\n{"name": "f"}<|action_end|>',
    "<restate>text</restate><planning>p</planning>",
    "<|User|>:hi<eoh>\n<|Bot|>:hello<eoa>\n",
    "[UNUSED_TOKEN_130] and <|im_start",
    "",
]


def reference_tokenizer(path: Path):
    import sentencepiece as spm
    from transformers import PreTrainedTokenizer
    from transformers.tokenization_utils_base import AddedToken

    class ReferenceInternLMTokenizer(PreTrainedTokenizer):
        vocab_files_names = {"vocab_file": "tokenizer.model"}
        model_input_names = ["input_ids", "attention_mask"]

        def __init__(
            self, vocab_file: str, add_bos_token: bool = True, add_eos_token: bool = False, **kw
        ) -> None:
            self.sp = spm.SentencePieceProcessor(model_file=vocab_file)
            self.add_bos_token, self.add_eos_token = add_bos_token, add_eos_token
            super().__init__(**kw)

        @property
        def vocab_size(self) -> int:
            return self.sp.get_piece_size()

        def get_vocab(self) -> dict[str, int]:
            vocab = {self.sp.id_to_piece(i): i for i in range(self.vocab_size)}
            vocab.update(self.added_tokens_encoder)
            return vocab

        def _tokenize(self, text: str, **kw) -> list[str]:
            return self.sp.encode(text, out_type=str)

        def _convert_token_to_id(self, token: str) -> int:
            return self.sp.piece_to_id(token)

        def _convert_id_to_token(self, index: int) -> str:
            return self.sp.id_to_piece(index)

        def build_inputs_with_special_tokens(
            self, a: list[int], b: list[int] | None = None
        ) -> list[int]:
            out = ([self.bos_token_id] if self.add_bos_token else []) + a + (b or [])
            return out + ([self.eos_token_id] if self.add_eos_token else [])

    cfg = json.loads((path / "tokenizer_config.json").read_text())
    decoder = {int(k): AddedToken(**v) for k, v in cfg["added_tokens_decoder"].items()}
    return ReferenceInternLMTokenizer(
        str(path / "tokenizer.model"),
        added_tokens_decoder=decoder,
        bos_token=cfg["bos_token"],
        eos_token=cfg["eos_token"],
        unk_token=cfg["unk_token"],
        pad_token=cfg["pad_token"],
        additional_special_tokens=cfg["additional_special_tokens"],
    )


@pytest.fixture(scope="module", params=["internlm2", "internlm3", "internlm"])
def pair(request, tiny_checkpoint):
    path = tiny_checkpoint(request.param)
    return InternLMTokenizer.from_pretrained(path), reference_tokenizer(path), request.param


@pytest.mark.parametrize("text", TEXTS)
def test_ids_equal_reference(pair, text: str) -> None:
    ours, ref, _ = pair
    assert ours.encode(text) == ref.encode(text)
    assert ours.encode(text, add_special_tokens=False) == ref.encode(text, add_special_tokens=False)


def test_bos_added_by_default_and_special_tokens_whole(tiny_internlm2: Path) -> None:
    tok = InternLMTokenizer.from_pretrained(tiny_internlm2)
    ids = tok.encode("<|im_start|>user\nhi<|im_end|>")
    assert ids[0] == tok.bos_token_id == 1
    assert ids[1] == tok.token_to_id("<|im_start|>")
    assert tok.token_to_id("<|im_end|>") in ids
    # the chat tokens rename reserved pieces of the SentencePiece model and decode to their text
    assert tok.sp.id_to_piece(ids[1]).startswith("[UNUSED_TOKEN_")
    assert tok.id_to_token(ids[1]) == "<|im_start|>"
    assert tok.eos_token_id == 2 and tok.pad_token_id == 2


@pytest.mark.parametrize("text", [t for t in TEXTS if t])
def test_decode_round_trips(pair, text: str) -> None:
    ours, _, _ = pair
    assert ours.decode(ours.encode(text, add_special_tokens=False)) == text
    assert ours.decode(ours.encode(text)) == "<s>" + text


def test_skip_special_tokens(tiny_internlm2: Path) -> None:
    tok = InternLMTokenizer.from_pretrained(tiny_internlm2)
    ids = tok.encode("<|im_start|>assistant\nSure, 好的!<|im_end|>")
    assert tok.decode(ids, skip_special_tokens=True) == "assistant\nSure, 好的!"
    assert tok.decode(ids) == "<s><|im_start|>assistant\nSure, 好的!<|im_end|>"


def test_byte_fallback_for_characters_outside_the_vocabulary(tiny_internlm2: Path) -> None:
    tok = InternLMTokenizer.from_pretrained(tiny_internlm2)
    ids = tok.encode("🤖", add_special_tokens=False)
    pieces = tok.convert_ids_to_tokens(ids)
    assert [p for p in pieces if p.startswith("<0x")] == ["<0xF0>", "<0x9F>", "<0xA4>", "<0x96>"]
    assert tok.decode(ids) == "🤖"


def test_stream_decoder_never_splits_a_character(tiny_internlm2: Path) -> None:
    tok = InternLMTokenizer.from_pretrained(tiny_internlm2)
    text = "Hi 🤖 上海 ✓ ok<|im_end|>"
    ids = tok.encode(text, add_special_tokens=False)
    dec = StreamDecoder(tok, skip_special_tokens=True)
    pieces = [dec.push(i) for i in ids] + [dec.flush()]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == tok.decode(ids, skip_special_tokens=True) == "Hi 🤖 上海 ✓ ok"
    assert sum(1 for p in pieces if p) > 3  # really incremental


def test_lstrip_rstrip_flags_of_added_tokens_are_honoured(
    tiny_internlm2: Path, tmp_path: Path
) -> None:
    import shutil

    path = tmp_path / "tok"
    shutil.copytree(tiny_internlm2, path)
    cfg_file = path / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    im_end = next(k for k, v in cfg["added_tokens_decoder"].items() if v["content"] == "<|im_end|>")
    cfg["added_tokens_decoder"][im_end].update(lstrip=True, rstrip=True)
    cfg_file.write_text(json.dumps(cfg))
    ours, ref = InternLMTokenizer.from_pretrained(path), reference_tokenizer(path)
    text = "hello   <|im_end|>   world"
    assert ours.encode(text) == ref.encode(text)
    assert ours.encode(text) == ours.encode("hello<|im_end|>world")


# ------------------------------------------------------------ tokenizer configs written other ways


def _edit_tokenizer_config(src: Path, dst: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    """A copy of the checkpoint at ``src`` whose tokenizer_config.json ``edit`` changed in place."""
    path = Path(shutil.copytree(src, dst))
    cfg = json.loads((path / "tokenizer_config.json").read_text())
    edit(cfg)
    (path / "tokenizer_config.json").write_text(json.dumps(cfg))
    return path


@pytest.mark.parametrize("arch", ["internlm3", "internlm"])
def test_special_tokens_listed_only_in_additional_special_tokens_are_kept_whole(
    tiny_checkpoint, tmp_path: Path, arch: str
) -> None:
    from model_zoo.runner.tokenizer import InternLMTokenizer

    src = tiny_checkpoint(arch, shards=1)
    old_style = _edit_tokenizer_config(
        src, tmp_path / "ck", lambda c: c.pop("added_tokens_decoder")
    )
    text = "<|User|>:hi<eoh>\n<|im_start|>user\nhi<|im_end|><review>"
    want = InternLMTokenizer.from_pretrained(src).encode(text)
    assert InternLMTokenizer.from_pretrained(old_style).encode(text) == want


def test_chat_template_given_as_a_named_list_uses_the_default_entry(
    tiny_checkpoint, tmp_path: Path
) -> None:
    from model_zoo.runner.tokenizer import InternLMTokenizer

    src = tiny_checkpoint("internlm2", shards=1)
    marker = "{{ 'NAMED-DEFAULT' }}"

    def to_list(cfg: dict) -> None:
        cfg["chat_template"] = [
            {"name": "tool_use", "template": "{{ 'TOOLS' }}"},
            {"name": "default", "template": marker + cfg["chat_template"]},
        ]

    path = _edit_tokenizer_config(src, tmp_path / "ck", to_list)
    tok = InternLMTokenizer.from_pretrained(path)
    assert tok.chat_template is not None and tok.chat_template.startswith(marker)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert text.startswith("NAMED-DEFAULT")


def test_malformed_added_tokens_decoder_is_a_clear_error(tiny_checkpoint, tmp_path: Path) -> None:
    from model_zoo.runner.tokenizer import InternLMTokenizer

    def damage(cfg: dict) -> None:
        cfg["added_tokens_decoder"]["1023"] = {"special": True}  # no content

    path = _edit_tokenizer_config(tiny_checkpoint("internlm2", shards=1), tmp_path / "ck", damage)
    with pytest.raises(
        IncompatibleCheckpointError, match="tokenizer_config.json.*added_tokens_decoder"
    ):
        InternLMTokenizer.from_pretrained(path)


def test_chat_template_missing_from_tokenizer_config(tiny_checkpoint, tmp_path: Path) -> None:
    from model_zoo.errors import UsageError

    src = tiny_checkpoint("internlm2", shards=1)
    path = _edit_tokenizer_config(src, tmp_path / "ck", lambda c: c.pop("chat_template"))
    runner, reference = load(path, device="cpu"), load(src, device="cpu")
    msgs = [{"role": "user", "content": "hi"}]
    # the runner falls back to the family's ChatML template: same ids as the shipped template
    assert runner.chat_ids(msgs) == reference.chat_ids(msgs)
    assert runner.profile.stop_token_ids == reference.profile.stop_token_ids
    # the bare tokenizer has no template to use: an error, not an empty rendering
    with pytest.raises(UsageError, match="no chat template"):
        runner.tokenizer.apply_chat_template(msgs, add_generation_prompt=True)
    assert runner.tokenizer.apply_chat_template(msgs, template=runner.profile.template).endswith(
        "hi<|im_end|>\n"
    )
