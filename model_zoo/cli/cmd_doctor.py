"""``model-zoo doctor``: versions, GPUs, hubs, tokens, store, proxies, and advice, in seconds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:  # pragma: no cover
    from ..doctor import DoctorReport

_MARK = {"error": "✗", "warning": "!", "note": "·"}


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor(
        as_json: bool = typer.Option(
            False, "--json", help="One JSON document (for bug reports; no secrets)."
        ),
        timeout: float = typer.Option(
            2.0, "--timeout", min=0.1, help="Seconds allowed for all hub probes together."
        ),
    ) -> None:
        """Check this machine: versions, GPUs, each hub's reachability, tokens, store, proxies.

        Every problem comes with advice. Token values are never shown, only which variable is set;
        proxy passwords are redacted. Exits 1 when a problem of level "error" was found.

        Examples:
          model-zoo doctor
          model-zoo doctor --json > doctor.json
          HF_ENDPOINT=https://hf-mirror.com model-zoo doctor
        """
        from ..doctor import diagnose
        from .output import print_json

        report = diagnose(budget=timeout)
        if as_json:
            print_json(report.to_dict())
        else:
            typer.echo(format_report(report))
        if not report.ok:
            raise typer.Exit(1)


def format_report(report: DoctorReport) -> str:
    """The report as plain text for a terminal (no colours, so it pastes well)."""
    from .output import human_size

    lines: list[str] = []

    def row(label: str, text: str) -> None:
        lines.append(f"{label:<10} {text}")

    v, py = report.versions, report.python
    row("model-zoo", f"{v.get('model-zoo') or '?'}   Python {py['version']} ({py['platform']})")
    row(
        "packages",
        "  ".join(
            f"{name} {v[name] or '-'}"
            for name in ("torch", "transformers", "safetensors", "huggingface_hub")
        ),
    )
    extras = [
        f"{name} {v[name]}"
        for name in ("modelscope", "bitsandbytes", "vllm", "lmdeploy", "ray")
        if v.get(name)
    ]
    if extras:
        row("optional", "  ".join(extras))
    row("GPU", _gpu_line(report.gpu))
    lines.append("")
    lines += _hub_lines(report)
    lines.append("")
    store = report.store
    if store is not None:
        free = f"{human_size(store.free_bytes)} free of {human_size(store.total_bytes)}"
        state = "" if store.exists else " (not created yet)"
        row("store", f"{store.path}{state}")
        row(
            "",
            f"{free}; {store.filesystem or '?'} filesystem, {store.lock_mode or '?'} locks; "
            f"{store.models} model(s) in {store.snapshots} snapshot(s), {store.incomplete} partial",
        )
    row("proxies", "  ".join(f"{k}={val}" for k, val in report.proxies.items()) or "none")
    row("offline", "yes (MODEL_ZOO_OFFLINE / HF_HUB_OFFLINE)" if report.offline else "no")
    row("sources", ", ".join(report.sources) + "  (order for --source auto)")
    reg = report.registry
    overlay = f" + overlay {reg['overlay']}" if reg.get("overlay") else " (no overlay)"
    row(
        "registry",
        f"{reg.get('models') if reg.get('models') is not None else '?'} models: built-in{overlay}",
    )
    row("config", report.config_file or "none (defaults and environment)")
    lines.append("")
    if report.findings:
        lines.append(f"findings ({len(report.findings)}):")
        for f in report.findings:
            lines.append(f"  {_MARK[f.level]} {f.level}: {f.message}")
            lines.append(f"      -> {f.advice}")
    else:
        lines.append("no problems found.")
    lines.append(f"(took {report.seconds:.1f} s)")
    return "\n".join(lines)


def _gpu_line(gpu: dict[str, Any]) -> str:
    if gpu.get("skipped"):
        return "not checked"
    if gpu.get("error"):
        return gpu["error"]
    if not gpu.get("torch"):
        return "unknown (torch is not installed)"
    if not gpu.get("devices"):
        return f"none usable (torch CUDA build: {gpu.get('cuda') or 'CPU only'})"
    names = ", ".join(
        f"{d['index']}: {d['name']} {d['memory_gib']} GiB"
        + (f" (compute capability {d['capability']})" if d.get("capability") else "")
        for d in gpu["devices"]
    )
    return f"CUDA {gpu.get('cuda')}; {names}"


def _hub_lines(report: DoctorReport) -> list[str]:
    lines = ["hubs"]
    for hub in report.hubs:
        if hub.reachable is None:
            state = "not probed (offline)"
        elif hub.reachable:
            state = f"ok {hub.latency_ms:.0f} ms"
        else:
            state = f"UNREACHABLE ({hub.error})"
        if hub.token_env:
            token = f"token {hub.token_env} set"
        elif hub.credentials:
            token = hub.credentials
        else:
            token = f"no token ({hub.token_vars[0]})"
        via = f"; via proxy {hub.proxy}" if hub.proxy else ""
        used = "" if hub.in_sources else "; not in the source order"
        lines.append(f"  {hub.source:<11} {hub.endpoint} [{hub.endpoint_from}]")
        lines.append(f"  {'':<11} {state}; {token}{via}{used}")
    return lines
