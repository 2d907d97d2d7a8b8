"""Run vLLM (CPU build) on exported checkpoints, inside the vLLM test virtualenv.

Not a test module: ``fixtures_vllm.run_vllm`` starts it with that venv's interpreter as
``python vllm_harness.py JOBS_JSON`` and reads one ``HARNESS-RESULT`` JSON line from stdout.
It imports nothing from model-zoo itself (vLLM loads model-zoo's plugin through its entry point,
which is the point of the test), and fences the network to 127.0.0.0/8 before vLLM is imported.

Each job is one model directory:

* ``{"dir", "generate": [prompt texts], "chat": [conversations], "max_tokens", "logprobs"}``:
  greedy generation from text (vLLM tokenizes) with the top ``logprobs`` at every step, and the
  prompt ids vLLM's own chat rendering gives each conversation; ``too_long``: a text longer
  than the model's positions, whose error message comes back;
* ``{"dir", "reward": [texts]}``: the reward model's per-token scores through ``token_classify``
  pooling (what ``/pooling`` serves), last position's score per text;
* ``{"backend_dir", "prompts", "chat", "max_tokens"}``: ``model_zoo.load(dir, backend="vllm")``
  (model-zoo installed in this venv exports the checkpoint itself), greedy ``generate`` and
  ``chat`` replies.

The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` is set by the caller).
``trust_remote_code`` is never passed; vLLM's default is False.
"""

from __future__ import annotations

import gc
import json
import sys
import time
import traceback

from client_harness import BLOCKED, fence


def run_backend(job: dict) -> dict:
    """``model_zoo.load(dir, backend="vllm")``: model-zoo exports, vLLM generates from its ids."""
    import model_zoo

    started = time.perf_counter()
    # float32 like the native side: vLLM's "auto" would run a float32 checkpoint in bfloat16
    runner = model_zoo.load(job["backend_dir"], backend="vllm", dtype="float32")
    out = {
        "load_s": time.perf_counter() - started,
        "export": str(runner.engine.llm_engine.model_config.model),
    }
    out["texts"] = runner.generate(
        job["prompts"], do_sample=False, max_new_tokens=job["max_tokens"], stop_token_ids=()
    )
    out["chat"] = runner.chat(
        job["chat"], do_sample=False, max_new_tokens=job["max_tokens"], stop_token_ids=()
    )
    del runner
    gc.collect()
    return out


def run_job(job: dict) -> dict:
    if "backend_dir" in job:
        return run_backend(job)
    from vllm import LLM, SamplingParams

    started = time.perf_counter()
    reward = "reward" in job
    extra: dict = {}
    if reward:  # raw scores, as load_reward gives them (vLLM applies a sigmoid by default)
        from vllm.config import PoolerConfig

        extra["pooler_config"] = PoolerConfig(use_activation=False)
    llm = LLM(
        **extra,
        model=job["dir"],
        dtype="float32",
        enforce_eager=True,
        seed=0,
        runner="pooling" if reward else "generate",
        max_num_seqs=8,
    )
    out: dict = {"load_s": time.perf_counter() - started}
    tok = llm.get_tokenizer()
    out["tokenizer_class"] = type(tok).__name__
    if reward:
        results = llm.encode(job["reward"], pooling_task="token_classify", use_tqdm=False)
        out["reward_prompt_ids"] = [list(r.prompt_token_ids) for r in results]
        out["rewards"] = [float(r.outputs.data[-1].reshape(-1)[0]) for r in results]
    else:
        params = SamplingParams(
            temperature=0.0,
            max_tokens=job.get("max_tokens", 8),
            logprobs=job.get("logprobs", 5),
            ignore_eos=True,
        )
        t = time.perf_counter()
        results = llm.generate(job["generate"], params, use_tqdm=False)
        out["generate_s"] = time.perf_counter() - t
        out["generations"] = [
            {
                "prompt_ids": list(r.prompt_token_ids),
                "token_ids": list(r.outputs[0].token_ids),
                "text": r.outputs[0].text,
                # per step: {token id: logprob} of the top candidates (and the chosen token)
                "logprobs": [
                    {str(k): v.logprob for k, v in step.items()} for step in r.outputs[0].logprobs
                ],
            }
            for r in results
        ]
        if job.get("too_long"):  # longer than max_position_embeddings: refused, never NaN
            try:
                llm.generate(
                    [job["too_long"]], SamplingParams(temperature=0.0, max_tokens=1), use_tqdm=False
                )
                out["too_long_error"] = None
            except Exception as exc:  # noqa: BLE001 - the message is the result
                out["too_long_error"] = f"{type(exc).__name__}: {exc}"
        chats = llm.chat(
            job.get("chat", []), SamplingParams(temperature=0.0, max_tokens=1), use_tqdm=False
        )
        out["chat_prompt_ids"] = [list(r.prompt_token_ids) for r in chats]
    del llm
    gc.collect()
    return out


def main() -> int:
    jobs = json.loads(sys.argv[1])
    fence({})
    results = []
    for job in jobs:
        try:
            results.append({"ok": True, **run_job(job)})
        except BaseException as exc:  # noqa: BLE001 - reported to the test as data
            results.append(
                {
                    "ok": False,
                    "error": f"{type(exc).__name__}: {exc}",
                    "trace": traceback.format_exc(),
                }
            )
    sys.stdout.flush()
    print("HARNESS-RESULT " + json.dumps({"results": results, "blocked": sorted(set(BLOCKED))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
