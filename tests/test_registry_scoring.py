"""Reward scoring styles in the registry, and the POLAR and StepProver entries' facts and names."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fixtures_registry import MINI_REGISTRY

from model_zoo.errors import UnknownModelError
from model_zoo.registry.info import ModelInfo
from model_zoo.registry.loader import check_registry_file, load_registry
from model_zoo.settings import load_settings

pytestmark = pytest.mark.usefixtures("fresh_registry_cache")

Writer = Callable[..., Path]

# Loaded once at collection (once per xdist worker); the temporary home is removed again.
with tempfile.TemporaryDirectory(prefix="mz-registry-scoring-") as _HOME:
    REGISTRY = load_registry(
        settings=load_settings({"MODEL_ZOO_HOME": _HOME, "MODEL_ZOO_CONFIG": f"{_HOME}/none.toml"}),
        use_cache=False,
    )
POLAR = ("POLAR-1.8B-Base", "POLAR-1.8B", "POLAR-7B-Base", "POLAR-7B")


def _reward_entry(name: str, reward: str) -> str:
    return (
        f"  - {{name: {name}, family: demo, size: 1B, kind: reward, released: 2024-01-01, "
        f"architecture: InternLM2ForRewardModel, reward: {reward}, "
        f"sources: {{hf: org/{name.lower()}}}}}\n"
    )


# ---------------------------------------------------------------------- the schema


def test_scoring_defaults_to_conversation(write_registry: Writer) -> None:
    reg = load_registry(write_registry(MINI_REGISTRY))
    m = reg.get("Demo-1B-Reward")
    assert m.reward is not None and m.reward.scoring == "conversation"
    assert m.scoring_style == "conversation"
    assert reg.get("Demo-1B").scoring_style is None  # not a reward model


def test_reference_based_scoring_is_read_and_survives_the_cache(write_registry: Writer) -> None:
    path = write_registry(
        MINI_REGISTRY + _reward_entry("Ref-1B", "{reward_token_id: 7, scoring: reference-based}")
    )
    assert check_registry_file(path, standalone=True) == []
    m = load_registry(path).get("Ref-1B")
    assert m.scoring_style == "reference-based"
    assert ModelInfo.from_dict(m.to_dict()) == m
    assert (
        load_registry(path).get("Ref-1B").scoring_style == "reference-based"
    )  # from the JSON cache


@pytest.mark.parametrize("value", ["polar", "Reference-Based", "reference_based", "1", "null"])
def test_unknown_scoring_style_is_refused_naming_the_choices(
    write_registry: Writer, value: str
) -> None:
    path = write_registry(
        MINI_REGISTRY + _reward_entry("Bad-1B", f"{{reward_token_id: 7, scoring: {value}}}")
    )
    problems = [p for p in check_registry_file(path, standalone=True) if p.entry == "Bad-1B"]
    assert [p.field for p in problems] == ["reward.scoring"]
    assert "'conversation' or 'reference-based'" in problems[0].message, problems[0].message


def test_scoring_without_a_reward_token_is_still_incomplete(write_registry: Writer) -> None:
    path = write_registry(MINI_REGISTRY + _reward_entry("Half-1B", "{scoring: reference-based}"))
    problems = [p for p in check_registry_file(path, standalone=True) if p.entry == "Half-1B"]
    assert [(p.field, p.message) for p in problems] == [
        ("reward.reward_token_id", "required field is missing")
    ]


def test_a_family_sets_the_style_and_an_entry_may_override_it(write_registry: Writer) -> None:
    text = MINI_REGISTRY.replace(
        "shapes:\n",
        "  refs:\n    title: Refs\n    generation: 2\n"
        "    defaults: {architecture: InternLM2ForRewardModel,"
        " reward: {reward_token_id: 9, scoring: reference-based}}\n"
        "shapes:\n",
    )
    text += (
        "  - {name: Ref-A, family: refs, size: 1B, kind: reward, released: 2024-01-01,"
        " sources: {hf: org/ref-a}}\n"
        "  - {name: Ref-B, family: refs, size: 1B, kind: reward, released: 2024-01-01,"
        " sources: {hf: org/ref-b}, reward: {scoring: conversation}}\n"
    )
    reg = load_registry(write_registry(text))
    assert (
        reg.get("Ref-A").scoring_style == "reference-based"
        and reg.get("Ref-A").reward_token_id == 9
    )
    assert (
        reg.get("Ref-B").scoring_style == "conversation" and reg.get("Ref-B").reward_token_id == 9
    )


def test_a_user_overlay_can_change_a_builtin_style(
    write_registry: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    overlay = write_registry(
        "models:\n  - {name: InternLM2-7B-Reward, reward: {scoring: reference-based}}\n"
    )
    monkeypatch.setenv("MODEL_ZOO_REGISTRY", str(overlay))
    reg = load_registry(settings=load_settings())
    m = reg.get("internlm2-7b-reward")
    assert (
        m.scoring_style == "reference-based"
        and m.reward is not None
        and m.reward.rewardbench == 86.6
    )


# ---------------------------------------------------------------------- the built-in entries


@pytest.mark.parametrize("name", POLAR)
def test_polar_entries(name: str) -> None:
    m = REGISTRY.get(name)
    hf = "internlm/" + name.replace("1.8B", "1_8B")
    assert m.sources == {"hf": hf, "modelscope": "Shanghai_AI_Laboratory/" + hf.split("/")[1]}
    assert (m.kind, m.architecture, m.scoring_style, m.reward_token_id) == (
        "reward",
        "InternLM2ForRewardModel",
        "reference-based",
        92527,
    )
    assert m.license == "apache-2.0" and m.generation == 2.5 and m.context_length == 16384
    assert m.dims is not None and m.dims.vocab_size == 92544


def test_polar_dims_confirmed_only_where_config_json_was_seen() -> None:
    seven = REGISTRY.get("POLAR-7B").dims
    assert seven is not None and seven.confirmed and seven.note is None
    assert (
        seven.hidden_size,
        seven.num_hidden_layers,
        seven.max_position_embeddings,
        seven.rope_theta,
    ) == (
        4096,
        32,
        262144,
        5e7,
    )
    assert seven.rope_scaling is not None and (
        seven.rope_scaling.type,
        seven.rope_scaling.factor,
    ) == ("dynamic", 2.0)
    for name in ("POLAR-7B-Base", "POLAR-1.8B", "POLAR-1.8B-Base"):
        d = REGISTRY.get(name).dims
        assert d is not None and not d.confirmed and d.note and "not seen" in d.note, name
    assert REGISTRY.get("POLAR-1.8B").dims.hidden_size == 2048  # type: ignore[union-attr]


def test_step_provers() -> None:
    prover = REGISTRY.get("internlm/internlm2-step-prover")
    assert (prover.name, prover.kind, prover.architecture, prover.chat_format) == (
        "InternLM2-StepProver",
        "math",
        "InternLM2ForCausalLM",
        "chatml",
    )
    d = prover.dims
    assert (
        d is not None
        and d.confirmed
        and d.max_position_embeddings == 8192
        and prover.context_length == 8192
    )
    assert d.rope_scaling is not None and d.rope_scaling.factor == 1.0
    assert (
        prover.generation_defaults is not None
        and 92542 in prover.generation_defaults.stop_token_ids
    )

    prover25 = REGISTRY.get("internlm2_5-step-prover")
    assert (prover25.name, prover25.kind, prover25.generation) == (
        "InternLM2.5-StepProver",
        "math",
        2.5,
    )
    assert prover25.dims is not None and not prover25.dims.confirmed

    critic = REGISTRY.get("internlm2_5-step-prover-critic")
    assert (critic.name, critic.kind, critic.architecture, critic.scoring_style, critic.size) == (
        "InternLM2.5-StepProver-Critic",
        "reward",
        "InternLM2ForRewardModel",
        "conversation",
        "1.8B",
    )
    assert critic.chat_format == "chatml" and critic.generation_defaults is None
    assert critic.dims is not None and critic.dims.confirmed and critic.dims.hidden_size == 2048
    for m in (prover, prover25, critic):
        assert set(m.sources) == {"hf"} and m.license == "internlm-model-license"


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("polar-7b", "POLAR-7B"),
        ("POLAR_7B", "POLAR-7B"),
        ("internlm/POLAR-1_8B-Base", "POLAR-1.8B-Base"),
        ("Shanghai_AI_Laboratory/POLAR-7B-Base", "POLAR-7B-Base"),
        ("polar-1_8b", "POLAR-1.8B"),
        ("POLAR-1.8B@main", "POLAR-1.8B"),
        ("internlm2-step-prover", "InternLM2-StepProver"),
        ("InternLM2.5-Step-Prover", "InternLM2.5-StepProver"),
        ("internlm2_5-step-prover-critic", "InternLM2.5-StepProver-Critic"),
    ],
)
def test_names_resolve(spelling: str, name: str) -> None:
    assert REGISTRY.get(spelling).name == name


@pytest.mark.parametrize(
    ("typo", "suggested"),
    [
        ("polar-7", "POLAR-7B"),
        ("polar7b-base", "POLAR-7B-Base"),
        ("stepprover-critic", "InternLM2.5-StepProver-Critic"),
    ],
)
def test_did_you_mean(typo: str, suggested: str) -> None:
    with pytest.raises(UnknownModelError) as info:
        REGISTRY.get(typo)
    assert suggested in info.value.suggestions
    assert f"Did you mean: {', '.join(info.value.suggestions)}?" in str(info.value)


def test_info_says_what_a_reward_model_scores() -> None:
    import subprocess
    import sys

    cli = Path(sys.executable).with_name("model-zoo")
    polar = subprocess.run(
        [cli, "info", "polar-7b"], capture_output=True, text=True, timeout=120, check=True
    )
    assert (
        "scores prompt + reference + output (scoring: reference-based); reward_token_id 92527"
        in polar.stdout
    )
    critic = subprocess.run(
        [cli, "info", "internlm2_5-step-prover-critic"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "scores conversations (scoring: conversation); reward_token_id 92527" in critic.stdout


def test_select_by_scoring_style_keeps_only_reward_models_that_score_that_way() -> None:
    import model_zoo

    conversation = model_zoo.select(kind="reward", scoring="conversation")
    reference = model_zoo.select(scoring="reference-based")
    assert conversation and reference
    assert {m.scoring_style for m in conversation} == {"conversation"}
    assert {m.scoring_style for m in reference} == {"reference-based"}
    assert {m.family for m in reference} == {"polar"} or all(
        "polar" in m.name.lower() for m in reference
    )
    # the best conversation scorer is what load_reward(...).score(conversation) can use
    assert conversation[0].scoring_style == "conversation"
    everything = {m.name for m in model_zoo.select(kind="reward")}
    assert {m.name for m in conversation} | {m.name for m in reference} == everything
    assert model_zoo.select(kind="chat", scoring="conversation") == []  # chat models do not score


def test_unknown_scoring_filter_is_a_usage_error_naming_the_choices() -> None:
    import model_zoo
    from model_zoo.errors import UsageError

    with pytest.raises(UsageError, match="conversation, reference-based"):
        model_zoo.select(scoring="pairwise")


def test_list_scoring_option() -> None:
    import json as _json
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "model_zoo.cli.main", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    out = run("list", "--scoring", "reference-based", "--json")
    assert out.returncode == 0, out.stderr
    rows = _json.loads(out.stdout)
    assert rows and all("polar" in r["name"].lower() for r in rows)
    bad = run("list", "--scoring", "nope")
    assert bad.returncode != 0 and "reference-based" in bad.stderr + bad.stdout
