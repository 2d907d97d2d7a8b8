"""Ollama's registry protocol over the GGUF files of a repository store, as hf.co serves it.

``ollama pull http://MIRROR:PORT/{namespace}/{name}:{tag}`` (with ``--insecure`` for http)
asks, as Ollama's ``server/images.go`` and ``server/download.go`` do:

  GET  /v2/{ns}/{name}/manifests/{tag}   Accept: the Docker v2 manifest type (DOCKER_MANIFEST)
  HEAD /v2/{ns}/{name}/blobs/{digest}    the size (Content-Length)
  GET  /v2/{ns}/{name}/blobs/{digest}    the "direct URL": the Location header of the final answer
  GET  <direct URL>  Range: bytes=a-b    the blob in parts, then sha256 over the whole file

A tag is a quantization level (``q4_k_m``, case-insensitive; ``latest`` or none: Q4_K_M when the
repository has it, else its first GGUF file), as on hf.co. The manifest is a Docker v2 (or, when
only that is accepted, OCI) image manifest: a config blob (Ollama's ``ConfigV2``: format, family,
parameter size, file type) and layers with Ollama's media types: the GGUF file itself
(``application/vnd.ollama.image.model``, its digest the sha256 the store already knows), the Go
chat template, the system prompt, the params (stops and sampling defaults) and the licence
(``model_zoo.ollama.modelfile``). Files named ``template``, ``system`` and ``params`` in the
repository replace the generated ones, as hf.co lets a repository do.

Blob answers carry their own URL in ``Location``: Ollama reads the address to download from
there (a registry normally redirects to storage; Ollama's own test registry answers 200 with
``Location`` as this one does). Byte serving (Range, rate limits, hooks) is the server's.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..ggufnames import canonical, level_of, levels, pick
from ..ollama.gguf_header import GGUFHeader, GGUFHeaderError, read_header
from ..ollama.modelfile import MEDIA_TYPES, OllamaProfile, header_profile, params_blob
from .repo_store import Snapshot

OLLAMA = "ollama"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
OVERRIDE_FILES = {"template": "template", "system": "system", "params": "params"}

ProfileSource = Callable[[str, GGUFHeader], "OllamaProfile | None"]


class ManifestUnknown(LookupError):
    """No GGUF file answers to the tag; ``tags`` lists the ones that do."""

    def __init__(self, repo: str, tag: str, tags: list[str]) -> None:
        super().__init__(
            f"{repo} has no GGUF file for tag {tag!r}"
            + (f"; tags: {', '.join(tags)}" if tags else "; it holds no GGUF file")
        )
        self.tags = tags


@dataclass(frozen=True)
class Blob:
    """One blob a manifest names: a file of the repository, or bytes made here."""

    digest: str
    size: int
    media_type: str
    path: str | None = None  # repository path of a GGUF file
    data: bytes | None = None

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class ImageManifest:
    """The Docker/OCI image manifest Ollama pulls for one GGUF file of a revision, with the
    blobs it names (a hub's file listing is ``hubs.base.Manifest``)."""

    repo: str
    commit: str
    tag: str
    gguf_path: str
    docker: bytes  # the manifest as Ollama asks for it
    blobs: dict[str, Blob]

    def body(self, accept: str | None) -> tuple[bytes, str]:
        """The manifest bytes and media type for a request's Accept header (Docker v2 unless
        the client accepts only OCI)."""
        if accept and OCI_MANIFEST in accept and DOCKER_MANIFEST not in accept:
            data = json.loads(self.docker)
            data["mediaType"] = OCI_MANIFEST
            return _json(data), OCI_MANIFEST
        return self.docker, DOCKER_MANIFEST


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _blob(data: bytes, media_type: str) -> Blob:
    return Blob("sha256:" + hashlib.sha256(data).hexdigest(), len(data), media_type, data=data)


def human_number(n: int) -> str:
    """A parameter count as Ollama shows it (``7.7B``, ``494M``)."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            value = n / scale
            return (
                f"{value:.0f}{unit}"
                if value >= 100 or value == int(value)
                else f"{value:.1f}{unit}"
            )
    return str(n)


class OllamaRegistry:
    """Manifests and blobs for the GGUF files of a ``RepoStore``, built on first use and kept
    per (repository, commit, tag)."""

    def __init__(self, profiles: ProfileSource | None = None) -> None:
        self.profiles = profiles
        self._manifests: dict[tuple[str, str, str], ImageManifest] = {}
        self._lock = threading.Lock()

    def tags(self, snap: Snapshot) -> list[str]:
        return sorted(levels(list(snap.files)))

    def manifest(self, snap: Snapshot, tag: str) -> ImageManifest:
        """The manifest for ``tag`` (a level, ``latest``, or a manifest digest already served)."""
        if tag.startswith("sha256:"):
            with self._lock:
                for m in self._manifests.values():
                    if (
                        m.repo == snap.repo_id
                        and "sha256:" + hashlib.sha256(m.docker).hexdigest() == tag
                    ):
                        return m
            raise ManifestUnknown(snap.repo_id, tag, self.tags(snap))
        key = (snap.repo_id, snap.commit, canonical(tag))
        with self._lock:
            found = self._manifests.get(key)
        if found is not None:
            return found
        path = pick(list(snap.files), tag)
        if path is None:
            raise ManifestUnknown(snap.repo_id, tag, self.tags(snap))
        built = self._build(snap, tag, path)
        with self._lock:
            self._manifests[key] = built
        return built

    def blob(self, snap: Snapshot, digest: str) -> Blob | None:
        """A blob of ``snap``'s manifests: its GGUF files by sha256, and the generated layers of
        every tag (manifests are built for the repository's tags when none was served yet)."""
        hexdigest = digest.removeprefix("sha256:")
        for entry in snap.files.values():
            if entry.sha256 == hexdigest and entry.path.lower().endswith(".gguf"):
                return Blob(digest, entry.size, MEDIA_TYPES["model"], path=entry.path)
        for tag in ["latest", *self.tags(snap)]:
            try:
                found = self.manifest(snap, tag).blobs.get(digest)
            except ManifestUnknown:
                return None
            if found is not None:
                return found
        return None

    def _profile(self, snap: Snapshot, header: GGUFHeader) -> OllamaProfile | None:
        profile = self.profiles(snap.repo_id, header) if self.profiles is not None else None
        return profile if profile is not None else header_profile(header)

    def _build(self, snap: Snapshot, tag: str, path: str) -> ImageManifest:
        entry = snap.files[path]
        try:
            header = read_header(entry.real_path, keys=frozenset())
        except (GGUFHeaderError, OSError):
            header = GGUFHeader(version=0)
        profile = self._profile(snap, header)
        model = Blob("sha256:" + entry.sha256, entry.size, MEDIA_TYPES["model"], path=path)
        layers = [model]
        overrides = {name: snap.files.get(file) for name, file in OVERRIDE_FILES.items()}

        def layer(kind: str, generated: bytes | None) -> None:
            override = overrides.get(kind)
            data = Path(override.real_path).read_bytes() if override is not None else generated
            if data is not None:
                layers.append(_blob(data, MEDIA_TYPES[kind]))

        layer("template", profile.template.encode() if profile else None)
        layer("system", profile.system.encode() if profile and profile.system else None)
        layer("params", params_blob(profile) if profile else None)
        if profile is not None and profile.license:
            layers.append(_blob(profile.license.encode(), MEDIA_TYPES["license"]))
        arch = header.architecture or "unknown"
        config = {
            "model_format": "gguf",
            "model_family": arch,
            "model_families": [arch],
            "model_type": human_number(header.parameter_count) if header.parameter_count else "",
            "file_type": header.file_type or (level_of(path) or "").upper(),
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [b.digest for b in layers]},
        }
        config_blob = _blob(_json(config), CONFIG_MEDIA_TYPE)
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": config_blob.descriptor(),
            "layers": [b.descriptor() for b in layers],
        }
        blobs = {b.digest: b for b in [config_blob, *layers]}
        return ImageManifest(snap.repo_id, snap.commit, tag, path, _json(manifest), blobs)
