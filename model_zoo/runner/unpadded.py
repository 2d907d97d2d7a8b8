"""The decoder's final hidden state at each sequence's last token, without computing on padding.

Scoring only needs one hidden state per sequence (the reward model reads ``v_head`` at the
reward token, the last one). A padded batch spends every projection and MLP on pad positions:
for a batch of 16 conversations of mixed lengths that is often a third of the work or more,
which is why small batches (a reward server's batch is as large as its concurrent clients)
were much slower per conversation than big sorted ones.

Here the tokens of all sequences are laid end to end (``[tokens, hidden]``), so the norms,
projections and MLPs touch only real tokens; only attention is computed in a right-padded
``[batch, heads, longest, head_dim]`` layout, where causal masking alone keeps pads out of every
real position. In the last layer only each sequence's final position is carried past
attention. The modules are the model's own (biases, quantized linears and the rotary module
all apply as in its ``forward``); the arithmetic is the same, so results agree with the padded
forward to floating-point rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional as F


def supports_unpadded(decoder: Any, devices: Sequence[torch.device]) -> bool:
    """True for a Llama-layout decoder on one device using SDPA attention (the default).

    Split models (hooks move activations between layers) and an explicitly chosen other
    attention implementation (eager, flash) keep the standard forward.
    """
    config = getattr(decoder, "config", None)
    if len(devices) != 1 or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    needed = ("embed_tokens", "layers", "norm", "rotary_emb")
    if not all(hasattr(decoder, name) for name in needed) or len(decoder.layers) == 0:
        return False
    layer = decoder.layers[0]
    return all(
        hasattr(layer, n)
        for n in ("input_layernorm", "self_attn", "post_attention_layernorm", "mlp")
    )


def right_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of a right-padded batch (the standard forward's input)."""
    longest = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    turned = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + turned * sin


def last_hidden_states(
    decoder: Any, seqs: Sequence[Sequence[int]], device: torch.device | str
) -> torch.Tensor:
    """Final normed hidden states ``[len(seqs), hidden]`` at each sequence's last token.

    Every sequence must be non-empty. Call under ``torch.inference_mode()``.
    """
    lengths = [len(s) for s in seqs]
    if not seqs or min(lengths) == 0:
        raise ValueError("every sequence needs at least one token")
    batch, longest, total = len(seqs), max(lengths), sum(lengths)
    flat = torch.tensor([t for s in seqs for t in s], dtype=torch.long, device=device)
    lens = torch.tensor(lengths, dtype=torch.long, device=device)
    ends = torch.cumsum(lens, 0)
    last = ends - 1  # index in ``flat`` of each sequence's last token
    row = torch.repeat_interleave(torch.arange(batch, device=device), lens)
    position = torch.arange(total, device=device) - (ends - lens)[row]
    slot = row * longest + position  # where each token sits in the padded [batch * longest] layout

    h = decoder.embed_tokens(flat)  # [tokens, hidden]
    cos, sin = decoder.rotary_emb(h, position[None])  # max position = longest - 1, as when padded
    cos, sin = cos[0].unsqueeze(1), sin[0].unsqueeze(1)  # [tokens, 1, head_dim]
    key_mask = (torch.arange(longest, device=device)[None, :] < lens[:, None])[:, None, None, :]

    def padded(x: torch.Tensor) -> torch.Tensor:  # [tokens, heads, d] -> [batch, heads, longest, d]
        out = x.new_zeros((batch * longest, *x.shape[1:]))
        out.index_copy_(0, slot, x)
        return out.view(batch, longest, *x.shape[1:]).transpose(1, 2)

    final = len(decoder.layers) - 1
    for i, layer in enumerate(decoder.layers):
        attn = layer.self_attn
        d = attn.head_dim
        x = layer.input_layernorm(h)
        q = _rotate(attn.q_proj(x).view(h.shape[0], -1, d), cos, sin)
        k = _rotate(attn.k_proj(x).view(h.shape[0], -1, d), cos, sin)
        v = attn.v_proj(x).view(h.shape[0], -1, d)
        kp, vp = padded(k), padded(v)
        groups = q.shape[1] // k.shape[1]
        if groups > 1:
            kp, vp = kp.repeat_interleave(groups, dim=1), vp.repeat_interleave(groups, dim=1)
        if i < final:
            out = F.scaled_dot_product_attention(
                padded(q), kp, vp, is_causal=True, scale=attn.scaling
            )
            out = out.transpose(1, 2).reshape(batch * longest, -1).index_select(0, slot)
        else:  # only the last position of each sequence matters from here on
            q, h = q.index_select(0, last), h.index_select(0, last)
            out = F.scaled_dot_product_attention(
                q[:, :, None], kp, vp, attn_mask=key_mask, scale=attn.scaling
            )
            out = out.reshape(batch, -1)
        h = h + attn.o_proj(out)
        h = h + layer.mlp(layer.post_attention_layernorm(h))
    return decoder.norm(h)
