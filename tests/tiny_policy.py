"""A tiny causal LM and tokenizer for driving RLHF frameworks in tests, made here without a hub.

The tokenizer is byte-level (every byte one token, no merges), so any text round-trips exactly
through ``decode(encode(text))``: what a framework decodes from the policy's tokens is what the
reward model scores. The chat template is ChatML, the format InternLM2-Reward is trained on.
Used in-process by the TRL test and from ``framework_harness.py`` by the OpenRLHF one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<pad>", "<|im_start|>", "<|im_end|>"]


def byte_tokenizer() -> Any:
    """A ``PreTrainedTokenizerFast`` over the 256 bytes plus pad, im_start and im_end (eos)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        eos_token="<|im_end|>",
        additional_special_tokens=SPECIALS[1:],
    )
    tok.chat_template = CHATML
    return tok


def tiny_llama(vocab_size: int, seed: int = 0) -> Any:
    """A two-layer Llama with random weights: enough to generate and take gradient steps on a
    CPU."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    return LlamaForCausalLM(config)


def save_policy(directory: Path, seed: int = 0) -> Path:
    """The tokenizer and model saved as a plain HF directory (what trainers load by path)."""
    tok = byte_tokenizer()
    model = tiny_llama(len(tok), seed)
    model.config.pad_token_id = tok.pad_token_id
    model.config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    tok.save_pretrained(directory)
    model.save_pretrained(directory)
    return directory
