"""Drive an RLHF framework's own reward code with model-zoo's reward functions, in a child process.

Not a test module: ``fixtures_frameworks.run_framework`` starts it with the project's interpreter
and the framework's modules first on ``PYTHONPATH`` as ``python framework_harness.py FRAMEWORK
ARGS_JSON``, and reads one ``HARNESS-RESULT {json}`` line from stdout. The network is fenced to
127.0.0.0/8 (``client_harness.fence``) before the framework is imported.

* ``verl``: builds a ``DataProto`` the way verl's rollout leaves it (left-padded prompts,
  right-padded responses, ``data_source``, ``reward_model.ground_truth``, ``extra_info``) and
  scores it with verl's reward managers, the custom function loaded by verl's own loader from
  a config: the reward loop as verl 0.9's trainer runs it (``RewardLoopManager``, its workers
  Ray actors on a local Ray), one ``RewardLoopWorker`` in-process, and the older ``naive`` and
  ``batch`` managers.
* ``openrlhf``: OpenRLHF's ``SingleTurnAgentExecutor`` turns a prompt and a generated
  response into the reward request it sends, to ``--reward.remote_url`` (an HTTP server) or to
  a ``reward_func`` file; the vLLM engine is replaced by one that returns fixed tokens.
"""

from __future__ import annotations

import asyncio
import json
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from client_harness import BLOCKED, fence


def _policy_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


# ---------------------------------------------------------------------- verl


def _verl_batch(tok: Any, rows: list[dict[str, Any]]) -> Any:
    """A rollout batch: what verl's reward managers read from a ``DataProto``."""
    import numpy as np
    import torch
    from verl import DataProto

    prompts = [
        tok.encode(
            tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False),
            add_special_tokens=False,
        )
        for r in rows
    ]
    responses = [tok.encode(r["response"], add_special_tokens=False) for r in rows]
    plen, rlen, pad = max(map(len, prompts)), max(map(len, responses)), tok.pad_token_id
    prompt_ids = torch.tensor([[pad] * (plen - len(p)) + p for p in prompts])
    response_ids = torch.tensor([r + [pad] * (rlen - len(r)) for r in responses])
    mask = torch.tensor(
        [
            [0] * (plen - len(p)) + [1] * len(p) + [1] * len(r) + [0] * (rlen - len(r))
            for p, r in zip(prompts, responses, strict=True)
        ]
    )

    def objects(values: list[Any]) -> Any:
        out = np.empty(len(values), dtype=object)
        for i, v in enumerate(values):
            out[i] = v
        return out

    return DataProto.from_dict(
        tensors={
            "prompts": prompt_ids,
            "responses": response_ids,
            "attention_mask": mask,
            "input_ids": torch.cat([prompt_ids, response_ids], dim=1),
        },
        non_tensors={
            "data_source": objects([r.get("data_source", "test") for r in rows]),
            "reward_model": objects(
                [{"style": "model", "ground_truth": r.get("ground_truth")} for r in rows]
            ),
            "extra_info": objects(
                [{**r.get("extra_info", {}), "index": i} for i, r in enumerate(rows)]
            ),
            "raw_prompt": objects([r["prompt"] for r in rows]),
        },
    )


def _verl_config(policy: str, function: dict[str, Any]) -> Any:
    """verl's own reward config (its ``reward.yaml``), with the custom function set as a user
    would."""
    import verl
    from omegaconf import OmegaConf

    reward = OmegaConf.load(
        Path(verl.__file__).parent / "trainer" / "config" / "reward" / "reward.yaml"
    )
    reward.num_workers = 1
    reward.custom_reward_function = OmegaConf.create(function)
    return OmegaConf.create(
        {"actor_rollout_ref": {"model": {"path": policy, "tokenizer_path": None}}, "reward": reward}
    )


def _last_scores(reward_tensor: Any, data: Any) -> list[float]:
    """The reward at each response's last real token, where verl's managers put it."""
    plen = data.batch["prompts"].shape[-1]
    lengths = data.batch["attention_mask"][:, plen:].sum(-1)
    rest = reward_tensor.clone()
    out = []
    for i, n in enumerate(lengths.tolist()):
        out.append(float(rest[i, n - 1]))
        rest[i, n - 1] = 0
    assert float(rest.abs().sum()) == 0.0, (
        "a reward landed somewhere other than the last response token"
    )
    return out


def run_verl(args: dict[str, Any]) -> dict[str, Any]:
    import verl

    tok = _policy_tokenizer(args["policy"])
    result: dict[str, Any] = {"verl": verl.__version__, "errors": {}}
    try:
        _verl_cases(args, tok, result)
    finally:  # the reward workers' actors go with the local Ray, not a minute after this process
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()
    return result


def _verl_cases(args: dict[str, Any], tok: Any, result: dict[str, Any]) -> None:
    for case in args["cases"]:
        data = _verl_batch(tok, case.get("rows") or args["rows"])
        function = {
            "path": case["path"],
            "name": case["name"],
            "reward_kwargs": case.get("reward_kwargs", {}),
        }
        config = _verl_config(args["policy"], function)
        try:
            result[case["id"]] = _verl_case(case, config, tok, data, result)
        except Exception as exc:
            if not case.get("expect_error"):
                raise
            result["errors"][case["id"]] = f"{type(exc).__name__}: {exc}"


def _verl_case(
    case: dict[str, Any], config: Any, tok: Any, data: Any, result: dict[str, Any]
) -> list[float]:
    """One reward manager's scores for ``data``, the custom function loaded by verl from
    ``config``."""
    from verl.trainer.ppo.reward import get_custom_reward_fn

    manager = case["manager"]
    if (
        manager == "ray"
    ):  # what verl 0.9's trainer calls: workers as Ray actors, the batch split among them
        import ray
        from verl.experimental.reward_loop import RewardLoopManager

        from model_zoo.reward.ray import init_local_ray

        if not ray.is_initialized():
            init_local_ray(num_cpus=2)
        config.reward.num_workers = case.get("num_workers", 2)
        scored = RewardLoopManager(config).compute_rm_score(data)
        return _last_scores(scored.batch["rm_scores"], data)
    if manager == "loop":  # verl's default: one RewardLoopWorker, rows scored concurrently
        from verl.experimental.reward_loop import RewardLoopWorker

        worker = RewardLoopWorker(config, reward_router_address=None)
        # the worker's loop, as in its Ray actor (its managers hold it to reach the thread pool)
        outputs = worker.loop.run_until_complete(worker.compute_score_batch(data))
        scores = [float(o["reward_score"]) for o in outputs]
        result.setdefault("extra_keys", {})[case["id"]] = sorted(outputs[0]["reward_extra_info"])
    else:  # the legacy managers, as verl built them from the same config
        from verl.workers.reward_manager import get_reward_manager_cls

        fn = get_custom_reward_fn(config)
        cls = get_reward_manager_cls(manager)
        reward_tensor = cls(tokenizer=tok, num_examine=0, compute_score=fn)(data)
        scores = _last_scores(reward_tensor, data)
    return scores


# ---------------------------------------------------------------------- OpenRLHF


class _Output:
    def __init__(self, token_ids: list[int]) -> None:
        self.token_ids = token_ids
        self.finish_reason = "stop"
        self.logprobs = None


class _Engine:
    """Stands in for vLLM: 'generates' fixed response tokens (OpenRLHF's code does the rest)."""

    def __init__(self, responses: dict[str, list[int]]) -> None:
        self.responses = responses

    async def generate(
        self, prompt_token_ids: list[int], params: Any, multi_modal_data: Any = None
    ) -> Any:
        return SimpleNamespace(outputs=[_Output(self.responses[json.dumps(prompt_token_ids)])])


class _Params:
    max_tokens = 64
    logprobs = None


def run_openrlhf(args: dict[str, Any]) -> dict[str, Any]:
    """Each target (an URL or a reward_func file) as OpenRLHF's ``--reward.remote_url``."""
    from importlib.metadata import version

    from openrlhf.utils.agent import SingleTurnAgentExecutor

    tok = _policy_tokenizer(args["policy"])
    rows = args["rows"]
    prompts = [
        tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False)
        for r in rows
    ]
    engine = _Engine(
        {
            json.dumps(tok(text=p, add_special_tokens=False)["input_ids"]): tok.encode(
                r["response"], add_special_tokens=False
            )
            + [tok.eos_token_id]  # vLLM's output ends with the stop token, which OpenRLHF keeps
            for p, r in zip(prompts, rows, strict=True)
        }
    )

    def number(x: Any) -> Any:
        """One query's reward: a one-element list (HTTP answer) or tensor (reward_func)."""
        if x is None:
            return None
        x = x.tolist() if hasattr(x, "tolist") else x
        if isinstance(x, list):
            assert len(x) == 1, f"expected one reward per query, got {x}"
            x = x[0]
        return float(x)

    result: dict[str, Any] = {"openrlhf": version("openrlhf")}
    for name, target in args["targets"].items():
        executor = SingleTurnAgentExecutor(target)

        async def run_all(executor: Any = executor) -> list[dict[str, Any]]:
            return await asyncio.gather(
                *(
                    executor.execute(p, r.get("label"), _Params(), 512, tok, engine)
                    for p, r in zip(prompts, rows, strict=True)
                )
            )

        outputs = asyncio.run(run_all())
        result[name] = {
            "rewards": [number(o["reward"]) for o in outputs],
            "scores": [number(o["scores"]) for o in outputs],
            "queries": [
                tok.decode(o["observation_tokens"], skip_special_tokens=False) for o in outputs
            ],
            "reward_types": sorted({type(o["reward"]).__name__ for o in outputs}),
        }
    return result


def main() -> None:
    framework, args = sys.argv[1], json.loads(sys.argv[2])
    fence({})
    try:
        result = {"verl": run_verl, "openrlhf": run_openrlhf}[framework](args)
        result["ok"] = True
    except Exception as exc:  # noqa: BLE001 - reported to the test with its traceback
        result = {
            "ok": False,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(),
        }
    result["blocked"] = BLOCKED
    print("HARNESS-RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
