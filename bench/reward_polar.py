"""POLAR (reference-based) scoring throughput: one at a time vs ``score_batch``, same inputs.

Builds a tiny POLAR checkpoint (or uses ``--model``), scores the same ``{prompt, reference,
output}`` inputs two ways and prints one JSON document with inputs per second for each:

- ``one_at_a_time``: ``rm.score(prompt=..., reference=..., output=...)`` in a loop (what a
  trainer calling POLAR's client per sample amounts to);
- ``score_batch``: ``rm.score_batch(all)`` (length buckets under a token budget, padding-free);
- ``encode_only``: ``rm.encode_inputs(all)``, POLAR's text recipe and tokenizing alone (three
  parts tokenized, cut, decoded, joined and tokenized again), to show what scoring costs on top.

Each figure is the best of ``--repeat`` rounds after a warm-up; the ways run interleaved in every
round. Target (CPU, tiny model): score_batch >= 5x one at a time.

The server runs belong in ``bench/reward.py`` (its ``route_job`` already sends a reference-based
model's inputs to ``/pooling`` as the text POLAR's client builds): ``polar_inputs`` and
``tiny_polar`` here are the inputs and the checkpoint to use there, so both benches score the
same things.

    .venv/bin/python bench/reward_polar.py [--n 256] [--repeat 5] [--device cpu] [--threads 1]
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

WORDS = [
    "the",
    "a",
    "reward",
    "model",
    "scores",
    "each",
    "answer",
    "to",
    "every",
    "question",
    "about",
    "cats",
    "dogs",
    "maths",
    "code",
    "history",
    "rivers",
    "and",
    "mountains",
    "with",
    "care",
    "because",
    "feedback",
    "matters",
]


def _text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(low, high)))


def polar_inputs(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` POLAR inputs of varied lengths (about 20 to 130 tokens scored), fixed by the seed.

    Half the prompts are message lists, as POLAR's verl recipe sends them; one output in eight
    repeats its reference (the case POLAR scores about 0 on the real models).
    """
    rng = random.Random(seed)
    out = []
    for i in range(n):
        prompt: Any = _text(rng, 2, 12)
        if i % 2:
            prompt = [{"role": "user", "content": prompt}]
        reference = _text(rng, 1, 20)
        output = reference if i % 8 == 0 else _text(rng, 1, 20)
        out.append({"prompt": prompt, "reference": reference, "output": output})
    return out


def tiny_polar(directory: Path) -> Path:
    """The tiny POLAR checkpoint the bench scores with (fp32, fixed seed)."""
    from model_zoo.testing.tiny import make_tiny

    return make_tiny("polar", directory, seed=0, dtype="float32")


def timed(n: int, run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument(
        "--model", help="POLAR model name or directory (default: a tiny POLAR checkpoint)"
    )
    ap.add_argument("--n", type=int, default=256, help="inputs")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: on a shared 2-core machine, oversubscribed OpenMP pools make "
        "the tiny model's small matmuls slow and the figures noise)",
    )
    args = ap.parse_args()

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    from model_zoo.reward.api import load_reward

    with tempfile.TemporaryDirectory(prefix="mz-bench-polar-") as tmp:
        path: Any = args.model or tiny_polar(Path(tmp) / "tiny-polar")
        rm: Any = load_reward(path, device=args.device, dtype=args.dtype, style="reference-based")
        items = polar_inputs(args.n)
        lengths = [len(ids) for ids in rm.encode_inputs(items)]
        rm.score_batch(items[:32])  # warm-up

        rates: dict[str, list[float]] = {"single": [], "batch": [], "encode": []}
        for _ in range(args.repeat):  # interleaved, so that each way sees the same machine load
            rates["single"].append(timed(len(items), lambda: [rm.score(**item) for item in items]))
            rates["batch"].append(timed(len(items), lambda: rm.score_batch(items)))
            rates["encode"].append(timed(len(items), lambda: rm.encode_inputs(items)))
        best = {key: max(values) for key, values in rates.items()}
        batched = rm.score_batch(items)
        alone = [rm.score(**item) for item in items[:64]]
        same = all(abs(a - b) < 1e-4 for a, b in zip(batched, alone, strict=True))
        passes = getattr(rm.scorer, "forward_passes", None)

    print(
        json.dumps(
            {
                "model": str(args.model or "tiny POLAR (hidden 64, 2 layers)"),
                "device": args.device,
                "dtype": str(getattr(rm.scorer, "runner", None) and rm.scorer.runner.dtype),
                "torch_threads": torch.get_num_threads(),
                "inputs": len(items),
                "tokens_min_mean_max": [
                    min(lengths),
                    round(sum(lengths) / len(lengths), 1),
                    max(lengths),
                ],
                "inputs_per_s": {
                    "one_at_a_time": round(best["single"], 1),
                    "score_batch": round(best["batch"], 1),
                    "encode_only": round(best["encode"], 1),
                },
                "score_batch_vs_one_at_a_time": round(best["batch"] / best["single"], 2),
                "all_rounds_inputs_per_s": {k: [round(x, 1) for x in v] for k, v in rates.items()},
                "batch_equals_single_1e-4": same,
                "forward_passes_total": passes,
                "targets": {"score_batch_vs_one_at_a_time": ">= 5"},
                "targets_met": {"batched": best["batch"] / best["single"] >= 5},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
