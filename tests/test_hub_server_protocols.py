"""The local hub speaks each protocol with the right shapes, sizes, hashes and headers."""

from __future__ import annotations

import hashlib
import http.client
import json
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from fixtures_local_hub import SAMPLE_FILES, SAMPLE_REPO, HubFactory

from model_zoo.mirror.repo_store import COMMIT_RE, git_blob_oid
from model_zoo.testing.hub_repos import write_repo
from model_zoo.testing.local_hub import LocalHub

LFS_FILES = {
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "tokenizer.model",
}


def request(
    hub: LocalHub,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    port: int | None = None,
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection(hub.host, port or hub.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def get_json(hub: LocalHub, path: str) -> object:
    status, _, body = request(hub, path)
    assert status == 200, body
    return json.loads(body)


def disk_files(hub_root: Path) -> dict[str, bytes]:
    repo = hub_root / SAMPLE_REPO
    return {
        p.relative_to(repo).as_posix(): p.read_bytes()
        for p in sorted(repo.rglob("*"))
        if p.is_file()
    }


def test_commit_is_stable_and_tracks_content(hub_root: Path, local_hub: LocalHub) -> None:
    first = local_hub.commit(SAMPLE_REPO)
    assert COMMIT_RE.match(first)
    assert local_hub.commit(SAMPLE_REPO) == first
    assert LocalHub(hub_root).commit(SAMPLE_REPO) == first  # deterministic across servers
    write_repo(hub_root, SAMPLE_REPO, {"config.json": '{"changed": true}\n'})
    assert local_hub.commit(SAMPLE_REPO) != first


def test_hf_revision_info_and_recursive_tree(hub_root: Path, local_hub: LocalHub) -> None:
    info = get_json(local_hub, f"/api/models/{SAMPLE_REPO}/revision/main?blobs=true")
    assert isinstance(info, dict)
    assert info["id"] == SAMPLE_REPO and info["sha"] == local_hub.commit(SAMPLE_REPO)
    on_disk = disk_files(hub_root)
    assert {s["rfilename"] for s in info["siblings"]} == set(on_disk)
    tree = get_json(
        local_hub, f"/api/models/{SAMPLE_REPO}/tree/{info['sha']}?recursive=true&expand=false"
    )
    assert isinstance(tree, list)
    files = {e["path"]: e for e in tree if e["type"] == "file"}
    dirs = {e["path"] for e in tree if e["type"] == "directory"}
    assert dirs == {"nested", "nested/deeper"}
    assert set(files) == set(on_disk)
    for path, data in on_disk.items():
        entry = files[path]
        assert entry["size"] == len(data)
        if path in LFS_FILES:
            sha = hashlib.sha256(data).hexdigest()
            pointer = (
                f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n"
            )
            assert entry["lfs"] == {"oid": sha, "size": len(data), "pointerSize": len(pointer)}
            assert entry["oid"] == git_blob_oid(pointer.encode())
        else:
            assert "lfs" not in entry
            assert entry["oid"] == git_blob_oid(data)


def test_hf_tree_non_recursive_and_subfolder(local_hub: LocalHub) -> None:
    top = get_json(local_hub, f"/api/models/{SAMPLE_REPO}/tree/main")
    assert isinstance(top, list)
    assert "nested" in {e["path"] for e in top} and "nested/data.bin" not in {
        e["path"] for e in top
    }
    sub = get_json(local_hub, f"/api/models/{SAMPLE_REPO}/tree/main/nested")
    assert isinstance(sub, list)
    assert {e["path"] for e in sub} == {"nested/data.bin", "nested/deeper"}
    status, headers, _ = request(local_hub, f"/api/models/{SAMPLE_REPO}/tree/main/missing")
    assert status == 404 and headers["X-Error-Code"] == "EntryNotFound"


def test_hf_tree_paging_follows_link_next(make_hub: HubFactory) -> None:
    hub = make_hub(page_size=3)
    url: str | None = f"/api/models/{SAMPLE_REPO}/tree/main?recursive=true"
    seen: list[str] = []
    pages = 0
    while url:
        status, headers, body = request(hub, url)
        assert status == 200
        page = json.loads(body)
        assert len(page) <= 3
        seen += [e["path"] for e in page]
        pages += 1
        link = headers.get("Link")
        url = None
        if link:
            target, rel = link.split(";")
            assert rel.strip() == 'rel="next"'
            parts = urlsplit(target.strip("<> "))
            url = f"{parts.path}?{parts.query}"
    assert pages == -(-(len(SAMPLE_FILES) + 2) // 3)  # files + 2 folders, 3 per page
    assert len(seen) == len(set(seen)) == len(SAMPLE_FILES) + 2


def test_hf_resolve_headers_get_and_head(hub_root: Path, local_hub: LocalHub) -> None:
    commit = local_hub.commit(SAMPLE_REPO)
    data = (hub_root / SAMPLE_REPO / "model-00001-of-00002.safetensors").read_bytes()
    for method in ("HEAD", "GET"):
        status, headers, body = request(
            local_hub,
            f"/{SAMPLE_REPO}/resolve/main/model-00001-of-00002.safetensors",
            method=method,
        )
        assert status == 200
        assert headers["X-Repo-Commit"] == commit
        assert headers["Content-Length"] == str(len(data))
        assert headers["X-Linked-Etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
        assert headers["X-Linked-Size"] == str(len(data))
        assert headers["Accept-Ranges"] == "bytes"
        assert body == (data if method == "GET" else b"")
    small = (hub_root / SAMPLE_REPO / "config.json").read_bytes()
    status, headers, body = request(local_hub, f"/{SAMPLE_REPO}/resolve/{commit}/config.json")
    assert status == 200 and body == small
    assert headers["ETag"] == f'"{git_blob_oid(small)}"' and "X-Linked-Etag" not in headers


@pytest.mark.parametrize(
    ("range_header", "first", "last"),
    [
        ("bytes=10-19", 10, 19),
        ("bytes=4000-", 4000, 4096),
        ("bytes=-7", 4090, 4096),
        ("bytes=4090-99999", 4090, 4096),
    ],
)
def test_range_requests(
    hub_root: Path, local_hub: LocalHub, range_header: str, first: int, last: int
) -> None:
    data = (hub_root / SAMPLE_REPO / "nested/data.bin").read_bytes()
    for url in (
        f"/{SAMPLE_REPO}/resolve/main/nested/data.bin",
        f"/api/v1/models/{SAMPLE_REPO}/repo?Revision=master&FilePath=nested%2Fdata.bin",
        f"/api/v1/file/{SAMPLE_REPO}/main/media/nested/data.bin",
        f"/openxlab/file/{SAMPLE_REPO}/{local_hub.commit(SAMPLE_REPO)}/nested/data.bin",
    ):
        status, headers, body = request(local_hub, url, headers={"Range": range_header})
        assert status == 206, url
        assert headers["Content-Range"] == f"bytes {first}-{last}/{len(data)}"
        assert body == data[first : last + 1]


def test_unsatisfiable_range_is_416_and_bad_syntax_is_ignored(local_hub: LocalHub) -> None:
    url = f"/{SAMPLE_REPO}/resolve/main/nested/data.bin"
    status, headers, _ = request(local_hub, url, headers={"Range": "bytes=4097-"})
    assert status == 416 and headers["Content-Range"] == "bytes */4097"
    status, _, body = request(local_hub, url, headers={"Range": "bytes=oops"})
    assert status == 200 and len(body) == 4097


def test_modelscope_listing_revisions_and_download(hub_root: Path, local_hub: LocalHub) -> None:
    body = get_json(
        local_hub, f"/api/v1/models/{SAMPLE_REPO}/repo/files?Revision=master&Recursive=True"
    )
    assert isinstance(body, dict) and body["Success"] is True
    files = {f["Path"]: f for f in body["Data"]["Files"] if f["Type"] == "blob"}
    on_disk = disk_files(hub_root)
    assert set(files) == set(on_disk)
    for path, data in on_disk.items():
        assert files[path]["Size"] == len(data)
        assert files[path]["Sha256"] == hashlib.sha256(data).hexdigest()
    assert {f["Path"] for f in body["Data"]["Files"] if f["Type"] == "tree"} == {
        "nested",
        "nested/deeper",
    }
    shallow = get_json(
        local_hub, f"/api/v1/models/{SAMPLE_REPO}/repo/files?Revision=master&Root=nested"
    )
    assert isinstance(shallow, dict)
    assert {f["Path"] for f in shallow["Data"]["Files"]} == {"nested/data.bin", "nested/deeper"}
    revs = get_json(local_hub, f"/api/v1/models/{SAMPLE_REPO}/revisions")
    assert isinstance(revs, dict)
    assert revs["Data"]["RevisionMap"]["Branches"][0]["CommitId"] == local_hub.commit(SAMPLE_REPO)
    status, _, data = request(
        local_hub,
        f"/api/v1/models/{SAMPLE_REPO}/repo?Revision=master"
        f"&FilePath={quote('nested/deeper/notes.txt', safe='')}",
    )
    assert status == 200 and data == on_disk["nested/deeper/notes.txt"]


def test_modelers_tree_info_and_media(hub_root: Path, local_hub: LocalHub) -> None:
    on_disk = disk_files(hub_root)
    top = get_json(local_hub, f"/api/v1/file/{SAMPLE_REPO}?path=&ref=main")
    assert isinstance(top, dict)
    assert top["data"]["last_commit"]["commit"]["commit_sha"] == local_hub.commit(SAMPLE_REPO)
    entries = {e["path"]: e for e in top["data"]["tree"]}
    assert entries["nested"]["type"] == "dir"
    shard = entries["model-00002-of-00002.safetensors"]
    assert (
        shard["is_lfs"] is True
        and shard["etag"] == hashlib.sha256(on_disk[shard["path"]]).hexdigest()
    )
    assert entries["config.json"]["etag"] == git_blob_oid(on_disk["config.json"])
    sub = get_json(local_hub, f"/api/v1/file/{SAMPLE_REPO}?path=nested/deeper&ref=main")
    assert isinstance(sub, dict)
    assert [e["path"] for e in sub["data"]["tree"]] == ["nested/deeper/notes.txt"]
    info = get_json(local_hub, f"/api/v1/file/{SAMPLE_REPO}/info?ref=main&path=tokenizer.model")
    assert isinstance(info, dict) and info["data"]["size"] == len(on_disk["tokenizer.model"])
    status, _, data = request(local_hub, f"/api/v1/file/{SAMPLE_REPO}/main/media/tokenizer.model")
    assert status == 200 and data == on_disk["tokenizer.model"]


def test_openxlab_download_urls(hub_root: Path, local_hub: LocalHub) -> None:
    on_disk = disk_files(hub_root)
    ns, name = SAMPLE_REPO.split("/")
    payload = {
        "userName": ns,
        "repositoryName": name,
        "modelNames": None,
        "filePaths": None,
        "clientFrom": "0",
        "ignore": None,
    }
    status, _, body = request(
        local_hub,
        "/model-center/api/v1/cli/repository/getFileDownloadUrl",
        method="POST",
        body=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert status == 200
    reply = json.loads(body)
    # the official client checks the inner envelope's msgCode before reading filePaths
    assert reply["msgCode"] == "10000" and reply["data"]["msgCode"] == "10000"
    paths = reply["data"]["data"]["filePaths"]
    assert set(paths) == set(on_disk)
    for path, item in paths.items():
        assert item["hash"] == hashlib.sha256(on_disk[path]).hexdigest()
        url = urlsplit(item["url"])
        assert f"{url.hostname}:{url.port}" == f"{local_hub.host}:{local_hub.port}"
        st, _, data = request(local_hub, url.path)
        assert st == 200 and data == on_disk[path]


def test_not_found_errors_per_protocol(local_hub: LocalHub) -> None:
    status, headers, _ = request(local_hub, "/api/models/internlm/nope/revision/main")
    assert status == 404 and headers["X-Error-Code"] == "RepoNotFound"
    status, headers, _ = request(local_hub, f"/api/models/{SAMPLE_REPO}/revision/no-such-branch")
    assert status == 404 and headers["X-Error-Code"] == "RevisionNotFound"
    status, headers, _ = request(local_hub, f"/{SAMPLE_REPO}/resolve/main/absent.txt")
    assert status == 404 and headers["X-Error-Code"] == "EntryNotFound"
    status, _, body = request(local_hub, "/api/v1/models/internlm/nope/repo/files?Revision=master")
    assert status == 404 and json.loads(body)["Success"] is False
    status, _, body = request(local_hub, "/api/v1/file/internlm/nope?path=&ref=main")
    assert status == 404 and json.loads(body)["code"] == 404
    status, _, body = request(local_hub, f"/api/v1/file/{SAMPLE_REPO}?path=&ref=no-such-ref")
    assert status == 404 and json.loads(body)["code"] == "ref_not_exist"
    status, _, body = request(local_hub, f"/api/v1/file/{SAMPLE_REPO}?path=absent&ref=main")
    assert status == 404 and json.loads(body)["code"] == "branch_or_path_not_found"


def test_stats_count_bytes_per_file_and_log_requests(hub_root: Path, local_hub: LocalHub) -> None:
    url = f"/{SAMPLE_REPO}/resolve/main/nested/data.bin"
    request(local_hub, url, headers={"Range": "bytes=100-"})
    request(local_hub, url, method="HEAD")
    request(local_hub, f"/api/v1/models/{SAMPLE_REPO}/repo?Revision=master&FilePath=config.json")
    stats = local_hub.stats
    assert stats.bytes_served(protocol="hf", path="nested/data.bin") == 4097 - 100
    config_size = len(str(SAMPLE_FILES["config.json"]))
    assert stats.bytes_served(protocol="modelscope") == config_size
    assert stats.bytes_served(repo=SAMPLE_REPO) == 4097 - 100 + config_size
    logged = stats.file_requests(path="nested/data.bin")
    assert [(r.method, r.range, r.status) for r in logged] == [
        ("GET", "bytes=100-", 206),
        ("HEAD", None, 200),
    ]
    stats.reset()
    assert stats.bytes_served() == 0 and stats.requests == []


def test_stats_tell_bytes_sent_to_two_clients_from_one_client_asking_twice(
    local_hub: LocalHub,
) -> None:
    url = f"/{SAMPLE_REPO}/resolve/main/nested/data.bin"
    stats = local_hub.stats
    one, two = {"Authorization": "Bearer one"}, {"Authorization": "Bearer two"}
    request(local_hub, url, headers={**one, "Range": "bytes=0-1999"})
    request(local_hub, url, headers={**one, "Range": "bytes=1000-1999"})  # its own repeat
    request(local_hub, url, headers={**two, "Range": "bytes=2000-"})  # the rest: no overlap
    assert stats.sent_to_two_clients() == []
    request(local_hub, url, headers={**two, "Range": "bytes=1500-1599"})
    request(local_hub, url, method="HEAD", headers=two)  # no body, never counted
    assert stats.sent_to_two_clients() == [
        ("nested/data.bin", (0, 2000), (1500, 1600)),
        ("nested/data.bin", (1000, 2000), (1500, 1600)),
    ]


def test_lfs_redirect_mode_moves_lfs_bytes_behind_a_302(
    hub_root: Path, make_hub: HubFactory
) -> None:
    hub = make_hub(lfs_redirect=True)
    data = (hub_root / SAMPLE_REPO / "tokenizer.model").read_bytes()
    for url in (
        f"/{SAMPLE_REPO}/resolve/main/tokenizer.model",
        f"/api/v1/models/{SAMPLE_REPO}/repo?Revision=master&FilePath=tokenizer.model",
    ):
        status, headers, body = request(hub, url, method="HEAD")
        assert status == 302 and body == b""
        assert headers["X-Linked-Etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
        assert headers["X-Linked-Size"] == str(len(data))
        assert headers["X-Repo-Commit"] == hub.commit(SAMPLE_REPO)
        target = urlsplit(headers["Location"])
        # Another origin (its own port), as the real CDNs are, with a signed URL.
        assert target.port == hub.cdn_port != hub.port and target.path.startswith("/_cdn/")
        cdn_path = f"{target.path}?{target.query}"
        status, headers, body = request(
            hub, cdn_path, headers={"Range": "bytes=5-9"}, port=hub.cdn_port
        )
        assert status == 206 and body == data[5:10]
    assert (
        request(hub, f"/{SAMPLE_REPO}/resolve/main/config.json")[0] == 200
    )  # small git files: direct
    assert (
        request(hub, f"/api/v1/file/{SAMPLE_REPO}/main/media/tokenizer.model")[0] == 200
    )  # Modelers: direct


def test_keep_alive_connection_serves_many_requests(hub_root: Path, local_hub: LocalHub) -> None:
    data = (hub_root / SAMPLE_REPO / "nested/data.bin").read_bytes()
    conn = http.client.HTTPConnection(local_hub.host, local_hub.port, timeout=10)
    try:
        answers = []
        sockets = []
        for path, headers in [
            (f"/{SAMPLE_REPO}/resolve/main/nested/data.bin", {"Range": "bytes=0-9"}),
            (f"/{SAMPLE_REPO}/resolve/main/absent.txt", {}),
            (f"/api/models/{SAMPLE_REPO}/revision/main", {}),
            (f"/{SAMPLE_REPO}/resolve/main/nested/data.bin", {}),
        ]:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            answers.append((resp.status, resp.read()))
            sockets.append(conn.sock)
    finally:
        conn.close()
    assert [a[0] for a in answers] == [206, 404, 200, 200]
    assert answers[0][1] == data[:10] and answers[3][1] == data
    assert sockets[0] is not None and all(sk is sockets[0] for sk in sockets)  # one connection


@pytest.mark.parametrize(
    "path",
    [
        f"/api/models/{SAMPLE_REPO}/revision/main",
        f"/api/models/{SAMPLE_REPO}/tree/main?recursive=true",
        f"/api/v1/models/{SAMPLE_REPO}/repo/files?Revision=master&Recursive=True",
        f"/api/v1/file/{SAMPLE_REPO}?path=&ref=main",
        f"/api/v1/models/{SAMPLE_REPO}/revisions",
    ],
)
def test_head_answers_every_listing(local_hub: LocalHub, path: str) -> None:
    status, headers, body = request(local_hub, path, method="HEAD")
    _, _, full = request(local_hub, path)
    assert status == 200 and body == b""
    assert headers["Content-Type"].startswith("application/json")
    # Same length as GET, except where a response embeds a per-request id.
    if "revisions" not in path and "repo/files" not in path:
        assert int(headers["Content-Length"]) == len(full)


# --------------------------------------------------------------------------- names outside latin-1


def test_missing_file_named_in_chinese_answers_404_to_huggingface_hub(
    local_hub: LocalHub, tmp_path: Path
) -> None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    with pytest.raises(EntryNotFoundError):
        hf_hub_download(SAMPLE_REPO, "权重.bin", endpoint=local_hub.url, cache_dir=tmp_path / "c")
    status, headers, body = request(local_hub, f"/{SAMPLE_REPO}/resolve/main/%E6%9D%83.bin")
    assert status == 404 and headers["X-Error-Code"] == "EntryNotFound"
    assert "权" in body.decode()  # the JSON body keeps the name whole
