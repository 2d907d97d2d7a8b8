"""Defects found by reviewing pull / lock / verify / cache as a user, each pinned by a test."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_engine import fast_options, jobs_for
from fixtures_pull import MODEL

from model_zoo.download.engine import fetch
from model_zoo.download.pull import pull_model
from model_zoo.errors import LocalWriteError, ModelNotPulledError, OfflineError, UsageError
from model_zoo.store.atomic import write_json_atomic
from model_zoo.store.cache import disk_usage, iter_snapshots, remove_from_store
from model_zoo.store.manifest import manifest_path
from model_zoo.store.verify import verify

SCRIPT = str(Path(sys.executable).parent / "model-zoo")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, *args], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )


# ------------------------------------------------------------- places that cannot be written


def test_local_dir_that_is_a_file_is_a_clear_error_not_a_traceback(
    pull_hub, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    with pytest.raises(LocalWriteError, match="is a file, not a directory"):
        pull_model(MODEL, source="hf", local_dir=blocker)
    assert blocker.read_text() == "keep me"
    proc = run("pull", MODEL, "--source", "hf", "--local-dir", str(blocker / "sub"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot write" in proc.stderr and proc.stdout == ""


def test_meta_dir_blocked_by_a_file_is_a_clear_error(pull_hub, tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    target.mkdir()
    (target / ".model-zoo").write_text("not a directory")
    with pytest.raises(LocalWriteError, match="cannot write"):
        pull_model(MODEL, source="hf", local_dir=target)


def test_engine_local_io_error_becomes_a_clear_error(
    engine_hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_disk(fd: int, data: object, offset: int) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "pwrite", broken_disk)
    with pytest.raises(LocalWriteError, match="Input/output error"):
        fetch(jobs_for(engine_hub), tmp_path / "out", options=fast_options())


def test_lock_output_that_cannot_be_written_is_a_clear_error(pull_hub, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    proc = run("lock", MODEL, "--source", "hf", "-q", "-o", str(blocker / "model-zoo.lock"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot write" in proc.stderr


def test_manifest_and_lock_file_are_readable_by_others_per_umask(pull_hub, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = pull_model(MODEL, source="hf").path
        assert stat.S_IMODE(manifest_path(path).stat().st_mode) == 0o644
        lock = tmp_path / "team.lock"
        assert run("lock", MODEL, "--source", "hf", "-q", "-o", str(lock)).returncode == 0
        assert stat.S_IMODE(lock.stat().st_mode) == 0o644
        os.umask(0o002)
        write_json_atomic(tmp_path / "shared.json", {"a": 1})
        assert stat.S_IMODE((tmp_path / "shared.json").stat().st_mode) == 0o664
    finally:
        os.umask(old)


# ------------------------------------------------------------- flags that contradict each other


def test_source_and_sources_together_are_refused(pull_hub) -> None:
    with pytest.raises(UsageError, match="conflict"):
        pull_model(MODEL, source="hf", sources="modelscope")
    proc = run("pull", MODEL, "--source", "hf", "--sources", "modelscope")
    assert proc.returncode == 2 and "conflict" in proc.stderr
    assert pull_hub.stats.bytes_served() == 0
    # naming the first of --sources again is no contradiction
    assert pull_model(MODEL, source="hf", sources="hf,modelscope").source == "hf"


def test_lock_pull_with_another_source_says_what_to_do(pull_hub, tmp_path: Path) -> None:
    lock = tmp_path / "hf.lock"
    assert run("lock", MODEL, "--source", "hf", "-q", "-o", str(lock)).returncode == 0
    with pytest.raises(UsageError, match="pins InternLM2.5-1.8B-Chat to hf") as info:
        pull_model(MODEL, lock=lock, source="modelscope")
    assert "--sources hf,modelscope" in info.value.message
    # the suggested fallback form works and checks every file against the lock
    result = pull_model(MODEL, lock=lock, sources="hf,modelscope")
    assert set(result.verified_counts()) == {"lock"}


# ------------------------------------------------------------- offline answers what was asked


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


# ------------------------------------------------------------- verify's targets


def test_verify_wrong_path_is_a_usage_error_not_damage(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    for target, words in (
        (tmp_path / "typo", "does not exist"),
        (tmp_path / "a-file", "is a file"),
    ):
        with pytest.raises(UsageError, match=words):
            verify(str(target))
        proc = run("verify", str(target))
        assert proc.returncode == 2 and "Pull the model again" not in proc.stderr, proc.stderr


def test_verify_an_empty_directory_fails(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    report = verify(tmp_path / "empty")
    assert not report.ok and "no files" in report.problems[0].detail
    assert run("verify", str(tmp_path / "empty")).returncode == 3


def test_verify_missing_revision_names_it(pull_hub) -> None:
    pull_model(MODEL, source="hf")
    with pytest.raises(ModelNotPulledError) as info:
        verify(f"{MODEL}@0123456789abcdef")
    assert "@0123456789abcdef" in info.value.message


def test_verify_ignores_the_partial_work_folder(pull_hub) -> None:
    path = pull_model(MODEL, source="hf").path
    work = path / ".model-zoo-partial"
    work.mkdir()
    (work / "extra.bin.part").write_bytes(b"\0" * 100)
    report = verify(path)
    assert (
        report.ok
        and report.unlisted == []
        and all(not f.path.startswith(".model-zoo") for f in report.files)
    )


# ------------------------------------------------------------- hard-linked snapshots


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


def test_verify_against_a_lock_without_the_model_says_so(pull_hub, tmp_path: Path) -> None:
    from model_zoo.store.lockfile import LockedFile, LockedModel, make_lock

    path = pull_model(MODEL, source="hf").path
    other = LockedModel(
        "InternLM2-7B-Reward",
        "hf",
        "internlm/internlm2-7b-reward",
        None,
        "0" * 40,
        (LockedFile("config.json", 10, "0" * 64),),
    )
    with pytest.raises(UsageError, match="no entry for InternLM2.5-1.8B-Chat"):
        verify(path, lock=make_lock([other]))
    # a directory without a manifest still takes a one-model lock as its reference
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "config.json").write_bytes((path / "config.json").read_bytes())
    report = verify(copy, lock=make_lock([other]))
    assert report.against == "lock file" and not report.ok


def test_cache_list_shows_a_snapshot_whose_manifest_is_damaged(pull_hub) -> None:
    from model_zoo.store.cache import incomplete_dirs

    path = pull_model(MODEL, source="hf").path
    manifest_path(path).write_text("{not json")
    home = Path(os.environ["MODEL_ZOO_HOME"])
    assert incomplete_dirs(home) == [path]  # was listed nowhere, yet held the whole checkpoint
    assert str(path) in run("cache", "list").stdout.replace("\n", "")


def test_lock_offline_says_why_in_plain_words(monkeypatch: pytest.MonkeyPatch) -> None:
    from model_zoo.download.make_lock import lock_models

    monkeypatch.setenv("MODEL_ZOO_OFFLINE", "1")
    with pytest.raises(OfflineError) as info:
        lock_models([MODEL])
    assert "offline mode is on" in info.value.message and ", and is not" not in info.value.message
    assert "make the lock file on a connected machine" in str(info.value)


def test_lock_pull_honours_include_and_exclude(pull_hub, tmp_path: Path) -> None:
    lock = tmp_path / "hf.lock"
    assert run("lock", MODEL, "--source", "hf", "-q", "-o", str(lock)).returncode == 0
    result = pull_model(
        MODEL,
        lock=lock,
        include=["*.json"],
        exclude=["tokenizer_config.json"],
        local_dir=tmp_path / "json-only",
    )
    got = sorted(r.path for r in result.manifest.files)
    assert got and all(p.endswith(".json") for p in got) and "tokenizer_config.json" not in got
    assert not list((tmp_path / "json-only").glob("*.safetensors"))
    assert set(result.verified_counts()) == {"lock"}


def test_verify_advice_for_a_flipped_byte_actually_repairs(pull_hub) -> None:
    from model_zoo.errors import HashMismatchError

    path = pull_model(MODEL, source="hf").path
    shard = path / "model-00002-of-00002.safetensors"
    st = shard.stat()
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x40
    shard.write_bytes(bytes(data))
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))  # bit rot: same size, same time
    assert pull_model(MODEL, source="hf").downloaded_bytes == 0  # a pull trusts it, by design
    with pytest.raises(HashMismatchError) as info:
        verify(path).raise_for_problems()
    assert "Delete the file and pull again" in info.value.message
    shard.unlink()  # what the message says to do
    assert pull_model(MODEL, source="hf").downloaded_bytes == st.st_size
    assert verify(path).ok


def test_offline_pull_into_a_dir_holding_another_model_is_refused(
    pull_hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "ckpt"
    pull_model("internlm2-1_8b-reward", source="hf", local_dir=target)
    monkeypatch.setenv("MODEL_ZOO_OFFLINE", "1")
    with pytest.raises(OfflineError, match="InternLM2.5-1.8B-Chat"):
        pull_model(MODEL, local_dir=target)
    assert pull_model("internlm2-1_8b-reward", local_dir=target).path == target


def test_lock_with_several_models_into_one_local_dir_is_refused(pull_hub, tmp_path: Path) -> None:
    lock = tmp_path / "two.lock"
    made = run("lock", MODEL, "internlm2-1_8b-reward", "--source", "hf", "-q", "-o", str(lock))
    assert made.returncode == 0, made.stderr
    target = tmp_path / "one-dir"
    proc = run("pull", "--lock", str(lock), "--local-dir", str(target))
    assert proc.returncode == 2 and "name the model" in proc.stderr
    assert not target.exists()
    one = run(
        "pull", "internlm2-1_8b-reward", "--lock", str(lock), "--local-dir", str(target), "-q"
    )
    assert one.returncode == 0 and Path(one.stdout.strip()) == target, one.stderr


# ------------------------------------------------------------- what a failed download says


def test_mismatch_on_every_source_says_what_to_do(engine_hub, tmp_path: Path) -> None:
    from model_zoo.errors import FetchFailedError, HashMismatchError

    jobs = jobs_for(
        engine_hub,
        protocols=("hf", "modelscope"),
        paths=["config.json"],
        sha_override={"config.json": "0" * 64},
    )
    with pytest.raises(FetchFailedError) as info:
        fetch(jobs, tmp_path / "out", options=fast_options(retries=0))
    assert isinstance(info.value.first, HashMismatchError) and info.value.exit_code == 3
    assert "--source" in info.value.message and "retry later" in info.value.message
    assert not (tmp_path / "out" / "config.json").exists()


def test_download_failed_names_each_source_once(engine_hub, tmp_path: Path) -> None:
    from model_zoo.errors import DownloadFailedError, FetchFailedError
    from model_zoo.testing.faults import Fault

    engine_hub.faults.add(Fault.status(503, times=None, path="config.json"))
    with pytest.raises(FetchFailedError) as info:
        fetch(
            jobs_for(engine_hub, paths=["config.json"]),
            tmp_path / "out",
            options=fast_options(retries=0),
        )
    assert isinstance(info.value.first, DownloadFailedError)
    message = info.value.message
    assert "hf: hf:" not in message and ".." not in message, message
    assert message.count("hf:") == 1 and "HTTP 503" in message


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


def test_verify_text_output_reports_unlisted_files(pull_hub) -> None:
    path = pull_model(MODEL, source="hf").path
    (path / "notes from a colleague.txt").write_text("x")
    proc = run("verify", str(path))
    assert proc.returncode == 0, proc.stderr
    assert (
        "notes from a colleague.txt" in proc.stderr.replace("\n", "")
        and "does not list" in proc.stderr
    )


def test_verify_reports_a_damaged_config_json(pull_hub, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(pull_model(MODEL, source="hf").path, copy)
    shutil.rmtree(copy / ".model-zoo")  # a copied-in directory: structure checks only
    (copy / "config.json").write_text('{"architectures": ["InternLM2ForCausalLM"], ')  # cut short
    report = verify(copy)
    assert [(p.path, p.kind) for p in report.problems] == [("config.json", "config")]
    (copy / "config.json").write_text("[]")
    assert [p.path for p in verify(copy).problems] == ["config.json"]


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


def test_verify_size_mismatch_message_reads_right_and_pull_repairs(pull_hub) -> None:
    from model_zoo.errors import SizeMismatchError

    path = pull_model(MODEL, source="hf").path
    for name in ("config.json", "tokenizer_config.json"):
        with open(path / name, "ab") as fh:
            fh.write(b" ")
    with pytest.raises(SizeMismatchError) as info:
        verify(path).raise_for_problems()
    message = info.value.message
    assert "more problem(s); see `model-zoo verify --json`). Pull again to repair." in message, (
        message
    )
    assert pull_model(MODEL, source="hf").downloaded_bytes > 0 and verify(path).ok
