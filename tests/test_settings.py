"""Settings: file + environment precedence, validation, and token secrecy."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_zoo.errors import ConfigError
from model_zoo.settings import DEFAULT_SOURCE_ORDER, load_settings


def test_defaults(tmp_path: Path) -> None:
    s = load_settings({"HOME": str(tmp_path), "MODEL_ZOO_CONFIG": str(tmp_path / "none.toml")})
    assert s.home == tmp_path / ".cache" / "model-zoo"
    assert s.sources == DEFAULT_SOURCE_ORDER
    assert s.endpoint("hf") == "https://huggingface.co"
    assert s.offline is False
    assert s.tokens == {}


def test_file_then_env_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        'sources = ["modelscope", "hf"]\nhome = "/data/zoo"\n[endpoints]\nhf = "https://mirror.example/"\n'
    )
    s = load_settings({"MODEL_ZOO_CONFIG": str(cfg)})
    assert s.sources == ("modelscope", "hf")
    assert s.home == Path("/data/zoo")
    assert s.endpoint("hf") == "https://mirror.example"  # trailing slash dropped
    assert s.config_path == cfg

    env = {
        "MODEL_ZOO_CONFIG": str(cfg),
        "MODEL_ZOO_SOURCES": "hf, modelers",
        "HF_ENDPOINT": "http://127.0.0.1:9999",
        "MODEL_ZOO_HOME": str(tmp_path / "store"),
    }
    s = load_settings(env)
    assert s.sources == ("hf", "modelers")
    assert s.endpoint("hf") == "http://127.0.0.1:9999"
    assert s.home == tmp_path / "store"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"MODEL_ZOO_SOURCES": "hf,github"}, "github"),
        ({"HF_ENDPOINT": "ftp://x"}, "HF_ENDPOINT"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], needle: str, tmp_path: Path) -> None:
    env = {"MODEL_ZOO_CONFIG": str(tmp_path / "none.toml"), **env}
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert needle in str(info.value)


def test_bad_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="colour"):
        load_settings({"MODEL_ZOO_CONFIG": str(cfg)})
    cfg.write_text("sources = [\n")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings({"MODEL_ZOO_CONFIG": str(cfg)})


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("sources = 5\n", "sources"),
        ("sources = [1, 2]\n", "sources"),
        ("home = 5\n", "home"),
        ('home = ""\n', "home"),
        ('registry = ["a"]\n', "registry"),
        ("endpoints = 5\n", "endpoints"),
        ("[endpoints]\nhf = 5\n", "endpoints"),
    ],
)
def test_a_value_of_the_wrong_type_names_its_key(text: str, key: str, tmp_path: Path) -> None:
    """Not a TypeError from deep inside: a ConfigError naming the file, the key and an example."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings({"MODEL_ZOO_CONFIG": str(cfg)})
    message = str(info.value)
    assert str(cfg) in message and f"{key} must be" in message and "for example" in message


def test_tokens_per_hub_and_hidden_from_repr(tmp_path: Path) -> None:
    env = {
        "MODEL_ZOO_CONFIG": str(tmp_path / "none.toml"),
        "HF_TOKEN": "hf_secret_value",
        "MODELSCOPE_API_TOKEN": "ms_secret_value",
    }
    s = load_settings(env)
    assert s.token("hf") == "hf_secret_value"
    assert s.token("modelscope") == "ms_secret_value"
    assert s.token("modelers") is None
    assert "secret" not in repr(s)


@pytest.mark.parametrize("var", ["MODEL_ZOO_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline(var: str, tmp_path: Path) -> None:
    assert load_settings({"MODEL_ZOO_CONFIG": str(tmp_path / "n"), var: "1"}).offline
    assert not load_settings({"MODEL_ZOO_CONFIG": str(tmp_path / "n"), var: "0"}).offline


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("example.org", False),
        ("", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    from model_zoo.netaddr import is_loopback_host, is_loopback_url

    assert is_loopback_host(host) is loopback
    if host and not host.startswith("["):
        url_host = f"[{host}]" if ":" in host else host
        assert is_loopback_url(f"http://{url_host}:8000/x") is loopback
