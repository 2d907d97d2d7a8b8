"""Reward replicas on a local Ray instance (CPU): same scores as one process, same HTTP protocol.

One Ray session and one pool of two replicas for the whole module, to keep it quick.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures_reward import conv

from model_zoo.reward.model import RewardModel
from model_zoo.server.reward_server import RewardServer

ray = pytest.importorskip("ray", reason="Ray is the optional 'ray' extra")
pytestmark = pytest.mark.slow  # a local Ray instance and two replica actors per module

CONVS = [conv(f"question {i} " + "word " * (i % 5), "answer " * (i % 7)) for i in range(12)]


@pytest.fixture(scope="module")
def ray_rm(tiny_reward_fp32: Path) -> Iterator[RewardModel]:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    from model_zoo.reward.ray import init_local_ray, load_reward_ray

    init_local_ray(num_cpus=2)
    rm = load_reward_ray(
        tiny_reward_fp32, replicas=2, device="cpu", dtype="float32", num_cpus_per_replica=1
    )
    try:
        yield rm
    finally:
        rm.close()
        ray.shutdown()


def test_pool_scores_equal_single_process_scores(ray_rm: RewardModel, tiny_rm: RewardModel) -> None:
    expected = tiny_rm.score_batch(CONVS)
    assert ray_rm.score_batch(CONVS) == pytest.approx(expected, abs=1e-5)
    assert all(n > 0 for n in ray_rm.scorer.calls_per_replica)  # both replicas did work
    assert ray_rm.rank(CONVS) == tiny_rm.rank(CONVS)
    assert ray_rm.best_of(CONVS) == tiny_rm.best_of(CONVS)
    assert ray_rm.score(CONVS[3]) == pytest.approx(expected[3], abs=1e-5)
    assert ray_rm.score_batch([]) == []


def test_server_backed_by_the_pool(ray_rm: RewardModel, tiny_rm: RewardModel) -> None:
    texts = [tiny_rm.codec.render(c) for c in CONVS[:5]]
    with RewardServer(ray_rm) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        scored = client.post("/v1/score", json={"conversations": CONVS}).json()["scores"]
        rewards = client.post("/get_reward", json={"query": texts}).json()["rewards"]
    assert scored == pytest.approx(tiny_rm.score_batch(CONVS), abs=1e-5)
    assert rewards == pytest.approx(tiny_rm.score_text(texts), abs=1e-5)


def test_a_replica_that_cannot_load_raises_the_model_zoo_error(
    ray_rm: RewardModel, tiny_reward_fp32: Path
) -> None:
    import torch

    from model_zoo.errors import UsageError
    from model_zoo.reward.ray import load_reward_ray

    if torch.cuda.is_available():
        pytest.skip("CUDA is present here, so device='cuda' loads instead of failing")
    with pytest.raises(
        UsageError, match="CUDA is not available"
    ) as info:  # not Ray's ActorDiedError
        load_reward_ray(
            tiny_reward_fp32,
            replicas=1,
            device="cuda",
            num_cpus_per_replica=0,
            num_gpus_per_replica=0,
        )
    assert info.value.exit_code == 2
