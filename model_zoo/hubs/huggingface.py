"""HuggingFace (and any HF-compatible mirror, e.g. ``HF_ENDPOINT=https://hf-mirror.com``).

Listing goes through ``huggingface_hub.HfApi`` so the official client's view of the protocol
(paging by ``Link: rel=next``, error headers, path quoting) is the one we use:

* ``model_info(repo, revision=REV, files_metadata=True)`` (``GET /api/models/{repo}/revision/
  {rev}?blobs=true``) resolves the revision to a 40-hex commit and, in the same answer, lists
  every file with its size, git blob id and LFS details; an LFS file's sha256 is its ``lfs``
  oid, a small git file has only a git blob id (kept as ``etag``). One round trip instead of two
  matters on a far link (each costs the whole latency before a single byte moves);
* ``list_repo_tree(repo, revision=COMMIT, recursive=True)`` lists the files when the answer
  above lacks a file's details (a mirror that ignores ``blobs=true``), as ``hf download`` does.

Bytes come from ``{endpoint}/{repo}/resolve/{commit}/{path}``, pinned to the commit so every
file of a manifest is from the same revision. huggingface_hub reads ``HF_ENDPOINT`` when it is
imported, so the endpoint is always passed explicitly; the token is passed explicitly too
(``False`` when there is none) so a token saved by ``hf auth login`` is never sent to a mirror.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple, NoReturn
from urllib.parse import quote

import httpx

from ..errors import (
    GatedRepoError,
    HubUnreachableError,
    ModelZooError,
    OfflineError,
    RepoNotFoundError,
    RepoNotFoundOrPrivateError,
    RevisionNotFoundError,
    UsageError,
)
from .base import Manifest, RemoteFile
from .catalog import HF
from .heads import is_commit_id
from .http import AdapterBase, git_blob_or_none, sha256_or_none, size_or_none

DEFAULT_REVISION = "main"
LIBRARY_NAME = "model-zoo"


class HuggingFaceAdapter(AdapterBase):
    """Describes HuggingFace repositories as Manifests. One instance per endpoint."""

    default_source = HF
    timeout = 30.0  # per request that huggingface_hub lets us bound (model info)
    # The tree listing goes through huggingface_hub's shared client, which has no timeout;
    # the whole listing must finish within this many seconds or it counts as unreachable.
    listing_deadline = 120.0

    def __init__(
        self,
        endpoint: str,
        token: str | None = None,
        *,
        client: httpx.Client | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__(endpoint, token, client=client, source=source)
        self._token = token

    # ---------------------------------------------------------------- public

    def manifest(self, repo_id: str, revision: str | None = None) -> Manifest:
        rev = revision or DEFAULT_REVISION
        api = self._api()
        with self._mapped_errors(repo_id, rev, explicit=revision is not None):
            info = api.model_info(repo_id, revision=rev, timeout=self.timeout, files_metadata=True)
            self._check_gate(repo_id, info)
            commit = getattr(info, "sha", None)
            if not isinstance(commit, str) or not is_commit_id(commit):
                raise self.session.ctx.protocol(f"model info of {repo_id} has no 40-hex sha")
            commit = commit.lower()
            entries = _listed_files(info)
            if entries is None:
                tree = self._within_deadline(
                    lambda cancel: _until(
                        cancel, api.list_repo_tree(repo_id, revision=commit, recursive=True)
                    )
                )
                entries = [
                    _Listed(e.path, e.size, e.blob_id, e.lfs)
                    for e in tree
                    if hasattr(e, "blob_id")  # skips RepoFolder entries
                ]
        files = [self._remote_file(repo_id, commit, entry) for entry in entries]
        if getattr(info, "gated", False) and files:
            self._check_access(repo_id, files[0])
        return self.build_manifest(repo_id, rev, commit, files)

    def file_url(self, repo_id: str, commit: str, path: str) -> str:
        return f"{self.session.endpoint}/{repo_id}/resolve/{commit}/{quote(path)}"

    # ---------------------------------------------------------------- internals

    def _api(self) -> Any:
        from huggingface_hub import HfApi

        return HfApi(
            endpoint=self.session.endpoint,
            token=self._token or False,
            library_name=LIBRARY_NAME,
        )

    def _remote_file(self, repo_id: str, commit: str, entry: _Listed) -> RemoteFile:
        path = entry.path
        if not isinstance(path, str) or not path:
            raise self.session.ctx.protocol(f"tree entry without a path in {repo_id}")
        lfs = entry.lfs
        sha256 = sha256_or_none(getattr(lfs, "sha256", None)) if lfs is not None else None
        url = self.file_url(repo_id, commit, path)
        blob_id = entry.blob_id
        return RemoteFile(
            path=path,
            size=size_or_none(entry.size),
            sha256=sha256,
            url=url,
            headers=self.session.file_headers(url),
            supports_range=True,
            etag=sha256 or (blob_id if isinstance(blob_id, str) and blob_id else None),
            # an LFS entry's blob id is its pointer's; only a plain git file's is its content's
            git_blob=git_blob_or_none(blob_id) if lfs is None else None,
        )

    def _check_gate(self, repo_id: str, info: Any) -> None:
        """A gated repository lists its files to anyone but serves them only with a token:
        without one, say so now (naming the variable) rather than fail on every file."""
        if self._token or not getattr(info, "gated", False):
            return
        ctx = self.session.ctx
        # 401 is what the hub answers for these files without a token.
        raise GatedRepoError(ctx.hub, repo_id, token_env=ctx.token_env, status=401)

    def _check_access(self, repo_id: str, first: RemoteFile) -> None:
        """With a token, a gated repository still lists its files when the token's account
        has not been granted access: one HEAD tells, so the user hears which variable to fix
        once instead of an "access refused" per file from the download."""
        self.session.request("HEAD", first.url, repo_id=repo_id, follow_redirects=False)

    def _within_deadline(self, work: Callable[[threading.Event], list[Any]]) -> list[Any]:
        """Run ``work`` (given a cancel event) and give up (unreachable) after
        ``listing_deadline``; a stuck call is left to end on its own (``deadline``)."""
        from ..deadline import run_within

        got = run_within(work, self.listing_deadline, name="model-zoo-hf-listing")
        if not got.finished:
            raise HubUnreachableError(
                self.session.ctx.hub,
                self.session.ctx.endpoint,
                reason=f"the file listing did not finish within {self.listing_deadline:g} s",
            )
        return got.result()

    @contextmanager
    def _mapped_errors(self, repo_id: str, rev: str, *, explicit: bool) -> Iterator[None]:
        """Turn huggingface_hub and transport exceptions into model-zoo errors."""
        import httpx2
        from huggingface_hub import errors as hf

        ctx = self.session.ctx

        def not_found(_: object) -> NoReturn:
            if explicit and self._repo_exists(repo_id):
                ctx.revision_missing(repo_id, rev)
            raise RepoNotFoundError(ctx.hub, repo_id)

        try:
            yield
        except ModelZooError:  # already ours (a hub error, a usage error): as it is
            raise
        except hf.GatedRepoError as exc:
            raise GatedRepoError(
                ctx.hub, repo_id, token_env=ctx.token_env, status=_status(exc)
            ) from None
        except hf.RevisionNotFoundError:
            raise RevisionNotFoundError(ctx.hub, repo_id, rev) from None
        except hf.RepositoryNotFoundError as exc:
            if _status(exc) == 401 and not self._token:  # HF's answer for private repos too
                raise RepoNotFoundOrPrivateError(
                    ctx.hub, repo_id, token_env=ctx.token_env
                ) from None
            raise RepoNotFoundError(ctx.hub, repo_id) from None
        except hf.DisabledRepoError:
            raise RepoNotFoundError(ctx.hub, repo_id) from None
        except hf.HFValidationError:
            raise UsageError(f"{repo_id!r} is not a valid {ctx.hub} repository id") from None
        except hf.OfflineModeIsEnabled:
            raise OfflineError(f"{ctx.hub} listing of {repo_id}") from None
        except hf.HfHubHTTPError as exc:
            response = getattr(exc, "response", None)
            if response is None:
                raise ctx.protocol(str(exc)) from None
            ctx.raise_for_status(response, repo_id=repo_id, not_found=not_found)
            raise ctx.protocol(f"HTTP {response.status_code}") from None
        except (httpx2.HTTPError, httpx.HTTPError, ConnectionError, TimeoutError) as exc:
            raise ctx.unreachable(exc) from None
        except (KeyError, TypeError, ValueError) as exc:
            # huggingface_hub parses the JSON into dataclasses; a malformed answer lands here.
            raise ctx.protocol(f"malformed answer ({type(exc).__name__}: {exc})") from None

    def _repo_exists(self, repo_id: str) -> bool:
        url = f"{self.session.endpoint}/api/models/{repo_id}"
        return self.session.json_if_ok(url) is not None


class _Listed(NamedTuple):
    """One file as either listing describes it (a tree entry or a model-info sibling)."""

    path: Any
    size: Any
    blob_id: Any
    lfs: Any


def _listed_files(info: Any) -> list[_Listed] | None:
    """The files of a model-info answer asked with ``blobs=true``, or None when any file lacks
    its size or blob id (the server ignored the flag): then only the tree listing is complete."""
    siblings = getattr(info, "siblings", None)
    if siblings is None:
        return None
    out = [_Listed(s.rfilename, s.size, s.blob_id, s.lfs) for s in siblings]
    if any(e.size is None or not e.blob_id for e in out):
        return None
    return out


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _until(cancel: threading.Event, entries: Iterator[Any]) -> list[Any]:
    """The listing's entries, page by page, stopping once the caller has given up: no more
    requests (and no retry warnings) from a listing nobody waits for."""
    out: list[Any] = []
    for entry in entries:
        if cancel.is_set():
            break
        out.append(entry)
    return out
