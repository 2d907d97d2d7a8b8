"""The tokenizer.json model-zoo writes gives its native tokenizer's ids (and text back).

Run on every tiny tokenizer family (InternLM2 with renamed and user-defined pieces, InternLM3
with literal special pieces, v1), on SentencePiece models trained here with the normalizer
options the tiny ones do not use, and read by ``tokenizers`` itself, the library engines run.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from model_zoo.errors import TokenizerExportError
from model_zoo.export.parity import BASE_TEXTS, check_parity, corpus
from model_zoo.export.spm_model import PieceType, parse_spm_model
from model_zoo.export.tokenizer_json import post_processor, tokenizer_json
from model_zoo.runner.chat import CHATML_TEMPLATE, V1_TEMPLATE
from model_zoo.runner.tokenizer import InternLMTokenizer
from model_zoo.testing.tiny_corpus import corpus_lines

tokenizers = pytest.importorskip(
    "tokenizers"
)  # a transformers dependency: always there with [runner]

ARCHS = ("internlm2", "internlm3", "internlm")


def _load(path: Path) -> tuple[InternLMTokenizer, bytes]:
    return InternLMTokenizer.from_pretrained(path), (path / "tokenizer.model").read_bytes()


def _user_defined_texts(model_bytes: bytes, tok: InternLMTokenizer) -> list[str]:
    pieces = [
        p.text
        for i, p in enumerate(parse_spm_model(model_bytes).pieces)
        if p.type == PieceType.USER_DEFINED and i not in tok.id_to_added
    ]
    return [t for p in pieces for t in (f"x{p}y", f"word {p} word", f"\n{p}", f"{p}{p}")]


@pytest.mark.parametrize("arch", ARCHS)
def test_ids_equal_native_on_the_corpus(tiny_checkpoint, arch: str) -> None:
    tok, model = _load(tiny_checkpoint(arch))
    doc = tokenizer_json(tok, model)
    templates = [tok.chat_template or "", CHATML_TEMPLATE if arch != "internlm" else V1_TEMPLATE]
    texts = corpus(tok, templates) + _user_defined_texts(model, tok) + corpus_lines()
    assert len(texts) > 70
    # every added token is in the corpus, alone and inside text
    assert all(any(t.content in s for s in texts) for t in tok.added.values())
    bad = check_parity(tok, doc, texts)
    assert not bad, "\n".join(map(str, bad[:5]))


@pytest.mark.parametrize("arch", ARCHS)
def test_decode_equals_native(tiny_checkpoint, arch: str) -> None:
    tok, model = _load(tiny_checkpoint(arch))
    exported = tokenizers.Tokenizer.from_str(json.dumps(tokenizer_json(tok, model)))
    for text in corpus(tok, [tok.chat_template or ""]):
        ids = tok.encode(text)
        assert exported.decode(ids, skip_special_tokens=False) == tok.decode(ids), text
    # Skipping special tokens: equal whenever no special token sits inside the text (generated
    # replies); around one, the native decoder drops the next run's leading space (documented).
    for text in BASE_TEXTS:
        ids = tok.encode(text)
        assert exported.decode(ids, skip_special_tokens=True) == tok.decode(
            ids, skip_special_tokens=True
        )


def test_added_tokens_keep_their_ids_and_flags(tiny_internlm2) -> None:
    tok, model = _load(tiny_internlm2)
    doc = tokenizer_json(tok, model)
    exported = tokenizers.Tokenizer.from_str(json.dumps(doc))
    for t in tok.added.values():
        assert exported.token_to_id(t.content) == t.id
        assert exported.id_to_token(t.id) == t.content
    entry = {a["content"]: a for a in doc["added_tokens"]}
    assert entry["<|im_start|>"]["special"] and not entry["<|im_start|>"]["normalized"]
    # the reward token is a user-defined piece: kept whole in text, not special
    assert entry["[UNUSED_TOKEN_130]"]["normalized"] and not entry["[UNUSED_TOKEN_130]"]["special"]
    assert exported.get_vocab_size() == tok.vocab_size


def test_reward_post_processor_appends_the_reward_token(tiny_internlm2_reward) -> None:
    tok, model = _load(tiny_internlm2_reward)
    reward_id = tok.token_to_id("[UNUSED_TOKEN_130]")
    doc = tokenizer_json(tok, model, reward_token_id=reward_id)
    exported = tokenizers.Tokenizer.from_str(json.dumps(doc))
    text = str(
        tok.apply_chat_template(
            [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
        )
    )
    assert exported.encode(text).ids == tok.encode(text, add_special_tokens=False) + [reward_id]
    assert exported.encode(text, add_special_tokens=False).ids == tok.encode(
        text, add_special_tokens=False
    )
    assert post_processor(tok)["single"][0] == {"SpecialToken": {"id": "<s>", "type_id": 0}}


def _train(tmp_path: Path, **options: object) -> Path:
    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus_lines() * 3),
        model_writer=out,
        vocab_size=400,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
        **options,
    )
    d = tmp_path / "spm"
    d.mkdir()
    (d / "tokenizer.model").write_bytes(out.getvalue())
    (d / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})
    )
    return d


def test_other_normalizer_options(tmp_path: Path) -> None:
    # nmt_nfkc charsmap, extra whitespace removed, no byte fallback (unknowns fuse into <unk>)
    d = _train(
        tmp_path,
        model_type="bpe",
        normalization_rule_name="nmt_nfkc",
        remove_extra_whitespaces=True,
        byte_fallback=False,
    )
    tok, model = _load(d)
    spec = parse_spm_model(model)
    assert spec.precompiled_charsmap and spec.remove_extra_whitespaces and not spec.byte_fallback
    bad = check_parity(tok, tokenizer_json(tok, model), [*BASE_TEXTS, *corpus_lines()])
    assert not bad, "\n".join(map(str, bad[:5]))


def test_a_unigram_model_is_refused_by_name(tmp_path: Path) -> None:
    tok, model = _load(_train(tmp_path, model_type="unigram"))
    with pytest.raises(TokenizerExportError, match="UNIGRAM"):
        tokenizer_json(tok, model)


def test_a_broken_model_file_is_an_export_error(tiny_internlm2) -> None:
    tok, model = _load(tiny_internlm2)
    with pytest.raises(TokenizerExportError, match="cannot be read"):
        tokenizer_json(tok, model[: len(model) // 2])
