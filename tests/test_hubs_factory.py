"""adapter_for: the right adapter per source, endpoints and tokens from settings, no cross-hub
tokens."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from model_zoo.hubs.catalog import SOURCE_KEYS
from model_zoo.hubs.factory import adapter_for
from model_zoo.hubs.huggingface import HuggingFaceAdapter
from model_zoo.hubs.modelers import ModelersAdapter
from model_zoo.hubs.modelscope import ModelScopeAdapter
from model_zoo.hubs.openxlab import OpenXLabAdapter
from model_zoo.settings import load_settings

ENV = {
    "HF_ENDPOINT": "http://127.0.0.1:8001",
    "MODELSCOPE_ENDPOINT": "http://127.0.0.1:8002/",
    "OPENMIND_HUB_ENDPOINT": "http://127.0.0.1:8003",
    "OPENXLAB_ENDPOINT": "http://127.0.0.1:8004",
    "HF_TOKEN": "hf-token",
    "MODELSCOPE_API_TOKEN": "ms-token",
    "OPENMIND_HUB_TOKEN": "om-token",
    "OPENXLAB_TOKEN": "xlab-token",
    "MODEL_ZOO_CONFIG": "/nonexistent/config.toml",
}


@pytest.mark.parametrize(
    ("source", "cls", "endpoint"),
    [
        ("hf", HuggingFaceAdapter, "http://127.0.0.1:8001"),
        ("modelscope", ModelScopeAdapter, "http://127.0.0.1:8002"),
        ("modelers", ModelersAdapter, "http://127.0.0.1:8003"),
        ("openxlab", OpenXLabAdapter, "http://127.0.0.1:8004"),
        ("openxlab-origin", OpenXLabAdapter, "http://127.0.0.1:8004"),
    ],
)
def test_each_source_gets_its_adapter_endpoint_and_only_its_own_token(
    source, cls, endpoint
) -> None:
    adapter = adapter_for(source, load_settings(ENV))
    assert isinstance(adapter, cls)
    assert adapter.source == source
    assert adapter.session.endpoint == endpoint
    own = {"hf": "hf-token", "modelscope": "ms-token", "modelers": "om-token"}.get(
        source, "xlab-token"
    )
    headers = adapter.session.file_headers(endpoint + "/x")
    assert any(own in value for value in headers.values())
    others = {"hf-token", "ms-token", "om-token", "xlab-token"} - {own}
    assert not any(o in value for o in others for value in headers.values())
    assert all(t not in repr(adapter) for t in {own, *others})


def test_every_catalog_source_has_an_adapter() -> None:
    for source in SOURCE_KEYS:
        assert (
            adapter_for(source, load_settings({"MODEL_ZOO_CONFIG": "/nonexistent"})).source
            == source
        )


def test_endpoints_from_the_settings_file(tmp_path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[endpoints]\nmodelscope = "http://127.0.0.1:9999"\n')
    adapter = adapter_for("modelscope", load_settings({"MODEL_ZOO_CONFIG": str(config)}))
    assert adapter.session.endpoint == "http://127.0.0.1:9999"


def test_default_endpoints_and_openxlab_origin_format() -> None:
    settings = load_settings({"MODEL_ZOO_CONFIG": "/nonexistent"})
    assert adapter_for("hf", settings).session.endpoint == "https://huggingface.co"
    assert (
        adapter_for("openxlab", settings).session.endpoint
        == "https://openapi.openxlab.org.cn/api/v1"
    )
    assert adapter_for("openxlab-origin", settings).hf_format is False


def test_defaults_to_load_settings_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("OPENMIND_HUB_ENDPOINT", "http://127.0.0.1:7777")
    assert adapter_for("modelers").session.endpoint == "http://127.0.0.1:7777"


def test_a_shared_client_is_used(mock_hub) -> None:
    hub = mock_hub(lambda r: httpx.Response(200))
    adapter = adapter_for("modelers", load_settings(ENV), client=hub.client)
    adapter.probe()
    assert hub.hosts() == ["127.0.0.1"]


def test_unknown_source() -> None:
    with pytest.raises(KeyError, match="valid sources"):
        adapter_for("github", load_settings(ENV))


def test_importing_the_factory_stays_light() -> None:
    code = (
        "import sys, model_zoo.hubs.factory, model_zoo.hubs.catalog;"
        "print(sorted(m for m in ('httpx', 'huggingface_hub') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
