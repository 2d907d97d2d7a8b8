"""One short end-to-end check on a CUDA GPU, printed as JSON.

Builds a randomly initialised InternLM2 checkpoint with the 1.8B dims (sharded safetensors,
packed grouped wqkv, bf16) on disk, loads it with model-zoo's native loader in bf16 on the GPU,
generates 256 tokens (one sequence, then a batch of 8), scores a batch with a reward head
(random ``v_head`` through the reward package's TorchScorer when present, else hidden state x
v_head directly, and checks the two agree), and reports load seconds, tokens/s and peak memory.

    python bench/gpu_check.py                          # the real check (needs CUDA)
    python bench/gpu_check.py --tiny --device cpu      # tiny dims on the CPU: the same code path
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

TINY: dict[str, Any] = {
    "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 1024, "max_position_embeddings": 64, "rope_theta": 1000000.0,
    "rope_scaling": {"type": "dynamic", "factor": 2.0},
}


def _host_peak() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def score_batch(runner: Any, batch: list[list[int]], v_head: Any) -> tuple[list[float], str]:
    """Reward scores of right-padded sequences at their last token; via the reward package if present."""
    import torch

    try:
        from model_zoo.reward.torch_scorer import TorchScorer
    except ImportError:
        TorchScorer = None
    if TorchScorer is not None:
        scorer = TorchScorer(runner.hidden_states, v_head, pad_token_id=runner.pad_token_id, device=runner.device)
        return scorer.score_ids(batch), "model_zoo.reward.TorchScorer"
    longest = max(map(len, batch))
    ids = torch.full((len(batch), longest), runner.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(batch):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    hidden = runner.hidden_states(ids, mask)
    last = mask.sum(1).to(hidden.device) - 1
    at = hidden[torch.arange(len(batch), device=hidden.device), last]
    return (at.float() @ v_head.float().to(at.device)).tolist(), "hidden_states x v_head"


def direct_scores(runner: Any, batch: list[list[int]], v_head: Any) -> list[float]:
    import torch

    out = []
    for seq in batch:
        hidden = runner.hidden_states(torch.tensor([seq]))
        out.append(float(hidden[0, -1].float() @ v_head.float().to(hidden.device)))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import LlamaForCausalLM  # noqa: F401 - imported here so load_seconds is loading only

    from model_zoo.runner.api import load
    from model_zoo.runner.synthetic import INTERNLM2_1_8B, write_random_internlm2

    dims = TINY if args.tiny else INTERNLM2_1_8B
    dtype = getattr(torch, args.dtype)
    with tempfile.TemporaryDirectory(prefix="model-zoo-gpu-check-", dir=args.workdir) as tmp:
        t0 = time.perf_counter()
        path = write_random_internlm2(Path(tmp) / "ck", dims, seed=0, shards=args.shards, dtype=torch.bfloat16)
        write_s = time.perf_counter() - t0
        size = sum(f.stat().st_size for f in path.glob("*.safetensors"))
        device = torch.device(args.device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        runner = load(path, device=args.device, dtype=dtype)
        _sync(runner.device)
        load_s = time.perf_counter() - t0
        gen = torch.Generator().manual_seed(0)
        vocab = dims["vocab_size"]
        prompt = torch.randint(3, vocab, (32,), generator=gen).tolist()
        runner.generate_ids([prompt], do_sample=False, max_new_tokens=4, stop_token_ids=[])  # warm-up
        _sync(runner.device)
        t0 = time.perf_counter()
        one = runner.generate_ids([prompt], do_sample=False, max_new_tokens=args.new_tokens, stop_token_ids=[])[0]
        _sync(runner.device)
        one_s = time.perf_counter() - t0
        prompts = [torch.randint(3, vocab, (int(n),), generator=gen).tolist()
                   for n in torch.randint(8, 48, (args.batch,), generator=gen)]
        t0 = time.perf_counter()
        many = runner.generate_ids(prompts, do_sample=True, seed=1, max_new_tokens=args.new_tokens, stop_token_ids=[])
        _sync(runner.device)
        many_s = time.perf_counter() - t0
        v_head = torch.randn(dims["hidden_size"], generator=gen) * dims["hidden_size"] ** -0.5
        to_score = [p + c.ids[:16] for p, c in zip(prompts, many)]
        t0 = time.perf_counter()
        scores, scored_by = score_batch(runner, to_score, v_head)
        _sync(runner.device)
        score_s = time.perf_counter() - t0
        reference = direct_scores(runner, to_score, v_head)
        agree = max(abs(a - b) for a, b in zip(scores, reference))
        result: dict[str, Any] = {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
            "dims": "tiny" if args.tiny else "internlm2-1.8b",
            "dtype": args.dtype,
            "checkpoint_bytes": size,
            "checkpoint_write_seconds": round(write_s, 2),
            "load_seconds": round(load_s, 3),
            "generated_tokens": len(one.ids),
            "tokens_per_second": round(len(one.ids) / one_s, 1),
            "batch": args.batch,
            "batch_tokens_per_second": round(sum(len(c.ids) for c in many) / many_s, 1),
            "reward_scored": len(scores),
            "reward_scored_by": scored_by,
            "reward_seconds": round(score_s, 4),
            "reward_batch_vs_single_max_diff": agree,
            "reward_scores_finite": all(math.isfinite(s) for s in scores),
            "host_peak_rss_bytes": _host_peak(),
        }
        if device.type == "cuda":
            result["gpu_peak_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
            result["gpu_peak_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
        return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="model-zoo GPU check (prints JSON)")
    ap.add_argument("--tiny", action="store_true", help="tiny dims (fast; for CPU tests)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default=None, help="default bfloat16 on CUDA, float32 on CPU")
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--workdir", default=None, help="where to write the checkpoint (default: temp dir)")
    args = ap.parse_args(argv)
    if args.dtype is None:
        args.dtype = "float32" if args.device == "cpu" else "bfloat16"
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    result = run(parse_args(argv))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
