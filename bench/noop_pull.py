"""Wall time of a no-op `model-zoo pull`: everything already verified in the store.

Builds the tiny hub tree (every hub's ids of a few registry models), serves it with `model-zoo
serve-mirror` in another process, pulls once to fill a temporary store, then times `model-zoo
pull NAME -q` again several times, each in a fresh process, the way a user or a job script runs
it: with `--source hf`, and with the default `auto` (all four endpoint variables point at the
mirror). Rounds are interleaved, with `python -c pass` in each as the machine's floor. Prints one
JSON document with the median, spread and CPU time per case, and whether the pull's medians are
within the target.

    .venv/bin/python bench/noop_pull.py [--repeat 9] [--target 0.3] [--name internlm2_5-1_8b-chat]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("model-zoo")
    return [str(script)] if script.exists() else [sys.executable, "-m", "model_zoo.cli.main"]


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--target", type=float, default=0.3, help="seconds a no-op pull may take")
    parser.add_argument("--name", default="internlm2_5-1_8b-chat")
    args = parser.parse_args()
    from model_zoo.testing.tiny_hub import make_hub_tree

    with tempfile.TemporaryDirectory(prefix="noop-pull-") as tmp:
        root, home = Path(tmp) / "hub", Path(tmp) / "store"
        make_hub_tree(root)
        server = subprocess.Popen(
            [*_cli(), "serve-mirror", str(root), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().split(" at ")[1].split()[0]
            env = {
                **os.environ,
                "MODEL_ZOO_HOME": str(home),
                "MODEL_ZOO_CONFIG": str(Path(tmp) / "none.toml"),
                "NO_PROXY": "127.0.0.1,localhost",
            }
            for var in (
                "HF_ENDPOINT",
                "MODELSCOPE_ENDPOINT",
                "OPENMIND_HUB_ENDPOINT",
                "OPENXLAB_ENDPOINT",
            ):
                env[var] = url
            cases = {"--source hf": ["--source", "hf"], "auto": []}
            for extra in cases.values():  # fill the store; untimed
                _timed([*_cli(), "pull", args.name, "-q", *extra], env)
            # Interleaved rounds, so a slow spell of a shared machine hits every case alike;
            # `python -c pass` is the floor a Python program cannot go under on this machine.
            commands = {
                label: [*_cli(), "pull", args.name, "-q", *extra] for label, extra in cases.items()
            }
            commands["python -c pass"] = [sys.executable, "-c", "pass"]
            runs: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
            for _ in range(args.repeat):
                for label, cmd in commands.items():
                    runs[label].append(_timed(cmd, env))
            results = {}
            for label, timed in runs.items():
                walls = [w for w, _c in timed]
                results[label] = {
                    "median_s": round(statistics.median(walls), 4),
                    "min_s": round(min(walls), 4),
                    "max_s": round(max(walls), 4),
                    "cpu_median_s": round(statistics.median(c for _w, c in timed), 4),
                }
        finally:
            server.terminate()
            server.wait(timeout=20)
    print(
        json.dumps(
            {
                "command": f"model-zoo pull {args.name} -q (everything already in the store)",
                "repeat": args.repeat,
                "target_s": args.target,
                "results": results,
                "within_target": all(results[label]["median_s"] <= args.target for label in cases),
                "cpus": os.cpu_count(),
                "load_average": os.getloadavg()[0],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
