"""``model-zoo serve-mirror``: serves a directory or the model-zoo store to other machines."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fixtures_local_hub import SAMPLE_REPO, HubTLS

from model_zoo.cli.cmd_mirror import exposure_warning, mirror_banner, mirror_store
from model_zoo.cli.main import main
from model_zoo.store.manifest import FileRecord, SourceRecord, StoreManifest, write_manifest
from model_zoo.testing.local_hub import LocalHub

UPSTREAM_COMMIT = "0123456789abcdef0123456789abcdef01234567"


def get(url: str, path: str) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def make_store(home: Path) -> Path:
    """A store holding one pulled snapshot, laid out by the store's own manifest API."""
    snap = home / "models" / "internlm2_5-1_8b-chat" / UPSTREAM_COMMIT
    files = {"config.json": b'{"model_type": "internlm2"}\n', "sub/w.safetensors": os.urandom(5000)}
    for rel, data in files.items():
        (snap / rel).parent.mkdir(parents=True, exist_ok=True)
        (snap / rel).write_bytes(data)
    manifest = StoreManifest(
        name="internlm2_5-1_8b-chat",
        slug="internlm2_5-1_8b-chat",
        revision=None,
        commit=UPSTREAM_COMMIT,
        sources=(
            SourceRecord(
                "hf", "internlm/internlm2_5-1_8b-chat", "https://huggingface.co", UPSTREAM_COMMIT
            ),
            SourceRecord(
                "modelscope",
                "Shanghai_AI_Laboratory/internlm2_5-1_8b-chat",
                "https://www.modelscope.cn",
            ),
        ),
        files=tuple(FileRecord(p, len(d), hashlib.sha256(d).hexdigest()) for p, d in files.items()),
    )
    write_manifest(snap, manifest)
    return snap


def test_serve_mirror_process_prints_url_and_env_and_serves(hub_root: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "model_zoo.cli.main", "serve-mirror", str(hub_root), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Serving 1 repositories from"), first + (
            proc.stderr.read() if proc.poll() else ""
        )
        url = first.split(" at ")[1].split()[0]
        assert urlsplit(url).hostname == "127.0.0.1"
        lines = [proc.stdout.readline().strip() for _ in range(6)]
        assert f"export HF_ENDPOINT={url}" in lines and f"export MODELSCOPE_ENDPOINT={url}" in lines
        status, body = get(url, f"/api/models/{SAMPLE_REPO}/revision/main")
        assert status == 200 and json.loads(body)["id"] == SAMPLE_REPO
        assert (
            get(url, f"/{SAMPLE_REPO}/resolve/main/config.json")[1]
            == (hub_root / SAMPLE_REPO / "config.json").read_bytes()
        )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert proc.returncode == 0


def test_default_is_the_model_zoo_store_with_upstream_commits(tmp_path: Path) -> None:
    home = Path(os.environ["MODEL_ZOO_HOME"])  # set per test by conftest
    snap = make_store(home)
    store, described = mirror_store(None)
    assert str(home) in described
    assert store.repo_ids() == [
        "Shanghai_AI_Laboratory/internlm2_5-1_8b-chat",
        "internlm/internlm2_5-1_8b-chat",
    ]
    with LocalHub(store) as hub:
        info = json.loads(
            get(hub.url, "/api/models/internlm/internlm2_5-1_8b-chat/revision/main")[1]
        )
        assert info["sha"] == UPSTREAM_COMMIT  # clients pinned to the real commit keep working
        assert {s["rfilename"] for s in info["siblings"]} == {
            "config.json",
            "sub/w.safetensors",
        }  # no .model-zoo/
        status, data = get(
            hub.url, f"/internlm/internlm2_5-1_8b-chat/resolve/{UPSTREAM_COMMIT}/sub/w.safetensors"
        )
        assert status == 200 and data == (snap / "sub/w.safetensors").read_bytes()
        ms = json.loads(
            get(
                hub.url,
                "/api/v1/models/Shanghai_AI_Laboratory/internlm2_5-1_8b-chat/repo/files"
                "?Revision=master&Recursive=True",
            )[1]
        )
        assert {f["Path"] for f in ms["Data"]["Files"] if f["Type"] == "blob"} == {
            "config.json",
            "sub/w.safetensors",
        }
        assert (
            get(hub.url, "/internlm/internlm2_5-1_8b-chat/resolve/main/.model-zoo/manifest.json")[0]
            == 404
        )


def test_a_store_passed_as_root_is_recognised(tmp_path: Path) -> None:
    make_store(tmp_path / "other-store")
    store, described = mirror_store(tmp_path / "other-store")
    assert "model-zoo store" in described and "internlm/internlm2_5-1_8b-chat" in store.repo_ids()


def test_empty_store_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve-mirror", "--port", "0"]) == 2
    assert "nothing to serve" in capsys.readouterr().err


def test_missing_root_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve-mirror", str(tmp_path / "absent"), "--port", "0"]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_loud_warning_off_loopback_and_banner(local_hub: LocalHub) -> None:
    assert exposure_warning("127.0.0.1") == [] and exposure_warning("localhost") == []
    warning = exposure_warning("0.0.0.0")
    assert warning and all(line.startswith("WARNING") for line in warning)
    assert "no authentication" in " ".join(warning)
    banner = mirror_banner(local_hub, "somewhere")
    assert f"export OPENMIND_HUB_ENDPOINT={local_hub.url}" in banner
    assert f"export OPENXLAB_ENDPOINT={local_hub.url}" in banner


# ---------------------------------------------------------------- --tls-cert / --tls-key


def test_serve_mirror_over_tls_serves_https_that_model_zoo_pulls_from(
    hub_root: Path, hub_tls: HubTLS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "model_zoo.cli.main",
            "serve-mirror",
            str(hub_root),
            "--port",
            "0",
            "--tls-cert",
            str(hub_tls.cert),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Serving 1 repositories"), first + (
            proc.stderr.read() if proc.poll() else ""
        )
        url = first.split(" at ")[1].split()[0]
        assert url.startswith("https://127.0.0.1:")
        # plain http to the TLS port gets nothing useful: the mirror speaks https only
        with pytest.raises((http.client.HTTPException, OSError)):
            get(url.replace("https://", "http://"), "/")

        monkeypatch.setenv("SSL_CERT_FILE", str(hub_tls.ca))
        monkeypatch.setenv("OPENMIND_HUB_ENDPOINT", url)
        from model_zoo.hubs.factory import adapter_for

        manifest = adapter_for("modelers").manifest(SAMPLE_REPO)
        assert manifest.endpoint == url and manifest.files
        from model_zoo.download.engine import FileJob, fetch

        remote = manifest.by_path()["model-00001-of-00002.safetensors"]
        report = fetch(
            [FileJob(remote.path, remote.size, remote.sha256, (remote,), ("modelers",))],
            tmp_path / "out",
        )
        assert report.ok
        assert (tmp_path / "out" / remote.path).read_bytes() == (
            hub_root / SAMPLE_REPO / remote.path
        ).read_bytes()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert proc.returncode == 0


@pytest.mark.parametrize("case", ["missing", "not-pem", "key-without-cert"])
def test_serve_mirror_tls_files_that_cannot_work_are_usage_errors(
    hub_root: Path, tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    args = {
        "missing": ["--tls-cert", str(tmp_path / "absent.pem")],
        "not-pem": ["--tls-cert", str(junk)],
        "key-without-cert": ["--tls-key", str(junk)],
    }[case]
    assert main(["serve-mirror", str(hub_root), "--port", "0", *args]) == 2
    err = capsys.readouterr().err
    assert {
        "missing": "no such file",
        "not-pem": "PEM certificate",
        "key-without-cert": "needs --tls-cert",
    }[case] in err
