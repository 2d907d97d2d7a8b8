"""The JSON shapes of the four hub protocols, rendered from one neutral listing.

Kept apart from the HTTP machinery so the wire formats can be read (and compared with the
official clients and ``shared/reference/internlm-facts.md`` section 6) in one place.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from .repo_store import Snapshot, lfs_pointer

HF = "hf"
MODELSCOPE = "modelscope"
MODELERS = "modelers"
OPENXLAB = "openxlab"
PROTOCOLS: tuple[str, ...] = (HF, MODELSCOPE, MODELERS, OPENXLAB)
OLLAMA = "ollama"  # the Ollama (OCI) registry protocol, for GGUF files only; not a hub adapter


@dataclass(frozen=True)
class Entry:
    """One listed path, protocol-neutral. ``type`` is "file", "directory" or "symlink"."""

    path: str
    type: str
    size: int = 0
    sha256: str = ""
    git_oid: str = ""
    lfs: bool = False
    target: str | None = None
    injected: bool = False  # added by a hook (a test fault), not held by the store

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))

    @property
    def modelers_etag(self) -> str:
        # Modelers: a 64-hex etag is the sha256 (LFS files); small git files carry their blob id.
        return self.sha256 if self.lfs else self.git_oid


def listing(snap: Snapshot) -> list[Entry]:
    """Every file and folder of ``snap``, sorted by path."""
    entries: list[Entry] = [
        Entry(path=d, type="directory", git_oid=snap.tree_oid(d)) for d in snap.directories()
    ]
    entries += [
        Entry(path=f.path, type="file", size=f.size, sha256=f.sha256, git_oid=f.git_oid, lfs=f.lfs)
        for f in snap.files.values()
    ]
    entries.sort(key=lambda e: e.path)
    return entries


def children(entries: list[Entry], folder: str) -> list[Entry]:
    """Direct children of ``folder`` ("" for the root). Injected entries (``MirrorHooks.listing``)
    are all shown at the root, where a client walking the tree is sure to meet them."""
    out = []
    for e in entries:
        parent = e.path.rsplit("/", 1)[0] if "/" in e.path else ""
        if (e.injected and folder == "") or (parent == folder and not e.injected):
            out.append(e)
    return out


def descendants(entries: list[Entry], folder: str) -> list[Entry]:
    if not folder:
        return list(entries)
    prefix = folder + "/"
    return [e for e in entries if e.path.startswith(prefix)]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


BEIJING = timezone(timedelta(hours=8))


def beijing_iso(ts: float) -> str:
    """An ISO time in China Standard Time, the form the hubs in China write (``...+08:00``)."""
    return datetime.fromtimestamp(ts, tz=BEIJING).isoformat(timespec="seconds")


# -- HuggingFace -------------------------------------------------------------------------------
def hf_entry(e: Entry) -> dict[str, Any]:
    if e.type == "directory":
        return {"type": "directory", "oid": e.git_oid, "size": 0, "path": e.path}
    out: dict[str, Any] = {"type": e.type, "oid": e.git_oid, "size": e.size, "path": e.path}
    if e.type == "symlink":
        out["target"] = e.target
    elif e.lfs:
        out["lfs"] = {"oid": e.sha256, "size": e.size, "pointerSize": e.pointer_size}
    return out


def hf_model_info(snap: Snapshot, entries: list[Entry], *, blobs: bool) -> dict[str, Any]:
    siblings = []
    for e in entries:
        if e.type == "directory":
            continue
        s: dict[str, Any] = {"rfilename": e.path}
        if blobs:
            s["size"] = e.size
            s["blobId"] = e.git_oid
            if e.lfs:
                s["lfs"] = {"sha256": e.sha256, "size": e.size, "pointerSize": e.pointer_size}
        siblings.append(s)
    ns = snap.repo_id.split("/")[0]
    when = iso(snap.last_modified or time.time())
    return {
        "_id": snap.commit[:24],
        "id": snap.repo_id,
        "modelId": snap.repo_id,
        "author": ns,
        "sha": snap.commit,
        "lastModified": when,
        "createdAt": when,
        "private": False,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "library_name": "transformers",
        "siblings": siblings,
        "spaces": [],
        "usedStorage": sum(e.size for e in entries if e.type != "directory"),
    }


def hf_error(status: int, code: str | None, message: str) -> tuple[dict[str, Any], dict[str, str]]:
    # Header values are latin-1 on the wire: a path or revision in another script (a Chinese
    # file name) is escaped there, and kept whole in the JSON body.
    headers = {"X-Error-Message": message.encode("ascii", "backslashreplace").decode("ascii")}
    if code:
        headers["X-Error-Code"] = code
    return {"error": message}, headers


# -- ModelScope --------------------------------------------------------------------------------
def ms_envelope(
    data: Any, *, code: int = 200, message: str = "success", success: bool = True
) -> dict[str, Any]:
    return {
        "Code": code,
        "Data": data,
        "Message": message,
        "RequestId": hashlib.sha1(f"{time.time_ns()}".encode()).hexdigest()[:32],
        "Success": success,
    }


def ms_file(e: Entry, snap: Snapshot) -> dict[str, Any]:
    kind = {"directory": "tree", "file": "blob"}.get(e.type, e.type)
    out: dict[str, Any] = {
        "Id": e.git_oid,
        "Name": e.name,
        "Path": e.path,
        "Type": kind,
        "Size": e.size,
        "Sha256": e.sha256,
        "IsLFS": e.lfs,
        "Mode": "40000"
        if e.type == "directory"
        else ("120000" if e.type == "symlink" else "100644"),
        "Revision": snap.commit,
        "CommitId": snap.commit,
        "CommitMessage": "",
        "CommittedDate": int(snap.last_modified),
    }
    if e.type == "symlink":
        out["Target"] = e.target
    return out


def ms_model_info(snap: Snapshot) -> dict[str, Any]:
    ns, name = snap.repo_id.split("/")
    return {
        "Id": int(snap.commit[:8], 16),
        "Name": name,
        "Path": ns,
        "ChineseName": name,
        "Description": "",
        "Revision": "master",
        "LatestCommitId": snap.commit,
        "CreatedTime": int(snap.last_modified),
        "LastUpdatedTime": int(snap.last_modified),
        "IsPublished": 1,
        "Visibility": 5,
    }


# -- Modelers ----------------------------------------------------------------------------------
def modelers_entry(e: Entry) -> dict[str, Any]:
    kind = {"directory": "dir"}.get(e.type, e.type)
    out: dict[str, Any] = {
        "name": e.name,
        "path": e.path,
        "type": kind,
        "size": e.size,
        "etag": "" if e.type == "directory" else e.modelers_etag,
        "is_lfs": e.lfs,
    }
    if e.type == "symlink":
        out["target"] = e.target
    return out


def modelers_envelope(data: Any, *, code: int | str = 200, msg: str = "success") -> dict[str, Any]:
    return {"code": code, "msg": msg, "data": data}


def modelers_last_commit(snap: Snapshot) -> dict[str, Any]:
    # openmind_hub parses ``created`` with datetime.fromisoformat after stripping a trailing
    # "Z" or "+08:00" (get_repo_last_commit): an answer without it fails the client.
    return {
        "commit": {
            "commit_sha": snap.commit,
            "message": "",
            "created": beijing_iso(snap.last_modified),
            "date": iso(snap.last_modified),
        }
    }


def modelers_model_info(snap: Snapshot, *, private: bool) -> dict[str, Any]:
    """``GET /api/v1/model/{repo}``: openmind_hub's ``model_info`` (checked before downloads)."""
    ns, name = snap.repo_id.split("/")
    when = beijing_iso(snap.last_modified)
    return {
        "id": snap.commit[:24],
        "name": name,
        "owner": ns,
        "fullname": snap.repo_id,
        "visibility": "private" if private else "public",
        "create_at": when,
        "updated_at": when,
        "download_count": 0,
        "like_count": 0,
        "labels": {"task": "text-generation", "frameworks": ["PyTorch"], "others": []},
    }


# -- OpenXLab ----------------------------------------------------------------------------------
def openxlab_file(e: Entry, url: str) -> dict[str, Any]:
    out: dict[str, Any] = {"url": url, "fileName": e.path, "hash": e.sha256, "size": e.size}
    if e.type == "symlink":
        out["type"] = "symlink"
        out["target"] = e.target
    return out


def openxlab_envelope(data: Any, *, code: str = "10000", msg: str = "Success") -> dict[str, Any]:
    return {"msg": msg, "msgCode": code, "data": data}


def storage_error(code: str, message: str) -> bytes:
    """The XML error an object store (OSS, S3) answers a presigned URL with."""
    from xml.sax.saxutils import escape

    request_id = hashlib.sha1(str(time.time_ns()).encode()).hexdigest()[:24].upper()
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>\n'
        f"  <Code>{escape(code)}</Code>\n  <Message>{escape(message)}</Message>\n"
        f"  <RequestId>{request_id}</RequestId>\n"
        "</Error>\n"
    ).encode()


def error_body(
    protocol: str, status: int, code: str | None, message: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """The error JSON and headers each hub sends."""
    if protocol == HF:
        return hf_error(status, code, message)
    if protocol == OLLAMA:  # the OCI distribution spec's error shape
        return {"errors": [{"code": code or "UNKNOWN", "message": message}]}, {}
    if protocol == MODELSCOPE:
        return ms_envelope(None, code=status, message=message, success=False), {}
    if protocol == MODELERS:
        # Modelers answers with string codes for the not-found cases its client tells apart.
        named = {"RevisionNotFound": "ref_not_exist", "EntryNotFound": "branch_or_path_not_found"}
        return modelers_envelope(None, code=named.get(code or "", status), msg=message), {}
    return openxlab_envelope(None, code=str(status), msg=message), {}
