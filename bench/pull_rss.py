"""Peak memory of a pull against the checkpoint's size: it must stay flat (1, 4 and 16 GB).

For each size: a synthetic checkpoint (shards of pseudo-random bytes) under a registry model's
HuggingFace id, served by `model-zoo serve-mirror` in another process (warmed: the server hashes
its files once before any timing); then `model_zoo.pull(NAME, source="hf", local_dir=...)` in a
fresh child process, which reports its own peak resident set size (``ru_maxrss``, threads
included) and the time around the pull. Each size's files are deleted before the next, so the
16 GB run needs about 35 GB free. Prints one JSON document.

    .venv/bin/python bench/pull_rss.py [--sizes-gb 1,4,16] [--shards 8] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

NAME = "internlm2_5-1_8b-chat"
HF_REPO = "internlm/internlm2_5-1_8b-chat"

CHILD = r"""
import json, resource, sys, threading, time
from model_zoo.download.pull import pull_model
peak = {"RssAnon": 0, "RssFile": 0}
def sample():  # anonymous memory (what the pull allocates) and mapped file pages, apart
    while True:
        try:
            with open("/proc/self/status") as fh:
                for line in fh:
                    key = line.split(":")[0]
                    if key in peak:
                        peak[key] = max(peak[key], int(line.split()[1]))
        except OSError:
            return
        time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()
t = time.perf_counter()
result = pull_model(sys.argv[1], source="hf", local_dir=sys.argv[2])
wall = time.perf_counter() - t
size = sum(f.size or 0 for f in result.files)
print(json.dumps({"wall_s": round(wall, 2), "bytes": size, "mb_per_s": round(size / wall / 1e6, 1),
                  "peak_rss_mb": round(
                      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "peak_anon_mb": round(peak["RssAnon"] / 1024, 1),
                  "peak_file_mapped_mb": round(peak["RssFile"] / 1024, 1),
                  "downloaded": result.downloaded_bytes}))
"""


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("model-zoo")
    return [str(script)] if script.exists() else [sys.executable, "-m", "model_zoo.cli.main"]


def one_size(work: Path, size_gb: float, shards: int) -> dict:
    from model_zoo.testing.hub_repos import write_repo

    root, out = work / "hub", work / "out"
    total = int(size_gb * 1e9)
    files: dict[str, bytes | str | int] = {"config.json": '{"model_type": "internlm2"}\n'}
    for i in range(shards):
        files[f"model-{i + 1:05d}-of-{shards:05d}.safetensors"] = total // shards
    write_repo(root, HF_REPO, files)
    server = subprocess.Popen(
        [*_cli(), "serve-mirror", str(root), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split(" at ")[1].split()[0]
        urllib.request.urlopen(
            f"{url}/api/models/{HF_REPO}/tree/main?recursive=true", timeout=600
        ).read()
        env = {
            **os.environ,
            "HF_ENDPOINT": url,
            "MODEL_ZOO_HOME": str(work / "store"),
            "MODEL_ZOO_CONFIG": str(work / "none.toml"),
            "NO_PROXY": "127.0.0.1,localhost",
        }
        done = subprocess.run(
            [sys.executable, "-c", CHILD, NAME, str(out)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"pull of {size_gb} GB failed:\n{done.stderr[-3000:]}")
        return {"size_gb": size_gb, **json.loads(done.stdout.strip().splitlines()[-1])}
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes-gb", default="1,4,16")
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    sizes = [float(s) for s in args.sizes_gb.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="pull-rss-", dir=args.workdir) as tmp:
        runs = [one_size(Path(tmp), size, args.shards) for size in sizes]
    rss = [r["peak_rss_mb"] for r in runs]
    # Flat means the largest pull needs no more than the smaller ones did (plus noise): a small
    # checkpoint may peak lower because its shards never fill the hashing windows.
    by_size = [r["peak_rss_mb"] for r in sorted(runs, key=lambda r: r["size_gb"])]
    largest, smaller = (by_size[-1], by_size[:-1]) if by_size else (0.0, [])
    flat = bool(smaller) and largest <= max(smaller) + max(64.0, 0.1 * max(smaller))
    print(
        json.dumps(
            {
                "command": f'model_zoo.download.pull.pull_model("{NAME}", source="hf", '
                "local_dir=...), a fresh process",
                "shards": args.shards,
                "runs": runs,
                "peak_rss_spread_mb": round(max(rss) - min(rss), 1) if rss else None,
                "flat": flat,
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
