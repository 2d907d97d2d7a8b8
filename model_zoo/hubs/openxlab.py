"""OpenXLab (openxlab.org.cn model center) over its REST protocol; serves both OpenXLab sources.

Protocol, as the official ``openxlab`` client speaks it (its endpoint constant is
``https://openapi.openxlab.org.cn/api/v1``; the paths below are appended to it):

* ``POST /model-center/api/v1/cli/repository/getFileDownloadUrl`` with
  ``{"userName", "repositoryName", "modelNames": null, "filePaths": null, "clientFrom": "0",
  "ignore": null}`` answers every file of the repository at once (no paging, no folders to
  walk): ``{"msgCode": "10000", "data": {"msgCode": "10000", "data": {"modelNames": {...},
  "filePaths": {NAME: {"url", "fileName", "hash"}}}}}``. ``fileName`` is the path inside the
  repository; the bytes come from a plain GET of ``url`` (a presigned object-store URL, so
  it gets no credentials, wherever it points).
* ``hash`` is NOT taken as sha256: the client that once checked it compared it with an MD5 of
  the file's first and last 64 bytes. It is kept as ``RemoteFile.etag``; the engine verifies
  these files against a lock file or a second source.
* There are no revisions: the manifest's revision is ``latest`` and its commit None; asking
  for a specific revision raises RevisionNotFoundError.
* Auth: an OpenXLab JWT in ``Authorization`` (no ``Bearer`` prefix), as the client sends it:
  ``OPENXLAB_TOKEN`` when set, else one minted from the user's access key pair and renewed
  before it expires (``openxlab_auth``).
* The ``url`` of a file is presigned and expires (an object-store signature): ``RemoteFile``
  says so (``expires``), and the engine lists again for fresh URLs when one stops working.

``openxlab`` lists HF-format repositories and ``openxlab-origin`` original-format ones; the
protocol is the same, only the source key (and ``hf_format``) differ.
"""

from __future__ import annotations

from typing import Any

from ..errors import CredentialsRejectedError, GatedRepoError, RepoNotFoundError
from .base import Manifest, RemoteFile
from .catalog import OPENXLAB
from .http import AdapterBase, json_body, safe_url, send, size_or_none
from .openxlab_auth import AccessKey, JwtSource

LISTING_PATH = "/model-center/api/v1/cli/repository/getFileDownloadUrl"
OK = "10000"
LATEST = "latest"
_NOT_FOUND_WORDS = ("not exist", "not found", "不存在", "找不到")
_DENIED_WORDS = ("permission", "unauthor", "forbidden", "login", "token", "权限", "登录", "私有")
_SIZE_KEYS = ("size", "fileSize", "weightRawSize")


class OpenXLabAdapter(AdapterBase):
    """Describes OpenXLab repositories as Manifests (``openxlab`` or ``openxlab-origin``)."""

    default_source = OPENXLAB
    jwt: JwtSource | None = None  # set by use_access_key

    def use_access_key(self, key: AccessKey) -> None:
        """Authenticate with JWTs minted from ``key`` (the factory does this when no
        OPENXLAB_TOKEN is set, which would win)."""
        self.jwt = JwtSource(
            key,
            self.session.endpoint,
            self._sso_post,
            hub=self.session.ctx.hub,
            on_token=self.session.ctx.add_secret,
        )
        self.session.set_auth(self.jwt.headers)

    @staticmethod
    def credentials(token: str) -> dict[str, str]:
        return {"Authorization": token}

    def manifest(self, repo_id: str, revision: str | None = None) -> Manifest:
        if revision is not None and revision != LATEST:
            self.session.ctx.revision_missing(repo_id, revision)
        try:
            return self._manifest(repo_id)
        except GatedRepoError:
            if self.jwt is None:
                raise
            self.jwt.invalidate()  # refused a JWT we thought valid (clock skew, revoked): once more
            return self._manifest(repo_id)

    def _sso_post(self, url: str, body: dict[str, Any]) -> Any:
        """One call of the SSO exchange: no credentials (it is how they are made)."""
        ctx = self.session.ctx
        response = send(
            ctx, self.session.client, "POST", url, json=body, headers={"Accept": "application/json"}
        )
        if response.status_code in (401, 403):
            origin = self.jwt.key.origin if self.jwt is not None else "the access key"
            raise CredentialsRejectedError(
                ctx.hub, origin, f"HTTP {response.status_code} from {safe_url(url)}"
            )
        ctx.raise_for_status(response, repo_id="(sign-in)")
        return json_body(ctx, response)

    def _manifest(self, repo_id: str) -> Manifest:
        owner, _, name = repo_id.partition("/")
        url = self.session.endpoint + LISTING_PATH
        payload = {
            "userName": owner,
            "repositoryName": name,
            "modelNames": None,
            "filePaths": None,
            "clientFrom": "0",
            "ignore": None,
        }
        body = self.session.fetch_json(
            "POST",
            url,
            repo_id=repo_id,
            json=payload,
            headers={"Accept": "application/json"},
        )
        files = [
            self._remote_file(key, entry, repo_id) for key, entry in self._entries(body, repo_id)
        ]
        return self.build_manifest(repo_id, LATEST, None, files)

    # ---------------------------------------------------------------- answer shape

    def _entries(self, body: Any, repo_id: str) -> list[tuple[str, dict[str, Any]]]:
        inner = self._unwrap(body, repo_id)
        inner = self._unwrap(inner, repo_id)
        if not isinstance(inner, dict):
            raise self.session.ctx.protocol("answer has no data.data object")
        out: list[tuple[str, dict[str, Any]]] = []
        for group in ("filePaths", "modelNames"):
            mapping = inner.get(group)
            if mapping is None:
                continue
            if not isinstance(mapping, dict):
                raise self.session.ctx.protocol(f"data.data.{group} is not an object")
            for key, entry in mapping.items():
                if not isinstance(entry, dict):
                    raise self.session.ctx.protocol(f"entry {key!r} of {group} is not an object")
                out.append((key, entry))
        return out

    def _unwrap(self, envelope: Any, repo_id: str) -> Any:
        """Check one ``{msgCode, msg, data}`` layer and return its ``data``."""
        ctx = self.session.ctx
        if not isinstance(envelope, dict) or "data" not in envelope:
            raise ctx.protocol("answer is not a {msgCode, data} object")
        code = str(envelope.get("msgCode", OK))
        if code != OK:
            message = str(envelope.get("msg") or "")
            lowered = message.lower()
            if any(w in lowered for w in _NOT_FOUND_WORDS):
                raise RepoNotFoundError(ctx.hub, repo_id)
            if any(w in lowered for w in _DENIED_WORDS):
                raise ctx.gated(repo_id, None)
            raise ctx.protocol(f"msgCode {code}: {message}")
        return envelope["data"]

    def _remote_file(self, key: str, entry: dict[str, Any], repo_id: str) -> RemoteFile:
        path = entry.get("fileName") or key
        url = entry.get("url")
        if not isinstance(path, str) or not path:
            raise self.session.ctx.protocol(f"entry {key!r} of {repo_id} has no file name")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise self.session.ctx.protocol(f"entry {path!r} of {repo_id} has no http(s) url")
        size = next(
            (s for s in (size_or_none(entry.get(k)) for k in _SIZE_KEYS) if s is not None), None
        )
        digest = entry.get("hash")
        return RemoteFile(
            path=path,
            size=size,
            sha256=None,
            url=url,
            headers={},  # presigned: the signature authorises it; the official client sends nothing
            supports_range=True,
            etag=digest if isinstance(digest, str) and digest else None,
            kind=str(entry.get("type") or "file"),
            expires=True,
        )
