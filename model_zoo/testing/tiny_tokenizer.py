"""Real SentencePiece tokenizers for the tiny checkpoints, trained at build time.

Each family's tokenizer is laid out like the published one:

* InternLM2 (also 2.5, Math and Reward): ``tokenizer.model`` ends with reserved pieces
  ``[UNUSED_TOKEN_130]`` .. ``[UNUSED_TOKEN_146]``. The chat tokens (``<|im_start|>`` and friends)
  are NOT pieces of the model: ``tokenizer_config.json``'s ``added_tokens_decoder`` renames
  ``[UNUSED_TOKEN_141..146]`` to them, exactly as the real checkpoints do. The reward token
  ``[UNUSED_TOKEN_130]`` stays a piece of its own (``reward_token_id`` in config.json).
* POLAR: InternLM2's layout plus the reserved piece ``[UNUSED_TOKEN_0]`` (id 92397 in the real
  vocabulary, just before the other reserved pieces), which ``added_tokens_decoder`` renames to
  the special token ``<|reward|>``, POLAR's separator; ``[UNUSED_TOKEN_130]`` stays the plain
  reward piece it writes at the end of its text.
* InternLM3 and InternLM v1: the special tokens are literal pieces at the end of the vocabulary,
  also listed in ``added_tokens_decoder``.

Every reserved or special piece is a SentencePiece user-defined symbol, so SentencePiece itself
keeps each one whole. Training is single-threaded on a fixed corpus: the same inputs give the
same bytes (cached per process).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from ..errors import MissingDependencyError
from ..runner import spm_proto as sp
from .tiny_corpus import corpus_lines

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
TINY_VOCAB_SIZE = 1024  # pieces in every tiny tokenizer (and the tiny config's vocab_size)

_CHATML = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_V1_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|System|>:' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|User|>:' + message['content'] + '<eoh>\n' }}"
    "{% else %}{{ '<|Bot|>:' + message['content'] + '<eoa>\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|Bot|>:' }}{% endif %}"
)
_CHAT_TOKENS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|action_start|>",
    "<|action_end|>",
    "<|interpreter|>",
    "<|plugin|>",
)


@dataclass(frozen=True)
class TokenizerSpec:
    """How one family's tokenizer files look."""

    tail_pieces: tuple[str, ...]  # user-defined pieces placed at the end of the vocabulary
    added_tokens: Mapping[str, str]  # special token text -> the piece whose id it takes
    tokenizer_class: str
    auto_map: tuple[str, str | None]
    chat_template: str
    pad_token: str = EOS
    extra_config: Mapping[str, object] = field(default_factory=dict)


_INTERNLM2 = TokenizerSpec(
    tail_pieces=tuple(f"[UNUSED_TOKEN_{k}]" for k in range(130, 147)),
    # The published InternLM2 mapping: <|im_start|> is [UNUSED_TOKEN_146], and so on downwards.
    added_tokens={tok: f"[UNUSED_TOKEN_{146 - i}]" for i, tok in enumerate(_CHAT_TOKENS)},
    tokenizer_class="InternLM2Tokenizer",
    auto_map=(
        "tokenization_internlm2.InternLM2Tokenizer",
        "tokenization_internlm2_fast.InternLM2TokenizerFast",
    ),
    chat_template=_CHATML,
    extra_config={"decode_with_prefix_space": False, "sp_model_kwargs": None},
)
_POLAR = TokenizerSpec(
    tail_pieces=("[UNUSED_TOKEN_0]", *_INTERNLM2.tail_pieces),
    added_tokens={"<|reward|>": "[UNUSED_TOKEN_0]", **_INTERNLM2.added_tokens},
    tokenizer_class=_INTERNLM2.tokenizer_class,
    auto_map=_INTERNLM2.auto_map,
    chat_template=_CHATML,
    extra_config=_INTERNLM2.extra_config,
)
_INTERNLM3_TOKENS = _CHAT_TOKENS + (
    "<restate>",
    "</restate>",
    "<planning>",
    "</planning>",
    "<review>",
    "</review>",
)
_INTERNLM3 = TokenizerSpec(
    tail_pieces=_INTERNLM3_TOKENS,
    added_tokens={tok: tok for tok in _INTERNLM3_TOKENS},
    tokenizer_class="InternLM3Tokenizer",
    auto_map=("tokenization_internlm3.InternLM3Tokenizer", None),
    chat_template=_CHATML,
    extra_config={"spaces_between_special_tokens": False, "sp_model_kwargs": {}},
)
_V1_TOKENS = ("<|System|>", "<|User|>", "<|Bot|>", "<eoh>", "<eoa>")
_INTERNLM1 = TokenizerSpec(
    tail_pieces=_V1_TOKENS,
    added_tokens={tok: tok for tok in _V1_TOKENS},
    tokenizer_class="InternLMTokenizer",
    auto_map=("tokenization_internlm.InternLMTokenizer", None),
    chat_template=_V1_TEMPLATE,
    pad_token=UNK,
)

# Tokenizer family of each tiny architecture. The reward model shares InternLM2's tokenizer.
TOKENIZER_SPECS: dict[str, TokenizerSpec] = {
    "internlm2": _INTERNLM2,
    "internlm2-reward": _INTERNLM2,
    "polar": _POLAR,
    "internlm3": _INTERNLM3,
    "internlm": _INTERNLM1,
}


def special_token_ids(arch: str, vocab_size: int = TINY_VOCAB_SIZE) -> dict[str, int]:
    """Id of every special token and reserved piece in ``arch``'s tiny tokenizer.

    Keys are ``<unk>``, ``<s>``, ``</s>``, every reserved piece (``[UNUSED_TOKEN_130]``...) and
    every added token (``<|im_start|>``...).
    """
    spec = TOKENIZER_SPECS[arch]
    first = vocab_size - len(spec.tail_pieces)
    ids = {UNK: 0, BOS: 1, EOS: 2}
    ids.update({piece: first + i for i, piece in enumerate(spec.tail_pieces)})
    ids.update({tok: ids[piece] for tok, piece in spec.added_tokens.items()})
    return ids


def tokenizer_files(arch: str, vocab_size: int = TINY_VOCAB_SIZE) -> dict[str, bytes]:
    """The tokenizer files of ``arch``'s tiny checkpoint, by file name."""
    spec = TOKENIZER_SPECS[arch]
    model = train_sentencepiece(spec.tail_pieces, vocab_size)
    ids = special_token_ids(arch, vocab_size)
    decoder = {str(ids[tok]): _added_token(tok) for tok in (UNK, BOS, EOS, *spec.added_tokens)}
    specials = list(spec.added_tokens)
    config: dict[str, object] = {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": specials,
        "auto_map": {"AutoTokenizer": list(spec.auto_map)},
        "bos_token": BOS,
        "chat_template": spec.chat_template,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS,
        "model_max_length": 1000000000000000019884624838656,
        "pad_token": spec.pad_token,
        "tokenizer_class": spec.tokenizer_class,
        "unk_token": UNK,
        **spec.extra_config,
    }
    special_map = {
        "additional_special_tokens": specials,
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": spec.pad_token,
        "unk_token": UNK,
    }
    return {
        "tokenizer.model": model,
        "tokenizer_config.json": dump_json(config),
        "special_tokens_map.json": dump_json(special_map),
    }


def dump_json(data: object) -> bytes:
    """JSON the way transformers writes its files: sorted keys, indent 2, trailing newline."""
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _added_token(content: str) -> dict[str, object]:
    return {
        "content": content,
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
        "special": True,
    }


@lru_cache(maxsize=16)
def train_sentencepiece(tail_pieces: tuple[str, ...], vocab_size: int = TINY_VOCAB_SIZE) -> bytes:
    """Train a BPE SentencePiece model with byte fallback; ``tail_pieces`` get the last ids.

    unk 0, bos 1, eos 2, no pad piece (pad reuses eos or unk), digits split, whitespace and
    newlines kept as they are (identity normalisation), Llama-style dummy prefix.
    """
    try:
        import sentencepiece as spm
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise MissingDependencyError(
            "sentencepiece", extra="runner", feature="building tiny checkpoints"
        ) from exc

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus_lines() * 3),
        model_writer=out,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        character_coverage=1.0,
        split_digits=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        user_defined_symbols=list(tail_pieces),
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        add_dummy_prefix=True,
        num_threads=1,
        minloglevel=2,
    )
    return move_pieces_to_end(out.getvalue(), tail_pieces)


# ------------------------------------------------------------ protobuf, by hand
# SentencePiece writes user-defined symbols right after <unk>/<s>/</s>; the published InternLM
# tokenizers keep their reserved and special pieces at the end of the vocabulary. A piece's id is
# its position in ModelProto.pieces (field 1), so moving those entries moves the ids. The wire
# format is simple enough to edit without the protobuf package (``runner/spm_proto.py``).


def _piece_text(piece_message: int | bytes) -> str:
    if not isinstance(piece_message, bytes):
        return ""
    for f in sp.read_fields(piece_message):
        if f.number == sp.PIECE_TEXT and isinstance(f.value, bytes):
            return f.value.decode("utf-8")
    return ""


def move_pieces_to_end(model: bytes, tail: Sequence[str]) -> bytes:
    """Return ``model`` with the pieces named in ``tail`` moved, in that order, to the end."""
    fields = sp.read_fields(model)
    pieces = [(f.raw, _piece_text(f.value)) for f in fields if f.number == sp.PIECES]
    by_text = {text: raw for raw, text in pieces}
    missing = [t for t in tail if t not in by_text]
    if missing:
        raise ValueError(f"pieces not in the model: {missing}")
    wanted = set(tail)
    ordered = [raw for raw, text in pieces if text not in wanted] + [by_text[t] for t in tail]
    rest = [f.raw for f in fields if f.number != sp.PIECES]
    return b"".join(ordered) + b"".join(rest)
