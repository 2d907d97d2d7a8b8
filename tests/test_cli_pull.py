"""The pull / verify / lock / cache commands through the real console script."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_pull import HF_REPO, MODEL, MS_REPO

SCRIPT = str(Path(sys.executable).parent / "model-zoo")


def run(
    *args: str, input: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
        env=dict(os.environ),
    )


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_dollar_pull_prints_only_the_path_on_stdout(pull_hub) -> None:
    script = (
        f'DIR=$("{SCRIPT}" pull {MODEL} --source hf) || exit 9; '
        'test -f "$DIR/config.json" && test -f "$DIR/model.safetensors.index.json" && echo "ok:$DIR"'
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
            env=dict(os.environ),
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    paths = {o[0].strip() for o in outs}
    assert len(paths) == 1
    path = Path(paths.pop())
    assert run("verify", str(path)).returncode == 0
    manifest = json.loads((path / ".model-zoo" / "manifest.json").read_text())
    size = sum(f["size"] for f in manifest["files"])
    # every byte crossed the wire once: the second process found the files complete
    assert hub.stats.bytes_served() == size


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

    before = hub.stats.bytes_served()
    hub.bandwidth.set(None, None)
    result = run("pull", MODEL, "--source", "hf", "--json")
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout.splitlines()[-1])
    total = sum(f["size"] for f in final["files"])
    second = hub.stats.bytes_served() - before
    assert final["resumed_bytes"] >= kept - 1  # what the sidecar recorded was kept...
    assert second <= total - final["resumed_bytes"] + 1  # ...and not fetched again
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
