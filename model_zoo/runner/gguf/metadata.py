"""A GGUF file's header as the runner needs it: a ``ModelSpec``, the vocabulary, the tensors.

llama.cpp's converter writes InternLM2/2.5 as the ``internlm2`` architecture and InternLM3 as
plain ``llama`` (InternLM3 *is* Llama up to its rotary scaling), with the hyper-parameters under
``{arch}.*`` keys and a SentencePiece vocabulary (``tokenizer.ggml.model = "llama"``) as token
texts, scores and types. Things the format does not carry, and what model-zoo does about them:

- Dynamic NTK rotary scaling: the converter writes only linear (and YaRN) scaling, so an
  InternLM GGUF has none and llama.cpp runs plain RoPE. The spec here does the same, which is
  identical to the checkpoint within ``context_length``; ``rope_scaling=`` can restore the
  parent checkpoint's scaling for longer sequences (``load_gguf`` takes it from the registry).
- The original ``tokenizer.model``: rebuilt from the tokens, scores and types (``vocab``).

Reading the header needs the ``gguf`` package (llama.cpp's own reader); no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import IncompatibleCheckpointError, MissingDependencyError
from ...registry.info import RopeScaling
from ..config import ModelSpec

# llama.cpp's token types (gguf.TokenType); SentencePiece's piece types use the same numbers.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# The architectures InternLM GGUF files are written as.
ARCHITECTURES = ("internlm2", "llama")


@dataclass(frozen=True)
class GGUFVocab:
    """The SentencePiece vocabulary and special-token settings from ``tokenizer.*`` keys."""

    model: str
    tokens: list[str]
    scores: list[float]
    types: list[int]
    bos_id: int | None = None
    eos_id: int | None = None
    unk_id: int | None = None
    pad_id: int | None = None
    add_bos: bool = True
    add_eos: bool = False
    add_space_prefix: bool = True
    remove_extra_whitespaces: bool = False
    chat_template: str | None = None

    def id_of(self, text: str) -> int | None:
        try:
            return self.tokens.index(text)
        except ValueError:
            return None


@dataclass(frozen=True)
class GGUFTensorInfo:
    """One tensor: its GGUF name, quantization type name and shape in torch order (rows first)."""

    name: str
    qtype: str
    shape: tuple[int, ...]
    n_bytes: int


@dataclass(frozen=True)
class GGUFCheckpoint:
    """What ``read_gguf`` found in one file; ``reader`` gives the tensor data to ``load``."""

    path: Path
    arch: str
    spec: ModelSpec
    vocab: GGUFVocab
    tensors: dict[str, GGUFTensorInfo]
    file_type: str | None = None  # llama.cpp's name of the quantization mix, e.g. "Q4_K_M"
    name: str | None = None  # general.name
    reader: Any = field(default=None, repr=False, compare=False)


def require_gguf() -> Any:
    """The ``gguf`` package, or MissingDependencyError saying which extra installs it."""
    try:
        import gguf
    except ImportError:
        raise MissingDependencyError("gguf", extra="gguf", feature="reading GGUF files") from None
    return gguf


def _value(reader: Any, key: str, default: Any = None) -> Any:
    fld = reader.fields.get(key)
    if fld is None:
        return default
    return fld.contents()


def _tokens(reader: Any, key: str) -> list[str]:
    """A string array, decoding bytes that are not UTF-8 with replacement rather than failing."""
    fld = reader.fields.get(key)
    if fld is None:
        return []
    return [bytes(fld.parts[i]).decode("utf-8", errors="replace") for i in fld.data]


def file_type_name(value: int | None) -> str | None:
    """``general.file_type`` as llama.cpp names it (``MOSTLY_Q4_K_M`` -> ``Q4_K_M``)."""
    if value is None:
        return None
    gguf = require_gguf()
    try:
        name = gguf.LlamaFileType(int(value)).name
    except ValueError:
        return str(value)
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def read_gguf(path: Path | str, *, rope_scaling: RopeScaling | None = None) -> GGUFCheckpoint:
    """Read a GGUF file's header (memory-mapped; no tensor data is touched).

    Raises IncompatibleCheckpointError for a file that is not GGUF, not an InternLM
    architecture, or whose tensors do not match its own hyper-parameters.
    """
    gguf = require_gguf()
    path = Path(path)
    where = str(path)
    try:
        reader = gguf.GGUFReader(str(path), "r")
    except (ValueError, OSError, IndexError) as exc:
        raise IncompatibleCheckpointError(where, f"is not a readable GGUF file ({exc})") from None
    arch = str(_value(reader, "general.architecture", ""))
    name = _value(reader, "general.name")
    vocab = _vocab(reader, where)
    tensors = {
        t.name: GGUFTensorInfo(
            t.name, t.tensor_type.name, tuple(int(d) for d in reversed(t.shape)), int(t.n_bytes)
        )
        for t in reader.tensors
    }
    spec = _spec(reader, arch, name, vocab, tensors, where, rope_scaling)
    return GGUFCheckpoint(
        path=path,
        arch=arch,
        spec=spec,
        vocab=vocab,
        tensors=tensors,
        file_type=file_type_name(_value(reader, "general.file_type")),
        name=name,
        reader=reader,
    )


def _vocab(reader: Any, where: str) -> GGUFVocab:
    model = str(_value(reader, "tokenizer.ggml.model", ""))
    if model != "llama":
        raise IncompatibleCheckpointError(
            where,
            f"has a {model or 'missing'!r} tokenizer; "
            "InternLM GGUF files carry SentencePiece ('llama')",
            hint="Convert the HuggingFace checkpoint with llama.cpp's convert_hf_to_gguf.py.",
        )
    tokens = _tokens(reader, "tokenizer.ggml.tokens")
    scores = [float(s) for s in (_value(reader, "tokenizer.ggml.scores") or [0.0] * len(tokens))]
    types = [
        int(t) for t in (_value(reader, "tokenizer.ggml.token_type") or [NORMAL] * len(tokens))
    ]
    if not tokens or len(scores) != len(tokens) or len(types) != len(tokens):
        raise IncompatibleCheckpointError(
            where, "has a vocabulary whose tokens, scores and types differ in length"
        )

    def ident(key: str) -> int | None:
        value = _value(reader, f"tokenizer.ggml.{key}")
        return int(value) if value is not None and 0 <= int(value) < len(tokens) else None

    return GGUFVocab(
        model=model,
        tokens=tokens,
        scores=scores,
        types=types,
        bos_id=ident("bos_token_id"),
        eos_id=ident("eos_token_id"),
        unk_id=ident("unknown_token_id"),
        pad_id=ident("padding_token_id"),
        add_bos=bool(_value(reader, "tokenizer.ggml.add_bos_token", True)),
        add_eos=bool(_value(reader, "tokenizer.ggml.add_eos_token", False)),
        add_space_prefix=bool(_value(reader, "tokenizer.ggml.add_space_prefix", True)),
        remove_extra_whitespaces=bool(
            _value(reader, "tokenizer.ggml.remove_extra_whitespaces", False)
        ),
        chat_template=_value(reader, "tokenizer.chat_template"),
    )


def family_of(arch: str, name: str | None, vocab: GGUFVocab, where: str) -> str:
    """``internlm2`` or ``internlm3``: the architecture key, else the name and vocabulary.

    InternLM3 is written as ``llama``; a llama GGUF is taken as InternLM only when its name or
    vocabulary says so, so that another Llama model is not run with InternLM's chat profile.
    """
    if arch == "internlm2":
        return "internlm2"
    if arch not in ARCHITECTURES:
        raise IncompatibleCheckpointError(
            where,
            f"architecture {arch or 'missing'!r} is not one InternLM GGUF files use "
            f"({', '.join(ARCHITECTURES)})",
        )
    label = (name or "").lower().replace("_", "").replace(".", "").replace("-", "").replace(" ", "")
    if "internlm3" in label or "<restate>" in vocab.tokens:
        return "internlm3"
    if "internlm2" in label or any(t.startswith("[UNUSED_TOKEN_") for t in vocab.tokens[-64:]):
        return "internlm2"
    raise IncompatibleCheckpointError(
        where,
        f"is a llama-architecture GGUF ({name or 'no general.name'}) "
        "that does not say it is InternLM",
        hint="model-zoo loads InternLM2/2.5/3 GGUF files; "
        "run other models with llama.cpp directly.",
    )


def _spec(
    reader: Any,
    arch: str,
    name: str | None,
    vocab: GGUFVocab,
    tensors: dict[str, GGUFTensorInfo],
    where: str,
    rope_scaling: RopeScaling | None,
) -> ModelSpec:
    family = family_of(arch, name, vocab, where)

    def hp(key: str, default: Any = None) -> Any:
        value = _value(reader, f"{arch}.{key}", default)
        if value is None:
            raise IncompatibleCheckpointError(where, f"lacks the key {arch}.{key}")
        return value

    hidden = int(hp("embedding_length"))
    heads = int(hp("attention.head_count"))
    kv_heads = int(hp("attention.head_count_kv", heads))
    head_dim = int(
        _value(reader, f"{arch}.attention.key_length")
        or _value(reader, f"{arch}.rope.dimension_count")
        or hidden // max(heads, 1)
    )
    emb = tensors.get("token_embd.weight")
    vocab_size = int(
        _value(reader, f"{arch}.vocab_size") or (emb.shape[0] if emb else len(vocab.tokens))
    )
    scaling = rope_scaling
    if scaling is None and _value(reader, f"{arch}.rope.scaling.type") == "linear":
        scaling = RopeScaling("linear", float(_value(reader, f"{arch}.rope.scaling.factor", 1.0)))
    eos = [i for i in (vocab.eos_id, vocab.id_of("</s>")) if i is not None]
    return ModelSpec(
        architecture="InternLM3ForCausalLM" if family == "internlm3" else "InternLM2ForCausalLM",
        family=family,  # type: ignore[arg-type]
        head="lm",
        hidden_size=hidden,
        intermediate_size=int(hp("feed_forward_length")),
        num_hidden_layers=int(hp("block_count")),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=vocab_size,
        max_position_embeddings=int(hp("context_length")),
        rope_theta=float(hp("rope.freq_base", 10000.0)),
        rope_scaling=scaling,
        rms_norm_eps=float(hp("attention.layer_norm_rms_epsilon")),
        qkv_bias="blk.0.attn_q.bias" in tensors,
        o_bias="blk.0.attn_output.bias" in tensors,
        mlp_bias=False,
        tie_word_embeddings="output.weight" not in tensors,
        bos_token_id=vocab.bos_id,
        eos_token_id=list(dict.fromkeys(eos)) or None,
        pad_token_id=vocab.pad_id,
        raw={"gguf.architecture": arch, "general.name": name},
    )
