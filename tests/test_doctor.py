"""``model-zoo doctor`` against the local hub (reachable) and closed loopback ports
(unreachable)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_zoo.cli.cmd_doctor import format_report
from model_zoo.doctor import (
    DoctorReport,
    Finding,
    StoreReport,
    advise,
    diagnose,
    proxy_for,
    proxy_settings,
    redact_url,
)
from model_zoo.hubs.catalog import HUBS
from model_zoo.testing.local_hub import LocalHub

SECRET = "hf_S3cr3tTokenValue0123456789"


def closed_port_url() -> str:
    """A loopback URL nobody listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A loopback port that accepts connections (kernel backlog) but never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield f"http://127.0.0.1:{s.getsockname()[1]}"
    s.close()


def point_hubs(monkeypatch: pytest.MonkeyPatch, urls: dict[str, str]) -> None:
    for key, url in urls.items():
        monkeypatch.setenv(HUBS[key].endpoint_env, url)


def by_source(report: DoctorReport) -> dict[str, object]:
    return {h.source: h for h in report.hubs}


def bare_report(**overrides: object) -> DoctorReport:
    """A report with every runtime package present and nothing else to say, for ``advise`` tests."""
    fields: dict[str, object] = {
        "versions": {"torch": "x", "transformers": "x", "safetensors": "x", "sentencepiece": "x"},
        "python": {},
        "gpu": {"skipped": True},
        "hubs": [],
        "store": None,
        "proxies": {},
        "offline": False,
        "config_file": None,
        "sources": [],
        "registry": {},
    }
    fields.update(overrides)
    return DoctorReport(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------- hubs


def test_every_hub_reachable_on_the_local_hub(hub_env: dict[str, str], local_hub: LocalHub) -> None:
    report = diagnose(check_gpu=False)
    hubs = by_source(report)
    assert set(hubs) == {"hf", "modelscope", "modelers", "openxlab"}
    for key, hub in hubs.items():
        assert hub.reachable is True, (key, hub.error)
        assert hub.endpoint == local_hub.url
        assert hub.endpoint_from == HUBS[key].endpoint_env
        assert hub.latency_ms is not None and 0 <= hub.latency_ms < 2000
    probes = [r for r in local_hub.stats.requests if r.method == "HEAD"]
    assert len(probes) >= 4  # one short request per hub, really sent
    assert not [f for f in report.findings if f.area in ("hubs", "network")]
    assert report.ok


def test_unreachable_hubs_are_named_with_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    point_hubs(
        monkeypatch, {k: closed_port_url() for k in ("hf", "modelscope", "modelers", "openxlab")}
    )
    report = diagnose(check_gpu=False)
    assert all(h.reachable is False and h.error for h in report.hubs)
    errors = [f for f in report.findings if f.level == "error"]
    assert len(errors) == 1 and errors[0].area == "network"
    assert "no configured hub is reachable" in errors[0].message
    hf = next(f for f in report.findings if f.message.startswith("HuggingFace"))
    assert hf.level == "warning" and "HF_ENDPOINT" in hf.advice
    assert not report.ok


def test_one_hub_down_is_a_warning_not_an_error(
    local_hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = closed_port_url()
    point_hubs(
        monkeypatch,
        {
            "hf": local_hub.url,
            "modelscope": down,
            "modelers": local_hub.url,
            "openxlab": local_hub.url,
        },
    )
    report = diagnose(check_gpu=False)
    hubs = by_source(report)
    assert hubs["hf"].reachable and not hubs["modelscope"].reachable
    levels = {f.message.split(" ")[0]: f.level for f in report.findings if f.area == "hubs"}
    assert levels == {"ModelScope": "warning"}
    assert report.ok


def test_hub_outside_the_source_order_is_only_a_note(
    local_hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_hubs(monkeypatch, {"hf": local_hub.url, "modelscope": closed_port_url()})
    monkeypatch.setenv("MODEL_ZOO_SOURCES", "hf")
    report = diagnose(check_gpu=False)
    ms = by_source(report)["modelscope"]
    assert ms.in_sources is False and ms.reachable is False
    finding = next(f for f in report.findings if f.message.startswith("ModelScope"))
    assert finding.level == "note"
    assert report.sources == ["hf"]


def test_probes_stay_within_the_budget(silent_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    point_hubs(
        monkeypatch, {k: silent_server for k in ("hf", "modelscope", "modelers", "openxlab")}
    )
    start = time.monotonic()
    report = diagnose(budget=0.5, check_gpu=False)
    elapsed = time.monotonic() - start
    assert elapsed < 3.0
    assert all(h.reachable is False for h in report.hubs)


@pytest.fixture
def rate_limited_server() -> Iterator[str]:
    """A loopback server that answers every request with 429 Too Many Requests."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class TooMany(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(429)
            self.send_header("Retry-After", "30")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), TooMany)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_rate_limited_hub_advises_a_token(
    rate_limited_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    point_hubs(monkeypatch, {"hf": rate_limited_server})
    monkeypatch.setenv("MODEL_ZOO_SOURCES", "hf")
    report = diagnose(check_gpu=False)
    hf = next(f for f in report.findings if f.message.startswith("HuggingFace"))
    assert "429" in hf.message and "HF_TOKEN" in hf.advice


def test_offline_mode_sends_nothing(
    hub_env: dict[str, str], local_hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_ZOO_OFFLINE", "1")
    report = diagnose(check_gpu=False)
    assert report.offline is True
    assert all(h.reachable is None for h in report.hubs)
    assert local_hub.stats.requests == []
    assert any(f.area == "network" and f.level == "note" for f in report.findings)
    assert report.ok


# ---------------------------------------------------------------- tokens and proxies


def test_tokens_are_named_never_shown(
    hub_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("MODELERS_TOKEN", SECRET + "-modelers")
    report = diagnose(check_gpu=False)
    hubs = by_source(report)
    assert hubs["hf"].token_env == "HF_TOKEN"
    assert hubs["modelers"].token_env == "MODELERS_TOKEN"
    assert hubs["modelscope"].token_env is None
    from model_zoo.cli.cmd_doctor import format_report

    assert SECRET not in json.dumps(report.to_dict())
    assert SECRET not in format_report(report)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pa55@proxy.corp:3128", "http://***@proxy.corp:3128"),
        ("http://token@proxy.corp:3128/", "http://***@proxy.corp:3128/"),
        ("user:pa55@proxy.corp:8080", "***@proxy.corp:8080"),
        ("http://proxy.corp:3128", "http://proxy.corp:3128"),
        ("socks5://a:b@10.0.0.1:1080", "socks5://***@10.0.0.1:1080"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_proxy_settings_redacted_and_bypass() -> None:
    env = {
        "HTTPS_PROXY": "http://u:pw@proxy.corp:3128",
        "no_proxy": "127.0.0.1,localhost,.internal",
    }
    assert proxy_settings(env) == {
        "HTTPS_PROXY": "http://***@proxy.corp:3128",
        "NO_PROXY": "127.0.0.1,localhost,.internal",
    }
    assert proxy_for("https://huggingface.co", env) == "http://***@proxy.corp:3128"
    assert proxy_for("https://hub.internal", env) is None
    assert proxy_for("http://127.0.0.1:8765", env) is None
    assert proxy_for("http://huggingface.co", env) is None  # no HTTP_PROXY, no ALL_PROXY
    assert proxy_for("http://huggingface.co", {**env, "ALL_PROXY": "http://p:1"}) == "http://p:1"


def test_proxy_that_swallows_loopback_is_diagnosed(
    local_hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy without NO_PROXY for loopback: probes really go to the (dead) proxy and fail."""
    proxy = closed_port_url().replace("http://", "http://alice:pa55word@")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    point_hubs(monkeypatch, {"hf": local_hub.url})
    monkeypatch.setenv("MODEL_ZOO_SOURCES", "hf")
    report = diagnose(check_gpu=False)
    hf = by_source(report)["hf"]
    assert hf.reachable is False
    assert hf.proxy is not None and "pa55word" not in hf.proxy and "***@" in hf.proxy
    assert local_hub.stats.requests == []  # nothing reached the hub itself
    assert any(f.area == "proxy" and "NO_PROXY" in f.advice for f in report.findings)
    assert "pa55word" not in json.dumps(report.to_dict())


def test_token_over_plain_http_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    report = bare_report(sources=["hf"])
    from model_zoo.doctor import HubReport

    report.hubs = [
        HubReport(
            "hf",
            "HuggingFace",
            "http://mirror.corp",
            "HF_ENDPOINT",
            "HF_TOKEN",
            ("HF_TOKEN",),
            True,
            None,
            True,
            3.0,
        )
    ]
    assert [f.level for f in advise(report)] == ["warning"]
    report.hubs = [
        HubReport(
            "hf",
            "HuggingFace",
            "https://mirror.corp",
            "HF_ENDPOINT",
            "HF_TOKEN",
            ("HF_TOKEN",),
            True,
            None,
            True,
            3.0,
        )
    ]
    assert advise(report) == []


# ---------------------------------------------------------------- store, settings, registry


def test_store_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_env: dict[str, str]
) -> None:
    home = tmp_path / "not-yet" / "store"
    monkeypatch.setenv("MODEL_ZOO_HOME", str(home))
    report = diagnose(check_gpu=False)
    store = report.store
    assert store is not None
    assert store.path == str(home) and store.exists is False and store.writable is True
    assert store.free_bytes and store.total_bytes and store.free_bytes <= store.total_bytes
    assert store.lock_mode in ("flock", "lockfile") and store.models == 0


def test_store_counts_models_and_snapshots_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pull_hub: LocalHub
) -> None:
    import shutil

    import model_zoo
    from model_zoo.doctor import store_report

    home = tmp_path / "store"
    monkeypatch.setenv("MODEL_ZOO_HOME", str(home))
    path = Path(model_zoo.pull("internlm2_5-1_8b-chat", source="hf"))
    shutil.copytree(path, path.parent / ("0" * 40))  # the same model pulled at a second revision
    report = store_report(home, {"MODEL_ZOO_HOME": str(home)})
    assert (report.models, report.snapshots) == (1, 2)
    versions = dict.fromkeys(
        ("model-zoo", "torch", "transformers", "safetensors", "huggingface_hub"), "1"
    )
    text = format_report(
        bare_report(store=report, versions=versions, python={"version": "3", "platform": "x"})
    )
    assert "1 model(s) in 2 snapshot(s)" in text


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        (
            StoreReport("/s", True, True, 5 * 10**9, 10**12, "ext4", "flock", 1, 0),
            [("warning", "only 5.0 GB free")],
        ),
        (
            StoreReport("/s", True, False, 10**12, 10**12, "ext4", "flock", 0, 0),
            [("error", "not writable")],
        ),
        (
            StoreReport("/s", True, True, 10**12, 10**12, "nfs4", "lockfile", 0, 2),
            [("note", "network filesystem (nfs4)"), ("note", "2 interrupted pull(s)")],
        ),
        (StoreReport("/s", True, True, 10**12, 10**12, "ext4", "flock", 3, 0), []),
    ],
)
def test_store_advice(store: StoreReport, expected: list[tuple[str, str]]) -> None:
    report = bare_report(store=store)
    found = advise(report)
    assert [f.level for f in found] == [lvl for lvl, _ in expected]
    for f, (_, text) in zip(found, expected, strict=True):
        assert text in f.message and f.advice


def test_missing_runtime_packages_advise_the_runner_extra() -> None:
    report = bare_report(
        versions={"torch": None, "transformers": None, "safetensors": "1", "sentencepiece": "1"},
        gpu={"torch": False, "devices": []},
    )
    (finding,) = advise(report)
    assert "torch, transformers" in finding.message and "model-zoo[runner]" in finding.advice


def test_bad_setting_is_reported_and_doctor_goes_on(
    hub_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_ZOO_SOURCES", "hf,nowhere")
    report = diagnose(check_gpu=False)
    bad = [f for f in report.findings if f.area == "settings"]
    assert len(bad) == 1 and "nowhere" in bad[0].message and bad[0].level == "error"
    assert all(h.reachable for h in report.hubs)  # the rest still ran, with the default order
    assert report.sources == ["hf", "modelscope", "modelers", "openxlab"]


def test_bad_settings_file_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_env: dict[str, str]
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('colour = "blue"\n')
    monkeypatch.setenv("MODEL_ZOO_CONFIG", str(cfg))
    report = diagnose(check_gpu=False)
    assert any(f.area == "settings" and "colour" in f.message for f in report.findings)
    assert report.config_file is None


@pytest.mark.parametrize("text", ["sources = 5\n", "endpoints = 5\n"])
def test_settings_file_value_of_the_wrong_type_is_reported(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_env: dict[str, str]
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    monkeypatch.setenv("MODEL_ZOO_CONFIG", str(cfg))
    report = diagnose(check_gpu=False)
    (bad,) = [f for f in report.findings if f.area == "settings"]
    assert bad.level == "error" and str(cfg) in bad.message and "must be" in bad.message
    assert all(h.reachable for h in report.hubs)  # the rest still ran, without the file


def test_missing_registry_overlay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_env: dict[str, str]
) -> None:
    monkeypatch.setenv("MODEL_ZOO_REGISTRY", str(tmp_path / "mine.yaml"))
    report = diagnose(check_gpu=False)
    (finding,) = [f for f in report.findings if f.area == "registry"]
    assert finding.level == "error" and "model-zoo registry check" in finding.advice
    assert (
        report.registry["overlay"] == str(tmp_path / "mine.yaml")
        and report.registry["models"] is None
    )


def test_registry_overlay_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub_env: dict[str, str]
) -> None:
    base = diagnose(check_gpu=False).registry["models"]
    assert isinstance(base, int) and base > 30
    assert base == len(__import__("model_zoo").list_models())


def test_every_finding_has_advice() -> None:
    report = bare_report(
        versions={"torch": None},
        gpu={"torch": False, "devices": []},
        store=StoreReport("/s", True, False, 10**9, 10**12, "ext4", "flock", 0, 0),
    )
    found = advise(report)
    assert {f.level for f in found} == {"warning", "error"}
    assert all(isinstance(f, Finding) and f.advice for f in found)


# ---------------------------------------------------------------- the command


def run_cli(
    *args: str, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, **(env_extra or {})}
    exe = Path(sys.executable).with_name("model-zoo")
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@pytest.mark.slow
def test_cli_json_with_gpu_check(hub_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    proc = run_cli(
        "doctor", "--json", "--timeout", "10"
    )  # the content is tested here, not the budget: no flake on a loaded machine
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout
    data = json.loads(proc.stdout)
    assert data["ok"] is True
    import torch

    assert data["versions"]["torch"] == __import__("importlib.metadata").metadata.version("torch")
    assert data["versions"]["model-zoo"] == __import__("model_zoo").__version__
    assert data["gpu"]["torch"] is True
    assert data["gpu"]["cuda_available"] == torch.cuda.is_available()
    assert len(data["gpu"]["devices"]) == (
        torch.cuda.device_count() if torch.cuda.is_available() else 0
    )
    assert [h["source"] for h in data["hubs"] if h["reachable"]] == [
        "hf",
        "modelscope",
        "modelers",
        "openxlab",
    ]
    assert {h["source"]: h["token_env"] for h in data["hubs"]}["hf"] == "HF_TOKEN"


@pytest.mark.slow
def test_cli_text_and_exit_code_when_nothing_is_reachable() -> None:
    down = closed_port_url()
    env = {HUBS[k].endpoint_env: down for k in ("hf", "modelscope", "modelers", "openxlab")}
    proc = run_cli("doctor", "--timeout", "1", env_extra=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout
    for section in (
        "model-zoo",
        "packages",
        "GPU",
        "hubs",
        "store",
        "proxies",
        "offline",
        "registry",
        "findings",
    ):
        assert section in out
    assert "UNREACHABLE" in out and "no configured hub is reachable" in out and "-> " in out


def test_broken_torch_is_an_error_with_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch is asked in a child interpreter, so a torch that cannot import is reported, not
    fatal."""
    from model_zoo import doctor

    monkeypatch.setattr(
        doctor,
        "_GPU_SCRIPT",
        "raise ImportError('libcudart.so.12: cannot open shared object file')",
    )
    gpu = doctor.gpu_info(True)
    assert gpu["torch"] is False and "libcudart.so.12" in gpu["error"]
    (finding,) = advise(bare_report(gpu=gpu))
    assert finding.level == "error" and "nvidia-smi" in finding.advice


def test_gpus_without_native_bf16_get_a_dtype_hint() -> None:
    old = {"index": 0, "name": "Tesla T4", "memory_gib": 14.6, "capability": "7.5", "bf16": False}
    (finding,) = advise(
        bare_report(gpu={"torch": True, "cuda": "12.4", "cuda_available": True, "devices": [old]})
    )
    assert "float16" in finding.advice
    new = {**old, "name": "NVIDIA H100", "capability": "9.0", "bf16": True}
    assert (
        advise(
            bare_report(
                gpu={"torch": True, "cuda": "12.4", "cuda_available": True, "devices": [new]}
            )
        )
        == []
    )


def test_gpu_line_shows_compute_capability() -> None:
    # docs/running.md: doctor lists each GPU with its compute capability (bf16 needs 8.0+).
    from model_zoo.cli.cmd_doctor import _gpu_line

    gpu = {
        "torch": True,
        "cuda": "12.4",
        "cuda_available": True,
        "devices": [
            {
                "index": 0,
                "name": "Tesla V100",
                "memory_gib": 31.7,
                "capability": "7.0",
                "bf16": False,
            },
            {
                "index": 1,
                "name": "NVIDIA A100",
                "memory_gib": 79.2,
                "capability": "8.0",
                "bf16": True,
            },
        ],
    }
    line = _gpu_line(gpu)
    assert "0: Tesla V100 31.7 GiB (compute capability 7.0)" in line
    assert "1: NVIDIA A100 79.2 GiB (compute capability 8.0)" in line


def test_an_endpoint_s_password_is_never_reported(
    hub_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = hub_env["HF_ENDPOINT"].replace("http://", "http://alice:s3cret@")
    monkeypatch.setenv("HF_ENDPOINT", url)
    report = diagnose(check_gpu=False)
    (hf,) = [h for h in report.hubs if h.source == "hf"]
    assert (
        "s3cret" not in hf.endpoint
        and "alice" not in hf.endpoint
        and hf.endpoint.startswith("http://***@")
    )
    assert "s3cret" not in json.dumps(report.to_dict(), default=str)


def test_openxlab_key_pair_is_named_never_shown(
    hub_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENXLAB_AK", "ak-" + SECRET)
    monkeypatch.setenv("OPENXLAB_SK", "sk-" + SECRET)
    report = diagnose(check_gpu=False)
    hub = by_source(report)["openxlab"]
    assert (
        hub.token_env is None and hub.credentials == "access key pair from OPENXLAB_AK/OPENXLAB_SK"
    )
    from model_zoo.cli.cmd_doctor import format_report

    assert "access key pair from OPENXLAB_AK/OPENXLAB_SK" in format_report(report)
    assert SECRET not in json.dumps(report.to_dict()) and SECRET not in format_report(report)


def test_a_broken_openxlab_config_is_a_warning_and_the_hub_is_still_probed(
    hub_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".openxlab").mkdir()
    (tmp_path / ".openxlab" / "config.json").write_text("{broken")
    report = diagnose(check_gpu=False)
    hub = by_source(report)["openxlab"]
    assert (
        hub.reachable is True
        and hub.credentials_problem
        and "openxlab config" in hub.credentials_problem
    )
    assert any(f.level == "warning" and "config.json" in f.message for f in report.findings)
