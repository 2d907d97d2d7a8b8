"""Tags pin old revisions while the default branch moves; every protocol serves them."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest
from fixtures_local_hub import SAMPLE_REPO

from model_zoo.mirror import repo_store
from model_zoo.mirror.repo_store import REVISIONS_DIR, RepoStore
from model_zoo.testing.hub_repos import write_repo
from model_zoo.testing.local_hub import LocalHub

OLD = b'{"version": 1}\n'
NEW = b'{"version": 2}\n'


def get(hub: LocalHub, path: str) -> tuple[int, bytes, http.client.HTTPMessage]:
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.headers
    finally:
        conn.close()


def test_tag_keeps_old_bytes_after_main_changes(hub_root: Path, local_hub: LocalHub) -> None:
    write_repo(hub_root, SAMPLE_REPO, {"config.json": OLD})
    old_commit = local_hub.tag(SAMPLE_REPO, "v1")
    assert (hub_root / REVISIONS_DIR / SAMPLE_REPO / "v1" / "config.json").read_bytes() == OLD
    assert old_commit == local_hub.commit(SAMPLE_REPO)  # same content, same commit
    write_repo(hub_root, SAMPLE_REPO, {"config.json": NEW, "added.txt": "new file\n"})
    new_commit = local_hub.commit(SAMPLE_REPO)
    assert new_commit != old_commit
    assert local_hub.commit(SAMPLE_REPO, "v1") == old_commit
    assert local_hub.commit(SAMPLE_REPO, old_commit) == old_commit
    assert local_hub.commit(SAMPLE_REPO, "master") == new_commit

    for rev, body in (("main", NEW), ("v1", OLD), (old_commit, OLD), (new_commit, NEW)):
        for url in (
            f"/{SAMPLE_REPO}/resolve/{rev}/config.json",
            f"/api/v1/models/{SAMPLE_REPO}/repo?Revision={rev}&FilePath=config.json",
            f"/api/v1/file/{SAMPLE_REPO}/{rev}/media/config.json",
        ):
            status, data, _ = get(local_hub, url)
            assert (status, data) == (200, body), url
    # OpenXLab URLs embed the commit, so an old URL keeps serving the old bytes.
    assert get(local_hub, f"/openxlab/file/{SAMPLE_REPO}/{old_commit}/config.json")[1] == OLD

    info = json.loads(get(local_hub, f"/api/models/{SAMPLE_REPO}/revision/v1")[1])
    assert info["sha"] == old_commit and "added.txt" not in {
        s["rfilename"] for s in info["siblings"]
    }
    revs = json.loads(get(local_hub, f"/api/v1/models/{SAMPLE_REPO}/revisions")[1])["Data"][
        "RevisionMap"
    ]
    assert revs["Tags"] == [
        {"Revision": "v1", "CommitId": old_commit, "CreatedAt": revs["Tags"][0]["CreatedAt"]}
    ]
    assert revs["Branches"][0]["CommitId"] == new_commit
    ms = json.loads(
        get(local_hub, f"/api/v1/models/{SAMPLE_REPO}/repo/files?Revision=v1&Recursive=True")[1]
    )
    assert "added.txt" not in {f["Path"] for f in ms["Data"]["Files"]}


def test_untagged_old_commit_is_gone(hub_root: Path, local_hub: LocalHub) -> None:
    before = local_hub.commit(SAMPLE_REPO)
    write_repo(hub_root, SAMPLE_REPO, {"config.json": NEW})
    status, _, headers = get(local_hub, f"/api/models/{SAMPLE_REPO}/revision/{before}")
    assert status == 404 and headers["X-Error-Code"] == "RevisionNotFound"


def test_store_roots_layer_and_hashes_are_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    write_repo(first, "internlm/x", {"w.bin": b"first"})
    write_repo(second, "internlm/x", {"w.bin": b"second"})
    write_repo(second, "Shanghai_AI_Laboratory/y", {"w.bin": 2048})
    store = RepoStore([first, second])
    assert store.repo_ids() == ["Shanghai_AI_Laboratory/y", "internlm/x"]
    assert store.snapshot("internlm/x").files["w.bin"].size == 5  # first root wins

    hashed: list[str] = []
    real = repo_store._hash_file

    def counting(path: Path, size: int, want_git_oid: bool) -> tuple[str, str | None]:
        hashed.append(path.name)
        return real(path, size, want_git_oid)

    monkeypatch.setattr(repo_store, "_hash_file", counting)
    sha = store.snapshot("Shanghai_AI_Laboratory/y").files["w.bin"].sha256
    store.snapshot("Shanghai_AI_Laboratory/y")
    write_repo(second, "Shanghai_AI_Laboratory/y", {"extra.txt": "x"})
    assert store.snapshot("Shanghai_AI_Laboratory/y").files["w.bin"].sha256 == sha
    assert hashed == ["w.bin", "extra.txt"]  # each file hashed once
    write_repo(second, "Shanghai_AI_Laboratory/y", {"w.bin": 2049})
    assert store.snapshot("Shanghai_AI_Laboratory/y").files["w.bin"].sha256 != sha
    assert hashed == ["w.bin", "extra.txt", "w.bin"]  # a changed file is hashed again
