"""The local hub is read-only and never serves anything outside its root."""

from __future__ import annotations

import http.client
import json
import os
from pathlib import Path

import pytest
from fixtures_local_hub import SAMPLE_REPO, HubFactory

from model_zoo.netaddr import is_loopback_host
from model_zoo.testing.local_hub import LocalHub

SECRET = b"secret outside the hub root\n"


@pytest.fixture
def secret(hub_root: Path) -> Path:
    path = hub_root.parent / "secret.txt"
    path.write_bytes(SECRET)
    return path


def raw(hub: LocalHub, target: str, method: str = "GET") -> tuple[int, bytes]:
    """Send ``target`` byte for byte (http.client does not normalise ``..``)."""
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=10)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


TRAVERSALS = [
    f"/{SAMPLE_REPO}/resolve/main/../../../secret.txt",
    f"/{SAMPLE_REPO}/resolve/main/..%2F..%2F..%2Fsecret.txt",
    f"/{SAMPLE_REPO}/resolve/main/%2e%2e/%2e%2e/%2e%2e/secret.txt",
    f"/{SAMPLE_REPO}/resolve/main/nested/../../../../secret.txt",
    f"/{SAMPLE_REPO}/resolve/main/%2Fetc%2Fpasswd",
    f"/{SAMPLE_REPO}/resolve/main/..%5C..%5C..%5Csecret.txt",
    "/internlm/../resolve/main/secret.txt",
    "/%2e%2e/hub-root/resolve/main/secret.txt",
    f"/api/v1/models/{SAMPLE_REPO}/repo?Revision=master&FilePath=../../../secret.txt",
    f"/api/v1/models/{SAMPLE_REPO}/repo?Revision=master&FilePath=%2Fetc%2Fpasswd",
    f"/api/v1/file/{SAMPLE_REPO}/main/media/../../../../secret.txt",
    f"/api/v1/file/{SAMPLE_REPO}/..%2F..%2F..%2F/media/secret.txt",
    f"/openxlab/file/{SAMPLE_REPO}/main/%2e%2e/%2e%2e/%2e%2e/secret.txt",
    "/api/models/../../tree/main?recursive=true",
    f"/api/models/{SAMPLE_REPO}/tree/main/..%2F..?recursive=true",
    f"/api/v1/models/{SAMPLE_REPO}/repo/files?Revision=master&Root=../..",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_is_refused(local_hub: LocalHub, secret: Path, target: str) -> None:
    status, body = raw(local_hub, target)
    assert status in (400, 403, 404)
    assert SECRET not in body and b"root:" not in body


def test_symlink_out_of_root_is_neither_listed_nor_served(
    hub_root: Path, make_hub: HubFactory, secret: Path
) -> None:
    repo = hub_root / SAMPLE_REPO
    os.symlink(secret, repo / "leak.txt")
    os.symlink(repo / "config.json", repo / "alias.json")  # inside the root: fine
    os.symlink(hub_root.parent, repo / "outdir")
    hub = make_hub()
    tree = json.loads(raw(hub, f"/api/models/{SAMPLE_REPO}/tree/main?recursive=true")[1])
    paths = {e["path"] for e in tree}
    assert "leak.txt" not in paths and not any(p.startswith("outdir") for p in paths)
    assert "alias.json" in paths
    assert raw(hub, f"/{SAMPLE_REPO}/resolve/main/leak.txt")[0] == 404
    assert raw(hub, f"/{SAMPLE_REPO}/resolve/main/outdir/secret.txt")[0] == 404
    status, body = raw(hub, f"/{SAMPLE_REPO}/resolve/main/alias.json")
    assert status == 200 and body == (repo / "config.json").read_bytes()


def test_repository_directory_symlinked_out_of_root_is_refused(
    hub_root: Path, make_hub: HubFactory, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere" / "repo"
    outside.mkdir(parents=True)
    (outside / "weights.bin").write_bytes(SECRET)
    os.symlink(outside, hub_root / "internlm" / "linked")
    hub = make_hub()
    assert "internlm/linked" not in hub.store.repo_ids()
    assert raw(hub, "/internlm/linked/resolve/main/weights.bin")[0] == 404


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "POST"])
def test_read_only(local_hub: LocalHub, method: str) -> None:
    status, _ = raw(local_hub, f"/{SAMPLE_REPO}/resolve/main/config.json", method=method)
    assert status in (404, 405)
    assert raw(local_hub, f"/{SAMPLE_REPO}/resolve/main/config.json")[0] == 200


def test_binds_loopback_by_default(local_hub: LocalHub) -> None:
    assert local_hub.host == "127.0.0.1" and local_hub.is_loopback
    assert local_hub.url == f"http://127.0.0.1:{local_hub.port}"
    assert is_loopback_host("localhost") and is_loopback_host("::1")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("10.1.2.3")


def test_gated_repository_needs_its_token(local_hub: LocalHub) -> None:
    local_hub.gate(SAMPLE_REPO, "s3cret")
    url = f"/{SAMPLE_REPO}/resolve/main/config.json"

    def status(headers: dict[str, str]) -> tuple[int, str | None]:
        conn = http.client.HTTPConnection(local_hub.host, local_hub.port, timeout=10)
        conn.request("GET", url, headers=headers)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp.status, resp.headers.get("X-Error-Code")

    assert status({}) == (401, "GatedRepo")
    assert status({"Authorization": "Bearer wrong"}) == (403, "GatedRepo")
    assert status({"Authorization": "Bearer s3cret"})[0] == 200
    # HF wants "Bearer TOKEN"; ModelScope's session cookie counts only on ModelScope's routes.
    assert status({"Authorization": "s3cret"}) == (401, "GatedRepo")
    assert status({"Cookie": "m_session_id=s3cret"}) == (401, "GatedRepo")
    url = f"/api/v1/models/{SAMPLE_REPO}/repo?Revision=master&FilePath=config.json"
    assert status({"Cookie": "m_session_id=s3cret"})[0] == 200
    assert [r.authorization for r in local_hub.stats.file_requests()] == [
        None,
        "Bearer wrong",
        "Bearer s3cret",
        "s3cret",
        "s3cret",
        "s3cret",
    ]
    local_hub.gate(SAMPLE_REPO, None)
    assert status({})[0] == 200
