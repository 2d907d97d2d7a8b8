"""The engine's main path against the local hub: every byte lands verified under its final name."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures_engine import (
    BIG,
    ENGINE_FILES,
    ENGINE_REPO,
    assert_tree_matches,
    fast_options,
    jobs_for,
    sha256_of,
)
from fixtures_local_hub import HubTLS

from model_zoo.download import policy
from model_zoo.download import progress as ev
from model_zoo.download.engine import (
    COMPUTED_ONLY,
    VERIFIED_PUBLISHED,
    EngineOptions,
    FileJob,
    fetch,
)
from model_zoo.download.partial import Sidecar, save_sidecar
from model_zoo.download.paths import PARTIAL_DIR, partial_paths
from model_zoo.errors import FetchFailedError
from model_zoo.hubs.base import RemoteFile
from model_zoo.testing.hub_repos import write_repo
from model_zoo.testing.local_hub import LocalHub


def test_fetch_every_file_verified(engine_hub: LocalHub, tmp_path: Path) -> None:
    out = tmp_path / "out"
    events: list[ev.Event] = []
    report = fetch(jobs_for(engine_hub), out, options=fast_options(), on_event=events.append)
    assert_tree_matches(engine_hub, out)
    assert not (out / PARTIAL_DIR).exists()
    snap = engine_hub.store.snapshot(ENGINE_REPO)
    assert {f.path for f in report.files} == set(snap.files)
    for f in report.files:
        assert f.sha256 == snap.files[f.path].sha256
        assert f.verification == VERIFIED_PUBLISHED and not f.unverified_by_hub
        assert f.bytes_downloaded == f.size and f.bytes_resumed == 0
        assert f.sources == (("hf",) if f.size else ())
        assert f.final_path == out / f.path
    # every byte was fetched exactly once
    assert engine_hub.stats.bytes_served() == sum(f.size for f in report.files)
    # events: one start and one done per file, progress adds up
    done = [e for e in events if isinstance(e, ev.FileDone)]
    assert sorted(e.path for e in done) == sorted(snap.files)
    assert sum(e.bytes for e in events if isinstance(e, ev.Progress)) == report.bytes_downloaded
    assert all(isinstance(e.to_dict()["event"], str) for e in events)
    for path in snap.files:  # per file: start, then progress, then done
        kinds = [type(e).__name__ for e in events if getattr(e, "path", None) == path]
        assert kinds[0] == "FileStart" and kinds[-1] == "FileDone" and kinds.count("FileDone") == 1


def test_big_file_is_fetched_as_parallel_ranges_without_overlap(
    engine_hub: LocalHub, tmp_path: Path
) -> None:
    # Slow enough that splitting pays off, with a margin: once the first range has a rate
    # (``MATURE_AGE``), the rest of the file must still need twice the time below which a
    # capped link's ranges stay whole. At 3 MB/s it needed 0.53 s against 0.5 and only
    # sometimes split.
    size = ENGINE_FILES[BIG]
    assert isinstance(size, int)
    engine_hub.bandwidth.set(total=size / (policy.MATURE_AGE + 2 * policy.CAPPED_SPLIT_ETA))
    out = tmp_path / "out"
    fetch(jobs_for(engine_hub, paths=[BIG]), out, options=fast_options(connections=4))
    assert sha256_of(out / BIG) == engine_hub.store.snapshot(ENGINE_REPO).files[BIG].sha256
    reqs = engine_hub.stats.file_requests(path=BIG)
    assert all(r.status == 206 for r in reqs)
    assert engine_hub.stats.peak_bodies(BIG) >= 2, "ranges of the file were fetched at once"
    assert engine_hub.stats.bytes_served(path=BIG) == ENGINE_FILES[BIG]  # ranges never overlap


def test_fast_stream_is_not_split(engine_hub: LocalHub, tmp_path: Path) -> None:
    """When a stream would finish within ``split_min_eta``, splitting it only costs CPU."""
    fetch(
        jobs_for(engine_hub, paths=[BIG]),
        tmp_path / "out",
        options=fast_options(split_min_eta=30.0),
    )
    starts = [
        int(r.range.split("=")[1].split("-")[0]) for r in engine_hub.stats.file_requests(path=BIG)
    ]
    assert starts == sorted(starts) and starts[0] == 0
    assert engine_hub.stats.peak_bodies(BIG) == 1  # one request after another


def test_single_stream_when_below_split_threshold(engine_hub: LocalHub, tmp_path: Path) -> None:
    fetch(
        jobs_for(engine_hub, paths=[BIG]),
        tmp_path / "out",
        options=fast_options(range_split_threshold=1 << 30),
    )
    reqs = engine_hub.stats.file_requests(path=BIG)
    assert [(r.status, r.range) for r in reqs] == [(200, None)]


def test_existing_complete_file_is_rehashed_not_fetched(
    engine_hub: LocalHub, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    fetch(jobs_for(engine_hub), out, options=fast_options())
    engine_hub.stats.reset()
    report = fetch(jobs_for(engine_hub), out, options=fast_options())
    assert engine_hub.stats.bytes_served() == 0
    assert all(f.already_present and f.bytes_downloaded == 0 for f in report.files)


def test_existing_wrong_file_is_replaced(engine_hub: LocalHub, tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "sub/deeper").mkdir(parents=True)
    target = out / "sub/deeper/tokenizer.model"
    target.write_bytes(b"x" * ENGINE_FILES["sub/deeper/tokenizer.model"])  # right size, wrong bytes
    report = fetch(
        jobs_for(engine_hub, paths=["sub/deeper/tokenizer.model"]), out, options=fast_options()
    )
    assert not report.files[0].already_present
    assert sha256_of(target) == report.files[0].expected_sha256


def test_existing_symlink_at_final_name_is_replaced_not_followed(
    engine_hub: LocalHub, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (out / "config.json").symlink_to(victim)
    fetch(jobs_for(engine_hub, paths=["config.json"]), out, options=fast_options())
    assert victim.read_text() == "keep me"
    assert not (out / "config.json").is_symlink()
    assert (out / "config.json").read_text() == ENGINE_FILES["config.json"]


def test_resume_from_partial_left_by_earlier_run(engine_hub: LocalHub, tmp_path: Path) -> None:
    out = tmp_path / "out"
    entry = engine_hub.store.snapshot(ENGINE_REPO).files[BIG]
    data = entry.real_path.read_bytes()
    pp = partial_paths(out, BIG)
    pp.data.parent.mkdir(parents=True)
    # a partial with two written ranges and holes, as a killed ranged download leaves it
    with open(pp.data, "wb") as fh:
        fh.truncate(len(data))
        fh.seek(0)
        fh.write(data[:1_000_000])
        fh.seek(2_000_000)
        fh.write(data[2_000_000:2_500_000])
    save_sidecar(
        pp.sidecar,
        Sidecar(
            BIG, len(data), entry.sha256, None, [(0, 1_000_000), (2_000_000, 2_500_000)], ["hf"]
        ),
    )
    events: list[ev.Event] = []
    report = fetch(
        jobs_for(engine_hub, paths=[BIG]), out, options=fast_options(), on_event=events.append
    )
    assert (out / BIG).read_bytes() == data
    f = report.files[0]
    assert f.bytes_resumed == 1_500_000
    assert f.bytes_downloaded == len(data) - 1_500_000
    assert engine_hub.stats.bytes_served(path=BIG) == len(data) - 1_500_000
    start = next(e for e in events if isinstance(e, ev.FileStart))
    assert start.resumed == 1_500_000
    assert not pp.data.exists() and not pp.sidecar.exists()


def test_partial_without_sidecar_or_for_another_file_is_discarded(
    engine_hub: LocalHub, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    entry = engine_hub.store.snapshot(ENGINE_REPO).files[BIG]
    pp = partial_paths(out, BIG)
    pp.data.parent.mkdir(parents=True)
    pp.data.write_bytes(b"\0" * entry.size)
    save_sidecar(
        pp.sidecar, Sidecar(BIG, entry.size, "0" * 64, None, [(0, entry.size)], ["hf"])
    )  # other sha
    report = fetch(jobs_for(engine_hub, paths=[BIG]), out, options=fast_options())
    assert report.files[0].bytes_resumed == 0
    assert sha256_of(out / BIG) == entry.sha256


def test_unknown_sha256_and_size_is_computed_only(engine_hub: LocalHub, tmp_path: Path) -> None:
    out = tmp_path / "out"
    jobs = [
        FileJob(
            j.path,
            None,
            None,
            tuple(RemoteFile(c.path, None, None, c.url) for c in j.candidates),
            j.sources,
        )
        for j in jobs_for(engine_hub, publish_sha=False)
    ]
    report = fetch(jobs, out, options=fast_options())
    assert_tree_matches(engine_hub, out)
    snap = engine_hub.store.snapshot(ENGINE_REPO)
    for f in report.files:
        assert f.verification == COMPUTED_ONLY and f.unverified_by_hub
        assert f.sha256 == snap.files[f.path].sha256 and f.size == snap.files[f.path].size


def test_wrong_size_in_listing_fails_without_final_file(
    engine_hub: LocalHub, tmp_path: Path
) -> None:
    from model_zoo.errors import SizeMismatchError

    out = tmp_path / "out"
    job = jobs_for(engine_hub, paths=["config.json"], publish_sha=False)[0]
    bad = FileJob(job.path, 10, None, job.candidates, job.sources)
    with pytest.raises(FetchFailedError) as info:
        fetch([bad], out, options=fast_options())
    assert not (out / "config.json").exists()
    assert isinstance(info.value.first, SizeMismatchError)
    assert (
        info.value.report.failed[0][0] == "config.json"
        and info.value.failures[0][0] == "config.json"
    )


def test_httpx_client_transport(engine_hub: LocalHub, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with httpx.Client() as client:
        report = fetch(jobs_for(engine_hub), out, options=fast_options(), client=client)
    assert_tree_matches(engine_hub, out)
    assert report.bytes_downloaded == sum(f.size for f in report.files)


def test_redirect_drops_credentials_across_origins(
    engine_hub: LocalHub, tmp_path: Path, make_hub
) -> None:
    """A RemoteFile's headers go to its own origin only, never to where it redirects."""
    import http.server
    import threading

    target = engine_hub.file_url("hf", ENGINE_REPO, "config.json")

    class Redirect(http.server.BaseHTTPRequestHandler):
        seen: list[str | None] = []

        def do_GET(self) -> None:  # noqa: N802
            Redirect.seen.append(self.headers.get("Authorization"))
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/file"
        job = jobs_for(engine_hub, paths=["config.json"])[0]
        remote = RemoteFile(
            "config.json", job.size, job.sha256, url, headers={"Authorization": "Bearer secret"}
        )
        fetch(
            [FileJob(job.path, job.size, job.sha256, (remote,), ("hf",))],
            tmp_path / "out",
            options=fast_options(),
        )
    finally:
        server.shutdown()
        server.server_close()
    assert Redirect.seen == ["Bearer secret"]
    assert [r.authorization for r in engine_hub.stats.file_requests(path="config.json")] == [None]
    assert (tmp_path / "out/config.json").read_text() == ENGINE_FILES["config.json"]


def test_default_options_are_sane() -> None:
    o = EngineOptions()
    assert o.connections >= 16 and o.chunk_size >= 256 * 1024 and o.retries >= 3
    assert o.stall_timeout == 30.0 and not o.multi_source


def test_sha256_is_lowercased_and_job_shape_checked() -> None:
    from model_zoo.errors import UsageError

    remote = RemoteFile("a", 1, None, "http://127.0.0.1:1/a")
    assert FileJob("a", 1, "AB" * 32, (remote,), ("hf",)).sha256 == "ab" * 32
    with pytest.raises(UsageError):
        FileJob("a", 1, None, (remote,), ())
    with pytest.raises(UsageError):
        FileJob("a", 1, None, (), ())


def test_many_small_files_share_connections(hub_root: Path, make_hub, tmp_path: Path) -> None:
    from model_zoo.testing.hub_repos import write_repo

    files = {f"f{i:03d}.txt": os.urandom(100 + i) for i in range(60)}
    write_repo(hub_root, "ns/many", files)
    hub = make_hub()
    out = tmp_path / "out"
    fetch(jobs_for(hub, "ns/many"), out, options=fast_options(connections=4))
    for name, data in files.items():
        assert hashlib.sha256((out / name).read_bytes()).digest() == hashlib.sha256(data).digest()


def test_http_proxy_from_the_environment_is_used(
    engine_hub: LocalHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY is honoured by the default transport (absolute-form requests to the proxy)."""
    import http.server
    import threading
    import urllib.request

    seen: list[str] = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            seen.append(self.path)
            headers = {
                k: v for k, v in self.headers.items() if k.lower() in ("range", "user-agent")
            }
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(urllib.request.Request(self.path, headers=headers)) as upstream:
                body = upstream.read()
                self.send_response(upstream.status)
                for k in ("Content-Range", "ETag"):
                    if upstream.headers.get(k):
                        self.send_header(k, upstream.headers[k])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        monkeypatch.setenv("NO_PROXY", "")
        out = tmp_path / "out"
        fetch(jobs_for(engine_hub, paths=["config.json", BIG]), out, options=fast_options())
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert sha256_of(out / BIG) == engine_hub.store.snapshot(ENGINE_REPO).files[BIG].sha256
    assert seen and all(p.startswith(engine_hub.url + "/") for p in seen)


class _Hop:
    """A fake response: a redirect to ``location``, or (None) the final answer."""

    def __init__(self, location: str | None) -> None:
        self.status = 302 if location else 200
        self.url = ""
        self._location = location

    def header(self, name: str) -> str | None:
        return self._location if name.lower() == "location" else None

    def close(self, *, reusable: bool) -> None:
        pass


@pytest.mark.parametrize(
    ("location", "gets_token"),
    [
        ("https://cdn.modelers.cn/obj?sig=1", True),  # under a white-listed domain, https
        ("https://modelers.cn/other", True),
        ("https://obs.gitcode.com/x", True),
        ("http://cdn.modelers.cn/obj", False),  # plain http: never
        ("https://evilmodelers.cn/obj", False),  # the official client's endswith() would send it
        ("https://modelers.cn.attacker.example/obj", False),
        ("https://bucket.oss.example/obj", False),
    ],
)
def test_redirects_carry_the_token_only_to_white_listed_https_hosts(
    location: str, gets_token: bool
) -> None:
    from model_zoo.download.http_fetch import follow_redirects
    from model_zoo.hubs.modelers import CDN_DOMAINS

    seen: list[tuple[str, dict[str, str]]] = []
    hops = {"https://hub.modelers.cn/api/v1/file/o/r/main/media/w.bin": location}

    def send_once(url: str, headers: dict[str, str]) -> _Hop:
        seen.append((url, dict(headers)))
        return _Hop(hops.get(url))

    follow_redirects(
        send_once, next(iter(hops)), {"Authorization": "Bearer om"}, "bytes=0-9", CDN_DOMAINS
    )
    (_, first), (second_url, second) = seen
    assert first["Authorization"] == "Bearer om" and second_url == location
    assert ("Authorization" in second) is gets_token
    assert second["Range"] == "bytes=0-9"  # the range always follows
    seen.clear()
    follow_redirects(
        send_once, next(iter(hops)), {"Authorization": "Bearer om"}, None
    )  # no domains given
    assert "Authorization" not in seen[1][1]


def test_https_connections_share_one_tls_context(
    hub_root: Path,
    make_hub: Any,
    hub_tls: HubTLS,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Loading the CA bundle holds the GIL for ~30 ms: built once per connection, the first
    wave of a pull over https (16 connections) queued ~0.5 s before its first byte. One context
    serves every connection, built once even when the workers all connect at the same moment."""
    import ssl

    from model_zoo.download import http_fetch

    write_repo(hub_root, ENGINE_REPO, ENGINE_FILES)
    hub = make_hub(tls=hub_tls.context)
    assert hub.url.startswith("https://")
    hub.bandwidth.set(conn=2_000_000)  # every connection slow: ranges spread over many of them
    monkeypatch.setenv("SSL_CERT_FILE", str(hub_tls.ca))
    monkeypatch.setattr(http_fetch, "_SSL_CONTEXTS", {})
    built: list[object] = []
    real = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append(kwargs.get("cafile"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counting)
    out = tmp_path / "out"
    fetch(jobs_for(hub), out, options=fast_options(connections=8, initial_connections=8))
    assert_tree_matches(hub, out)
    assert hub.stats.peak_bodies(BIG) >= 2  # several TLS connections at once
    assert built == [str(hub_tls.ca)]


def test_a_tls_client_leaving_mid_body_is_not_a_mirror_error(
    hub_root: Path, make_hub: Any, hub_tls: HubTLS, caplog: pytest.LogCaptureFixture
) -> None:
    """Clients cut bodies short on purpose (a range split in the endgame, a hedge that lost);
    over TLS the mirror saw that as ``SSLEOFError`` and logged an internal error with a
    traceback for each, then tried to answer 500 on the dead connection."""
    import logging
    import socket
    import ssl
    import time
    from urllib.parse import urlsplit

    write_repo(hub_root, ENGINE_REPO, ENGINE_FILES)
    hub = make_hub(tls=hub_tls.context)
    hub.bandwidth.set(conn=1_000_000)  # the body takes seconds: the client leaves during it
    url = urlsplit(hub.file_url("hf", ENGINE_REPO, BIG))
    context = ssl.create_default_context(cafile=str(hub_tls.ca))
    caplog.set_level(logging.ERROR)
    for _ in range(3):
        raw = socket.create_connection((url.hostname, url.port))
        with context.wrap_socket(raw, server_hostname=url.hostname) as tls:
            tls.sendall(f"GET {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n\r\n".encode())
            assert tls.recv(4096).startswith(b"HTTP/1.1 200")
            tls.shutdown(socket.SHUT_RDWR)  # gone mid-body, without a TLS close_notify
    time.sleep(0.5)  # the server notices at its next write (a few per second at this rate)
    assert not [r for r in caplog.records if "internal error" in r.getMessage()]
