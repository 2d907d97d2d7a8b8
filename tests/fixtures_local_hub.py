"""Fixtures around the local multi-protocol hub (``model_zoo.testing.local_hub.LocalHub``).

    def test_x(local_hub, hub_env):        # a started hub over a sample repo; env points at it
        local_hub.faults.add(Fault.status(503))
        ...
    def test_y(hub_root, make_hub):        # build your own repos, then start a hub over them
        write_repo(hub_root, "ns/name", {"a.bin": 1000})
        hub = make_hub(page_size=2)
    def test_z(make_hub, hub_tls):         # an https hub (hub_tls.ca is the CA to trust)
        hub = make_hub(tls=hub_tls.context)

``SAMPLE_REPO`` holds ``SAMPLE_FILES``: nested folders, .gitattributes, small JSON files and two
safetensors shards plus a tokenizer that .gitattributes sends to LFS. Nothing reaches the 10 MiB
LFS size threshold, to keep tests fast; ask ``write_repo`` for big files where a test needs them.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from model_zoo.mirror.server import tls_context
from model_zoo.testing.hub_repos import write_repo
from model_zoo.testing.local_hub import LocalHub

SAMPLE_REPO = "internlm/sample-chat"
SAMPLE_FILES: dict[str, bytes | str | int] = {
    ".gitattributes": (
        "*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
        "*.model filter=lfs diff=lfs merge=lfs -text\n"
    ),
    "README.md": "# sample\n\nA repository for local hub tests.\n",
    "config.json": '{"architectures": ["InternLM2ForCausalLM"], "hidden_size": 64}\n',
    "generation_config.json": '{"eos_token_id": [2, 92542]}\n',
    "model.safetensors.index.json": '{"weight_map": {"a": "model-00001-of-00002.safetensors", '
    '"b": "model-00002-of-00002.safetensors"}}\n',
    "model-00001-of-00002.safetensors": 300_000,
    "model-00002-of-00002.safetensors": 200_001,
    "tokenizer.model": 50_000,
    "nested/deeper/notes.txt": "nested file\n",
    "nested/data.bin": 4097,
}

HubFactory = Callable[..., LocalHub]


@pytest.fixture
def hub_root(tmp_path: Path) -> Path:
    """A hub root holding ``SAMPLE_REPO``; add more repositories with ``write_repo``."""
    root = tmp_path / "hub-root"
    write_repo(root, SAMPLE_REPO, SAMPLE_FILES)
    return root


@pytest.fixture
def make_hub(hub_root: Path) -> Iterator[HubFactory]:
    """Start LocalHubs over ``hub_root`` (keyword arguments go to LocalHub); stopped at teardown."""
    hubs: list[LocalHub] = []

    def make(root: Path | None = None, **kwargs: Any) -> LocalHub:
        hub = LocalHub(root or hub_root, **kwargs).start()
        hubs.append(hub)
        return hub

    yield make
    for hub in hubs:
        hub.stop()


@pytest.fixture
def local_hub(make_hub: HubFactory) -> LocalHub:
    """A started LocalHub over ``hub_root``."""
    return make_hub()


@pytest.fixture
def hub_env(local_hub: LocalHub, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point every hub's endpoint variable at ``local_hub`` for this test; returns the variables."""
    env = local_hub.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


# Names the test certificate is valid for. ``hub.modelers.cn`` satisfies the official Modelers
# client's host whitelist; tests make it resolve to 127.0.0.1 (never through DNS).
TLS_NAMES = ("127.0.0.1", "localhost", "hub.modelers.cn")


@dataclass(frozen=True)
class HubTLS:
    ca: Path  # PEM of the CA that signed the hub's certificate: what clients must trust
    cert: Path  # PEM with the hub's certificate chain and private key
    context: ssl.SSLContext  # server side, for LocalHub(tls=...)


@pytest.fixture(scope="session")
def hub_tls(tmp_path_factory: pytest.TempPathFactory) -> HubTLS:
    """A throwaway CA and a certificate for ``TLS_NAMES``, made on the fly (trustme)."""
    import trustme

    where = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert(*TLS_NAMES)
    ca.cert_pem.write_to_path(str(where / "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(str(where / "hub.pem"))
    return HubTLS(where / "ca.pem", where / "hub.pem", tls_context(where / "hub.pem"))
