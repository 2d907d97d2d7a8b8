"""Pull and verify throughput: model-zoo against the official clients, over loopback.

One run builds a synthetic checkpoint (valid safetensors shards of pseudo-random bytes, an index
and a config) under a registry model's real repository ids, serves it with the local hub in a
separate process, and then, into a cold (new, empty) directory each time:

- pull: ``model_zoo.pull(NAME, source="hf", local_dir=...)`` (hub adapter + engine + store
  bookkeeping, every byte sha256-verified), ``huggingface_hub.snapshot_download``, the ``hf
  download`` CLI, and ``modelscope.snapshot_download``; each in its own process, timed around
  the download call (the CLI around the whole process), output checked byte for byte after.
- verify: ``model_zoo.verify`` of the pulled directory versus ``sha256sum`` (sequential and
  ``xargs -P <cores>``) and versus the hashing limit, hashlib's single-core speed x cores.
- multi-source: with each protocol rate-limited by the server, one source versus two.
- ceiling: the least CPU any verifying client must spend here (sha256, receive, page-cache
  copy, plus the server's sending), over the cores: the fastest pull this machine allows, and
  so the largest speed-up over the fastest official client that any verifying tool could show.
- far link (``--far-link``, off by default): the hub as a CDN on another continent, a total cap
  (``--link-total-mb``, 400), a cap on every TCP connection (``--link-conn-mb``, 20) and a round
  trip before every response (``--link-latency-ms``, 50). model-zoo, ``hf download``,
  ``modelscope.snapshot_download`` and ``aria2c -x16 -s16`` (then sha256 of every file, timed
  apart: the others hash while downloading) each pull cold, interleaved A B C D, A B C D, ...
- stall (``--stall``, off by default): the same far link, and one file's body stops for
  ``--stall-seconds`` after ``--stall-after-mb`` in the first response long enough to reach that
  point; each tool's total time shows how it notices and recovers.

Prints one JSON document. The server's files stay in the page cache for every tool alike;
each target is deleted after its run. CPU seconds (user+system of the child) are reported too:
they stay meaningful when other work shares the machine and makes wall times noisy.

    .venv/bin/python bench/pull.py [--size-gb 1] [--shards 4] [--repeat 3] [--rate-mb 100]
    .venv/bin/python bench/pull.py --skip pull,verify,multi --far-link --stall --repeat 2
"""

from __future__ import annotations

import argparse
import hashlib
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
from typing import Any

NAME = "internlm2_5-1_8b-chat"  # a registry model; its hf and modelscope ids are served locally
HF_REPO = "internlm/internlm2_5-1_8b-chat"
MS_REPO = "Shanghai_AI_Laboratory/internlm2_5-1_8b-chat"

SERVER = r"""
import json, sys
from model_zoo.testing.faults import Fault
from model_zoo.testing.local_hub import LocalHub
cfg = json.loads(sys.argv[2])
hub = LocalHub(sys.argv[1], bandwidth=cfg.get("total"),
               bandwidth_per_protocol=cfg.get("per_protocol") or None,
               conn_bandwidth=cfg.get("conn"), latency=cfg.get("latency") or 0.0).start()
print(hub.url, flush=True)
while line := sys.stdin.readline():  # one JSON command a line, one JSON answer; EOF stops the hub
    cmd = json.loads(line)
    if "faults" in cmd:  # [[factory, {keyword arguments}], ...] replaces the rules
        hub.faults.clear()
        for kind, kw in cmd["faults"]:
            hub.faults.add(getattr(Fault, kind)(**kw))
    if cmd.get("reset"):
        hub.stats.reset()
    reqs = hub.stats.requests
    print(json.dumps({
        "bytes_served": hub.stats.bytes_served(),
        "file_requests": sum(r.kind == "file" for r in reqs),
        "faults": [{"kind": r.kind, "path": r.path, "hits": r.hits} for r in hub.faults.rules],
        "faulted": [{"method": r.method, "url": r.url, "range": r.range, "faults": list(r.faults),
                     "bytes_sent": r.bytes_sent} for r in reqs if r.faults],
    }), flush=True)
hub.stop()
"""

CHILD_MODEL_ZOO = r"""
import json, sys, time
import model_zoo
# imports untimed, as for the others
import model_zoo.download.pull, model_zoo.download.engine, model_zoo.hubs.factory
import model_zoo.hubs.huggingface, model_zoo.hubs.modelscope, model_zoo.store.cache
# the hf adapter's lazy import; `from huggingface_hub import snapshot_download` loads it too
import huggingface_hub.hf_api
model_zoo.get(sys.argv[1])  # registry loaded and cached untimed: the others have no registry
kw = json.loads(sys.argv[2])
t = time.perf_counter()
model_zoo.pull(sys.argv[1], local_dir=sys.argv[3], **kw)
print(json.dumps({"seconds": time.perf_counter() - t}))
"""

CHILD_ENGINE = r"""
import json, sys, time
from pathlib import Path
from model_zoo.download.engine import EngineOptions, FileJob, fetch
from model_zoo.hubs.factory import adapter_for
import model_zoo.hubs.huggingface, model_zoo.hubs.modelscope
import huggingface_hub.hf_api  # untimed, as in the model-zoo and huggingface_hub children
kw = json.loads(sys.argv[2])
repos, sources = kw["repos"], kw["sources"]
t = time.perf_counter()
listings = [adapter_for(s).manifest(repos[s]).by_path() for s in sources]
jobs = [FileJob(p, f.size, f.sha256, tuple(m[p] for m in listings), tuple(sources))
        for p, f in listings[0].items()]
fetch(jobs, Path(sys.argv[3]), options=EngineOptions(multi_source=len(sources) > 1))
print(json.dumps({"seconds": time.perf_counter() - t}))
"""

CHILD_HF = r"""
import json, sys, time
from huggingface_hub import snapshot_download
t = time.perf_counter()
snapshot_download(sys.argv[1], local_dir=sys.argv[3])
print(json.dumps({"seconds": time.perf_counter() - t}))
"""

CHILD_ARIA2 = r"""
import hashlib, json, os, subprocess, sys, time, urllib.request
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote
repo, sums, target = sys.argv[1], json.loads(open(sys.argv[2]).read()), sys.argv[3]
endpoint = os.environ["HF_ENDPOINT"]
t = time.perf_counter()
tree = f"{endpoint}/api/models/{repo}/tree/main?recursive=true"
with urllib.request.urlopen(tree, timeout=60) as resp:
    paths = [e["path"] for e in json.load(resp) if e["type"] == "file"]
urls = "".join(f"{endpoint}/{repo}/resolve/main/{quote(p)}\n  out={p}\n" for p in paths)
# -x16 -s16 as asked; falloc as aria2's manual advises on ext4/xfs (its default writes zeros first)
subprocess.run(["aria2c", "-x16", "-s16", "--no-conf", "--file-allocation=falloc",
                "--console-log-level=warn", "--summary-interval=0", "--download-result=hide",
                "--auto-file-renaming=false", "--allow-overwrite=true", "-d", target, "-i", "-"],
               input=urls, text=True, check=True)
downloaded = time.perf_counter()

def sha256(path):
    h = hashlib.sha256()
    with open(os.path.join(target, path), "rb", buffering=0) as fh:
        while chunk := fh.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()

with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # hashlib releases the GIL: one file per core
    bad = [p for p, got in zip(paths, pool.map(sha256, paths)) if got != sums.get(p)]
end = time.perf_counter()
print(json.dumps({"seconds": end - t, "download_seconds": downloaded - t,
                  "verify_seconds": end - downloaded, "verified": not bad}))
sys.exit(1 if bad else 0)
"""

CHILD_MS = r"""
import json, sys, time
from modelscope import snapshot_download
t = time.perf_counter()
snapshot_download(sys.argv[1], local_dir=sys.argv[3])
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


# ----------------------------------------------------------------------------- the checkpoint


def _safetensors_shard(path: Path, tensor: str, nbytes: int, key: str) -> None:
    from model_zoo.testing.hub_repos import pseudo_random_blocks

    header = {
        "__metadata__": {"format": "pt"},
        tensor: {"dtype": "U8", "shape": [nbytes], "data_offsets": [0, nbytes]},
    }
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as fh:
        fh.write(len(raw).to_bytes(8, "little"))
        fh.write(raw)
        for block in pseudo_random_blocks(key, nbytes, block=8 << 20):
            fh.write(block)


def build_checkpoint(root: Path, total: int, shards: int) -> dict[str, str]:
    """Write the repository under both ids (hard links); returns {path: sha256}."""
    repo = root / HF_REPO
    repo.mkdir(parents=True)
    names = [f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)]
    weight_map = {}
    for i, name in enumerate(names):
        tensor = f"model.layers.{i}.blob"
        _safetensors_shard(repo / name, tensor, total // shards, f"bench:{i}")
        weight_map[tensor] = name
    (repo / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    (repo / "config.json").write_text(
        json.dumps({"architectures": ["InternLM2ForCausalLM"], "model_type": "internlm2"})
    )
    (repo / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    twin = root / MS_REPO
    twin.mkdir(parents=True)
    for f in repo.iterdir():
        os.link(f, twin / f.name)
    return {f.name: _sha256(f) for f in repo.iterdir()}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb", buffering=0) as fh:
        while chunk := fh.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- running things


class Hub:
    """The local hub in its own process (so its CPU use never shares our GIL).

    ``config``: {"total": B/s, "per_protocol": {protocol: B/s}, "conn": B/s, "latency": s}.
    """

    def __init__(self, root: Path, config: dict[str, Any] | None = None) -> None:
        self.root = root
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(root), json.dumps(config or {})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        self._warm()

    def command(self, **cmd: Any) -> dict[str, Any]:
        """Send one command to the server process (``faults=[[factory, kwargs], ...]``,
        ``reset=True``); returns its counters: bytes served, fault hits, faulted requests."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return answer

    def _warm(self) -> None:
        """List both repositories once: the hub hashes every file on its first listing, a cost
        that would otherwise land on whichever tool happens to run first."""
        import urllib.request

        for path in (
            f"/api/models/{HF_REPO}/tree/main?recursive=true",
            f"/api/v1/models/{MS_REPO}/repo/files?Revision=master&Recursive=true",
        ):
            with urllib.request.urlopen(self.url + path, timeout=600) as resp:
                resp.read()

    def env(self, home: Path) -> dict[str, str]:
        # PYTHONDONTWRITEBYTECODE dropped: installed packages ship their .pyc files, but an
        # editable checkout would then compile model_zoo from source in every child
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.endswith(("_PROXY", "_proxy")) and k != "PYTHONDONTWRITEBYTECODE"
        }
        env.update(
            {
                "HF_ENDPOINT": self.url,
                "MODELSCOPE_ENDPOINT": self.url,
                "OPENMIND_HUB_ENDPOINT": self.url,
                "OPENXLAB_ENDPOINT": self.url,
                "HF_HOME": str(home / "hf"),
                "MODELSCOPE_CACHE": str(home / "ms"),
                "MODEL_ZOO_HOME": str(home / "mz"),
                "MODEL_ZOO_CONFIG": str(home / "none.toml"),
                "HF_HUB_DISABLE_TELEMETRY": "1",
                "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                "NO_PROXY": "127.0.0.1,localhost",
            }
        )
        return env

    def cpu_seconds(self) -> float:
        """User+system CPU the hub process has used so far (Linux /proc; 0.0 elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_timed(cmd: list[str], env: dict[str, str]) -> dict[str, Any]:
    cpu0, t0 = _children_cpu(), time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=False)
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {
        "process_seconds": round(wall, 3),
        "cpu_seconds": round(_children_cpu() - cpu0, 3),
    }
    if done.returncode != 0:
        out["error"] = (done.stderr or done.stdout)[-1500:]
        return out
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    try:
        reported = json.loads(last)
        out["seconds"] = round(reported["seconds"], 3)
    except (ValueError, KeyError, TypeError):
        out["seconds"] = round(wall, 3)  # a CLI: the whole process is the measurement
        return out
    for (
        key,
        value,
    ) in reported.items():  # a child's own split of its time (aria2c: download, verify)
        if key != "seconds" and isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = round(value, 3)
    return out


def check_tree(target: Path, expected: dict[str, str]) -> bool:
    from model_zoo.store.hashing import sha256_many

    paths = [target / name for name in expected]
    if not all(p.is_file() for p in paths):
        return False
    got = sha256_many(paths)
    return all(not isinstance(got[p], OSError) and got[p][0] == expected[p.name] for p in paths)  # type: ignore[index]


def _engine_args(sources: list[str]) -> str:
    return json.dumps({"sources": sources, "repos": {"hf": HF_REPO, "modelscope": MS_REPO}})


def pull_tools() -> dict[str, tuple[list[str], str]]:
    """name -> (command without the target directory, which goes last; what it measures)."""
    py = sys.executable
    tools: dict[str, tuple[list[str], str]] = {
        "model-zoo": (
            [py, "-c", CHILD_MODEL_ZOO, NAME, json.dumps({"source": "hf"})],
            "model_zoo.pull(source='hf')",
        ),
        "model-zoo engine (direct)": (
            [py, "-c", CHILD_ENGINE, HF_REPO, _engine_args(["hf"])],
            "hf adapter listing + engine.fetch",
        ),
        "huggingface_hub.snapshot_download": (
            [py, "-c", CHILD_HF, HF_REPO, "{}"],
            "huggingface_hub 2.x",
        ),
        "modelscope.snapshot_download": (
            [py, "-c", CHILD_MS, MS_REPO, "{}"],
            "modelscope (MODELSCOPE_ENDPOINT)",
        ),
    }
    hf_cli = Path(sys.executable).with_name("hf")
    if hf_cli.exists():
        tools["hf download (CLI)"] = (
            [str(hf_cli), "download", HF_REPO, "--local-dir"],
            "whole process timed",
        )
    return tools


def bench_pulls(
    hub: Hub, work: Path, expected: dict[str, str], total: int, repeat: int
) -> dict[str, Any]:
    tools = pull_tools()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in tools}
    order = list(tools)
    for r in range(repeat):
        for name in order[r % len(order) :] + order[: r % len(order)]:  # rotate who goes first
            cmd, _note = tools[name]
            target = work / "target"
            shutil.rmtree(target, ignore_errors=True)
            home = Path(tempfile.mkdtemp(dir=work, prefix="home-"))
            server_cpu = hub.cpu_seconds()
            res = run_timed(cmd + [str(target)], hub.env(home))
            res["server_cpu_seconds"] = round(hub.cpu_seconds() - server_cpu, 3)
            res["ok"] = "error" not in res and check_tree(target, expected)
            runs[name].append(res)
            shutil.rmtree(target, ignore_errors=True)
            shutil.rmtree(home, ignore_errors=True)
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        good = [r for r in rs if r["ok"]]
        secs = statistics.median(r["seconds"] for r in good) if good else None
        best = min((r["seconds"] for r in good), default=None)
        out[name] = {
            "via": tools[name][1],
            "ok": bool(good) and len(good) == len(rs),
            "seconds": secs,
            "mb_per_s": round(total / secs / 1e6, 1) if secs else None,
            "best_seconds": best,
            "best_mb_per_s": round(total / best / 1e6, 1) if best else None,
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in rs),
            "server_cpu_seconds": statistics.median(r["server_cpu_seconds"] for r in rs),
            "runs": rs,
        }
    return out


def _write_cpu_per_byte(directory: Path, nbytes: int = 256 * 1024 * 1024) -> float:
    """CPU-seconds per byte to put fresh bytes into a new file's page cache with 1 MiB
    ``pwrite``s."""
    chunk = memoryview(os.urandom(1024 * 1024))
    path = directory / "write-probe.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, nbytes)
        t = time.thread_time()
        for off in range(0, nbytes, len(chunk)):
            os.pwrite(fd, chunk, off)
        return (time.thread_time() - t) / nbytes
    finally:
        os.close(fd)
        path.unlink()


def _receive_cpu_per_byte(nbytes: int = 256 * 1024 * 1024) -> float:
    """CPU-seconds per byte the receiving thread spends on ``recv_into`` over a loopback socket."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    sender = socket.create_connection(listener.getsockname())
    receiver, _ = listener.accept()
    listener.close()
    chunk = os.urandom(1024 * 1024)

    def send() -> None:
        for _ in range(nbytes // len(chunk)):
            sender.sendall(chunk)
        sender.close()

    thread = threading.Thread(target=send)
    thread.start()
    buf = memoryview(bytearray(1024 * 1024))
    t, got = time.thread_time(), 0
    while True:
        n = receiver.recv_into(buf)
        if not n:
            break
        got += n
    cpu = time.thread_time() - t
    thread.join()
    receiver.close()
    return cpu / max(got, 1)


def pull_ceiling(pulls: dict[str, Any], total: int, work: Path) -> dict[str, Any]:
    """The fastest any tool that hashes every byte could pull here, from measured CPU costs.

    Every verifying tool spends CPU on sha256 of every byte (hashlib's speed), on receiving every
    byte from the socket and on copying it into the page cache; the server, on the same machine,
    spends what it spends sending. With ``cores`` CPUs no tool finishes sooner than the sum
    divided by the cores, even with perfect overlap and no other overhead at all. Dividing the
    fastest official client's time by that bound gives the largest speed-up over it that any
    verifying client could show on this machine.
    """
    from model_zoo.store.hashing import cpu_count

    buf = os.urandom(256 * 1024 * 1024)
    h = hashlib.sha256()
    t = time.thread_time()
    h.update(buf)
    per_core = len(buf) / (time.thread_time() - t)
    del buf
    cores = cpu_count()
    server_cpu = min(v["server_cpu_seconds"] for v in pulls.values() if v["ok"])
    costs = {
        "sha256": total / per_core,
        "receive": total * _receive_cpu_per_byte(),
        "write to page cache": total * _write_cpu_per_byte(work),
        "server": server_cpu,
    }
    bound = sum(costs.values()) / cores
    official = {
        k: v["seconds"] for k, v in pulls.items() if not k.startswith("model-zoo") and v["seconds"]
    }
    fastest = min(official, key=official.__getitem__) if official else None
    out: dict[str, Any] = {
        "hashlib_mb_per_s_per_core": round(per_core / 1e6, 1),
        "cores": cores,
        "cpu_seconds": {k: round(v, 3) for k, v in costs.items()},
        "lower_bound_seconds": round(bound, 3),
        "upper_bound_mb_per_s": round(total / bound / 1e6, 1),
    }
    if fastest:
        out["fastest_official"] = fastest
        out["fastest_official_seconds"] = official[fastest]
        out["max_possible_vs_fastest_official"] = round(official[fastest] / bound, 2)
    return out


def _hash_threads_in_memory(buf: memoryview, threads: int) -> float:
    """Bytes/s of ``threads`` threads hashing in memory at once: what the CPUs really give
    (on VMs whose vCPUs share physical cores this is well below per-core speed x cores)."""
    import threading

    def work() -> None:
        h = hashlib.sha256()
        for _ in range(4):
            for i in range(0, len(buf), 8 << 20):
                h.update(buf[i : i + (8 << 20)])

    pool = [threading.Thread(target=work) for _ in range(threads)]
    t = time.perf_counter()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return threads * 4 * len(buf) / (time.perf_counter() - t)


def bench_verify(hub: Hub, work: Path, expected: dict[str, str], total: int) -> dict[str, Any]:
    """Pull once more (untimed), then hash the result every way."""
    import model_zoo
    from model_zoo.store.hashing import cpu_count

    target = work / "verify-target"
    home = Path(tempfile.mkdtemp(dir=work, prefix="home-"))
    cmd = [sys.executable, "-c", CHILD_MODEL_ZOO, NAME, json.dumps({"source": "hf"}), str(target)]
    pulled = run_timed(cmd, hub.env(home))
    if "error" in pulled:
        return {"error": pulled["error"]}
    shards = sorted(str(target / n) for n in expected if n.endswith(".safetensors"))
    cores = cpu_count()
    out: dict[str, Any] = {"cores": cores, "bytes": total}

    def timed(fn: Any) -> float:
        fn()  # warm the page cache and the code path once
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    secs = timed(lambda: model_zoo.verify(target))
    report = model_zoo.verify(target)
    out["model-zoo verify"] = {
        "seconds": round(secs, 3),
        "mb_per_s": round(total / secs / 1e6, 1),
        "ok": bool(getattr(report, "ok", False)),
        "via": "model_zoo.verify(path)",
    }
    seq = timed(lambda: subprocess.run(["sha256sum", *shards], check=True, capture_output=True))
    out["sha256sum"] = {"seconds": round(seq, 3), "mb_per_s": round(total / seq / 1e6, 1)}
    par = timed(
        lambda: subprocess.run(
            ["xargs", "-0", "-P", str(cores), "-n", "1", "sha256sum"],
            input="\0".join(shards).encode(),
            check=True,
            capture_output=True,
        )
    )
    out[f"xargs -P {cores} sha256sum"] = {
        "seconds": round(par, 3),
        "mb_per_s": round(total / par / 1e6, 1),
    }
    buf = memoryview(os.urandom(64 << 20))
    h = hashlib.sha256()
    t = time.perf_counter()
    for _ in range(4):
        for i in range(0, len(buf), 8 << 20):
            h.update(buf[i : i + (8 << 20)])
    per_core = 4 * len(buf) / (time.perf_counter() - t)
    limit = per_core * cores
    out["hashlib per core"] = {"mb_per_s": round(per_core / 1e6, 1)}
    out["limit (per core x cores)"] = {"mb_per_s": round(limit / 1e6, 1)}
    out["verify_vs_limit"] = round(total / secs / limit, 3)
    out["target_met (>= 0.8)"] = out["verify_vs_limit"] >= 0.8
    together = _hash_threads_in_memory(buf, cores)
    out[f"hashlib, {cores} threads at once (in memory)"] = {"mb_per_s": round(together / 1e6, 1)}
    out["verify_vs_threads_in_memory"] = round(total / secs / together, 3)
    shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    return out


def bench_multi_source(
    root: Path, work: Path, expected: dict[str, str], total: int, rate: float
) -> dict[str, Any]:
    hub = Hub(root, {"per_protocol": {"hf": rate, "modelscope": rate}})
    out: dict[str, Any] = {"rate_per_source_mb_per_s": rate / 1e6}
    try:
        runs = (
            ("pull, 1 source (hf)", CHILD_MODEL_ZOO, json.dumps({"source": "hf"})),
            (
                "pull, 2 sources (hf,modelscope)",
                CHILD_MODEL_ZOO,
                json.dumps({"sources": "hf,modelscope"}),
            ),
            ("engine, 1 source (hf)", CHILD_ENGINE, _engine_args(["hf"])),
            ("engine, 2 sources (hf,modelscope)", CHILD_ENGINE, _engine_args(["hf", "modelscope"])),
        )
        for label, script, kw in runs:
            target = work / "ms-target"
            home = Path(tempfile.mkdtemp(dir=work, prefix="home-"))
            res = run_timed([sys.executable, "-c", script, NAME, kw, str(target)], hub.env(home))
            res["ok"] = "error" not in res and check_tree(target, expected)
            if res.get("seconds"):
                res["mb_per_s"] = round(total / res["seconds"] / 1e6, 1)
            out[label] = res
            shutil.rmtree(target, ignore_errors=True)
            shutil.rmtree(home, ignore_errors=True)
    finally:
        hub.close()
    for how in ("pull", "engine"):
        one = out[f"{how}, 1 source (hf)"].get("seconds")
        two = out[f"{how}, 2 sources (hf,modelscope)"].get("seconds")
        if one and two:
            out[f"{how} speedup"] = round(one / two, 2)
            out[f"{how} target_met (>= 1.8)"] = one / two >= 1.8
    return out


# ----------------------------------------------------------------------------- far link


def link_config(args: argparse.Namespace) -> dict[str, Any]:
    """The far link the hub simulates, as the server process takes it."""
    return {
        "total": args.link_total_mb * 1e6,
        "conn": args.link_conn_mb * 1e6,
        "latency": args.link_latency_ms / 1000,
    }


def far_tools(
    work: Path, expected: dict[str, str]
) -> tuple[dict[str, tuple[list[str], str]], dict[str, str]]:
    """name -> (command without the target directory, what it measures), and the tools left out
    with why: model-zoo, hf download, modelscope and aria2c, in the order they take turns."""
    py = sys.executable
    tools: dict[str, tuple[list[str], str]] = {
        "model-zoo": (
            [py, "-c", CHILD_MODEL_ZOO, NAME, json.dumps({"source": "hf"})],
            "model_zoo.pull(source='hf'), timed around the call",
        ),
    }
    missing: dict[str, str] = {}
    hf_cli = Path(sys.executable).with_name("hf")
    if hf_cli.exists():
        tools["hf download (CLI)"] = (
            [str(hf_cli), "download", HF_REPO, "--local-dir"],
            "whole process timed",
        )
    else:
        missing["hf download (CLI)"] = f"skipped: no {hf_cli}"
    tools["modelscope.snapshot_download"] = (
        [py, "-c", CHILD_MS, MS_REPO, "{}"],
        "modelscope (MODELSCOPE_ENDPOINT), timed around the call",
    )
    if shutil.which("aria2c"):
        sums = work / "sha256.json"
        sums.write_text(json.dumps(expected))
        via = (
            "HF listing + aria2c on every resolve URL + sha256 of every file "
            "(hashlib, one file per core); seconds = download + verify"
        )
        tools["aria2c -x16 -s16"] = ([py, "-c", CHILD_ARIA2, HF_REPO, str(sums)], via)
    else:
        missing["aria2c -x16 -s16"] = (
            "skipped: no aria2c binary on PATH (Debian: apt-get install -y aria2)"
        )
    return tools, missing


def cold_run(hub: Hub, work: Path, cmd: list[str], expected: dict[str, str]) -> dict[str, Any]:
    """One tool, into a new empty directory with a fresh cache home; the server's counters
    for this run only; the result checked byte for byte, untimed."""
    target = work / "target"
    shutil.rmtree(target, ignore_errors=True)
    home = Path(tempfile.mkdtemp(dir=work, prefix="home-"))
    hub.command(reset=True)
    server_cpu = hub.cpu_seconds()
    res = run_timed(cmd + [str(target)], hub.env(home))
    res["server_cpu_seconds"] = round(hub.cpu_seconds() - server_cpu, 3)
    counters = hub.command()
    res["bytes_served"] = counters["bytes_served"]
    res["file_requests"] = counters["file_requests"]
    res["ok"] = "error" not in res and check_tree(target, expected)
    shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    res["_counters"] = counters
    return res


def link_probe(
    hub: Hub,
    expected: dict[str, str],
    total: int,
    connections: int = 32,
    verify_into: Path | None = None,
) -> dict[str, Any]:
    """What the simulated link delivers here to a plain client: every shard fetched as equal
    ranges over ``connections`` connections at once, bytes read and dropped. On a small machine
    the hub's pacing shares the CPUs with the clients, so this, not the configured total, is the
    most any tool could get. With ``verify_into`` each range is also written into its file there
    and hashed as it arrives (a sha256 per range: the same CPU as one per file): the most a
    client that writes and verifies every byte could get on this machine."""
    import http.client
    import threading
    from urllib.parse import urlsplit

    shards = sorted(n for n in expected if n.endswith(".safetensors"))
    per = max(1, connections // len(shards))
    jobs = []
    for name in shards:
        size = (Path(hub.root) / HF_REPO / name).stat().st_size
        step = -(-size // per)
        jobs += [(name, a, min(a + step, size) - 1) for a in range(0, size, step)]
    url = urlsplit(hub.url)
    got = [0] * len(jobs)

    fds: dict[str, int] = {}
    if verify_into is not None:
        verify_into.mkdir(parents=True, exist_ok=True)
        fds = {name: os.open(verify_into / name, os.O_RDWR | os.O_CREAT, 0o644) for name in shards}

    def fetch(i: int) -> None:
        name, first, last = jobs[i]
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
        h = hashlib.sha256()
        try:
            conn.request(
                "GET", f"/{HF_REPO}/resolve/main/{name}", headers={"Range": f"bytes={first}-{last}"}
            )
            resp = conn.getresponse()
            buf = memoryview(bytearray(1 << 20))
            while n := resp.readinto(buf):
                if fds:
                    os.pwrite(fds[name], buf[:n], first + got[i])
                    h.update(buf[:n])
                got[i] += n
        finally:
            conn.close()

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(len(jobs))]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    secs = time.perf_counter() - t
    for fd in fds.values():
        os.close(fd)
    if verify_into is not None:
        shutil.rmtree(verify_into, ignore_errors=True)
    nbytes = sum(got)
    how = (
        "writing each range into its file and hashing it as it arrives"
        if fds
        else "no hashing, no writing"
    )
    return {
        "connections": len(jobs),
        "ok": nbytes == sum(last - first + 1 for _, first, last in jobs),
        "seconds": round(secs, 3),
        "mb_per_s": round(nbytes / secs / 1e6, 1),
        "via": f"http.client, one thread per range, {how}",
    }


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


def bench_far_link(
    hub: Hub, work: Path, expected: dict[str, str], total: int, args: argparse.Namespace
) -> dict[str, Any]:
    """Every tool cold over the simulated far link, interleaved, ``--repeat`` rounds."""
    tools, missing = far_tools(work, expected)
    link = link_config(args)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in tools}
    probe = link_probe(hub, expected, total)
    probe["pct_of_link"] = round(100 * probe["mb_per_s"] * 1e6 / link["total"], 1)
    verifying = link_probe(hub, expected, total, verify_into=work / "probe")
    verifying["pct_of_link"] = round(100 * verifying["mb_per_s"] * 1e6 / link["total"], 1)
    for _ in range(args.repeat):
        for name, (cmd, _via) in tools.items():  # A B C D, A B C D, ...
            res = cold_run(hub, work, cmd, expected)
            res.pop("_counters")
            runs[name].append(res)
    out: dict[str, Any] = {
        "link": {
            "total_mb_per_s": args.link_total_mb,
            "per_connection_mb_per_s": args.link_conn_mb,
            "latency_ms": args.link_latency_ms,
        },
        "floor_seconds": round(total / link["total"], 3),  # every byte at the link's total rate
        "link_probe": probe,
        # the same with every byte written and hashed: this machine's bound
        "verifying_link_probe": verifying,
        "order": list(tools),
    }
    for name, rs in runs.items():
        good = [r for r in rs if r["ok"]]
        secs = _median(good, "seconds")
        entry: dict[str, Any] = {
            "via": tools[name][1],
            "ok": bool(good) and len(good) == len(rs),
            "seconds": secs,
            "mb_per_s": round(total / secs / 1e6, 1) if secs else None,
            "pct_of_link": round(100 * total / secs / link["total"], 1) if secs else None,
            "process_seconds": _median(good, "process_seconds"),
            "cpu_seconds": _median(rs, "cpu_seconds"),
            "server_cpu_seconds": _median(rs, "server_cpu_seconds"),
            "bytes_served_over_checkpoint": round((_median(rs, "bytes_served") or 0) / total, 3),
        }
        if name.startswith("aria2c"):
            entry["download_seconds"] = _median(good, "download_seconds")
            entry["verify_seconds"] = _median(good, "verify_seconds")
        entry["runs"] = rs
        out[name] = entry
    out.update(missing)
    return out


def bench_stall(
    hub: Hub,
    work: Path,
    expected: dict[str, str],
    total: int,
    args: argparse.Namespace,
    far: dict[str, Any] | None,
) -> dict[str, Any]:
    """Every tool once more over the far link while one file's body stalls part-way."""
    tools, missing = far_tools(work, expected)
    shards = sorted(n for n in expected if n.endswith(".safetensors"))
    path = args.stall_file or shards[min(1, len(shards) - 1)]
    size = (work / "hub" / HF_REPO / path).stat().st_size
    after = (
        int(args.stall_after_mb * 1e6)
        if args.stall_after_mb is not None
        else min(size // 2, 8_000_000)
    )
    rule = ["stall", {"seconds": args.stall_seconds, "after": after, "path": path}]
    out: dict[str, Any] = {
        "file": path,
        "file_bytes": size,
        "stall_after_bytes": after,
        "stall_seconds": args.stall_seconds,
        "rule": "the first GET of the file whose body is longer than stall_after_bytes sends that "
        "many bytes, then nothing for stall_seconds (unless the client gives up first)",
    }
    for name, (cmd, via) in tools.items():
        runs = []
        for _ in range(args.stall_repeat):
            hub.command(faults=[rule])
            res = cold_run(hub, work, cmd, expected)
            counters = res.pop("_counters")
            res["stall_hit"] = bool(counters["faults"] and counters["faults"][0]["hits"])
            res["stalled_request"] = next(
                ({k: f[k] for k in ("method", "range", "bytes_sent")} for f in counters["faulted"]),
                None,
            )
            runs.append(res)
        good = [r for r in runs if r["ok"]]
        secs = _median(good, "seconds")
        entry: dict[str, Any] = {
            "via": via,
            "ok": bool(good) and len(good) == len(runs),
            "seconds": secs,
            "stall_hit": all(r["stall_hit"] for r in runs),
        }
        base = (far or {}).get(name, {}).get("seconds")
        if secs and base:
            entry["far_link_seconds"] = base
            entry["stall_cost_seconds"] = round(
                secs - base, 3
            )  # what the stall added to a far-link pull
        entry["runs"] = runs
        out[name] = entry
    hub.command(faults=[])
    out.update(missing)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-gb", type=float, default=1.0, help="checkpoint size (GB, 1e9 bytes)")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool (median reported)")
    ap.add_argument(
        "--rate-mb",
        type=float,
        default=100.0,
        help="per-protocol limit for the multi-source test (MB/s)",
    )
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--skip", default="", help="comma list of sections to skip: pull,verify,multi")
    ap.add_argument(
        "--far-link", action="store_true", help="also pull through a simulated far CDN link"
    )
    ap.add_argument(
        "--stall", action="store_true", help="also pull over the far link while one file stalls"
    )
    ap.add_argument(
        "--link-total-mb", type=float, default=400.0, help="far link: total rate (MB/s)"
    )
    ap.add_argument(
        "--link-conn-mb", type=float, default=20.0, help="far link: rate of each connection (MB/s)"
    )
    ap.add_argument(
        "--link-latency-ms",
        type=float,
        default=50.0,
        help="far link: wait before every response (ms)",
    )
    ap.add_argument(
        "--stall-seconds", type=float, default=120.0, help="stall: how long the body stops"
    )
    ap.add_argument(
        "--stall-after-mb",
        type=float,
        default=None,
        help="stall: body MB sent before it stops (default: half the file, at most 8)",
    )
    ap.add_argument(
        "--stall-file", default=None, help="stall: which file (default: the second shard)"
    )
    ap.add_argument("--stall-repeat", type=int, default=1, help="stall: runs per tool")
    args = ap.parse_args()
    for flag in ("link_total_mb", "link_conn_mb"):
        if not getattr(args, flag) > 0:
            ap.error(f"--{flag.replace('_', '-')} must be > 0")
    if args.link_latency_ms < 0 or args.stall_seconds < 0:
        ap.error("--link-latency-ms and --stall-seconds must be >= 0")
    skip = set(filter(None, args.skip.split(",")))

    work = Path(tempfile.mkdtemp(prefix="mz-bench-pull-", dir=args.workdir))
    try:
        total_req = int(args.size_gb * 1e9)
        t = time.perf_counter()
        expected = build_checkpoint(work / "hub", total_req, args.shards)
        total = sum((work / "hub" / HF_REPO / n).stat().st_size for n in expected)
        result: dict[str, Any] = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "cpus": len(os.sched_getaffinity(0)),
            "load_avg_start": os.getloadavg(),
            "checkpoint": {
                "bytes": total,
                "files": len(expected),
                "shards": args.shards,
                "build_seconds": round(time.perf_counter() - t, 2),
            },
        }
        hub = Hub(work / "hub")
        try:
            if "pull" not in skip:
                pulls = bench_pulls(hub, work, expected, total, args.repeat)
                result["pull"] = pulls
                official = [
                    v["mb_per_s"]
                    for k, v in pulls.items()
                    if not k.startswith("model-zoo") and v["mb_per_s"]
                ]
                mz = pulls["model-zoo"]["mb_per_s"]
                if official and mz:
                    result["pull_vs_fastest_official"] = round(mz / max(official), 2)
                    result["pull_target_met (>= 1.5)"] = mz / max(official) >= 1.5
                best_official = [
                    v["best_mb_per_s"]
                    for k, v in pulls.items()
                    if not k.startswith("model-zoo") and v["best_mb_per_s"]
                ]
                if best_official and pulls["model-zoo"]["best_mb_per_s"]:
                    result["pull_vs_fastest_official (best runs)"] = round(
                        pulls["model-zoo"]["best_mb_per_s"] / max(best_official), 2
                    )
                result["pull_ceiling"] = pull_ceiling(pulls, total, work)
            if "verify" not in skip:
                result["verify"] = bench_verify(hub, work, expected, total)
        finally:
            hub.close()
        if "multi" not in skip:
            result["multi_source"] = bench_multi_source(
                work / "hub", work, expected, total, args.rate_mb * 1e6
            )
        if args.far_link or args.stall:
            far_hub = Hub(work / "hub", link_config(args))
            try:
                if args.far_link:
                    result["far_link"] = bench_far_link(far_hub, work, expected, total, args)
                if args.stall:
                    result["stall"] = bench_stall(
                        far_hub, work, expected, total, args, result.get("far_link")
                    )
            finally:
                far_hub.close()
        result["load_avg_end"] = os.getloadavg()
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
