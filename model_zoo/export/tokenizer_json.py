"""Write a ``tokenizer.json`` (the ``tokenizers`` library's format) from model-zoo's tokenizer.

Serving engines load tokenizers through transformers' ``AutoTokenizer``; for InternLM that means
the hub's ``tokenization_internlm2.py`` (remote code), and a stand-in such as ``LlamaTokenizer``
gives different ids. This module describes what model-zoo's native tokenizer
(``runner/tokenizer.py``) does in the declarative JSON that ``tokenizers`` executes, so an
engine gets the same ids with no code from the checkpoint:

* **added tokens** (``added_tokens_decoder`` plus bos/eos/unk/pad) are split off first, on the
  raw text, longest match first, with their lstrip/rstrip: ``normalized: false``;
* every other segment is **normalized on its own**, as the native tokenizer calls SentencePiece
  on each segment: the charsmap (when the model has one), extra-whitespace removal (when on),
  the dummy ``▁`` prefix (``Prepend``, so every segment gets one) and spaces as ``▁``;
* SentencePiece **user-defined pieces** (InternLM2's ``[UNUSED_TOKEN_*]``) are matched whole in
  the normalized text, as SentencePiece's own prefix matcher does: ``normalized: true``;
* the **BPE model** has the SentencePiece vocabulary (added tokens under their own text) and
  merges derived from it: every split of a piece into two pieces, ranked by the merged
  piece's score, which is the order SentencePiece merges in; byte fallback and unk fusing as
  SentencePiece does them;
* the **post-processor** adds bos/eos as ``add_bos_token``/``add_eos_token`` say, and the
  **decoder** undoes ``▁`` and byte fallback and drops the dummy prefix.

Only BPE SentencePiece models are converted (every InternLM tokenizer is one); anything else is
an error that says so. ``tests/test_export_tokenizer.py`` proves the ids equal on a corpus.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from ..errors import TokenizerExportError
from .spm_model import ModelType, PieceType, SpmModel, parse_spm_model

if TYPE_CHECKING:  # pragma: no cover
    from ..runner.tokenizer import InternLMTokenizer

SPACE = "\u2581"  # SentencePiece's visible space, "▁"


def _token(
    content: str,
    *,
    id: int,
    special: bool,
    normalized: bool,
    lstrip: bool = False,
    rstrip: bool = False,
) -> dict[str, Any]:
    return {
        "id": id,
        "content": content,
        "single_word": False,
        "lstrip": lstrip,
        "rstrip": rstrip,
        "normalized": normalized,
        "special": special,
    }


def _alternation(texts: list[str]) -> str:
    import re

    return "|".join(re.escape(t) for t in sorted(texts, key=len, reverse=True))


def _normalizer(model: SpmModel, whole_pieces: list[str]) -> dict[str, Any] | None:
    """SentencePiece's normalization of one segment; ``whole_pieces`` are the user-defined pieces.

    ``tokenizers`` also normalizes the text of ``normalized`` added tokens (to match them in
    normalized text), so the dummy prefix is added to every segment except one that is exactly a
    user-defined piece: the piece's own text must stay as it is. (A segment that is nothing but
    a user-defined piece therefore misses its ``▁``, the one case where the ids differ.)
    """
    steps: list[dict[str, Any]] = []
    if model.precompiled_charsmap:
        steps.append(
            {
                "type": "Precompiled",
                "precompiled_charsmap": base64.b64encode(model.precompiled_charsmap).decode(),
            }
        )
    if model.remove_extra_whitespaces:  # SentencePiece: no leading/trailing spaces, runs of one
        steps.append({"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "})
        steps.append({"type": "Replace", "pattern": {"Regex": r"\A | \z"}, "content": ""})
    if model.add_dummy_prefix and whole_pieces:
        steps.append(
            {
                "type": "Replace",
                "pattern": {"Regex": f"\\A(?!(?:{_alternation(whole_pieces)})\\z)"},
                "content": SPACE,
            }
        )
    elif model.add_dummy_prefix:
        steps.append({"type": "Prepend", "prepend": SPACE})
    if model.escape_whitespaces:
        steps.append({"type": "Replace", "pattern": {"String": " "}, "content": SPACE})
    return {"type": "Sequence", "normalizers": steps} if steps else None


def _decoder(model: SpmModel, boundaries: list[str]) -> dict[str, Any]:
    """Undo ``▁`` and byte fallback, then drop the dummy prefix of each run of ordinary tokens.

    The native tokenizer decodes each run between added tokens (``boundaries``) on its own, and
    SentencePiece drops the run's leading ``▁``; after ``Fuse`` that is one space at the start or
    right after an added token. (With ``skip_special_tokens`` the skipped tokens are gone before
    the decoder runs, so two runs around one join with a space that the native decoder drops.)
    """
    steps: list[dict[str, Any]] = [
        {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
    ]
    if model.add_dummy_prefix:
        after = f"|(?<={_alternation(boundaries)}) " if boundaries else ""
        steps.append({"type": "Replace", "pattern": {"Regex": f"\\A {after}"}, "content": ""})
    return {"type": "Sequence", "decoders": steps}


def _merges(model: SpmModel, vocab_text: list[str]) -> list[list[str]]:
    """Every (left, right) whose concatenation is a piece, in SentencePiece's merge order.

    SentencePiece BPE repeatedly merges the adjacent pair whose concatenation is the piece with
    the highest score (leftmost on ties); ``tokenizers`` merges the pair with the lowest rank.
    Ranking each split by its result's score (then id) gives the same choices. Only normal
    pieces take part: control, byte and user-defined pieces are never merged by SentencePiece.
    """
    normal = {p.text: i for i, p in enumerate(model.pieces) if p.type == PieceType.NORMAL}
    ranked: list[tuple[float, int, int, str, str]] = []
    for text, merged_id in normal.items():
        for cut in range(1, len(text)):
            left, right = text[:cut], text[cut:]
            if left in normal and right in normal:
                ranked.append(
                    (-model.pieces[merged_id].score, merged_id, normal[left], left, right)
                )
    ranked.sort()
    # Names in the vocabulary may differ from SentencePiece's (an added token's text): the merges
    # must name the vocabulary's entries.
    return [[vocab_text[normal[left]], vocab_text[normal[right]]] for *_k, left, right in ranked]


def tokenizer_json(
    tok: InternLMTokenizer, model_bytes: bytes, *, reward_token_id: int | None = None
) -> dict[str, Any]:
    """The ``tokenizer.json`` document for ``tok`` (whose SentencePiece file is ``model_bytes``).

    ``reward_token_id``: the export of a reward model appends it (see :func:`post_processor`).
    """
    try:
        model = parse_spm_model(model_bytes)
    except ValueError as exc:
        raise TokenizerExportError(f"tokenizer.model cannot be read ({exc})") from None
    if model.model_type != ModelType.BPE:
        raise TokenizerExportError(
            f"tokenizer.model is a SentencePiece {model.model_type.name} model; only BPE models "
            "(every InternLM tokenizer) are converted"
        )
    if model.treat_whitespace_as_suffix:
        raise TokenizerExportError(
            "tokenizer.model puts whitespace after words (treat_whitespace_as_suffix)"
        )

    size = len(model.pieces)
    vocab_text = [p.text for p in model.pieces]
    added_ids = sorted(tok.id_to_added)
    extra_ids = [i for i in added_ids if i >= size]
    if extra_ids and extra_ids != list(range(size, size + len(extra_ids))):
        raise TokenizerExportError(
            f"added token ids {extra_ids} beyond the SentencePiece vocabulary ({size}) leave gaps"
        )
    vocab_text += [tok.id_to_added[i].content for i in extra_ids]
    for i in added_ids:  # an added token takes over its piece's id under its own text
        vocab_text[i] = tok.id_to_added[i].content
    seen: dict[str, int] = {}
    for i, text in enumerate(vocab_text):
        if text in seen:
            raise TokenizerExportError(f"token {text!r} would have two ids ({seen[text]} and {i})")
        seen[text] = i

    added: list[dict[str, Any]] = []
    for i in added_ids:
        t = tok.id_to_added[i]
        added.append(
            _token(
                t.content,
                id=i,
                special=t.special,
                normalized=False,
                lstrip=t.lstrip,
                rstrip=t.rstrip,
            )
        )
    # User-defined pieces that no added token renamed: SentencePiece keeps them whole.
    whole = [
        p.text
        for i, p in enumerate(model.pieces)
        if p.type == PieceType.USER_DEFINED and i not in tok.id_to_added
    ]
    added += [_token(text, id=seen[text], special=False, normalized=True) for text in whole]

    bpe = {
        "type": "BPE",
        "dropout": None,
        "unk_token": vocab_text[
            next(i for i, p in enumerate(model.pieces) if p.type == PieceType.UNKNOWN)
        ]
        if any(p.type == PieceType.UNKNOWN for p in model.pieces)
        else None,
        "continuing_subword_prefix": None,
        "end_of_word_suffix": None,
        "fuse_unk": True,
        "byte_fallback": model.byte_fallback,
        "ignore_merges": False,
        "vocab": {text: i for i, text in enumerate(vocab_text)},
        "merges": _merges(model, vocab_text),
    }
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": _normalizer(model, whole),
        "pre_tokenizer": None,
        "post_processor": post_processor(tok, reward_token_id=reward_token_id),
        "decoder": _decoder(model, [tok.id_to_added[i].content for i in added_ids]),
        "model": bpe,
    }


def post_processor(tok: InternLMTokenizer, *, reward_token_id: int | None = None) -> dict[str, Any]:
    """What ``encode(add_special_tokens=True)`` adds around a text, as ``TemplateProcessing``.

    A language model gets bos/eos as ``add_bos_token``/``add_eos_token`` say, like the native
    tokenizer. A reward model (``reward_token_id``) gets no bos and the reward token appended:
    InternLM2-Reward scores the chat-templated conversation (which carries its own ``<s>``)
    followed by that token, and engines' ``/pooling`` endpoints tokenize the text they are sent
    with special tokens on but append nothing themselves, so the tokenizer does it.
    """
    if reward_token_id is not None:
        before: list[int] = []
        after = [reward_token_id]
    else:
        before = [tok.bos_token_id] if tok.add_bos_token and tok.bos_token_id is not None else []
        after = [tok.eos_token_id] if tok.add_eos_token and tok.eos_token_id is not None else []

    def special(i: int) -> dict[str, Any]:
        return {"SpecialToken": {"id": tok.id_to_token(i), "type_id": 0}}

    def seq(name: str, type_id: int) -> dict[str, Any]:
        return {"Sequence": {"id": name, "type_id": type_id}}

    single = [special(i) for i in before] + [seq("A", 0)] + [special(i) for i in after]
    pair = single + [special(i) for i in before] + [seq("B", 1)] + [special(i) for i in after]
    specials = {
        tok.id_to_token(i): {"id": tok.id_to_token(i), "ids": [i], "tokens": [tok.id_to_token(i)]}
        for i in [*before, *after]
    }
    return {
        "type": "TemplateProcessing",
        "single": single,
        "pair": pair,
        "special_tokens": specials,
    }
