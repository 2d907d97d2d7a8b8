"""The xtuner 0.2.0 virtualenv that holds POLAR's own RewardModelClient, built once (file-locked
for xdist) and shared by the server tests (tests/test_server_polar_client.py) and the encoding
check (tests/test_reward_polar.py), so neither depends on the other having run first."""

from __future__ import annotations

from pathlib import Path

from fixtures_clients import build_venv

# xtuner 0.2.0 ships RewardModelClient. It is installed without its dependencies (torch,
# deepspeed, mmengine and more, none of which the client uses), next to what rm_utils.py imports,
# at the transformers version xtuner 0.2.0 pins. A new release is a deliberate change here.
CLIENT_PIN = "xtuner==0.2.0"
CLIENT_DEPS = ("transformers==4.48.0", "sentencepiece", "protobuf", "requests")


def polar_client_python() -> Path:
    """The interpreter of the client's venv, built (under a file lock) when missing."""
    return build_venv(
        "polar-" + CLIENT_PIN.replace("==", "-"),
        [["--no-deps", CLIENT_PIN], list(CLIENT_DEPS)],
        marker=" ".join((CLIENT_PIN, *CLIENT_DEPS)),
        lock_name=".polar-client.lock",
    )
