"""Invariants every entry of the built-in registry must keep (schema, names, sources, facts)."""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path

import pytest

from model_zoo.hubs.catalog import REPO_ID_RE, SOURCE_KEYS
from model_zoo.registry.info import CHAT_KINDS, KINDS, ModelInfo
from model_zoo.registry.loader import builtin_registry_path, check_registry_file, load_registry
from model_zoo.registry.names import fold
from model_zoo.settings import load_settings

# Loaded once at collection (once per xdist worker) with clean, throw-away settings: no user
# overlay, no user store, and the temporary home removed again.
with tempfile.TemporaryDirectory(prefix="mz-registry-invariants-") as _HOME:
    REGISTRY = load_registry(
        settings=load_settings({"MODEL_ZOO_HOME": _HOME, "MODEL_ZOO_CONFIG": f"{_HOME}/none.toml"}),
        use_cache=False,
    )
ENTRIES = list(REGISTRY)
IDS = [m.name for m in ENTRIES]

# Where each hub's InternLM repositories live.
NAMESPACE = {
    "hf": "internlm",
    "modelscope": "Shanghai_AI_Laboratory",
    "modelers": "Intern",
    "openxlab": "OpenLMLab",
    "openxlab-origin": "OpenLMLab",
}
INTERNLM_ARCHS = {
    "InternLM2ForCausalLM",
    "InternLM2ForRewardModel",
    "InternLM3ForCausalLM",
    "InternLMForCausalLM",
}
# The InternLM-Math README and the StepProver model cards link HuggingFace only.
HF_ONLY_FAMILIES = {"internlm2-step-prover", "internlm2.5-step-prover"}
# Apache-2.0 for code and weights: InternLM3 (model card, InternLM README) and POLAR (POLAR README).
APACHE_FAMILIES = {"internlm3", "polar"}


def test_builtin_registry_has_no_problems() -> None:
    assert check_registry_file(builtin_registry_path()) == []


def test_every_family_and_expected_count() -> None:
    assert len(ENTRIES) == 41
    assert set(REGISTRY.families) == {
        "internlm",
        "internlm2",
        "internlm2.5",
        "internlm2-math",
        "internlm2-math-plus",
        "internlm2-reward",
        "internlm3",
        "polar",
        "internlm2-step-prover",
        "internlm2.5-step-prover",
    }
    counts = {fam: sum(m.family == fam for m in ENTRIES) for fam in REGISTRY.families}
    assert counts == {
        "internlm3": 1,
        "internlm2.5": 7,
        "internlm2-reward": 3,
        "internlm2": 11,
        "internlm2-math-plus": 4,
        "internlm2-math": 4,
        "internlm": 4,
        "polar": 4,
        "internlm2-step-prover": 1,
        "internlm2.5-step-prover": 2,
    }


def test_names_slugs_aliases_unique_even_when_folded() -> None:
    seen: dict[str, str] = {}
    for m in ENTRIES:
        for key in {fold(k) for k in (m.name, m.slug, *m.aliases)}:
            assert seen.setdefault(key, m.name) == m.name, (
                f"{key!r} used by {seen[key]} and {m.name}"
            )


def test_repo_ids_unique_across_entries() -> None:
    seen: dict[str, str] = {}
    for m in ENTRIES:
        for repo in m.sources.values():
            assert seen.setdefault(repo.lower(), m.name) == m.name


@pytest.mark.parametrize("m", ENTRIES, ids=IDS)
def test_entry_schema(m: ModelInfo) -> None:
    assert m.kind in KINDS
    assert m.slug == m.name.lower()
    assert m.family in REGISTRY.families
    assert m.generation == REGISTRY.families[m.family].generation
    assert date(2023, 7, 1) <= m.released <= date(2025, 8, 1)
    assert m.updated is None or m.updated > m.released
    assert m.license == ("apache-2.0" if m.family in APACHE_FAMILIES else "internlm-model-license")
    assert m.license_note and "Apache-2.0" in m.license_note
    assert m.sources and set(m.sources) <= set(SOURCE_KEYS)
    assert list(m.sources) == [k for k in SOURCE_KEYS if k in m.sources]  # canonical order
    assert m.revision is None
    assert ModelInfo.from_dict(m.to_dict()) == m


@pytest.mark.parametrize("m", ENTRIES, ids=IDS)
def test_every_spelling_resolves_to_its_own_entry(m: ModelInfo) -> None:
    spellings = [m.name, m.slug, *m.aliases, *m.sources.values()]
    spellings += [s.upper() for s in spellings] + [s.replace("-", "_") for s in spellings]
    for spelling in spellings:
        assert REGISTRY.get(spelling).name == m.name, spelling
    assert REGISTRY.get(f"{m.name}@abc123").revision == "abc123"


@pytest.mark.parametrize("m", ENTRIES, ids=IDS)
def test_source_ids_have_their_hubs_shape(m: ModelInfo) -> None:
    for source, repo in m.sources.items():
        assert REPO_ID_RE.match(repo), repo
        assert repo.split("/")[0] == NAMESPACE[source], (source, repo)
    if "openxlab-origin" in m.sources:
        assert m.sources["openxlab-origin"] == m.sources["openxlab"] + "-original"
    assert set(m.web_urls()) == set(m.sources)
    for source, url in m.web_urls().items():
        assert url.startswith("https://") and url.endswith(m.sources[source])


@pytest.mark.parametrize("m", ENTRIES, ids=IDS)
def test_sources_only_where_they_exist(m: ModelInfo) -> None:
    if m.family in HF_ONLY_FAMILIES:
        assert set(m.sources) == {"hf"}
        return
    assert {"hf", "modelscope"} <= set(m.sources)
    assert ("modelers" in m.sources) == (m.name == "InternLM3-8B-Instruct")
    if m.family == "internlm3":
        assert "openxlab" not in m.sources and "openxlab-origin" not in m.sources
    if m.family in ("internlm2-reward", "internlm2-math", "internlm2-math-plus"):
        assert "openxlab-origin" not in m.sources
    if m.family == "polar":  # the POLAR README links HuggingFace and ModelScope
        assert set(m.sources) == {"hf", "modelscope"}
        assert m.sources["modelscope"] == "Shanghai_AI_Laboratory/" + m.sources["hf"].split("/")[1]
    if m.family == "internlm2-math-plus":
        assert "openxlab" not in m.sources


@pytest.mark.parametrize("m", ENTRIES, ids=IDS)
def test_reward_fields(m: ModelInfo) -> None:
    if m.kind != "reward":
        assert m.reward is None and m.reward_token_id is None and m.scoring_style is None
        return
    assert m.reward is not None and m.reward_token_id == 92527
    assert m.architecture == "InternLM2ForRewardModel" and m.dims is not None
    if m.family == "polar":  # scores {prompt, reference, output}; no chat template, no RewardBench
        assert m.scoring_style == "reference-based"
        assert m.chat_format is None and m.reward.rewardbench is None
        assert m.weight_format == "bin" and m.context_length == 16384
    elif m.family == "internlm2-reward":
        assert m.scoring_style == "conversation" and m.chat_format == "chatml"
        assert m.reward.rewardbench is not None
        assert m.dims.rope_scaling is None
    else:
        # the StepProver critic: a conversation reward model (its card scores chats with get_score)
        assert m.name == "InternLM2.5-StepProver-Critic"
        assert m.scoring_style == "conversation" and m.chat_format == "chatml"


@pytest.mark.parametrize("m", ENTRIES, ids=IDS)
def test_chat_settings(m: ModelInfo) -> None:
    if m.kind not in CHAT_KINDS:
        assert m.generation_defaults is None
        return
    if m.architecture not in INTERNLM_ARCHS:
        return  # the Mixtral math model: its chat format is read from its own files
    assert m.chat_format == ("internlm-v1" if m.family == "internlm" else "chatml")
    g = m.generation_defaults
    assert g is not None and 2 in g.stop_token_ids
    assert m.dims is not None and all(t < m.dims.vocab_size for t in g.stop_token_ids)
    if m.family == "internlm3":
        assert 128131 in g.stop_token_ids and g.max_new_tokens_thinking == 8192
    elif m.family != "internlm":
        assert 92542 in g.stop_token_ids


@pytest.mark.parametrize("m", ENTRIES, ids=IDS)
def test_dims_params_and_context(m: ModelInfo) -> None:
    if m.dims is None:
        assert m.name == "InternLM2-Math-Plus-Mixtral8x22B"
        return
    d = m.dims
    assert d.num_attention_heads % d.num_key_value_heads == 0 and d.head_dim == 128
    assert m.params_from == "dims"
    size_b = float(m.size.rstrip("B"))
    assert 0.9 * size_b <= m.params_b <= 1.15 * size_b, (m.size, m.params_b)
    expected_context = (
        1 << 20
        if m.kind == "chat-1m"
        else 16384
        if m.family == "polar"
        else d.max_position_embeddings
    )
    assert m.context_length == expected_context


def test_architectures_by_family() -> None:
    for m in ENTRIES:
        expected = {
            "internlm3": "InternLM3ForCausalLM",
            "internlm": "InternLMForCausalLM",
            "internlm2-reward": "InternLM2ForRewardModel",
            "polar": "InternLM2ForRewardModel",
        }.get(m.family, "InternLM2ForCausalLM")
        if m.name == "InternLM2-Math-Plus-Mixtral8x22B":
            expected = "MixtralForCausalLM"
        if m.name == "InternLM2.5-StepProver-Critic":
            expected = "InternLM2ForRewardModel"
        assert m.architecture == expected, m.name


def test_mixtral_math_model_is_not_internlm2() -> None:
    m = REGISTRY.get("internlm/internlm2-math-plus-mixtral8x22b")
    assert m.architecture == "MixtralForCausalLM"
    assert m.params_b == 141 and m.params_from == "declared"
    assert m.dims is None and m.chat_format is None and m.generation_defaults is None


def test_published_parameter_counts() -> None:
    # Model cards: InternLM2-7B 7.74B, InternLM3-8B-Instruct 8.8B, InternLM2-1.8B 1.89B.
    assert round(REGISTRY.get("InternLM2-7B").params_b, 2) == 7.74
    assert round(REGISTRY.get("InternLM3-8B-Instruct").params_b, 1) == 8.8
    assert round(REGISTRY.get("InternLM2-1.8B").params_b, 2) == 1.89


def test_generations_order_families() -> None:
    gen = {k: f.generation for k, f in REGISTRY.families.items()}
    assert gen["internlm3"] > gen["internlm2.5"] > gen["internlm2"] > gen["internlm"]


def test_dates_from_the_seed_and_facts() -> None:
    assert REGISTRY.get("InternLM2.5-7B-Chat").released == date(2024, 7, 3)
    assert REGISTRY.get("InternLM2.5-20B-Chat").released == date(2024, 8, 5)
    assert REGISTRY.get("InternLM-Chat-7B").updated == date(2023, 12, 12)
    assert REGISTRY.get("InternLM2-Math-Plus-7B").released == date(2024, 5, 27)


def test_builtin_file_is_the_repo_root_file_in_a_checkout() -> None:
    assert builtin_registry_path() == Path(__file__).resolve().parents[1] / "registry.yaml"
