"""``model-zoo serve-mirror``: serve pulled checkpoints to other machines as a hub.

One machine pulls (and verifies) a model once; the rest of a cluster points its tools at this
mirror with ``HF_ENDPOINT`` / ``MODELSCOPE_ENDPOINT`` / ... and reads it over the local network.
The mirror is ``model_zoo.mirror``: read-only, every protocol.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:  # pragma: no cover
    import ssl

    from ..mirror.repo_store import RepoStore
    from ..mirror.server import MirrorServer

DEFAULT_PORT = 8765


def register(app: typer.Typer) -> None:
    app.command("serve-mirror")(serve_mirror)


def serve_mirror(
    root: Path | None = typer.Argument(
        None,
        help="Directory of repositories (ROOT/<namespace>/<name>/...) or a model-zoo store. "
        "Default: this machine's model-zoo store.",
        show_default=False,
    ),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind. Anything but loopback exposes the files."
    ),
    port: int = typer.Option(
        DEFAULT_PORT, "--port", "-p", min=0, max=65535, help="Port to listen on (0: any free port)."
    ),
    bandwidth: float | None = typer.Option(
        None, "--bandwidth", help="Limit the total rate, in MB/s."
    ),
    conn_bandwidth: float | None = typer.Option(
        None, "--conn-bandwidth", help="Limit each connection's rate, in MB/s (as a CDN does)."
    ),
    latency: str | None = typer.Option(
        None,
        "--latency",
        help="Wait this long before every response (one simulated round trip): "
        "50ms, 0.05s or 0.05.",
        show_default=False,
    ),
    tls_cert: Path | None = typer.Option(
        None, "--tls-cert", help="PEM certificate (chain) to serve https; the key may be in it too."
    ),
    tls_key: Path | None = typer.Option(
        None, "--tls-key", help="PEM private key of --tls-cert, when it is a separate file."
    ),
) -> None:
    """Serve checkpoints over the HuggingFace, ModelScope, Modelers and OpenXLab protocols,
    and their GGUF files over Ollama's registry protocol (ollama pull HOST:PORT/NS/NAME:LEVEL).

    With --tls-cert the mirror speaks https only (the official Modelers client refuses
    anything else); clients trust its CA through SSL_CERT_FILE or REQUESTS_CA_BUNDLE.

    Examples:
      model-zoo serve-mirror
      model-zoo serve-mirror --host 0.0.0.0 --port 8765
      model-zoo serve-mirror ./hub --port 9000 --bandwidth 200
      model-zoo serve-mirror ./hub --bandwidth 400 --conn-bandwidth 20 --latency 50ms
      model-zoo serve-mirror --host 0.0.0.0 --tls-cert mirror.pem --tls-key mirror.key
    """
    from ..errors import UsageError
    from ..mirror.server import MirrorServer

    for option, rate in (("--bandwidth", bandwidth), ("--conn-bandwidth", conn_bandwidth)):
        if rate is not None and not 0 < rate < math.inf:
            raise UsageError(
                f"{option} must be a positive rate in MB/s, got {rate:g}; leave it out for no limit"
            )
    delay = 0.0
    if latency is not None:
        try:
            delay = parse_latency(latency)
        except ValueError:
            raise UsageError(
                f"--latency {latency!r} is not a duration: type it as 50ms, 0.05s or 0.05 "
                "(seconds, 0 or more); leave it out for none"
            ) from None
    tls = mirror_tls(tls_cert, tls_key)
    store, described = mirror_store(root)
    if not store.repo_ids():
        raise UsageError(
            f"nothing to serve: {described} holds no repositories. "
            "Pull a model first (model-zoo pull NAME) or pass a directory laid out as "
            "ROOT/<namespace>/<name>/."
        )
    hub = MirrorServer(
        store,
        host=host,
        port=port,
        bandwidth=bandwidth * 1e6 if bandwidth else None,
        conn_bandwidth=conn_bandwidth * 1e6 if conn_bandwidth else None,
        latency=delay,
        tls=tls,
    )
    try:
        hub.start()
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; {_bind_advice(exc)}"
        ) from None
    for line in exposure_warning(host):
        typer.secho(line, err=True, fg=typer.colors.RED, bold=True)
    for line in mirror_banner(hub, described):
        typer.echo(line)
    try:
        hub.serve_forever()
    except KeyboardInterrupt:
        typer.echo("mirror stopped.", err=True)


def parse_latency(text: str) -> float:
    """Seconds from ``50ms``, ``0.05s`` or ``0.05`` (case and spaces ignored), the forms people
    write a round trip in; ValueError for anything else and for negative, NaN or infinite values."""
    value = text.strip().lower()
    scale = 1.0
    if value.endswith("ms"):
        value, scale = value[:-2], 1e-3
    elif value.endswith("s"):
        value = value[:-1]
    seconds = float(value.strip()) * scale  # ValueError for "", "abc", ...
    if not 0 <= seconds < math.inf:
        raise ValueError(f"not a duration of 0 seconds or more: {text!r}")
    return seconds


def limits_line(hub: MirrorServer) -> str | None:
    """What a far-link mirror simulates, for the banner (None when it simulates nothing)."""
    parts = []
    if hub.bandwidth.total:
        parts.append(f"total {hub.bandwidth.total / 1e6:g} MB/s")
    if hub.bandwidth.conn:
        parts.append(f"per connection {hub.bandwidth.conn / 1e6:g} MB/s")
    if hub.latency:
        parts.append(f"{hub.latency * 1000:g} ms before each response")
    return "Limits: " + ", ".join(parts) if parts else None


def _bind_advice(exc: OSError) -> str:
    """What to change when binding failed: the port when it is taken or privileged, else the
    host."""
    import errno

    if exc.errno == errno.EADDRINUSE:
        return "another program uses that port: try another --port (0 picks a free one)"
    if exc.errno == errno.EACCES:
        return "ports below 1024 need privileges: try a --port above 1024"
    return "check --host: it must be an address of this machine (127.0.0.1, 0.0.0.0 or a local IP)"


def mirror_tls(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The server TLS context for --tls-cert/--tls-key, or None for plain http."""
    from ..errors import UsageError

    if cert is None:
        if key is not None:
            raise UsageError("--tls-key needs --tls-cert: give the certificate it belongs to")
        return None
    from ..mirror.server import tls_context

    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        if path is not None and not path.is_file():
            raise UsageError(f"{option} {path}: no such file")
    try:
        return tls_context(cert, key)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        detail = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        raise UsageError(
            f"cannot use {cert}{f' with {key}' if key else ''} for TLS ({detail}): give a PEM "
            "certificate and the PEM private key that belongs to it (in the same file or with "
            "--tls-key)"
        ) from None


def default_store_home() -> Path:
    """The model-zoo store this machine pulls into (``settings.home``)."""
    from ..settings import load_settings

    return load_settings().home


def mirror_store(root: Path | None) -> tuple[RepoStore, str]:
    """What to serve, and how to describe it: ROOT as a directory tree, ROOT as a model-zoo
    store (it has ``models/`` with manifests), or by default this machine's store."""
    from ..errors import UsageError
    from ..mirror.repo_store import RepoStore

    if root is None:
        home = default_store_home()
        return RepoStore.from_model_zoo_store(home), f"the model-zoo store {home}"
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory")
    if (root / "models").is_dir():
        as_store = RepoStore.from_model_zoo_store(root)
        if as_store.repo_ids():
            return as_store, f"the model-zoo store {root}"
    return RepoStore(root), str(root)


def mirror_url(hub: MirrorServer) -> str:
    """The URL other machines should use (the host name when bound to every interface)."""
    if hub.host in ("0.0.0.0", "::"):
        import socket

        return f"{hub.scheme}://{socket.gethostname()}:{hub.port}"
    return hub.url if hub.host != "localhost" else f"{hub.scheme}://localhost:{hub.port}"


def mirror_banner(hub: MirrorServer, described: str) -> list[str]:
    url = mirror_url(hub)
    repos = hub.store.repo_ids()
    lines = [
        f"Serving {len(repos)} repositories from {described} at {url} (read-only; Ctrl-C to stop)"
    ]
    limits = limits_line(hub)
    if limits:
        lines.append(limits)
    lines += [f"  {r}" for r in repos[:20]]
    if len(repos) > 20:
        lines.append(f"  ... and {len(repos) - 20} more")
    lines.append("Point clients at it with:")
    lines += [f"export {var}={url}" for var in hub.env()]
    examples = ollama_examples(hub)
    if examples:
        insecure = " --insecure" if hub.scheme == "http" else ""
        lines.append("Ollama pulls its GGUF files (the tag is the quantization level):")
        address = url if insecure else url.split("://", 1)[1]
        lines += [f"ollama pull{insecure} {address}/{repo}:{level}" for repo, level in examples]
    return lines


def ollama_examples(hub: MirrorServer, most: int = 3) -> list[tuple[str, str]]:
    """(repository, level) of a few GGUF files the mirror serves, for the banner (file names
    only: no hashing at start-up)."""
    from ..ggufnames import levels

    out: list[tuple[str, str]] = []
    for repo in hub.store.repo_ids():
        try:
            names = [p.name for p in hub.store.repo_dir(repo).glob("*.gguf")]
        except (LookupError, ValueError, OSError):
            continue
        found = levels(names)
        if found:
            out.append((repo, "q4_k_m" if "q4_k_m" in found else min(found)))
        if len(out) >= most:
            break
    return out


def exposure_warning(host: str) -> list[str]:
    """A loud warning when the mirror is reachable from other machines."""
    from ..netaddr import is_loopback_host

    if is_loopback_host(host):
        return []
    return [
        f"WARNING: serving on {host}: any machine that can reach it can download these files.",
        "WARNING: no authentication. Bind to 127.0.0.1 unless the network is trusted.",
    ]
