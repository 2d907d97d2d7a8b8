"""The RLHF frameworks' own code, and a reward server for them to call.

TRL installs into the project's environment (the ``test`` extra). verl and OpenRLHF do not:
verl 0.9.1 pins transformers<5.11 and OpenRLHF 0.11.2 pins transformers==5.15.0, deepspeed and
flash-attn (CUDA only). Their reward code needs none of that, so each is installed without its
dependencies, plus only the packages that code imports, into a directory of its own
(``pip install --target``, under ``.venv-clients/``, built once under a file lock and reused
once ``.ready`` names the pins). ``run_framework`` runs ``framework_harness.py`` with the
project's interpreter and that directory first on ``PYTHONPATH``, so the framework's modules
sit over the project's torch, transformers and model-zoo, and the project stays untouched.

Fixtures:
    served_tiny_reward   ``model-zoo serve-reward`` on the tiny fp32 reward model (session)
    served_tiny_polar    the same for the tiny fp32 POLAR model (session)
    run_framework        ``(framework, args, env=None) -> dict``: the harness's JSON answer
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fixtures_clients import venv_root

HARNESS = Path(__file__).resolve().parent / "framework_harness.py"
ROOT = Path(__file__).resolve().parent.parent

# The framework at the version the tests were written against, then exactly what its reward
# code imports that the project's environment lacks (found by importing it, at the versions pip
# chose when installing the framework with all its dependencies). A new release is a deliberate
# change here.
_AIOHTTP = [
    "aiohttp==3.14.5",
    "aiohappyeyeballs==2.7.1",
    "aiosignal==1.4.0",
    "frozenlist==1.8.0",
    "multidict==7.2.1",
    "propcache==0.5.4",
    "yarl==1.25.1",
]
OVERLAY_PINS: dict[str, list[str]] = {
    "verl": [
        "verl==0.9.1",
        "tensordict==0.10.0",
        "pyvers==0.1.0",
        "cloudpickle==3.1.3",
        "orjson==3.13.0",
        "omegaconf==2.3.1",
        "antlr4-python3-runtime==4.9.3",
        "codetiming==1.4.0",
        *_AIOHTTP,
    ],
    "openrlhf": ["openrlhf==0.11.2", "pylatexenc==2.10", *_AIOHTTP],
}

RunFramework = Callable[..., dict[str, Any]]


@functools.cache  # once per process; the file lock orders xdist workers
def overlay(framework: str) -> Path:
    """The directory holding ``framework`` without its dependencies, built when missing."""
    pins = OVERLAY_PINS[framework]
    stamp = " ".join(pins)
    target = venv_root() / f"{pins[0].replace('==', '-')}-overlay"
    ready = target / ".ready"
    venv_root().mkdir(parents=True, exist_ok=True)
    with open(venv_root() / f".{framework}-overlay.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers: one builds, the others wait
        if ready.is_file() and ready.read_text() == stamp:
            return target
        if target.exists():
            subprocess.run(["rm", "-rf", str(target)], check=True)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "--target",
                str(target),
                *pins,
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"pip install --target {target} {stamp} failed:\n{done.stdout[-2000:]}"
                f"{done.stderr[-4000:]}"
            )
        ready.write_text(stamp)
    return target


@pytest.fixture
def run_framework(tmp_path: Path) -> RunFramework:
    """Run the harness for ``framework`` with ``args``; returns its ``HARNESS-RESULT`` JSON.

    The child gets a clean environment (HOME in tmp_path, no proxies) plus ``env``, and the
    harness fences its network to 127.0.0.0/8 before the framework is imported.
    """

    def run(
        framework: str,
        args: Mapping[str, Any],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 300,
    ) -> dict[str, Any]:
        home = tmp_path / f"{framework}-home"
        home.mkdir(exist_ok=True)
        keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "MODEL_ZOO_HOME", "HF_HOME")
        full_env = {
            **{k: v for k, v in os.environ.items() if k in keep},
            "HOME": str(home),
            "PYTHONPATH": os.pathsep.join([str(overlay(framework)), str(ROOT)]),
            "PYTHONDONTWRITEBYTECODE": "1",
            "NO_PROXY": "*",
            "HF_HUB_OFFLINE": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            "WANDB_MODE": "disabled",
            "VERL_USE_EXTERNAL_PLUGINS": "none",
            **(env or {}),
        }
        done = subprocess.run(
            [sys.executable, str(HARNESS), framework, json.dumps(dict(args))],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("HARNESS-RESULT ")]
        assert done.returncode == 0 and lines, (
            f"harness for {framework} failed (exit {done.returncode}):\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
        )
        result: dict[str, Any] = json.loads(lines[-1][len("HARNESS-RESULT ") :])
        result["stdout"], result["stderr"] = done.stdout, done.stderr
        return result

    return run


@contextmanager
def serve_reward(checkpoint: Path, *extra: str) -> Iterator[str]:
    """``model-zoo serve-reward CHECKPOINT`` in its own process on 127.0.0.1; yields its base
    URL."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "model_zoo.cli.main",
            "serve-reward",
            str(checkpoint),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--device",
            "cpu",
            "--dtype",
            "float32",
            *extra,
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
    )
    assert proc.stderr is not None
    try:
        url = None
        deadline = time.monotonic() + 180
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            found = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
            url = found.group(1) if found else None
        assert url, "serve-reward never said where it listens"
        # keep reading its log, so a long session never fills the pipe and stalls the server
        threading.Thread(target=proc.stderr.read, daemon=True).start()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def served_tiny_reward(tiny_reward_fp32: Path) -> Iterator[str]:
    """One ``serve-reward`` of the tiny fp32 reward model for the framework tests of a session."""
    with serve_reward(tiny_reward_fp32) as url:
        yield url


@pytest.fixture(scope="session")
def served_tiny_polar(tiny_polar_fp32: Path) -> Iterator[str]:
    """``serve-reward`` of the tiny fp32 POLAR (reference-based) model."""
    with serve_reward(tiny_polar_fp32) as url:
        yield url
