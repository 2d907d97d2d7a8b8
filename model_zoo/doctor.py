"""``model-zoo doctor``: everything worth knowing when something does not work, in seconds.

``diagnose()`` gathers versions, GPUs, each hub's reachability with the configured endpoint,
which tokens are set (names only, never values), the store, proxies, offline mode and the
registry overlay, and turns every problem it finds into a ``Finding`` with concrete advice.
The hub probes run in parallel, while a child interpreter imports torch to list the GPUs
(torch is never imported into this process), so the report takes about the longer of the
probe budget (2 s by default) and torch's import time.

The library never prints: the CLI (``model_zoo.cli.cmd_doctor``) formats the report.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .download.plan import ProbeResult
from .errors import ConfigError, ModelZooError, RateLimitedError
from .hubs.catalog import HUBS, OPENXLAB, OPENXLAB_ORIGIN
from .netaddr import is_loopback_url, redact_url
from .units import human_size

# Distributions whose versions the report shows, in this order (None when not installed).
PACKAGES: tuple[str, ...] = (
    "model-zoo",
    "torch",
    "transformers",
    "safetensors",
    "sentencepiece",
    "huggingface_hub",
    "httpx",
    "pydantic",
    "typer",
    "modelscope",
    "bitsandbytes",
    "vllm",
    "lmdeploy",
    "ray",
)
# A 7B model in bf16 is about 15.5 GB; warn below this much free space in the store.
LOW_SPACE_BYTES = 20 * 10**9
DEFAULT_BUDGET = 2.0
PROXY_VARS: tuple[str, ...] = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")
LEVELS: tuple[str, ...] = ("error", "warning", "note")


@dataclass(frozen=True)
class Finding:
    """One problem (or noteworthy fact) and what to do about it."""

    level: str  # "error", "warning" or "note"
    area: str  # "hubs", "store", "runtime", "settings", "registry", "proxy", "network"
    message: str
    advice: str


@dataclass(frozen=True)
class HubReport:
    """One source as this machine sees it: endpoint, token, proxy, probe result."""

    source: str
    title: str
    endpoint: str
    endpoint_from: str  # the variable that set it, "settings file", or "default"
    token_env: str | None  # the variable holding this hub's token, when one is set
    token_vars: tuple[str, ...]
    in_sources: bool  # part of the configured order for --source auto
    proxy: str | None  # the proxy its requests go through (credentials redacted)
    reachable: bool | None  # None: not probed (offline mode)
    latency_ms: float | None = None
    error: str | None = None
    credentials: str | None = None  # other credentials in use (OpenXLab's key pair: where from)
    credentials_problem: str | None = None  # why configured credentials cannot be used


@dataclass(frozen=True)
class StoreReport:
    path: str
    exists: bool
    writable: bool
    free_bytes: int | None
    total_bytes: int | None
    filesystem: str | None
    lock_mode: str | None
    models: int  # distinct models with at least one complete snapshot
    incomplete: int
    snapshots: int = 0  # complete snapshots (one model may be pulled at several revisions)


@dataclass
class DoctorReport:
    """What ``diagnose`` found; ``to_dict`` is the ``--json`` form (safe to paste in a bug
    report)."""

    versions: dict[str, str | None]
    python: dict[str, str]
    gpu: dict[str, Any]
    hubs: list[HubReport]
    store: StoreReport | None
    proxies: dict[str, str]
    offline: bool
    config_file: str | None
    sources: list[str]
    registry: dict[str, Any]
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No finding of level "error"."""
        return not any(f.level == "error" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


# ---------------------------------------------------------------- small pure helpers


def env_proxies(env: Mapping[str, str]) -> dict[str, str]:
    """urllib-style proxy map from ``env``: {"https": URL, "http": URL, "all": URL, "no": LIST}.

    Lower-case spellings win over upper-case ones, as in ``urllib.request.getproxies``.
    """
    out: dict[str, str] = {}
    for var in PROXY_VARS:
        value = env.get(var.lower()) or env.get(var)
        if value:
            out[var[: -len("_PROXY")].lower()] = value
    return out


def proxy_settings(env: Mapping[str, str]) -> dict[str, str]:
    """Proxy variables that are set, with credentials in proxy URLs redacted."""
    return {
        f"{key.upper()}_PROXY": value if key == "no" else redact_url(value)
        for key, value in env_proxies(env).items()
    }


def proxy_for(url: str, env: Mapping[str, str]) -> str | None:
    """The proxy a request to ``url`` goes through under ``env`` (redacted), or None."""
    parts = urlsplit(url)
    proxies = env_proxies(env)
    chosen = proxies.get(parts.scheme) or proxies.get("all")
    # proxy_bypass_environment is in urllib.request on every platform, but not in typeshed.
    bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not chosen or bypass(parts.hostname or "", proxies):
        return None
    return redact_url(chosen)


# ---------------------------------------------------------------- gathering


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions from package metadata: nothing is imported."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def python_info() -> dict[str, str]:
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": f"{platform.system()} {platform.machine()}",
    }


# Runs in a child interpreter: a slow or crashing torch import (broken CUDA libraries) cannot
# stall the hub probes (no shared GIL) or take doctor down with it.
_GPU_SCRIPT = """
import json
import torch
info = {"torch": True, "cuda": torch.version.cuda, "devices": [], "cuda_available": False}
try:
    info["cuda_available"] = bool(torch.cuda.is_available())
    for i in range(torch.cuda.device_count() if info["cuda_available"] else 0):
        p = torch.cuda.get_device_properties(i)
        info["devices"].append({"index": i, "name": p.name,
                                "memory_gib": round(p.total_memory / 2**30, 1),
                                "capability": f"{p.major}.{p.minor}", "bf16": p.major >= 8})
except Exception as exc:
    info["cuda_available"] = False
    info["error"] = f"CUDA query failed: {type(exc).__name__}: {exc}"
print(json.dumps(info))
"""


def gpu_info(torch_installed: bool, *, timeout: float = 120.0) -> dict[str, Any]:
    """CUDA and GPUs as torch sees them, asked in a child interpreter (only when torch is
    installed)."""
    import json
    import subprocess

    none: dict[str, Any] = {"torch": False, "cuda_available": False, "cuda": None, "devices": []}
    if not torch_installed:
        return none
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _GPU_SCRIPT],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {**none, "error": f"could not run torch: {type(exc).__name__}: {exc}"}
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return {**none, "error": f"import torch failed: {last}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def settings_with_fallback(env: Mapping[str, str]) -> tuple[Any, list[Finding]]:
    """Settings from ``env``; a bad setting becomes a finding and is left out, so doctor still
    runs."""
    from .settings import load_settings

    env = dict(env)
    findings: list[Finding] = []
    for _ in range(len(env) + 2):
        try:
            return load_settings(env), findings
        except ConfigError as exc:
            setting = exc.setting
            findings.append(
                Finding(
                    "error",
                    "settings",
                    exc.message,
                    "Fix or unset it; doctor continues without it.",
                )
            )
            if setting and setting in env:
                del env[setting]
            elif env.get("MODEL_ZOO_CONFIG") == os.devnull:
                raise
            else:
                env["MODEL_ZOO_CONFIG"] = os.devnull  # the file is the problem: read none
    raise AssertionError("unreachable")  # pragma: no cover


def _endpoint_from(source: str, settings: Any, env: Mapping[str, str]) -> str:
    info = HUBS[source]
    if env.get(info.endpoint_env):
        return info.endpoint_env
    return "default" if settings.endpoint(source) == info.default_endpoint else "settings file"


def _probe_reason(exc: BaseException) -> str:
    """Why a probe failed, in a few words (the typed error's own advice is doctor's job)."""
    fields = getattr(exc, "fields", {})
    if fields.get("reason"):
        return str(fields["reason"])
    if isinstance(exc, RateLimitedError):
        return "HTTP 429 (rate-limited)"
    if fields.get("status"):
        return f"HTTP {fields['status']}"
    return f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"


def probe_all(
    keys: list[str], adapter_factory: Callable[[str], Any], budget: float
) -> dict[str, ProbeResult]:
    """One probe per hub, all at once, within about ``budget`` seconds: the same probe ``pull``
    plans with (``download.plan.probe_sources``), worded for the report."""
    from .download.plan import probe_sources

    return probe_sources(keys, adapter_factory, budget=budget, reason=_probe_reason)


def probe_hubs(
    settings: Any,
    env: Mapping[str, str],
    *,
    budget: float = DEFAULT_BUDGET,
    adapter_factory: Callable[[str], Any] | None = None,
) -> list[HubReport]:
    """Every hub, probed in parallel within about ``budget`` seconds (skipped when offline)."""
    keys = [k for k in HUBS if k != OPENXLAB_ORIGIN]  # origin format shares OpenXLab's endpoint
    results: dict[str, ProbeResult] = {}
    if not settings.offline:
        if adapter_factory is None:
            from .hubs.factory import adapter_for

            # probes need no credentials: a broken OpenXLab key file is reported once, below
            probe_settings = replace(settings, openxlab_key=None)

            def adapter_factory(key: str) -> Any:
                return adapter_for(key, probe_settings)

        results = probe_all(keys, adapter_factory, budget)
    reports = []
    for key in keys:
        info = HUBS[key]
        probe = results.get(key)
        token_env = next((v for v in info.token_envs if env.get(v)), None)
        credentials = problem = None
        if key == OPENXLAB and token_env is None:
            pair = getattr(settings, "openxlab_key", None)
            if isinstance(pair, ConfigError):
                problem = pair.message
            elif pair is not None:
                credentials = f"access key pair from {pair.origin}"
        reports.append(
            HubReport(
                source=key,
                title=info.title,
                endpoint=redact_url(
                    settings.endpoint(key)
                ),  # shown and written to --json: no password
                endpoint_from=_endpoint_from(key, settings, env),
                token_env=token_env,
                token_vars=info.token_envs,
                in_sources=key in settings.sources,
                proxy=proxy_for(settings.endpoint(key), env),
                reachable=None if probe is None else probe.ok,
                latency_ms=round(probe.latency * 1000, 1)
                if probe and probe.latency is not None
                else None,
                error=probe.error if probe else None,
                credentials=credentials,
                credentials_problem=problem,
            )
        )
    return reports


def store_report(home: Path, env: Mapping[str, str]) -> StoreReport:
    """The store: where, free space, filesystem and lock mode, how many models
    (complete/partial)."""
    from .store.cache import incomplete_dirs, iter_snapshots
    from .store.layout import locks_dir
    from .store.locking import lock_mode, mount_fs_type

    existing = home
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free: int | None
    total: int | None
    try:
        usage = shutil.disk_usage(existing)
        free, total = usage.free, usage.total
    except OSError:
        free = total = None
    try:
        mode = lock_mode(locks_dir(home) / "doctor.lock", dict(env))
    except ModelZooError:
        mode = None
    exists = home.is_dir()
    snapshots = iter_snapshots(home) if exists else []
    return StoreReport(
        path=str(home),
        exists=exists,
        writable=os.access(existing, os.W_OK),
        free_bytes=free,
        total_bytes=total,
        filesystem=mount_fs_type(existing),
        lock_mode=mode,
        models=len({snap.root.parent for snap in snapshots}),
        incomplete=len(incomplete_dirs(home)) if exists else 0,
        snapshots=len(snapshots),
    )


def registry_report(settings: Any) -> tuple[dict[str, Any], list[Finding]]:
    from .registry.loader import builtin_registry_path, load_registry

    out: dict[str, Any] = {
        "builtin": str(builtin_registry_path()),
        "overlay": str(settings.registry_path) if settings.registry_path else None,
    }
    try:
        out["models"] = len(load_registry(settings=settings))
    except ModelZooError as exc:
        out["models"] = None
        out["error"] = exc.message
        var = "MODEL_ZOO_REGISTRY (or `registry` in the settings file)"
        return out, [
            Finding(
                "error",
                "registry",
                exc.message,
                f"Run `model-zoo registry check {settings.registry_path or ''}`".rstrip()
                + f" to see every problem, or unset {var}.",
            )
        ]
    return out, []


# ---------------------------------------------------------------- advice


_HUB_ADVICE: dict[str, str] = {
    "hf": "If huggingface.co is blocked here, set HF_ENDPOINT to a mirror (e.g. "
    "HF_ENDPOINT=https://hf-mirror.com) or pull with --source modelscope.",
    "modelscope": "Check MODELSCOPE_ENDPOINT, or pull with --source hf.",
    "modelers": "Modelers serves only InternLM3-8B-Instruct; check OPENMIND_HUB_ENDPOINT, "
    "or use another source.",
    "openxlab": "Check OPENXLAB_ENDPOINT, or pull with --source hf or --source modelscope.",
}


def advise(report: DoctorReport) -> list[Finding]:
    """Concrete advice for everything in ``report`` that needs attention (pure)."""
    out: list[Finding] = []
    out += _hub_findings(report)
    out += _runtime_findings(report)
    out += _store_findings(report.store)
    return out


def _hub_findings(report: DoctorReport) -> list[Finding]:
    out: list[Finding] = []
    if report.offline:
        out.append(
            Finding(
                "note",
                "network",
                "offline mode is on (MODEL_ZOO_OFFLINE or HF_HUB_OFFLINE): "
                "hubs were not probed; pull and load use the store only.",
                "Unset MODEL_ZOO_OFFLINE and HF_HUB_OFFLINE to download.",
            )
        )
        return out
    configured = [h for h in report.hubs if h.in_sources]
    down = [h for h in configured if h.reachable is False]
    for hub in report.hubs:
        if hub.reachable is False:
            level = "warning" if hub.in_sources else "note"
            via = f" through proxy {hub.proxy}" if hub.proxy else ""
            advice = _HUB_ADVICE.get(hub.source, "")
            if hub.proxy:
                advice = (
                    f"Check the proxy {hub.proxy} (HTTPS_PROXY/HTTP_PROXY) and NO_PROXY. " + advice
                )
            if "429" in (hub.error or "") and hub.token_vars:
                advice = f"Rate-limited: set {hub.token_vars[0]} to a token. " + advice
            out.append(
                Finding(
                    level,
                    "hubs",
                    f"{hub.title} ({hub.endpoint}) is unreachable{via}: {hub.error}",
                    advice.strip(),
                )
            )
        if hub.credentials_problem:
            out.append(
                Finding(
                    "warning",
                    "hubs",
                    f"{hub.title}: {hub.credentials_problem}",
                    "Pulls from this hub fail until it is fixed.",
                )
            )
        if (
            hub.token_env
            and hub.endpoint.startswith("http://")
            and not is_loopback_url(hub.endpoint)
        ):
            out.append(
                Finding(
                    "warning",
                    "hubs",
                    f"{hub.title}: {hub.token_env} is set and the endpoint {hub.endpoint} is "
                    "plain http, so the token travels unencrypted.",
                    "Use an https endpoint, or unset the token for this mirror.",
                )
            )
        if hub.proxy and is_loopback_url(hub.endpoint):
            out.append(
                Finding(
                    "warning",
                    "proxy",
                    f"{hub.title}: requests to the loopback endpoint {hub.endpoint} go through "
                    f"the proxy {hub.proxy}.",
                    "Add 127.0.0.1,localhost to NO_PROXY.",
                )
            )
    if configured and len(down) == len(configured):
        out.append(
            Finding(
                "error",
                "network",
                "no configured hub is reachable (" + ", ".join(h.source for h in down) + ").",
                "Check the network and proxy settings; point an endpoint variable at a reachable "
                "mirror (or a `model-zoo serve-mirror` on your cluster); or work offline from a "
                "store copied from another machine with MODEL_ZOO_OFFLINE=1.",
            )
        )
    return out


def _runtime_findings(report: DoctorReport) -> list[Finding]:
    out: list[Finding] = []
    versions, gpu = report.versions, report.gpu
    missing = [
        p for p in ("torch", "transformers", "safetensors", "sentencepiece") if not versions.get(p)
    ]
    if missing:
        out.append(
            Finding(
                "warning",
                "runtime",
                f"not installed: {', '.join(missing)}; pull, verify, list "
                "and serve-mirror work, but load/run/chat/score need them.",
                "Install torch for your machine first (see pytorch.org), then "
                "pip install 'model-zoo[runner]'.",
            )
        )
    if gpu.get("error"):
        out.append(
            Finding(
                "error",
                "runtime",
                gpu["error"],
                "Reinstall torch for this machine's CUDA driver, or check `nvidia-smi`.",
            )
        )
    elif gpu.get("torch") and not gpu.get("cuda_available"):
        build = (
            "a CPU-only build"
            if not gpu.get("cuda")
            else f"built for CUDA {gpu['cuda']}, but no GPU is usable"
        )
        out.append(
            Finding(
                "note",
                "runtime",
                f"torch is {build}: models load on the CPU (fine for tiny "
                "checkpoints, slow for real ones).",
                "On a GPU machine install a CUDA build of torch and check `nvidia-smi`.",
            )
        )
    elif gpu.get("devices") and not any(d.get("bf16") for d in gpu["devices"]):
        out.append(
            Finding(
                "note",
                "runtime",
                "no GPU here has native bfloat16 (compute capability 8.0+); "
                "torch may still report bfloat16 as supported and emulate it, slowly.",
                'Pass --dtype float16 (dtype="float16" in Python) for speed.',
            )
        )
    return out


def _store_findings(store: StoreReport | None) -> list[Finding]:
    if store is None:
        return []
    out: list[Finding] = []
    if not store.writable:
        out.append(
            Finding(
                "error",
                "store",
                f"the store {store.path} is not writable.",
                "Set MODEL_ZOO_HOME to a writable directory, or pull with --local-dir.",
            )
        )
    if store.free_bytes is not None and store.free_bytes < LOW_SPACE_BYTES:
        out.append(
            Finding(
                "warning",
                "store",
                f"only {human_size(store.free_bytes)} free at {store.path} "
                "(a 7B model in bf16 needs about 15.5 GB).",
                "Free space (`model-zoo cache du`, `model-zoo cache rm NAME`), "
                "or set MODEL_ZOO_HOME to a larger disk.",
            )
        )
    if store.lock_mode == "lockfile":
        out.append(
            Finding(
                "note",
                "store",
                f"the store is on a network filesystem ({store.filesystem}): "
                "pulls coordinate through lock files instead of flock.",
                "Nothing to do; set MODEL_ZOO_LOCK=flock only if your filesystem's flock is "
                "reliable.",
            )
        )
    if store.incomplete:
        out.append(
            Finding(
                "note",
                "store",
                f"{store.incomplete} interrupted pull(s) left partial files in the store.",
                "Run the same `model-zoo pull` again to resume, "
                "or `model-zoo cache rm NAME` to drop them.",
            )
        )
    return out


# ---------------------------------------------------------------- the whole report


def diagnose(
    env: Mapping[str, str] | None = None,
    *,
    budget: float = DEFAULT_BUDGET,
    check_gpu: bool = True,
    adapter_factory: Callable[[str], Any] | None = None,
) -> DoctorReport:
    """Gather the whole report. Hubs are probed while a child interpreter asks torch about GPUs.

    ``env`` defaults to ``os.environ``; ``budget`` is the total seconds allowed for the probes;
    ``check_gpu=False`` skips asking torch (versions still come from package metadata);
    ``adapter_factory(source)`` replaces ``hubs.factory.adapter_for`` (tests).
    """
    from concurrent.futures import ThreadPoolExecutor

    start = time.perf_counter()
    env = dict(os.environ if env is None else env)
    settings, findings = settings_with_fallback(env)
    versions = package_versions()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-zoo-doctor") as pool:
        gpu_future = pool.submit(gpu_info, bool(versions.get("torch"))) if check_gpu else None
        hubs = probe_hubs(settings, env, budget=budget, adapter_factory=adapter_factory)
        gpu = gpu_future.result() if gpu_future else {"skipped": True}
    try:
        store: StoreReport | None = store_report(settings.home, env)
    except OSError as exc:
        store = None
        findings.append(
            Finding(
                "error",
                "store",
                f"cannot inspect the store {settings.home}: {exc}",
                "Set MODEL_ZOO_HOME to a directory you can write.",
            )
        )
    registry, registry_findings = registry_report(settings)
    report = DoctorReport(
        versions=versions,
        python=python_info(),
        gpu=gpu,
        hubs=hubs,
        store=store,
        proxies=proxy_settings(env),
        offline=settings.offline,
        config_file=str(settings.config_path) if settings.config_path else None,
        sources=list(settings.sources),
        registry=registry,
    )
    report.findings = findings + registry_findings + advise(report)
    report.findings.sort(key=lambda f: LEVELS.index(f.level))
    report.seconds = round(time.perf_counter() - start, 3)
    return report
