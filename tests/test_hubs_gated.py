"""Gated and private repositories as the hubs serve them: the token asked for by name and checked
once from the listing, and the bytes behind CDN redirects to another origin."""

from __future__ import annotations

import http.client
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fixtures_local_hub import SAMPLE_REPO

from model_zoo.hubs.factory import adapter_for
from model_zoo.settings import load_settings
from model_zoo.testing.local_hub import LocalHub

GATE = "hf_gate_token_for_review"


def _gated_redirect_hub(make_hub) -> LocalHub:
    hub = make_hub(lfs_redirect=True)
    hub.gate(SAMPLE_REPO, GATE)
    return hub


def _get(hub: LocalHub, url: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", target, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.headers), resp.read()
    finally:
        conn.close()


def test_lfs_redirect_points_at_a_signed_url_on_another_origin(make_hub, hub_root: Path) -> None:
    hub = _gated_redirect_hub(make_hub)
    data = (hub_root / SAMPLE_REPO / "tokenizer.model").read_bytes()
    resolve = f"{hub.url}/{SAMPLE_REPO}/resolve/main/tokenizer.model"
    assert _get(hub, resolve)[0] == 401  # the hub itself still wants the token
    status, headers, _ = _get(hub, resolve, {"Authorization": f"Bearer {GATE}"})
    assert status == 302
    location = headers["Location"]
    assert urlsplit(location).port == hub.cdn_port != hub.port
    # Like a presigned URL: no token needed, and a token sent along is refused (S3 answers 400).
    status, _, body = _get(hub, location)
    assert (status, body) == (200, data)
    assert _get(hub, location, {"Authorization": f"Bearer {GATE}"})[0] == 400
    unsigned = location.split("?", 1)[0]
    assert _get(hub, unsigned)[0] == 403
    # The hub's own port does not serve the CDN paths.
    assert _get(hub, hub.url + urlsplit(location).path)[0] == 404


def test_adapter_and_engine_pull_a_gated_repo_behind_cdn_redirects(
    make_hub, hub_root: Path, tmp_path: Path
) -> None:
    from model_zoo.download.engine import FileJob, fetch

    hub = _gated_redirect_hub(make_hub)
    env = {**hub.env(), "HF_TOKEN": GATE}
    manifest = adapter_for("hf", load_settings(env)).manifest(SAMPLE_REPO)
    jobs = [FileJob(f.path, f.size, f.sha256, (f,), ("hf",)) for f in manifest.files]
    fetch(jobs, tmp_path / "out")
    for f in manifest.files:
        assert (tmp_path / "out" / f.path).read_bytes() == (
            hub_root / SAMPLE_REPO / f.path
        ).read_bytes()
    cdn = [r for r in hub.stats.requests if r.url.startswith("/_cdn/")]
    assert cdn and all(r.authorization is None and r.status in (200, 206) for r in cdn)


def test_huggingface_hub_downloads_a_gated_repo_behind_cdn_redirects(
    make_hub, hub_root: Path, tmp_path: Path
) -> None:
    from huggingface_hub import snapshot_download

    hub = _gated_redirect_hub(make_hub)
    out = Path(
        snapshot_download(SAMPLE_REPO, endpoint=hub.url, token=GATE, cache_dir=tmp_path / "c")
    )
    for rel in ("tokenizer.model", "model-00001-of-00002.safetensors", "config.json"):
        assert (out / rel).read_bytes() == (hub_root / SAMPLE_REPO / rel).read_bytes()
    cdn = [r for r in hub.stats.requests if r.url.startswith("/_cdn/")]
    assert cdn and all(r.authorization is None for r in cdn)


def test_hf_gated_repo_lists_publicly_and_gates_the_bytes(
    local_hub: LocalHub, tmp_path: Path
) -> None:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import GatedRepoError as HfGated

    local_hub.gate(SAMPLE_REPO, GATE)
    api = HfApi(endpoint=local_hub.url, token=False)
    assert api.model_info(SAMPLE_REPO).gated == "manual"
    assert any(e.path == "config.json" for e in api.list_repo_tree(SAMPLE_REPO, recursive=True))
    with pytest.raises(HfGated):
        hf_hub_download(
            SAMPLE_REPO,
            "config.json",
            endpoint=local_hub.url,
            token=False,
            cache_dir=tmp_path / "c",
        )
    path = hf_hub_download(
        SAMPLE_REPO, "config.json", endpoint=local_hub.url, token=GATE, cache_dir=tmp_path / "c"
    )
    assert Path(path).read_bytes().startswith(b"{")


def test_hf_adapter_names_the_token_variable_for_a_gated_repo_before_any_download(
    local_hub: LocalHub,
) -> None:
    from model_zoo.errors import GatedRepoError

    local_hub.gate(SAMPLE_REPO, GATE)
    with pytest.raises(GatedRepoError) as info:
        adapter_for("hf", load_settings(local_hub.env())).manifest(SAMPLE_REPO)
    assert info.value.token_env == "HF_TOKEN" and "HF_TOKEN" in str(info.value)
    assert not local_hub.stats.file_requests()  # refused from the listing, no byte requested
    manifest = adapter_for("hf", load_settings({**local_hub.env(), "HF_TOKEN": GATE})).manifest(
        SAMPLE_REPO
    )
    assert manifest.files


def test_hf_private_repo_without_a_token_says_it_may_be_private(local_hub: LocalHub) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError as HfNotFound

    from model_zoo.errors import GatedRepoError, RepoNotFoundError, RepoNotFoundOrPrivateError

    local_hub.gate(SAMPLE_REPO, GATE, private=True)
    with pytest.raises(HfNotFound):  # what huggingface.co answers: 401 RepoNotFound
        HfApi(endpoint=local_hub.url, token=False).model_info(SAMPLE_REPO)
    with pytest.raises(RepoNotFoundOrPrivateError) as info:
        adapter_for("hf", load_settings(local_hub.env())).manifest(SAMPLE_REPO)
    assert isinstance(info.value, RepoNotFoundError) and info.value.exit_code == 4
    assert "HF_TOKEN" in str(info.value) and info.value.token_env == "HF_TOKEN"
    with pytest.raises(GatedRepoError):  # a wrong token: "Invalid credentials"
        adapter_for("hf", load_settings({**local_hub.env(), "HF_TOKEN": "wrong"})).manifest(
            SAMPLE_REPO
        )
    good = adapter_for("hf", load_settings({**local_hub.env(), "HF_TOKEN": GATE})).manifest(
        SAMPLE_REPO
    )
    assert good.files
    # A missing repository asked with a token is plainly not found.
    with pytest.raises(RepoNotFoundError) as missing:
        adapter_for("hf", load_settings({**local_hub.env(), "HF_TOKEN": GATE})).manifest(
            "ns/absent"
        )
    assert not isinstance(missing.value, RepoNotFoundOrPrivateError)


def test_hf_adapter_checks_a_gated_repos_token_once_from_the_listing(local_hub: LocalHub) -> None:
    from model_zoo.errors import GatedRepoError

    local_hub.gate(SAMPLE_REPO, GATE)
    wrong = load_settings({**local_hub.env(), "HF_TOKEN": "not-granted"})
    with pytest.raises(GatedRepoError) as info:
        adapter_for("hf", wrong).manifest(SAMPLE_REPO)
    assert info.value.status == 403 and "HF_TOKEN" in str(info.value)
    assert SAMPLE_REPO in str(info.value) and "not-granted" not in str(info.value)
    assert [r.method for r in local_hub.stats.file_requests()] == ["HEAD"]
    local_hub.stats.reset()
    good = adapter_for("hf", load_settings({**local_hub.env(), "HF_TOKEN": GATE})).manifest(
        SAMPLE_REPO
    )
    assert good.files and [r.status for r in local_hub.stats.file_requests()] == [200]
