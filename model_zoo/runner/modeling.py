"""The native modules InternLM checkpoints are loaded into: transformers' Llama, adjusted.

InternLM2/3/v1 are the Llama architecture up to names, wqkv packing (see ``convert``) and a few
per-family switches, so the model is a stock ``LlamaForCausalLM`` built on the meta device with:

- biases added where the family has them (v1 ``bias: true`` on all four attention projections;
  InternLM3's separate ``qkv_bias`` / ``bias``), which Llama's single switch cannot express;
- ``InternLMRotaryEmbedding`` in place of Llama's rotary module. It is stateless: the dynamic
  NTK base is computed from the current length on every call, exactly as InternLM's reference
  formula says, where transformers' dynamic rope keeps the longest length it has seen;
- for the reward model, ``InternLM2RewardModel``: the decoder (``.model``, a ``LlamaModel``) and
  ``.v_head`` (Linear(hidden, 1, bias=False)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .config import ModelSpec


def rope_inv_freq(
    spec: ModelSpec, seq_len: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Inverse rotary frequencies for a sequence of ``seq_len`` tokens.

    Dynamic NTK (InternLM's formula): once L > M,
    ``base' = base * ((factor * L / M) - (factor - 1)) ** (d / (d - 2))``.
    Linear scaling divides the frequencies by the factor (positions / factor).
    """
    d = spec.head_dim
    base = spec.rope_theta
    scaling = spec.rope_scaling
    m = spec.max_position_embeddings
    factor = (scaling.factor if scaling is not None else None) or 1.0  # config.json's default
    if scaling is not None and scaling.type == "dynamic" and seq_len > m:
        base = base * ((factor * seq_len / m) - (factor - 1)) ** (d / (d - 2))
    exponents = torch.arange(0, d, 2, dtype=torch.int64, device=device).float() / d
    inv_freq = 1.0 / (base**exponents)
    if scaling is not None and scaling.type == "linear":
        inv_freq = inv_freq / factor
    return inv_freq


class InternLMRotaryEmbedding(nn.Module):
    """Rotary cos/sin for Llama's attention, with InternLM's (stateless) dynamic NTK rule."""

    inv_freq: torch.Tensor  # a buffer (register_buffer), declared for type checkers

    def __init__(self, spec: ModelSpec, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("inv_freq", rope_inv_freq(spec, 0, device), persistent=False)

    def forward(
        self, x: torch.Tensor, position_ids: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        seq_len = int(position_ids.max().item()) + 1 if position_ids.numel() else 0
        scaling = self.spec.rope_scaling
        if (
            scaling is not None
            and scaling.type == "dynamic"
            and seq_len > self.spec.max_position_embeddings
        ):
            inv_freq = rope_inv_freq(self.spec, seq_len, x.device)
        else:
            inv_freq = self.inv_freq.to(x.device)
        with torch.autocast(device_type=x.device.type, enabled=False):
            freqs = position_ids[..., None].float() * inv_freq.float()
            emb = torch.cat((freqs, freqs), dim=-1)
            cos, sin = emb.cos(), emb.sin()
        return cos.to(x.dtype), sin.to(x.dtype)


def llama_config(
    spec: ModelSpec, *, attn: str | None = None, dtype: torch.dtype | None = None
) -> Any:
    """The LlamaConfig equivalent of an InternLM ModelSpec (rope handled by our module)."""
    from transformers import LlamaConfig

    kwargs: dict[str, Any] = dict(
        vocab_size=spec.vocab_size,
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        head_dim=spec.head_dim,
        hidden_act="silu",
        max_position_embeddings=spec.max_position_embeddings,
        rms_norm_eps=spec.rms_norm_eps,
        tie_word_embeddings=spec.tie_word_embeddings,
        attention_bias=False,
        mlp_bias=spec.mlp_bias,
        bos_token_id=spec.bos_token_id,
        eos_token_id=spec.eos_token_id,
        pad_token_id=spec.pad_token_id,
        rope_parameters={"rope_type": "default", "rope_theta": spec.rope_theta},
    )
    try:
        config = LlamaConfig(**kwargs)
    except TypeError:  # transformers 4.x spells rope as rope_theta / rope_scaling
        kwargs.pop("rope_parameters")
        kwargs["rope_theta"] = spec.rope_theta
        config = LlamaConfig(**kwargs)
    config._attn_implementation = attn or "sdpa"
    if dtype is not None:
        config.dtype = dtype
    return config


@dataclass
class RewardOutput:
    """What ``InternLM2RewardModel`` returns: one score per sequence (upstream's ``logits``)."""

    logits: torch.Tensor  # [batch, 1]: v_head at the last attended position
    last_hidden_state: torch.Tensor  # [batch, seq, hidden]


class InternLM2RewardModel(nn.Module):
    """InternLM2ForRewardModel: the decoder (``model``) and ``v_head``; no LM head.

    ``forward(input_ids, attention_mask)`` scores right-padded batches at each row's last
    attended position, as upstream does. ``hidden_states(...)`` returns the final hidden states
    for callers that read scores elsewhere (``v_head(hidden)[..., 0]`` gives per-token rewards).
    """

    def __init__(self, config: Any) -> None:
        super().__init__()
        from transformers import LlamaModel

        self.config = config
        self.model = LlamaModel(config)
        self.v_head = nn.Linear(config.hidden_size, 1, bias=False)

    def hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, use_cache=False
        ).last_hidden_state

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any
    ) -> RewardOutput:
        hidden = self.hidden_states(input_ids, attention_mask)
        token_scores = self.v_head(hidden.to(self.v_head.weight.device)).squeeze(-1)
        if attention_mask is None:
            last = torch.full(
                (input_ids.shape[0],), input_ids.shape[1] - 1, device=token_scores.device
            )
        else:
            mask = attention_mask.to(token_scores.device).long()
            positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
            last = (positions * mask).argmax(dim=1)
        scores = token_scores.gather(1, last.view(-1, 1).long())
        return RewardOutput(logits=scores, last_hidden_state=hidden)


def _give_bias(linear: nn.Linear) -> None:
    linear.bias = nn.Parameter(torch.empty(linear.out_features, device="meta"), requires_grad=False)


def build_meta_model(
    spec: ModelSpec, *, attn: str | None = None, dtype: torch.dtype | None = None
) -> nn.Module:
    """The empty (meta-device) native module for ``spec``; the loader fills its parameters."""
    config = llama_config(spec, attn=attn, dtype=dtype)
    with torch.device("meta"):
        if spec.is_reward:
            model: nn.Module = InternLM2RewardModel(config)
        else:
            from transformers import LlamaForCausalLM

            model = LlamaForCausalLM(config)
    decoder: Any = model.model  # submodules by name: torch types each as Tensor | Module
    for layer in decoder.layers:
        attn_mod = layer.self_attn
        if spec.qkv_bias:
            for proj in (attn_mod.q_proj, attn_mod.k_proj, attn_mod.v_proj):
                _give_bias(proj)
        if spec.o_bias:
            _give_bias(attn_mod.o_proj)
    decoder.rotary_emb = InternLMRotaryEmbedding(spec, device="meta")
    model.eval()
    model.requires_grad_(False)
    return model


def finish_native(model: nn.Module, spec: ModelSpec, rotary_device: torch.device) -> None:
    """Fill what no checkpoint tensor does: a tied head shares the embedding's weight, and the
    rotary frequencies (built on the meta device) are computed where the rotary module runs."""
    tree: Any = model  # submodules by name: torch types each as Tensor | Module
    if spec.tie_word_embeddings and not spec.is_reward:
        tree.lm_head.weight = tree.model.embed_tokens.weight
    tree.model.rotary_emb.inv_freq = rope_inv_freq(spec, 0, rotary_device)
