"""The mirror: one HTTP server that speaks HuggingFace, ModelScope, Modelers and OpenXLab.

It serves plain repository directories (layout and revision scheme: ``repo_store``) over all
four protocols at once, so ``model-zoo serve-mirror`` can share a store with a cluster, and so
the hub adapters, the download engine and the official clients are tested against real HTTP
without the internet (the tests' ``model_zoo.testing.local_hub.LocalHub`` is this server with
fault and statistics hooks, ``hooks.py``). Read-only; binds 127.0.0.1 unless told otherwise.

    with MirrorServer(root) as hub:              # or hub.start() / hub.stop()
        os.environ.update(hub.env())             # HF_ENDPOINT, MODELSCOPE_ENDPOINT, ...

Routes (``{repo}`` is ``namespace/name``; every GET route also answers HEAD):

  HuggingFace  GET /api/models/{repo}[/revision/{rev}]          model info (``sha``, siblings)
               GET /api/models/{repo}/tree/{rev}[/{path}]       ?recursive=&cursor=&limit=
                                                                (paged: Link rel=next)
               GET /{repo}/resolve/{rev}/{path}                 bytes; ETag, X-Repo-Commit,
                                                                X-Linked-Etag/-Size for LFS files
  ModelScope   GET /api/v1/models/{repo}                        model info
               GET /api/v1/models/{repo}/revisions              Data.RevisionMap.{Branches,Tags}
               GET /api/v1/models/{repo}/repo/files             ?Revision=&Recursive=&Root=
               GET /api/v1/models/{repo}/repo                   ?Revision=&FilePath= -> bytes
  Modelers     GET /api/v1/model/{repo}                         ?ref= -> data (model info)
               GET /api/v1/file/{repo}                          ?path=&ref= -> data.tree
               GET /api/v1/file/{repo}/info                     ?path=&ref= -> data (one entry,
                                                                with branch_last_commit)
               GET /api/v1/file/{repo}/{rev}/media/{path}       bytes
  OpenXLab     POST <any prefix>/repository/getFileDownloadUrl  data.data.{modelNames,filePaths}
               POST <any prefix>/sso-be/api/v1/open/{auth,getJwt,refreshJwt}  AK/SK -> JWT
               GET /openxlab/file/{repo}/{commit}/{path}        bytes; the listing's URLs are
                                                                presigned (?Expires=&Signature=)
  Ollama       GET /v2/{repo}/manifests/{tag}                   image manifest of one GGUF file
                                                                (tag: its quantization level)
               GET /v2/{repo}/blobs/sha256:{hex}                the GGUF file, or a generated
                                                                config/template/params layer
                                                                (``ollama_registry``)
  (lfs_redirect) GET /_cdn/{protocol}/{repo}/{commit}/{path}?Expires=&Signature=  bytes behind
                 HF / ModelScope 302s and OpenXLab's listed URLs, served on a second port
                 (``cdn_url``): another origin, as the real CDNs
                 are, so credentials must not follow the redirect. Like a presigned object-store
                 URL it needs no token (the signature authorises it) and answers 400 to a
                 request that carries ``Authorization`` anyway.

All byte routes support ``Range: bytes=N-M`` / ``N-`` / ``-S`` (206 + Content-Range, 416 when
unsatisfiable) and stream from disk in chunks (``sendfile`` when no hook or rate limit applies).

A far link (a CDN on another continent) is ``MirrorServer(conn_bandwidth=20e6, latency=0.05)``:
every TCP connection's file bodies are paced to 20 MB/s on top of the total and per-protocol caps,
and every response, on both ports, waits 50 ms (one round trip) before its status line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import secrets
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, quote, unquote, urlsplit

from ..netaddr import is_loopback_host
from . import protocols as proto
from .bandwidth import Bandwidth, RateLimiter
from .hooks import CUT_RESET, BodyHook, Exchange, MirrorHooks, cookie_value
from .openxlab_sso import JwtExpired, SsoRefused, SsoService
from .repo_store import (
    COMMIT_RE,
    FileEntry,
    RepoMissing,
    RepoStore,
    RevisionMissing,
    Snapshot,
    UnsafePath,
    check_rel_path,
    check_repo_id,
)

log = logging.getLogger("model_zoo.mirror")

CHUNK = 256 * 1024
SENDFILE_SLICE = 8 * 1024 * 1024
DEFAULT_PAGE_SIZE = 1000
RESET_GRACE_S = 0.05  # let the client read the bytes sent before a reset


# -- request handling ----------------------------------------------------------------------------
class _Reply(Exception):
    """Raised inside a route to answer with an error status. ``storage``: answer as the object
    store behind presigned URLs does (an XML ``<Error>``), not as the hub's API."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        headers: Mapping[str, str] | None = None,
        *,
        storage: bool = False,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})
        self.storage = storage


class _Aborted(Exception):
    """The response was cut on purpose (fault) or the client went away."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    hub: MirrorServer

    def __init__(self, addr: tuple[str, int], hub: MirrorServer, *, cdn: bool = False) -> None:
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.hub = hub
        self.cdn = cdn  # serves only the signed /_cdn/ URLs
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        tls = self.hub.tls
        if tls is not None:  # the handshake runs on the connection's own thread, not here
            sock = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        try:
            if isinstance(request, ssl.SSLSocket):
                try:
                    request.settimeout(_Handler.timeout)
                    request.do_handshake()
                except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                    log.debug("mirror: TLS handshake with %s failed: %s", client_address, exc)
                    self.shutdown_request(request)
                    return
            super().process_request_thread(request, client_address)
        finally:
            with self._conns_lock:
                self._conns.discard(request)

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(
        self, request: Any, client_address: Any
    ) -> None:  # pragma: no cover - logged only
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            # a client that went away (a cancelled range, Ctrl-C): routine for a hub, not an error
            log.debug("mirror: %s went away", client_address)
            return
        log.exception("mirror: error while handling %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "model-zoo-mirror"
    sys_version = ""
    timeout = 120
    # Small replies (listings, HEAD) must not wait for a delayed ACK: ~40 ms per request otherwise.
    disable_nagle_algorithm = True
    server: _Server
    # This connection's own byte budget (``Bandwidth.conn``): one handler serves one TCP
    # connection, so keep-alive requests on it share the budget and a new connection gets its own.
    _conn_limiter: RateLimiter | None = None

    # -- plumbing ------------------------------------------------------------------------------
    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def _deny(self) -> None:
        self._handle(self.command, forbid=True)

    do_PUT = do_DELETE = do_PATCH = _deny

    @property
    def hub(self) -> MirrorServer:
        return self.server.hub

    def _handle(self, method: str, forbid: bool = False) -> None:
        ctx = Exchange(
            method=method,
            url=self.path,
            range_header=self.headers.get("Range"),
            authorization=self.headers.get("Authorization"),
            cookie=self.headers.get("Cookie", ""),
        )
        body = self._read_body()
        if not self._round_trip():
            self.close_connection = True  # the hub is stopping: no answer at all
            return
        try:
            if forbid:
                raise _Reply(405, None, "the mirror is read-only")
            self._route(ctx, body)
        except _Reply as r:
            self._send_error(ctx, r)
        except _Aborted:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, TimeoutError, ssl.SSLEOFError):
            self.close_connection = True  # the client went away mid-body (over TLS: SSLEOFError)
        except Exception as exc:  # a bug in the hub must still answer, not hang the client
            log.exception("mirror: internal error on %s %s", method, self.path)
            try:
                self._send_error(ctx, _Reply(500, None, f"mirror internal error: {exc}"))
            except OSError:
                self.close_connection = True
        finally:
            self.hub.hooks.response_ended(ctx)

    def _round_trip(self) -> bool:
        """Wait ``hub.latency`` seconds before answering, as a far server's reply arrives one
        round trip after the request; False when ``stop()`` cut the wait short."""
        latency = self.hub.latency
        return not (latency > 0 and self.hub.stopping.wait(latency))

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > 1 << 20:
            self.close_connection = True
            return b""
        return self.rfile.read(length) if length else b""

    # -- routing -------------------------------------------------------------------------------
    def _route(self, ctx: Exchange, body: bytes) -> None:
        split = urlsplit(self.path)
        segs = [unquote(s) for s in split.path.split("/")[1:]]
        q = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        m = ctx.method
        if self.server.cdn:
            self._route_cdn(ctx, segs, q)
        elif segs and segs[0] == "v2" and m in ("GET", "HEAD"):
            self._route_ollama(ctx, segs[1:])
        elif len(segs) >= 4 and segs[0] == "api" and segs[1] == "models" and m in ("GET", "HEAD"):
            self._route_hf_api(ctx, segs[2] + "/" + segs[3], segs[4:], q)
        elif len(segs) >= 5 and segs[:3] == ["api", "v1", "models"] and m in ("GET", "HEAD"):
            self._route_modelscope(ctx, segs[3] + "/" + segs[4], segs[5:], q)
        elif len(segs) >= 5 and segs[:3] == ["api", "v1", "file"] and m in ("GET", "HEAD"):
            self._route_modelers(ctx, segs[3] + "/" + segs[4], segs[5:], q)
        elif len(segs) == 5 and segs[:3] == ["api", "v1", "model"] and m in ("GET", "HEAD"):
            ctx.protocol, ctx.kind = proto.MODELERS, "api"
            self._modelers_model(ctx, segs[3] + "/" + segs[4], q)
        elif split.path.endswith("/repository/getFileDownloadUrl") and m == "POST":
            self._openxlab_urls(ctx, body)
        elif "/sso-be/api/v1/open/" in split.path and m == "POST":
            self._openxlab_sso(ctx, split.path.rsplit("/", 1)[-1], body)
        elif len(segs) >= 6 and segs[:2] == ["openxlab", "file"] and m in ("GET", "HEAD"):
            ctx.protocol = proto.OPENXLAB
            repo, commit, path = segs[2] + "/" + segs[3], segs[4], "/".join(segs[5:])
            signed = "Signature" in q  # what the listing hands out; a bare URL needs the token
            if signed:
                self._check_signature(ctx, proto.OPENXLAB, repo, commit, path, q)
            self._serve_file(ctx, repo, commit, path, via_cdn=signed)
        elif len(segs) >= 5 and segs[2] == "resolve" and m in ("GET", "HEAD"):
            ctx.protocol = proto.HF
            self._serve_file(ctx, segs[0] + "/" + segs[1], segs[3], "/".join(segs[4:]))
        elif segs == [""] and m in ("GET", "HEAD"):
            self._send_json(ctx, {"local_hub": True, "repos": len(self.hub.store.repo_ids())})
        else:
            raise _Reply(404, None, f"no such route: {m} {split.path}")

    def _route_cdn(self, ctx: Exchange, segs: list[str], q: dict[str, str]) -> None:
        """The object store behind the LFS redirects: signed URLs, no hub credentials."""
        if len(segs) < 6 or segs[0] != "_cdn" or segs[1] not in proto.PROTOCOLS:
            raise _Reply(404, None, f"no such route: {ctx.method} {urlsplit(self.path).path}")
        if ctx.method not in ("GET", "HEAD"):
            raise _Reply(405, None, "the local CDN is read-only")
        ctx.protocol = segs[1]
        if "Authorization" in self.headers:
            # What S3 / OSS answer when a presigned URL also gets an Authorization header:
            # the client carried the hub's credentials across origins.
            raise _Reply(
                400,
                "InvalidArgument",
                "only one auth mechanism allowed: a signed "
                "URL must not carry an Authorization header",
            )
        repo, commit, path = segs[2] + "/" + segs[3], segs[4], "/".join(segs[5:])
        self._check_signature(ctx, segs[1], repo, commit, path, q)
        self._serve_file(ctx, repo, commit, path, via_cdn=True)

    def _check_signature(
        self, ctx: Exchange, protocol: str, repo: str, commit: str, path: str, q: dict[str, str]
    ) -> None:
        """A presigned URL: the signature must match and ``Expires`` must not have passed,
        else 403 with the object store's own words (what OSS and S3 answer)."""
        ctx.kind, ctx.repo, ctx.path = "file", repo, path  # a refusal is logged as a file request
        expires = q.get("Expires", "")
        if not expires.isdigit() or not hmac.compare_digest(
            q.get("Signature", ""),
            self.hub.url_signature(protocol, repo, commit, path, int(expires)),
        ):
            raise _Reply(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
                storage=True,
            )
        if int(expires) < time.time():
            raise _Reply(403, "AccessDenied", "Request has expired.", storage=True)

    def _route_hf_api(self, ctx: Exchange, repo: str, rest: list[str], q: dict[str, str]) -> None:
        ctx.protocol, ctx.kind = proto.HF, "api"
        if not rest:
            self._hf_info(ctx, repo, None, q)
        elif rest[0] == "revision" and len(rest) == 2:
            self._hf_info(ctx, repo, rest[1], q)
        elif rest[0] == "tree" and len(rest) >= 2:
            self._hf_tree(ctx, repo, rest[1], "/".join(rest[2:]).strip("/"), q)
        else:
            raise _Reply(404, None, f"no such route: {self.path}")

    def _route_modelscope(
        self, ctx: Exchange, repo: str, rest: list[str], q: dict[str, str]
    ) -> None:
        ctx.protocol, ctx.kind = proto.MODELSCOPE, "api"
        if not rest:
            snap = self._snapshot(ctx, repo, None)
            self._send_json(ctx, proto.ms_envelope(proto.ms_model_info(snap)))
        elif rest == ["revisions"]:
            self._ms_revisions(ctx, repo)
        elif rest == ["repo", "files"]:
            self._ms_files(ctx, repo, q)
        elif rest == ["repo"]:
            self._serve_file(ctx, repo, q.get("Revision") or "master", q.get("FilePath", ""))
        else:
            raise _Reply(404, None, f"no such route: {self.path}")

    def _route_modelers(self, ctx: Exchange, repo: str, rest: list[str], q: dict[str, str]) -> None:
        ctx.protocol, ctx.kind = proto.MODELERS, "api"
        ref = rest[0] if len(rest) >= 3 and rest[1] == "media" else q.get("ref", "")
        if not self.hub.modelers_commit_refs and COMMIT_RE.match(ref):
            raise _Reply(
                404,
                "RevisionNotFound",
                f"ref {ref} does not exist (this hub serves branches and tags only)",
            )
        if not rest:
            self._modelers_tree(ctx, repo, q)
        elif rest == ["info"]:
            self._modelers_info(ctx, repo, q)
        elif len(rest) >= 3 and rest[1] == "media":
            self._serve_file(ctx, repo, rest[0], "/".join(rest[2:]))
        else:
            raise _Reply(404, None, f"no such route: {self.path}")

    # -- shared lookups ------------------------------------------------------------------------
    def _check_access(self, ctx: Exchange, repo: str) -> None:
        required = self.hub.token_for(repo)
        if required is None:
            return
        private = self.hub.is_private(repo)
        if ctx.protocol == proto.HF and ctx.kind == "api" and not private:
            return  # HF shows a gated repository's metadata and file list to anyone
        auth = self.headers.get("Authorization", "").strip()
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        # What each hub's own client sends: HF and Modelers "Bearer TOKEN", ModelScope that or
        # its m_session_id cookie, OpenXLab the bare JWT. Anything else counts as no token.
        if ctx.protocol == proto.OPENXLAB:
            sent = bearer or auth
            if sent and sent != required:
                try:  # a JWT minted by the SSO exchange for the access key this repo is gated with
                    if self.hub.sso.owner(sent) == required:
                        return
                except JwtExpired:
                    raise _Reply(
                        401, "TokenExpired", "the token has expired: get a new one"
                    ) from None
        elif ctx.protocol == proto.MODELSCOPE:
            sent = bearer or cookie_value(self.headers.get("Cookie", ""), "m_session_id") or ""
        else:
            sent = bearer
        if ctx.protocol == proto.HF and private:
            # HF does not tell a private repository from a missing one without a valid token.
            if not sent:
                raise _Reply(401, "RepoNotFound", "Repository Not Found")
            if sent != required:
                raise _Reply(401, None, "Invalid credentials in Authorization header")
            return
        if not sent:
            raise _Reply(
                401, "GatedRepo", f"{repo} is gated: send a token (Authorization: Bearer ...)"
            )
        if sent != required:
            raise _Reply(403, "GatedRepo", f"{repo} is gated: the token sent has no access")

    def _snapshot(
        self, ctx: Exchange, repo: str, revision: str | None, *, signed: bool = False
    ) -> Snapshot:
        ctx.repo, ctx.revision = repo, revision
        try:
            check_repo_id(repo)
        except UnsafePath:
            raise _Reply(404, "RepoNotFound", f"repository {repo!r} not found") from None
        if not signed:  # a signed CDN URL is its own authorisation
            self._check_access(ctx, repo)
        self._refusal(ctx)
        try:
            return self.hub.store.snapshot(repo, revision)
        except RepoMissing:
            raise _Reply(404, "RepoNotFound", f"repository {repo} not found") from None
        except RevisionMissing:
            raise _Reply(
                404, "RevisionNotFound", f"revision {revision} not found in {repo}"
            ) from None

    def _refusal(self, ctx: Exchange) -> None:
        """Answer with a hook's refusal (a test fault) instead, when it has one."""
        refusal = self.hub.hooks.refusal(ctx)
        if refusal is not None:
            raise _Reply(refusal.status, refusal.code, refusal.message, refusal.headers)

    def _listing(self, ctx: Exchange, snap: Snapshot) -> list[proto.Entry]:
        return self.hub.hooks.listing(ctx, proto.listing(snap))

    # -- HuggingFace ---------------------------------------------------------------------------
    def _hf_info(self, ctx: Exchange, repo: str, revision: str | None, q: dict[str, str]) -> None:
        snap = self._snapshot(ctx, repo, revision)
        blobs = q.get("blobs", "").lower() in ("1", "true")
        info = proto.hf_model_info(snap, self._listing(ctx, snap), blobs=blobs)
        if self.hub.token_for(repo) is not None:
            private = self.hub.is_private(repo)
            info.update(private=private, gated=False if private else "manual")
        self._send_json(ctx, info)

    def _hf_tree(
        self, ctx: Exchange, repo: str, revision: str, folder: str, q: dict[str, str]
    ) -> None:
        snap = self._snapshot(ctx, repo, revision)
        entries = self._listing(ctx, snap)
        if folder and folder not in snap.directories():
            raise _Reply(404, "EntryNotFound", f"{folder} does not exist on {revision}")
        recursive = q.get("recursive", "").lower() in ("1", "true")
        chosen = (
            proto.descendants(entries, folder) if recursive else proto.children(entries, folder)
        )
        try:
            offset = (
                int(base64.urlsafe_b64decode(q["cursor"].encode()).decode())
                if q.get("cursor")
                else 0
            )
            limit = min(int(q.get("limit") or self.hub.page_size), self.hub.page_size)
        except ValueError:
            raise _Reply(400, "BadRequest", "invalid cursor or limit") from None
        limit = max(limit, 1)
        page = chosen[offset : offset + limit]
        headers = {}
        if offset + limit < len(chosen):
            cursor = base64.urlsafe_b64encode(str(offset + limit).encode()).decode()
            base = self._base_url() + urlsplit(self.path).path
            expand = q.get("expand", "False")
            params = f"recursive={recursive}&expand={expand}&limit={limit}&cursor={cursor}"
            headers["Link"] = f'<{base}?{params}>; rel="next"'
        self._send_json(ctx, [proto.hf_entry(e) for e in page], headers)

    # -- ModelScope ----------------------------------------------------------------------------
    def _ms_revisions(self, ctx: Exchange, repo: str) -> None:
        snap = self._snapshot(ctx, repo, None)
        _, tags = self.hub.store.revisions(repo)
        ts = int(snap.last_modified)
        branches = [{"Revision": "master", "CommitId": snap.commit, "CreatedAt": ts}]
        tag_list = [{"Revision": t, "CommitId": c, "CreatedAt": ts} for t, c in tags.items()]
        self._send_json(
            ctx, proto.ms_envelope({"RevisionMap": {"Branches": branches, "Tags": tag_list}})
        )

    def _ms_files(self, ctx: Exchange, repo: str, q: dict[str, str]) -> None:
        snap = self._snapshot(ctx, repo, q.get("Revision") or "master")
        entries = self._listing(ctx, snap)
        root = (q.get("Root") or "").strip("/")
        if root and root not in snap.directories():
            raise _Reply(404, "EntryNotFound", f"{root} does not exist")
        recursive = q.get("Recursive", "").lower() in ("1", "true")
        chosen = proto.descendants(entries, root) if recursive else proto.children(entries, root)
        self._send_json(ctx, proto.ms_envelope({"Files": [proto.ms_file(e, snap) for e in chosen]}))

    # -- Modelers ------------------------------------------------------------------------------
    def _modelers_tree(self, ctx: Exchange, repo: str, q: dict[str, str]) -> None:
        snap = self._snapshot(ctx, repo, q.get("ref") or "main")
        entries = self._listing(ctx, snap)
        folder = (q.get("path") or "").strip("/")
        if folder and folder not in snap.directories():
            raise _Reply(404, "EntryNotFound", f"{folder} does not exist")
        data = {
            "tree": [proto.modelers_entry(e) for e in proto.children(entries, folder)],
            "last_commit": proto.modelers_last_commit(snap),
        }
        self._send_json(ctx, proto.modelers_envelope(data))

    def _modelers_info(self, ctx: Exchange, repo: str, q: dict[str, str]) -> None:
        snap = self._snapshot(ctx, repo, q.get("ref") or "main")
        path = q.get("path") or ""
        by_path = {e.path: e for e in self._listing(ctx, snap)}
        if path not in by_path:
            raise _Reply(404, "EntryNotFound", f"{path} does not exist")
        data = proto.modelers_entry(by_path[path])
        data["last_commit"] = proto.modelers_last_commit(snap)
        # openmind_hub's get_om_file_metadata takes the commit of the ref from here (40 hex).
        data["branch_last_commit"] = snap.commit
        self._send_json(ctx, proto.modelers_envelope(data))

    def _modelers_model(self, ctx: Exchange, repo: str, q: dict[str, str]) -> None:
        snap = self._snapshot(ctx, repo, q.get("ref") or "main")
        info = proto.modelers_model_info(snap, private=self.hub.token_for(repo) is not None)
        self._send_json(ctx, proto.modelers_envelope(info))

    # -- OpenXLab ------------------------------------------------------------------------------
    def _openxlab_urls(self, ctx: Exchange, body: bytes) -> None:
        ctx.protocol, ctx.kind = proto.OPENXLAB, "api"
        try:
            req = json.loads(body or b"{}")
            repo = f"{req['userName']}/{req['repositoryName']}"
        except (ValueError, KeyError, TypeError):
            raise _Reply(400, None, "body must be JSON with userName and repositoryName") from None
        snap = self._snapshot(ctx, repo, None)
        wanted = req.get("filePaths")
        files = {}
        for e in self._listing(ctx, snap):
            if e.type == "directory" or (wanted and e.path not in wanted):
                continue
            files[e.path] = proto.openxlab_file(e, self._openxlab_url(snap, e.path))
        # The official client reads data.msgCode and then data.data.modelNames and .filePaths
        # (a KeyError without either): an envelope inside an envelope. This hub has no
        # "model" entries (a metafile's named weights), so every file is under filePaths.
        inner = {"modelNames": {}, "filePaths": files}
        self._send_json(ctx, proto.openxlab_envelope(proto.openxlab_envelope(inner)))

    def _openxlab_sso(self, ctx: Exchange, call: str, body: bytes) -> None:
        ctx.protocol, ctx.kind = proto.OPENXLAB, "sso"
        calls = {
            "auth": self.hub.sso.auth,
            "getJwt": self.hub.sso.get_jwt,
            "refreshJwt": self.hub.sso.refresh_jwt,
        }
        if call not in calls:
            raise _Reply(404, None, f"no such route: POST {urlsplit(self.path).path}")
        self._refusal(ctx)
        try:
            req = json.loads(body or b"{}")
            if not isinstance(req, dict):
                raise ValueError
            data = calls[call](req)
        except ValueError:
            raise _Reply(400, None, "body must be a JSON object") from None
        except SsoRefused as exc:  # HTTP 200, a failing msgCode inside: what the client checks
            self._send_json(
                ctx,
                proto.openxlab_envelope(proto.openxlab_envelope(None, code=exc.code, msg=str(exc))),
            )
            return
        self._send_json(ctx, proto.openxlab_envelope(proto.openxlab_envelope(data)))

    def _openxlab_url(self, snap: Snapshot, path: str) -> str:
        """A presigned URL, as OpenXLab lists (an OSS object URL that expires): on the CDN
        origin when redirects are on, else on this one; either way it needs no token."""
        signed = self.hub.signed_query(proto.OPENXLAB, snap.repo_id, snap.commit, path)
        where = f"{snap.repo_id}/{snap.commit}/{quote(path)}?{signed}"
        if self.hub.lfs_redirect:
            return f"{self._cdn_base_url()}/_cdn/{proto.OPENXLAB}/{where}"
        return f"{self._base_url()}/openxlab/file/{where}"

    # -- Ollama (OCI registry) -------------------------------------------------------------------
    def _route_ollama(self, ctx: Exchange, rest: list[str]) -> None:
        """Ollama's registry protocol for the GGUF files held (``ollama_registry``)."""
        from .ollama_registry import ManifestUnknown

        ctx.protocol, ctx.kind = proto.OLLAMA, "api"
        if rest in ([], [""]):  # the OCI "is this a registry" probe
            self._send_json(ctx, {}, {"Docker-Distribution-API-Version": "registry/2.0"})
            return
        if len(rest) != 4 or rest[2] not in ("manifests", "blobs"):
            raise _Reply(404, "NAME_UNKNOWN", f"no such route: {urlsplit(self.path).path}")
        repo, ref = rest[0] + "/" + rest[1], rest[3]
        snap = self._snapshot(ctx, repo, None)
        registry = self.hub.ollama
        if rest[2] == "manifests":
            try:
                manifest = registry.manifest(snap, ref)
            except ManifestUnknown as exc:
                raise _Reply(404, "MANIFEST_UNKNOWN", str(exc)) from None
            body, media_type = manifest.body(self.headers.get("Accept"))
            digest = "sha256:" + hashlib.sha256(body).hexdigest()
            headers = {
                "Docker-Content-Digest": digest,
                "Docker-Distribution-API-Version": "registry/2.0",
            }
            self._start(ctx, 200, media_type, len(body), headers)
            if ctx.method != "HEAD":
                self._write(ctx, body)
            return
        blob = registry.blob(snap, ref)
        if blob is None:
            raise _Reply(404, "BLOB_UNKNOWN", f"{repo} has no blob {ref}")
        headers = {
            "Docker-Content-Digest": blob.digest,
            "Location": self._base_url() + urlsplit(self.path).path,
        }
        if blob.path is not None:
            self._serve_file(ctx, repo, snap.commit, blob.path, extra_headers=headers)
            return
        assert blob.data is not None
        ctx.kind = "file"
        rng = self._parse_range(blob.size)
        start, end = (0, blob.size - 1) if rng is None else rng
        if rng is not None:
            headers["Content-Range"] = f"bytes {start}-{end}/{blob.size}"
        headers["Accept-Ranges"] = "bytes"
        data = blob.data[start : end + 1]
        self._start(ctx, 206 if rng else 200, "application/octet-stream", len(data), headers)
        if ctx.method != "HEAD":
            self._write(ctx, data)

    # -- bytes ---------------------------------------------------------------------------------
    def _serve_file(
        self,
        ctx: Exchange,
        repo: str,
        revision: str,
        path: str,
        via_cdn: bool = False,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        ctx.kind, ctx.path = "file", path
        if ctx.protocol == proto.OPENXLAB and revision in ("main", "master"):
            revision = "main"
        snap = self._snapshot(ctx, repo, revision, signed=via_cdn)
        entry = snap.files.get(path)
        if entry is None:
            extra = self.hub.hooks.extra_file(ctx, path)
            if extra is not None:
                self._serve_extra(ctx, snap, extra)
                return
            try:
                check_rel_path(path)
            except UnsafePath:
                raise _Reply(403, "Forbidden", f"refused unsafe path {path!r}") from None
            raise _Reply(404, "EntryNotFound", f"{path} does not exist at {snap.commit}")
        if (
            self.hub.lfs_redirect
            and entry.lfs
            and not via_cdn
            and ctx.protocol in (proto.HF, proto.MODELSCOPE)
        ):
            self._redirect_to_cdn(ctx, snap, entry)
            return
        size = entry.size
        rng = None if self.hub.hooks.whole_body(ctx) else self._parse_range(size)
        headers = {**self._file_headers(snap, entry), **(extra_headers or {})}
        if rng is None:
            start, length, status = 0, size, 200
        else:
            start, length, status = rng[0], rng[1] - rng[0] + 1, 206
            headers["Content-Range"] = f"bytes {rng[0]}-{rng[1]}/{size}"
        ctx.span = (start, start + length)
        body_hook = self.hub.hooks.body(ctx)
        self._start(ctx, status, "application/octet-stream", length, headers)
        if ctx.method == "HEAD" or length == 0:
            return
        self._stream_file(ctx, entry, start, length, body_hook)

    def _redirect_to_cdn(self, ctx: Exchange, snap: Snapshot, entry: FileEntry) -> None:
        """What the real hubs do for LFS files: 302 to a storage URL, metadata on the redirect."""
        headers = self._file_headers(snap, entry)
        assert ctx.protocol is not None
        headers["Location"] = (
            f"{self._cdn_base_url()}/_cdn/{ctx.protocol}/{snap.repo_id}/{snap.commit}/"
            + quote(entry.path)
            + "?"
            + self.hub.signed_query(ctx.protocol, snap.repo_id, snap.commit, entry.path)
        )
        self._start(ctx, 302, "text/plain; charset=utf-8", 0, headers)

    def _serve_extra(self, ctx: Exchange, snap: Snapshot, data: bytes) -> None:
        """Bytes a hook serves for a path the repository does not hold."""
        self._start(ctx, 200, "application/octet-stream", len(data), {"X-Repo-Commit": snap.commit})
        if ctx.method != "HEAD":
            self._write(ctx, data)

    def _file_headers(self, snap: Snapshot, entry: FileEntry) -> dict[str, str]:
        headers = {
            "Accept-Ranges": "bytes",
            "X-Repo-Commit": snap.commit,
            "ETag": f'"{entry.sha256 if entry.lfs else entry.git_oid}"',
            "Last-Modified": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(entry.mtime)),
        }
        if entry.lfs:
            headers["X-Linked-Etag"] = f'"{entry.sha256}"'
            headers["X-Linked-Size"] = str(entry.size)
        return headers

    def _parse_range(self, size: int) -> tuple[int, int] | None:
        """(first, last) for a satisfiable single range; None to serve the whole body."""
        header = self.headers.get("Range")
        if not header:
            return None
        unit, _, spec = header.partition("=")
        if unit.strip().lower() != "bytes" or "," in spec:
            return None  # RFC 9110 allows ignoring ranges we do not support
        first_s, dash, last_s = spec.strip().partition("-")
        if not dash:
            return None
        try:
            if first_s == "":
                suffix = int(last_s)
                if suffix <= 0:
                    raise ValueError
                first, last = max(size - suffix, 0), size - 1
            else:
                first = int(first_s)
                last = int(last_s) if last_s else max(first, size - 1)
                if first < 0 or last < first:
                    return None  # syntactically invalid: ignored
                last = min(last, size - 1)
        except ValueError:
            return None
        if first >= size or size == 0:
            raise _Reply(
                416,
                "RangeNotSatisfiable",
                f"range {header} outside 0-{size - 1}",
                {"Content-Range": f"bytes */{size}"},
            )
        return first, last

    def _stream_file(
        self, ctx: Exchange, entry: FileEntry, start: int, length: int, hook: BodyHook | None
    ) -> None:
        assert ctx.protocol is not None and ctx.repo is not None
        self._conn_limiter = self.hub.bandwidth.connection_limiter(self._conn_limiter)
        # the connection's own pace first, then the shared budgets, so a slot reserved in a
        # shared budget is one the bytes really go out in
        limiters = [self._conn_limiter] if self._conn_limiter else []
        limiters += self.hub.bandwidth.limiters(ctx.protocol)
        stopping = self.hub.stopping
        with entry.real_path.open("rb") as fh:
            if hook is None and not limiters:
                self._sendfile(ctx, fh, start, length)
                return
            fh.seek(start)
            stops = list(hook.stops()) if hook is not None else []
            sent = 0
            while True:
                cut = hook.at(sent, stopping) if hook is not None else None
                if stopping.is_set():  # stop() also ends a hook's wait early
                    raise _Aborted("hub stopping")
                if cut is not None:
                    self._cut(cut)
                if sent >= length:
                    return
                n = min(CHUNK, length - sent)
                if limiters:
                    n = min(n, max(4096, int(min(lim.rate for lim in limiters) / 50)))
                for boundary in stops:
                    if boundary > sent:
                        n = min(n, boundary - sent)
                data = fh.read(n)
                if len(data) != n:
                    raise _Aborted("file shrank while being served")
                if hook is not None:
                    data = hook.edit(start + sent, data)
                for lim in limiters:
                    lim.consume(n, stopping)
                if stopping.is_set():
                    raise _Aborted("hub stopping")
                self._write(ctx, data)
                sent += n

    def _sendfile(self, ctx: Exchange, fh: Any, start: int, length: int) -> None:
        sent = 0
        while sent < length:
            n = min(SENDFILE_SLICE, length - sent)
            self._count(ctx, n)  # counted first: see HubStats
            done = self.connection.sendfile(fh, offset=start + sent, count=n)
            if done != n:
                self._count(ctx, done - n)
                raise _Aborted("sendfile stopped early")
            sent += done

    def _cut(self, how: str) -> None:
        """End the response early: RST for ``CUT_RESET``, a clean close for ``CUT_CLOSE``."""
        self.close_connection = True
        if how == CUT_RESET:
            time.sleep(RESET_GRACE_S)
            try:
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.rfile.close()
                self.connection.close()  # with linger 0 the kernel sends RST
            except OSError:
                pass
        raise _Aborted(how)

    # -- writing -------------------------------------------------------------------------------
    def _base_url(self) -> str:
        host = self.headers.get("Host")
        return f"{self.hub.scheme}://{host}" if host else self.hub.url

    def _cdn_base_url(self) -> str:
        """The CDN's origin as this client reaches the hub: same host name, the CDN's port."""
        host = urlsplit("//" + (self.headers.get("Host") or "")).hostname
        if not host:
            return self.hub.cdn_url
        return f"{self.hub.scheme}://{f'[{host}]' if ':' in host else host}:{self.hub.cdn_port}"

    def _start(
        self, ctx: Exchange, status: int, ctype: str, length: int, headers: Mapping[str, str]
    ) -> None:
        ctx.status = status
        self.hub.hooks.response_started(ctx)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()

    def _write(self, ctx: Exchange, data: bytes) -> None:
        self._count(ctx, len(data))
        self.wfile.write(data)

    def _count(self, ctx: Exchange, n: int) -> None:
        self.hub.hooks.wrote(ctx, n, file_bytes=ctx.kind == "file")

    def _send_json(
        self, ctx: Exchange, obj: Any, headers: Mapping[str, str] | None = None, status: int = 200
    ) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode()
        self._start(ctx, status, "application/json; charset=utf-8", len(data), headers or {})
        if ctx.method != "HEAD":
            self.hub.hooks.wrote(ctx, len(data), file_bytes=False)
            self.wfile.write(data)

    def _send_error(self, ctx: Exchange, r: _Reply) -> None:
        if r.storage:
            data = proto.storage_error(r.code or "Error", r.message)
            self._start(ctx, r.status, "application/xml", len(data), r.headers)
            if ctx.method != "HEAD":
                self.hub.hooks.wrote(ctx, len(data), file_bytes=False)
                self.wfile.write(data)
            return
        body, headers = proto.error_body(ctx.protocol or proto.HF, r.status, r.code, r.message)
        headers.update(r.headers)
        self._send_json(ctx, body, headers, status=r.status)


def tls_context(cert_file: Path | str, key_file: Path | str | None = None) -> ssl.SSLContext:
    """A server-side TLS context from a PEM certificate (chain) and its private key.

    ``key_file`` may be None when ``cert_file`` holds the key too. Raises OSError or
    ssl.SSLError when the files are missing, unreadable or do not belong together.
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert_file), str(key_file) if key_file is not None else None)
    return ctx


# -- the public object ---------------------------------------------------------------------------
class MirrorServer:
    """A multi-protocol hub over ``root``: one directory, several (first wins), or a prepared
    ``RepoStore``.

    ``bandwidth``: global limit in bytes/s; ``bandwidth_per_protocol``: {"hf": B/s, ...};
    ``conn_bandwidth``: bytes/s for each TCP connection, as a CDN caps each one (change later
    with ``.bandwidth.set(total, per_protocol, conn)``, which replaces all three, or
    ``.bandwidth.conn = B/s``). File bodies under any of these are paced, never ``sendfile``d.
    ``latency``: seconds every response (API, file, HEAD, error, redirect; both ports) waits
    before its status line, one simulated round trip. Changeable at runtime (``.latency``).
    ``page_size``: entries per HuggingFace tree page (HF uses 1000; tests use small values).
    ``tokens``: {repo_id: token} makes those repositories gated (401 without, 403 wrong token;
    see ``gate`` for what HuggingFace shows without one).
    ``lfs_redirect``: answer HuggingFace and ModelScope downloads of LFS files with a 302 to
    ``/_cdn/...`` (as the real hubs redirect to their CDN / object storage); the redirect
    carries X-Repo-Commit, X-Linked-Etag and X-Linked-Size. Changeable at runtime.
    ``tls``: a server-side SSL context (``tls_context(cert, key)``): both ports then speak
    https only, as the real hubs do (the official Modelers client refuses plain http).
    ``openxlab_keys``: {access key: secret key} the OpenXLab SSO exchange accepts (``.sso``,
    ``openxlab_sso``); gating an OpenXLab repository with an access key (``gate(repo, ak)``)
    lets the JWTs minted for that key in, until they expire (``.sso.jwt_ttl``).
    ``url_ttl``: seconds a presigned URL (OpenXLab's file URLs, the CDN redirects) stays
    valid; after that it answers 403 "Request has expired." as OSS does. Changeable at runtime.
    ``ollama_profiles``: ``(repo_id, GGUFHeader) -> OllamaProfile | None`` for the template,
    system, params and licence layers of the Ollama manifests (None: from the GGUF header).
    ``modelers_commit_refs=False``: the Modelers routes refuse commit ids as refs (404
    ``ref_not_exist``), like a hub that serves branches and tags only.
    ``hooks``: calls at fixed points of every request (``hooks.MirrorHooks``); the tests plug
    fault injection and statistics in here. None: no hooks, as ``serve-mirror`` runs.
    """

    def __init__(
        self,
        root: Path | str | Sequence[Path | str] | RepoStore,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        bandwidth: float | None = None,
        bandwidth_per_protocol: Mapping[str, float] | None = None,
        conn_bandwidth: float | None = None,
        latency: float = 0.0,
        page_size: int = DEFAULT_PAGE_SIZE,
        tokens: Mapping[str, str] | None = None,
        lfs_redirect: bool = False,
        tls: ssl.SSLContext | None = None,
        openxlab_keys: Mapping[str, str] | None = None,
        url_ttl: float = 3600.0,
        modelers_commit_refs: bool = True,
        ollama_profiles: Any = None,
        hooks: MirrorHooks | None = None,
    ) -> None:
        self.store = root if isinstance(root, RepoStore) else RepoStore(root)
        self.ollama_profiles = ollama_profiles
        self._ollama: Any = None
        self.tls = tls
        self.url_ttl = url_ttl
        self.modelers_commit_refs = modelers_commit_refs
        self.sso = SsoService()
        for ak, sk in (openxlab_keys or {}).items():
            self.sso.add_key(ak, sk)
        self.host = host
        self._port = port
        self.hooks = hooks if hooks is not None else MirrorHooks()
        self.bandwidth = Bandwidth(bandwidth, bandwidth_per_protocol, conn_bandwidth)
        self._latency = 0.0
        self.latency = latency
        self.page_size = page_size
        self.lfs_redirect = lfs_redirect
        self._tokens: dict[str, str] = dict(tokens or {})
        self._tokens_lock = threading.Lock()
        self._private: set[str] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._cdn_server: _Server | None = None
        self._cdn_thread: threading.Thread | None = None
        self._cdn_key = secrets.token_bytes(16)
        self.stopping = threading.Event()

    @property
    def ollama(self) -> Any:
        """The Ollama registry view of the store (``ollama_registry.OllamaRegistry``), made on
        first use."""
        if self._ollama is None:
            from .ollama_registry import OllamaRegistry

            self._ollama = OllamaRegistry(self.ollama_profiles)
        return self._ollama

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> Self:
        if self._server is not None:
            return self
        self.stopping.clear()
        self._server, self._thread = self._serve((self.host, self._port), "mirror", cdn=False)
        self._port = self._server.server_address[1]
        self._cdn_server, self._cdn_thread = self._serve((self.host, 0), "mirror-cdn", cdn=True)
        return self

    def _serve(
        self, addr: tuple[str, int], name: str, *, cdn: bool
    ) -> tuple[_Server, threading.Thread]:
        server = _Server(addr, self, cdn=cdn)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=name, daemon=True
        )
        thread.start()
        return server, thread

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        cdn, self._cdn_server = self._cdn_server, None
        for srv in (server, cdn):
            if srv is not None:
                srv.shutdown()
                srv.close_connections()
                srv.server_close()
        for thread in (self._thread, self._cdn_thread):
            if thread is not None:
                thread.join(timeout=5)

    def serve_forever(self) -> None:
        """Serve until KeyboardInterrupt, blocking the caller (``model-zoo serve-mirror``)."""
        self.start()
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    # -- far link ------------------------------------------------------------------------------
    @property
    def latency(self) -> float:
        """Seconds each response waits before its status line (0: none)."""
        return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        seconds = float(seconds)
        if not 0 <= seconds < math.inf:
            raise ValueError(f"latency must be a finite number of seconds >= 0, not {seconds!r}")
        self._latency = seconds

    # -- addresses -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        return f"{self.scheme}://{host}:{self._port}"

    @property
    def cdn_port(self) -> int:
        """The port of the CDN that LFS redirects point at (0 before ``start``)."""
        return self._cdn_server.server_address[1] if self._cdn_server is not None else 0

    @property
    def cdn_url(self) -> str:
        return self.url.rsplit(":", 1)[0] + f":{self.cdn_port}"

    def url_signature(
        self, protocol: str, repo_id: str, commit: str, path: str, expires: int
    ) -> str:
        """The ``Signature`` that authorises one presigned URL until ``expires`` (epoch s)."""
        msg = "\0".join((protocol, repo_id, commit, path, str(expires))).encode()
        return hmac.new(self._cdn_key, msg, hashlib.sha256).hexdigest()[:32]

    def signed_query(self, protocol: str, repo_id: str, commit: str, path: str) -> str:
        """``Expires=...&Signature=...`` for a URL valid for ``url_ttl`` seconds from now."""
        expires = math.ceil(time.time() + self.url_ttl)  # whole seconds, never less than url_ttl
        signature = self.url_signature(protocol, repo_id, commit, path, expires)
        return f"Expires={expires}&Signature={signature}"

    def endpoint(self, source: str) -> str:
        """The endpoint URL for a source key (every hub is served at the root URL)."""
        from ..hubs.catalog import hub_info

        hub_info(source)
        return self.url

    def env(self) -> dict[str, str]:
        """Endpoint variables pointing every hub client at this server."""
        from ..hubs.catalog import HUBS

        return {info.endpoint_env: self.url for info in HUBS.values()}

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)

    # -- repositories --------------------------------------------------------------------------
    def commit(self, repo_id: str, revision: str | None = None) -> str:
        """The commit id the server reports for ``repo_id`` at ``revision``."""
        return self.store.snapshot(repo_id, revision).commit

    def tag(self, repo_id: str, tag: str) -> str:
        """Freeze the default branch of ``repo_id`` as tag ``tag``; returns its commit id."""
        return self.store.tag(repo_id, tag)

    def gate(self, repo_id: str, token: str | None, *, private: bool = False) -> None:
        """Require ``token`` for ``repo_id`` (None lifts the requirement).

        Over the HuggingFace protocol, as on huggingface.co: a gated repository lists its
        files to anyone (model info says ``gated: "manual"``) and wants the token for the
        bytes (401/403 ``GatedRepo``); a ``private`` one answers every request without the
        token with 401 ``RepoNotFound`` and a wrong token with 401 "Invalid credentials". The
        other protocols want the token for every request either way.
        """
        with self._tokens_lock:
            if token is None:
                self._tokens.pop(repo_id, None)
                self._private.discard(repo_id)
            else:
                self._tokens[repo_id] = token
                (self._private.add if private else self._private.discard)(repo_id)

    def token_for(self, repo_id: str) -> str | None:
        with self._tokens_lock:
            return self._tokens.get(repo_id)

    def is_private(self, repo_id: str) -> bool:
        with self._tokens_lock:
            return repo_id in self._private

    # -- URLs for tests ------------------------------------------------------------------------
    def file_url(self, protocol: str, repo_id: str, path: str, revision: str | None = None) -> str:
        """The URL each protocol uses for the bytes of one file."""
        p = quote(path)
        if protocol == proto.HF:
            return f"{self.url}/{repo_id}/resolve/{quote(revision or 'main', safe='')}/{p}"
        if protocol == proto.MODELSCOPE:
            rev = quote(revision or "master", safe="")
            file_path = quote(path, safe="")
            return f"{self.url}/api/v1/models/{repo_id}/repo?Revision={rev}&FilePath={file_path}"
        if protocol == proto.MODELERS:
            return (
                f"{self.url}/api/v1/file/{repo_id}/{quote(revision or 'main', safe='')}/media/{p}"
            )
        if protocol == proto.OPENXLAB:
            return f"{self.url}/openxlab/file/{repo_id}/{revision or self.commit(repo_id)}/{p}"
        raise ValueError(f"unknown protocol {protocol!r}; valid: {proto.PROTOCOLS}")


__all__ = ["MirrorServer", "tls_context"]
