"""Every adapter lists the local hub's repositories with the right sizes, hashes and URLs.

The expected values are computed here from the files on disk, not taken from the server.
"""

from __future__ import annotations

import fnmatch
import hashlib
from pathlib import Path

import pytest
from fixtures_local_hub import SAMPLE_FILES, SAMPLE_REPO

from model_zoo.errors import GatedRepoError, RevisionNotFoundError
from model_zoo.hubs.catalog import SOURCE_KEYS
from model_zoo.hubs.factory import adapter_for
from model_zoo.hubs.http import build_client
from model_zoo.settings import load_settings
from model_zoo.testing.local_hub import LocalHub

LFS_PATTERNS = ("*.safetensors", "*.model")  # what the sample's .gitattributes sends to LFS


def on_disk(root: Path, repo_id: str) -> dict[str, bytes]:
    base = root / repo_id
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()}


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(path: str) -> bool:
    return any(fnmatch.fnmatch(path.rsplit("/", 1)[-1], pat) for pat in LFS_PATTERNS)


@pytest.mark.parametrize("source", SOURCE_KEYS)
def test_every_protocol_lists_sizes_and_hashes(
    source, local_hub: LocalHub, hub_env, hub_root
) -> None:
    expected = on_disk(hub_root, SAMPLE_REPO)
    assert set(expected) == set(SAMPLE_FILES)
    manifest = adapter_for(source, load_settings()).manifest(SAMPLE_REPO)
    by_path = manifest.by_path()
    assert set(by_path) == set(expected)
    for path, data in expected.items():
        remote = by_path[path]
        digest = hashlib.sha256(data).hexdigest()
        assert remote.size == len(data), path
        assert remote.kind == "file"
        if source == "modelscope":
            assert remote.sha256 == digest, path  # ModelScope publishes sha256 for every file
        elif source in ("hf", "modelers"):
            # LFS files carry their sha256; small git files only a git blob id.
            assert remote.sha256 == (digest if is_lfs(path) else None), path
            assert remote.etag == (digest if is_lfs(path) else git_oid(data)), path
        else:  # OpenXLab's hash is kept as an etag, never trusted as sha256
            assert remote.sha256 is None
            assert remote.etag == digest
    assert manifest.source == source
    if source in ("hf", "modelers", "modelscope"):
        assert manifest.commit == local_hub.commit(SAMPLE_REPO)
    else:
        assert manifest.commit is None


@pytest.mark.parametrize("source", ["hf", "modelscope", "modelers", "openxlab"])
def test_manifest_urls_serve_the_listed_bytes(
    source, local_hub: LocalHub, hub_env, hub_root
) -> None:
    expected = on_disk(hub_root, SAMPLE_REPO)
    manifest = adapter_for(source, load_settings()).manifest(SAMPLE_REPO)
    with build_client() as client:
        for path in ("nested/deeper/notes.txt", "model-00002-of-00002.safetensors"):
            remote = manifest.by_path()[path]
            response = client.get(remote.url, headers=dict(remote.headers))
            assert response.status_code == 200, (source, path)
            assert response.content == expected[path]


@pytest.mark.parametrize("source", ["hf", "modelscope", "modelers"])
def test_a_tag_pins_its_revision(source, local_hub: LocalHub, hub_env) -> None:
    commit = local_hub.tag(SAMPLE_REPO, "v1")
    manifest = adapter_for(source, load_settings()).manifest(SAMPLE_REPO, "v1")
    assert manifest.revision == "v1" and manifest.commit == commit
    assert len(manifest.files) == len(SAMPLE_FILES)


def test_hf_listing_is_one_request_however_the_tree_is_paged(make_hub, monkeypatch) -> None:
    """The local hub answers ``blobs=true`` as the Hub does, so the listing needs no tree pages
    (the paged-tree fallback is driven by test_hubs_huggingface's server that ignores it)."""
    hub = make_hub(page_size=2)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    manifest = adapter_for("hf", load_settings()).manifest(SAMPLE_REPO)
    assert len(manifest.files) == len(SAMPLE_FILES)
    api = [r.url for r in hub.stats.requests if r.kind == "api"]
    assert len(api) == 1 and "blobs=true" in api[0], api


@pytest.mark.parametrize("source", ["hf", "modelscope", "modelers"])
def test_unknown_revision(source, local_hub: LocalHub, hub_env) -> None:
    with pytest.raises(RevisionNotFoundError):
        adapter_for(source, load_settings()).manifest(SAMPLE_REPO, "no-such-tag")


@pytest.mark.parametrize(
    ("source", "token_env"),
    [
        ("hf", "HF_TOKEN"),
        ("modelscope", "MODELSCOPE_API_TOKEN"),
        ("modelers", "OPENMIND_HUB_TOKEN"),
        ("openxlab", "OPENXLAB_TOKEN"),
    ],
)
def test_gated_repository_needs_the_hubs_own_token(
    source, token_env, local_hub: LocalHub, hub_env, monkeypatch
) -> None:
    local_hub.gate(SAMPLE_REPO, "let-me-in")
    with pytest.raises(GatedRepoError) as info:
        adapter_for(source, load_settings()).manifest(SAMPLE_REPO)
    assert info.value.token_env == token_env
    monkeypatch.setenv(token_env, "let-me-in")
    manifest = adapter_for(source, load_settings()).manifest(SAMPLE_REPO)
    assert len(manifest.files) == len(SAMPLE_FILES)
    assert "let-me-in" not in repr(manifest)


# --------------------------------------------------------------------------- names outside latin-1


@pytest.mark.parametrize("source", ["hf", "modelscope", "modelers"])
def test_missing_revision_named_in_chinese_is_revision_not_found(
    source: str, local_hub: LocalHub
) -> None:
    from model_zoo.errors import RevisionNotFoundError

    adapter = adapter_for(source, load_settings(local_hub.env()))
    with pytest.raises(RevisionNotFoundError):
        adapter.manifest(SAMPLE_REPO, "发布版")
