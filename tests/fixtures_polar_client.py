"""The xtuner 0.2.0 virtualenv that holds POLAR's own RewardModelClient, built once (file-locked
for xdist) and shared by the server tests (tests/test_server_polar_client.py) and the encoding
check (tests/test_reward_polar.py), so neither depends on the other having run first."""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

from fixtures_clients import venv_root

# xtuner 0.2.0 ships RewardModelClient. It is installed without its dependencies (torch,
# deepspeed, mmengine and more, none of which the client uses), next to what rm_utils.py imports,
# at the transformers version xtuner 0.2.0 pins. A new release is a deliberate change here.
CLIENT_PIN = "xtuner==0.2.0"
CLIENT_DEPS = ("transformers==4.48.0", "sentencepiece", "protobuf", "requests")


def polar_client_python() -> Path:
    """The interpreter of the client's venv, built (under a file lock) when missing."""
    want = " ".join((CLIENT_PIN, *CLIENT_DEPS))
    venv = venv_root() / ("polar-" + CLIENT_PIN.replace("==", "-"))
    python = venv / "bin" / "python"
    ready = venv / ".ready"
    venv_root().mkdir(parents=True, exist_ok=True)
    with open(venv_root() / ".polar-client.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers: one builds, the others wait
        if ready.is_file() and ready.read_text() == want and python.exists():
            return python
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        for step in (["--no-deps", CLIENT_PIN], list(CLIENT_DEPS)):
            cmd = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *step]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
            if done.returncode != 0:
                raise RuntimeError(
                    f"{' '.join(cmd)} failed:\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
                )
        ready.write_text(want)
    return python
