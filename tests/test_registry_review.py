"""Defects found by reviewing the newcomer's commands: bad inputs get an error that says what to
do (exit 2), never a traceback. Every test goes through the real console script."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fixtures_registry import MINI_REGISTRY

from model_zoo.registry.loader import load_registry
from model_zoo.settings import load_settings

_SCRIPT = Path(sys.executable).with_name("model-zoo")
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "model_zoo.cli.main"]


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def assert_clean_usage_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


# ------------------------------------------------------------------ registry overlay / check


def test_overlay_that_is_a_directory_is_a_config_error(tmp_path: Path) -> None:
    proc = run(
        "list", env={"MODEL_ZOO_REGISTRY": str(tmp_path), "MODEL_ZOO_HOME": str(tmp_path / "home")}
    )
    assert_clean_usage_error(proc, "is a directory", "MODEL_ZOO_REGISTRY")


def test_dev_null_overlay_is_an_empty_overlay(tmp_path: Path) -> None:
    proc = run(
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
    proc = run("registry", "check", str(tmp_path))
    assert_clean_usage_error(proc, "is a directory")
    assert "file not found" not in proc.stderr


def test_registry_check_on_a_missing_file_says_not_found(tmp_path: Path) -> None:
    proc = run("registry", "check", str(tmp_path / "nope.yaml"))
    assert_clean_usage_error(proc, "file not found")


def test_valid_overlay_still_loads(write_registry: Callable[..., Path], tmp_path: Path) -> None:
    overlay = write_registry(MINI_REGISTRY)
    proc = run(
        "info",
        "demo-org/demo-1b-chat",
        env={"MODEL_ZOO_REGISTRY": str(overlay), "MODEL_ZOO_HOME": str(tmp_path / "home")},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split() == ["name", "Demo-1B-Chat"]


# ------------------------------------------------------------------ serve-mirror options


@pytest.fixture
def hub_dir(tmp_path: Path) -> Path:
    repo = tmp_path / "hub" / "org" / "repo"
    repo.mkdir(parents=True)
    (repo / "config.json").write_text("{}", encoding="utf-8")
    return tmp_path / "hub"


@pytest.mark.parametrize("port", ["70000", "-1"])
def test_serve_mirror_rejects_a_port_out_of_range(hub_dir: Path, port: str) -> None:
    proc = run("serve-mirror", str(hub_dir), "--port", port)
    assert_clean_usage_error(proc, "--port", "0<=x<=65535")


@pytest.mark.parametrize("rate", ["0", "-5"])
def test_serve_mirror_rejects_a_rate_that_is_not_positive(hub_dir: Path, rate: str) -> None:
    proc = run("serve-mirror", str(hub_dir), "--port", "0", "--bandwidth", rate)
    assert_clean_usage_error(proc, "--bandwidth must be a positive rate")


def test_serve_mirror_on_a_taken_port_says_to_pick_another(hub_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        proc = run("serve-mirror", str(hub_dir), "--port", str(port))
    assert_clean_usage_error(proc, f"127.0.0.1:{port}", "try another --port")


def test_serve_mirror_on_a_foreign_address_blames_the_host_not_the_port(hub_dir: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is never an address of this machine: bind() fails without traffic.
    proc = run("serve-mirror", str(hub_dir), "--host", "192.0.2.1", "--port", "0")
    assert_clean_usage_error(proc, "check --host")
    assert "another --port" not in proc.stderr


# ------------------------------------------------------------------ dev make-tiny / make-hub-tree


def test_make_tiny_into_an_existing_file_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("keep me", encoding="utf-8")
    proc = run("dev", "make-tiny", "internlm2", str(target))
    assert_clean_usage_error(proc, f"cannot write {target}")
    assert target.read_text(encoding="utf-8") == "keep me"


def test_make_tiny_below_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    proc = run("dev", "make-tiny", "internlm2", str(tmp_path / "a-file" / "sub"))
    assert_clean_usage_error(proc, "cannot write", "Not a directory")


def test_make_hub_tree_into_an_existing_file_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("x", encoding="utf-8")
    proc = run("dev", "make-hub-tree", str(target), "-m", "internlm2_5-1_8b-chat")
    assert_clean_usage_error(proc, f"cannot write {target}")


def test_dev_output_lines_are_never_wrapped(tmp_path: Path) -> None:
    # Piped stdout used to be hard-wrapped at 80 columns, splitting long paths across lines.
    deep = tmp_path / ("d" * 90) / "tiny"
    proc = run("dev", "make-tiny", "internlm2", str(deep), env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"wrote 8 files ({_size(deep)}) to {deep}"]
    root = tmp_path / ("h" * 90)
    proc = run("dev", "make-hub-tree", str(root), "-m", "internlm3", env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == f"3 repositories under {root}"


def _size(path: Path) -> str:
    from model_zoo.cli.output import human_size

    return human_size(sum(p.stat().st_size for p in path.iterdir() if p.is_file()))
