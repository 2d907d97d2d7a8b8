"""pull() end to end against the local hub: every protocol, fallback, bad listings, offline."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from fixtures_pull import HF_REPO, MODEL, MS_REPO, probes

from model_zoo.download.pull import pull, pull_model
from model_zoo.errors import (
    IntegrityError,
    LocalWriteError,
    ModelZooError,
    OfflineError,
    UnsafePathError,
    UsageError,
)
from model_zoo.store.cache import disk_usage, iter_snapshots, remove_from_store
from model_zoo.store.layout import manifest_path
from model_zoo.store.verify import verify
from model_zoo.testing.faults import Fault


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): _sha(p)
        for p in root.rglob("*")
        if p.is_file() and not p.relative_to(root).parts[0].startswith(".model-zoo")
    }


@pytest.mark.parametrize(
    ("source", "name", "repo"),
    [
        ("hf", MODEL, HF_REPO),
        ("modelscope", MODEL, MS_REPO),
        ("modelers", "internlm3-8b-instruct", "Intern/internlm3-8b-instruct"),
        ("openxlab", MODEL, "OpenLMLab/internlm2_5-1_8b-chat"),
    ],
)
def test_pull_through_each_protocol(
    pull_hub, tiny_hub_tree, source: str, name: str, repo: str
) -> None:
    result = pull_model(name, source=source)
    path = result.path
    assert path.is_dir() and result.source == source and result.repo_id == repo
    assert _tree(path) == _tree(tiny_hub_tree.repos[repo])  # every file, byte-identical
    data = json.loads(manifest_path(path).read_text())
    assert data["source"] == source and data["repo_id"] == repo and data["revision"] is None
    assert {f["path"] for f in data["files"]} == set(_tree(path))
    assert all(f["sha256"] == _sha(path / f["path"]) for f in data["files"])
    shards = [f for f in data["files"] if f["path"].endswith(".safetensors")]
    if source in ("hf", "modelscope", "modelers"):
        # these hubs publish sha256 for LFS files at least
        assert shards and all(f["verified"] == "published-sha256" for f in shards)
    assert verify(path).ok
    assert pull_hub.stats.bytes_served(protocol=source) > 0


def test_second_pull_moves_no_bytes(pull_hub) -> None:
    first = pull(MODEL, source="hf")
    served = pull_hub.stats.bytes_served()
    again = pull_model(MODEL, source="hf")
    assert again.path == first
    assert pull_hub.stats.bytes_served() == served  # listing only, no file bytes
    assert again.downloaded_bytes == 0 and all(f.present for f in again.files)


@pytest.mark.parametrize("source", ["hf", "modelers", "modelscope"])
def test_a_pull_of_what_is_already_there_asks_the_hub_one_small_question(
    pull_hub, source: str
) -> None:
    name = "internlm3-8b-instruct" if source == "modelers" else MODEL
    first = pull_model(name, source=source)
    pull_hub.stats.reset()
    again = pull_model(name, source=source)
    assert again.path == first.path and again.commit == first.commit
    assert (
        again.plan == []
        and again.plan_text.startswith("up to date:")
        and first.commit[:12] in again.plan_text
    )
    (asked,) = pull_hub.stats.requests  # the revision's commit, nothing listed, no file touched
    assert asked.protocol == source and asked.kind == "api"
    assert again.downloaded_bytes == 0 and all(f.present for f in again.files)


def test_a_no_op_pull_from_the_cli_loads_no_download_engine(pull_hub) -> None:
    """Start-up is most of a no-op pull: the engine and its value types stay unimported."""
    import subprocess
    import sys

    first = pull_model(MODEL, source="hf")
    pull_hub.stats.reset()
    script = (
        "import json, sys\n"
        "from model_zoo.cli.main import main\n"
        f"rc = main(['pull', {MODEL!r}, '-q', '--source', 'hf'])\n"
        "print(json.dumps([rc, sorted(m for m in sys.modules if m.startswith('model_zoo.'))]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    rc, loaded = json.loads(lines[-1])
    assert rc == 0 and lines[0] == str(first.path)
    assert "model_zoo.download.pull" in loaded and "model_zoo.download.http_fetch" in loaded
    for engine in ("fetching", "types", "engine", "scheduler", "transfer", "progress"):
        assert f"model_zoo.download.{engine}" not in loaded, engine
    (asked,) = pull_hub.stats.requests
    assert asked.kind == "api"


def test_a_branch_that_moved_since_is_pulled_again(own_hub) -> None:
    from model_zoo.testing.hub_repos import write_repo

    hub, root = own_hub()
    first = pull_model(MODEL, source="hf")
    write_repo(root, HF_REPO, {"config.json": '{"moved": true}\n'})
    again = pull_model(MODEL, source="hf")
    assert (
        again.commit != first.commit and again.plan
    )  # listed and fetched, not answered from the store
    assert (again.path / "config.json").read_text() == '{"moved": true}\n'


def test_a_hub_without_revisions_lists_as_usual(pull_hub) -> None:
    pull_model(MODEL, source="openxlab")
    pull_hub.stats.reset()
    again = pull_model(MODEL, source="openxlab")
    assert again.plan and again.downloaded_bytes == 0  # OpenXLab cannot say its commit: a listing
    assert any(r.url.endswith("getFileDownloadUrl") for r in pull_hub.stats.requests)


def test_auto_cross_checks_unhashed_hf_files_with_modelscope(pull_hub) -> None:
    result = pull_model(MODEL, probes=probes("hf", "modelscope", "openxlab"))
    assert result.source == "hf" and "hf" in result.plan_text
    how = {r.path: r.verified for r in result.manifest.files}
    # small git files: hf publishes no sha256, ModelScope does
    assert how["config.json"] == "cross-source-sha256"
    assert how["model-00001-of-00002.safetensors"] == "published-sha256"
    assert "size-only" not in how.values()


def test_flipped_byte_on_one_mirror_falls_back_per_file(pull_hub, tiny_hub_tree) -> None:
    rule = pull_hub.faults.add(
        Fault.flip_byte(offset=1000, protocol="hf", path="*.safetensors", times=None)
    )
    result = pull_model(MODEL, probes=probes("hf", "modelscope"))
    assert rule.hits >= 2  # hf really served damaged bytes for both shards
    assert _tree(result.path) == _tree(tiny_hub_tree.repos[HF_REPO])
    by = {r.path: r for r in result.manifest.files}
    for shard in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        assert by[shard].sources == ("modelscope",)
    assert by["config.json"].sources == ("hf",)
    assert pull_hub.stats.bytes_served(protocol="modelscope") > 0
    assert verify(result.path).ok


def test_wrong_sha256_in_primary_listing_is_recovered_from_the_other_source(
    pull_hub, tiny_hub_tree
) -> None:
    pull_hub.faults.add(Fault.wrong_sha256(protocol="hf", path="model-00001-of-00002.safetensors"))
    result = pull_model(MODEL, probes=probes("hf", "modelscope"))
    assert _tree(result.path) == _tree(tiny_hub_tree.repos[HF_REPO])
    assert any("hf's listing is wrong" in n for n in result.notes)
    rec = result.manifest.by_path()["model-00001-of-00002.safetensors"]
    assert rec.verified == "published-sha256"


def test_wrong_sha256_in_secondary_listing_is_reported_and_not_used(pull_hub) -> None:
    pull_hub.faults.add(
        Fault.wrong_sha256(protocol="modelscope", path="model-00002-of-00002.safetensors")
    )
    result = pull_model(MODEL, probes=probes("hf", "modelscope"))
    assert any("modelscope lists sha256" in n for n in result.notes)
    assert verify(result.path).ok


def test_wrong_sha256_with_a_single_source_fails_and_leaves_no_file(pull_hub) -> None:
    pull_hub.faults.add(Fault.wrong_sha256(protocol="hf", path="model-00001-of-00002.safetensors"))
    with pytest.raises(ModelZooError) as info:
        pull_model(MODEL, source="hf")
    assert "model-00001-of-00002.safetensors" in str(info.value)
    target = next(Path(os.environ["MODEL_ZOO_HOME"]).glob("models/*/*"))
    assert not (target / "model-00001-of-00002.safetensors").exists()
    assert not manifest_path(target).exists()  # never presented as complete


def test_path_traversal_listing_writes_nothing(pull_hub, tmp_path: Path) -> None:
    pull_hub.faults.add(Fault.malicious_listing(protocol="hf"))
    home = Path(os.environ["MODEL_ZOO_HOME"])
    with pytest.raises(UnsafePathError) as info:
        pull_model(MODEL, source="hf", local_dir=tmp_path / "out" / "deep")
    assert info.value.exit_code == 3
    assert not (tmp_path / "out").exists()
    assert not home.exists() or not any(home.rglob("*.safetensors"))
    for name in ("x", "outside", "passwd", "link-out", "link-up"):
        assert not (tmp_path / name).exists()


def test_offline_uses_the_store_only(pull_hub, monkeypatch: pytest.MonkeyPatch) -> None:
    path = pull(MODEL, source="hf")
    requests = len(pull_hub.stats.requests)
    monkeypatch.setenv("MODEL_ZOO_OFFLINE", "1")
    result = pull_model(MODEL)
    assert result.path == path and result.offline
    assert len(pull_hub.stats.requests) == requests  # not a single request
    monkeypatch.delenv("MODEL_ZOO_OFFLINE")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert pull(MODEL) == path
    with pytest.raises(OfflineError, match="InternLM3-8B-Instruct"):
        pull("internlm3-8b-instruct")
    # a file deleted from the store copy: offline cannot repair it, and says so
    (path / "config.json").unlink()
    with pytest.raises(OfflineError):
        pull(MODEL)


def test_dry_run_writes_nothing(pull_hub) -> None:
    result = pull_model(MODEL, source="hf", dry_run=True)
    assert result.dry_run and not result.path.exists()
    assert result.total_size == sum(f.size for f in result.files) > 0
    assert result.to_download == result.total_size and result.fits is True
    assert result.free_bytes and result.free_bytes > 0
    assert {f.path for f in result.files} >= {"config.json", "model-00001-of-00002.safetensors"}
    assert pull_hub.stats.bytes_served() == 0
    pull(MODEL, source="hf")
    again = pull_model(MODEL, source="hf", dry_run=True)
    assert again.to_download == 0 and all(f.present for f in again.files)


def test_include_exclude_and_redundant_formats(own_hub) -> None:
    hub, root = own_hub()
    (root / HF_REPO / "pytorch_model.bin").write_bytes(b"\0" * 3000)
    (root / HF_REPO / "pytorch_model.bin.index.json").write_text("{}")
    result = pull_model(MODEL, source="hf")
    names = {f.path for f in result.files}
    assert "pytorch_model.bin" not in names and "pytorch_model.bin.index.json" not in names
    assert dict(result.skipped)["pytorch_model.bin"].startswith("redundant weight format")
    assert "pytorch_model.bin" in result.manifest.skipped
    assert not (result.path / "pytorch_model.bin").exists()

    only_json = pull_model(
        MODEL, source="hf", include=["*.json"], local_dir=root.parent / "json-only"
    )
    assert {f.path for f in only_json.files} == {p for p in names if p.endswith(".json")}
    assert not any(only_json.path.glob("*.safetensors"))

    everything = pull_model(MODEL, source="hf", all_files=True, exclude=["README.md"])
    assert (everything.path / "pytorch_model.bin").stat().st_size == 3000
    assert "README.md" not in {f.path for f in everything.files}
    assert everything.path == result.path  # same snapshot, completed in place
    # files an earlier pull verified stay listed; the .bin is now listed too
    listed = everything.manifest.by_path()
    assert (
        "README.md" in listed and "pytorch_model.bin" in listed and not everything.manifest.skipped
    )


def test_local_dir_layout(pull_hub, tmp_path: Path, tiny_hub_tree) -> None:
    out = pull(MODEL, source="modelscope", local_dir=tmp_path / "ckpt")
    assert out == tmp_path / "ckpt"
    assert (out / ".model-zoo" / "manifest.json").is_file()
    assert _tree(out) == _tree(tiny_hub_tree.repos[MS_REPO])
    assert not (out / ".model-zoo-partial").exists()
    assert verify(out).ok
    assert not Path(os.environ["MODEL_ZOO_HOME"], "models").exists()


def test_pinned_commit_already_complete_needs_no_hub(pull_hub) -> None:
    result = pull_model(MODEL, source="hf")
    commit = result.commit
    assert commit and len(commit) == 40
    n = len(pull_hub.stats.requests)
    again = pull_model(f"{MODEL}@{commit}", source="hf")
    assert again.path == result.path and len(pull_hub.stats.requests) == n


def test_store_reuses_identical_files_across_sources(pull_hub) -> None:
    pull(MODEL, source="hf")
    served = pull_hub.stats.bytes_served()
    result = pull_model(MODEL, source="modelscope")
    assert result.reused_files >= 3  # shards and tokenizer came from the hf snapshot
    shard_bytes = pull_hub.stats.bytes_served(
        protocol="modelscope", path="model-00001-of-00002.safetensors"
    )
    assert shard_bytes == 0 and pull_hub.stats.bytes_served() - served < 50_000
    assert verify(result.path).ok


def test_local_dir_copies_from_the_store_never_links(pull_hub, tmp_path: Path) -> None:
    stored = pull(MODEL, source="hf")
    result = pull_model(MODEL, source="modelscope", local_dir=tmp_path / "mine")
    assert result.reused_files >= 3
    for name in ("model-00001-of-00002.safetensors", "tokenizer.model"):
        a, b = (stored / name).stat(), (result.path / name).stat()
        assert not os.path.samestat(a, b)  # editing the local copy cannot touch the store
    assert verify(stored).ok and verify(result.path).ok


def test_hf_small_files_are_checked_by_git_blob_id(pull_hub) -> None:
    result = pull_model(MODEL, source="hf")
    how = {r.path: r.verified for r in result.manifest.files}
    assert how["config.json"] == "git-blob-sha1" and how["README.md"] == "git-blob-sha1"
    assert how["tokenizer.model"] == "published-sha256"
    assert "size-only" not in how.values()


def test_modelers_small_files_are_checked_by_their_git_blob_id(pull_hub) -> None:
    result = pull_model("internlm3-8b-instruct", source="modelers")
    how = {r.path: r.verified for r in result.manifest.files}
    assert how["config.json"] == "git-blob-sha1" and how["README.md"] == "git-blob-sha1"
    assert "size-only" not in how.values() and "published-sha256" in how.values()


def test_damaged_small_modelers_file_is_caught_by_its_git_blob_id(pull_hub) -> None:
    pull_hub.faults.add(
        Fault.flip_byte(offset=3, protocol="modelers", path="config.json", times=None)
    )
    with pytest.raises(IntegrityError, match="config.json: its git blob id .* but modelers lists"):
        pull_model("internlm3-8b-instruct", source="modelers")


def test_a_small_file_another_hub_disagrees_about_is_not_kept(pull_hub, monkeypatch) -> None:
    # hf's git blob id checks what openxlab served; they differ: the message names both hubs
    pull_hub.faults.add(
        Fault.flip_byte(offset=1, protocol="openxlab", path="config.json", times=None)
    )
    monkeypatch.setenv("MODEL_ZOO_SOURCES", "openxlab,hf")
    with pytest.raises(
        IntegrityError, match="but hf lists .*openxlab served the bytes: the hubs disagree"
    ):
        pull_model(MODEL, probes=probes("openxlab", "hf"))


def test_damaged_small_hf_file_is_caught_by_its_git_blob_id(pull_hub) -> None:
    rule = pull_hub.faults.add(
        Fault.flip_byte(offset=3, protocol="hf", path="config.json", times=None)
    )
    with pytest.raises(IntegrityError, match="config.json: its git blob id"):
        pull_model(MODEL, source="hf")
    assert rule.hits >= 1
    target = next(Path(os.environ["MODEL_ZOO_HOME"]).glob("models/*/*"))
    assert not (target / "config.json").exists() and not manifest_path(target).exists()


def test_openxlab_small_files_are_checked_by_another_hubs_git_blob_id(
    pull_hub, monkeypatch
) -> None:
    # OpenXLab publishes no digest; hf lists sha256 for LFS files and git blob ids for the rest
    monkeypatch.setenv("MODEL_ZOO_SOURCES", "openxlab,hf")
    result = pull_model(MODEL, probes=probes("openxlab", "hf"))
    by = result.manifest.by_path()
    assert by["model-00001-of-00002.safetensors"].verified == "cross-source-sha256"
    assert by["config.json"].verified == "git-blob-sha1" and by["config.json"].sources == (
        "openxlab",
    )
    assert (
        pull_hub.stats.bytes_served(protocol="hf", path="config.json") == 0
    )  # no second copy needed
    assert "size-only" not in {r.verified for r in result.manifest.files}


def test_unhashed_files_are_cross_checked_against_a_second_source(pull_hub, monkeypatch) -> None:
    # OpenXLab publishes no sha256 here; hf has sha256 for LFS files, and (as a mirror that
    # lists no git blob ids would) none for small files
    import model_zoo.hubs.huggingface as hf_adapter

    monkeypatch.setattr(hf_adapter, "git_blob_or_none", lambda value: None)
    monkeypatch.setenv("MODEL_ZOO_SOURCES", "openxlab,hf")
    result = pull_model(MODEL, probes=probes("openxlab", "hf"))
    assert result.source == "openxlab"
    by = result.manifest.by_path()
    assert by["model-00001-of-00002.safetensors"].verified == "cross-source-sha256"
    assert by["config.json"].verified == "cross-source-bytes"
    assert by["config.json"].sources == ("openxlab", "hf")
    assert pull_hub.stats.bytes_served(protocol="hf", path="config.json") > 0
    assert not (result.path / ".model-zoo" / "cross-check").exists()


def test_second_source_serving_other_bytes_fails_the_pull(pull_hub, monkeypatch) -> None:
    import model_zoo.hubs.huggingface as hf_adapter

    monkeypatch.setattr(
        hf_adapter, "git_blob_or_none", lambda value: None
    )  # no git blob ids: compare bytes
    monkeypatch.setenv("MODEL_ZOO_SOURCES", "openxlab,hf")
    pull_hub.faults.add(
        Fault.flip_byte(offset=2, protocol="hf", path="generation_config.json", times=None)
    )
    with pytest.raises(
        IntegrityError, match="generation_config.json: openxlab and hf serve different bytes"
    ):
        pull_model(MODEL, probes=probes("openxlab", "hf"))
    target = next(Path(os.environ["MODEL_ZOO_HOME"]).glob("models/*/*"))
    assert not (target / "generation_config.json").exists() and not manifest_path(target).exists()


def test_out_of_space_is_refused_before_any_byte(pull_hub, monkeypatch: pytest.MonkeyPatch) -> None:
    import model_zoo.download.local as local_mod
    from model_zoo.errors import DiskSpaceError

    monkeypatch.setattr(local_mod, "free_space", lambda _target: 1000)
    dry = pull_model(MODEL, source="hf", dry_run=True)
    assert dry.fits is False
    with pytest.raises(DiskSpaceError) as info:
        pull_model(MODEL, source="hf")
    assert info.value.needed == dry.to_download and info.value.free == 1000
    assert pull_hub.stats.bytes_served() == 0


def test_several_sources_at_once(pull_hub, tiny_hub_tree) -> None:
    result = pull_model(MODEL, sources="hf,modelscope")
    assert [p.source for p in result.plan] == ["hf", "modelscope"]
    assert _tree(result.path) == _tree(tiny_hub_tree.repos[HF_REPO])
    assert verify(result.path).ok


@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(503, times=2, path="model-00001-of-00002.safetensors"),
        Fault.status(429, times=1, retry_after=0.2, path="config.json"),
        Fault.reset(after=5000, path="model-00002-of-00002.safetensors"),
        Fault.short_body(after=7000, path="model-00001-of-00002.safetensors"),
    ],
    ids=["503x2", "429", "reset", "short-body"],
)
def test_transient_faults_are_recovered_by_retry(pull_hub, tiny_hub_tree, fault: Fault) -> None:
    pull_hub.faults.add(fault)
    result = pull_model(MODEL, source="hf")
    assert _tree(result.path) == _tree(tiny_hub_tree.repos[HF_REPO])
    assert verify(result.path).ok
    assert fault.hits >= 1  # the fault really hit a request


@pytest.mark.parametrize("same_size", [False, True])
def test_local_dir_pull_says_which_edited_files_it_replaced(
    pull_hub, tmp_path: Path, same_size: bool
) -> None:
    out = tmp_path / "ckpt"
    pull(MODEL, source="hf", local_dir=out)
    original = (out / "config.json").read_bytes()
    edited = original.replace(b"{", b" ", 1) if same_size else b'{"edited": "by hand"}'
    assert edited != original and (len(edited) == len(original)) == same_size
    (out / "config.json").write_bytes(edited)
    again = pull_model(MODEL, source="hf", local_dir=out)
    assert (out / "config.json").read_bytes() == original
    assert again.replaced == ["config.json"]
    assert any("replaced 1 file(s)" in n and "config.json" in n for n in again.notes)
    third = pull_model(MODEL, source="hf", local_dir=out)  # nothing differs now: nothing to say
    assert third.replaced == [] and not any("replaced" in n for n in third.notes)


def test_a_pull_says_what_it_found_out_about_the_link(own_hub) -> None:
    hub, _root = own_hub(latency=0.03, conn_bandwidth=5e6)
    events: list = []
    result = pull_model(MODEL, source="hf", progress=events.append)
    said = [e for e in events if getattr(e, "kind", None) == "link"]
    assert len(said) == 1 and said[0].message.startswith("link: ")
    assert "ms to the first byte" in said[0].message and "/s each" in said[0].message
    assert (
        result.link is not None
        and result.link.round_trip is not None
        and result.link.round_trip >= 0.03
    )
    assert result.to_dict()["link"]["peak_connections"] == result.link.peak_connections >= 1


# ------------------------------------ offline answers, revisions, interrupted pulls, and the cache


def test_meta_dir_blocked_by_a_file_is_a_clear_error(pull_hub, tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / ".model-zoo").write_text("not a directory")
    with pytest.raises(LocalWriteError, match="cannot write"):
        pull_model(MODEL, source="hf", local_dir=target)


def test_offline_pull_honours_source_and_never_hands_out_origin_format(
    pull_hub, monkeypatch
) -> None:
    hf = pull_model(MODEL, source="hf").path
    origin = pull_model(MODEL, source="openxlab-origin").path  # newest: InternEvo format
    assert (origin / "model_tp0_pp0.pt").is_file()
    monkeypatch.setenv("MODEL_ZOO_OFFLINE", "1")
    assert pull_model(MODEL).path == hf  # auto never picks openxlab-origin
    assert pull_model(MODEL, source="hf").path == hf
    assert pull_model(MODEL, source="openxlab-origin").path == origin
    with pytest.raises(OfflineError, match="from modelscope"):
        pull_model(MODEL, source="modelscope")
    # verify by name checks the HF-format copy, which is what loading by name uses
    assert verify(MODEL).root == hf


def test_offline_dry_run_reports_free_space(pull_hub, monkeypatch) -> None:
    pull_model(MODEL, source="hf")
    monkeypatch.setenv("MODEL_ZOO_OFFLINE", "1")
    result = pull_model(MODEL, dry_run=True)
    assert result.dry_run and result.free_bytes and result.free_bytes > 0 and result.fits is True


def test_offline_pull_into_a_dir_holding_another_model_is_refused(
    pull_hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "ckpt"
    pull_model("internlm2-1_8b-reward", source="hf", local_dir=target)
    monkeypatch.setenv("MODEL_ZOO_OFFLINE", "1")
    with pytest.raises(OfflineError, match="InternLM2.5-1.8B-Chat"):
        pull_model(MODEL, local_dir=target)
    assert pull_model("internlm2-1_8b-reward", local_dir=target).path == target


def test_lock_offline_says_why_in_plain_words(monkeypatch: pytest.MonkeyPatch) -> None:
    from model_zoo.download.make_lock import lock_models

    monkeypatch.setenv("MODEL_ZOO_OFFLINE", "1")
    with pytest.raises(OfflineError) as info:
        lock_models([MODEL])
    assert "offline mode is on" in info.value.message and ", and is not" not in info.value.message
    assert "make the lock file on a connected machine" in str(info.value)


def test_name_at_revision_and_a_different_revision_flag_are_refused(pull_hub) -> None:
    with pytest.raises(UsageError, match="contradicts"):
        pull_model(f"{MODEL}@5febe2b0707f", source="hf", revision="main")
    from model_zoo.download.make_lock import lock_models

    with pytest.raises(UsageError, match="contradicts"):
        lock_models([f"{MODEL}@5febe2b0707f"], source="hf", revision="main")
    assert pull_hub.stats.bytes_served() == 0


def test_per_file_events_use_the_manifests_words(pull_hub) -> None:
    from model_zoo.download.progress import FileDone

    events: list[object] = []
    result = pull_model(MODEL, source="hf", progress=events.append)
    done = {e.path: e.verification for e in events if isinstance(e, FileDone)}
    final = {r.path: r.verified for r in result.manifest.files}
    assert done and set(done) == set(final)
    for path, label in done.items():
        assert label.split(",")[0] == final[path], (path, label, final[path])
    assert "published-sha256" in done.values() and "git-blob-sha1, checked next" in done.values()


def test_dry_run_counts_what_an_interrupted_pull_kept(own_hub, tmp_path: Path) -> None:
    from model_zoo.errors import DownloadFailedError
    from model_zoo.testing.faults import Fault

    hub, _root = own_hub()
    shard = "model-00001-of-00002.safetensors"
    hub.faults.add(Fault.short_body(50_000, times=1, path=shard))  # the connection drops mid-file,
    hub.faults.add(Fault.status(404, times=None, skip=1, path=shard))  # then the hub fails at once
    target = tmp_path / "ckpt"
    with pytest.raises(DownloadFailedError):
        pull_model(MODEL, source="hf", local_dir=target)
    hub.faults.clear()
    plan = pull_model(MODEL, source="hf", local_dir=target, dry_run=True)
    (entry,) = [f for f in plan.files if f.path == shard]
    assert not entry.present and entry.resumable >= 50_000
    assert plan.to_download == entry.size - entry.resumable
    served = hub.stats.bytes_served()
    done = pull_model(MODEL, source="hf", local_dir=target)
    assert hub.stats.bytes_served() - served == plan.to_download == done.downloaded_bytes


def test_resume_on_a_nearly_full_disk_is_not_refused(
    own_hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    from collections import namedtuple

    from model_zoo.errors import DownloadFailedError
    from model_zoo.testing.faults import Fault

    hub, _root = own_hub()
    small = "generation_config.json"
    hub.faults.add(Fault.status(404, times=None, path=small))  # everything else completes
    target = tmp_path / "ckpt"
    with pytest.raises(DownloadFailedError):
        pull_model(MODEL, source="hf", local_dir=target)
    hub.faults.clear()
    # the disk now has room for the missing file, not for the whole checkpoint again
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10**9, 10**9 - 50_000, 50_000))
    done = pull_model(MODEL, source="hf", local_dir=target)
    assert done.downloaded_bytes < 50_000 and verify(target).ok


def test_cache_du_and_rm_count_hard_linked_files_once(pull_hub) -> None:
    hf = pull_model(MODEL, source="hf").path
    ms = pull_model(MODEL, source="modelscope").path  # same bytes: linked from the hf snapshot
    shard = "model-00001-of-00002.safetensors"
    assert (hf / shard).stat().st_ino == (ms / shard).stat().st_ino
    one = disk_usage(hf)
    both = disk_usage(hf.parent)
    assert both < 1.5 * one  # shared files are counted once
    home = Path(os.environ["MODEL_ZOO_HOME"])
    freed = remove_from_store(home, ms)
    assert freed < 0.5 * one  # only the manifest and other unshared bytes went away
    assert [s.root for s in iter_snapshots(home)] == [hf] and (hf / shard).is_file()


def test_cache_rm_cut_short_leaves_nothing_that_claims_to_be_complete(
    pull_hub, monkeypatch
) -> None:
    import shutil

    path = pull_model(MODEL, source="hf").path
    home = Path(os.environ["MODEL_ZOO_HOME"])

    def interrupted(target: object, *args: object, **kwargs: object) -> None:
        (path / "model-00001-of-00002.safetensors").unlink()  # some files went, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "rmtree", interrupted)
    with pytest.raises(KeyboardInterrupt):
        remove_from_store(home, path.parent)
    assert iter_snapshots(home) == []  # not listed as a complete checkpoint with a shard missing
