"""Batched autoregressive decoding with a KV cache, left padding and seeded sampling.

A small loop of our own instead of transformers' ``generate()``: sampling takes a
``torch.Generator`` (reproducible per call, independent of the global RNG), streaming is a plain
Python generator, and InternLM v1's dynamic-NTK behaviour past ``max_position_embeddings``
(the reference re-rotates every cached key with the new base) is reproduced by recomputing
the prefix without the cache once the sequence is that long.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from ..errors import UsageError
from .chat import GenerationSettings


@dataclass
class Completion:
    """One generated sequence: its ids (stop token excluded) and why it ended."""

    ids: list[int]
    finish_reason: str  # "stop" | "length"


@lru_cache(maxsize=8)
def _forward_params(forward: Callable[..., Any]) -> frozenset[str]:
    """The keywords a model class's ``forward`` takes (read once per class)."""
    return frozenset(inspect.signature(forward).parameters)


def forward_step(
    model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any
) -> tuple[torch.Tensor, Any]:
    """One forward of a causal LM; returns the last position's logits and the cache.

    ``cache=False`` runs without a cache; None starts one. The keyword transformers uses for
    the cache changed across versions; this picks the right one.
    """
    params = _forward_params(type(model).forward)
    kwargs: dict[str, Any] = {
        "attention_mask": mask,
        "position_ids": pos,
        "use_cache": cache is not False,
    }
    if cache is not False and cache is not None:
        kwargs["cache" if "cache" in params else "past_key_values"] = cache
    if "logits_to_keep" in params:
        kwargs["logits_to_keep"] = 1
    out = model(ids, **kwargs)
    new_cache = (
        getattr(out, "cache", None) if "cache" in params else getattr(out, "past_key_values", None)
    )
    return out.logits[:, -1, :], new_cache


def apply_repetition_penalty(
    logits: torch.Tensor, seen: torch.Tensor, penalty: float
) -> torch.Tensor:
    """transformers' rule: a seen token's logit is divided by ``penalty`` (multiplied if < 0)."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalised, logits)


def filter_top_k_top_p(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Mask everything outside the top ``k`` and outside the smallest set reaching ``p``."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass of strictly better tokens
        drop_sorted = before > top_p
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_tokens(
    logits: torch.Tensor, seen: torch.Tensor, s: GenerationSettings, gen: torch.Generator | None
) -> torch.Tensor:
    logits = apply_repetition_penalty(logits.float(), seen, s.repetition_penalty)
    if s.greedy:
        return logits.argmax(dim=-1)
    logits = filter_top_k_top_p(logits / s.temperature, s.top_k, s.top_p)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=gen).squeeze(-1)


def left_pad(
    prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), longest), dtype=torch.long)
    for row, p in enumerate(prompts):
        if p:
            ids[row, longest - len(p) :] = torch.as_tensor(list(p), dtype=torch.long)
            mask[row, longest - len(p) :] = 1
    return ids.to(device), mask.to(device)


def stream_ids(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    settings: GenerationSettings,
    *,
    pad_id: int,
    device: torch.device,
    vocab_size: int,
    recompute_beyond: int | None = None,
) -> Iterator[list[int | None]]:
    """Yield, per step, each row's new token id (None once that row has stopped).

    ``recompute_beyond``: once a sequence is longer than this, run every step on the whole
    prefix without the cache (InternLM v1's dynamic NTK semantics).
    """
    if not prompts:
        raise UsageError("no prompts to generate from; pass at least one.")
    empty = next((i for i, p in enumerate(prompts) if len(p) == 0), None)
    if empty is not None:
        raise UsageError(
            f"prompt {empty} has no tokens: every prompt needs at least one "
            "(an empty prompt without bos has none)."
        )
    for i, p in enumerate(prompts):
        bad = next((t for t in p if not 0 <= int(t) < vocab_size), None)
        if bad is not None:
            raise UsageError(
                f"prompt {i} holds token id {bad}, outside the model's vocabulary "
                f"(0..{vocab_size - 1}); encode prompts with this model's tokenizer."
            )
    ids, mask = left_pad(prompts, pad_id, device)
    batch = ids.shape[0]
    gen: torch.Generator | None = None
    stops = torch.tensor(sorted(set(settings.stop_token_ids)) or [-1], device=device)
    seen = torch.zeros((batch, vocab_size), dtype=torch.bool, device=device)
    if settings.repetition_penalty != 1.0:
        seen.scatter_(1, ids.clamp(0, vocab_size - 1), mask.bool())
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    full_ids, full_mask = ids, mask
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    step_ids, cache = ids, None
    with torch.inference_mode():
        for _ in range(settings.max_new_tokens):
            if recompute_beyond is not None and full_ids.shape[1] > recompute_beyond:
                full_pos = (full_mask.cumsum(-1) - 1).clamp(min=0)
                logits, _ = forward_step(model, full_ids, full_mask, full_pos, False)
                cache = None
            else:
                logits, cache = forward_step(model, step_ids, full_mask, pos, cache)
            if gen is None and settings.seed is not None and not settings.greedy:
                gen = torch.Generator(device=logits.device).manual_seed(settings.seed)
            tok = next_tokens(logits, seen.to(logits.device), settings, gen).to(device)
            tok = torch.where(done, torch.full_like(tok, pad_id), tok)
            hit_stop = torch.isin(tok, stops) & ~done
            out = tok.tolist()
            finished_before = done.tolist()
            yield [None if finished_before[r] else out[r] for r in range(batch)]
            done = done | hit_stop
            if bool(done.all()):
                return
            rows = torch.arange(batch, device=device)
            seen[rows, tok] = seen[rows, tok] | ~done
            step_ids = tok[:, None]
            full_ids = torch.cat([full_ids, step_ids], dim=1)
            full_mask = torch.cat([full_mask, torch.ones_like(step_ids)], dim=1)
            pos = pos[:, -1:] + 1


def generate_ids(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    settings: GenerationSettings,
    *,
    pad_id: int,
    device: torch.device,
    vocab_size: int,
    recompute_beyond: int | None = None,
) -> list[Completion]:
    """Run ``stream_ids`` to the end; each completion excludes its stop token."""
    stops = set(settings.stop_token_ids)
    outs: list[list[int]] = [[] for _ in prompts]
    reasons = ["length"] * len(prompts)
    for step in stream_ids(
        model,
        prompts,
        settings,
        pad_id=pad_id,
        device=device,
        vocab_size=vocab_size,
        recompute_beyond=recompute_beyond,
    ):
        for row, tok in enumerate(step):
            if tok is None or reasons[row] == "stop":
                continue
            if tok in stops:
                reasons[row] = "stop"
            else:
                outs[row].append(tok)
    return [Completion(ids, reason) for ids, reason in zip(outs, reasons, strict=True)]
