"""ModelScope (modelscope.cn) over its REST protocol: file listing with sha256, ranged bytes.

Protocol, as the official ``modelscope`` client speaks it:

* ``GET /api/v1/models/{repo}/repo/files?Revision=REV&Recursive=True`` answers
  ``{"Code": 200, "Success": true, "Data": {"Files": [{"Path", "Type", "Size", "Sha256"}]}}``.
  It does not page: it silently stops at 3000 entries. A listing that comes back that full
  is re-done one directory at a time (``Root=DIR&Recursive=False``).
* Bytes: ``GET /api/v1/models/{repo}/repo?Revision=REV&FilePath=PATH``, Range supported.
* Errors arrive either as an HTTP status or as HTTP 200 with ``Success: false``.
* Auth: the access token as cookie ``m_session_id`` and as ``Authorization: Bearer``.
* The default branch is ``master``. ``Manifest.commit`` is the pinned 40-hex revision, or the
  ``CommitId`` that ``GET /api/v1/models/{repo}/revisions`` lists for the branch or tag when it
  lists one (not documented, so used only when present), else None.
"""

from __future__ import annotations

from typing import Any, NoReturn
from urllib.parse import quote, quote_plus

import httpx

from ..errors import HubError, RepoNotFoundError
from .base import Manifest, RemoteFile
from .catalog import MODELSCOPE
from .heads import is_commit_id
from .http import AdapterBase, sha256_or_none, size_or_none

DEFAULT_REVISION = "master"
# The server's cap on one repo/files answer (modelscope_hub.constants.REPO_FILES_TRUNCATION_LIMIT).
LISTING_CAP = 3000

_NOT_FOUND_WORDS = ("not exist", "not found", "does not exist", "不存在")
_DENIED_WORDS = (
    "unauthorized",
    "permission",
    "forbidden",
    "access denied",
    "login",
    "无权",
    "权限",
)


class ModelScopeAdapter(AdapterBase):
    """Describes ModelScope repositories as Manifests. One instance per endpoint."""

    default_source = MODELSCOPE
    listing_cap = LISTING_CAP

    @staticmethod
    def credentials(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Cookie": f"m_session_id={token}"}

    def manifest(self, repo_id: str, revision: str | None = None) -> Manifest:
        rev = revision or DEFAULT_REVISION
        files = []
        for entry in self._list(repo_id, rev, explicit=revision is not None):
            kind = _entry_type(entry)
            if kind == "tree":
                continue
            path = _entry_path(entry)
            if not path:
                raise self.session.ctx.protocol(f"file entry without a path in {repo_id}")
            url = self.file_url(repo_id, rev, path)
            files.append(
                RemoteFile(
                    path=path,
                    size=size_or_none(entry.get("Size", entry.get("size"))),
                    sha256=sha256_or_none(entry.get("Sha256", entry.get("sha256"))),
                    url=url,
                    headers=self.session.file_headers(url),
                    supports_range=True,
                    kind="file" if kind == "blob" else kind,
                )
            )
        commit = rev.lower() if is_commit_id(rev) else self._commit_of(repo_id, rev)
        return self.build_manifest(repo_id, rev, commit, files)

    def file_url(self, repo_id: str, revision: str, path: str) -> str:
        return (
            f"{self.session.endpoint}/api/v1/models/{quote(repo_id, safe='/')}/repo"
            f"?Revision={quote_plus(revision)}&FilePath={quote_plus(path)}"
        )

    def _commit_of(self, repo_id: str, rev: str) -> str | None:
        """The commit a branch or tag points at, when the revisions list publishes one.

        Best effort: ModelScope's revision entries are not documented to carry a commit id,
        so any failure or absence just leaves the manifest without one.
        """
        url = f"{self.session.endpoint}/api/v1/models/{quote(repo_id, safe='/')}/revisions"
        try:
            body = self.session.json_if_ok(url)
        except HubError:
            return None
        data = body.get("Data") if isinstance(body, dict) else None
        revision_map = data.get("RevisionMap") if isinstance(data, dict) else None
        if not isinstance(revision_map, dict):
            return None
        for group in ("Branches", "Tags"):
            for item in revision_map.get(group) or []:
                if isinstance(item, dict) and item.get("Revision") == rev:
                    commit = item.get("CommitId")
                    return (
                        commit.lower() if isinstance(commit, str) and is_commit_id(commit) else None
                    )
        return None

    # ---------------------------------------------------------------- listing

    def _list(self, repo_id: str, rev: str, *, explicit: bool) -> list[dict[str, Any]]:
        entries = self._page(repo_id, rev, explicit=explicit, recursive=True)
        if len(entries) < self.listing_cap:
            return entries
        # The answer hit the server's cap: walk the tree one directory at a time.
        collected = {_entry_path(e): e for e in entries}
        pending: list[str | None] = [None]
        seen: set[str] = set()
        while pending:
            root = pending.pop()
            shallow = self._page(repo_id, rev, explicit=explicit, recursive=False, root=root)
            if len(shallow) >= self.listing_cap:
                raise self.session.ctx.protocol(
                    f"directory {root or '/'} of {repo_id} holds {self.listing_cap} or more "
                    "entries, more than ModelScope can list"
                )
            for entry in shallow:
                path = _entry_path(entry)
                collected.setdefault(path, entry)
                if _entry_type(entry) == "tree" and path and path not in seen:
                    seen.add(path)
                    pending.append(path)
        return list(collected.values())

    def _page(
        self, repo_id: str, rev: str, *, explicit: bool, recursive: bool, root: str | None = None
    ) -> list[dict[str, Any]]:
        params = {"Revision": rev, "Recursive": "True" if recursive else "False"}
        if root:
            params["Root"] = root
        url = f"{self.session.endpoint}/api/v1/models/{quote(repo_id, safe='/')}/repo/files"

        def not_found(_: httpx.Response) -> NoReturn:
            self._raise_not_found(repo_id, rev if explicit else None)

        body = self.session.fetch_json(
            "GET", url, repo_id=repo_id, params=params, not_found=not_found
        )
        self._check_envelope(body, repo_id, rev if explicit else None)
        data = body.get("Data", body) if isinstance(body, dict) else body
        if isinstance(data, dict):
            if "Files" not in data and "files" not in data:
                raise self.session.ctx.protocol("listing has no Data.Files", url)
            data = data.get("Files", data.get("files")) or []
        if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
            raise self.session.ctx.protocol("Data.Files is not a list of objects", url)
        return data

    # ---------------------------------------------------------------- errors

    def _check_envelope(self, body: Any, repo_id: str, revision: str | None) -> None:
        """ModelScope reports some failures as HTTP 200 with ``Success: false``."""
        if not isinstance(body, dict):
            return
        code = body.get("Code", body.get("code"))
        failed = body.get("Success") is False or code not in (None, 200, "200")
        if not failed:
            return
        message = str(body.get("Message") or body.get("message") or "")
        lowered = message.lower()
        if any(w in lowered for w in _NOT_FOUND_WORDS):
            self._raise_not_found(repo_id, revision)
        if any(w in lowered for w in _DENIED_WORDS):
            ctx = self.session.ctx
            raise ctx.gated(repo_id, None)
        raise self.session.ctx.protocol(f"request failed (code {code}): {message}")

    def _raise_not_found(self, repo_id: str, revision: str | None) -> NoReturn:
        """A 404 names the revision when the repository itself exists."""
        if revision is not None and self._repo_exists(repo_id):
            self.session.ctx.revision_missing(repo_id, revision)
        raise RepoNotFoundError(self.session.ctx.hub, repo_id)

    def _repo_exists(self, repo_id: str) -> bool:
        body = self.session.json_if_ok(
            f"{self.session.endpoint}/api/v1/models/{quote(repo_id, safe='/')}"
        )
        return isinstance(body, dict) and body.get("Success") is not False


def _entry_path(entry: dict[str, Any]) -> str:
    value = entry.get("Path", entry.get("path"))
    return value if isinstance(value, str) else ""


def _entry_type(entry: dict[str, Any]) -> str:
    value = entry.get("Type", entry.get("type", "blob"))
    return value if isinstance(value, str) else "blob"
