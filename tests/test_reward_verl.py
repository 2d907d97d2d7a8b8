"""``model_zoo.reward.verl`` at verl's documented call signature (verl's own code:
test_frameworks_verl).

Configuration precedence, the rows' layout (numpy arrays as verl's pandas path leaves them),
the errors a misconfigured run gets, and the merging of concurrent per-row calls.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures_reward import conv

from model_zoo.errors import UsageError
from model_zoo.reward import verl
from model_zoo.reward.model import RewardModel
from model_zoo.reward.verl import VerlRewardConfig, _Coalescer, _row_input


@pytest.fixture(autouse=True)
def _fresh() -> Any:
    verl.reset()
    yield
    verl.reset()


def test_keywords_win_over_the_environment() -> None:
    env = {
        "MODEL_ZOO_REWARD_URL": "http://127.0.0.1:1",
        "MODEL_ZOO_API_KEY": "k",
        "MODEL_ZOO_REWARD_DEVICE": "cpu",
    }
    config = VerlRewardConfig.from_kwargs({"model": "m", "reward_router_address": "x"}, env)
    assert (config.model, config.server_url, config.api_key, config.device) == (
        "m",
        None,
        "k",
        "cpu",
    )
    config = VerlRewardConfig.from_kwargs({}, env)
    assert (config.model, config.server_url) == (None, "http://127.0.0.1:1")
    assert (
        VerlRewardConfig.from_kwargs({"model": "m", "style": "polar"}, {}).style
        == "reference-based"
    )
    assert (
        VerlRewardConfig.from_kwargs({"model": "m", "strip_thinking": "false"}, {}).strip_thinking
        is False
    )


@pytest.mark.parametrize(
    ("kw", "env", "match"),
    [
        ({}, {}, "needs a reward model"),
        ({"model": "m", "server_url": "http://127.0.0.1:1"}, {}, "not both"),
        ({}, {"MODEL_ZOO_REWARD_MODEL": "m", "MODEL_ZOO_REWARD_URL": "u"}, "keep one"),
        ({"model": "m", "style": "pairwise"}, {}, "style must be one of"),
        ({"model": "m", "strip_thinking": "maybe"}, {}, "true or false"),
    ],
)
def test_bad_configuration_is_a_usage_error(
    kw: dict[str, Any], env: dict[str, str], match: str
) -> None:
    with pytest.raises(UsageError, match=match):
        VerlRewardConfig.from_kwargs(kw, env)


def test_rows_become_the_models_inputs() -> None:
    config = VerlRewardConfig(model="m")
    prompt = np.array(
        [{"role": "user", "content": "2+2?"}], dtype=object
    )  # as verl's pandas path has it
    assert _row_input("conversation", config, "<think>x</think>4", None, {"prompt": prompt}, 0) == [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>x</think>4"},
    ]
    assert _row_input("conversation", config, "4", None, {"prompt": "2+2?"}, 0) == conv("2+2?", "4")
    ref = np.array([{"role": "assistant", "content": "4"}], dtype=object)
    item = _row_input("reference-based", config, "<think>x</think> 4", ref, {"prompt": prompt}, 0)
    assert item == {
        "prompt": [{"role": "user", "content": "2+2?"}],
        "reference": [{"role": "assistant", "content": "4"}],
        "output": "4",
    }
    pretrain = VerlRewardConfig(model="m", wrapper="pretrain", strip_thinking=False)
    assert _row_input(
        "reference-based", pretrain, "<think>x</think>4", "4", {"prompt": "q"}, 0
    ) == {"prompt": "q", "reference": "4", "output": "<think>x</think>4", "wrapper": "pretrain"}
    with pytest.raises(UsageError, match="ground_truth is empty"):
        _row_input("reference-based", config, "4", None, {"prompt": "q"}, 3)
    with pytest.raises(UsageError, match=r"row 2: extra_info has no 'question'"):
        _row_input(
            "conversation",
            VerlRewardConfig(model="m", prompt_key="question"),
            "4",
            None,
            {"prompt": "q"},
            2,
        )


def test_compute_score_loads_once_and_matches_score_batch(
    tiny_reward_fp32: Path, tiny_rm: RewardModel
) -> None:
    kw = {"model": str(tiny_reward_fp32), "device": "cpu", "dtype": "float32"}
    infos = [{"prompt": c[:1]} for c in (conv("2+2?"), conv("hi"))]
    got = verl.compute_score_batch(["a", "b"], ["4", "hello"], [None, None], infos, **kw)
    assert got == pytest.approx(
        tiny_rm.score_batch([conv("2+2?", "4"), conv("hi", "hello")]), abs=1e-5
    )
    one = verl.compute_score("a", "4", None, infos[0], **kw)
    assert one == pytest.approx(got[0], abs=1e-5) and isinstance(one, float)
    assert len(verl._SCORERS) == 1  # the same configuration reuses the loaded model
    assert verl.compute_score_batch([], [], [], [], **kw) == []
    with pytest.raises(UsageError, match="must pair up"):
        verl.compute_score_batch(["a"], ["4", "5"], [None, None], infos, **kw)


def test_concurrent_rows_are_scored_in_merged_batches() -> None:
    batches: list[int] = []
    first_started = threading.Event()
    release = threading.Event()

    def score_many(items: list[Any]) -> list[float]:
        batches.append(len(items))
        if len(batches) == 1:  # hold the first batch until every other row is queued
            first_started.set()
            assert release.wait(10)
        return [float(x) for x in items]

    coalescer = _Coalescer(score_many)
    results: dict[int, float] = {}
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, coalescer.score(i)))
        for i in range(8)
    ]
    threads[0].start()
    assert first_started.wait(10)
    for t in threads[1:]:
        t.start()
    deadline = time.monotonic() + 10
    while len(coalescer._queue) < 7 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for t in threads:
        t.join(10)
    assert results == {i: float(i) for i in range(8)}  # every row got its own score back
    assert batches == [1, 7]  # the seven that waited went through as one batch


def test_a_failed_batch_fails_every_row_in_it() -> None:
    def score_many(items: list[Any]) -> list[float]:
        raise RuntimeError("model fell over")

    coalescer = _Coalescer(score_many)
    with pytest.raises(RuntimeError, match="fell over"):
        coalescer.score(1)
    with pytest.raises(RuntimeError, match="fell over"):  # and the next call tries again
        coalescer.score(2)
