"""OpenRLHF itself, not our reading of it: its reward client calls model-zoo.

OpenRLHF 0.11.2 (its modules, see ``fixtures_frameworks``) asks for rewards in
``openrlhf.utils.agent.SingleTurnAgentExecutor``: after generation it decodes prompt and
response tokens (special tokens kept) into a query and either POSTs ``{"query", "prompts",
"labels"}`` to each URL given by ``--reward.remote_url`` (``--remote_rm_url`` before 0.10.2),
or, when that value is a ``.py`` file, calls the file's ``reward_func(queries, prompts,
labels)`` in a thread. Both run here, unchanged, against ``model-zoo serve-reward``'s
``/get_reward`` and a file using ``openrlhf_reward_func``; only vLLM is replaced, by an engine
that returns fixed response tokens. The rewards OpenRLHF keeps must equal the tiny
InternLM2-Reward's scores of exactly the text OpenRLHF sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tiny_policy import byte_tokenizer

from model_zoo.reward.model import RewardModel

pytestmark = pytest.mark.slow

ROWS: list[dict[str, Any]] = [  # distinct prompts: the stand-in engine answers by prompt
    {"prompt": [{"role": "user", "content": "2+2?"}], "response": "4", "label": "4"},
    {
        "prompt": [{"role": "user", "content": "What is 2+2?"}],
        "response": "It is five.",
        "label": "4",
    },
    {
        "prompt": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital of France?"},
        ],
        "response": "Paris.",
        "label": None,
    },
]


def _query(row: dict[str, Any]) -> str:
    """What OpenRLHF decodes and sends: the ChatML prompt, the response and its stop token."""
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in row["prompt"])
    return f"{turns}<|im_start|>assistant\n{row['response']}<|im_end|>"


def _run(
    run_framework: Any, tmp_path: Path, checkpoint: Path, server: str, rows: list[dict[str, Any]]
) -> Any:
    """OpenRLHF's client with ``--reward.remote_url`` at the server, then at a reward_func file."""
    policy = tmp_path / "policy"
    byte_tokenizer().save_pretrained(policy)
    reward_file = tmp_path / "reward_func.py"  # the file a user names in --reward.remote_url
    reward_file.write_text(
        "from model_zoo.reward.adapters import openrlhf_reward_func\n\n"
        f"reward_func = openrlhf_reward_func({str(checkpoint)!r}, device='cpu', dtype='float32')\n"
    )
    targets = {"http": server + "/get_reward", "func": str(reward_file)}
    out = run_framework("openrlhf", {"policy": str(policy), "rows": rows, "targets": targets})
    assert out["ok"], out.get("traceback") or out
    assert out["openrlhf"] == "0.11.2" and out["blocked"] == []
    return out


def test_openrlhf_reward_client_scores_with_model_zoo(
    run_framework: Any,
    tmp_path: Path,
    tiny_reward_fp32: Path,
    tiny_rm: RewardModel,
    served_tiny_reward: str,
) -> None:
    out = _run(run_framework, tmp_path, tiny_reward_fp32, served_tiny_reward, ROWS)
    queries = [_query(r) for r in ROWS]
    want = tiny_rm.score_text(queries, strip_pad=True)
    assert len({round(x, 5) for x in want}) == len(want), (
        "distinct scores, or the test proves little"
    )
    for name in ("http", "func"):
        got = out[name]
        assert got["queries"] == queries, name  # the text OpenRLHF built is the one scored
        assert None not in got["rewards"], (
            f"OpenRLHF got no reward from {name}:\n{out['stderr'][-3000:]}"
        )
        assert got["rewards"] == pytest.approx(want, abs=1e-5), name
        assert got["scores"] == pytest.approx(want, abs=1e-5), name
    # the file's function hands OpenRLHF torch tensors, as its own reward functions do
    assert out["func"]["reward_types"] == ["Tensor"]


POLAR_ROWS: list[dict[str, Any]] = [  # the reference answer travels as the dataset's label
    {
        "prompt": [{"role": "user", "content": "Capital of China?"}],
        "response": "Beijing.",
        "label": "Beijing.",
    },
    {
        "prompt": [{"role": "user", "content": "What is the capital of China?"}],
        "response": "Shanghai.",
        "label": "Beijing.",
    },
    {"prompt": [{"role": "user", "content": "2+3?"}], "response": "5", "label": "The answer is 5."},
]


def test_openrlhf_labels_are_polars_reference(
    run_framework: Any,
    tmp_path: Path,
    tiny_polar_fp32: Path,
    tiny_polar_rm: Any,
    served_tiny_polar: str,
) -> None:
    out = _run(run_framework, tmp_path, tiny_polar_fp32, served_tiny_polar, POLAR_ROWS)
    # what POLAR scores: the response that follows OpenRLHF's prompt in its query, against the label
    tok = byte_tokenizer()
    items = [
        {
            "prompt": tok.apply_chat_template(
                r["prompt"], add_generation_prompt=True, tokenize=False
            ),
            "reference": r["label"],
            "output": r["response"] + "<|im_end|>",
        }
        for r in POLAR_ROWS
    ]
    want = [float(x) for x in tiny_polar_rm.score_batch(items)]
    assert len({round(x, 5) for x in want}) == len(want)
    for name in ("http", "func"):
        assert out[name]["queries"] == [i["prompt"] + i["output"] for i in items], name
        assert None not in out[name]["rewards"], (
            f"OpenRLHF got no reward from {name}:\n{out['stderr'][-3000:]}"
        )
        assert out[name]["rewards"] == pytest.approx(want, abs=1e-5), name
