"""The runner sizes a model with the registry's one parameter formula (``registry.memory``), so
its placement across GPUs and ``model-zoo info``'s memory estimate count the same model."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from model_zoo.errors import UsageError
from model_zoo.registry import memory
from model_zoo.registry.api import get
from model_zoo.registry.info import ModelInfo
from model_zoo.runner.api import placement_for
from model_zoo.runner.config import spec_from_dict

# GQA decoders of each family, one with attention biases (InternLM-7B), reward models (a value
# head instead of lm_head) and a v1 model without GQA.
NAMES = ("InternLM2-7B", "InternLM3-8B-Instruct", "InternLM-7B", "InternLM-20B", "POLAR-7B")


def _config_json(m: ModelInfo, **overrides: Any) -> dict[str, Any]:
    """The config.json a checkpoint with the registry entry's dims would carry."""
    d = m.dims
    assert d is not None
    return {
        "architectures": [m.architecture],
        "hidden_size": d.hidden_size,
        "intermediate_size": d.intermediate_size,
        "num_hidden_layers": d.num_hidden_layers,
        "num_attention_heads": d.num_attention_heads,
        "num_key_value_heads": d.num_key_value_heads,
        "head_dim": d.head_dim,
        "vocab_size": d.vocab_size,
        "max_position_embeddings": d.max_position_embeddings,
        "bias": d.attention_bias,
        "tie_word_embeddings": d.tie_word_embeddings,
        **overrides,
    }


@pytest.mark.parametrize("name", NAMES)
def test_runner_and_registry_count_the_same_parameters(name: str) -> None:
    m = get(name)
    assert m.dims is not None
    spec = spec_from_dict(_config_json(m))
    registry = memory.param_count(dataclasses.asdict(m.dims), value_head=m.kind == "reward")
    assert spec.param_counts().total == registry
    assert registry == pytest.approx(m.params_b * 1e9, abs=1e5)  # params_b keeps 4 decimals
    if name == "InternLM-7B":  # the biases are counted on both paths
        unbiased = spec_from_dict(_config_json(m, bias=False)).param_counts().total
        assert registry - unbiased == 32 * (128 * (32 + 2 * 32) + 4096)


def test_a_tied_head_is_counted_once_on_both_paths() -> None:
    m = get("InternLM2-1.8B")
    assert m.dims is not None
    tied = spec_from_dict(_config_json(m, tie_word_embeddings=True)).param_counts()
    dims = {**dataclasses.asdict(m.dims), "tie_word_embeddings": True}
    assert tied.total == memory.param_count(dims)
    assert tied.head == m.dims.hidden_size  # the final norm only: lm_head is the embedding


@pytest.mark.parametrize("name", ["InternLM2-1.8B", "InternLM2-1.8B-Reward"])
def test_placement_budget_is_exactly_the_registry_weights(name: str) -> None:
    """One device with a byte budget: the model fits in exactly the registry's bf16 weights and
    not in one byte less, so placement and ``memory_estimate`` agree to the byte."""
    m = get(name)
    spec = spec_from_dict(_config_json(m))
    assert m.dims is not None
    need = memory.param_count(dataclasses.asdict(m.dims), value_head=m.kind == "reward") * 2
    assert need / memory.GIB == pytest.approx(m.memory_estimate("bf16").weights_gib, rel=1e-4)
    cpu = (torch.device("cpu"),)
    placement = placement_for(spec, cpu, torch.bfloat16, {"cpu": need})
    assert placement.module_devices == {"": cpu[0]}
    with pytest.raises(UsageError, match="needs about"):
        placement_for(spec, cpu, torch.bfloat16, {"cpu": need - 1})
