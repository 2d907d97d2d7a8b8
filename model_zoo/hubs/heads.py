"""Which commit a branch or tag points at now, in one small request, with the standard library.

For a no-op pull: when the store already holds the commit a revision points at, nothing else
is needed, so the answer must come without the listing machinery (httpx, huggingface_hub: a
tenth of a second of imports). The URLs are the same ones the adapters read the commit from:
HuggingFace's revision info (``sha``), Modelers' root listing (``last_commit``), ModelScope's
revision map (``CommitId``). OpenXLab has no revisions. Any failure answers None, and the pull
then takes its usual path, which reports errors properly.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from .catalog import HF, MODELERS, MODELSCOPE

_MAX_BODY = 4 * 1024 * 1024  # a revision answer is small; a larger one is not what we asked for
_HEX = frozenset("0123456789abcdef")


def is_commit_id(value: str | None) -> bool:
    """A full 40-hex git commit id."""
    return value is not None and len(value) == 40 and set(value.lower()) <= _HEX


def head_url(source: str, endpoint: str, repo_id: str, revision: str | None) -> str | None:
    """The URL whose JSON names the commit ``revision`` (default branch when None) points at."""
    ep, repo = endpoint.rstrip("/"), quote(repo_id, safe="/")
    if source == HF:
        return f"{ep}/api/models/{repo}/revision/{quote(revision or 'main', safe='')}"
    if source == MODELERS:
        return f"{ep}/api/v1/file/{repo}?path=&ref={quote(revision or 'main', safe='')}"
    if source == MODELSCOPE:
        return f"{ep}/api/v1/models/{repo}/revisions"
    return None


def commit_in(source: str, body: Any, revision: str | None) -> str | None:
    """The 40-hex commit in a ``head_url`` answer, or None."""
    found: Any = None
    if source == HF and isinstance(body, dict):
        found = body.get("sha")
    elif source == MODELERS and isinstance(body, dict):
        last = (
            (body.get("data") or {}).get("last_commit")
            if isinstance(body.get("data"), dict)
            else None
        )
        commit = last.get("commit") if isinstance(last, dict) else None
        found = commit.get("commit_sha") if isinstance(commit, dict) else None
    elif source == MODELSCOPE and isinstance(body, dict):
        data = body.get("Data") if isinstance(body.get("Data"), dict) else {}
        revision_map = data.get("RevisionMap") if isinstance(data, dict) else None
        for group in ("Branches", "Tags"):
            for item in (revision_map or {}).get(group) or []:
                if isinstance(item, dict) and item.get("Revision") == (revision or "master"):
                    found = item.get("CommitId")
    return found.lower() if isinstance(found, str) and is_commit_id(found) else None


def head_commit(
    source: str,
    endpoint: str,
    repo_id: str,
    revision: str | None,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> str | None:
    """The commit ``revision`` of ``repo_id`` points at on ``source`` now, or None when that
    cannot be told quickly (no such answer, an error, a hub without revisions)."""
    url = head_url(source, endpoint, repo_id, revision)
    if url is None:
        return None
    from ..download.http_fetch import StdlibTransport, Timeouts, TransferError

    transport = StdlibTransport(
        Timeouts(connect=timeout, response=timeout, stall=timeout), max_idle_per_origin=1
    )
    try:
        resp = transport.get(url, {"Accept": "application/json", **(headers or {})}, None)
        try:
            if resp.status != 200:
                return None
            data = bytearray()
            chunk = memoryview(bytearray(64 * 1024))
            while len(data) < _MAX_BODY:
                got = resp.read_some(chunk)
                if got == 0:
                    break
                data += chunk[:got]
            body = json.loads(bytes(data))
        finally:
            resp.close(reusable=False)
    except (TransferError, OSError, ValueError):
        return None
    finally:
        transport.close()
    return commit_in(source, body, revision)
