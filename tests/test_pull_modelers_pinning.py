"""Modelers downloads come from one commit, even when the branch moves during the pull.

The adapter lists the branch once to learn its head, then lists and fetches at that commit. A
hub that refuses commit refs is listed by branch; the pull then re-reads the head before it
trusts the files, and starts over from the listing when the branch moved.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from model_zoo.download.pull import MAX_BRANCH_MOVES, pull_model
from model_zoo.errors import RevisionMovedError
from model_zoo.hubs.modelers import CDN_DOMAINS, ModelersAdapter
from model_zoo.testing.hub_repos import write_repo
from model_zoo.testing.local_hub import LocalHub

MODEL = "internlm3-8b-instruct"
REPO = "Intern/internlm3-8b-instruct"


def modelers_media(hub: LocalHub) -> list[str]:
    return [r.url for r in hub.stats.file_requests(protocol="modelers")]


def test_listing_resolves_the_branch_then_lists_and_serves_at_its_commit(own_hub: Any) -> None:
    hub, _root = own_hub()
    commit = hub.commit(REPO)
    manifest = ModelersAdapter(hub.url).manifest(REPO)
    assert manifest.commit == commit and manifest.pinned and manifest.revision == "main"
    assert all(f"/{commit}/media/" in f.url for f in manifest.files)
    refs = [r.url.split("ref=")[1].split("&")[0] for r in hub.stats.requests if "ref=" in r.url]
    assert refs[0] == "main" and set(refs[1:]) == {commit}


def test_a_hub_without_commit_refs_is_listed_by_branch_and_says_so(own_hub: Any) -> None:
    hub, _root = own_hub(modelers_commit_refs=False)
    manifest = ModelersAdapter(hub.url).manifest(REPO)
    assert manifest.commit == hub.commit(REPO) and not manifest.pinned
    assert all("/main/media/" in f.url for f in manifest.files)
    assert ModelersAdapter(hub.url).head_commit(REPO) == hub.commit(REPO)


def change_on_start(root: Path, times: int) -> tuple[Any, list[str]]:
    """A progress hook that moves the branch (a new config.json) as the download starts."""
    notes: list[str] = []
    left = [times]

    def hook(event: Any) -> None:
        kind = getattr(event, "kind", None)
        if kind == "start" and left[0] > 0:
            left[0] -= 1
            write_repo(root, REPO, {"config.json": f'{{"moved": {left[0]}}}\n'})
        if kind == "note":
            notes.append(event.message)

    return hook, notes


def test_a_branch_that_moves_mid_pull_does_not_mix_commits(own_hub: Any, tmp_path: Path) -> None:
    hub, root = own_hub()
    old_commit = hub.commit(REPO)
    hub.tag(REPO, "v1")  # the hub keeps history: the old commit stays servable
    old = (root / REPO / "config.json").read_bytes()
    hook, _notes = change_on_start(root, 1)
    result = pull_model(MODEL, source="modelers", local_dir=tmp_path / "out", progress=hook)
    assert hub.commit(REPO) != old_commit  # the branch did move
    assert result.commit == old_commit
    assert (tmp_path / "out" / "config.json").read_bytes() == old
    assert all(f"/{old_commit}/media/" in url for url in modelers_media(hub))


def test_without_commit_refs_a_moved_branch_restarts_the_plan(own_hub: Any, tmp_path: Path) -> None:
    hub, root = own_hub(modelers_commit_refs=False)
    old_commit = hub.commit(REPO)
    hook, notes = change_on_start(root, 1)
    result = pull_model(MODEL, source="modelers", local_dir=tmp_path / "out", progress=hook)
    new_commit = hub.commit(REPO)
    assert new_commit != old_commit and result.commit == new_commit
    assert (tmp_path / "out" / "config.json").read_bytes() == (
        root / REPO / "config.json"
    ).read_bytes()
    assert any("moved from" in n and old_commit[:12] in n for n in notes)
    assert result.manifest is not None and result.manifest.commit == new_commit


def test_a_branch_that_keeps_moving_is_reported(own_hub: Any, tmp_path: Path) -> None:
    hub, root = own_hub(modelers_commit_refs=False)
    hook, _notes = change_on_start(root, MAX_BRANCH_MOVES + 5)
    with pytest.raises(RevisionMovedError, match="moved to a new commit 3 times") as info:
        pull_model(MODEL, source="modelers", progress=hook)
    assert "--revision" in info.value.message
    # the unfinished snapshots of the commits the branch left were removed as it moved on
    import os

    assert [
        p for p in (Path(os.environ["MODEL_ZOO_HOME"]) / "models").glob("*/*") if p.is_dir()
    ] == []


def test_the_cdn_domains_are_the_official_clients_white_list(client_pythons: Any) -> None:
    """Which hosts may get the token on a download redirect: exactly openmind_hub's list."""
    code = (
        "import json; from openmind_hub.plugins.openmind import constants as c; "
        "print(json.dumps(c.DOWNLOAD_CDN_HOSTNAME_WHITE_LIST))"
    )
    done = subprocess.run(
        [str(client_pythons("openmind")), "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={"HOME": "/tmp", "PATH": "/usr/bin:/bin"},
    )
    import json

    assert tuple(json.loads(done.stdout)) == CDN_DOMAINS
