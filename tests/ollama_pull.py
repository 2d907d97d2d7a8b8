"""A pull client that takes Ollama's steps, in Ollama's order, for tests against serve-mirror.

Written from Ollama's Go source (``types/model/name.go``, ``server/images.go`` ``PullModel``
and ``pullModelManifest``, ``server/download.go`` ``Prepare``/``run``/``downloadChunk``): the
name grammar and defaults, the refusal of plain http without ``insecure``, the manifest request
and its Accept header, a HEAD per blob for its size, one GET whose final answer's ``Location``
is the address the parts are fetched from (same-host redirects followed, others not), ranged
GETs per part, then sha256 over each whole blob against its digest. Standard library only.
"""

from __future__ import annotations

import hashlib
import http.client
import json
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

USER_AGENT = "ollama/0.0.0 (amd64 linux) Go/go1.24"
MANIFEST_ACCEPT = "application/vnd.docker.distribution.manifest.v2+json"
MISSING = "!MISSING!"


class PullError(Exception):
    pass


@dataclass
class Name:
    host: str = ""
    namespace: str = ""
    model: str = ""
    tag: str = ""
    scheme: str = ""


def _cut_last(s: str, sep: str) -> tuple[str, str, bool]:
    i = s.rfind(sep)
    if i < 0:
        return s, "", False
    return s[:i] or MISSING, s[i + len(sep) :] or MISSING, True


def parse_name(s: str) -> Name:
    """``ParseName``: ``[scheme://][host/][namespace/]model[:tag]``, then Ollama's defaults."""
    n = Name()
    if s.rfind(":") > s.rfind("/"):
        s, n.tag, _ = _cut_last(s, ":")
    s, model, promised = _cut_last(s, "/")
    if not promised:
        n.model = s
    else:
        n.model = model
        s, namespace, promised = _cut_last(s, "/")
        if not promised:
            n.namespace = s
        else:
            n.namespace = namespace
            scheme, sep, host = s.partition("://")
            if sep:
                n.scheme = scheme
            else:
                host = scheme
            n.host = host
    n.host = n.host or "registry.ollama.ai"
    n.namespace = n.namespace or "library"
    n.tag = n.tag or "latest"
    n.scheme = n.scheme or "https"
    return n


def _valid_part(kind: str, s: str) -> bool:
    if not 1 <= len(s) <= (350 if kind == "host" else 80):
        return False
    if not (s[0].isascii() and (s[0].isalnum() or s[0] == "_")):
        return False
    for c in s[1:]:
        if c in "_-":
            continue
        if c == ".":
            if kind == "namespace":
                return False
            continue
        if c == ":":
            if kind != "host":
                return False
            continue
        if not (c.isascii() and (c.isalnum() or c == "_")):
            return False
    return True


def is_fully_qualified(n: Name) -> bool:
    return all(
        _valid_part(k, v)
        for k, v in (
            ("host", n.host),
            ("namespace", n.namespace),
            ("model", n.model),
            ("tag", n.tag),
        )
    )


@dataclass
class PullResult:
    manifest_bytes: bytes
    manifest: dict
    blobs: dict[str, Path] = field(default_factory=dict)  # digest -> downloaded file
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Range


class OllamaStylePull:
    """``pull(name, dest)`` as Ollama's server does it; ``part_size`` splits blobs into parts
    (Ollama: a 16th of the blob, at least 100 MB; tests use small parts to see several ranges)."""

    def __init__(
        self,
        *,
        insecure: bool = False,
        token: str | None = None,
        part_size: int = 100 * 1000 * 1000,
    ) -> None:
        self.insecure = insecure
        self.token = token
        self.part_size = part_size

    def _request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        result: PullResult,
        *,
        follow_same_host: bool = False,
    ) -> tuple[int, dict[str, str], bytes, str]:
        """One request (and same-host redirects when asked); returns status, headers, body and
        the URL that answered."""
        for _ in range(11):
            parts = urlsplit(url)
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            hdrs = {"User-Agent": USER_AGENT, **headers}
            if self.token:
                hdrs["Authorization"] = f"Bearer {self.token}"
            conn.request(method, path, headers=hdrs)
            resp = conn.getresponse()
            body = resp.read() if method != "HEAD" else b""
            out_headers = {k.lower(): v for k, v in resp.getheaders()}
            conn.close()
            result.requests.append((method, parts.path, headers.get("Range")))
            if follow_same_host and resp.status in (301, 302, 303, 307, 308):
                target = urljoin(url, out_headers["location"])
                if urlsplit(target).hostname == parts.hostname:
                    url = target
                    continue
            return resp.status, out_headers, body, url
        raise PullError("maximum redirects exceeded (10)")

    def pull(self, name: str, dest: Path) -> PullResult:
        n = parse_name(name)
        if not is_fully_qualified(n):
            raise PullError(f"invalid model name {name!r}")
        if n.scheme == "http" and not self.insecure:
            raise PullError("insecure protocol http")
        base = f"{n.scheme}://{n.host}"
        repo = f"{n.namespace}/{n.model}"
        result = PullResult(b"", {})
        status, _, body, _ = self._request(
            "GET", f"{base}/v2/{repo}/manifests/{n.tag}", {"Accept": MANIFEST_ACCEPT}, result
        )
        if status == 404:
            raise PullError("pull model manifest: file does not exist")
        if status >= 400:
            raise PullError(f"pull model manifest: {status}: {body.decode(errors='replace')}")
        result.manifest_bytes, result.manifest = body, json.loads(body)
        layers = list(result.manifest["layers"])
        if result.manifest.get("config", {}).get("digest"):
            layers.append(result.manifest["config"])
        dest.mkdir(parents=True, exist_ok=True)
        for layer in layers:
            digest = layer["digest"]
            if digest in result.blobs:
                continue
            result.blobs[digest] = self._download(base, repo, digest, dest, result)
        for digest, path in result.blobs.items():  # "verifying sha256 digest"
            got = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
            if got != digest:
                path.unlink()
                raise PullError(
                    f"digest mismatch, file must be downloaded again: want {digest}, got {got}"
                )
        return result

    def _download(self, base: str, repo: str, digest: str, dest: Path, result: PullResult) -> Path:
        url = f"{base}/v2/{repo}/blobs/{digest}"
        status, headers, _, _ = self._request("HEAD", url, {}, result)
        if status >= 400:
            raise PullError(f"{status} for HEAD {url}")
        total = int(headers.get("content-length", "0"))
        status, headers, _, answered = self._request("GET", url, {}, result, follow_same_host=True)
        if status not in (200, 307):
            raise PullError(f"unexpected status code {status}")
        if "location" not in headers:
            raise PullError("http: no Location header in response")
        direct = urljoin(answered, headers["location"])
        size = max(total // 16, self.part_size)
        out = dest / digest.replace(":", "-")
        with out.open("wb") as fh:
            fh.truncate(total)
            offset = 0
            while offset < total:
                length = min(size, total - offset)
                status, _, body, _ = self._request(
                    "GET", direct, {"Range": f"bytes={offset}-{offset + length - 1}"}, result
                )
                if status not in (200, 206) or len(body) != length:
                    raise PullError(
                        f"part at {offset}: status {status}, {len(body)} of {length} bytes"
                    )
                fh.seek(offset)
                fh.write(body)
                offset += length
        return out
