"""Tiny GGUF files written from tiny HuggingFace checkpoints, laid out as llama.cpp's converter
does.

``write_gguf(hf_dir, out, outtype)`` follows ``convert_hf_to_gguf.py`` (``InternLM2Model``,
``InternLM3Model`` and the ``TextModel`` base) step by step, with the ``gguf`` package's own
writer, name map and special-vocabulary reader:

- architecture ``internlm2`` for InternLM2/2.5, ``llama`` for InternLM3; hyper-parameters under
  ``{arch}.*`` (dynamic rotary scaling is not written, as the converter does not);
- InternLM2's ``wqkv`` cut per key/value group into q, k, v; q and k rows permuted to ggml's
  interleaved rotary layout (``runner.gguf.layout.permute``);
- the SentencePiece vocabulary as texts, scores and types: InternLM2's ``[UNUSED_TOKEN_n]``
  pieces UNUSED, ``added_tokens_decoder`` entries renamed and typed CONTROL (special) or
  USER_DEFINED, ``<|im_end|>`` written as the eos id of chat models;
- 1-D tensors and norms in F32, every matrix in ``outtype``.

``outtype``: ``f32``, ``f16`` and ``q8_0`` are what the converter writes; ``q4_0`` and ``q5_0``
(the ``gguf`` package's encoders) and ``q4_k_m`` (``kquants``: Q4_K with Q6_K for the output,
attn_v and ffn_down matrices, the shape of llama-quantize's Q4_K_M mix) are what llama.cpp's
``llama-quantize`` writes. k-quants need matrices whose rows are a multiple of 256 values
(``TinyDims(hidden_size=256, intermediate_size=512)``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, UsageError

OUTTYPES = ("f32", "f16", "q8_0", "q4_0", "q5_0", "q4_k_m")


def _gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise MissingDependencyError("gguf", extra="gguf", feature="writing GGUF files") from None
    return gguf


def _hf_tensors(hf_dir: Path) -> dict[str, Any]:
    """Every tensor of the checkpoint as float32 numpy arrays (via torch: bfloat16 inputs)."""
    from safetensors import safe_open

    out: dict[str, Any] = {}
    for file in sorted(hf_dir.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as fh:
            for name in fh.keys():  # noqa: SIM118 (safe_open is not a dict)
                out[name] = fh.get_tensor(name).float().numpy()
    return out


def _add_dummy_prefix(model: bytes) -> bool:
    """``normalizer_spec.add_dummy_prefix`` of a SentencePiece model (the export's reading)."""
    from ..export.spm_model import parse_spm_model

    return parse_spm_model(model).add_dummy_prefix


def _vocab(
    hf_dir: Path, vocab_size: int, arch: str
) -> tuple[list[bytes], list[float], list[int], bool]:
    """Tokens, scores and types as ``InternLM2Model.set_vocab`` /
    ``_create_vocab_sentencepiece`` make them."""
    import sentencepiece as spm

    gguf = _gguf()
    tt = gguf.TokenType
    sp = spm.SentencePieceProcessor(model_file=str(hf_dir / "tokenizer.model"))
    tokens = [f"[PAD{i}]".encode() for i in range(vocab_size)]
    scores = [-10000.0] * vocab_size
    types = [int(tt.UNUSED)] * vocab_size
    for i in range(min(sp.get_piece_size(), vocab_size)):
        piece = sp.id_to_piece(i)
        kind = tt.NORMAL
        if sp.is_unknown(i):
            kind = tt.UNKNOWN
        elif sp.is_control(i):
            kind = tt.CONTROL
        elif sp.is_unused(i):
            kind = tt.UNUSED
        elif sp.is_byte(i):
            kind = tt.BYTE
        if arch == "internlm2" and piece.startswith("[UNUSED"):
            kind = tt.UNUSED
        text = piece.encode()
        if arch == "internlm2" and text == b"\x00":
            text = "\U0001f409".encode()  # the converter's stand-in for a NUL piece
        tokens[i], scores[i], types[i] = text, sp.get_score(i), int(kind)
    config = json.loads((hf_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    for key, data in (config.get("added_tokens_decoder") or {}).items():
        i = int(key)
        if i >= vocab_size:
            continue
        tokens[i] = str(data["content"]).encode()
        scores[i] = -1000.0
        types[i] = int(tt.CONTROL if data.get("special") else tt.USER_DEFINED)
    add_prefix = _add_dummy_prefix((hf_dir / "tokenizer.model").read_bytes())
    return tokens, scores, types, add_prefix


def _split_wqkv(w: Any, heads: int, kv_heads: int, hidden: int) -> tuple[Any, Any, Any]:
    groups, per = kv_heads, heads // kv_heads
    d = hidden // heads
    grouped = w.reshape(groups, per + 2, d, w.shape[-1])
    q = grouped[:, :per].reshape(-1, w.shape[-1])
    return q, grouped[:, -2].reshape(-1, w.shape[-1]), grouped[:, -1].reshape(-1, w.shape[-1])


def _matrix_type(name: str, outtype: str, gguf: Any) -> Any:
    q = gguf.GGMLQuantizationType
    if outtype == "q4_k_m":
        six = name == "output.weight" or name.endswith((".attn_v.weight", ".ffn_down.weight"))
        return q.Q6_K if six else q.Q4_K
    return {"f32": q.F32, "f16": q.F16, "q8_0": q.Q8_0, "q4_0": q.Q4_0, "q5_0": q.Q5_0}[outtype]


def _encode(values: Any, qtype: Any, gguf: Any) -> Any:
    import numpy as np

    q = gguf.GGMLQuantizationType
    if qtype == q.F32:
        return values.astype(np.float32)
    if qtype == q.F16:
        return values.astype(np.float16)
    if qtype in (q.Q4_K, q.Q6_K):
        from .kquants import quantize_q4_k, quantize_q6_k

        return (quantize_q4_k if qtype == q.Q4_K else quantize_q6_k)(values)
    return gguf.quants.quantize(values.astype(np.float32), qtype)


_FILE_TYPES = {
    "f32": "ALL_F32",
    "f16": "MOSTLY_F16",
    "q8_0": "MOSTLY_Q8_0",
    "q4_0": "MOSTLY_Q4_0",
    "q5_0": "MOSTLY_Q5_0",
    "q4_k_m": "MOSTLY_Q4_K_M",
}


def write_gguf(
    hf_dir: str | Path, out: str | Path, outtype: str = "f32", *, name: str | None = None
) -> Path:
    """Write ``hf_dir`` (an InternLM2 or InternLM3 checkpoint) as a GGUF file at ``out``."""
    from ..runner.gguf.layout import permute

    if outtype not in OUTTYPES:
        raise UsageError(
            f"unknown GGUF outtype {outtype!r}; use one of {', '.join(OUTTYPES)}.", outtype=outtype
        )
    gguf = _gguf()
    hf_dir, out = Path(hf_dir), Path(out)
    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    hf_arch = (config.get("architectures") or [""])[0]
    if hf_arch not in ("InternLM2ForCausalLM", "InternLM3ForCausalLM"):
        raise UsageError(
            f"write_gguf converts InternLM2 and InternLM3 checkpoints, not {hf_arch or 'this one'}."
        )
    internlm2 = hf_arch == "InternLM2ForCausalLM"
    arch = "internlm2" if internlm2 else "llama"
    model_arch = gguf.MODEL_ARCH.INTERNLM2 if internlm2 else gguf.MODEL_ARCH.LLAMA
    heads, kv_heads = int(config["num_attention_heads"]), int(config["num_key_value_heads"])
    hidden, layers = int(config["hidden_size"]), int(config["num_hidden_layers"])
    vocab_size = int(config["vocab_size"])

    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_name(name or hf_dir.name)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_block_count(layers)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(float(config["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    if "head_dim" in config:
        writer.add_key_length(int(config["head_dim"]))
        writer.add_value_length(int(config["head_dim"]))
    writer.add_file_type(gguf.LlamaFileType[_FILE_TYPES[outtype]])
    if not internlm2:
        writer.add_vocab_size(vocab_size)
        writer.add_rope_dimension_count(int(config.get("head_dim") or hidden // heads))

    tokens, scores, types, add_prefix = _vocab(
        hf_dir, vocab_size, "internlm2" if internlm2 else "internlm3"
    )
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    if internlm2:
        writer.add_add_space_prefix(add_prefix)
    special = gguf.SpecialVocab(hf_dir, n_vocab=len(tokens))
    end = next((i for i, t in enumerate(tokens) if t == b"<|im_end|>"), None)
    if end is not None and "eos" in special.special_token_ids:
        special.special_token_ids["eos"] = end  # the converter's chat-model eos
    special.add_to_gguf(writer, quiet=True)

    names = gguf.get_tensor_name_map(model_arch, layers)
    for hf_name, values in _hf_tensors(hf_dir).items():
        pieces: list[tuple[str, Any]]
        if internlm2 and hf_name.endswith("attention.wqkv.weight"):
            q, k, v = _split_wqkv(values, heads, kv_heads, hidden)
            blk = hf_name.split(".")[2]
            pieces = [
                (f"blk.{blk}.attn_q.weight", permute(q, heads)),
                (f"blk.{blk}.attn_k.weight", permute(k, kv_heads)),
                (f"blk.{blk}.attn_v.weight", v),
            ]
        else:
            new = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
            if new is None:
                raise UsageError(f"no GGUF name for tensor {hf_name}")
            if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
                values = permute(values, heads)
            elif hf_name.endswith(("k_proj.weight", "k_proj.bias")):
                values = permute(values, kv_heads)
            pieces = [(new, values)]
        for gguf_name, data in pieces:
            keep_f32 = (
                data.ndim <= 1
                or gguf_name.endswith("_norm.weight")
                or not gguf_name.endswith(".weight")
            )
            qtype = (
                gguf.GGMLQuantizationType.F32
                if keep_f32
                else _matrix_type(gguf_name, outtype, gguf)
            )
            writer.add_tensor(gguf_name, _encode(data, qtype, gguf), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
