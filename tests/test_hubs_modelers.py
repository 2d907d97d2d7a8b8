"""Modelers (openMind hub) adapter against a mock of its REST protocol."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from model_zoo.errors import (
    GatedRepoError,
    HubProtocolError,
    HubServerError,
    HubUnreachableError,
    NotOnWhiteListError,
    RateLimitedError,
    RepoNotFoundError,
    RevisionNotFoundError,
)
from model_zoo.hubs.modelers import ModelersAdapter

EP = "https://modelers.example"
TOKEN = "om-SECRET-token"
REPO = "Intern/internlm2_5-1_8b-chat"
HEAD = "c" * 40


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


TREE = [
    {"type": "file", "path": "config.json", "size": 12, "etag": "1" * 40, "is_lfs": False},
    {"type": "dir", "path": "shards", "size": 0, "etag": "", "is_lfs": False},
    {"type": "file", "path": "shards/a.safetensors", "size": 100, "etag": sha("a"), "is_lfs": True},
    {"type": "dir", "path": "shards/more", "size": 0, "etag": "", "is_lfs": False},
    {
        "type": "file",
        "path": "shards/more/b.safetensors",
        "size": 200,
        "etag": f'"{sha("b")}"',
        "is_lfs": True,
    },
]


def protocol(tree: list[dict[str, Any]], *, refs: tuple[str, ...] = ("main", "v2", HEAD)):
    def handler(request: httpx.Request) -> httpx.Response:
        path = urlsplit(str(request.url)).path
        if path == f"/api/v1/model/{REPO}":
            return httpx.Response(200, json={"code": 200, "msg": "ok", "data": {"id": 1}})
        if path != f"/api/v1/file/{REPO}":
            return httpx.Response(
                404, json={"code": "not_found", "msg": "repo not found", "data": None}
            )
        ref = request.url.params.get("ref")
        if ref not in refs:
            return httpx.Response(
                404, json={"code": "ref_not_exist", "msg": "no such ref", "data": None}
            )
        folder = request.url.params.get("path", "")
        listed = [
            e for e in tree if (e["path"].rsplit("/", 1)[0] if "/" in e["path"] else "") == folder
        ]
        data = {"tree": listed, "last_commit": {"commit": {"commit_sha": HEAD, "message": "x"}}}
        return httpx.Response(200, json={"code": 200, "msg": "ok", "data": data})

    return handler


def adapter(hub: Any, token: str | None = TOKEN) -> ModelersAdapter:
    return ModelersAdapter(EP, token, client=hub.client)


def test_walks_folders_and_reads_sha256_from_64_hex_etags(mock_hub) -> None:
    hub = mock_hub(protocol(TREE))
    manifest = adapter(hub).manifest(REPO)
    by_path = manifest.by_path()
    assert sorted(by_path) == ["config.json", "shards/a.safetensors", "shards/more/b.safetensors"]
    assert by_path["shards/a.safetensors"].sha256 == sha("a")
    assert by_path["shards/more/b.safetensors"].sha256 == sha("b")  # quoted etag
    assert by_path["config.json"].sha256 is None  # a git blob id, not a sha256
    assert by_path["config.json"].etag == by_path["config.json"].git_blob == "1" * 40
    assert by_path["shards/a.safetensors"].git_blob is None
    assert by_path["shards/more/b.safetensors"].size == 200
    # the branch is listed once for its head; the rest is listed and served at that commit
    assert by_path["shards/more/b.safetensors"].url == (
        f"{EP}/api/v1/file/{REPO}/{HEAD}/media/shards/more/b.safetensors"
    )
    assert manifest.commit == HEAD and manifest.revision == "main" and manifest.source == "modelers"
    assert manifest.pinned
    asked = [(r.url.params["ref"], r.url.params["path"]) for r in hub.requests]
    assert asked[0] == ("main", "") and sorted(asked[1:]) == [
        (HEAD, ""),
        (HEAD, "shards"),
        (HEAD, "shards/more"),
    ]


def test_bearer_token_only_to_modelers(mock_hub) -> None:
    hub = mock_hub(protocol(TREE))
    manifest = adapter(hub).manifest(REPO)
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in hub.requests)
    assert manifest.files[0].headers == {"Authorization": f"Bearer {TOKEN}"}
    assert TOKEN not in repr(manifest)


def test_revision_goes_into_ref_then_its_commit_into_urls(mock_hub) -> None:
    hub = mock_hub(protocol(TREE))
    manifest = adapter(hub).manifest(REPO, "v2")
    assert [r.url.params["ref"] for r in hub.requests][:2] == ["v2", HEAD]
    assert f"/{HEAD}/media/" in manifest.files[0].url
    assert manifest.revision == "v2" and manifest.commit == HEAD and manifest.pinned


def test_a_hub_that_refuses_commit_refs_is_listed_and_served_by_branch(mock_hub) -> None:
    hub = mock_hub(protocol(TREE, refs=("main", "v2")))
    manifest = adapter(hub).manifest(REPO, "v2")
    assert {r.url.params["ref"] for r in hub.requests} == {"v2", HEAD}
    assert all("/v2/media/" in f.url for f in manifest.files)
    assert manifest.commit == HEAD and not manifest.pinned  # the pull re-checks the head


def test_unknown_revision_and_repository(mock_hub) -> None:
    hub = mock_hub(protocol(TREE))
    with pytest.raises(RevisionNotFoundError) as info:
        adapter(hub).manifest(REPO, "missing")
    assert info.value.revision == "missing"
    with pytest.raises(RepoNotFoundError):
        adapter(hub).manifest("nobody/none")


def test_a_plain_404_for_an_explicit_revision_of_an_existing_repo_names_the_revision(
    mock_hub,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == f"/api/v1/model/{REPO}":
            return httpx.Response(200, json={"code": 200, "data": {}})
        return httpx.Response(404, json={"code": "something_else", "msg": "no"})

    with pytest.raises(RevisionNotFoundError):
        adapter(mock_hub(handler)).manifest(REPO, "v9")


def test_a_folder_listed_twice_is_walked_once(mock_hub) -> None:
    looping = TREE + [{"type": "dir", "path": "shards", "size": 0, "etag": ""}]
    hub = mock_hub(protocol(looping))
    assert len(adapter(hub).manifest(REPO).files) == 3


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(401, json={"code": "unauthorized", "msg": TOKEN}), GatedRepoError),
        (
            httpx.Response(418, json={"code": "white_list", "msg": "not on white list"}),
            NotOnWhiteListError,
        ),
        (httpx.Response(429, headers={"Retry-After": "3"}), RateLimitedError),
        (httpx.Response(502, text="bad gateway"), HubServerError),
        (httpx.Response(200, json={"code": 200, "data": None}), HubProtocolError),
        (httpx.Response(200, json={"code": 200, "data": {"tree": "nope"}}), HubProtocolError),
        (httpx.Response(200, json={"code": 200, "data": {"last_commit": {}}}), HubProtocolError),
        (httpx.Response(200, content=b"\xff\xfe"), HubProtocolError),
    ],
)
def test_error_mapping(mock_hub, response: httpx.Response, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        adapter(mock_hub(lambda r: response)).manifest(REPO)
    assert TOKEN not in str(info.value)
    if isinstance(info.value, GatedRepoError):
        assert info.value.token_env == "OPENMIND_HUB_TOKEN"


def test_unreachable(mock_hub) -> None:
    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    with pytest.raises(HubUnreachableError):
        adapter(mock_hub(stall)).manifest(REPO)


def test_hostile_paths_and_types_pass_through_for_the_engine_to_judge(mock_hub) -> None:
    tree = [
        {"type": "file", "path": "../../x", "size": 1, "etag": sha("x")},
        {"type": "symlink", "path": "evil", "size": 4, "etag": sha("e"), "target": "/etc"},
    ]
    data = {"tree": tree, "last_commit": {"commit": {"commit_sha": HEAD}}}
    hub = mock_hub(lambda r: httpx.Response(200, json={"code": 200, "data": data}))
    by_path = adapter(hub).manifest(REPO).by_path()
    assert by_path["../../x"].kind == "file"
    assert by_path["evil"].kind == "symlink"
    assert by_path["../../x"].url.endswith("/media/../../x")


def test_418_says_white_list_not_token(mock_hub) -> None:
    """openmind_hub maps 418 to AccessWhiteListError ("Does not on white list"): no token helps."""
    hub = mock_hub(lambda request: httpx.Response(418, json={"code": "white_list", "msg": "x"}))
    with pytest.raises(NotOnWhiteListError) as info:
        adapter(hub).manifest(REPO)
    assert "white list" in info.value.message and "OPENMIND_HUB_TOKEN" not in info.value.message
    assert info.value.exit_code == 4 and info.value.fields["status"] == 418
