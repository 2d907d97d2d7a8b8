"""Reward scoring throughput: one at a time vs ``score_batch`` vs the server under concurrent clients.

Builds a tiny InternLM2-Reward checkpoint (or uses ``--model``), scores the same conversations
three ways and prints one JSON document with conversations per second for each:

- ``one_at_a_time``: ``rm.score(c)`` in a loop (what upstream's ``get_score`` does);
- ``score_batch``: ``rm.score_batch(all)`` (length buckets under a token budget);
- ``server``: a ``RewardServer`` (default batching settings) on 127.0.0.1 with ``--clients``
  client threads in a separate process, each posting its share of the conversations to ``/v1/score``, ``--per-request``
  conversations per request (each value of a comma-separated list is one run), with each
  ``--client`` kind: ``raw`` (a minimal load generator, so the figure measures the server) and
  ``http.client`` (the stdlib client, which on a 2-core machine takes CPU from the server);
- ``ceiling``: ``rm.score_batch`` over consecutive chunks of ``clients x per_request``
  conversations: what a server with no overhead at all could reach, since clients that wait for
  each answer never have more than that many conversations outstanding, so no batch can be larger.
  When this is itself under 0.8x of ``score_batch``, no server can meet the target for that shape;
  ``server_vs_ceiling`` is then the figure that measures the server.

Each figure is the best of ``--repeat`` rounds after a warm-up; the three ways run interleaved in
every round, so that they see the same load on a shared machine.
Targets (CPU, tiny model): score_batch >= 5x one-at-a-time; server >= 0.8x score_batch.

    .venv/bin/python bench/reward.py [--n 256] [--clients 16] [--per-request 1,16] [--client raw,http.client]
        [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

WORDS = ("the a reward model scores each answer to every question about cats dogs maths code "
         "history rivers and mountains with care because feedback matters").split()


def conversations(n: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """Varied lengths (about 15 to 60 tokens with the tiny tokenizer), fixed by the seed."""
    rng = random.Random(seed)
    return [
        [{"role": "user", "content": " ".join(rng.choices(WORDS, k=rng.randint(1, 5)))},
         {"role": "assistant", "content": " ".join(rng.choices(WORDS, k=rng.randint(1, 9)))}]
        for _ in range(n)
    ]


def timed(n: int, run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return n / (time.perf_counter() - start)


#: Client threads in a separate process; each posts its share of the conversations one request
#: after another on one keep-alive connection. ``http.client``: the stdlib client (~0.4 ms of
#: CPU per request here, in one process, so on a 2-core machine the clients take most of a
#: core from the server). ``raw``: a load generator in the spirit of wrk: the request bytes are
#: built once, and each answer is framed by Content-Length, checked for 200 and JSON-decoded.
CLIENT_KINDS = {
    "http.client": r"""
import http.client

def make_client(host, port):
    conn = http.client.HTTPConnection(host, port, timeout=120)

    def call(body):
        conn.request("POST", "/v1/score", body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, r.read()
    return call
""",
    "raw": r"""
import socket

def make_client(host, port):
    sock = socket.create_connection((host, port), timeout=120)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    state = {"buf": b""}
    head = b"POST /v1/score HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"

    def call(body):
        data = body.encode()
        sock.sendall(head % (host.encode(), len(data)) + data)
        buf = state["buf"]
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                lower = buf[:end].lower()
                at = lower.find(b"content-length:") + 15
                length = int(lower[at : lower.find(b"\r\n", at) if lower.find(b"\r\n", at) > 0 else end])
                if len(buf) >= end + 4 + length:
                    state["buf"] = buf[end + 4 + length :]
                    return int(buf[9:12]), buf[end + 4 : end + 4 + length]
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise RuntimeError("the server closed the connection")
            buf += chunk
    return call
""",
}

CLIENTS = r"""
import json, sys, threading
host, port, clients, per_request = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
convs = json.loads(sys.stdin.readline())
shares = [convs[k::clients] for k in range(clients)]
calls = [make_client(host, port) for _ in range(clients)]

def client(k, out):
    share, call = shares[k], calls[k]
    for start in range(0, len(share), per_request):
        status, data = call(json.dumps({"conversations": share[start : start + per_request]}))
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {data[:200]!r}")
        out.extend(json.loads(data)["scores"])

for line in sys.stdin:  # one round per line
    outs = [[] for _ in calls]
    threads = [threading.Thread(target=client, args=(k, outs[k])) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(sum(len(o) for o in outs), flush=True)
"""


class ServerRun:
    """A RewardServer with its default batching settings, and ``clients`` keep-alive clients.

    The clients are threads of one separate process (``CLIENT_KINDS``): trainer workers never
    share the server's interpreter, and client threads in this process would compete with the
    server for its GIL. Each call is one round: every client posts its share of the
    conversations, one request after another.
    """

    def __init__(self, rm: Any, convs: list[Any], clients: int, per_request: int, client: str = "raw") -> None:
        import subprocess
        import sys

        from model_zoo.server.reward_server import RewardServer

        self.server = RewardServer(rm).start()
        self.n = len(convs)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLIENT_KINDS[client] + CLIENTS, self.server.host, str(self.server.port), str(clients), str(per_request)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(convs) + "\n")
        self.proc.stdin.flush()

    def __call__(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line.strip() == str(self.n), f"a client failed (got {line!r}); see its traceback above"

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.server.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="reward model name or directory (default: a tiny checkpoint)")
    ap.add_argument("--n", type=int, default=256, help="conversations")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--per-request", default="1,16",
                    help="conversations per server request; a comma-separated list runs each shape")
    ap.add_argument("--client", default="raw,http.client",
                    help="client kinds (comma-separated): raw (a minimal keep-alive HTTP/1.1 load generator) "
                         "and/or http.client (the stdlib client)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1: on a shared 2-core machine, oversubscribed OpenMP pools "
                         "make the tiny model's small matmuls 10-40x slower and the figures noise)")
    args = ap.parse_args()

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    from model_zoo.reward.api import load_reward

    with tempfile.TemporaryDirectory(prefix="mz-bench-reward-") as tmp:
        path: Any = args.model
        if path is None:
            from model_zoo.testing.tiny import make_tiny

            path = make_tiny("internlm2-reward", Path(tmp) / "tiny-reward", seed=0, dtype="float32")
        rm = load_reward(path, device=args.device, dtype=args.dtype)
        convs = conversations(args.n)
        lengths = [len(x) for x in rm.encode_conversations(convs)]
        rm.score_batch(convs[:32])  # warm-up

        shapes = [int(x) for x in str(args.per_request).split(",") if x.strip()]
        kinds = [x.strip() for x in str(args.client).split(",") if x.strip()]
        unknown = set(kinds) - set(CLIENT_KINDS)
        if unknown:
            ap.error(f"unknown --client {', '.join(sorted(unknown))}; choose from {', '.join(CLIENT_KINDS)}")
        runs = [(k, kind) for k in shapes for kind in kinds]
        servers = {(k, kind): ServerRun(rm, convs, args.clients, k, kind) for k, kind in runs}
        for serve in servers.values():
            serve()  # warm-up: connections, threads
        before = {key: dict(vars(serve.server.scheduler.stats)) for key, serve in servers.items()}

        def chunked(size: int) -> Callable[[], Any]:
            return lambda: [rm.score_batch(convs[i : i + size]) for i in range(0, len(convs), size)]

        rates: dict[str, list[float]] = {"single": [], "batch": []}
        for k in shapes:
            rates[f"ceiling_{k}"] = []
        for k, kind in runs:
            rates[f"server_{k}_{kind}"] = []
        for _ in range(args.repeat):  # interleaved, so that each way sees the same machine load
            rates["single"].append(timed(len(convs), lambda: [rm.score(c) for c in convs]))
            rates["batch"].append(timed(len(convs), lambda: rm.score_batch(convs)))
            for k in shapes:
                rates[f"ceiling_{k}"].append(timed(len(convs), chunked(args.clients * k)))
            for (k, kind), serve in servers.items():
                rates[f"server_{k}_{kind}"].append(timed(len(convs), serve))
        stats = {}
        for key, serve in servers.items():
            after = vars(serve.server.scheduler.stats)
            stats[key] = {f: after[f] - before[key][f] for f in ("requests", "items", "batches", "merged_batches")}
            stats[key]["largest_batch_items"] = after["largest_batch_items"]
            serve.close()
        best = {key: max(values) for key, values in rates.items()}
        single, batched = best["single"], best["batch"]
        ok = all(abs(a - b) < 1e-4 for a, b in zip(rm.score_batch(convs), [rm.score(c) for c in convs[:64]]))

    per_shape = {}
    for k, kind in runs:
        served, ceiling = best[f"server_{k}_{kind}"], best[f"ceiling_{k}"]
        per_shape[f"{args.clients}_clients_{k}_per_request_{kind}"] = {
            "server_conversations_per_s": round(served, 1),
            "ceiling_conversations_per_s": round(ceiling, 1),
            "server_vs_score_batch": round(served / batched, 3),
            "ceiling_vs_score_batch": round(ceiling / batched, 3),
            "server_vs_ceiling": round(served / ceiling, 3),
            "target_reachable": ceiling / batched >= 0.8,
            "target_met": served / batched >= 0.8,
            "scheduler": stats[(k, kind)],
        }
    print(json.dumps({
        "model": str(args.model or "tiny internlm2-reward (hidden 64, 2 layers)"),
        "device": args.device,
        "dtype": str(getattr(rm.scorer, "runner", None) and rm.scorer.runner.dtype),
        "torch_threads": torch.get_num_threads(),
        "conversations": len(convs),
        "tokens_min_mean_max": [min(lengths), round(sum(lengths) / len(lengths), 1), max(lengths)],
        "conversations_per_s": {
            "one_at_a_time": round(single, 1),
            "score_batch": round(batched, 1),
            **{f"ceiling_{args.clients}_clients_{k}_per_request": round(best[f"ceiling_{k}"], 1) for k in shapes},
            **{f"server_{k}": v["server_conversations_per_s"] for k, v in per_shape.items()},
        },
        "score_batch_vs_one_at_a_time": round(batched / single, 2),
        "server": per_shape,
        "all_rounds_conversations_per_s": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "batch_equals_single_1e-4": ok,
        "targets": {"score_batch_vs_one_at_a_time": ">= 5", "server_vs_score_batch": ">= 0.8"},
        "targets_met": {"batched": batched / single >= 5,
                        **{f"server_{k}": v["target_met"] for k, v in per_shape.items()}},
    }, indent=2))


if __name__ == "__main__":
    main()
