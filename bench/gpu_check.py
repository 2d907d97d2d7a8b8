"""One short end-to-end check on a CUDA GPU, printed as JSON.

Builds a randomly initialised InternLM2 checkpoint with the 1.8B dims (sharded safetensors,
packed grouped wqkv, bf16) on disk, loads it with model-zoo's native loader in bf16 on the GPU,
generates 256 tokens (one sequence, then a batch of 8), scores a batch with a reward head
(random ``v_head`` through the reward package's TorchScorer when present, else hidden state x
v_head directly, and checks the two agree), and reports load seconds, tokens/s and peak memory.

    python bench/gpu_check.py                          # the real check (needs CUDA)
    python bench/gpu_check.py --tiny --device cpu      # tiny dims on the CPU: the same code path

``--engines vllm,lmdeploy`` (the default) also exports the checkpoint with model-zoo (a tiny
trained tokenizer is added to it) and runs each engine on it, never with trust_remote_code:
greedy generation from model-zoo's prompt ids, tokens/s, and how many leading greedy tokens
equal model-zoo's (bf16 on both sides, so a late divergence is expected). An engine that is
not installed, or a device that is not CUDA, is reported as skipped, with the reason.
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
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 1024,
    "max_position_embeddings": 64,
    "rope_theta": 1000000.0,
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
    """Reward scores of right-padded sequences at their last token; via the reward package if
    present."""
    import torch

    try:
        from model_zoo.reward.torch_scorer import TorchScorer
    except ImportError:
        TorchScorer = None
    if TorchScorer is not None:
        scorer = TorchScorer(
            runner.hidden_states, v_head, pad_token_id=runner.pad_token_id, device=runner.device
        )
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


def _leading_equal(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=True):
        if x != y:
            break
        n += 1
    return n


def engine_check(
    engine: str,
    path: Path,
    device: Any,
    prompt: list[int],
    native: list[int],
    new_tokens: int,
    workdir: Path,
) -> dict[str, Any]:
    """Export ``path`` and run ``engine`` on it (GPU only); a skip says why."""
    import importlib.util

    if device.type != "cuda":
        return {"skipped": "needs a CUDA GPU"}
    if importlib.util.find_spec(engine) is None:
        return {"skipped": f"{engine} is not installed (pip install {engine})"}
    from model_zoo.export.hf_config import register
    from model_zoo.export.vllm import export_vllm

    t0 = time.perf_counter()
    exported = export_vllm(path, workdir / f"export-{engine}").path
    export_s = time.perf_counter() - t0
    register()
    t0 = time.perf_counter()
    if engine == "vllm":
        from vllm import LLM, SamplingParams

        llm = LLM(
            model=str(exported),
            trust_remote_code=False,
            dtype="bfloat16",
            max_model_len=2048,
            gpu_memory_utilization=0.5,
            seed=0,
        )
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = llm.generate(
            [{"prompt_token_ids": prompt}],
            SamplingParams(
                temperature=0.0, max_tokens=new_tokens, ignore_eos=True, detokenize=False
            ),
            use_tqdm=False,
        )
        ids = list(out[0].outputs[0].token_ids)
        same: int | None = _leading_equal(ids, native)
    else:  # LMDeploy takes text: its ids cannot be compared with model-zoo's random-id prompt
        import lmdeploy

        pipe = lmdeploy.pipeline(str(exported))
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        gen = lmdeploy.GenerationConfig(do_sample=False, max_new_tokens=new_tokens, ignore_eos=True)
        response = pipe(["The quick brown fox jumps over the lazy dog"], gen_config=gen)[0]
        ids = list(getattr(response, "token_ids", None) or [])
        same = None
    gen_s = time.perf_counter() - t0
    return {
        "export_seconds": round(export_s, 3),
        "load_seconds": round(load_s, 2),
        "generated_tokens": len(ids),
        "tokens_per_second": round(len(ids) / gen_s, 1) if gen_s > 0 else None,
        "leading_greedy_tokens_equal_model_zoo": same,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from transformers import LlamaForCausalLM  # noqa: F401 - imported here so load_seconds is loading only

    from model_zoo.runner.api import load
    from model_zoo.runner.synthetic import INTERNLM2_1_8B, write_random_internlm2

    dims = TINY if args.tiny else INTERNLM2_1_8B
    dtype = getattr(torch, args.dtype)
    with tempfile.TemporaryDirectory(prefix="model-zoo-gpu-check-", dir=args.workdir) as tmp:
        t0 = time.perf_counter()
        path = write_random_internlm2(
            Path(tmp) / "ck", dims, seed=0, shards=args.shards, dtype=torch.bfloat16
        )
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
        runner.generate_ids(
            [prompt], do_sample=False, max_new_tokens=4, stop_token_ids=[]
        )  # warm-up
        _sync(runner.device)
        t0 = time.perf_counter()
        one = runner.generate_ids(
            [prompt], do_sample=False, max_new_tokens=args.new_tokens, stop_token_ids=[]
        )[0]
        _sync(runner.device)
        one_s = time.perf_counter() - t0
        prompts = [
            torch.randint(3, vocab, (int(n),), generator=gen).tolist()
            for n in torch.randint(8, 48, (args.batch,), generator=gen)
        ]
        t0 = time.perf_counter()
        many = runner.generate_ids(
            prompts, do_sample=True, seed=1, max_new_tokens=args.new_tokens, stop_token_ids=[]
        )
        _sync(runner.device)
        many_s = time.perf_counter() - t0
        v_head = torch.randn(dims["hidden_size"], generator=gen) * dims["hidden_size"] ** -0.5
        to_score = [p + c.ids[:16] for p, c in zip(prompts, many, strict=True)]
        t0 = time.perf_counter()
        scores, scored_by = score_batch(runner, to_score, v_head)
        _sync(runner.device)
        score_s = time.perf_counter() - t0
        reference = direct_scores(runner, to_score, v_head)
        agree = max(abs(a - b) for a, b in zip(scores, reference, strict=True))
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
        engines = [e for e in args.engines.split(",") if e]
        if engines:
            from model_zoo.testing.tiny_tokenizer import tokenizer_files

            del runner
            for name, data in tokenizer_files("internlm2").items():  # ids < 1024 fit any vocabulary
                (path / name).write_bytes(data)
            result["engines"] = {
                e: engine_check(e, path, device, prompt, one.ids, args.new_tokens, Path(tmp))
                for e in engines
            }
        return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="model-zoo GPU check (prints JSON)")
    ap.add_argument("--tiny", action="store_true", help="tiny dims (fast; for CPU tests)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default=None, help="default bfloat16 on CUDA, float32 on CPU")
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument(
        "--workdir", default=None, help="where to write the checkpoint (default: temp dir)"
    )
    ap.add_argument(
        "--engines",
        default="vllm,lmdeploy",
        help="serving engines to run on model-zoo's export too (comma-separated; '' for none)",
    )
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
