"""Fixtures for the download engine's tests: a LocalHub over a repository with files of
several sizes, jobs built from what the hub serves, and options that keep tests fast.

    def test_x(engine_hub, tmp_path):
        jobs = jobs_for(engine_hub)                       # every file, from the hf protocol
        report = fetch(jobs, tmp_path / "out", options=fast_options())

``fast_options`` makes files >= 256 KiB split into ranges of >= 64 KiB, read in 16 KiB
chunks, with millisecond backoff, so every code path runs on small files.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from model_zoo.download.engine import EngineOptions, FileJob
from model_zoo.hubs.base import RemoteFile
from model_zoo.testing.hub_repos import write_repo
from model_zoo.testing.local_hub import LocalHub

ENGINE_REPO = "internlm/engine-test"
ENGINE_FILES: dict[str, bytes | str | int] = {
    "config.json": '{"architectures": ["InternLM2ForCausalLM"]}\n',
    "model-00001-of-00002.safetensors": 3 * 1024 * 1024 + 12345,
    "model-00002-of-00002.safetensors": 1024 * 1024 + 7,
    "sub/deeper/tokenizer.model": 300_001,
    "empty.txt": b"",
}
BIG = "model-00001-of-00002.safetensors"


def fast_options(**changes: Any) -> EngineOptions:
    base = EngineOptions(
        connections=4,
        chunk_size=16 * 1024,
        range_split_threshold=256 * 1024,
        part_size=64 * 1024,
        request_size=256 * 1024,
        # and never more, whatever round trip a busy machine's loopback shows: one slow first
        # answer makes the source look far, and a far source's requests grow to 16 round
        # trips' worth (megabytes), so a later split must cut one short in flight, which costs
        # the bytes already on the wire: tests that count bytes at the server would fail
        max_request_size=256 * 1024,
        split_min_eta=0.0,
        retries=3,
        backoff_base=0.005,
        backoff_max=0.05,
        retry_after_max=0.05,
        stall_timeout=2.0,
        connect_timeout=2.0,
        request_timeout=5.0,
        checkpoint_interval=0.0,
        lock_timeout=30.0,
    )
    return replace(base, **changes)


def jobs_for(
    hub: LocalHub,
    repo: str = ENGINE_REPO,
    *,
    protocols: tuple[str, ...] = ("hf",),
    paths: list[str] | None = None,
    publish_sha: bool = True,
    sha_override: dict[str, str] | None = None,
    url_override: dict[str, str] | None = None,
    token: str | None = None,
) -> list[FileJob]:
    """One job per served file (or per ``paths``), with one candidate per protocol.

    ``token`` is sent as a bearer token: the hub's request log then tells this run's requests
    from those of an earlier run whose last response the server may still be sending."""
    snap = hub.store.snapshot(repo)
    jobs = []
    for path, entry in snap.files.items():
        if paths is not None and path not in paths:
            continue
        sha = (sha_override or {}).get(path, entry.sha256) if publish_sha else None
        cands = tuple(
            RemoteFile(
                path,
                entry.size,
                sha,
                (url_override or {}).get(path) or hub.file_url(p, repo, path),
                {"Authorization": f"Bearer {token}"} if token else {},
            )
            for p in protocols
        )
        jobs.append(FileJob(path, entry.size, sha, cands, protocols))
    return jobs


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_tree_matches(hub: LocalHub, out: Path, repo: str = ENGINE_REPO) -> None:
    """Every served file is in ``out`` with the right bytes, and nothing else is besides the
    (empty or absent) partial folder."""
    snap = hub.store.snapshot(repo)
    for path, entry in snap.files.items():
        assert sha256_of(out / path) == entry.sha256, path
    listed = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert listed == set(snap.files), listed ^ set(snap.files)


@pytest.fixture
def engine_hub(hub_root: Path, make_hub: Any) -> LocalHub:
    """A started LocalHub over ``ENGINE_REPO`` (plus the sample repo of ``fixtures_local_hub``)."""
    write_repo(hub_root, ENGINE_REPO, ENGINE_FILES)
    return make_hub()
