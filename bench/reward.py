"""Reward scoring throughput: one at a time vs ``score_batch`` vs the server under concurrent
clients.

Builds a tiny InternLM2-Reward checkpoint (or uses ``--model``), scores the same conversations
three ways and prints one JSON document with conversations per second for each. With
``--polar``, a tiny POLAR checkpoint scores ``bench/reward_polar.py``'s ``{prompt, reference,
output}`` inputs instead (``/v1/score`` takes them as ``inputs``, ``/pooling`` as the text
POLAR's client builds); "conversations" in the names below then means those inputs:

- ``one_at_a_time``: ``rm.score(c)`` in a loop (what upstream's ``get_score`` does);
- ``score_batch``: ``rm.score_batch(all)`` (length buckets under a token budget);
- ``server``: a ``RewardServer`` (default batching settings) on 127.0.0.1 with ``--clients``
  client threads in a separate process, each posting its share of the conversations,
  ``--per-request`` conversations per request (each value of a comma-separated list is one run),
  with each
  ``--client`` kind: ``raw`` (a minimal load generator, so the figure measures the server) and
  ``http.client`` (the stdlib client, which on a 2-core machine takes CPU from the server), to
  each ``--route``: ``score`` (``/v1/score`` with the conversations) and ``pooling`` (vLLM's
  ``/pooling`` with the same conversations as the text a vLLM client sends: rendered with the
  chat template, ``add_special_tokens`` false, so exactly the tokens ``score_batch`` scores;
  ``pooling_equals_score_batch_1e-4`` checks it);
- ``ceiling``: ``rm.score_batch`` over consecutive chunks of ``clients x per_request``
  conversations: what a server with no overhead at all could reach, since clients that wait for
  each answer never have more than that many conversations outstanding, so no batch can be larger.
  When this is itself under 0.8x of ``score_batch``, no server can meet the target for that shape;
  ``server_vs_ceiling`` is then the figure that measures the server.

Each figure is the best of ``--repeat`` rounds after a warm-up; the three ways run interleaved in
every round, so that they see the same load on a shared machine.
Targets (CPU, tiny model): score_batch >= 5x one-at-a-time; server >= 0.8x score_batch.

    .venv/bin/python bench/reward.py [--n 256] [--clients 16] [--per-request 1,16]
        [--client raw,http.client] [--route score,pooling] [--device cpu] [--threads 1]
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

WORDS = (
    "the a reward model scores each answer to every question about cats dogs maths code "
    "history rivers and mountains with care because feedback matters"
).split()


def conversations(n: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """Varied lengths (about 15 to 60 tokens with the tiny tokenizer), fixed by the seed."""
    rng = random.Random(seed)
    return [
        [
            {"role": "user", "content": " ".join(rng.choices(WORDS, k=rng.randint(1, 5)))},
            {"role": "assistant", "content": " ".join(rng.choices(WORDS, k=rng.randint(1, 9)))},
        ]
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
        conn.request("POST", PATH, body=body, headers={"Content-Type": "application/json"})
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
    head = (b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n")

    def call(body):
        data = body.encode()
        sock.sendall(head % (host.encode(), len(data)) + data)
        buf = state["buf"]
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                lower = buf[:end].lower()
                at = lower.find(b"content-length:") + 15
                eol = lower.find(b"\r\n", at)
                length = int(lower[at : eol if eol > 0 else end])
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

#: Where each route takes the inputs, and where its answer keeps the scores.
ROUTES = {"score": "/v1/score", "pooling": "/pooling"}

PRELUDE = r"""
import sys
PATH = {"score": "/v1/score", "pooling": "/pooling"}[sys.argv[5]]
"""

CLIENTS = r"""
import json, sys, threading
host, port, route = sys.argv[1], int(sys.argv[2]), sys.argv[5]
clients, per_request = int(sys.argv[3]), int(sys.argv[4])
# {"inputs": [...], "key": field of the request, "extra": {...}}
job = json.loads(sys.stdin.readline())
shares = [job["inputs"][k::clients] for k in range(clients)]
calls = [make_client(host, port) for _ in range(clients)]

def scores_of(answer):
    if route == "pooling":  # vLLM's shape: one [score] row, the last token's
        return [d["data"][-1][0] for d in answer["data"]]
    return answer["scores"]

def client(k, out):
    share, call = shares[k], calls[k]
    for start in range(0, len(share), per_request):
        batch = share[start : start + per_request]
        status, data = call(json.dumps({job["key"]: batch, **job["extra"]}))
        if status != 200:
            raise RuntimeError(f"HTTP {status}: {data[:200]!r}")
        out.extend(scores_of(json.loads(data)))

for line in sys.stdin:  # one round per line
    outs = [[] for _ in calls]
    threads = [threading.Thread(target=client, args=(k, outs[k])) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(sum(len(o) for o in outs), flush=True)
"""


def route_job(rm: Any, convs: list[Any], route: str) -> dict[str, Any]:
    """What a client of ``route`` sends for ``convs``: the same tokens ``score_batch`` scores.

    ``/pooling`` takes text, as a vLLM client sends it: a conversation model's conversations
    rendered with the chat template (whose bos is in the text, so ``add_special_tokens`` false);
    a reference-based model's inputs as the text POLAR's client builds (tokenized with bos).
    """
    polar = getattr(rm, "scoring_style", "conversation") == "reference-based"
    if route == "score":
        return {"inputs": convs, "key": "inputs" if polar else "conversations", "extra": {}}
    if polar:
        return {"inputs": rm.render(convs), "key": "input", "extra": {}}
    return {
        "inputs": [rm.codec.render(c) for c in convs],
        "key": "input",
        "extra": {"add_special_tokens": False},
    }


class ServerRun:
    """A RewardServer with its default batching settings, and ``clients`` keep-alive clients.

    The clients are threads of one separate process (``CLIENT_KINDS``): trainer workers never
    share the server's interpreter, and client threads in this process would compete with the
    server for its GIL. Each call is one round: every client posts its share of the
    conversations, one request after another.
    """

    def __init__(
        self,
        rm: Any,
        convs: list[Any],
        clients: int,
        per_request: int,
        client: str = "raw",
        route: str = "score",
    ) -> None:
        import subprocess
        import sys

        from model_zoo.server.reward_server import RewardServer

        self.server = RewardServer(rm).start()
        self.n = len(convs)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                PRELUDE + CLIENT_KINDS[client] + CLIENTS,
                self.server.host,
                str(self.server.port),
                str(clients),
                str(per_request),
                route,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(route_job(rm, convs, route)) + "\n")
        self.proc.stdin.flush()

    def __call__(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line.strip() == str(self.n), (
            f"a client failed (got {line!r}); see its traceback above"
        )

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)
        self.server.shutdown()


def server_key(k: int, kind: str, route: str) -> str:
    """The rates key of one server run (``/v1/score`` runs keep their names from before
    ``--route``)."""
    return f"server_{k}_{kind}" + ("" if route == "score" else f"_{route}")


def pooling_equals_score_batch(rm: Any, convs: list[Any]) -> bool:
    """What ``/pooling`` answers for the bench's texts equals ``score_batch`` (1e-4): the same
    tokens."""
    import httpx

    from model_zoo.server.reward_server import RewardServer

    job = route_job(rm, convs, "pooling")
    with RewardServer(rm) as server:
        answer = httpx.post(
            server.url + "/pooling", json={"input": job["inputs"], **job["extra"]}, timeout=120
        )
    answer.raise_for_status()
    got = [d["data"][-1][0] for d in answer.json()["data"]]
    return all(abs(a - b) < 1e-4 for a, b in zip(got, rm.score_batch(convs), strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="reward model name or directory (default: a tiny checkpoint)")
    ap.add_argument(
        "--polar",
        action="store_true",
        help="a reference-based model (default: the tiny POLAR checkpoint) scoring "
        "bench/reward_polar.py's {prompt, reference, output} inputs, the same ones that bench "
        "scores",
    )
    ap.add_argument("--n", type=int, default=256, help="conversations")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument(
        "--per-request",
        default="1,16",
        help="conversations per server request; a comma-separated list runs each shape",
    )
    ap.add_argument(
        "--client",
        default="raw,http.client",
        help="client kinds (comma-separated): raw (a minimal keep-alive HTTP/1.1 load generator) "
        "and/or http.client (the stdlib client)",
    )
    ap.add_argument(
        "--route",
        default="score,pooling",
        help="server routes (comma-separated): score (/v1/score, conversations) and/or pooling "
        "(vLLM's /pooling, the same conversations as templated text)",
    )
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: on a shared 2-core machine, oversubscribed OpenMP pools "
        "make the tiny model's small matmuls 10-40x slower and the figures noise)",
    )
    args = ap.parse_args()

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    from model_zoo.reward.api import load_reward

    with tempfile.TemporaryDirectory(prefix="mz-bench-reward-") as tmp:
        path: Any = args.model
        if args.polar:
            from reward_polar import polar_inputs, tiny_polar  # bench/ is the script's directory

            path = path or tiny_polar(Path(tmp) / "tiny-polar")
            rm: Any = load_reward(
                path, device=args.device, dtype=args.dtype, style="reference-based"
            )
            convs: list[Any] = polar_inputs(args.n)
            lengths = [len(x) for x in rm.encode_inputs(convs)]

            def score_one(item: Any) -> float:
                return float(rm.score(**item))
        else:
            if path is None:
                from model_zoo.testing.tiny import make_tiny

                path = make_tiny(
                    "internlm2-reward", Path(tmp) / "tiny-reward", seed=0, dtype="float32"
                )
            rm = load_reward(path, device=args.device, dtype=args.dtype)
            convs = conversations(args.n)
            lengths = [len(x) for x in rm.encode_conversations(convs)]

            def score_one(item: Any) -> float:
                return float(rm.score(item))

        rm.score_batch(convs[:32])  # warm-up

        shapes = [int(x) for x in str(args.per_request).split(",") if x.strip()]
        kinds = [x.strip() for x in str(args.client).split(",") if x.strip()]
        unknown = set(kinds) - set(CLIENT_KINDS)
        if unknown:
            ap.error(
                f"unknown --client {', '.join(sorted(unknown))}; "
                f"choose from {', '.join(CLIENT_KINDS)}"
            )
        routes = [x.strip() for x in str(args.route).split(",") if x.strip()]
        if set(routes) - set(ROUTES):
            ap.error(
                f"unknown --route {', '.join(sorted(set(routes) - set(ROUTES)))}; "
                f"choose from {', '.join(ROUTES)}"
            )
        runs = [(k, kind, route) for route in routes for k in shapes for kind in kinds]
        servers = {run: ServerRun(rm, convs, args.clients, *run) for run in runs}
        for serve in servers.values():
            serve()  # warm-up: connections, threads
        before = {key: dict(vars(serve.server.scheduler.stats)) for key, serve in servers.items()}

        def chunked(size: int) -> Callable[[], Any]:
            return lambda: [rm.score_batch(convs[i : i + size]) for i in range(0, len(convs), size)]

        rates: dict[str, list[float]] = {"single": [], "batch": []}
        for k in shapes:
            rates[f"ceiling_{k}"] = []
        for run in runs:
            rates[server_key(*run)] = []
        for _ in range(args.repeat):  # interleaved, so that each way sees the same machine load
            rates["single"].append(timed(len(convs), lambda: [score_one(c) for c in convs]))
            rates["batch"].append(timed(len(convs), lambda: rm.score_batch(convs)))
            for k in shapes:
                rates[f"ceiling_{k}"].append(timed(len(convs), chunked(args.clients * k)))
            for run, serve in servers.items():
                rates[server_key(*run)].append(timed(len(convs), serve))
        stats = {}
        for key, serve in servers.items():
            after = vars(serve.server.scheduler.stats)
            stats[key] = {
                f: after[f] - before[key][f]
                for f in ("requests", "items", "batches", "merged_batches")
            }
            stats[key]["largest_batch_items"] = after["largest_batch_items"]
            serve.close()
        best = {key: max(values) for key, values in rates.items()}
        single, batched = best["single"], best["batch"]
        ok = all(
            abs(a - b) < 1e-4
            for a, b in zip(
                rm.score_batch(convs)[:64], [score_one(c) for c in convs[:64]], strict=True
            )
        )
        pooling_ok = pooling_equals_score_batch(rm, convs[:64]) if "pooling" in routes else None

    per_shape = {}
    for k, kind, route in runs:
        served, ceiling = best[server_key(k, kind, route)], best[f"ceiling_{k}"]
        suffix = "" if route == "score" else f"_{route}"
        per_shape[f"{args.clients}_clients_{k}_per_request_{kind}{suffix}"] = {
            "route": ROUTES[route],
            "server_conversations_per_s": round(served, 1),
            "ceiling_conversations_per_s": round(ceiling, 1),
            "server_vs_score_batch": round(served / batched, 3),
            "ceiling_vs_score_batch": round(ceiling / batched, 3),
            "server_vs_ceiling": round(served / ceiling, 3),
            "target_reachable": ceiling / batched >= 0.8,
            "target_met": served / batched >= 0.8,
            "scheduler": stats[(k, kind, route)],
        }
    print(
        json.dumps(
            {
                "model": str(
                    args.model
                    or ("tiny POLAR" if args.polar else "tiny internlm2-reward")
                    + " (hidden 64, 2 layers)"
                ),
                "scoring": rm.scoring_style,
                "device": args.device,
                "dtype": str(getattr(rm.scorer, "runner", None) and rm.scorer.runner.dtype),
                "torch_threads": torch.get_num_threads(),
                "conversations": len(convs),
                "tokens_min_mean_max": [
                    min(lengths),
                    round(sum(lengths) / len(lengths), 1),
                    max(lengths),
                ],
                "conversations_per_s": {
                    "one_at_a_time": round(single, 1),
                    "score_batch": round(batched, 1),
                    **{
                        f"ceiling_{args.clients}_clients_{k}_per_request": round(
                            best[f"ceiling_{k}"], 1
                        )
                        for k in shapes
                    },
                    **{
                        f"server_{k}": v["server_conversations_per_s"] for k, v in per_shape.items()
                    },
                },
                "score_batch_vs_one_at_a_time": round(batched / single, 2),
                "server": per_shape,
                "all_rounds_conversations_per_s": {
                    k: [round(x, 1) for x in v] for k, v in rates.items()
                },
                "batch_equals_single_1e-4": ok,
                **(
                    {"pooling_equals_score_batch_1e-4": pooling_ok}
                    if pooling_ok is not None
                    else {}
                ),
                "targets": {
                    "score_batch_vs_one_at_a_time": ">= 5",
                    "server_vs_score_batch": ">= 0.8",
                },
                "targets_met": {
                    "batched": batched / single >= 5,
                    **{f"server_{k}": v["target_met"] for k, v in per_shape.items()},
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
