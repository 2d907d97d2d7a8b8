"""Presigned URLs that expire in the middle of a pull (OpenXLab): list again, go on from the bytes
already written.

The local hub signs OpenXLab's file URLs with ``Expires`` and answers 403 "Request has expired."
(in OSS's XML) once it passes, as the object store behind OpenXLab does.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from fixtures_pull import MODEL

from model_zoo.download import progress as ev
from model_zoo.download.engine import FileJob, fetch
from model_zoo.download.renew import ListingRenewer
from model_zoo.errors import DownloadFailedError, FetchFailedError
from model_zoo.hubs.openxlab import OpenXLabAdapter
from model_zoo.testing.faults import Fault
from model_zoo.testing.hub_repos import write_repo
from model_zoo.testing.local_hub import LocalHub

REPO = "OpenLMLab/expiring"
BIG = "weights/model.bin"
SIZE = 3_000_000  # several of the engine's 1 MiB chunks: some are on disk when the URL dies


@pytest.fixture
def hub(tmp_path: Path) -> LocalHub:
    write_repo(tmp_path / "root", REPO, {BIG: SIZE, "config.json": "{}\n"})
    with LocalHub(tmp_path / "root") as hub:
        yield hub


def test_an_expired_url_answers_403_in_the_object_stores_words(hub: LocalHub) -> None:
    import http.client
    from urllib.parse import urlsplit

    hub.url_ttl = -5  # already expired when listed
    remote = OpenXLabAdapter(hub.url).manifest(REPO).by_path()[BIG]
    parts = urlsplit(remote.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    conn.request("GET", f"{parts.path}?{parts.query}")
    resp = conn.getresponse()
    body = resp.read().decode()
    assert (
        resp.status == 403
        and "<Code>AccessDenied</Code>" in body
        and "Request has expired." in body
    )
    conn.request("GET", f"{parts.path}?{parts.query.replace('Signature=', 'Signature=0')}")
    resp = conn.getresponse()
    assert resp.status == 403 and "SignatureDoesNotMatch" in resp.read().decode()


def fetch_big(
    hub: LocalHub, out: Path, renew: ListingRenewer | None
) -> tuple[object, list[ev.Event]]:
    adapter = OpenXLabAdapter(hub.url)
    remote = adapter.manifest(REPO).by_path()[BIG]
    sha = hashlib.sha256((hub.store.repo_dir(REPO) / BIG).read_bytes()).hexdigest()
    events: list[ev.Event] = []
    job = FileJob(BIG, SIZE, sha, (remote,), ("openxlab",))
    return fetch([job], out, on_event=events.append, renew=renew), events


def test_a_url_that_expires_mid_file_is_renewed_and_the_file_continues(
    hub: LocalHub, tmp_path: Path
) -> None:
    # The first response breaks after 2.5 MB, which take 2.5 s at 1 MB/s: by the retry the
    # 1 s URL has expired, so the retry gets 403 and must come back with a fresh URL.
    hub.url_ttl = 1
    hub.bandwidth.set(1_000_000)
    hub.faults.add(Fault.reset(after=2_500_000, path=BIG))
    renewer = ListingRenewer({"openxlab": lambda: OpenXLabAdapter(hub.url).manifest(REPO)})
    report, events = fetch_big(hub, tmp_path / "out", renewer)
    assert report.ok  # type: ignore[attr-defined]
    assert (tmp_path / "out" / BIG).read_bytes() == (hub.store.repo_dir(REPO) / BIG).read_bytes()
    assert renewer.listed == 1
    expired = [r for r in hub.stats.file_requests() if r.status == 403]
    assert len(expired) == 1  # one refusal, then the fresh URL
    # the file continued from the bytes that arrived (the reset may destroy some still in the
    # socket), not from its start
    (resumed,) = [r for r in hub.stats.file_requests() if r.status == 206]
    assert resumed.range is not None and resumed.range.endswith(f"-{SIZE - 1}")
    start = int(resumed.range.split("=")[1].split("-")[0])
    assert 2_000_000 <= start <= 2_500_000
    assert hub.stats.bytes_served(protocol="openxlab", path=BIG) == 2_500_000 + SIZE - start
    assert any(isinstance(e, ev.Retry) and "expired" in e.reason for e in events)


def test_without_a_renewer_an_expired_url_fails_as_refused(hub: LocalHub, tmp_path: Path) -> None:
    hub.url_ttl = -5
    with pytest.raises(FetchFailedError, match="refused \\(HTTP 403\\)") as info:
        fetch_big(hub, tmp_path / "out", None)
    assert isinstance(info.value.first, DownloadFailedError)


def test_a_url_that_keeps_being_refused_is_given_up_after_two_renewals(
    hub: LocalHub, tmp_path: Path
) -> None:
    hub.url_ttl = -5  # every fresh URL is born expired: renewing cannot help
    renewer = ListingRenewer({"openxlab": lambda: OpenXLabAdapter(hub.url).manifest(REPO)})
    with pytest.raises(FetchFailedError, match="refused \\(HTTP 403\\)"):
        fetch_big(hub, tmp_path / "out", renewer)
    assert renewer.listed == 2


def test_the_renewer_lists_once_for_a_wave_of_expiries() -> None:
    from model_zoo.hubs.base import Manifest, RemoteFile

    calls = []

    def listing() -> Manifest:
        calls.append(1)
        files = tuple(
            RemoteFile(p, 1, None, f"https://oss/{p}?v={len(calls)}", expires=True) for p in "ab"
        )
        return Manifest("openxlab", "o/r", "latest", None, "https://x", files)

    renew = ListingRenewer({"openxlab": listing})
    old = {p: RemoteFile(p, 1, None, f"https://oss/{p}?v=0", expires=True) for p in "ab"}
    first = renew("openxlab", "a", old["a"])
    second = renew("openxlab", "b", old["b"])
    assert first is not None and second is not None and len(calls) == 1
    assert second.url.endswith("v=1")
    again = renew("openxlab", "a", first)  # the fresh one expired too: a new wave
    assert again is not None and again.url.endswith("v=2") and len(calls) == 2
    assert renew("hf", "a", old["a"]) is None  # a source without expiring URLs


def test_pull_from_openxlab_outlives_its_urls(own_hub, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from model_zoo.download.pull import pull_model

    hub, root = own_hub(url_ttl=1, bandwidth_per_protocol={"openxlab": 100_000})
    shard = "model-00001-of-00002.safetensors"
    hub.faults.add(Fault.reset(after=150_000, path=shard, protocol="openxlab"))
    result = pull_model(MODEL, source="openxlab", local_dir=tmp_path / "out")
    assert (tmp_path / "out" / shard).read_bytes() == (
        root / "OpenLMLab/internlm2_5-1_8b-chat" / shard
    ).read_bytes()
    listings = [r for r in hub.stats.requests if r.url.endswith("getFileDownloadUrl")]
    assert len(listings) == 2  # the plan's listing, and one renewal
    manifest = json.loads((tmp_path / "out" / ".model-zoo" / "manifest.json").read_text())
    assert {f["path"] for f in manifest["files"]} >= {shard}
    assert result.downloaded_bytes > 0
