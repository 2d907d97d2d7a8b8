"""Wall time of `model-zoo list`, `model-zoo info NAME` and `model-zoo list --json` vs `python -c pass`.

Runs each command several times in a fresh process and prints one JSON document with the
median and spread per command. The registry cache lives in a temporary MODEL_ZOO_HOME: one
untimed run warms it (what every run after a user's first sees); `list (cold cache)` times
runs that each start from an empty home, i.e. YAML parsing and schema validation included.

    .venv/bin/python bench/cli_startup.py [--repeat 9] [--target 0.3]
"""

from __future__ import annotations

import argparse
import json
import os
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


def _time(cmd: list[str], env: dict[str, str], fresh_home: bool = False) -> float:
    if fresh_home:
        home = tempfile.mkdtemp(prefix="mz-bench-cold-")
        env = {**env, "MODEL_ZOO_HOME": home}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - start
    if fresh_home:
        shutil.rmtree(env["MODEL_ZOO_HOME"], ignore_errors=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--target", type=float, default=0.3, help="seconds a command may take")
    parser.add_argument("--name", default="internlm2_5-7b-chat", help="model for `info`")
    args = parser.parse_args()

    home = tempfile.mkdtemp(prefix="mz-bench-")
    env = {**os.environ, "MODEL_ZOO_HOME": home, "MODEL_ZOO_CONFIG": os.path.join(home, "none.toml"), "COLUMNS": "120"}
    env.pop("MODEL_ZOO_REGISTRY", None)
    cli = _cli()
    cases: dict[str, tuple[list[str], bool]] = {
        "python -c pass": ([sys.executable, "-c", "pass"], False),
        "list": ([*cli, "list"], False),
        f"info {args.name}": ([*cli, "info", args.name], False),
        "list --json": ([*cli, "list", "--json"], False),
        "list (cold cache)": ([*cli, "list"], True),
    }
    try:
        _time([*cli, "list"], env)  # warm the registry cache and the OS file cache
        results = {}
        for label, (cmd, cold) in cases.items():
            runs = sorted(_time(cmd, env, fresh_home=cold) for _ in range(args.repeat))
            results[label] = {
                "median_s": round(statistics.median(runs), 4),
                "min_s": round(runs[0], 4),
                "max_s": round(runs[-1], 4),
            }
    finally:
        shutil.rmtree(home, ignore_errors=True)
    baseline = results["python -c pass"]["median_s"]
    for label, r in results.items():
        r["over_python_s"] = round(r["median_s"] - baseline, 4)
    warm = [label for label in results if label not in ("python -c pass", "list (cold cache)")]
    print(json.dumps({
        "command": " ".join(cli),
        "repeat": args.repeat,
        "target_s": args.target,
        "results": results,
        "within_target": all(results[label]["median_s"] < args.target for label in warm),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "cpus": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
