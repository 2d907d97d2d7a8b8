"""Registry files that do not validate, user overlays (MODEL_ZOO_REGISTRY), and the compiled
cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fixtures_registry import MINI_REGISTRY

from model_zoo.errors import ConfigError, RegistryError, RegistryProblem, UnknownModelError
from model_zoo.registry.loader import check_registry_file, load_registry

pytestmark = pytest.mark.usefixtures("fresh_registry_cache")

Writer = Callable[..., Path]


def _entry(name: str, extra: str = "", sources: str = "{hf: demo-org/x}") -> str:
    """One model entry in flow style, valid unless ``extra`` breaks it."""
    body = (
        f"name: {name}, family: demo, size: 1B, kind: base, released: 2024-01-01, "
        f"sources: {sources}"
    )
    return f"  - {{{body}{', ' + extra if extra else ''}}}\n"


def _problems(writer: Writer, models: str, head: str = "") -> list[RegistryProblem]:
    text = MINI_REGISTRY.replace("models:\n", head + "models:\n") + models
    return check_registry_file(writer(text), standalone=True)


def _find(problems: list[RegistryProblem], entry: str | None, field: str | None) -> RegistryProblem:
    for p in problems:
        if p.entry == entry and p.field == field:
            return p
    raise AssertionError(
        f"no problem for entry={entry!r} field={field!r} in:\n" + "\n".join(map(str, problems))
    )


def test_mini_registry_is_valid(write_registry: Writer) -> None:
    path = write_registry(MINI_REGISTRY)
    assert check_registry_file(path, standalone=True) == []
    reg = load_registry(path)
    assert [m.name for m in reg] == ["Demo-1B", "Demo-1B-Chat", "Demo-1B-Reward"]
    chat = reg.get("demo_chat_1b")
    assert chat.chat_format == "chatml" and chat.generation_defaults.temperature == 0.7
    assert reg.get("Demo-1B").generation_defaults is None  # chat_defaults skip base models
    assert reg.get("Demo-1B").license == "demo-license"
    assert reg.get("Demo-1B-Reward").architecture == "InternLM2ForRewardModel"  # entry beats family


PROBLEM_CASES = [
    (_entry("E1", "colour: blue"), "E1", "colour", "unknown key"),
    (_entry("E2", sources="{hf: not-a-repo-id}"), "E2", "sources.hf", "namespace/name"),
    (_entry("E3", sources="{hf: org/bad--name}"), "E3", "sources.hf", "HuggingFace"),
    (_entry("E4", sources="{modelscope: 'a/b/c'}"), "E4", "sources.modelscope", "namespace/name"),
    (_entry("E5", sources="{github: org/x5}"), "E5", "sources.github", "unknown source"),
    (_entry("E6", sources="{hf: org/x6, openxlab: null}"), "E6", "sources.openxlab", "no repo id"),
    (_entry("E7", sources="{hf: ''}"), "E7", "sources.hf", "no repo id"),
    (_entry("E8", sources="{}"), "E8", "sources", "at least one source"),
    (
        _entry("E9", "kind: reward", sources="{hf: org/x9}").replace("kind: base, ", ""),
        "E9",
        "reward.reward_token_id",
        "reward_token_id",
    ),
    (
        _entry("E10", "reward: {rewardbench: 50}", sources="{hf: org/x10}").replace(
            "kind: base", "kind: reward"
        ),
        "E10",
        "reward.reward_token_id",
        "required",
    ),
    (
        _entry("E11", "reward: {reward_token_id: 3}", sources="{hf: org/x11}"),
        "E11",
        "reward",
        "only reward models",
    ),
    (
        _entry("E12", "family: nope", sources="{hf: org/x12}").replace("family: demo, ", ""),
        "E12",
        "family",
        "unknown family",
    ),
    (_entry("E13", "dims: huge", sources="{hf: org/x13}"), "E13", "dims", "unknown shape"),
    (
        _entry("E14", "dims: {preset: tiny, num_attention_heads: 3}", sources="{hf: org/x14}"),
        "E14",
        "dims.num_key_value_heads",
        "multiple",
    ),
    (
        _entry("E15", "dims: {hidden_size: 64}", sources="{hf: org/x15}"),
        "E15",
        "dims.num_hidden_layers",
        "missing",
    ),
    (
        _entry("E15b", "dims: {preset: tiny, hidden: 64}", sources="{hf: org/x15b}"),
        "E15b",
        "dims.hidden",
        "config.json's names: hidden_size",
    ),
    (
        _entry("E16", "kind: giant", sources="{hf: org/x16}").replace("kind: base, ", ""),
        "E16",
        "kind",
        "Input should be",
    ),
    (
        _entry("E17", "released: 2024-13-01", sources="{hf: org/x17}").replace(
            "released: 2024-01-01, ", ""
        ),
        "E17",
        "released",
        "date",
    ),
    (_entry("E18", sources="{hf: org/x18}").replace("size: 1B, ", ""), "E18", "size", "required"),
    (
        _entry("E19", "size: huge", sources="{hf: org/x19}").replace("size: 1B, ", ""),
        "E19",
        "size",
        "like 7B",
    ),
    (
        _entry("E20", "generation_defaults: {top_p: 0.9}", sources="{hf: org/x20}"),
        "E20",
        "generation_defaults",
        "chat kinds",
    ),
    (_entry("E21", "updated: 2023-01-01", sources="{hf: org/x21}"), "E21", "updated", "earlier"),
    (
        _entry("E22", "dims: tiny, params_b: 3", sources="{hf: org/x22}"),
        "E22",
        "params_b",
        "computed from dims",
    ),
    (_entry("E23", "aliases: ['has/slash']", sources="{hf: org/x23}"), "E23", "aliases", "no '/'"),
    (
        _entry("E24", "weight_format: gguf", sources="{hf: org/x24}"),
        "E24",
        "weight_format",
        "safetensors",
    ),
    (_entry("Bad Name!", sources="{hf: org/x25}"), "Bad Name!", "name", "pattern"),
]


@pytest.mark.parametrize(
    ("models", "entry", "field", "says"),
    PROBLEM_CASES,
    ids=[f"{c[1]}-{c[2]}" for c in PROBLEM_CASES],
)
def test_each_problem_names_entry_and_field(
    write_registry: Writer, models: str, entry: str, field: str, says: str
) -> None:
    found = _find(_problems(write_registry, models), entry, field)
    assert says in found.message, str(found)
    assert entry in str(found) and field in str(found)


@pytest.mark.parametrize(
    ("models", "entry", "field"),
    [
        (_entry("Demo-1B", sources="{hf: org/d1}"), "Demo-1B", "name"),
        (_entry("D2", "aliases: [Demo-Chat-1B]", sources="{hf: org/d2}"), "D2", "aliases"),
        (_entry("D3", "slug: demo-1b", sources="{hf: org/d3}"), "D3", "slug"),
        (_entry("D4", sources="{modelscope: demo-org/DEMO-1B}"), "D4", "sources.modelscope"),
        (_entry("D5", "aliases: [demo-1b-chat]", sources="{hf: org/d5}"), "D5", "aliases"),
    ],
)
def test_duplicates_across_entries(
    write_registry: Writer, models: str, entry: str, field: str
) -> None:
    found = _find(_problems(write_registry, models), entry, field)
    assert "already used by entry" in found.message


def test_every_problem_is_listed_at_once(write_registry: Writer) -> None:
    models = (
        _entry("M1", "colour: red", sources="{hf: org/m1}")
        + _entry("M2", sources="{hf: bad}")
        + _entry("M3", "reward: {reward_token_id: 1}", sources="{hf: org/m3}")
        + _entry("Demo-1B", sources="{hf: org/m4}")
    )
    path = write_registry(MINI_REGISTRY.replace("models:\n", "surprise: 1\nmodels:\n") + models)
    problems = check_registry_file(path, standalone=True)
    where = {(p.entry, p.field) for p in problems}
    assert {
        ("M1", "colour"),
        ("M2", "sources.hf"),
        ("M3", "reward"),
        ("Demo-1B", "name"),
        (None, "surprise"),
    } <= where
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    err = info.value
    assert err.exit_code == 2 and len(err.problem_list) == len(problems)
    for p in problems:
        assert str(p) in str(err)


def test_yaml_syntax_error_gives_line(write_registry: Writer) -> None:
    problems = check_registry_file(
        write_registry("models:\n  - name: [unclosed\n"), standalone=True
    )
    assert len(problems) == 1 and "not valid YAML (line" in problems[0].message


def test_duplicate_yaml_keys_are_reported(write_registry: Writer) -> None:
    text = MINI_REGISTRY.replace("    kind: base\n", "    kind: base\n    kind: chat\n", 1)
    problems = check_registry_file(write_registry(text), standalone=True)
    assert any("duplicate key 'kind'" in p.message for p in problems)


def test_family_and_shape_problems_are_reported_once(write_registry: Writer) -> None:
    text = MINI_REGISTRY.replace(
        "defaults: {architecture: InternLM2ForCausalLM, weight_format: safetensors}",
        "defaults: {architecture: InternLM2ForCausalLM, weight_format: safetensors, "
        "flavour: sweet}",
    ).replace(
        "shapes:\n",
        "shapes:\n  loop-a: {preset: loop-b}\n  loop-b: {preset: loop-a}\n"
        "  part: {hidden_size: 8}\n",
    )
    problems = check_registry_file(write_registry(text), standalone=True)
    assert [p.field for p in problems if "flavour" in (p.field or "")] == [
        "families.demo.defaults.flavour"
    ]
    assert any("preset cycle" in p.message for p in problems)
    assert any(p.field == "shapes.part.num_hidden_layers" for p in problems)


def test_missing_file_and_non_mapping(write_registry: Writer, tmp_path: Path) -> None:
    assert "file not found" in check_registry_file(tmp_path / "nope.yaml")[0].message
    assert (
        "YAML mapping"
        in check_registry_file(write_registry("- 1\n- 2\n"), standalone=True)[0].message
    )
    with pytest.raises(RegistryError):
        load_registry(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------- user overlay


OVERLAY = """\
models:
  - name: My-InternLM2.5-7B-FT
    aliases: [my-ft]
    family: internlm2.5
    size: 7B
    kind: chat
    released: 2024-10-01
    dims: internlm2.5-7b
    sources: {hf: my-lab/internlm2_5-7b-ft, modelscope: MyLab/internlm2_5-7b-ft}
  - name: InternLM2.5-7B-Chat
    sources: {hf: mirror-org/internlm2_5-7b-chat}
    generation_defaults: {temperature: 0.2}
"""


def test_overlay_extends_and_overrides(
    write_registry: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = write_registry(OVERLAY, "user.yaml")
    monkeypatch.setenv("MODEL_ZOO_REGISTRY", str(user))
    reg = load_registry()
    assert len(reg) == 42
    ft = reg.get("MyLab/internlm2_5-7b-ft")
    assert ft.name == "My-InternLM2.5-7B-FT" and ft.origin == str(user)
    assert ft.chat_format == "chatml" and ft.generation_defaults.stop_token_ids == (
        2,
        92542,
    )  # family defaults
    assert reg.get("my_ft") == ft
    chat = reg.get("InternLM2.5-7B-Chat")
    assert chat.sources["hf"] == "mirror-org/internlm2_5-7b-chat"
    assert (
        chat.sources["modelscope"] == "Shanghai_AI_Laboratory/internlm2_5-7b-chat"
    )  # merged, not replaced
    assert chat.generation_defaults.temperature == 0.2 and chat.generation_defaults.top_p == 0.8
    assert check_registry_file(user) == []  # a partial override is fine laid over the built-in
    standalone = check_registry_file(user, standalone=True)
    assert any(p.entry == "InternLM2.5-7B-Chat" and p.field == "family" for p in standalone)


def test_overlay_problems_name_the_user_file(
    write_registry: Writer, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = write_registry(
        "models:\n  - {name: Mine, aliases: [internlm3], family: internlm3, size: 8B, kind: base,\n"
        "     released: 2025-02-01, sources: {hf: me/mine}}\n",
        "bad-user.yaml",
    )
    monkeypatch.setenv("MODEL_ZOO_REGISTRY", str(user))
    with pytest.raises(RegistryError) as info:
        load_registry()
    [problem] = info.value.problem_list
    assert problem.entry == "Mine" and problem.field == "aliases" and str(user) in problem.location
    assert "InternLM3-8B-Instruct" in problem.message


def test_overlay_path_must_exist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODEL_ZOO_REGISTRY", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="MODEL_ZOO_REGISTRY"):
        load_registry()


def test_without_overlay_user_names_are_unknown() -> None:
    with pytest.raises(UnknownModelError):
        load_registry().get("my-ft")


# --------------------------------------------------------------------------- compiled cache


def _cache_files() -> list[Path]:
    return sorted((Path(os.environ["MODEL_ZOO_HOME"]) / "cache" / "registry").glob("*.json"))


def test_cache_is_written_and_used_without_yaml_or_pydantic() -> None:
    first = load_registry()
    [cache] = _cache_files()
    assert json.loads(cache.read_text())["format"] == 1
    code = (
        "import sys, json\n"
        "from model_zoo.registry.api import list_models, get\n"
        "n = len(list_models()); get('internlm2_5-7b-chat')\n"
        "heavy = ('yaml', 'pydantic', 'model_zoo.registry.schema')\n"
        "print(json.dumps([n, [m for m in heavy if m in sys.modules]]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [len(first), []]


def test_corrupt_cache_is_recompiled(fresh_registry_cache: None) -> None:
    from model_zoo.registry.loader import clear_registry_cache

    good = [m.to_dict() for m in load_registry()]
    [cache] = _cache_files()
    cache.write_text("{not json")
    clear_registry_cache()
    assert [m.to_dict() for m in load_registry()] == good
    json.loads(cache.read_text())  # rewritten whole


def test_edited_file_is_reloaded(write_registry: Writer) -> None:
    path = write_registry(MINI_REGISTRY)
    assert len(load_registry(path)) == 3
    path.write_text(MINI_REGISTRY + _entry("Added", sources="{hf: org/added}"), encoding="utf-8")
    assert load_registry(path).get("added").name == "Added"
    assert len(_cache_files()) == 2


def test_two_checkouts_with_identical_registries_report_their_own_file(tmp_path: Path) -> None:
    """One shared cache dir, two byte-identical registry.yaml files: each load names its own."""
    from model_zoo.registry.loader import clear_registry_cache

    a, b = tmp_path / "a" / "registry.yaml", tmp_path / "b" / "registry.yaml"
    for p in (a, b):
        p.parent.mkdir()
        p.write_text(MINI_REGISTRY, encoding="utf-8")
    origins_a = {m.origin for m in load_registry(a)}
    clear_registry_cache()  # a new process: only the on-disk cache is shared
    origins_b = {m.origin for m in load_registry(b)}
    assert origins_a and all(str(a) in (o or "") for o in origins_a)
    assert origins_b and all(str(b) in (o or "") for o in origins_b), origins_b
