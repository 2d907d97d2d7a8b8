"""Selection, filters, search and the memory formula (numbers worked out by hand)."""

from __future__ import annotations

import dataclasses

import pytest

import model_zoo
from model_zoo.errors import UsageError
from model_zoo.registry import memory
from model_zoo.registry.api import get, list_models, search, select

GIB = 2**30
INTERNLM2_7B_PARAMS = 7_737_708_544  # worked out from the 7B dims in the module docstring's formula


def test_public_api_is_importable_from_the_package() -> None:
    assert model_zoo.get is get and model_zoo.select is select
    assert model_zoo.list_models is list_models and model_zoo.search is search


def test_param_count_internlm2_7b() -> None:
    dims = dataclasses.asdict(get("InternLM2-7B").dims)
    assert memory.param_count(dims) == INTERNLM2_7B_PARAMS
    # A reward model swaps the [vocab, hidden] output for a [1, hidden] value head.
    assert memory.param_count(dims, value_head=True) == INTERNLM2_7B_PARAMS - 92544 * 4096 + 4096


def test_param_count_counts_attention_biases() -> None:
    dims = dataclasses.asdict(get("InternLM-7B").dims)
    assert dims["attention_bias"] is True
    no_bias = memory.param_count({**dims, "attention_bias": False})
    per_layer_bias = 128 * (32 + 2 * 32) + 4096  # q, k, v and o biases
    assert memory.param_count(dims) - no_bias == 32 * per_layer_bias


def test_memory_estimate_by_hand() -> None:
    m = get("InternLM2.5-7B-Chat")
    est = m.memory_estimate("bf16", 4096)
    assert est.weights_gib == pytest.approx(INTERNLM2_7B_PARAMS * 2 / GIB, rel=1e-3)
    assert est.kv_cache_gib == pytest.approx(2 * 32 * 8 * 128 * 2 * 4096 / GIB)  # 0.5 GiB
    assert est.runtime_gib == 1.0
    assert m.memory_gb() == pytest.approx(est.weights_gib + 0.5 + 1.0)
    assert m.memory_gb("fp16") == m.memory_gb("bf16")
    int4 = m.memory_estimate("int4")
    assert int4.weights_gib == pytest.approx(INTERNLM2_7B_PARAMS * (0.5 + 4 / 128) / GIB, rel=1e-3)
    assert m.memory_gb("int4") < m.memory_gb("int8") < m.memory_gb("bf16") < m.memory_gb("fp32")
    longer = m.memory_gb(context=32768) - m.memory_gb(context=4096)
    assert longer == pytest.approx(2 * 32 * 8 * 128 * 2 * (32768 - 4096) / GIB)  # 3.5 GiB


def test_memory_without_dims_uses_stated_allowance() -> None:
    m = get("InternLM2-Math-Plus-Mixtral8x22B")
    est = m.memory_estimate("int4", 8192)
    assert est.kv_cache_gib == pytest.approx(2.0)
    assert est.weights_gib == pytest.approx(141e9 * (0.5 + 4 / 128) / GIB)


@pytest.mark.parametrize(
    ("text", "gib"),
    [
        ("24GB", 24e9 / 2**30),  # GB is 10^9 bytes: 22.35 GiB
        ("24 GiB", 24.0),
        ("24gib", 24.0),
        ("12288MiB", 12.0),
        ("16000MB", 16e9 / 2**30),
        ("1TiB", 1024.0),
        (16, 16e9 / 2**30),  # a number is GB, as max_memory_gb says
        (24.5, 24.5e9 / 2**30),
    ],
)
def test_parse_memory(text: str | int, gib: float) -> None:
    assert memory.parse_memory(text) == pytest.approx(gib)


def test_fits_16gb_refuses_a_model_that_needs_15_9_gib() -> None:
    """16 GB is 14.9 GiB: a model estimated at 15.9 GiB fits 16GiB but not 16GB."""
    from model_zoo.registry.api import list_models

    between = [m for m in list_models() if 16e9 / 2**30 < m.memory_gb("bf16") <= 16.0]
    if not between:  # the property still holds on the boundary itself
        between = [m for m in list_models() if m.memory_gb("bf16") <= 16.0][-1:]
    names_gb = {m.name for m in list_models(max_memory_gb="16GB")}
    names_gib = {m.name for m in list_models(max_memory_gb="16GiB")}
    assert names_gb < names_gib or not between
    for m in between:
        assert m.name in names_gib and (m.memory_gb("bf16") <= 16e9 / 2**30) == (m.name in names_gb)


@pytest.mark.parametrize(
    "text", ["", "lots", "24 GBs", "-3GB", "0", "0GB", "24", "24G", "80g", "1T", -3, 0]
)
def test_parse_memory_rejects(text: str | int) -> None:
    with pytest.raises(UsageError, match="GB|positive"):
        memory.parse_memory(text)


@pytest.mark.parametrize(
    ("size", "billions"), [("7B", 7.0), ("1.8B", 1.8), ("8x22B", 176.0), ("500M", 0.5)]
)
def test_params_from_size(size: str, billions: float) -> None:
    assert memory.params_from_size(size) == pytest.approx(billions)


def test_dtype_aliases_and_errors() -> None:
    assert memory.normalize_dtype("bfloat16") == "bf16"
    assert memory.normalize_dtype("4bit") == "int4"
    assert memory.normalize_dtype("FP16") == "fp16"
    with pytest.raises(UsageError, match="int8"):
        memory.normalize_dtype("fp8")


def test_select_fits_exactly_those_under_the_limit() -> None:
    everything = list_models()
    for dtype, limit in (("bf16", 24), ("int8", 24), ("int4", 12), ("bf16", 80)):
        chosen = {m.name for m in select(max_memory_gb=limit, dtype=dtype)}
        assert chosen == {
            m.name for m in everything if m.memory_gb(dtype) <= limit * 1e9 / 2**30
        }  # GB, in GiB
        assert chosen and len(chosen) < len(everything)


def test_select_orders_newest_generation_then_largest() -> None:
    chosen = select(max_memory_gb="24GB")
    keys = [(m.generation, m.params_b) for m in chosen]
    assert keys == sorted(keys, key=lambda k: (-k[0], -k[1]))
    assert chosen[0].name == "InternLM3-8B-Instruct"


@pytest.mark.parametrize(
    ("kwargs", "best"),
    [
        ({"kind": "chat", "max_memory_gb": 24}, "InternLM2.5-7B-Chat"),
        ({"kind": "chat", "max_memory_gb": 48}, "InternLM2.5-20B-Chat"),
        ({"kind": "chat", "max_memory_gb": 24, "dtype": "int4"}, "InternLM2.5-20B-Chat"),
        ({"kind": "chat", "max_memory_gb": 6}, "InternLM2.5-1.8B-Chat"),
        ({"kind": "reward", "max_memory_gb": 24}, "POLAR-7B"),  # newest generation first (2.5)
        ({"family": "internlm2-reward", "max_memory_gb": 24}, "InternLM2-7B-Reward"),
        ({"family": "internlm2", "kind": "chat-sft"}, "InternLM2-Chat-20B-SFT"),
        ({"family": "internlm", "size": "7B", "kind": "chat"}, "InternLM-Chat-7B"),
        ({"kind": ["chat", "instruct"], "max_memory_gb": 24}, "InternLM3-8B-Instruct"),
        ({"context_min": 500_000}, "InternLM2.5-7B-Chat-1M"),
        ({"source": "modelers"}, "InternLM3-8B-Instruct"),
    ],
)
def test_select_best(kwargs: dict, best: str) -> None:
    assert select(**kwargs)[0].name == best


def test_select_nothing_fits() -> None:
    assert select(kind="chat", max_memory_gb=1) == []


def test_filters() -> None:
    assert {m.name for m in list_models(family="internlm2_5", kind="chat")} == {
        "InternLM2.5-1.8B-Chat",
        "InternLM2.5-7B-Chat",
        "InternLM2.5-20B-Chat",
    }
    assert [m.name for m in list_models(source="modelers")] == ["InternLM3-8B-Instruct"]
    assert list_models(source=" ModelScope ") == list_models(
        source="modelscope"
    )  # folded like --source
    assert (
        all(m.size == "1.8B" for m in list_models(size="1_8b"))
        and len(list_models(size="1.8b")) == 10
    )
    assert {m.name for m in list_models(context_min=200_000)} == {
        "InternLM2.5-7B-Chat-1M",
        "InternLM2.5-20B",
    }
    assert all(m.generation == 2.5 for m in list_models(generation=2.5))
    assert [m.name for m in list_models()] == [
        m.name for m in list_models(kind=None)
    ]  # registry order


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"family": "internlm4"}, "internlm3"),
        ({"kind": "chatty"}, "chat-1m"),
        ({"size": "13B"}, "1.8B"),
        ({"source": "github"}, "modelscope"),
        ({"dtype": "fp8"}, "int4"),
        ({"max_memory_gb": "many"}, "24GB"),
    ],
)
def test_unknown_filter_values_are_errors_that_list_choices(kwargs: dict, word: str) -> None:
    with pytest.raises(UsageError) as info:
        list_models(**kwargs)
    assert word in str(info.value)


def test_search() -> None:
    assert {m.name for m in search("reward")} == {
        "InternLM2-1.8B-Reward",
        "InternLM2-7B-Reward",
        "InternLM2-20B-Reward",
        "POLAR-1.8B-Base",
        "POLAR-1.8B",
        "POLAR-7B-Base",
        "POLAR-7B",
        "InternLM2.5-StepProver-Critic",
    }
    assert [m.name for m in search("mixtral")] == ["InternLM2-Math-Plus-Mixtral8x22B"]
    hits = [m.name for m in search("7b chat")]
    assert "InternLM2.5-7B-Chat" in hits and "InternLM-Chat-7B" in hits
    assert all("7B" in n for n in hits)
    assert [m.name for m in search("Shanghai_AI_Laboratory/internlm3")] == ["InternLM3-8B-Instruct"]
    assert search("internlm2.5-7b")[0].name.startswith("InternLM2.5-7B")
    assert search("no-such-thing") == []
    with pytest.raises(UsageError):
        search("   ")


def test_model_info_is_immutable() -> None:
    m = get("InternLM2.5-7B-Chat")
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        m.sources["hf"] = "evil/repo"  # type: ignore[index]
    assert hash(m) == hash(get("internlm2_5-7b-chat"))
