"""Test-wide guards: no traffic leaves 127.0.0.0/8, and no user settings leak into tests."""

from __future__ import annotations

import ipaddress
import re
import signal
import socket

import pytest

# Fixture plugins of each area (tests/fixtures_<area>.py). Add yours here.
pytest_plugins = [
    "fixtures_tiny",
    "fixtures_adapter_mocks",
    "fixtures_local_hub",
    "fixtures_reward",
    "fixtures_pull",
    "fixtures_registry",
    "fixtures_engine",
    "fixtures_clients",
    "fixtures_frameworks",
]

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_create_connection = socket.create_connection


def _check_address(address: object) -> None:
    if isinstance(address, tuple) and address:
        host = address[0]
        if isinstance(host, bytes):
            host = host.decode()
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            if host == "localhost":
                return
            raise OSError(f"test tried to reach {host!r}: tests may only use 127.0.0.0/8") from None
        if not ip.is_loopback:
            raise OSError(f"test tried to reach {host}: tests may only use 127.0.0.0/8")


def _guarded_connect(self: socket.socket, address: object) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check_address(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _check_address(address)
    return _real_connect_ex(self, address)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]

# Variables that point model-zoo or hub clients somewhere real, or carry credentials.
_SCRUB = (
    "HF_ENDPOINT",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_HUB_OFFLINE",
    "MODELSCOPE_ENDPOINT",
    "MODELSCOPE_API_TOKEN",
    "OPENMIND_HUB_ENDPOINT",
    "OPENMIND_HUB_TOKEN",
    "MODELERS_TOKEN",
    "OPENXLAB_ENDPOINT",
    "OPENXLAB_TOKEN",
    "OPENXLAB_AK",
    "OPENXLAB_SK",
    "MODEL_ZOO_SOURCES",
    "MODEL_ZOO_OFFLINE",
    "MODEL_ZOO_REGISTRY",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


@pytest.fixture(autouse=True)
def _isolated_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in _SCRUB:
        monkeypatch.delenv(var, raising=False)
    home = tmp_path_factory.mktemp("home")
    # HOME too: hub clients keep credentials there (~/.openxlab/config.json is read by model-zoo)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MODEL_ZOO_HOME", str(home / "store"))
    monkeypatch.setenv("MODEL_ZOO_CONFIG", str(home / "no-config.toml"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(home / "modelscope"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the tests, and a path given on the command line must exist.

    A background job of a non-interactive shell (``(pytest &)``, some CI runners) starts with
    SIGINT ignored, and every process it starts inherits that: the Ctrl-C tests then saw a pull
    that could not be interrupted and a mirror that would not stop. The suite tests Ctrl-C, so
    it restores the default handler (in the controller and in each xdist worker).

    Under xdist the workers collect, and a mistyped file came back as "no tests ran" (exit 5)
    without naming the file; this says which one, with pytest's usage-error status (4).
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if hasattr(config, "workerinput") or config.option.pyargs:
        return  # a worker (the controller checked), or module names rather than paths
    for arg in config.args:
        if not (config.invocation_params.dir / arg.split("::")[0]).exists():
            raise pytest.UsageError(f"file or directory not found: {arg}")


def pytest_sessionstart(session: pytest.Session) -> None:
    """An unknown marker in ``-m`` is a usage error that names it, as in a serial run.

    With ``--strict-markers`` (pyproject's addopts) pytest refuses the expression while
    selecting tests; under xdist that happens in each worker, and the controller reported it as
    an xdist INTERNALERROR (exit 3) that never named the marker. The controller checks first.
    """
    config = session.config
    expr = config.option.markexpr
    if hasattr(config, "workerinput") or not expr or not config.option.strict_markers:
        return
    known = {line.split(":")[0].split("(")[0].strip() for line in config.getini("markers")}
    words = re.findall(r"[A-Za-z_][\w]*", re.sub(r"\([^)]*\)", "", expr))
    unknown = sorted({w for w in words if w not in known and w not in {"and", "or", "not"}})
    if unknown:
        raise pytest.UsageError(
            f"unknown marker(s) in -m {expr!r}: {', '.join(unknown)}; "
            f"see pytest --markers (this suite's own: slow, gpu)"
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files that hold a ``slow`` test run first, each file's tests kept together and in order.

    The suite runs under xdist with ``--dist loadfile`` (pyproject's addopts): a worker takes
    whole files in collection order. Alphabetical order put the longest files (vLLM, the RLHF
    frameworks) last, where the other workers sat idle waiting for them; started first, the
    short files fill in around them.
    """
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: order within a file kept
