"""GGUF variants end to end: the registry's level -> file map, ``pull --gguf`` fetching exactly
one file (verified) from whichever hub has it, ``model_zoo.load(NAME:LEVEL)`` and ``info``."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from fixtures_gguf import tiny_gguf  # noqa: F401  (fixture)
from fixtures_pull import probes

import model_zoo
from model_zoo.cli.main import main
from model_zoo.download.pull import pull_model
from model_zoo.errors import UsageError
from model_zoo.registry.api import get
from model_zoo.store.verify import verify
from model_zoo.testing.local_hub import LocalHub

HF = "internlm/internlm2_5-7b-chat-gguf"
MS = "Shanghai_AI_Laboratory/internlm2_5-7b-chat-gguf"
LEVELS = {"q8_0": "q8_0", "q4_0": "q4_0", "fp16": "f16"}  # registry level -> tiny outtype


@pytest.fixture
def gguf_hub(tiny_gguf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    """HF and ModelScope copies of the 7B GGUF repository holding tiny files under the real
    names."""
    root = tmp_path / "hub"
    for repo in (HF, MS):
        d = root / repo
        d.mkdir(parents=True)
        (d / "README.md").write_text("# InternLM2.5-7B-Chat GGUF Model\n")
        for level, outtype in LEVELS.items():
            _, path = tiny_gguf("internlm2", outtype)
            shutil.copy(path, d / f"internlm2_5-7b-chat-{level}.gguf")
    hub = LocalHub(root).start()
    for key, value in hub.env().items():
        monkeypatch.setenv(key, value)
    yield hub, root
    hub.stop()


def test_the_registry_maps_levels_to_files() -> None:
    info = get("internlm3-8b-instruct:Q4_K_M")
    assert info.name == "InternLM3-8B-Instruct-GGUF" and info.variant_of == "InternLM3-8B-Instruct"
    assert info.gguf_file() == "internlm3-8b-instruct-q4_k_m.gguf"
    assert (
        info.chat_format == "chatml"
        and info.generation_defaults == get("InternLM3-8B-Instruct").generation_defaults
    )
    assert get("internlm2_5-7b-chat-gguf:f16").gguf_file() == "internlm2_5-7b-chat-fp16.gguf"
    assert get("internlm/internlm2_5-7b-chat-gguf").sources["modelscope"] == MS
    assert get("internlm3-8b-instruct-awq").quant_format == "awq"
    assert get("InternLM2.5-20B-Chat-4bit-AWQ").variant_of == "InternLM2.5-20B-Chat"
    with pytest.raises(UsageError, match="no q9_k file"):
        get("internlm2_5-7b-chat:q9_k")
    with pytest.raises(UsageError, match="no GGUF release"):
        get("internlm2_5-7b:q4_k_m")
    with pytest.raises(UsageError, match="quantization level"):
        get("internlm2_5-7b-chat:latest-and-greatest")


def test_pull_gguf_fetches_exactly_one_verified_file(gguf_hub) -> None:
    hub, root = gguf_hub
    result = pull_model("internlm2_5-7b-chat", gguf="q8_0", source="hf")
    files = sorted(p.name for p in result.path.iterdir() if not p.name.startswith(".model-zoo"))
    assert files == ["internlm2_5-7b-chat-q8_0.gguf"]
    assert (result.path / files[0]).read_bytes() == (root / HF / files[0]).read_bytes()
    assert result.name == "InternLM2.5-7B-Chat-GGUF" and result.repo_id == HF
    assert verify(result.path).ok
    served = {r.path for r in hub.stats.requests if r.kind == "file"}
    assert served == {"internlm2_5-7b-chat-q8_0.gguf"}


def test_name_colon_level_is_the_same_pull_and_any_hub_that_has_it_serves(gguf_hub) -> None:
    _, root = gguf_hub
    shutil.rmtree(root / HF)  # only ModelScope has it now: auto falls back to it
    result = pull_model("internlm2_5-7b-chat-gguf:q4_0", probes=probes("hf", "modelscope"))
    assert result.source == "modelscope" and result.repo_id == MS
    assert sorted(p.name for p in result.path.iterdir() if p.suffix == ".gguf") == [
        "internlm2_5-7b-chat-q4_0.gguf"
    ]


def test_two_levels_live_side_by_side_and_a_repeat_moves_no_bytes(gguf_hub) -> None:
    hub, _ = gguf_hub
    first = pull_model("internlm2_5-7b-chat", gguf="q8_0", source="hf")
    second = pull_model("internlm2_5-7b-chat", gguf="q4_0", source="hf")
    assert (first.path / "internlm2_5-7b-chat-q8_0.gguf").is_file()
    assert (second.path / "internlm2_5-7b-chat-q4_0.gguf").is_file()
    before = hub.stats.bytes_served()
    again = pull_model("internlm2_5-7b-chat-gguf:q8_0", source="hf")
    assert (again.path / "internlm2_5-7b-chat-q8_0.gguf").is_file()
    assert hub.stats.bytes_served() == before


def test_load_by_name_and_level_pulls_and_loads_natively(gguf_hub, tiny_gguf) -> None:  # noqa: F811
    runner = model_zoo.load("internlm2_5-7b-chat:q8_0", device="cpu", dtype="float32")
    assert runner.path.name == "internlm2_5-7b-chat-q8_0.gguf"
    assert runner.name == "InternLM2.5-7B-Chat-GGUF"
    # the registry's parent restores the dynamic rope scaling GGUF drops
    assert runner.spec.rope_scaling is not None and runner.spec.rope_scaling.type == "dynamic"
    assert (
        runner.profile.generation.temperature
        == get("internlm2_5-7b-chat").generation_defaults.temperature
    )
    assert runner.chat("hi", max_new_tokens=3, do_sample=False, system="")


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_cli_pull_gguf_and_info_lists_variants(
    gguf_hub, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _cli(
        capsys, "pull", "internlm2_5-7b-chat", "--gguf", "fp16", "--source", "hf", "-q"
    )
    assert code == 0, out
    assert Path(out.strip().splitlines()[-1], "internlm2_5-7b-chat-fp16.gguf").is_file()
    code, out = _cli(capsys, "info", "internlm2_5-7b-chat")
    assert code == 0, out
    assert "InternLM2.5-7B-Chat-GGUF" in out and "internlm2_5-7b-chat-q4_k_m.gguf" in out
    assert re.search(
        r"variant of +InternLM2\.5-7B-Chat \(gguf\)",
        _cli(capsys, "info", "internlm2_5-7b-chat-gguf")[1],
    )
    code, out = _cli(capsys, "info", "internlm3-8b-instruct", "--json")
    rows = {(r["variant"], r["level"]): r for r in json.loads(out)["variant_memory"]}
    q4 = rows[("InternLM3-8B-Instruct-GGUF", "q4_k_m")]
    assert q4["weights_from"] == "bits per weight" and 4.5 < q4["weights_gib"] < 5.5
    assert rows[("InternLM3-8B-Instruct-AWQ", None)]["weights_from"] == "int4"
    code, out = _cli(capsys, "pull", "internlm2_5-7b-chat", "--gguf", "q9_k", "--dry-run")
    assert code == 2 and "no q9_k file" in out


def test_a_pulled_level_is_served_to_ollama_from_the_store(gguf_hub, tmp_path: Path) -> None:
    from ollama_pull import OllamaStylePull

    from model_zoo.cli.cmd_mirror import mirror_store
    from model_zoo.settings import load_settings

    pulled = pull_model("internlm2_5-7b-chat", gguf="q8_0", source="hf")
    store, _ = mirror_store(load_settings().home)
    with LocalHub(store) as mirror:
        result = OllamaStylePull(insecure=True).pull(f"{mirror.url}/{HF}:q8_0", tmp_path / "ollama")
        model = result.manifest["layers"][0]
        assert (
            result.blobs[model["digest"]].read_bytes()
            == (pulled.path / "internlm2_5-7b-chat-q8_0.gguf").read_bytes()
        )
        params = json.loads(
            next(
                result.blobs[la["digest"]].read_bytes()
                for la in result.manifest["layers"]
                if la["mediaType"].endswith(".params")
            )
        )
        assert params["stop"] == ["<|im_start|>", "<|im_end|>"]
