"""The official Modelers and OpenXLab clients, each in a virtualenv of its own.

``openmind_hub`` and ``openxlab`` pin versions of requests, urllib3, rich and setuptools that
conflict with each other and with model-zoo, so they never enter the project's environment. A
venv per client is built on first use (pip, from the package index CI can reach) and cached
under ``.venv-clients/`` at the repository root (``MODEL_ZOO_CLIENT_VENVS`` moves it); a venv is
reused only once its install finished (``.ready`` names the pin).

    def test_x(run_client):
        result = run_client("openmind", {"repo": ..., ...}, env={...})

``run_client`` runs ``tests/client_harness.py`` with the client's interpreter and returns the
harness's JSON answer (it fences the client's network to 127.0.0.0/8, see there).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
HARNESS = Path(__file__).resolve().parent / "client_harness.py"

# The versions the issue was written against; a new release is a deliberate change here.
CLIENT_PINS: dict[str, str] = {
    "openmind": "openmind_hub==1.3.0",
    "openxlab": "openxlab==0.1.3",
}

RunClient = Callable[..., dict[str, Any]]


def venv_root() -> Path:
    return Path(os.environ.get("MODEL_ZOO_CLIENT_VENVS") or ROOT / ".venv-clients")


def build_venv(
    name: str, steps: list[list[str]], *, marker: str, lock_name: str, timeout: float = 900
) -> Path:
    """The interpreter of venv ``name`` under ``venv_root()``, built with ``pip install`` of each
    of ``steps`` when missing (under a file lock: xdist workers wait for one build); reused only
    once its install finished (``.ready`` holds ``marker``)."""
    venv = venv_root() / name
    python = venv / "bin" / "python"
    ready = venv / ".ready"
    venv_root().mkdir(parents=True, exist_ok=True)
    with open(venv_root() / lock_name, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready.is_file() and ready.read_text() == marker and python.exists():
            return python
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        for step in steps:
            cmd = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *step]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
            if done.returncode != 0:
                raise RuntimeError(
                    f"{' '.join(cmd)} into {venv} failed:\n"
                    f"{done.stdout[-2000:]}{done.stderr[-4000:]}"
                )
        ready.write_text(marker)
    return python


def client_python(client: str) -> Path:
    """The interpreter of ``client``'s venv, built (under a file lock) when missing."""
    pin = CLIENT_PINS[client]
    return build_venv(pin.replace("==", "-"), [[pin]], marker=pin, lock_name=f".{client}.lock")


@pytest.fixture(scope="session")
def client_pythons() -> Callable[[str], Path]:
    cache: dict[str, Path] = {}

    def get(client: str) -> Path:
        if client not in cache:
            cache[client] = client_python(client)
        return cache[client]

    return get


@pytest.fixture
def run_client(client_pythons: Callable[[str], Path], tmp_path: Path) -> RunClient:
    """Run the harness for ``client`` with ``args``; ``env`` adds variables to a clean environment.

    HOME and the caches point into the test's tmp_path, so the clients' token files, caches and
    configs never touch the user's. Raises AssertionError with the client's output when the
    harness itself fails (the client's own failures come back as ``ok: False``).
    """

    def run(
        client: str,
        args: Mapping[str, Any],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 240,
    ) -> dict[str, Any]:
        home = tmp_path / f"{client}-home"
        home.mkdir(exist_ok=True)
        base = {
            k: v
            for k, v in os.environ.items()
            if k in ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
        }
        full_env = {
            **base,
            "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "NO_PROXY": "*",
            "PYTHONDONTWRITEBYTECODE": "1",
            "OM_HUB_DISABLE_PROGRESS_BARS": "1",
            "TQDM_DISABLE": "1",
            **(env or {}),
        }
        done = subprocess.run(
            [str(client_pythons(client)), str(HARNESS), client, json.dumps(dict(args))],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("HARNESS-RESULT ")]
        assert done.returncode == 0 and lines, (
            f"harness for {client} failed (exit {done.returncode}):\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        )
        result: dict[str, Any] = json.loads(lines[-1][len("HARNESS-RESULT ") :])
        result["stderr"] = done.stderr
        return result

    return run
