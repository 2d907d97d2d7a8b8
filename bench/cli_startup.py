"""Wall time of `model-zoo list`, `model-zoo info NAME` and `model-zoo list --json` vs
`python -c pass`.

Runs each command several times in a fresh process and prints one JSON document with the
median and spread of the wall time per command, and the median CPU time (user + system of the
child), which stays close to the idle-machine wall time when other work shares the CPUs. The
registry cache lives in a temporary MODEL_ZOO_HOME: one untimed run warms it (what every run
after a user's first sees); `list (cold cache)` times runs that each start from an empty home,
i.e. YAML parsing and schema validation included.

    .venv/bin/python bench/cli_startup.py [--repeat 9] [--target 0.3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("model-zoo")
    return [str(script)] if script.exists() else [sys.executable, "-m", "model_zoo.cli.main"]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(cmd: list[str], env: dict[str, str], fresh_home: bool = False) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of ``cmd``."""
    if fresh_home:
        home = tempfile.mkdtemp(prefix="mz-bench-cold-")
        env = {**env, "MODEL_ZOO_HOME": home}
    cpu0, start = _cpu(), time.perf_counter()
    proc = subprocess.run(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    elapsed, cpu = time.perf_counter() - start, _cpu() - cpu0
    if fresh_home:
        shutil.rmtree(env["MODEL_ZOO_HOME"], ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(
            f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}"
        )
    return elapsed, cpu


# Run in a child: CPU milliseconds of each start-up phase of `model-zoo list`, in order.
_PHASES = r"""
import contextlib, io, json, resource, sys
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
marks = [("start", cpu())]
import typer; marks.append(("import typer", cpu()))
from model_zoo.cli import main as cli; app = cli.build_app()
marks.append(("model_zoo.cli.main + every cmd_* module", cpu()))
from model_zoo.registry import api; marks.append(("import the registry API", cpu()))
api.list_models(); marks.append(("load the registry (cache hit)", cpu()))
with contextlib.redirect_stdout(io.StringIO()):
    cli.main(sys.argv[1:])
marks.append(("run the command (second app build included)", cpu()))
print(json.dumps({b[0]: round(1000 * (b[1] - a[1]), 1) for a, b in zip(marks, marks[1:])}))
"""


def _phases(env: dict[str, str], args: list[str], repeat: int) -> dict[str, float]:
    runs = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-c", _PHASES, *args],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(out.stdout))
    return {key: round(statistics.median(r[key] for r in runs), 1) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--target", type=float, default=0.3, help="seconds a command may take")
    parser.add_argument("--name", default="internlm2_5-7b-chat", help="model for `info`")
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="mz-bench-")
    env = {
        **os.environ,
        "MODEL_ZOO_HOME": home,
        "MODEL_ZOO_CONFIG": os.path.join(home, "none.toml"),
        "COLUMNS": "120",
    }
    env.pop("MODEL_ZOO_REGISTRY", None)
    cli = _cli()
    cases: dict[str, tuple[list[str], bool]] = {
        "python -c pass": ([sys.executable, "-c", "pass"], False),
        "--version (typer, no options parsed)": ([*cli, "--version"], False),
        "list": ([*cli, "list"], False),
        f"info {args.name}": ([*cli, "info", args.name], False),
        "list --json": ([*cli, "list", "--json"], False),
        "list (cold cache)": ([*cli, "list"], True),
    }
    try:
        _time([*cli, "list"], env)  # warm the registry cache and the OS file cache
        results = {}
        for label, (cmd, cold) in cases.items():
            runs = [_time(cmd, env, fresh_home=cold) for _ in range(args.repeat)]
            walls = sorted(w for w, _ in runs)
            results[label] = {
                "median_s": round(statistics.median(walls), 4),
                "min_s": round(walls[0], 4),
                "max_s": round(walls[-1], 4),
                "cpu_median_s": round(statistics.median(c for _, c in runs), 4),
            }
        phases = _phases(env, ["list"], max(3, args.repeat // 2))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    baseline = results["python -c pass"]["median_s"]
    for r in results.values():
        r["over_python_s"] = round(r["median_s"] - baseline, 4)
    warm = [
        label for label in results if label.split()[0] in ("list", "info") and "cold" not in label
    ]
    print(
        json.dumps(
            {
                "command": " ".join(cli),
                "repeat": args.repeat,
                "target_s": args.target,
                "results": results,
                "within_target": all(results[label]["median_s"] < args.target for label in warm),
                "cpu_within_target": all(
                    results[label]["cpu_median_s"] < args.target for label in warm
                ),
                "list_phases_cpu_ms": phases,
                "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
