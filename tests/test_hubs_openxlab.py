"""OpenXLab adapter (both openxlab and openxlab-origin) against a mock of its REST protocol."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from model_zoo.errors import (
    GatedRepoError,
    HubProtocolError,
    HubServerError,
    RateLimitedError,
    RepoNotFoundError,
    RevisionNotFoundError,
)
from model_zoo.hubs.openxlab import LISTING_PATH, OpenXLabAdapter

EP = "https://openapi.xlab.example/api/v1"
TOKEN = "eyJ-SECRET-jwt"
REPO = "OpenLMLab/internlm2_5-1_8b-chat"
OSS = "https://bucket.oss.example"


def envelope(inner: Any, *, code: str = "10000", msg: str = "Success") -> dict[str, Any]:
    return {
        "msgCode": "10000",
        "msg": "ok",
        "traceId": "t",
        "data": {"msgCode": code, "msg": msg, "data": inner},
    }


FILES = {
    "config.json": {
        "url": f"{OSS}/r/config.json?Signature=s1",
        "fileName": "config.json",
        "hash": "ab" * 16,
        "size": 20,
    },
    "sub/model.safetensors": {
        "url": f"{OSS}/r/model.safetensors?Signature=s2",
        "fileName": "sub/model.safetensors",
        "hash": "cd" * 32,
        "weightRawSize": "4096",
    },
}


def protocol(answer: dict[str, Any]):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path == "/api/v1" + LISTING_PATH:
            return httpx.Response(200, json=answer)
        return httpx.Response(404)

    return handler


def adapter(hub: Any, *, source: str = "openxlab", token: str | None = TOKEN) -> OpenXLabAdapter:
    return OpenXLabAdapter(EP, token, client=hub.client, source=source)


def test_one_post_lists_every_file(mock_hub) -> None:
    hub = mock_hub(protocol(envelope({"modelNames": None, "filePaths": FILES})))
    manifest = adapter(hub).manifest(REPO)
    (request,) = hub.requests
    assert request.method == "POST" and str(request.url) == EP + LISTING_PATH
    assert json.loads(request.content) == {
        "userName": "OpenLMLab",
        "repositoryName": "internlm2_5-1_8b-chat",
        "modelNames": None,
        "filePaths": None,
        "clientFrom": "0",
        "ignore": None,
    }
    by_path = manifest.by_path()
    assert sorted(by_path) == ["config.json", "sub/model.safetensors"]
    assert by_path["config.json"].size == 20 and by_path["sub/model.safetensors"].size == 4096
    assert by_path["config.json"].url == FILES["config.json"]["url"]
    assert (
        manifest.revision == "latest" and manifest.commit is None and manifest.source == "openxlab"
    )


def test_hash_is_kept_as_etag_never_as_sha256(mock_hub) -> None:
    manifest = adapter(mock_hub(protocol(envelope({"filePaths": FILES})))).manifest(REPO)
    for remote in manifest.files:
        assert remote.sha256 is None
    assert manifest.by_path()["sub/model.safetensors"].etag == "cd" * 32


def test_token_reaches_the_api_but_never_the_object_store(mock_hub) -> None:
    hub = mock_hub(protocol(envelope({"filePaths": FILES})))
    manifest = adapter(hub).manifest(REPO)
    assert hub.requests[0].headers["Authorization"] == TOKEN
    assert all(f.headers == {} for f in manifest.files)


def test_file_urls_are_presigned_so_they_get_no_token_even_on_the_api_host(mock_hub) -> None:
    # openxlab 0.1.3 _download_to_local: requests.get(url) with no headers at all
    local = {
        "a.bin": {
            "url": "https://openapi.xlab.example/files/a.bin",
            "fileName": "a.bin",
            "hash": "x",
        }
    }
    manifest = adapter(mock_hub(protocol(envelope({"filePaths": local})))).manifest(REPO)
    assert manifest.files[0].headers == {}
    assert manifest.files[0].expires  # the engine may list again for a fresh URL


def test_origin_format_source_uses_the_same_protocol(mock_hub) -> None:
    models = {
        "internlm2-chat-7b": {"url": f"{OSS}/w.pth", "fileName": "weights/w.pth", "hash": "h"}
    }
    hub = mock_hub(protocol(envelope({"modelNames": models, "filePaths": FILES})))
    xlab = adapter(hub, source="openxlab-origin")
    manifest = xlab.manifest(REPO)
    assert manifest.source == "openxlab-origin" and xlab.hf_format is False
    assert "weights/w.pth" in manifest.by_path() and len(manifest.files) == 3


def test_revisions_do_not_exist_on_openxlab(mock_hub) -> None:
    hub = mock_hub(protocol(envelope({"filePaths": FILES})))
    with pytest.raises(RevisionNotFoundError):
        adapter(hub).manifest(REPO, "v1.0")
    assert hub.requests == []
    assert adapter(hub).manifest(REPO, "latest").revision == "latest"


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (envelope(None, code="10001", msg="repository does not exist"), RepoNotFoundError),
        (envelope(None, code="10002", msg="no permission for private repo"), GatedRepoError),
        (envelope(None, code="19999", msg=f"strange {TOKEN}"), HubProtocolError),
        (
            {"msgCode": "10011", "msg": "login required, token expired", "data": None},
            GatedRepoError,
        ),
        ({"unexpected": True}, HubProtocolError),
        (envelope({"filePaths": ["a"]}), HubProtocolError),
        (envelope({"filePaths": {"a": {"fileName": "a", "url": "ftp://x"}}}), HubProtocolError),
        (envelope({"filePaths": {"a": "not-an-object"}}), HubProtocolError),
    ],
)
def test_envelope_failures(mock_hub, answer: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        adapter(mock_hub(protocol(answer))).manifest(REPO)
    assert TOKEN not in str(info.value)
    if isinstance(info.value, GatedRepoError):
        assert info.value.token_env == "OPENXLAB_TOKEN"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, GatedRepoError),
        (404, RepoNotFoundError),
        (429, RateLimitedError),
        (503, HubServerError),
    ],
)
def test_http_failures(mock_hub, status: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        adapter(mock_hub(lambda r: httpx.Response(status))).manifest(REPO)


def test_empty_repository_lists_nothing(mock_hub) -> None:
    manifest = adapter(
        mock_hub(protocol(envelope({"modelNames": None, "filePaths": None})))
    ).manifest(REPO)
    assert manifest.files == ()
