"""`model-zoo list / info / search / registry check` through the real console script."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fixtures_registry import MINI_REGISTRY

from model_zoo.registry.api import list_models

_SCRIPT = Path(sys.executable).with_name("model-zoo")
# Reward models besides InternLM2-Reward: every POLAR size fits 24 GB in bf16, as does the critic.
_POLAR = ("POLAR-1.8B-Base", "POLAR-1.8B", "POLAR-7B-Base", "POLAR-7B")
_CRITIC = "InternLM2.5-StepProver-Critic"
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "model_zoo.cli.main"]
HEAVY = ("torch", "transformers", "httpx", "safetensors", "sentencepiece")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def run_json(*args: str) -> object:
    proc = run(*args, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_list_table_shows_every_model() -> None:
    proc = run("list")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "41 models"
    header = next(line for line in lines if line.startswith("name"))
    assert header.split() == [
        "name",
        "kind",
        "size",
        "context",
        "released",
        "bf16",
        "GiB",
        "sources",
    ]
    for m in list_models():
        assert any(line.startswith(m.name + " ") for line in lines), m.name


def test_list_json_has_everything_for_scripts() -> None:
    data = run_json("list")
    assert isinstance(data, list) and len(data) == 41
    chat = next(d for d in data if d["name"] == "InternLM2.5-7B-Chat")
    assert chat["sources"]["modelscope"] == "Shanghai_AI_Laboratory/internlm2_5-7b-chat"
    assert chat["web_urls"]["hf"] == "https://huggingface.co/internlm/internlm2_5-7b-chat"
    assert chat["released"] == "2024-07-03" and chat["dims"]["num_hidden_layers"] == 32
    assert set(chat["memory"]) == {"bf16", "int8", "int4"}
    assert chat["memory"]["bf16"]["total_gib"] == pytest.approx(15.91, abs=0.01)


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (
            ("--family", "internlm2.5", "--kind", "chat"),
            {"InternLM2.5-1.8B-Chat", "InternLM2.5-7B-Chat", "InternLM2.5-20B-Chat"},
        ),
        (("--source", "modelers"), {"InternLM3-8B-Instruct"}),
        (
            ("--kind", "reward", "--fits", "24GB"),
            {"InternLM2-1.8B-Reward", "InternLM2-7B-Reward", *_POLAR, _CRITIC},
        ),
        (
            ("--kind", "reward", "--fits", "24GB", "--dtype", "int8"),
            {
                "InternLM2-1.8B-Reward",
                "InternLM2-7B-Reward",
                "InternLM2-20B-Reward",
                *_POLAR,
                _CRITIC,
            },
        ),
    ],
)
def test_list_filters(args: tuple[str, ...], names: set[str]) -> None:
    assert {d["name"] for d in run_json("list", *args)} == names


def test_list_fits_matches_the_api() -> None:
    data = run_json("list", "--fits", "24GB")
    assert [d["name"] for d in data] == [m.name for m in list_models(max_memory_gb=24)]
    assert all(d["memory"]["bf16"]["total_gib"] <= 24 for d in data)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("list", "--kind", "chatty"), "unknown kind"),
        (("list", "--fits", "lots"), "cannot read memory size"),
        (("list", "--source", "github"), "unknown source"),
        (
            ("info", "internlm2.5-8b-chat"),
            "Did you mean: InternLM2.5-1.8B-Chat, InternLM2.5-7B-Chat",
        ),
        (("info", "name@"), "NAME@REVISION"),
    ],
)
def test_usage_errors_exit_2_without_traceback(args: tuple[str, ...], says: str) -> None:
    proc = run(*args)
    assert proc.returncode == 2
    assert says in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_info_text_shows_sources_with_urls_and_memory() -> None:
    proc = run("info", "Shanghai_AI_Laboratory/internlm2_5-7b-chat")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("name ") and "InternLM2.5-7B-Chat" in out.splitlines()[0]
    for url in (
        "https://huggingface.co/internlm/internlm2_5-7b-chat",
        "https://modelscope.cn/models/Shanghai_AI_Laboratory/internlm2_5-7b-chat",
        "https://openxlab.org.cn/models/detail/OpenLMLab/internlm2_5-7b-chat",
        "https://openxlab.org.cn/models/detail/OpenLMLab/internlm2_5-7b-chat-original",
    ):
        assert url in out
    for line in ("memory bf16", "memory int8", "memory int4", "chat format", "generation", "dims"):
        assert line in out


def test_info_json_carries_revision_and_reward() -> None:
    data = run_json("info", "internlm2-7b-reward@main")
    assert data["name"] == "InternLM2-7B-Reward" and data["revision"] == "main"
    assert data["reward"] == {
        "reward_token_id": 92527,
        "rewardbench": 86.6,
        "scoring": "conversation",
    }
    assert data["architecture"] == "InternLM2ForRewardModel"


def test_info_context_changes_the_estimate() -> None:
    short = run_json("info", "internlm2_5-7b-chat")["memory"]["bf16"]
    long = run_json("info", "internlm2_5-7b-chat", "--context", "32768")["memory"]["bf16"]
    assert long["kv_cache_gib"] == pytest.approx(4.0) and short["kv_cache_gib"] == pytest.approx(
        0.5
    )


def test_search() -> None:
    proc = run("search", "reward")
    assert proc.returncode == 0
    assert proc.stdout.startswith("8 matches for 'reward'")
    assert [d["name"] for d in run_json("search", "math", "plus")] == [
        "InternLM2-Math-Plus-1.8B",
        "InternLM2-Math-Plus-7B",
        "InternLM2-Math-Plus-20B",
        "InternLM2-Math-Plus-Mixtral8x22B",
    ]


def test_registry_check_builtin_ok() -> None:
    proc = run("registry", "check")
    assert proc.returncode == 0 and proc.stdout.strip().endswith("registry.yaml: ok")


def test_registry_check_lists_every_problem(write_registry: Callable[..., Path]) -> None:
    bad = write_registry(
        MINI_REGISTRY
        + "  - {name: Bad-1, family: demo, size: 1B, kind: base, released: 2024-01-01, colour: red,"
        + " sources: {hf: x}}\n"
        + "  - {name: Bad-2, family: demo, size: 1B, kind: reward, released: 2024-01-01,"
        + " sources: {hf: o/bad-2}}\n"
    )
    proc = run("registry", "check", str(bad), "--standalone")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    for fragment in (
        "entry 'Bad-1', field 'colour'",
        "entry 'Bad-1', field 'sources.hf'",
        "entry 'Bad-2', field 'reward.reward_token_id'",
        "3 problem(s)",
    ):
        assert fragment in proc.stderr
    data = json.loads(run("registry", "check", str(bad), "--standalone", "--json").stdout)
    assert data["ok"] is False and len(data["problems"]) == 3
    assert {(p["entry"], p["field"]) for p in data["problems"]} == {
        ("Bad-1", "colour"),
        ("Bad-1", "sources.hf"),
        ("Bad-2", "reward.reward_token_id"),
    }


def test_user_registry_via_environment(
    write_registry: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    user = write_registry(
        "models:\n"
        "  - {name: Private-FT, family: internlm2.5, size: 7B, kind: chat, released: 2024-11-01,\n"
        "     dims: internlm2.5-7b, sources: {modelscope: my-lab/private-ft}}\n"
    )
    monkeypatch.setenv("MODEL_ZOO_REGISTRY", str(user))
    data = run_json("info", "my-lab/private-ft")
    assert data["name"] == "Private-FT" and data["chat_format"] == "chatml"
    assert len(run_json("list")) == 42


@pytest.mark.parametrize(
    "args", [("list",), ("list", "--json"), ("info", "internlm2_5-7b-chat"), ("search", "chat")]
)
def test_commands_do_not_import_heavy_modules(args: tuple[str, ...]) -> None:
    code = (
        "import sys, json\n"
        "from model_zoo.cli.main import main\n"
        f"rc = main({list(args)!r})\n"
        f"print(json.dumps([rc, [m for m in {HEAVY!r} if m in sys.modules]]), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == [0, []]
