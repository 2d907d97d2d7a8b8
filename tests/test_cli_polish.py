"""CLI polish: examples in every command's help (and they parse), exit codes, --version,
completion."""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures_docs import ROOT, docgen, parse_cli
from fixtures_registry import MINI_REGISTRY

import model_zoo
from model_zoo import errors
from model_zoo.cli.main import main
from model_zoo.registry.loader import load_registry
from model_zoo.settings import load_settings

EXE = Path(sys.executable).with_name("model-zoo")

COMMANDS = [(path, cmd) for path, cmd in docgen.iter_commands(docgen.cli_command())]
IDS = [" ".join(path[1:]) for path, _ in COMMANDS]


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXE), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


# ---------------------------------------------------------------- help and examples


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(p[1:]) for p, _ in COMMANDS}
    for expected in (
        "list",
        "info",
        "search",
        "pull",
        "verify",
        "lock",
        "doctor",
        "run",
        "chat",
        "serve-mirror",
        "serve-reward",
        "score",
        "compare",
        "cache list",
        "cache rm",
        "registry check",
        "dev make-tiny",
    ):
        assert expected in names


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=IDS)
def test_help_has_examples_that_parse(
    path: tuple[str, ...], cmd: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary, _, examples = docgen.split_help(cmd.help)
    assert summary, f"{' '.join(path)} has no help text"
    assert examples, f"`{' '.join(path)} --help` has no Examples section"
    monkeypatch.chdir(tmp_path)  # examples may name files; give the parser real ones
    parsed = []
    for line in examples:
        argv = docgen.example_argv(line)
        assert argv is not None, f"example is not a model-zoo command: {line!r}"
        for arg in argv:
            if re.search(r"\.(json|jsonl|yaml|lock)$", arg):
                (tmp_path / arg).write_text("{}")
        try:
            parsed.append(parse_cli(argv))
        except Exception as exc:  # a click usage error: the example is wrong
            pytest.fail(f"example {line!r} does not parse: {type(exc).__name__}: {exc}")
    assert any(p[: len(path)] == path for p in parsed), (
        f"no example runs {' '.join(path)}: {examples}"
    )


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=IDS)
def test_help_renders_with_examples(
    path: tuple[str, ...], cmd: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*path[1:], "--help"]) == 0
    out = capsys.readouterr().out
    assert "Example" in out and "Usage" in out
    first_example = docgen.split_help(cmd.help)[2][0]
    assert first_example.split()[0] in out


def test_example_argv_understands_shell() -> None:
    assert docgen.example_argv("DIR=$(model-zoo pull X -q)") == ["pull", "X", "-q"]
    assert docgen.example_argv("model-zoo lock A B > model-zoo.lock") == ["lock", "A", "B"]
    assert docgen.example_argv("HF_ENDPOINT=http://h:1 model-zoo doctor | less") == ["doctor"]
    assert docgen.example_argv('model-zoo run m "two words" --stream') == [
        "run",
        "m",
        "two words",
        "--stream",
    ]
    assert docgen.example_argv("pip install x") is None


def test_a_wrong_example_is_caught() -> None:
    with pytest.raises(Exception, match="--no-such-option|No such option"):
        parse_cli(["pull", "x", "--no-such-option"])


# ---------------------------------------------------------------- exit codes


def test_error_classes_follow_the_documented_exit_codes() -> None:
    doc = (ROOT / "docs" / "cli.md").read_text()
    table = dict(re.findall(r"^\| (\d) \| ([a-z ]+?) \|", doc, re.MULTILINE))
    assert table == {
        "0": "success",
        "1": "failure",
        "2": "usage error or unknown name",
        "3": "integrity failure",
        "4": "network",
    }
    assert (
        errors.EXIT_OK,
        errors.EXIT_FAILURE,
        errors.EXIT_USAGE,
        errors.EXIT_INTEGRITY,
        errors.EXIT_NETWORK,
    ) == (0, 1, 2, 3, 4)
    classes = [
        c
        for c in vars(errors).values()
        if inspect.isclass(c) and issubclass(c, errors.ModelZooError)
    ]
    assert len(classes) > 15
    for cls in classes:
        if issubclass(cls, errors.IntegrityError):
            assert cls.exit_code == 3, cls
        elif cls is errors.RevisionNotFoundError:  # the hub answered: the revision typed is wrong
            assert cls.exit_code == 2, cls
        elif issubclass(cls, (errors.HubError, errors.RewardServerError)):
            assert cls.exit_code == 4, cls
        elif issubclass(cls, errors.UsageError):
            assert cls.exit_code == 2, cls
        else:
            assert cls.exit_code in (1, 3, 4), cls


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_exit_0_ok() -> None:
    proc = cli("list", "--kind", "reward")
    assert proc.returncode == 0 and "InternLM2-7B-Reward" in proc.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("info", "internlm9-7b-chat"),
        ("list", "--no-such-option"),
        ("pull", "internlm2_5-7b-chat", "--source", "nowhere"),
        ("frobnicate",),
    ],
    ids=["unknown-model", "unknown-option", "unknown-source", "unknown-command"],
)
def test_exit_2_usage(args: tuple[str, ...]) -> None:
    proc = cli(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    if args[0] == "info":
        assert "Did you mean" in proc.stderr


def _built_commands(args: list[str]) -> list[str]:
    import typer

    from model_zoo.cli.main import build_app, keep_only_invoked

    app = build_app()
    keep_only_invoked(app, args)
    return sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_a_run_builds_only_the_command_it_invokes() -> None:
    """Typer builds every command's parameters on each start; a run builds its own only."""
    everything = _built_commands([])
    assert {"pull", "list", "cache", "dev", "serve-mirror"} <= set(everything)
    assert _built_commands(["pull", "x", "-q"]) == ["pull"]
    assert _built_commands(["cache", "du"]) == ["cache"]
    assert _built_commands(["serve-mirror", "dir"]) == ["serve-mirror"]
    for args in (["--help"], ["--version"], ["pul"], ["-h", "pull"]):
        assert _built_commands(args) == everything, args


def test_an_unknown_command_still_gets_suggestions() -> None:
    proc = cli("pul", "internlm2_5-7b-chat")
    assert proc.returncode == 2
    assert "Did you mean 'pull'" in proc.stderr, proc.stderr


def test_error_messages_print_brackets_as_they_are(tmp_path: Path) -> None:
    """A path such as run[1]/ckpt is text, not rich markup: nothing in it may vanish."""
    missing = tmp_path / "run[1]" / "[bold]ckpt"
    proc = cli("verify", str(missing))
    assert proc.returncode == 2 and str(missing) in proc.stderr, proc.stderr


def test_exit_3_integrity(tmp_path: Path) -> None:
    ckpt = tmp_path / "tiny"
    made = cli("dev", "make-tiny", "internlm2", str(ckpt))
    assert made.returncode == 0, made.stderr
    assert cli("verify", str(ckpt)).returncode == 0
    shard = min(ckpt.glob("*.safetensors"))
    with shard.open("r+b") as fh:
        fh.truncate(shard.stat().st_size - 64)
    proc = cli("verify", str(ckpt))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert shard.name in proc.stderr + proc.stdout and "Traceback" not in proc.stderr


def test_exit_4_network() -> None:
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}
    proc = cli("pull", "internlm2_5-1_8b-chat", "--source", "hf", "-q", env=env)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "cannot reach" in proc.stderr and "Traceback" not in proc.stderr


def test_exit_1_failure_offline_and_missing() -> None:
    proc = cli("pull", "internlm2_5-1_8b-chat", "-q", env={"MODEL_ZOO_OFFLINE": "1"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "offline" in proc.stderr


# ---------------------------------------------------------------- --version and completion


def test_version() -> None:
    from importlib.metadata import version

    proc = cli("--version")
    assert proc.returncode == 0
    assert (
        proc.stdout.strip()
        == f"model-zoo {model_zoo.__version__}"
        == f"model-zoo {version('model-zoo')}"
    )


def test_show_completion_script() -> None:
    proc = cli("--show-completion", "bash")
    assert proc.returncode == 0
    assert "complete -o default -F _model_zoo_completion model-zoo" in proc.stdout


def test_completion_protocol_completes_commands_and_options() -> None:
    def complete(words: str, cword: int) -> list[str]:
        env = {
            "_MODEL_ZOO_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(cword),
        }
        proc = cli(env=env)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.split()

    assert complete("model-zoo pu", 1) == ["pull"]
    assert set(complete("model-zoo cache ", 2)) == {"list", "du", "rm"}
    assert "--sources" in complete("model-zoo pull --so", 2)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_completion_works_in_a_real_bash(tmp_path: Path) -> None:
    script = cli("--show-completion", "bash").stdout
    (tmp_path / "c.sh").write_text(script)
    shell = (
        f"source {tmp_path / 'c.sh'}; COMP_WORDS=(model-zoo doc); COMP_CWORD=1; "
        '_model_zoo_completion model-zoo; echo "${COMPREPLY[@]}"'
    )
    env = {**os.environ, "PATH": f"{EXE.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        ["bash", "-c", shell], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert proc.stdout.split() == ["doctor"], proc.stderr


def test_install_completion_writes_the_shell_file(tmp_path: Path) -> None:
    proc = cli("--install-completion", "bash", env={"HOME": str(tmp_path), "SHELL": "/bin/bash"})
    assert proc.returncode == 0, proc.stderr
    installed = tmp_path / ".bash_completions" / "model-zoo.sh"
    assert "_model_zoo_completion" in installed.read_text()
    assert str(installed) in (tmp_path / ".bashrc").read_text()


def test_a_refusal_without_an_http_status_does_not_print_none() -> None:
    """ModelScope and OpenXLab refuse inside a 200 answer: there is no status to show."""
    message = errors.GatedRepoError(
        "ModelScope", "org/model", token_env="MODELSCOPE_API_TOKEN"
    ).message
    assert "None" not in message and "MODELSCOPE_API_TOKEN" in message
    assert (
        "(HTTP 403)" in errors.GatedRepoError("hf", "org/model", token_env=None, status=403).message
    )


# ------------------------- bad inputs to registry, serve-mirror and dev: exit 2, never a traceback


def assert_clean_usage_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def test_overlay_that_is_a_directory_is_a_config_error(tmp_path: Path) -> None:
    proc = cli(
        "list", env={"MODEL_ZOO_REGISTRY": str(tmp_path), "MODEL_ZOO_HOME": str(tmp_path / "home")}
    )
    assert_clean_usage_error(proc, "is a directory", "MODEL_ZOO_REGISTRY")


def test_dev_null_overlay_is_an_empty_overlay(tmp_path: Path) -> None:
    proc = cli(
        "list",
        "--json",
        env={"MODEL_ZOO_REGISTRY": os.devnull, "MODEL_ZOO_HOME": str(tmp_path / "home")},
    )
    assert proc.returncode == 0, proc.stderr
    builtin = load_registry(
        settings=load_settings({"MODEL_ZOO_CONFIG": os.devnull, "HOME": str(tmp_path)})
    )
    assert [m["name"] for m in json.loads(proc.stdout)] == [m.name for m in builtin]


def test_registry_check_on_a_directory_says_so(tmp_path: Path) -> None:
    proc = cli("registry", "check", str(tmp_path))
    assert_clean_usage_error(proc, "is a directory")
    assert "file not found" not in proc.stderr


def test_registry_check_on_a_missing_file_says_not_found(tmp_path: Path) -> None:
    proc = cli("registry", "check", str(tmp_path / "nope.yaml"))
    assert_clean_usage_error(proc, "file not found")


def test_valid_overlay_still_loads(write_registry: Callable[..., Path], tmp_path: Path) -> None:
    overlay = write_registry(MINI_REGISTRY)
    proc = cli(
        "info",
        "demo-org/demo-1b-chat",
        env={"MODEL_ZOO_REGISTRY": str(overlay), "MODEL_ZOO_HOME": str(tmp_path / "home")},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split() == ["name", "Demo-1B-Chat"]


@pytest.fixture
def hub_dir(tmp_path: Path) -> Path:
    repo = tmp_path / "hub" / "org" / "repo"
    repo.mkdir(parents=True)
    (repo / "config.json").write_text("{}", encoding="utf-8")
    return tmp_path / "hub"


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_serve_mirror_rejects_a_port_out_of_range(hub_dir: Path, port: str) -> None:
    proc = cli("serve-mirror", str(hub_dir), "--port", port)
    assert_clean_usage_error(proc, "--port", "0<=x<=65535")


@pytest.mark.parametrize("rate", ["0", "-5"])
def test_serve_mirror_rejects_a_rate_that_is_not_positive(hub_dir: Path, rate: str) -> None:
    proc = cli("serve-mirror", str(hub_dir), "--port", "0", "--bandwidth", rate)
    assert_clean_usage_error(proc, "--bandwidth must be a positive rate")


def test_serve_mirror_on_a_taken_port_says_to_pick_another(hub_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = cli("serve-mirror", str(hub_dir), "--port", str(port))
    assert_clean_usage_error(proc, f"127.0.0.1:{port}", "try another --port")


def test_serve_mirror_on_a_foreign_address_blames_the_host_not_the_port(hub_dir: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is never an address of this machine: bind() fails without traffic.
    proc = cli("serve-mirror", str(hub_dir), "--host", "192.0.2.1", "--port", "0")
    assert_clean_usage_error(proc, "check --host")
    assert "another --port" not in proc.stderr


def test_make_tiny_into_an_existing_file_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("keep me", encoding="utf-8")
    proc = cli("dev", "make-tiny", "internlm2", str(target))
    assert_clean_usage_error(proc, f"cannot write {target}")
    assert target.read_text(encoding="utf-8") == "keep me"


def test_make_tiny_below_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    proc = cli("dev", "make-tiny", "internlm2", str(tmp_path / "a-file" / "sub"))
    assert_clean_usage_error(proc, "cannot write", "Not a directory")


def test_make_hub_tree_into_an_existing_file_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("x", encoding="utf-8")
    proc = cli("dev", "make-hub-tree", str(target), "-m", "internlm2_5-1_8b-chat")
    assert_clean_usage_error(proc, f"cannot write {target}")


def test_dev_output_lines_are_never_wrapped(tmp_path: Path) -> None:
    # Piped stdout used to be hard-wrapped at 80 columns, splitting long paths across lines.
    deep = tmp_path / ("d" * 90) / "tiny"
    proc = cli("dev", "make-tiny", "internlm2", str(deep), env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"wrote 8 files ({_size(deep)}) to {deep}"]
    root = tmp_path / ("h" * 90)
    proc = cli("dev", "make-hub-tree", str(root), "-m", "internlm3", env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == f"3 repositories under {root}"


def _size(path: Path) -> str:
    from model_zoo.cli.output import human_size

    return human_size(sum(p.stat().st_size for p in path.iterdir() if p.is_file()))
