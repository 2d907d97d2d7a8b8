"""Every fault mode of the local hub really happens on the wire (raw http.client / sockets)."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
import time
from pathlib import Path

import pytest
from fixtures_local_hub import SAMPLE_REPO, HubFactory

from model_zoo.testing.faults import DEFAULT_MALICIOUS_ENTRIES, Fault, ListingEntry, wrong_sha256
from model_zoo.testing.local_hub import LocalHub

DATA_PATH = "nested/data.bin"  # 4097 bytes
SHARD = "model-00001-of-00002.safetensors"  # 300_000 bytes, LFS


def fetch(
    hub: LocalHub, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection(hub.host, hub.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def raw_get(hub: LocalHub, path: str, headers: str = "") -> socket.socket:
    sock = socket.create_connection((hub.host, hub.port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {hub.host}\r\n{headers}\r\n".encode())
    return sock


def read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """(status line + headers, the body bytes already received)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the headers"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    raise AssertionError("no Content-Length")


def disk(hub_root: Path, path: str) -> bytes:
    return (hub_root / SAMPLE_REPO / path).read_bytes()


def hf_url(path: str) -> str:
    return f"/{SAMPLE_REPO}/resolve/main/{path}"


def test_status_fault_n_times_then_recovers(local_hub: LocalHub) -> None:
    rule = local_hub.faults.add(Fault.status(503, times=2, path="*.bin"))
    assert fetch(local_hub, hf_url("config.json"))[0] == 200  # glob does not match
    assert [fetch(local_hub, hf_url(DATA_PATH))[0] for _ in range(3)] == [503, 503, 200]
    assert rule.hits == 2
    statuses = [r.status for r in local_hub.stats.file_requests(path=DATA_PATH)]
    assert statuses == [503, 503, 200]
    assert local_hub.stats.file_requests(path=DATA_PATH)[0].faults == ("status",)


def test_429_carries_retry_after_and_skip_delays_the_fault(local_hub: LocalHub) -> None:
    local_hub.faults.add(Fault.status(429, retry_after=2, skip=1, protocol="modelscope"))
    url = f"/api/v1/models/{SAMPLE_REPO}/repo?Revision=master&FilePath=config.json"
    assert fetch(local_hub, url)[0] == 200  # skipped
    status, headers, body = fetch(local_hub, url)
    assert status == 429 and headers["Retry-After"] == "2"
    assert json.loads(body)["Success"] is False
    assert fetch(local_hub, hf_url("config.json"))[0] == 200  # other protocol untouched
    assert fetch(local_hub, url)[0] == 200


def test_status_fault_on_listings_only(local_hub: LocalHub) -> None:
    local_hub.faults.add(Fault.status(500, target="api", times=None))
    assert fetch(local_hub, f"/api/models/{SAMPLE_REPO}/revision/main")[0] == 500
    assert fetch(local_hub, f"/api/v1/models/{SAMPLE_REPO}/repo/files?Revision=master")[0] == 500
    assert fetch(local_hub, hf_url(DATA_PATH))[0] == 200
    local_hub.faults.clear()
    assert fetch(local_hub, f"/api/models/{SAMPLE_REPO}/revision/main")[0] == 200


def test_reset_after_k_bytes_sends_rst(hub_root: Path, local_hub: LocalHub) -> None:
    rule = local_hub.faults.add(Fault.reset(after=1000))
    assert fetch(local_hub, hf_url(DATA_PATH), method="HEAD")[0] == 200  # HEAD has no body: not hit
    sock = raw_get(local_hub, hf_url(DATA_PATH))
    head, body = read_head(sock)
    assert head.startswith(b"HTTP/1.1 200") and content_length(head) == 4097
    with pytest.raises(ConnectionResetError):
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    sock.close()
    assert body == disk(hub_root, DATA_PATH)[:1000]
    assert rule.hits == 1
    assert local_hub.stats.bytes_served(path=DATA_PATH) == 1000
    assert fetch(local_hub, hf_url(DATA_PATH))[2] == disk(hub_root, DATA_PATH)  # once only


def test_short_body_closes_before_content_length(hub_root: Path, local_hub: LocalHub) -> None:
    local_hub.faults.add(Fault.short_body(after=2500, protocol="modelers"))
    conn = http.client.HTTPConnection(local_hub.host, local_hub.port, timeout=10)
    conn.request("GET", f"/api/v1/file/{SAMPLE_REPO}/main/media/{DATA_PATH}")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.headers["Content-Length"] == "4097"
    with pytest.raises(http.client.IncompleteRead) as err:
        resp.read()
    conn.close()
    assert err.value.partial == disk(hub_root, DATA_PATH)[:2500]


def test_flip_byte_corrupts_exactly_one_byte(hub_root: Path, local_hub: LocalHub) -> None:
    good = disk(hub_root, SHARD)
    rule = local_hub.faults.add(Fault.flip_byte(offset=123_456, path=SHARD))
    # A range that does not reach the offset is served intact and does not use the rule up.
    status, _, part = fetch(local_hub, hf_url(SHARD), {"Range": "bytes=0-999"})
    assert status == 206 and part == good[:1000] and rule.hits == 0
    status, headers, bad = fetch(local_hub, hf_url(SHARD))
    assert status == 200 and len(bad) == len(good) == int(headers["Content-Length"])
    diff = [i for i in range(len(good)) if good[i] != bad[i]]
    assert diff == [123_456] and bad[123_456] == good[123_456] ^ 0xFF
    assert hashlib.sha256(bad).hexdigest() != hashlib.sha256(good).hexdigest()
    assert fetch(local_hub, hf_url(SHARD))[2] == good


def test_flip_byte_inside_a_range_uses_file_offsets(hub_root: Path, local_hub: LocalHub) -> None:
    good = disk(hub_root, SHARD)
    local_hub.faults.add(Fault.flip_byte(offset=200_010))
    _, _, part = fetch(local_hub, hf_url(SHARD), {"Range": "bytes=200000-200099"})
    assert part[:10] == good[200_000:200_010] and part[10] == good[200_010] ^ 0xFF
    assert part[11:] == good[200_011:200_100]


def test_stall_sends_nothing_for_t_seconds_mid_body(hub_root: Path, local_hub: LocalHub) -> None:
    local_hub.faults.add(Fault.stall(0.6, after=1500, path=DATA_PATH))
    sock = raw_get(local_hub, hf_url(DATA_PATH))
    head, body = read_head(sock)
    while len(body) < 1500:
        body += sock.recv(65536)
    assert len(body) == 1500  # the server stops exactly at the stall point
    sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        sock.recv(1)  # nothing arrives while stalled
    sock.settimeout(5)
    t0 = time.monotonic()
    while len(body) < content_length(head):
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    sock.close()
    assert time.monotonic() - t0 < 0.6  # resumed after the stall
    assert body == disk(hub_root, DATA_PATH)


def test_ignore_range_answers_200_with_whole_body(hub_root: Path, local_hub: LocalHub) -> None:
    rule = local_hub.faults.add(Fault.ignore_range(protocol="openxlab"))
    commit = local_hub.commit(SAMPLE_REPO)
    url = f"/openxlab/file/{SAMPLE_REPO}/{commit}/{DATA_PATH}"
    assert fetch(local_hub, url)[0] == 200 and rule.hits == 0  # no Range: nothing to ignore
    status, headers, body = fetch(local_hub, url, {"Range": "bytes=100-"})
    assert status == 200 and "Content-Range" not in headers and body == disk(hub_root, DATA_PATH)
    assert fetch(local_hub, url, {"Range": "bytes=100-"})[0] == 206


def test_wrong_sha256_in_every_protocol_listing(hub_root: Path, local_hub: LocalHub) -> None:
    real = hashlib.sha256(disk(hub_root, SHARD)).hexdigest()
    other = hashlib.sha256(disk(hub_root, "tokenizer.model")).hexdigest()
    bad = wrong_sha256(real)
    local_hub.faults.add(Fault.wrong_sha256(path=SHARD))
    tree = json.loads(fetch(local_hub, f"/api/models/{SAMPLE_REPO}/tree/main?recursive=true")[2])
    lfs = {e["path"]: e.get("lfs", {}).get("oid") for e in tree}
    assert lfs[SHARD] == bad and lfs["tokenizer.model"] == other
    ms = json.loads(
        fetch(local_hub, f"/api/v1/models/{SAMPLE_REPO}/repo/files?Revision=master&Recursive=True")[
            2
        ]
    )
    assert {f["Path"]: f["Sha256"] for f in ms["Data"]["Files"]}[SHARD] == bad
    om = json.loads(fetch(local_hub, f"/api/v1/file/{SAMPLE_REPO}?path=&ref=main")[2])
    assert {e["path"]: e["etag"] for e in om["data"]["tree"]}[SHARD] == bad
    ns, name = SAMPLE_REPO.split("/")
    conn = http.client.HTTPConnection(local_hub.host, local_hub.port, timeout=10)
    conn.request(
        "POST",
        "/x/repository/getFileDownloadUrl",
        json.dumps({"userName": ns, "repositoryName": name}),
    )
    ox = json.loads(conn.getresponse().read())
    conn.close()
    assert ox["data"]["data"]["filePaths"][SHARD]["hash"] == bad
    assert fetch(local_hub, hf_url(SHARD))[2] == disk(hub_root, SHARD)  # the bytes stay right


def test_malicious_listing_in_every_protocol(local_hub: LocalHub) -> None:
    local_hub.faults.add(Fault.malicious_listing())
    unsafe = {e.path for e in DEFAULT_MALICIOUS_ENTRIES}
    assert {
        "../../escaped.txt",
        "/etc/model-zoo-absolute.txt",
        "C:\\model-zoo\\drive.txt",
    } <= unsafe
    tree = json.loads(fetch(local_hub, f"/api/models/{SAMPLE_REPO}/tree/main?recursive=true")[2])
    assert unsafe <= {e["path"] for e in tree}
    links = {e["path"]: e for e in tree if e["type"] == "symlink"}
    assert links["link-out"]["target"] == "/etc/passwd"
    top = json.loads(fetch(local_hub, f"/api/models/{SAMPLE_REPO}/tree/main")[2])
    assert unsafe <= {e["path"] for e in top}  # shown at the root of a non-recursive listing too
    ms = json.loads(
        fetch(local_hub, f"/api/v1/models/{SAMPLE_REPO}/repo/files?Revision=master&Recursive=True")[
            2
        ]
    )
    assert unsafe <= {f["Path"] for f in ms["Data"]["Files"]}
    assert {f["Path"]: f["Type"] for f in ms["Data"]["Files"]}["link-up"] == "symlink"
    om = json.loads(fetch(local_hub, f"/api/v1/file/{SAMPLE_REPO}?path=&ref=main")[2])
    assert unsafe <= {e["path"] for e in om["data"]["tree"]}
    # The advertised bytes are served (from memory), so a careless client really writes them.
    status, _, body = fetch(
        local_hub,
        f"/api/v1/models/{SAMPLE_REPO}/repo?Revision=master&FilePath=..%2F..%2Fescaped.txt",
    )
    assert status == 200 and body == DEFAULT_MALICIOUS_ENTRIES[0].content


def test_malicious_listing_custom_entries_and_clear(local_hub: LocalHub) -> None:
    rule = local_hub.faults.add(
        Fault.malicious_listing([ListingEntry("../evil.py", content=b"print(1)\n")], times=1)
    )
    first = json.loads(fetch(local_hub, f"/api/v1/file/{SAMPLE_REPO}?path=&ref=main")[2])
    assert "../evil.py" in {e["path"] for e in first["data"]["tree"]}
    second = json.loads(fetch(local_hub, f"/api/v1/file/{SAMPLE_REPO}?path=&ref=main")[2])
    assert "../evil.py" not in {e["path"] for e in second["data"]["tree"]}
    assert rule.hits == 1 and rule.exhausted


def test_rules_change_at_runtime_and_every_request_mode(local_hub: LocalHub) -> None:
    rule = local_hub.faults.add(Fault.status(500, times=None))
    assert [fetch(local_hub, hf_url("README.md"))[0] for _ in range(4)] == [500] * 4
    local_hub.faults.remove(rule)
    assert fetch(local_hub, hf_url("README.md"))[0] == 200
    assert local_hub.faults.rules == []


def test_stop_ends_a_long_stall(make_hub: HubFactory) -> None:
    hub = make_hub()
    hub.faults.add(Fault.stall(60, after=100, path=DATA_PATH))
    before = set(threading.enumerate())
    sock = raw_get(hub, hf_url(DATA_PATH))
    _, body = read_head(sock)
    while len(body) < 100:
        body += sock.recv(65536)
    handlers = [t for t in threading.enumerate() if t not in before]
    assert handlers  # the thread serving the stalled response
    hub.stop()
    for t in handlers:
        t.join(timeout=5)
        assert not t.is_alive()  # the stall ended with the server, not after 60 s
    sock.settimeout(5)
    try:
        while sock.recv(65536):
            pass
    except OSError:
        pass  # closed or reset: either way the stalled response is over
    sock.close()
