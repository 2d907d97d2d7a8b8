"""TRL itself, not our reading of it: real GRPO steps with model-zoo's reward function.

A tiny Llama policy (made here, byte-level tokenizer, ChatML template) trains for two GRPO steps
on the CPU with ``trl.GRPOTrainer``. Its only reward function is ``trl_reward_func`` over the
tiny InternLM2-Reward, once in-process and once against ``model-zoo serve-reward`` on
127.0.0.1. The test records what TRL passed to the function, scores the same conversations
again with its own ``RewardModel``, and checks that TRL's logged reward metrics, its per-
completion rewards and the group advantages it trained on all come from those scores.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tiny_policy import byte_tokenizer, tiny_llama

from model_zoo.reward.adapters import RemoteRewardModel, trl_reward_func
from model_zoo.reward.model import RewardModel

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*checkpointing.*:FutureWarning"),
]

PROMPTS = ["2+2?", "Capital of France?", "Say hi.", "Why is the sky blue?"]
STEPS = 2
GENERATIONS = 4
NAME = "internlm2_reward"


class Recorder:
    """Wraps a reward function under the same name and keeps what TRL passed and got back."""

    def __init__(self, inner: Callable[..., list[float]]) -> None:
        self.inner = inner
        self.calls: list[tuple[list[Any], list[Any], list[float], dict[str, Any]]] = []
        self.__name__ = inner.__name__  # TRL names the metrics after it

    def __call__(self, prompts: list[Any], completions: list[Any], **kw: Any) -> list[float]:
        got = self.inner(prompts, completions, **kw)
        self.calls.append((list(prompts), list(completions), list(got), dict(kw)))
        return got


def _train(
    reward: Callable[..., list[float]], out: Path, references: list[str] | None = None
) -> tuple[Any, list[dict[str, Any]]]:
    """Two GRPO steps; returns the trainer and, per logged step, a copy of TRL's completion logs.

    With ``references``, the dataset gets a ``reference`` column (what POLAR scores against).
    """
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    tok = byte_tokenizer()
    model = tiny_llama(len(tok), seed=1)
    rows: list[dict[str, Any]] = [{"prompt": [{"role": "user", "content": p}]} for p in PROMPTS]
    if references is not None:
        for row, ref in zip(rows, references, strict=True):
            row["reference"] = ref
    dataset = Dataset.from_list(rows)
    config = GRPOConfig(
        output_dir=str(out),
        per_device_train_batch_size=GENERATIONS,
        num_generations=GENERATIONS,
        max_completion_length=12,
        max_steps=STEPS,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        seed=0,
        learning_rate=1e-3,
        bf16=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    snapshots: list[dict[str, Any]] = []
    holder: list[Any] = []

    class Snapshot(TrainerCallback):
        """TRL keeps the last generation's rewards and advantages in ``_logs``; copy them at each
        log."""

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
        ) -> None:
            name = reward.__name__
            if logs and f"rewards/{name}/mean" in logs:
                trainer_logs = holder[0]._logs
                snapshots.append(
                    {
                        "step": state.global_step,
                        "rewards": list(trainer_logs["rewards"][name]),
                        "advantages": list(trainer_logs["advantages"]),
                        "completion": list(trainer_logs["completion"]),
                    }
                )

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=config,
        train_dataset=dataset,
        processing_class=tok,
        callbacks=[Snapshot()],
    )
    holder.append(trainer)
    trainer.train()
    return trainer, snapshots


Expect = Callable[[list[Any], list[Any], dict[str, Any]], list[float]]


def _conversations(rm: RewardModel) -> Expect:
    """InternLM2-Reward: the prompt messages followed by the completion messages."""

    def expect(prompts: list[Any], completions: list[Any], kw: dict[str, Any]) -> list[float]:
        convs = [list(p) + list(c) for p, c in zip(prompts, completions, strict=True)]
        assert all(c[-1]["role"] == "assistant" for c in convs)
        return rm.score_batch(convs)

    return expect


def _check(
    trainer: Any, snapshots: list[dict[str, Any]], recorder: Recorder, expect: Expect
) -> None:
    """TRL's numbers are model-zoo's scores of the completions TRL generated."""
    name = recorder.__name__
    assert len(recorder.calls) == STEPS, "TRL called the reward function once per step"
    logged = [h for h in trainer.state.log_history if f"rewards/{name}/mean" in h]
    assert len(logged) == STEPS == len(snapshots)
    for (prompts, completions, got, kw), log, snap in zip(
        recorder.calls, logged, snapshots, strict=True
    ):
        assert "completion_ids" in kw and "trainer_state" in kw  # TRL's real call, with its extras
        assert len(got) == GENERATIONS and all(isinstance(x, float) for x in got)
        # the same inputs scored again, independently, by the test's own model
        want = expect(prompts, completions, kw)
        assert got == pytest.approx(want, abs=1e-5)
        assert len({round(x, 6) for x in want}) > 1, (
            "completions should differ, or the test proves little"
        )
        # what TRL logged and kept per completion
        assert log[f"rewards/{name}/mean"] == pytest.approx(statistics.fmean(want), abs=1e-5)
        assert log[f"rewards/{name}/std"] == pytest.approx(statistics.stdev(want), abs=1e-5)
        assert snap["rewards"] == pytest.approx(want, abs=1e-5)
        assert [c[0]["content"] for c in snap["completion"]] == [
            c[0]["content"] for c in completions
        ]
        # and trained on: one prompt per step, so the group is the whole batch
        mean, std = statistics.fmean(want), statistics.stdev(want)
        assert snap["advantages"] == pytest.approx(
            [(x - mean) / (std + 1e-4) for x in want], abs=1e-3
        )


def test_trl_grpo_trains_on_in_process_rewards(
    tiny_reward_fp32: Path, tiny_rm: RewardModel, tmp_path: Path
) -> None:
    recorder = Recorder(trl_reward_func(str(tiny_reward_fp32), device="cpu", dtype="float32"))
    assert recorder.__name__ == NAME
    trainer, snapshots = _train(recorder, tmp_path / "out")
    _check(trainer, snapshots, recorder, _conversations(tiny_rm))


def test_trl_grpo_trains_on_served_rewards(
    served_tiny_reward: str, tiny_rm: RewardModel, tmp_path: Path
) -> None:
    remote = RemoteRewardModel(served_tiny_reward)
    try:
        recorder = Recorder(trl_reward_func(remote))
        trainer, snapshots = _train(recorder, tmp_path / "out")
    finally:
        remote.close()
    _check(trainer, snapshots, recorder, _conversations(tiny_rm))


REFERENCES = ["4", "Paris.", "Hi!", "Rayleigh scattering."]


def test_trl_grpo_trains_on_polar_rewards_against_the_reference_column(
    tiny_polar_fp32: Path, tiny_polar_rm: Any, tmp_path: Path
) -> None:
    recorder = Recorder(
        trl_reward_func(str(tiny_polar_fp32), name="polar", device="cpu", dtype="float32")
    )

    def expect(prompts: list[Any], completions: list[Any], kw: dict[str, Any]) -> list[float]:
        refs = kw["reference"]  # TRL passes the dataset's columns, repeated per generation
        assert len(set(refs)) == 1 and refs[0] in REFERENCES
        items = [
            {"prompt": p, "reference": r, "output": c}
            for p, r, c in zip(prompts, refs, completions, strict=True)
        ]
        return [float(x) for x in tiny_polar_rm.score_batch(items)]

    trainer, snapshots = _train(recorder, tmp_path / "out", references=REFERENCES)
    _check(trainer, snapshots, recorder, expect)
