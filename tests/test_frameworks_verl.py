"""verl itself, not our reading of it: its reward managers call ``model_zoo.reward.verl``.

verl 0.9.1 (its reward code, see ``fixtures_frameworks``) loads the custom function from a
config with its own loader (``pkg://`` module or file path, ``reward_kwargs``) and scores a
rollout batch with the reward loop (``RewardLoopWorker``: rows concurrently, one thread each,
verl's default) and with the legacy ``naive`` and ``batch`` managers. Every reward verl puts at
a response's last token must equal the tiny InternLM2-Reward's score, computed here, of the
prompt messages from ``extra_info`` followed by the response.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from model_zoo.reward.model import RewardModel

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PKG = "pkg://model_zoo.reward.verl"
FILE = str(ROOT / "model_zoo" / "reward" / "verl.py")

ROWS: list[dict[str, Any]] = [
    {"prompt": [{"role": "user", "content": "2+2?"}], "response": "4", "ground_truth": "4"},
    {
        "prompt": [{"role": "user", "content": "2+2?"}],
        "response": "It is five.",
        "ground_truth": "4",
    },
    {
        "prompt": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital of France?"},
        ],
        "response": "<think>Paris, surely.</think>Paris.",
        "ground_truth": "Paris",
    },
    {
        "prompt": [{"role": "user", "content": "Say hi."}],
        "response": "Hello there, friend!",
        "ground_truth": None,
    },
]
for row in ROWS:  # POLAR's verl recipe copies the prompt into extra_info; so do our users
    row["extra_info"] = {"prompt": row["prompt"], "split": "train"}


def _expected(rm: RewardModel, *, strip: bool = False) -> list[float]:
    answer = [r["response"].split("</think>", 1)[-1] if strip else r["response"] for r in ROWS]
    return rm.score_batch(
        [r["prompt"] + [{"role": "assistant", "content": a}] for r, a in zip(ROWS, answer)]
    )


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_policy import byte_tokenizer

    out = tmp_path_factory.mktemp("verl-policy")
    byte_tokenizer().save_pretrained(out)  # verl decodes responses with the policy's tokenizer
    return out


def test_verl_reward_managers_score_with_model_zoo(
    run_framework: Any,
    policy_dir: Path,
    tiny_reward_fp32: Path,
    tiny_rm: RewardModel,
    served_tiny_reward: str,
) -> None:
    local = {"model": str(tiny_reward_fp32), "device": "cpu", "dtype": "float32"}
    remote = {"server_url": served_tiny_reward}
    cases = [
        {
            "id": "loop_local",
            "manager": "loop",
            "path": PKG,
            "name": "compute_score",
            "reward_kwargs": local,
        },
        {
            "id": "loop_remote_file",
            "manager": "loop",
            "path": FILE,
            "name": "compute_score",
            "reward_kwargs": remote,
        },
        {
            "id": "loop_strip",
            "manager": "loop",
            "path": PKG,
            "name": "compute_score",
            "reward_kwargs": {**local, "strip_thinking": True},
        },
        {
            "id": "naive_local",
            "manager": "naive",
            "path": PKG,
            "name": "compute_score",
            "reward_kwargs": local,
        },
        {
            "id": "batch_local",
            "manager": "batch",
            "path": PKG,
            "name": "compute_score_batch",
            "reward_kwargs": local,
        },
        {
            "id": "batch_remote_file",
            "manager": "batch",
            "path": FILE,
            "name": "compute_score_batch",
            "reward_kwargs": remote,
        },
        # a row without extra_info["prompt"]: the error says where verl's data must put it
        {
            "id": "no_prompt",
            "manager": "naive",
            "path": PKG,
            "name": "compute_score",
            "reward_kwargs": local,
            "rows": [{k: v for k, v in ROWS[0].items() if k != "extra_info"}],
            "expect_error": True,
        },
    ]
    out = run_framework("verl", {"policy": str(policy_dir), "rows": ROWS, "cases": cases})
    assert out["ok"], out.get("traceback") or out
    assert out["verl"] == "0.9.1" and out["blocked"] == []
    want = _expected(tiny_rm)
    assert len({round(x, 5) for x in want}) == len(want), (
        "distinct scores, or the test proves little"
    )
    assert list(out["errors"]) == ["no_prompt"]
    assert "extra_info has no 'prompt'" in out["errors"]["no_prompt"]
    assert "POLAR's verl recipe" in out["errors"]["no_prompt"]
    for case in cases:
        if case["id"] not in ("loop_strip", "no_prompt"):
            assert out[case["id"]] == pytest.approx(want, abs=1e-5), case["id"]
    stripped = _expected(tiny_rm, strip=True)
    assert out["loop_strip"] == pytest.approx(stripped, abs=1e-5)
    assert out["loop_strip"][2] != pytest.approx(
        want[2], abs=1e-5
    )  # only the row with a <think> block moved
    # the reward loop records a float's score as 'acc' (a dict result would add its own keys)
    assert out["extra_keys"]["loop_local"] == ["acc"]
