"""Defects found by reviewing the hub adapters and the local hub (one test per defect)."""

from __future__ import annotations

import socket

import pytest

from model_zoo.errors import HubUnreachableError
from model_zoo.hubs.catalog import SOURCE_KEYS
from model_zoo.hubs.factory import adapter_for
from model_zoo.hubs.http import safe_url
from model_zoo.settings import load_settings
from model_zoo.testing.hub_server import LocalHub

from fixtures_hub import SAMPLE_REPO

PASSWORD = "mirror-s3cret-pw"
TOKEN = "hf_review_token_0123456789"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env_for(endpoint: str) -> dict[str, str]:
    from model_zoo.hubs.catalog import HUBS

    env = {info.endpoint_env: endpoint for info in HUBS.values()}
    for info in HUBS.values():
        env[info.token_envs[0]] = TOKEN
    return env


@pytest.mark.parametrize("source", SOURCE_KEYS)
def test_mirror_password_in_the_endpoint_stays_out_of_errors_and_reprs(source: str) -> None:
    endpoint = f"http://alice:{PASSWORD}@127.0.0.1:{_closed_port()}"
    adapter = adapter_for(source, load_settings(_env_for(endpoint)))
    assert PASSWORD not in repr(adapter)
    with pytest.raises(HubUnreachableError) as info:
        adapter.manifest("ns/repo")
    shown = str(info.value) + repr(info.value.fields)
    assert PASSWORD not in shown and TOKEN not in shown
    assert "127.0.0.1" in shown  # still says which endpoint failed


@pytest.mark.parametrize("source", SOURCE_KEYS)
def test_manifest_endpoint_recorded_without_the_mirror_password(
    source: str, local_hub: LocalHub
) -> None:
    endpoint = local_hub.url.replace("http://", f"http://alice:{PASSWORD}@")
    env = {k: endpoint for k in local_hub.env()}
    manifest = adapter_for(source, load_settings(env)).manifest(SAMPLE_REPO)
    assert manifest.files
    assert PASSWORD not in manifest.endpoint
    assert manifest.endpoint == local_hub.url


def test_safe_url_keeps_ipv6_brackets() -> None:
    assert safe_url("http://[::1]:8080/api?x=1") == "http://[::1]:8080/api"
