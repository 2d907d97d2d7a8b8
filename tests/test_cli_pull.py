"""The pull / verify / lock / cache commands through the real console script."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_pull import HF_REPO, MODEL, MS_REPO

from model_zoo.download.pull import pull_model
from model_zoo.errors import LocalWriteError, UsageError
from model_zoo.store.atomic import write_json_atomic
from model_zoo.store.manifest import manifest_path
from model_zoo.store.verify import verify

SCRIPT = str(Path(sys.executable).parent / "model-zoo")


def run(
    *args: str, input: str | None = None, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
        env=dict(os.environ, **env),
    )


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_dollar_pull_prints_only_the_path_on_stdout(pull_hub) -> None:
    script = (
        f'DIR=$("{SCRIPT}" pull {MODEL} --source hf) || exit 9; '
        'test -f "$DIR/config.json" && test -f "$DIR/model.safetensors.index.json" && '
        'echo "ok:$DIR"'
    )
    proc = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=120, env=dict(os.environ)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok:") and proc.stdout.count("\n") == 1
    path = Path(proc.stdout.strip()[3:])
    assert path.is_relative_to(Path(os.environ["MODEL_ZOO_HOME"]))
    # progress and the verification summary went to stderr (plain lines: not a terminal)
    assert "files verified" in proc.stderr and "done" in proc.stderr


def test_quiet_and_json_modes(pull_hub) -> None:
    quiet = run("pull", MODEL, "--source", "hf", "-q")
    assert quiet.returncode == 0 and quiet.stderr == ""
    path = quiet.stdout.strip()
    out = run("pull", MODEL, "--source", "modelscope", "--json")
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "plan" and kinds[-1] == "result"
    result = events[-1]
    assert result["source"] == "modelscope" and result["repo_id"] == MS_REPO
    assert set(result["verification"].values()) == {"published-sha256"}
    assert Path(result["path"]).is_dir() and result["path"] != path


def test_dry_run_cli(pull_hub) -> None:
    proc = run("pull", MODEL, "--source", "hf", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "model-00001-of-00002.safetensors" in proc.stderr and "to download" in proc.stderr
    assert ": fits" in proc.stderr and "free" in proc.stderr
    assert not Path(proc.stdout.strip()).exists()
    assert pull_hub.stats.bytes_served() == 0


def test_exit_codes(pull_hub, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("pull", "no-such-model-xyz").returncode == 2
    assert run("pull", MODEL, "--source", "github").returncode == 2
    monkeypatch.setenv("MODEL_ZOO_OFFLINE", "1")
    proc = run("pull", MODEL)
    assert proc.returncode == 1 and "offline" in proc.stderr.lower()


def test_verify_cli_catches_a_flipped_byte(pull_hub) -> None:
    path = Path(run("pull", MODEL, "--source", "hf", "-q").stdout.strip())
    ok = run("verify", MODEL, "--json")
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["ok"] and report["against"] == "manifest" and report["bytes_hashed"] > 0
    shard = path / "model-00002-of-00002.safetensors"
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0x10
    shard.write_bytes(bytes(data))
    bad = run("verify", str(path))
    assert bad.returncode == 3
    assert "model-00002-of-00002.safetensors" in bad.stderr
    missing = run("verify", "internlm3-8b-instruct")
    assert missing.returncode == 1 and "pull it first" in missing.stderr.lower()


@pytest.mark.slow
def test_lock_then_pull_with_lock_is_byte_identical_and_rejects_changes(
    own_hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub, root = own_hub()
    lock = run("lock", MODEL, "--source", "hf", "-q")
    assert lock.returncode == 0, lock.stderr
    data = json.loads(lock.stdout)
    (entry,) = data["models"]
    assert entry["source"] == "hf" and entry["repo_id"] == HF_REPO and len(entry["commit"]) == 40
    files = {f["path"]: f for f in entry["files"]}
    assert all(len(f["sha256"]) == 64 for f in files.values())
    # small git files have no published hash on hf: lock hashed their bytes
    assert files["config.json"]["sha256"] == _sha(root / HF_REPO / "config.json")
    lock_path = tmp_path / "model-zoo.lock"
    lock_path.write_text(lock.stdout)

    monkeypatch.setenv("MODEL_ZOO_HOME", str(tmp_path / "team-store"))
    pulled = run("pull", "--lock", str(lock_path), "-q")
    assert pulled.returncode == 0, pulled.stderr
    path = Path(pulled.stdout.strip())
    assert {p: _sha(path / p) for p in files} == {p: f["sha256"] for p, f in files.items()}
    assert run("verify", str(path), "--lock", str(lock_path)).returncode == 0

    # the remote changes (its commit moves on and the old one is gone): refused, exit 3
    (root / HF_REPO / "config.json").write_text('{"changed": true}')
    monkeypatch.setenv("MODEL_ZOO_HOME", str(tmp_path / "other-store"))
    changed = run("pull", MODEL, "--lock", str(lock_path))
    assert changed.returncode == 3
    assert "lock file" in changed.stderr
    assert not any((tmp_path / "other-store").rglob("*.safetensors"))


def test_lock_rejects_changed_file_on_a_hub_without_commits(own_hub, tmp_path: Path) -> None:
    hub, root = own_hub()
    lock = run("lock", MODEL, "--source", "openxlab", "-q")
    assert lock.returncode == 0, lock.stderr
    assert json.loads(lock.stdout)["models"][0]["commit"] is None  # OpenXLab names no commits
    lock_path = tmp_path / "ox.lock"
    lock_path.write_text(lock.stdout)
    shard = root / "OpenLMLab/internlm2_5-1_8b-chat" / "model-00002-of-00002.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1
    shard.write_bytes(bytes(data))
    proc = run("pull", "--lock", str(lock_path))
    assert proc.returncode == 3 and "model-00002-of-00002.safetensors" in proc.stderr


def test_cache_commands(pull_hub, tmp_path: Path) -> None:
    path = Path(run("pull", MODEL, "--source", "hf", "-q").stdout.strip())
    listing = json.loads(run("cache", "list", "--json").stdout)
    (m,) = listing["models"]
    assert m["name"] == "InternLM2.5-1.8B-Chat" and m["path"] == str(path) and m["source"] == "hf"
    du = json.loads(run("cache", "du", "--json").stdout)
    assert du["models"]["internlm2.5-1.8b-chat"] >= m["size"] and du["total"] >= m["size"]
    assert "InternLM2.5-1.8B-Chat" in run("cache", "list").stdout

    outside = tmp_path / "keep-me"
    outside.mkdir()
    refused = run("cache", "rm", str(outside), "--yes")
    assert refused.returncode == 2 and outside.exists()
    declined = run("cache", "rm", MODEL, input="n\n")
    assert declined.returncode != 0 and path.exists()
    removed = run("cache", "rm", MODEL, "--yes")
    assert removed.returncode == 0, removed.stderr
    assert not path.exists() and json.loads(run("cache", "list", "--json").stdout)["models"] == []


def test_two_concurrent_pulls_end_with_one_copy(own_hub) -> None:
    # slow the hub so the two runs overlap for real
    hub, _root = own_hub(bandwidth=600_000)
    procs = [
        subprocess.Popen(
            [SCRIPT, "pull", MODEL, "--source", "hf", "-q"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, HF_TOKEN=f"hf_process_{i}"),  # tells their requests apart
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    paths = {o[0].strip() for o in outs}
    assert len(paths) == 1
    path = Path(paths.pop())
    assert run("verify", str(path)).returncode == 0
    manifest = json.loads((path / ".model-zoo" / "manifest.json").read_text())
    size = sum(f["size"] for f in manifest["files"])
    # every byte went to one process only: the other found the files complete. (Within one
    # process a request cut short in flight, on a link that looks capped, may cost the bytes
    # already on the wire, so the server's total is checked per process.)
    assert hub.stats.sent_to_two_clients() == []
    assert {r.authorization for r in hub.stats.file_requests()} <= {
        "Bearer hf_process_0",
        "Bearer hf_process_1",
    }
    assert hub.stats.bytes_served() >= size


def test_kill_9_mid_pull_then_resume_fetches_only_the_rest(own_hub) -> None:
    import signal
    import time

    hub, root = own_hub(bandwidth=2_000_000)
    # a file large enough to arrive in many reads (the engine reads 1 MiB at a time)
    (root / HF_REPO / "extra.dat").write_bytes(os.urandom(6 * 1024 * 1024))
    proc = subprocess.Popen(
        [SCRIPT, "pull", MODEL, "--source", "hf", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    home = Path(os.environ["MODEL_ZOO_HOME"])
    deadline = time.monotonic() + 30
    kept = 0
    while time.monotonic() < deadline and kept < 1_000_000:
        time.sleep(0.1)
        for sidecar in home.glob("models/*/*/.model-zoo-partial/*.part.json"):
            try:
                kept = max(kept, sum(e - s for s, e in json.loads(sidecar.read_text())["written"]))
            except (OSError, ValueError):
                pass
    assert kept >= 1_000_000, "the pull never checkpointed a partial"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    hub.bandwidth.set(None, None)
    result = run("pull", MODEL, "--source", "hf", "--json", HF_TOKEN="hf_resume")
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout.splitlines()[-1])
    total = sum(f["size"] for f in final["files"])
    # this run's bytes, told apart by its token: the killed run's last response may still be
    # winding down at the server
    second = hub.stats.bytes_sent_to("Bearer hf_resume")
    assert final["resumed_bytes"] >= kept - 1  # what the sidecar recorded was kept...
    assert second <= total - final["resumed_bytes"] + 1  # ...and not fetched again
    assert second >= final["downloaded_bytes"] > 0  # (and the token told this run's bytes)
    assert run("verify", final["path"]).returncode == 0


def test_connections_option_reaches_the_engine_and_bad_values_are_refused(
    pull_hub, tmp_path: Path
) -> None:
    done = run(
        "pull",
        MODEL,
        "--source",
        "hf",
        "--connections",
        "2",
        "--json",
        "--local-dir",
        str(tmp_path / "a"),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["link"]["peak_connections"] <= 2  # never more requests at once than asked
    old_name = run(
        "pull",
        MODEL,
        "--source",
        "hf",
        "--max-workers",
        "3",
        "-q",
        "--local-dir",
        str(tmp_path / "b"),
    )
    assert old_name.returncode == 0, old_name.stderr  # the old spelling still works
    bad = run("pull", MODEL, "--connections", "0")
    assert bad.returncode == 2 and "connections" in bad.stderr.lower()


def test_lock_output_is_written_only_on_success_and_an_empty_lock_names_the_cause(
    pull_hub, tmp_path: Path
) -> None:
    out = tmp_path / "team.lock"
    failed = run("lock", "no-such-model-xyz", "-o", str(out), "-q")
    assert failed.returncode != 0
    assert not out.exists()  # nothing half-written for a later pull --lock to trip over
    ok = run("lock", MODEL, "--source", "hf", "-o", str(out), "-q")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(out.read_text())["models"][0]["repo_id"] == HF_REPO

    empty = tmp_path / "redirected.lock"
    empty.write_text("")  # what `model-zoo lock BAD > redirected.lock` leaves behind
    pulled = run("pull", "--lock", str(empty))
    assert pulled.returncode == 2, pulled.stderr
    assert "is empty" in pulled.stderr and "-o redirected.lock" in pulled.stderr


# --------------------- files in the way, flags that contradict, and what verify and cache list say


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


def test_verify_text_output_reports_unlisted_files(pull_hub) -> None:
    path = pull_model(MODEL, source="hf").path
    (path / "notes from a colleague.txt").write_text("x")
    proc = run("verify", str(path))
    assert proc.returncode == 0, proc.stderr
    assert (
        "notes from a colleague.txt" in proc.stderr.replace("\n", "")
        and "does not list" in proc.stderr
    )


def test_cache_list_shows_a_snapshot_whose_manifest_is_damaged(pull_hub) -> None:
    from model_zoo.store.cache import incomplete_dirs

    path = pull_model(MODEL, source="hf").path
    manifest_path(path).write_text("{not json")
    home = Path(os.environ["MODEL_ZOO_HOME"])
    assert incomplete_dirs(home) == [path]  # was listed nowhere, yet held the whole checkpoint
    assert str(path) in run("cache", "list").stdout.replace("\n", "")
