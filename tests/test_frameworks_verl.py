"""verl itself, not our reading of it: its reward managers call ``model_zoo.reward.verl``.

verl 0.9.1 (its reward code, see ``fixtures_frameworks``) loads the custom function from a
config with its own loader (``pkg://`` module or file path, ``reward_kwargs``) and scores a
rollout batch with the reward loop: as its trainer does (``RewardLoopManager.compute_rm_score``,
two ``RewardLoopWorker`` actors on a local Ray), with one worker in-process (rows concurrently,
one thread each), and with the older ``naive`` and ``batch`` managers. Every reward verl puts at
a response's last token must equal the tiny reward model's score, computed here, of the prompt
messages from ``extra_info`` followed by the response (POLAR: against the ground truth).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from model_zoo.reward.model import RewardModel

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PKG = "pkg://model_zoo.reward.verl"
ROW, BATCH = "compute_score", "compute_score_batch"
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


def _case(
    id: str,
    manager: str,
    name: str,
    reward_kwargs: dict[str, Any],
    *,
    path: str = PKG,
    **extra: Any,
) -> dict[str, Any]:
    """One way verl runs the function: its manager, the function's name and path, reward_kwargs."""
    return {
        "id": id,
        "manager": manager,
        "path": path,
        "name": name,
        "reward_kwargs": reward_kwargs,
        **extra,
    }


def _expected(rm: RewardModel, *, strip: bool = False) -> list[float]:
    answer = [r["response"].split("</think>", 1)[-1] if strip else r["response"] for r in ROWS]
    return rm.score_batch(
        [
            r["prompt"] + [{"role": "assistant", "content": a}]
            for r, a in zip(ROWS, answer, strict=True)
        ]
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
        _case("loop_local", "loop", ROW, local),
        _case("loop_remote_file", "loop", ROW, remote, path=FILE),
        _case("ray_remote", "ray", ROW, remote),
        _case("loop_strip", "loop", ROW, {**local, "strip_thinking": True}),
        _case("naive_local", "naive", ROW, local),
        _case("batch_local", "batch", BATCH, local),
        _case("batch_remote_file", "batch", BATCH, remote, path=FILE),
        # a row without extra_info["prompt"]: the error says where verl's data must put it
        _case(
            "no_prompt",
            "naive",
            ROW,
            local,
            expect_error=True,
            rows=[{k: v for k, v in ROWS[0].items() if k != "extra_info"}],
        ),
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


POLAR_ROWS: list[dict[str, Any]] = [  # laid out as POLAR's verl recipe writes its parquet files
    {
        "prompt": [{"role": "user", "content": "What is the capital of China?"}],
        "response": "Beijing.",
        "ground_truth": [{"role": "assistant", "content": "Beijing."}],
    },
    {
        "prompt": [{"role": "user", "content": "What is the capital of China?"}],
        "response": "<think>Large city, north.</think>Shanghai.",
        "ground_truth": [{"role": "assistant", "content": "Beijing."}],
    },
    {
        "prompt": [{"role": "user", "content": "2+3?"}],
        "response": "The answer is 5.",
        "ground_truth": "5",
    },
]
for row in POLAR_ROWS:
    row["extra_info"] = {"prompt": row["prompt"], "split": "train", "ability": "alignment"}


def _polar_expected(rm: Any, *, strip: bool = True, wrapper: str | None = None) -> list[float]:
    items = []
    for r in POLAR_ROWS:
        output = r["response"].split("</think>", 1)[-1] if strip else r["response"]
        item = {
            "prompt": r["extra_info"]["prompt"],
            "reference": r["ground_truth"],
            "output": output,
        }
        items.append({**item, "wrapper": wrapper} if wrapper else item)
    return [float(x) for x in rm.score_batch(items)]


def test_verl_reward_managers_score_polar_against_the_reference(
    run_framework: Any,
    policy_dir: Path,
    tiny_polar_fp32: Path,
    tiny_polar_rm: Any,
    served_tiny_polar: str,
) -> None:
    local = {"model": str(tiny_polar_fp32), "device": "cpu", "dtype": "float32"}
    remote = {"server_url": served_tiny_polar}
    cases = [
        _case("loop_local", "loop", ROW, local),
        _case("loop_remote", "loop", ROW, remote),
        _case("batch_local", "batch", BATCH, local, path=FILE),
        _case("batch_remote", "batch", BATCH, remote),
        _case(
            "loop_pretrain_keep",
            "loop",
            ROW,
            {**local, "wrapper": "pretrain", "strip_thinking": False},
        ),
    ]
    out = run_framework("verl", {"policy": str(policy_dir), "rows": POLAR_ROWS, "cases": cases})
    assert out["ok"], out.get("traceback") or out
    assert out["errors"] == {} and out["blocked"] == []
    want = _polar_expected(tiny_polar_rm)  # POLAR's recipe drops the <think> block by default
    assert len({round(x, 5) for x in want}) == len(want), (
        "distinct scores, or the test proves little"
    )
    for case in cases[:4]:
        assert out[case["id"]] == pytest.approx(want, abs=1e-5), case["id"]
    other = _polar_expected(tiny_polar_rm, strip=False, wrapper="pretrain")
    assert out["loop_pretrain_keep"] == pytest.approx(other, abs=1e-5)
    assert out["loop_pretrain_keep"] != pytest.approx(want, abs=1e-5)
