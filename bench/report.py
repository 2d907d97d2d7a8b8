"""Run the benchmarks (or read their saved JSON) and write docs/benchmarks.md with charts.

    .venv/bin/python bench/report.py                     # run every bench script, full sizes
    .venv/bin/python bench/report.py --quick             # small sizes (a few minutes)
    .venv/bin/python bench/report.py --save-json out/    # also keep each JSON and the machine
    .venv/bin/python bench/report.py --from-json out/    # rebuild from saved JSON, run nothing
    .venv/bin/python bench/report.py --only pull,reward  # a subset

Each bench script prints one JSON document; this script never interprets more than it must: it
draws a bar chart for each known group of comparable numbers (PNG via matplotlib into
docs/img/), lists every number the bench printed in a table, and records the machine the
numbers came from (CPU model, cores, memory, GPU, Python, torch, date). A bench that fails or is
missing is reported as such on the page.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCHES: tuple[str, ...] = ("pull", "verify", "cli_startup", "load", "reward")
QUICK_ARGS: dict[str, list[str]] = {
    "pull": ["--size-gb", "0.2", "--shards", "4", "--rate-mb", "50"],
    "verify": ["--gb", "0.2", "--shards", "4", "--repeat", "1"],
    "cli_startup": ["--repeat", "3"],
    "load": ["--runs", "1"],
    "reward": ["--n", "64", "--repeat", "2", "--clients", "8"],
}
BENCH_TIMEOUT_S = 3600


@dataclass(frozen=True)
class Chart:
    """One bar chart: the dict at ``path`` (dots; "" = top level) compared on ``metric``.

    ``metric`` None: the dict's own numeric values are the bars.
    """

    path: str
    metric: str | None
    title: str
    unit: str
    higher_is_better: bool = True
    extras: tuple[tuple[str, str], ...] = ()  # (label, path of a number elsewhere in the JSON)


CHARTS: dict[str, list[Chart]] = {
    "pull": [
        Chart("pull", "mb_per_s", "Pull into a cold directory, every byte verified", "MB/s"),
        Chart("verify", "mb_per_s", "Verify against sha256sum and the hashing limit", "MB/s"),
        Chart(
            "multi_source", "mb_per_s", "One source or two, each rate-limited by the server", "MB/s"
        ),
    ],
    "verify": [
        Chart(
            "",
            "mb_s",
            "Verify against sha256sum and the hashing limit",
            "MB/s",
            extras=(("hashing limit (hashlib per core x cores)", "limit_mb_s"),),
        )
    ],
    "cli_startup": [
        Chart(
            "results", "median_s", "Start-up wall time (median)", "seconds", higher_is_better=False
        )
    ],
    "load": [
        Chart(
            "",
            "load_seconds_median",
            "Load time, same weights, CPU",
            "seconds",
            higher_is_better=False,
        ),
        Chart(
            "",
            "load_plus_first_forward_seconds_median",
            "Load and first forward (mapped weights paged in)",
            "seconds",
            higher_is_better=False,
        ),
        # through the first forward: memory-mapped weights count once they are actually read
        Chart(
            "",
            "peak_rss_growth_through_first_forward_over_weights",
            "Peak host memory growth through load and first forward",
            "x weights size",
            higher_is_better=False,
        ),
    ],
    "reward": [Chart("conversations_per_s", None, "Reward scoring throughput", "conversations/s")],
}
OURS_RE = re.compile(r"model[-_ ]zoo|score_batch|server|2 sources", re.IGNORECASE)


# ---------------------------------------------------------------- machine


def machine_info() -> dict[str, Any]:
    """Where the numbers come from: CPU model, cores, memory, GPU, versions, date."""
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "memory_gib": _mem_gib(),
        "gpu": _gpus(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    from importlib import metadata

    for dist in ("model-zoo", "torch", "transformers", "huggingface_hub", "modelscope"):
        try:
            info[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[dist] = None
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _mem_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) * 1024 / 2**30, 1)
    except OSError:
        pass
    return None


def _gpus() -> str:
    if not shutil.which("nvidia-smi"):
        return "none"
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return "; ".join(line.strip() for line in out.stdout.splitlines() if line.strip()) or "none"


# ---------------------------------------------------------------- running


def bench_summary(script: Path) -> str:
    """First line of a bench script's docstring (read, not imported)."""
    try:
        doc = ast.get_docstring(ast.parse(script.read_text()))
    except (OSError, SyntaxError):
        return ""
    return (doc or "").strip().splitlines()[0] if doc else ""


def parse_json_output(text: str) -> Any:
    """The JSON document a bench printed (tolerates lines printed before it)."""
    text = text.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        start = text.find("{")
        if start < 0:
            raise
        return json.loads(text[start:])


def run_bench(script: Path, args: list[str], timeout: float = BENCH_TIMEOUT_S) -> dict[str, Any]:
    """Run one bench script; {"data": ...} or {"error": ...}, plus the command line."""
    cmd = [sys.executable, str(script), *args]
    shown = " ".join(
        [
            "python",
            str(script.relative_to(ROOT)) if script.is_relative_to(ROOT) else str(script),
            *args,
        ]
    )
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False
        )
    except subprocess.TimeoutExpired:
        return {"command": shown, "error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        return {"command": shown, "error": f"exit status {proc.returncode}: {tail}"}
    try:
        return {"command": shown, "data": parse_json_output(proc.stdout)}
    except json.JSONDecodeError as exc:
        return {"command": shown, "error": f"output is not JSON ({exc})"}


def load_saved(
    directory: Path, names: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        path = directory / f"{name}.json"
        if not path.is_file():
            continue
        try:
            saved = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            results[name] = {"command": str(path), "error": f"not JSON ({exc})"}
            continue
        if isinstance(saved, dict) and ("data" in saved or "error" in saved) and "command" in saved:
            results[name] = saved
        else:  # a bench's raw output saved by hand
            results[name] = {"command": f"(saved output {path.name})", "data": saved}
    machine_file = directory / "machine.json"
    machine = json.loads(machine_file.read_text()) if machine_file.is_file() else {}
    return results, machine


# ---------------------------------------------------------------- charts and tables


def lookup(data: Any, path: str) -> Any:
    for part in filter(None, path.split(".")):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def chart_series(data: Any, chart: Chart) -> list[tuple[str, float]]:
    """(label, value) bars for ``chart``; empty when the bench's JSON has no such group."""
    group = lookup(data, chart.path)
    if not isinstance(group, dict):
        return []
    bars = []
    for label, value in group.items():
        if chart.metric is not None:
            value = value.get(chart.metric) if isinstance(value, dict) else None
        if _is_number(value):
            bars.append((str(label), float(value)))
    if bars:
        bars += [
            (label, float(v)) for label, path in chart.extras if _is_number(v := lookup(data, path))
        ]
    return bars


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def draw_chart(bars: list[tuple[str, float]], chart: Chart, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [b[0] for b in bars]
    values = [b[1] for b in bars]
    colours = ["#1f77b4" if OURS_RE.search(label) else "#9e9e9e" for label in labels]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(bars) + 1.2), dpi=100)
    ax.barh(range(len(bars)), values, color=colours)
    ax.set_yticks(range(len(bars)), labels)
    ax.invert_yaxis()
    better = "higher is better" if chart.higher_is_better else "lower is better"
    ax.set_xlabel(f"{chart.unit} ({better})")
    ax.set_title(chart.title)
    top = max(values) if values else 1.0
    for i, v in enumerate(values):
        ax.text(v + top * 0.01, i, f"{v:g}", va="center", fontsize=9)
    ax.set_xlim(0, top * 1.18 if top > 0 else 1)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png", metadata={"Software": None})
    plt.close(fig)


def flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Every leaf of a JSON document as (dotted key, value); short lists stay whole."""
    if isinstance(data, dict):
        rows: list[tuple[str, Any]] = []
        for key, value in data.items():
            rows += flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return rows
    return [(prefix, data)]


def _cell(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text.replace("|", "\\|")


# ---------------------------------------------------------------- the page


def render(
    results: dict[str, dict[str, Any]], machine: dict[str, Any], *, img_dir: Path, page: Path
) -> str:
    rel_img = os.path.relpath(img_dir, page.parent)
    lines = [
        "# Benchmarks",
        "",
        "Written by `bench/report.py` from the JSON the bench scripts print; rerun it on your own",
        "machine with `python bench/report.py` (add `--quick` for small sizes). Every number below",
        "was measured on the machine described here, in one session, with all tools side by side.",
        "Shared or busy machines make absolute numbers noisy; the comparisons within one chart are",
        "what each bench is for.",
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
    ]
    for key in (
        "date",
        "sizes",
        "cpu",
        "cores",
        "cores_usable",
        "memory_gib",
        "gpu",
        "platform",
        "python",
        "model-zoo",
        "torch",
        "transformers",
        "huggingface_hub",
        "modelscope",
        "load_average_1m",
    ):
        if key in machine:
            lines.append(f"| {key.replace('_', ' ')} | {_cell(machine[key])} |")
    if not machine:
        lines.append("| machine | not recorded with these results |")
    lines.append("")
    for name, result in results.items():
        script = ROOT / "bench" / f"{name}.py"
        lines += [f"## {name.replace('_', ' ')}", ""]
        summary = bench_summary(script)
        if summary:
            lines += [summary, ""]
        lines += ["```bash", result.get("command", ""), "```", ""]
        if "error" in result:
            lines += [
                "**This bench did not produce results:**",
                "",
                "```text",
                result["error"],
                "```",
                "",
            ]
            continue
        data = result["data"]
        for i, chart in enumerate(CHARTS.get(name, [])):
            bars = chart_series(data, chart)
            if not bars:
                continue
            image = img_dir / f"bench-{name}-{i + 1}.png"
            draw_chart(bars, chart, image)
            lines += [f"![{chart.title}]({rel_img}/{image.name})", ""]
        lines += [
            '<details markdown="1"><summary>Every number this bench printed</summary>',
            "",
            "| key | value |",
            "| --- | --- |",
        ]
        lines += [f"| `{key}` | {_cell(value)} |" for key, value in flatten(data)]
        lines += ["", "</details>", ""]
    return "\n".join(lines).rstrip() + "\n"


HAND_WRITTEN = "Written by hand"  # a section of the page saying so is kept across report runs


def hand_written_sections(page: str) -> list[str]:
    """The ``## `` sections of an existing page whose text says they are written by hand
    (scenarios the report does not run), to carry over into the rewritten page."""
    sections: list[str] = []
    current: list[str] | None = None
    for line in page.splitlines():
        if line.startswith("## "):
            if current is not None and any(HAND_WRITTEN in ln for ln in current):
                sections.append("\n".join(current).rstrip())
            current = [line]
        elif current is not None:
            current.append(line)
    if current is not None and any(HAND_WRITTEN in ln for ln in current):
        sections.append("\n".join(current).rstrip())
    return sections


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for every bench")
    ap.add_argument(
        "--from-json", type=Path, help="read saved results from this directory; run nothing"
    )
    ap.add_argument(
        "--save-json", type=Path, help="also write each bench's result and machine.json here"
    )
    ap.add_argument(
        "--only",
        default="",
        help="comma list of benches (default: all of " + ", ".join(BENCHES) + ")",
    )
    ap.add_argument("--bench-dir", type=Path, default=ROOT / "bench", help=argparse.SUPPRESS)
    ap.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    ap.add_argument("--img-dir", type=Path, default=ROOT / "docs" / "img")
    args = ap.parse_args(argv)
    names = [n for n in (args.only.split(",") if args.only else BENCHES) if n]

    if args.from_json:
        results, machine = load_saved(args.from_json, names)
    else:
        machine = machine_info()
        machine["sizes"] = "quick (--quick)" if args.quick else "full (each script's defaults)"
        results = {}
        for name in names:
            script = args.bench_dir / f"{name}.py"
            if not script.is_file():
                continue
            print(f"running {script.name} ...", file=sys.stderr, flush=True)
            results[name] = run_bench(script, QUICK_ARGS.get(name, []) if args.quick else [])
            if args.save_json:
                args.save_json.mkdir(parents=True, exist_ok=True)
                (args.save_json / f"{name}.json").write_text(
                    json.dumps(results[name], indent=2) + "\n"
                )
        if args.save_json:
            (args.save_json / "machine.json").write_text(json.dumps(machine, indent=2) + "\n")
    if not results:
        print(
            "no bench results (no bench scripts ran and no saved JSON was found)", file=sys.stderr
        )
        return 1
    text = render(results, machine, img_dir=args.img_dir, page=args.output)
    if args.output.is_file():  # keep the sections written by hand (scenarios run on their own)
        rendered = {ln for ln in text.splitlines() if ln.startswith("## ")}
        kept = [
            s
            for s in hand_written_sections(args.output.read_text())
            if s.splitlines()[0] not in rendered
        ]
        if kept:
            text = text.rstrip() + "\n\n" + "\n\n".join(kept) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, args.output)
    print(f"wrote {args.output} ({len(results)} bench(es))", file=sys.stderr)
    return 0 if all("data" in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
