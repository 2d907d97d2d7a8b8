"""Checkpoint tensor names -> the native (Llama-layout) module's parameters.

Every InternLM family maps exactly onto transformers' Llama modules:

- InternLM2/2.5/Math/Reward rename their tensors and pack q, k and v into one ``wqkv`` whose
  rows are grouped per key/value head (``G`` query heads, then that group's key head, then
  its value head; G = heads / kv_heads). ``split_wqkv`` undoes that with views and
  materialises each of q, k and v exactly once.
- InternLM3 and InternLM v1 already use Llama's names.

``plan`` checks a checkpoint's tensor list against the architecture before anything is
loaded: a missing or unexpected tensor, or a shape that does not match, is an error naming
it. Rotary ``inv_freq`` buffers that old exports carry are the only tensors skipped on purpose
(they are recomputed from config.json).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import IncompatibleCheckpointError
from .config import ModelSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch

Shape = tuple[int, ...]
Splitter = Callable[["torch.Tensor"], list["torch.Tensor"]]

# Buffers some exports save although they are derived from config.json; skipped on purpose.
ACCOUNTED_FOR = re.compile(r"(^|\.)rotary_emb\.inv_freq$")


# (piece index, first source row, rows, first destination row): how to read a packed tensor
# straight into its pieces, block by block, without materialising the packed tensor.
Block = tuple[int, int, int, int]


@dataclass(frozen=True)
class Rule:
    """One checkpoint tensor: its expected shape and the parameter(s) it becomes."""

    source: str
    shape: Shape
    targets: tuple[str, ...]
    split: Splitter | None = None  # in-memory split (for tensors already read)
    piece_rows: tuple[int, ...] = ()  # rows of each piece, when ``blocks`` is set
    blocks: tuple[Block, ...] = ()


def wqkv_blocks(spec: ModelSpec) -> tuple[tuple[int, ...], tuple[Block, ...]]:
    """Row blocks of the grouped ``wqkv``: per kv group, G query heads, one key, one value head."""
    g, d, kv = spec.groups, spec.head_dim, spec.num_key_value_heads
    blocks: list[Block] = []
    for grp in range(kv):
        first = grp * (g + 2) * d
        blocks += [
            (0, first, g * d, grp * g * d),
            (1, first + g * d, d, grp * d),
            (2, first + (g + 1) * d, d, grp * d),
        ]
    return (kv * g * d, kv * d, kv * d), tuple(blocks)


def split_wqkv(w: torch.Tensor, spec: ModelSpec) -> list[torch.Tensor]:
    """Unpack InternLM2's grouped ``wqkv`` (weight or bias) into contiguous q, k, v."""
    g, d, kv = spec.groups, spec.head_dim, spec.num_key_value_heads
    grouped = w.view(kv, g + 2, d, *w.shape[1:])
    rest = tuple(w.shape[1:])
    q = grouped[:, :g].reshape(kv * g * d, *rest)
    k = grouped[:, g].reshape(kv * d, *rest)
    v = grouped[:, g + 1].reshape(kv * d, *rest)
    return [q.contiguous(), k.contiguous(), v.contiguous()]


def pack_wqkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """The inverse of ``split_wqkv`` (used to write InternLM2-layout test checkpoints)."""
    import torch

    g, d, kv = spec.groups, spec.head_dim, spec.num_key_value_heads
    rest = tuple(q.shape[1:])
    qg = q.reshape(kv, g, d, *rest)
    kg = k.reshape(kv, 1, d, *rest)
    vg = v.reshape(kv, 1, d, *rest)
    return torch.cat([qg, kg, vg], dim=1).reshape(kv * (g + 2) * d, *rest).contiguous()


def _layer_rules(spec: ModelSpec, i: int) -> list[Rule]:
    h, inter = spec.hidden_size, spec.intermediate_size
    qd, kvd = spec.num_attention_heads * spec.head_dim, spec.num_key_value_heads * spec.head_dim
    t = f"model.layers.{i}."
    attn, mlp = t + "self_attn.", t + "mlp."
    if spec.family == "internlm2":
        s = f"model.layers.{i}."
        packed = (qd + 2 * kvd,)
        rows, blocks = wqkv_blocks(spec)
        rules = [
            Rule(
                s + "attention.wqkv.weight",
                (packed[0], h),
                (attn + "q_proj.weight", attn + "k_proj.weight", attn + "v_proj.weight"),
                lambda w: split_wqkv(w, spec),
                rows,
                blocks,
            ),
            Rule(s + "attention.wo.weight", (h, qd), (attn + "o_proj.weight",)),
            Rule(s + "feed_forward.w1.weight", (inter, h), (mlp + "gate_proj.weight",)),
            Rule(s + "feed_forward.w3.weight", (inter, h), (mlp + "up_proj.weight",)),
            Rule(s + "feed_forward.w2.weight", (h, inter), (mlp + "down_proj.weight",)),
            Rule(s + "attention_norm.weight", (h,), (t + "input_layernorm.weight",)),
            Rule(s + "ffn_norm.weight", (h,), (t + "post_attention_layernorm.weight",)),
        ]
        if spec.qkv_bias:
            rules.append(
                Rule(
                    s + "attention.wqkv.bias",
                    packed,
                    (attn + "q_proj.bias", attn + "k_proj.bias", attn + "v_proj.bias"),
                    lambda b: split_wqkv(b, spec),
                    rows,
                    blocks,
                )
            )
        if spec.o_bias:
            rules.append(Rule(s + "attention.wo.bias", (h,), (attn + "o_proj.bias",)))
        return rules
    shapes: dict[str, Shape] = {
        attn + "q_proj.weight": (qd, h),
        attn + "k_proj.weight": (kvd, h),
        attn + "v_proj.weight": (kvd, h),
        attn + "o_proj.weight": (h, qd),
        mlp + "gate_proj.weight": (inter, h),
        mlp + "up_proj.weight": (inter, h),
        mlp + "down_proj.weight": (h, inter),
        t + "input_layernorm.weight": (h,),
        t + "post_attention_layernorm.weight": (h,),
    }
    if spec.qkv_bias:
        shapes.update(
            {
                attn + "q_proj.bias": (qd,),
                attn + "k_proj.bias": (kvd,),
                attn + "v_proj.bias": (kvd,),
            }
        )
    if spec.o_bias:
        shapes[attn + "o_proj.bias"] = (h,)
    if spec.mlp_bias:
        shapes.update(
            {
                mlp + "gate_proj.bias": (inter,),
                mlp + "up_proj.bias": (inter,),
                mlp + "down_proj.bias": (h,),
            }
        )
    return [Rule(name, shape, (name,)) for name, shape in shapes.items()]


def rules_for(spec: ModelSpec) -> dict[str, Rule]:
    """Every tensor a checkpoint of this architecture must hold, keyed by its name."""
    h, vocab = spec.hidden_size, spec.vocab_size
    emb = (
        "model.tok_embeddings.weight" if spec.family == "internlm2" else "model.embed_tokens.weight"
    )
    rules = [
        Rule(emb, (vocab, h), ("model.embed_tokens.weight",)),
        Rule("model.norm.weight", (h,), ("model.norm.weight",)),
    ]
    for i in range(spec.num_hidden_layers):
        rules += _layer_rules(spec, i)
    if spec.is_reward:
        rules.append(Rule("v_head.weight", (1, h), ("v_head.weight",)))
    elif not spec.tie_word_embeddings:
        rules.append(Rule(_head_name(spec), (vocab, h), ("lm_head.weight",)))
    return {r.source: r for r in rules}


def _head_name(spec: ModelSpec) -> str:
    return "output.weight" if spec.family == "internlm2" else "lm_head.weight"


def _listing(names: Iterable[str], limit: int = 8) -> str:
    names = sorted(names)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def plan(
    spec: ModelSpec, shapes: dict[str, Shape], *, where: str, files: dict[str, str] | None = None
) -> dict[str, Rule]:
    """Check a checkpoint's ``{name: shape}`` against the architecture; return the rules to apply.

    Raises IncompatibleCheckpointError naming every missing, unexpected or mis-shaped tensor.
    """
    rules = rules_for(spec)
    tied_head = _head_name(spec) if spec.tie_word_embeddings and not spec.is_reward else None
    if tied_head is not None and tied_head in shapes:
        # Tied checkpoints saved with torch.save (or by some exporters) still carry the head.
        # It is read and must equal the embedding (load_native checks); never silently dropped.
        rules[tied_head] = Rule(tied_head, (spec.vocab_size, spec.hidden_size), ("lm_head.weight",))
    present = {n for n in shapes if not ACCOUNTED_FOR.search(n)}
    missing = set(rules) - present
    unexpected = present - set(rules)
    problems = []
    if missing:
        problems.append(f"missing tensor(s) {_listing(missing)}")
    if unexpected:
        holders = sorted({files[n] for n in unexpected if n in files}) if files else []
        where_from = f" (in {', '.join(holders[:4])})" if holders else ""
        problems.append(f"unexpected tensor(s) {_listing(unexpected)}{where_from}")
    bad_shapes = [
        f"{n} has shape {list(shapes[n])}, expected {list(rules[n].shape)}"
        for n in sorted(present & set(rules))
        if tuple(shapes[n]) != rules[n].shape
    ]
    if bad_shapes:
        problems.append("; ".join(bad_shapes[:8]))
    quant = spec.raw.get("quantization_config")
    if problems and isinstance(quant, dict):
        method = quant.get("quant_method") or quant.get("quant_type") or "pre-quantized"
        raise IncompatibleCheckpointError(
            where,
            f"this is a {method} checkpoint (quantization_config in config.json, tensors such as "
            f"{_listing(unexpected or missing, 3)}), which the native loader does not read",
            hint="Load the unquantized release and pass quantization='8bit' or '4bit', "
            "or serve this one with an engine that reads it (backend='vllm').",
        )
    if problems:
        raise IncompatibleCheckpointError(
            where,
            f"the tensors do not match {spec.architecture} as config.json describes it: "
            + "; ".join(problems),
            hint="The checkpoint may be incomplete or belong to another model; "
            "run `model-zoo verify` on it, or check config.json.",
        )
    return rules
