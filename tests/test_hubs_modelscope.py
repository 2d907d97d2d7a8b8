"""ModelScope adapter against a mock of its REST protocol."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from model_zoo.errors import (
    GatedRepoError,
    HubProtocolError,
    HubServerError,
    HubUnreachableError,
    RateLimitedError,
    RepoNotFoundError,
    RevisionNotFoundError,
)
from model_zoo.hubs.modelscope import ModelScopeAdapter

EP = "https://ms.example"
TOKEN = "ms-SECRET-token"
REPO = "Shanghai_AI_Laboratory/internlm2_5-1_8b-chat"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


FILES = [
    {"Path": "config.json", "Type": "blob", "Size": 10, "Sha256": sha("config")},
    {"Path": "weights", "Type": "tree", "Size": 0, "Sha256": ""},
    {
        "Path": "weights/model-00001-of-00002.safetensors",
        "Type": "blob",
        "Size": 2000,
        "Sha256": sha("w1").upper(),
    },
    {"Path": "weights/deep", "Type": "tree", "Size": 0, "Sha256": ""},
    {
        "Path": "weights/deep/model-00002-of-00002.safetensors",
        "Type": "blob",
        "Size": 3000,
        "Sha256": sha("w2"),
    },
    {"Path": "README.md", "Type": "blob", "Size": 5, "Sha256": ""},
]


def envelope(
    data: Any, *, code: int = 200, success: bool = True, message: str = "ok"
) -> dict[str, Any]:
    return {"Code": code, "Data": data, "Message": message, "Success": success}


def children(files: list[dict[str, Any]], root: str | None) -> list[dict[str, Any]]:
    parent = root or ""
    return [f for f in files if (f["Path"].rsplit("/", 1)[0] if "/" in f["Path"] else "") == parent]


def protocol(
    files: list[dict[str, Any]],
    *,
    revisions: tuple[str, ...] = ("master", "v1.0"),
    cap: int = 10_000,
):
    """A handler speaking the listing protocol, truncating answers at ``cap`` like the server."""

    def handler(request: httpx.Request) -> httpx.Response:
        url = urlsplit(str(request.url))
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == f"/api/v1/models/{REPO}":
            return httpx.Response(200, json=envelope({"Name": "internlm2_5-1_8b-chat"}))
        if url.path == f"/api/v1/models/{REPO}/revisions":
            branches = [{"Revision": "master", "CommitId": "E" * 40}]
            tags = [{"Revision": "v1.0"}]  # no commit published
            return httpx.Response(
                200, json=envelope({"RevisionMap": {"Branches": branches, "Tags": tags}})
            )
        if url.path != f"/api/v1/models/{REPO}/repo/files":
            return httpx.Response(
                404, json=envelope(None, code=404, success=False, message="model not exist")
            )
        if query.get("Revision") not in revisions:
            return httpx.Response(
                404, json=envelope(None, code=404, success=False, message="revision not found")
            )
        if query.get("Recursive") == "True":
            root = query.get("Root")
            listed = [f for f in files if not root or f["Path"].startswith(root + "/")]
        else:
            listed = children(files, query.get("Root"))
        return httpx.Response(200, json=envelope({"Files": listed[:cap]}))

    return handler


def adapter(hub: Any, token: str | None = TOKEN) -> ModelScopeAdapter:
    return ModelScopeAdapter(EP, token, client=hub.client)


def test_lists_every_file_with_size_sha256_and_url(mock_hub) -> None:
    hub = mock_hub(protocol(FILES))
    manifest = adapter(hub).manifest(REPO)
    by_path = manifest.by_path()
    assert sorted(by_path) == sorted(f["Path"] for f in FILES if f["Type"] == "blob")
    deep = by_path["weights/deep/model-00002-of-00002.safetensors"]
    assert deep.size == 3000 and deep.sha256 == sha("w2")
    assert by_path["weights/model-00001-of-00002.safetensors"].sha256 == sha("w1")  # lower-cased
    assert by_path["README.md"].sha256 is None  # empty Sha256 is "not published"
    assert deep.url == (
        f"{EP}/api/v1/models/{REPO}/repo?Revision=master"
        "&FilePath=weights%2Fdeep%2Fmodel-00002-of-00002.safetensors"
    )
    assert deep.supports_range and deep.kind == "file"
    assert manifest.source == "modelscope" and manifest.revision == "master"
    assert manifest.commit == "e" * 40  # from the revisions list
    assert manifest.endpoint == EP
    assert manifest.total_size == 10 + 2000 + 3000 + 5
    first = hub.requests[0]
    assert first.url.params["Recursive"] == "True" and first.url.params["Revision"] == "master"


def test_no_commit_when_the_revisions_list_is_unavailable(mock_hub) -> None:
    listing = protocol(FILES)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/revisions"):
            return httpx.Response(500)
        return listing(request)

    assert adapter(mock_hub(handler)).manifest(REPO).commit is None


def test_token_goes_as_cookie_and_bearer_only_to_modelscope(mock_hub) -> None:
    hub = mock_hub(protocol(FILES))
    manifest = adapter(hub).manifest(REPO)
    sent = hub.requests[0].headers
    assert sent["Authorization"] == f"Bearer {TOKEN}"
    assert sent["Cookie"] == f"m_session_id={TOKEN}"
    remote = manifest.files[0]
    assert remote.headers["Cookie"] == f"m_session_id={TOKEN}"
    assert TOKEN not in repr(remote) and TOKEN not in repr(manifest)
    assert TOKEN not in repr(adapter(hub))


def test_without_a_token_nothing_is_sent(mock_hub) -> None:
    hub = mock_hub(protocol(FILES))
    manifest = adapter(hub, token=None).manifest(REPO)
    assert (
        "authorization" not in hub.requests[0].headers and "cookie" not in hub.requests[0].headers
    )
    assert all(f.headers == {} for f in manifest.files)


def test_a_listing_at_the_server_cap_is_walked_directory_by_directory(mock_hub) -> None:
    files = [
        {"Path": f"f{i}.bin", "Type": "blob", "Size": i, "Sha256": sha(str(i))} for i in range(3)
    ]
    files += [{"Path": "sub", "Type": "tree", "Size": 0, "Sha256": ""}]
    files += [
        {"Path": f"sub/g{i}.bin", "Type": "blob", "Size": i, "Sha256": sha("g" + str(i))}
        for i in range(3)
    ]
    hub = mock_hub(protocol(files, cap=5))
    ms = adapter(hub)
    ms.listing_cap = 5
    manifest = ms.manifest(REPO)
    assert len(manifest.files) == 6
    assert manifest.by_path()["sub/g2.bin"].sha256 == sha("g2")
    roots = [
        r.url.params.get("Root") for r in hub.requests if r.url.params.get("Recursive") == "False"
    ]
    assert roots == [None, "sub"]


def test_a_directory_beyond_the_cap_is_an_error_not_a_silent_gap(mock_hub) -> None:
    files = [
        {"Path": f"f{i}.bin", "Type": "blob", "Size": 1, "Sha256": sha(str(i))} for i in range(6)
    ]
    hub = mock_hub(protocol(files, cap=5))
    ms = adapter(hub)
    ms.listing_cap = 5
    with pytest.raises(HubProtocolError, match="5 or more entries"):
        ms.manifest(REPO)


def test_revision_is_passed_and_a_commit_id_is_kept(mock_hub) -> None:
    commit = "a" * 40
    hub = mock_hub(protocol(FILES, revisions=("master", "v1.0", commit)))
    manifest = adapter(hub).manifest(REPO, "v1.0")
    assert manifest.revision == "v1.0" and manifest.commit is None
    assert "Revision=v1.0" in manifest.files[0].url
    pinned = adapter(hub).manifest(REPO, commit)
    assert pinned.commit == commit


def test_unknown_revision_of_an_existing_repo(mock_hub) -> None:
    hub = mock_hub(protocol(FILES))
    with pytest.raises(RevisionNotFoundError) as info:
        adapter(hub).manifest(REPO, "nope")
    assert info.value.revision == "nope" and info.value.repo_id == REPO


def test_unknown_repository(mock_hub) -> None:
    hub = mock_hub(protocol(FILES))
    with pytest.raises(RepoNotFoundError):
        adapter(hub).manifest("someone/missing")
    with pytest.raises(RepoNotFoundError):
        adapter(hub).manifest("someone/missing", "v1.0")


def test_business_failures_inside_http_200(mock_hub) -> None:
    def answer(message: str):
        return lambda r: httpx.Response(
            200, json=envelope(None, code=10010101004, success=False, message=message)
        )

    with pytest.raises(GatedRepoError) as gated:
        adapter(mock_hub(answer("get model info failed, err: unauthorized permission"))).manifest(
            REPO
        )
    assert gated.value.token_env == "MODELSCOPE_API_TOKEN"
    with pytest.raises(RepoNotFoundError):
        adapter(mock_hub(answer("model not exist"))).manifest(REPO)
    with pytest.raises(HubProtocolError, match="10010101004"):
        adapter(mock_hub(answer(f"odd failure {TOKEN}"))).manifest(REPO)


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(401, json=envelope(None, code=401, success=False)), GatedRepoError),
        (httpx.Response(403, text=f"denied {TOKEN}"), GatedRepoError),
        (httpx.Response(429, headers={"Retry-After": "30"}), RateLimitedError),
        (httpx.Response(500, text=f"boom {TOKEN}"), HubServerError),
        (httpx.Response(200, text="<html>not json</html>"), HubProtocolError),
        (
            httpx.Response(200, json={"Code": 200, "Success": True, "Data": {"Other": 1}}),
            HubProtocolError,
        ),
        (httpx.Response(200, json=envelope({"Files": ["not-an-object"]})), HubProtocolError),
    ],
)
def test_error_mapping_keeps_the_token_out(
    mock_hub, response: httpx.Response, error: type[Exception]
) -> None:
    hub = mock_hub(lambda r: response)
    with pytest.raises(error) as info:
        adapter(hub).manifest(REPO)
    assert TOKEN not in str(info.value)
    if isinstance(info.value, RateLimitedError):
        assert info.value.retry_after == 30.0


def test_unreachable(mock_hub) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(HubUnreachableError) as info:
        adapter(mock_hub(refuse)).manifest(REPO)
    assert info.value.endpoint == EP


def test_paths_are_kept_exactly_as_listed(mock_hub) -> None:
    files = [
        {"Path": "../escape.txt", "Type": "blob", "Size": 1, "Sha256": sha("x")},
        {"Path": "/abs.txt", "Type": "blob", "Size": 1, "Sha256": sha("y")},
        {"Path": "link", "Type": "symlink", "Size": 3, "Sha256": sha("z")},
    ]
    hub = mock_hub(protocol(files))
    by_path = adapter(hub).manifest(REPO).by_path()
    assert set(by_path) == {"../escape.txt", "/abs.txt", "link"}
    assert by_path["link"].kind == "symlink"
    assert by_path["../escape.txt"].kind == "file"


def test_default_endpoint_is_the_official_clients() -> None:
    """modelscope (1.40, through modelscope_hub) talks to https://modelscope.cn by default."""
    from modelscope_hub.constants import DEFAULT_ENDPOINT

    from model_zoo.hubs.catalog import HUBS

    assert (
        HUBS["modelscope"].default_endpoint
        == DEFAULT_ENDPOINT.rstrip("/")
        == "https://modelscope.cn"
    )
