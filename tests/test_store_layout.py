"""Store layout, manifests, lock files and cache management (no network)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from model_zoo.errors import CheckpointError, UnsafePathError, UsageError
from model_zoo.store.cache import (
    disk_usage,
    find_snapshot,
    incomplete_dirs,
    iter_snapshots,
    missing_files,
    remove_from_store,
    store_repo_roots,
)
from model_zoo.store.layout import (
    check_remote_path,
    local_path,
    manifest_path,
    snapshot_dir,
    snapshot_name,
)
from model_zoo.store.lockfile import LockedFile, LockedModel, make_lock, parse_lock, read_lock
from model_zoo.store.manifest import (
    PUBLISHED,
    FileRecord,
    SourceRecord,
    StoreManifest,
    read_manifest,
    write_manifest,
)


@pytest.mark.parametrize(
    "path",
    [
        "../x",
        "a/../../x",
        "/etc/passwd",
        "C:/x",
        "c:x",
        "a\\b",
        "a//b",
        "./a",
        "a/./b",
        "",
        "a/",
        "x\x00y",
        ".model-zoo/manifest.json",
        "..",
    ],
)
def test_unsafe_remote_paths_are_rejected(path: str) -> None:
    with pytest.raises(UnsafePathError):
        check_remote_path(path, source="hf")


@pytest.mark.parametrize(
    "path", ["config.json", "a/b/c.bin", ".gitattributes", "x..y", "..a", "dir.d/f"]
)
def test_safe_remote_paths(path: str) -> None:
    assert check_remote_path(path).as_posix() == path


def test_local_path_refuses_symlinked_parents(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "sub").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="symlink"):
        local_path(root, "sub/file.txt")
    (root / "link.txt").symlink_to(outside / "f")
    with pytest.raises(UnsafePathError, match="symlink"):
        local_path(root, "link.txt")
    assert local_path(root, "ok/file.txt") == root / "ok" / "file.txt"


def test_snapshot_names() -> None:
    assert snapshot_name("hf", "main", "a" * 40) == "a" * 40
    assert snapshot_name("openxlab", None, None) == "openxlab-default"
    assert snapshot_name("openxlab", "v1/../x", None) == "openxlab-v1_.._x"
    assert "/" not in snapshot_name("hf", None, "../../etc")


def _manifest(
    name: str = "Tiny-Chat",
    commit: str | None = "c" * 40,
    revision: str | None = None,
    files: tuple[FileRecord, ...] = (),
    when: str = "2024-01-01T00:00:00Z",
) -> StoreManifest:
    return StoreManifest(
        name=name,
        slug=name.lower(),
        revision=revision,
        commit=commit,
        sources=(SourceRecord("hf", "internlm/tiny", "http://127.0.0.1:1", commit),),
        files=files,
        verified_at=when,
    )


def test_manifest_round_trip_and_damage(tmp_path: Path) -> None:
    rec = FileRecord("config.json", 3, "ab" * 32, PUBLISHED, ("hf",))
    m = _manifest(files=(rec,))
    write_manifest(tmp_path, m)
    data = json.loads(manifest_path(tmp_path).read_text())
    assert data["source"] == "hf" and data["repo_id"] == "internlm/tiny" and data["total_size"] == 3
    assert data["files"][0] == {
        "path": "config.json",
        "size": 3,
        "sha256": "ab" * 32,
        "verified": PUBLISHED,
        "sources": ["hf"],
    }
    assert read_manifest(tmp_path) == m
    assert read_manifest(tmp_path / "nothing") is None
    manifest_path(tmp_path).write_text("{not json")
    with pytest.raises(CheckpointError, match="not JSON"):
        read_manifest(tmp_path)
    manifest_path(tmp_path).write_text(json.dumps({"format": 1, "name": "x"}))
    with pytest.raises(CheckpointError, match="not valid"):
        read_manifest(tmp_path)
    # no temp files left behind by the atomic writes
    assert [p.name for p in manifest_path(tmp_path).parent.iterdir()] == ["manifest.json"]


def test_lock_file_round_trip_and_validation(tmp_path: Path) -> None:
    model = LockedModel(
        "Tiny-Chat",
        "hf",
        "internlm/tiny",
        "main",
        "c" * 40,
        (LockedFile("config.json", 3, "ab" * 32),),
    )
    lock = make_lock([model])
    path = tmp_path / "model-zoo.lock"
    path.write_text(lock.dumps())
    back = read_lock(path)
    assert back.models == (model,)
    assert back.find("tiny-chat") == model and back.find("other") is None
    assert model.pin == "c" * 40
    bad = lock.to_dict()
    bad["models"][0]["files"][0]["sha256"] = "xyz"
    with pytest.raises(UsageError, match="sha256"):
        parse_lock(bad)
    with pytest.raises(UsageError):
        parse_lock({"models": []})
    path.write_text("nope")
    with pytest.raises(UsageError, match="not JSON"):
        read_lock(path)


def _populate(
    home: Path, name: str, commit: str | None, revision: str | None, when: str, body: bytes = b"abc"
) -> Path:
    root = snapshot_dir(home, name.lower(), "hf", revision, commit)
    root.mkdir(parents=True)
    (root / "config.json").write_bytes(body)
    import hashlib

    rec = FileRecord("config.json", len(body), hashlib.sha256(body).hexdigest(), PUBLISHED, ("hf",))
    write_manifest(root, _manifest(name, commit, revision, (rec,), when))
    return root


def test_find_list_and_repo_roots(tmp_path: Path) -> None:
    home = tmp_path / "store"
    old = _populate(home, "Tiny-Chat", "a" * 40, None, "2024-01-01T00:00:00Z")
    new = _populate(home, "Tiny-Chat", "b" * 40, None, "2024-02-01T00:00:00Z")
    tagged = _populate(home, "Tiny-Chat", "d" * 40, "v1.0", "2024-03-01T00:00:00Z")
    partial = snapshot_dir(home, "tiny-chat", "hf", None, "e" * 40)
    partial.mkdir()
    (partial / "model.safetensors.part").write_bytes(b"x" * 10)

    assert [s.root for s in iter_snapshots(home)] == [tagged, new, old]
    assert incomplete_dirs(home) == [partial]
    assert find_snapshot(home, "tiny-chat").root == new  # newest from the default branch
    assert find_snapshot(home, "tiny-chat", "a" * 40).root == old
    assert find_snapshot(home, "tiny-chat", "aaaaaaa").root == old  # commit prefix
    assert find_snapshot(home, "tiny-chat", "v1.0").root == tagged
    assert find_snapshot(home, "tiny-chat", "zzz") is None
    assert find_snapshot(home, "other") is None

    repos = store_repo_roots(home)
    assert {(r.repo_id, r.commit) for r in repos} == {("internlm/tiny", c * 40) for c in "abd"}
    assert repos[0].files == ("config.json",) and repos[0].root == tagged

    snap = find_snapshot(home, "tiny-chat")
    assert missing_files(snap) == []
    (new / "config.json").write_bytes(b"abcd")
    assert missing_files(snap) == ["config.json"]
    assert disk_usage(home) > 0


def test_remove_never_leaves_the_store(tmp_path: Path) -> None:
    home = tmp_path / "store"
    root = _populate(home, "Tiny-Chat", "a" * 40, None, "2024-01-01T00:00:00Z")
    victim = tmp_path / "precious"
    victim.mkdir()
    (victim / "f").write_text("keep")
    for target in (
        victim,
        home,
        home / "models",
        root / ".model-zoo",
        root / "config.json",
        home / "models" / ".." / ".." / "precious",
    ):
        with pytest.raises(UsageError):
            remove_from_store(home, target)
    # a symlink inside the store pointing outside is not followed
    link = home / "models" / "evil"
    link.symlink_to(victim)
    with pytest.raises(UsageError):
        remove_from_store(home, link)
    assert (victim / "f").read_text() == "keep"
    freed = remove_from_store(home, root)
    assert freed > 0 and not root.exists()
    assert not (home / "models" / "tiny-chat").exists()  # empty model dir cleaned up
    assert os.listdir(victim) == ["f"]
