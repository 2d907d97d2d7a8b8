"""``model-zoo ollama``: the Modelfile reads back through (a replica of) Ollama's parser, and its
Go template, run with Ollama's chat semantics, gives the checkpoint's own prompt, token for token.

No registry this project reaches ships the Ollama binary, so ``tests/ollama_replica.py``
re-implements the two pieces from Ollama's Go source; the parser replica is first held to a case
from Ollama's own ``parser_test.go``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from fixtures_gguf import tiny_gguf  # noqa: F401  (fixture)
from ollama_replica import parse_modelfile, render

from model_zoo.cli.main import main
from model_zoo.ollama.create import effective_defaults, prepare
from model_zoo.ollama.modelfile import CHATML_TEMPLATE, modelfile_text, profile_for, quote
from model_zoo.registry.api import get
from model_zoo.runner.chat import DEFAULT_SYSTEM_PROMPT, messages_with_system
from model_zoo.runner.tokenizer import InternLMTokenizer

CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "2+2?"}],
    [
        {"role": "user", "content": "Hi 你好"},
        {"role": "assistant", "content": "Hello! 你好。"},
        {"role": "user", "content": "Tell me a joke\nabout cats."},
    ],
    [{"role": "system", "content": ""}, {"role": "user", "content": "  spaced  "}],
    [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "<|im_start|> is a token"},
    ],
]


def test_the_parser_replica_reads_ollamas_own_test_case() -> None:
    text = (
        "\nFROM model1\nADAPTER adapter1\nLICENSE MIT\n"
        "PARAMETER param1 value1\nPARAMETER param2 value2\n"
        'TEMPLATE """{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n'
        '{{ .System }}<|eot_id|>{{ end }}"""    \n'
    )
    assert parse_modelfile(text) == [
        ("model", "model1"),
        ("adapter", "adapter1"),
        ("license", "MIT"),
        ("param1", "value1"),
        ("param2", "value2"),
        (
            "template",
            "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n"
            "{{ .System }}<|eot_id|>{{ end }}",
        ),
    ]


@pytest.mark.parametrize("name", ["internlm3-8b-instruct:q4_k_m", "internlm2_5-7b-chat:q8_0"])
def test_modelfile_reads_back_as_written(name: str) -> None:
    info = get(name)
    profile = profile_for(
        info.chat_format,
        defaults=effective_defaults(info),
        system=DEFAULT_SYSTEM_PROMPT,
        license="apache-2.0\nCode and weights: Apache-2.0.",
    )
    commands = parse_modelfile(modelfile_text("./" + info.gguf_file(), profile))
    assert commands[0] == ("model", "./" + info.gguf_file())
    got = dict(c for c in commands if c[0] != "stop")
    assert got["template"] == CHATML_TEMPLATE
    assert got["system"] == DEFAULT_SYSTEM_PROMPT
    assert got["license"] == "apache-2.0\nCode and weights: Apache-2.0."
    assert [v for c, v in commands if c == "stop"] == ["<|im_start|>", "<|im_end|>"]
    d = info.generation_defaults
    assert float(got["temperature"]) == d.temperature and float(got["top_p"]) == d.top_p
    assert int(got["num_predict"]) == d.max_new_tokens
    if info.architecture == "InternLM3ForCausalLM":
        assert int(got["top_k"]) == 40 and float(got["repeat_penalty"]) == 1.005
    else:  # the runner's InternLM2 default: no top-k cut, no repetition penalty
        assert int(got["top_k"]) == 0 and float(got["repeat_penalty"]) == 1.0


def test_quote_round_trips_awkward_values() -> None:
    for value in [
        "plain",
        "two words",
        " lead",
        'say "hi"',
        "line\nbreak",
        "tab\there",
        "<|im_end|>",
    ]:
        assert parse_modelfile(f"FROM x\nSYSTEM {quote(value)}\n")[1] == ("system", value)
    with pytest.raises(Exception, match="three double quotes"):
        quote('a """ b')


@pytest.mark.parametrize("arch", ["internlm2", "internlm3"])
def test_template_gives_the_checkpoints_prompt_token_for_token(tiny_checkpoint, arch: str) -> None:
    tok = InternLMTokenizer.from_pretrained(tiny_checkpoint(arch))
    for convo in CONVERSATIONS:
        native = messages_with_system(
            convo, system=None, thinking=False, default_system=DEFAULT_SYSTEM_PROMPT
        )
        want_text = tok.apply_chat_template(native, add_generation_prompt=True)
        want_ids = tok.apply_chat_template(native, add_generation_prompt=True, tokenize=True)
        got_text = render(CHATML_TEMPLATE, convo, modelfile_system=DEFAULT_SYSTEM_PROMPT)
        assert (
            "<s>" + got_text == want_text
        )  # llama.cpp adds <s> (add_bos_token), the template does not
        assert tok.encode(got_text) == want_ids


def _fake_ollama(directory: Path, exit_code: int) -> Path:
    script = directory / "ollama"
    script.write_text(
        f'#!/bin/sh\necho "$@" >> "{directory}/calls"\n'
        f'echo "transferring model data"\nexit {exit_code}\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_cli_writes_the_modelfile_and_runs_ollama_create(
    tiny_gguf,  # noqa: F811
    tmp_path: Path,
    capsys,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, source = tiny_gguf("internlm2", "q8_0")
    gguf = tmp_path / "internlm2_5-1_8b-chat-q8_0.gguf"
    gguf.write_bytes(source.read_bytes())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ.get("PATH", ""))
    # no ollama yet: the command is printed
    assert main(["ollama", str(gguf)]) == 0
    out = capsys.readouterr()
    modelfile = tmp_path / "internlm2_5-1_8b-chat-q8_0.Modelfile"
    assert out.out.strip().splitlines()[-1] == str(modelfile)
    assert f"ollama create internlm2_5-1_8b-chat:q8_0 -f {modelfile}" in out.err
    commands = dict(c for c in parse_modelfile(modelfile.read_text()) if c[0] != "stop")
    assert commands["model"] == "./" + gguf.name and commands["template"] == CHATML_TEMPLATE
    # with ollama on PATH it runs
    _fake_ollama(bin_dir, 0)
    assert main(["ollama", str(gguf), "--name", "mine:latest"]) == 0
    assert (bin_dir / "calls").read_text().split() == [
        "create",
        "mine:latest",
        "-f",
        str(modelfile),
    ]
    assert "created mine:latest" in capsys.readouterr().err
    # and a failing create is an error that keeps the Modelfile
    _fake_ollama(bin_dir, 3)
    assert main(["ollama", str(gguf)]) == 1
    assert "failed (exit 3)" in capsys.readouterr().err and modelfile.is_file()


def test_prepare_for_a_registry_name_uses_the_registry(
    tiny_gguf,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from model_zoo.testing.local_hub import LocalHub

    repo = tmp_path / "hub" / "internlm" / "internlm2_5-1_8b-chat-gguf"
    repo.mkdir(parents=True)
    _, source = tiny_gguf("internlm2", "q4_0")
    (repo / "internlm2_5-1_8b-chat-q4_0.gguf").write_bytes(source.read_bytes())
    with LocalHub(tmp_path / "hub") as hub:
        for key, value in hub.env().items():
            monkeypatch.setenv(key, value)
        plan = prepare("internlm2_5-1_8b-chat:q4_0")
    assert (
        plan.gguf.name == "internlm2_5-1_8b-chat-q4_0.gguf"
        and plan.modelfile.parent == plan.gguf.parent
    )
    assert plan.ollama_name == "internlm2.5-1.8b-chat:q4_0"
    commands = dict(c for c in parse_modelfile(plan.modelfile.read_text()) if c[0] != "stop")
    assert commands["license"].startswith("internlm-model-license")
    assert float(commands["temperature"]) == 0.8
