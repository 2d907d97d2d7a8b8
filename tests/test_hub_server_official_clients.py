"""The official clients download from the local hub byte-identical.

This is what keeps the local hub honest: huggingface_hub, modelscope, openmind_hub (Modelers) and
openxlab are the reference implementations of their protocols, so a drift in paths, JSON shapes
or headers fails here. The last two run in virtualenvs of their own (``fixtures_clients``).
In-process tests pass ``endpoint=`` (huggingface_hub reads HF_ENDPOINT once, at import) and
call modelscope 1.40's download code where it lives, ``modelscope_hub.compat`` (importing the
``modelscope`` package itself pulls in torch and costs seconds). One subprocess test runs
``huggingface_hub.snapshot_download`` and ``modelscope.snapshot_download`` configured only by the
variables from ``LocalHub.env()``, which is how ``model-zoo serve-mirror`` users point their
tools at a mirror.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures_clients import RunClient
from fixtures_local_hub import HubTLS

from model_zoo.testing.hub_repos import write_repo
from model_zoo.testing.local_hub import LocalHub

# Each client runs in a process of its own, from a venv built on first use (.venv-clients/).
pytestmark = pytest.mark.slow

REPO = "internlm/faithful-chat"
FILES: dict[str, bytes | str | int] = {
    ".gitattributes": "*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
    "README.md": "# faithful\n",
    "config.json": '{"model_type": "internlm2", "hidden_size": 64}\n',
    "tokenizer_config.json": '{"chat_template": "{{ messages }}"}\n',
    "model.safetensors": 6 * 1024 * 1024 + 13,  # LFS through .gitattributes
    "weights/big.bin": 10 * 1024 * 1024 + 1,  # LFS through the 10 MiB rule
    "a/b/c/deep.txt": "three folders down\n",
    "a/sibling.json": "[]\n",
    "sub/dir/file": "nested, no extension\n",
    "notes with space.md": "a file name with a space\n",
}


@pytest.fixture(scope="module")
def faithful_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("faithful-root")
    write_repo(root, REPO, FILES)
    return root


@pytest.fixture
def faithful_hub(faithful_root: Path) -> Iterator[LocalHub]:
    with LocalHub(faithful_root, page_size=3) as hub:  # small pages: the client must follow Link
        yield hub


def assert_same_tree(source: Path, copy: Path) -> None:
    expected = {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()}
    for rel in expected:
        assert (copy / rel).read_bytes() == (source / rel).read_bytes(), rel
    got = {
        p.relative_to(copy).as_posix()
        for p in copy.rglob("*")
        if p.is_file()
        and not p.relative_to(copy).as_posix().startswith((".cache/", "._", ".msc", ".mv"))
    }
    assert expected <= got


@pytest.mark.parametrize("lfs_redirect", [False, True], ids=["direct", "lfs-redirect"])
def test_huggingface_hub_snapshot_download(
    faithful_root: Path, faithful_hub: LocalHub, tmp_path: Path, lfs_redirect: bool
) -> None:
    from huggingface_hub import snapshot_download

    faithful_hub.lfs_redirect = lfs_redirect
    out = snapshot_download(
        REPO, endpoint=faithful_hub.url, local_dir=tmp_path / "hf", cache_dir=tmp_path / "c"
    )
    assert_same_tree(faithful_root / REPO, Path(out))
    pages = [r for r in faithful_hub.stats.requests if "/tree/" in r.url]
    assert len(pages) > 1  # followed Link rel=next
    assert (
        faithful_hub.stats.bytes_served(protocol="hf", path="weights/big.bin")
        == FILES["weights/big.bin"]
    )
    redirects = {r.path for r in faithful_hub.stats.file_requests() if r.status == 302}
    assert redirects == ({"model.safetensors", "weights/big.bin"} if lfs_redirect else set())


def test_huggingface_hub_model_info_with_blobs_matches_the_tree(
    faithful_root: Path, faithful_hub: LocalHub
) -> None:
    """model-zoo lists a repository from ``model_info(files_metadata=True)`` alone: through the
    official client, its siblings describe every file exactly as the recursive tree does."""
    import hashlib

    from huggingface_hub import HfApi

    api = HfApi(endpoint=faithful_hub.url, token=False)
    info = api.model_info(REPO, files_metadata=True)
    tree = [e for e in api.list_repo_tree(REPO, revision=info.sha, recursive=True)]
    files = {e.path: e for e in tree if hasattr(e, "blob_id")}
    siblings = {s.rfilename: s for s in info.siblings or []}
    assert sorted(siblings) == sorted(files) and len(siblings) == len(FILES)
    for path, sib in siblings.items():
        entry = files[path]
        assert (sib.size, sib.blob_id) == (entry.size, entry.blob_id), path
        assert (sib.lfs is None) == (entry.lfs is None), path
        if sib.lfs is not None:
            digest = hashlib.sha256((faithful_root / REPO / path).read_bytes()).hexdigest()
            assert sib.lfs.sha256 == entry.lfs.sha256 == digest, path
    assert {p for p, s in siblings.items() if s.lfs} == {"model.safetensors", "weights/big.bin"}


def test_huggingface_hub_cache_layout_uses_commit_and_tags(
    faithful_root: Path, faithful_hub: LocalHub, tmp_path: Path
) -> None:
    from huggingface_hub import snapshot_download

    commit = faithful_hub.tag(REPO, "v1")
    old = (faithful_root / REPO / "config.json").read_bytes()
    write_repo(faithful_root, REPO, {"config.json": '{"changed": true}\n'})
    try:
        out = Path(
            snapshot_download(
                REPO, revision="v1", endpoint=faithful_hub.url, cache_dir=tmp_path / "cache"
            )
        )
        assert out.name == commit  # snapshots/<commit>, as from the real hub
        assert (out / "config.json").read_bytes() == old
        assert_same_tree(faithful_root / ".revisions" / REPO / "v1", out)
    finally:
        write_repo(faithful_root, REPO, {"config.json": old})


@pytest.mark.parametrize("lfs_redirect", [False, True], ids=["direct", "lfs-redirect"])
def test_modelscope_snapshot_download(
    faithful_root: Path, faithful_hub: LocalHub, tmp_path: Path, lfs_redirect: bool
) -> None:
    from modelscope_hub.compat.snapshot_download import snapshot_download

    faithful_hub.lfs_redirect = lfs_redirect
    out = snapshot_download(
        REPO,
        endpoint=faithful_hub.url,
        local_dir=str(tmp_path / "ms"),
        cache_dir=str(tmp_path / "c"),
    )
    assert_same_tree(faithful_root / REPO, Path(out))
    assert (
        faithful_hub.stats.bytes_served(protocol="modelscope", path="model.safetensors")
        == FILES["model.safetensors"]
    )


def test_modelscope_snapshot_download_at_tag(
    faithful_root: Path, faithful_hub: LocalHub, tmp_path: Path
) -> None:
    from modelscope_hub.compat.snapshot_download import snapshot_download

    faithful_hub.tag(REPO, "v2")
    tagged = faithful_root / ".revisions" / REPO / "v2"
    write_repo(faithful_root, REPO, {"a/sibling.json": "[1]\n"})
    try:
        out = snapshot_download(
            REPO,
            revision="v2",
            endpoint=faithful_hub.url,
            local_dir=str(tmp_path / "ms"),
            cache_dir=str(tmp_path / "c"),
        )
        assert_same_tree(tagged, Path(out))
    finally:
        write_repo(faithful_root, REPO, {"a/sibling.json": "[]\n"})


def test_clients_configured_by_environment_only(
    faithful_root: Path, faithful_hub: LocalHub, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **faithful_hub.env(),
        "HF_HOME": str(tmp_path / "hf-home"),
        "MODELSCOPE_CACHE": str(tmp_path / "ms-cache"),
    }
    script = (
        "import sys\n"
        "from huggingface_hub import snapshot_download as hf\n"
        "from modelscope import snapshot_download as ms\n"
        "print(hf(sys.argv[1], local_dir=sys.argv[2]))\n"
        "print(ms(sys.argv[1], local_dir=sys.argv[3]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, REPO, str(tmp_path / "hf"), str(tmp_path / "ms")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_tree(faithful_root / REPO, tmp_path / "hf")
    assert_same_tree(faithful_root / REPO, tmp_path / "ms")
    protocols = {r.protocol for r in faithful_hub.stats.file_requests()}
    assert protocols == {"hf", "modelscope"}


# ---------------------------------------------------------------- Modelers: openmind_hub 1.3.0

MODELERS_HOST = (
    "hub.modelers.cn"  # inside the client's whitelist; resolved to 127.0.0.1 by the harness
)


def repo_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def openmind(run_client: RunClient, hub: LocalHub, tls: HubTLS, out: Path, **args: object) -> dict:
    return run_client(
        "openmind",
        {
            "repo": REPO,
            "local_dir": str(out / "local"),
            "cache_dir": str(out / "cache"),
            "resolve": {MODELERS_HOST: "127.0.0.1"},
            **args,
        },
        env={
            "OPENMIND_HUB_ENDPOINT": f"https://{MODELERS_HOST}:{hub.port}",
            "REQUESTS_CA_BUNDLE": str(tls.ca),
        },
    )


def test_openmind_hub_lists_and_downloads_over_tls(
    faithful_root: Path, tmp_path: Path, run_client: RunClient, hub_tls: HubTLS
) -> None:
    """The client needs https (it refuses anything else at import), a whitelisted host, the
    model-info route, ``created`` on the last commit and ``branch_last_commit`` per file; it
    checks every file against its etag (sha256, or git blob sha1 for small files)."""
    with LocalHub(faithful_root, tls=hub_tls.context) as hub:
        result = openmind(run_client, hub, hub_tls, tmp_path)
        assert result["ok"], result.get("trace") or result
        assert result["listed"] == repo_files(faithful_root / REPO)
        assert_same_tree(faithful_root / REPO, Path(result["path"]))
        assert (
            hub.stats.bytes_served(protocol="modelers", path="weights/big.bin")
            == FILES["weights/big.bin"]
        )
        routes = {r.url.split("?")[0] for r in hub.stats.requests}
        assert f"/api/v1/model/{REPO}" in routes  # the client's repository check
        assert result["blocked"] == []


def test_openmind_hub_refuses_plain_http_which_is_why_the_hub_has_tls(
    faithful_root: Path, tmp_path: Path, run_client: RunClient
) -> None:
    with LocalHub(faithful_root) as hub:
        result = run_client(
            "openmind",
            {"repo": REPO, "local_dir": str(tmp_path / "l"), "cache_dir": str(tmp_path / "c")},
            env={"OPENMIND_HUB_ENDPOINT": hub.url},
        )
    assert not result["ok"]
    assert "Insecure scheme" in result["error"]


def test_openmind_hub_gated_repository_takes_its_bearer_token(
    faithful_root: Path, tmp_path: Path, run_client: RunClient, hub_tls: HubTLS
) -> None:
    with LocalHub(faithful_root, tls=hub_tls.context, tokens={REPO: "om-secret"}) as hub:
        refused = openmind(run_client, hub, hub_tls, tmp_path / "no-token")
        assert not refused["ok"]
        allowed = openmind(run_client, hub, hub_tls, tmp_path / "token", token="om-secret")
        assert allowed["ok"], allowed.get("trace") or allowed
        assert_same_tree(faithful_root / REPO, Path(allowed["path"]))


# ---------------------------------------------------------------- OpenXLab: openxlab 0.1.3


def nested_dirs(root: Path) -> list[str]:
    return sorted(
        {p.parent.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {"."}
    )


def test_openxlab_client_downloads_when_nested_folders_exist(
    faithful_root: Path, tmp_path: Path, run_client: RunClient
) -> None:
    """openxlab has no endpoint setting (the harness points its constants at the hub) and never
    creates sub-directories: with them made first, every file arrives byte-identical."""
    out = tmp_path / "xlab"
    with LocalHub(faithful_root) as hub:
        result = run_client(
            "openxlab",
            {
                "repo": REPO,
                "endpoint": hub.url,
                "local_dir": str(out),
                "precreate": nested_dirs(faithful_root / REPO),
            },
        )
        assert result["ok"], result.get("trace") or result
        assert result["listed"] == repo_files(faithful_root / REPO)
        assert result["model_names"] == []
        assert_same_tree(faithful_root / REPO, out)
        assert (
            hub.stats.bytes_served(protocol="openxlab", path="weights/big.bin")
            == FILES["weights/big.bin"]
        )


def test_openxlab_client_stops_at_the_first_nested_file_without_its_folder(
    faithful_root: Path, tmp_path: Path, run_client: RunClient
) -> None:
    """What docs/mirrors.md tells openxlab users: the client does not create folders."""
    with LocalHub(faithful_root) as hub:
        result = run_client(
            "openxlab", {"repo": REPO, "endpoint": hub.url, "local_dir": str(tmp_path / "x")}
        )
    assert not result["ok"]
    assert result["error"].startswith("FileNotFoundError")
