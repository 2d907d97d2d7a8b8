"""Defects found by reviewing the hub adapters and the local hub (one test per defect)."""

from __future__ import annotations

import http.client
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fixtures_local_hub import SAMPLE_REPO

from model_zoo.errors import HubUnreachableError
from model_zoo.hubs.catalog import SOURCE_KEYS
from model_zoo.hubs.factory import adapter_for
from model_zoo.hubs.http import safe_url
from model_zoo.settings import load_settings
from model_zoo.testing.hub_server import LocalHub

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


# ---------------------------------------------------------------- the local CDN is another origin

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


# ---------------------------------------------------------------- non-latin-1 names in errors


@pytest.mark.parametrize("source", ["hf", "modelscope", "modelers"])
def test_missing_revision_named_in_chinese_is_revision_not_found(
    source: str, local_hub: LocalHub
) -> None:
    from model_zoo.errors import RevisionNotFoundError

    adapter = adapter_for(source, load_settings(local_hub.env()))
    with pytest.raises(RevisionNotFoundError):
        adapter.manifest(SAMPLE_REPO, "发布版")


def test_missing_file_named_in_chinese_answers_404_to_huggingface_hub(
    local_hub: LocalHub, tmp_path: Path
) -> None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    with pytest.raises(EntryNotFoundError):
        hf_hub_download(SAMPLE_REPO, "权重.bin", endpoint=local_hub.url, cache_dir=tmp_path / "c")
    status, headers, body = _get(
        local_hub, f"{local_hub.url}/{SAMPLE_REPO}/resolve/main/%E6%9D%83.bin"
    )
    assert status == 404 and headers["X-Error-Code"] == "EntryNotFound"
    assert "权" in body.decode()  # the JSON body keeps the name whole


# ---------------------------------------------------------------- HF gated vs private, as on the Hub


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


# ---------------------------------------------------------------- server error text


NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad "
    "Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@pytest.mark.parametrize("source", ["modelscope", "modelers", "openxlab"])
@pytest.mark.parametrize(
    ("body", "ctype", "shown"),
    [
        (NGINX_502, "text/html", "502 Bad Gateway"),
        (
            '{"Code": 502, "Message": "upstream busy", "RequestId": "abc", "Success": false}',
            "application/json",
            "upstream busy",
        ),
    ],
)
def test_server_errors_quote_what_the_server_said_not_its_markup(
    source: str, body: str, ctype: str, shown: str, mock_hub
) -> None:
    import httpx

    from model_zoo.errors import HubServerError

    hub = mock_hub(lambda r: httpx.Response(502, text=body, headers={"content-type": ctype}))
    settings = load_settings(_env_for("http://hub.example"))
    with pytest.raises(HubServerError) as info:
        adapter_for(source, settings, client=hub.client).manifest("ns/repo")
    message = str(info.value)
    assert f"HTTP 502: {shown}." in message
    assert "<" not in message and "RequestId" not in message and TOKEN not in message


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
