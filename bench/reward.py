"""Reward scoring throughput: one at a time vs ``score_batch`` vs the server under concurrent clients.

Builds a tiny InternLM2-Reward checkpoint (or uses ``--model``), scores the same conversations
three ways and prints one JSON document with conversations per second for each:

- ``one_at_a_time``: ``rm.score(c)`` in a loop (what upstream's ``get_score`` does);
- ``score_batch``: ``rm.score_batch(all)`` (length buckets under a token budget);
- ``server``: a ``RewardServer`` (default batching settings) on 127.0.0.1 with ``--clients``
  threads, each posting its share of the conversations to ``/v1/score``, ``--per-request``
  conversations per request.

Each figure is the best of ``--repeat`` rounds after a warm-up; the three ways run interleaved in
every round, so that they see the same load on a shared machine.
Targets (CPU, tiny model): score_batch >= 5x one-at-a-time; server >= 0.8x score_batch.

    .venv/bin/python bench/reward.py [--n 256] [--clients 16] [--per-request 1] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
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


class ServerRun:
    """A RewardServer with its default batching settings and ``clients`` keep-alive client threads.

    Clients are threads of this process on ``http.client`` connections (the lightest stdlib
    client, so client-side Python takes as little as possible of the shared CPUs).
    """

    def __init__(self, rm: Any, convs: list[Any], clients: int, per_request: int) -> None:
        import http.client

        from model_zoo.server.reward_server import RewardServer

        self.server = RewardServer(rm).start()
        self.conns = [http.client.HTTPConnection(self.server.host, self.server.port, timeout=120)
                      for _ in range(clients)]
        self.shares = [convs[k::clients] for k in range(clients)]
        self.per_request = per_request
        self.n = len(convs)

    def _client(self, k: int, out: list[float]) -> None:
        share, conn = self.shares[k], self.conns[k]
        for start in range(0, len(share), self.per_request):
            body = json.dumps({"conversations": share[start : start + self.per_request]})
            conn.request("POST", "/v1/score", body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {data[:200]!r}")
            out.extend(json.loads(data)["scores"])

    def __call__(self) -> None:
        outs: list[list[float]] = [[] for _ in self.conns]
        threads = [threading.Thread(target=self._client, args=(k, outs[k])) for k in range(len(self.conns))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(len(o) for o in outs) == self.n, "a client failed"

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.server.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="reward model name or directory (default: a tiny checkpoint)")
    ap.add_argument("--n", type=int, default=256, help="conversations")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--per-request", type=int, default=1, help="conversations per server request")
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

        serve = ServerRun(rm, convs, args.clients, args.per_request)
        serve()  # warm-up: connections, threads
        before = dict(vars(serve.server.scheduler.stats))
        rates: dict[str, list[float]] = {"single": [], "batch": [], "server": []}
        for _ in range(args.repeat):  # interleaved, so that each way sees the same machine load
            rates["single"].append(timed(len(convs), lambda: [rm.score(c) for c in convs]))
            rates["batch"].append(timed(len(convs), lambda: rm.score_batch(convs)))
            rates["server"].append(timed(len(convs), serve))
        after = vars(serve.server.scheduler.stats)
        stats = {k: after[k] - before[k] for k in ("requests", "items", "batches", "merged_batches")}
        stats["largest_batch_items"] = after["largest_batch_items"]
        serve.close()
        single, batched, served = (max(rates[k]) for k in ("single", "batch", "server"))
        ok = all(abs(a - b) < 1e-4 for a, b in zip(rm.score_batch(convs), [rm.score(c) for c in convs[:64]]))

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
            f"server_{args.clients}_clients_{args.per_request}_per_request": round(served, 1),
        },
        "score_batch_vs_one_at_a_time": round(batched / single, 2),
        "server_vs_score_batch": round(served / batched, 3),
        "server_scheduler": stats,
        "all_rounds_conversations_per_s": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        "batch_equals_single_1e-4": ok,
        "targets": {"score_batch_vs_one_at_a_time": ">= 5", "server_vs_score_batch": ">= 0.8"},
        "targets_met": {"batched": batched / single >= 5, "server": served / batched >= 0.8},
    }, indent=2))


if __name__ == "__main__":
    main()
