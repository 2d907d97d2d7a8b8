"""Scale reward scoring out to N replicas on Ray, behind the same RewardModel API and server.

``load_reward_ray(path, replicas=N)`` starts N Ray actors, each loading the reward model on its
own device (one GPU each when the cluster has GPUs), and returns an ordinary ``RewardModel``
whose scorer spreads every batch over the replicas (balanced by tokens; each replica then buckets
its share by length). Tokenization stays in the calling process. ``RewardServer(rm)`` on such a
model serves the same HTTP protocol, backed by the pool.

Ray is an optional extra (``pip install 'model-zoo[ray]'``). When this module starts Ray itself
it turns usage statistics off and binds to loopback, so nothing leaves the machine.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import MissingDependencyError, ModelZooError, UsageError
from .batching import split_for_workers
from .model import RewardModel, check_positive


def _ray() -> Any:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("ray", extra="ray", feature="reward replicas on Ray") from None
    return ray


def init_local_ray(num_cpus: int | None = None, **kwargs: Any) -> None:
    """Start a local Ray instance that stays on this machine (no dashboard, no usage stats)."""
    ray = _ray()
    if ray.is_initialized():
        return
    kwargs.setdefault("include_dashboard", False)
    kwargs.setdefault("_node_ip_address", "127.0.0.1")
    kwargs.setdefault("log_to_driver", False)
    kwargs.setdefault("logging_level", logging.WARNING)
    ray.init(num_cpus=num_cpus, **kwargs)


class ReplicaWorker:
    """Body of one Ray actor: a single-process reward scorer on the actor's own device."""

    def __init__(
        self, path: str, device: str, dtype: str, max_tokens_per_batch: int | None
    ) -> None:
        from .api import load_reward

        self.error: ModelZooError | None = None
        try:
            self.rm = load_reward(
                path, device=device, dtype=dtype, max_tokens_per_batch=max_tokens_per_batch
            )
        except (
            ModelZooError
        ) as exc:  # kept for ping(): Ray would bury it in an ActorDiedError traceback
            self.error = exc

    def score_ids(
        self, batch: list[list[int]], batch_size: int | None, max_tokens_per_batch: int | None
    ) -> list[float]:
        return self.rm.scorer.score_ids(
            batch, batch_size=batch_size, max_tokens_per_batch=max_tokens_per_batch
        )

    def ping(self) -> ModelZooError | None:
        """None when the replica loaded, else its load error (model-zoo errors pickle whole)."""
        return self.error


class RayScorer:
    """A Scorer that deals each batch across replica actors and reassembles the scores in order."""

    def __init__(self, actors: Sequence[Any]) -> None:
        if not actors:
            raise UsageError("a Ray reward pool needs at least one replica")
        self.actors = list(actors)
        self.calls_per_replica = [0] * len(self.actors)  # how the work was spread (tests, logs)

    @property
    def replicas(self) -> int:
        return len(self.actors)

    def score_ids(
        self,
        batch: Sequence[Sequence[int]],
        *,
        batch_size: int | None = None,
        max_tokens_per_batch: int | None = None,
    ) -> list[float]:
        ray = _ray()
        shares = split_for_workers([len(x) for x in batch], len(self.actors))
        pending = []
        for k, share in enumerate(shares):
            if share:
                ids = [list(batch[i]) for i in share]
                pending.append(
                    (share, self.actors[k].score_ids.remote(ids, batch_size, max_tokens_per_batch))
                )
                self.calls_per_replica[k] += 1
        scores: list[float] = [0.0] * len(batch)
        for share, ref in pending:
            for i, value in zip(share, ray.get(ref), strict=True):
                scores[i] = value
        return scores

    def close(self) -> None:
        """Stop the replica actors (the Ray instance itself keeps running)."""
        ray = _ray()
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def load_reward_ray(
    name_or_path: str | Path,
    *,
    replicas: int = 2,
    device: str = "auto",
    dtype: str = "auto",
    max_length: int | None = None,
    max_tokens_per_batch: int | None = None,
    num_cpus_per_replica: float = 1,
    num_gpus_per_replica: float | None = None,
    truncate: bool = False,
) -> RewardModel:
    """A RewardModel backed by ``replicas`` Ray actors; starts a local Ray instance if none is up.

    ``num_gpus_per_replica`` defaults to 1 when this machine has CUDA, else 0 (CPU replicas).
    Call ``rm.close()`` to stop the actors.
    """
    check_positive(
        replicas=replicas, max_length=max_length, max_tokens_per_batch=max_tokens_per_batch
    )
    from .api import load_reward_codec, require_reward_name, resolve_checkpoint

    require_reward_name(name_or_path)
    ray = _ray()

    path = resolve_checkpoint(name_or_path)
    if num_gpus_per_replica is None:
        num_gpus_per_replica = 1.0 if _has_cuda() else 0.0
    init_local_ray()
    actor_cls = ray.remote(ReplicaWorker).options(
        num_cpus=num_cpus_per_replica, num_gpus=num_gpus_per_replica
    )
    actors = [
        actor_cls.remote(str(path), device, dtype, max_tokens_per_batch) for _ in range(replicas)
    ]
    failures = [
        e for e in ray.get([a.ping.remote() for a in actors]) if e is not None
    ]  # not on the first score
    if failures:
        for actor in actors:
            ray.kill(actor)
        raise failures[0]  # the replica's own error type, fields and exit code
    codec, info = load_reward_codec(path)
    return RewardModel(
        RayScorer(actors),
        codec,
        reward_token_id=info.reward_token_id,
        max_length=info.max_length if max_length is None else max_length,
        pad_token_id=info.pad_token_id,
        name=f"{info.name} (ray x{replicas})",
        truncate=truncate,
        vocab_size=info.vocab_size,
    )


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


__all__ = [
    "init_local_ray",
    "load_reward_ray",
]
