"""Modelers (modelers.cn, the openMind hub) over its REST protocol.

Protocol, as the official ``openmind_hub`` client speaks it:

* ``GET /api/v1/file/{repo}?path=DIR&ref=REV`` lists ONE directory:
  ``{"data": {"tree": [{"type": "file"|"dir", "path", "size", "etag", "is_lfs"}],
  "last_commit": {"commit": {"commit_sha": ...}}}}``. Folders are walked one request each;
  ``path`` in an entry is relative to the repository root.
* An LFS file's ``etag`` is its sha256 (64 hex); a small git file's is its git blob sha1 (40
  hex), which the official client checks (``_verify_integrity``) and so do we (``git_blob``).
* Bytes: ``GET /api/v1/file/{repo}/{rev}/media/{path}``. The official client puts a commit id
  there when it is given one, so the hub serves by commit: model-zoo lists the branch once to
  learn its head, then lists and downloads at that commit, so a branch that moves mid-pull
  cannot mix two revisions. A hub that refuses commit refs is listed and served by branch, and
  the manifest says so (``pinned=False``): the pull re-reads the head before trusting the files.
* Auth: ``Authorization: Bearer TOKEN``. 404 bodies carry ``code: "ref_not_exist"`` for an
  unknown revision; 401 means gated, 418 "not on the white list" (no token helps).
* Downloads may be redirected to a CDN. The official client (``_download_request_wrapper``)
  follows only https redirects to hosts under its white list (``DOWNLOAD_CDN_HOSTNAME_WHITE_LIST``)
  and sends them the same headers, token included; it refuses any other target. model-zoo sends
  the token to exactly those hosts (``RemoteFile.credential_domains``) and follows other
  redirects without it (the bytes are checked against the listing either way).
* The default branch is ``main``; ``last_commit`` of the root listing is the branch head.
"""

from __future__ import annotations

from typing import Any, NoReturn
from urllib.parse import quote

import httpx

from ..errors import RepoNotFoundError
from .base import Manifest, RemoteFile
from .catalog import MODELERS
from .heads import is_commit_id
from .http import AdapterBase, HubSession, git_blob_or_none, sha256_or_none, size_or_none

DEFAULT_REVISION = "main"
REF_NOT_EXIST = "ref_not_exist"
# openmind_hub 1.3.0 constants.DOWNLOAD_CDN_HOSTNAME_WHITE_LIST: the hosts its downloads may be
# redirected to, and that then receive the token.
CDN_DOMAINS: tuple[str, ...] = (
    "openmind.cn",
    "osinfra.cn",
    "modelers.cn",
    "gitcode.com",
    "gitcode.net",
    "mindspore.cn",
)
# A repository with more folders than this is treated as a broken (or hostile) listing.
MAX_DIRECTORIES = 10_000


class ModelersAdapter(AdapterBase):
    """Describes Modelers repositories as Manifests. One instance per endpoint."""

    default_source = MODELERS

    def manifest(self, repo_id: str, revision: str | None = None) -> Manifest:
        rev = revision or DEFAULT_REVISION
        explicit = revision is not None
        root = self._directory(repo_id, rev, "", explicit=explicit)
        commit = _head_commit(root)
        if commit is None and is_commit_id(rev):
            commit = rev.lower()
        ref, pinned = rev, is_commit_id(rev)
        if commit is not None and not pinned:
            at_commit = self._directory_at_commit(repo_id, commit)
            if at_commit is not None:
                root, ref, pinned = at_commit, commit, True

        files: list[RemoteFile] = []
        pending: list[dict[str, Any]] = [root]
        seen_dirs: set[str] = set()
        while pending:
            for entry in _tree(self.session, pending.pop()):
                path = entry.get("path")
                if not isinstance(path, str) or not path:
                    raise self.session.ctx.protocol(f"tree entry without a path in {repo_id}")
                if entry.get("type") == "dir":
                    if path in seen_dirs:
                        continue
                    seen_dirs.add(path)
                    if len(seen_dirs) > MAX_DIRECTORIES:
                        raise self.session.ctx.protocol(
                            f"{repo_id} lists more than {MAX_DIRECTORIES} folders"
                        )
                    pending.append(self._directory(repo_id, ref, path, explicit=explicit))
                else:  # "file", or whatever else the hub calls it (the engine decides)
                    files.append(self._remote_file(repo_id, ref, path, entry))
        return self.build_manifest(repo_id, rev, commit, files, pinned=pinned or commit is None)

    def head_commit(self, repo_id: str, revision: str | None = None) -> str | None:
        """The commit ``revision`` (default branch when None) points at now."""
        return _head_commit(
            self._directory(repo_id, revision or DEFAULT_REVISION, "", explicit=False)
        )

    def _directory_at_commit(self, repo_id: str, commit: str) -> dict[str, Any] | None:
        """The root listed at ``commit``, or None when the hub does not serve commit refs."""
        quoted = quote(repo_id, safe="/")
        data = self.session.json_if_ok(
            f"{self.session.endpoint}/api/v1/file/{quoted}", params={"path": "", "ref": commit}
        )
        data = data.get("data") if isinstance(data, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("tree"), list):
            return None
        return data if _head_commit(data) in (None, commit) else None

    def file_url(self, repo_id: str, revision: str, path: str) -> str:
        return (
            f"{self.session.endpoint}/api/v1/file/{quote(repo_id, safe='/')}/"
            f"{quote(revision, safe='')}/media/{quote(path)}"
        )

    # ---------------------------------------------------------------- listing

    def _remote_file(self, repo_id: str, rev: str, path: str, entry: dict[str, Any]) -> RemoteFile:
        url = self.file_url(repo_id, rev, path)
        etag = entry.get("etag")
        sha256 = sha256_or_none(etag)
        return RemoteFile(
            path=path,
            size=size_or_none(entry.get("size")),
            sha256=sha256,
            url=url,
            headers=self.session.file_headers(url),
            supports_range=True,
            etag=etag if isinstance(etag, str) and etag else None,
            kind=str(entry.get("type") or "file"),
            git_blob=None if sha256 else git_blob_or_none(etag),
            credential_domains=CDN_DOMAINS,
        )

    def _directory(self, repo_id: str, rev: str, path: str, *, explicit: bool) -> dict[str, Any]:
        url = f"{self.session.endpoint}/api/v1/file/{quote(repo_id, safe='/')}"

        def not_found(response: httpx.Response) -> NoReturn:
            self._raise_not_found(response, repo_id, rev, explicit=explicit)

        params = {"path": path, "ref": rev}
        body = self.session.fetch_json(
            "GET", url, repo_id=repo_id, params=params, not_found=not_found
        )
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise self.session.ctx.protocol("listing has no data object", url)
        return data

    def _raise_not_found(
        self, response: httpx.Response, repo_id: str, rev: str, *, explicit: bool
    ) -> NoReturn:
        code = None
        try:
            body = response.json()
            code = body.get("code") if isinstance(body, dict) else None
        except ValueError:
            pass
        if code == REF_NOT_EXIST or (explicit and self._repo_exists(repo_id)):
            self.session.ctx.revision_missing(repo_id, rev)
        raise RepoNotFoundError(self.session.ctx.hub, repo_id)

    def _repo_exists(self, repo_id: str) -> bool:
        """Whether the repository answers at all: its default branch, or its model page."""
        quoted = quote(repo_id, safe="/")
        listing = self.session.json_if_ok(
            f"{self.session.endpoint}/api/v1/file/{quoted}",
            params={"path": "", "ref": DEFAULT_REVISION},
        )
        if listing is not None:
            return True
        return self.session.json_if_ok(f"{self.session.endpoint}/api/v1/model/{quoted}") is not None


def _tree(session: HubSession, data: dict[str, Any]) -> list[dict[str, Any]]:
    tree = data.get("tree")
    if not isinstance(tree, list) or not all(isinstance(e, dict) for e in tree):
        raise session.ctx.protocol("data.tree is not a list of objects")
    return tree


def _head_commit(data: dict[str, Any]) -> str | None:
    last = data.get("last_commit")
    commit = last.get("commit") if isinstance(last, dict) else None
    sha = commit.get("commit_sha") if isinstance(commit, dict) else None
    return sha.lower() if isinstance(sha, str) and is_commit_id(sha) else None
