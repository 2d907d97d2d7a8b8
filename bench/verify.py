"""Benchmark ``model-zoo verify`` against sha256sum and against the hashing limit; prints JSON.

A synthetic safetensors checkpoint (``--gb`` in ``--shards`` shards, plus config and index) is
written once to a scratch directory and read from the page cache by every tool, so the numbers
measure hashing, not the disk. The limit is Python hashlib's sha256 speed on one core times the
cores this process may use; the target is verify at >= 80% of it.

    .venv/bin/python bench/verify.py [--gb 1.0] [--shards 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from model_zoo.store.hashing import cpu_count
from model_zoo.store.verify import verify


def write_checkpoint(root: Path, total: int, shards: int) -> list[Path]:
    """Shards of one F32 tensor each (random-looking bytes), an index and a config."""
    block = os.urandom(8 * 1024 * 1024)
    per = (total // shards) // 4 * 4
    weight_map = {}
    paths = []
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        tensor = f"model.layers.{i}.weight"
        header = json.dumps(
            {tensor: {"dtype": "F32", "shape": [per // 4], "data_offsets": [0, per]}}
        ).encode()
        header += b" " * (-len(header) % 8)
        path = root / name
        with path.open("wb") as fh:
            fh.write(struct.pack("<Q", len(header)) + header)
            left = per
            while left:
                n = min(left, len(block))
                fh.write(block[:n])
                left -= n
        weight_map[tensor] = name
        paths.append(path)
    (root / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": per * shards}, "weight_map": weight_map})
    )
    (root / "config.json").write_text(json.dumps({"num_hidden_layers": shards}))
    return paths


def hashlib_per_core(seconds: float = 1.0) -> float:
    buf = os.urandom(64 * 1024 * 1024)
    h = hashlib.sha256()
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        h.update(buf)
        n += len(buf)
    return n / (time.perf_counter() - start)


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cores = cpu_count()
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as scratch:
        root = Path(scratch)
        shards = write_checkpoint(root, int(args.gb * 1e9), args.shards)
        files = sorted(str(p) for p in root.iterdir() if p.is_file())
        total = sum(os.path.getsize(f) for f in files)
        for f in files:  # warm the page cache
            with open(f, "rb") as fh:
                while fh.read(16 * 1024 * 1024):
                    pass
        per_core = hashlib_per_core()
        report = verify(root)
        assert report.ok, report.problems
        t_verify = best(lambda: verify(root), args.repeat)
        t_verify_hash = min(verify(root).seconds for _ in range(args.repeat))
        t_one = best(lambda: verify(root, workers=1), args.repeat)
        per_core = max(per_core, hashlib_per_core())  # re-measure: other load on the machine varies
        limit = per_core * cores
        out: dict[str, object] = {
            "bench": "verify",
            "machine": {
                "cores": cores,
                "load_avg_1m": round(os.getloadavg()[0], 2),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "files": len(files),
            "shards": len(shards),
            "bytes": total,
            "hashlib_sha256_per_core_mb_s": round(per_core / 1e6, 1),
            "limit_mb_s": round(limit / 1e6, 1),
            "model_zoo_verify": {
                "seconds": round(t_verify, 3),
                "mb_s": round(total / t_verify / 1e6, 1),
                "hash_phase_mb_s": round(total / t_verify_hash / 1e6, 1),
                "fraction_of_limit": round(total / t_verify / limit, 3),
                "one_thread_mb_s": round(total / t_one / 1e6, 1),
                "speedup_over_one_thread": round(t_one / t_verify, 2),
            },
        }
        if shutil.which("sha256sum"):
            t_seq = best(
                lambda: subprocess.run(["sha256sum", *files], check=True, capture_output=True),
                args.repeat,
            )
            t_par = best(
                lambda: subprocess.run(
                    ["xargs", "-P", str(cores), "-n", "1", "sha256sum"],
                    input="\n".join(files).encode(),
                    check=True,
                    capture_output=True,
                ),
                args.repeat,
            )
            out["sha256sum_sequential"] = {
                "seconds": round(t_seq, 3),
                "mb_s": round(total / t_seq / 1e6, 1),
            }
            out[f"sha256sum_xargs_P{cores}"] = {
                "seconds": round(t_par, 3),
                "mb_s": round(total / t_par / 1e6, 1),
            }
        out["target_met"] = total / t_verify >= 0.8 * limit
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
