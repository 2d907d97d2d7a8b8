"""The padding-free last-hidden-state path (runner/unpadded.py) against the padded forward.

Every architecture the runner loads (InternLM2 with GQA, the reward model, InternLM3 with its
explicit head_dim, v1 with attention biases), one layer or several, rope scaling, a batch that
mixes lengths from 1 token to past ``max_position_embeddings``: the hidden state at each
sequence's last token must equal what the standard right-padded forward gives there.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from model_zoo.runner.api import load
from model_zoo.runner.unpadded import last_hidden_states, supports_unpadded
from model_zoo.testing.tiny import TinyDims, make_tiny


def padded_last_hidden(runner, seqs: list[list[int]]) -> torch.Tensor:
    """The standard forward on a right-padded batch, read at each row's last real position."""
    longest = max(map(len, seqs))
    ids = torch.zeros((len(seqs), longest), dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    hidden = runner.hidden_states(ids, mask)
    return hidden[torch.arange(len(seqs)), mask.sum(1) - 1]


def batch(lengths: list[int], seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, 1000) for _ in range(n)] for n in lengths]


LENGTHS = [1, 7, 30, 2, 63, 64, 17]


@pytest.mark.parametrize(
    ("arch", "dims", "overrides"),
    [
        ("internlm2", None, None),
        ("internlm2-reward", None, None),
        ("internlm3", None, None),
        ("internlm", None, None),  # v1: biases on q/k/v/o, no GQA
        ("internlm2", TinyDims(num_hidden_layers=1), None),  # the last layer is also the first
        ("internlm2", TinyDims(num_hidden_layers=3, num_key_value_heads=1), None),
        ("internlm2", None, {"rope_scaling": {"type": "linear", "factor": 2.0}}),
    ],
)
def test_equals_the_padded_forward(
    tmp_path: Path, arch: str, dims: TinyDims | None, overrides: dict | None
) -> None:
    path = make_tiny(
        arch, tmp_path / "ckpt", seed=5, dtype="float32", dims=dims, config_overrides=overrides
    )
    runner = load(path, device="cpu")
    decoder = runner.model.model
    assert supports_unpadded(decoder, runner.placement.devices)
    seqs = batch(LENGTHS)
    with torch.inference_mode():
        got = last_hidden_states(decoder, seqs, "cpu")
        want = padded_last_hidden(runner, seqs)
    assert got.shape == want.shape == (len(seqs), decoder.config.hidden_size)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
    # and each sequence alone (the padded batch could share a mistake with the new path)
    for seq, row in zip(seqs, got, strict=True):
        torch.testing.assert_close(row, padded_last_hidden(runner, [seq])[0], atol=2e-5, rtol=1e-4)


def test_dynamic_rope_past_max_positions_uses_the_longest_length(tmp_path: Path) -> None:
    """InternLM2's dynamic NTK base depends on the batch's longest length, exactly as padded."""
    path = make_tiny("internlm2", tmp_path / "ckpt", seed=1, dtype="float32")
    runner = load(path, device="cpu")
    seqs = batch([100, 20, 5], seed=2)  # max_position_embeddings is 64
    with torch.inference_mode():
        got = last_hidden_states(runner.model.model, seqs, "cpu")
        want = padded_last_hidden(runner, seqs)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


def test_bf16_close_to_the_padded_forward(tiny_internlm2_reward: Path) -> None:
    runner = load(tiny_internlm2_reward, device="cpu", dtype="bfloat16")
    seqs = batch([12, 40, 3])
    with torch.inference_mode():
        got = last_hidden_states(runner.model.model, seqs, "cpu").float()
        want = padded_last_hidden(runner, seqs).float()
    torch.testing.assert_close(got, want, atol=0.05, rtol=0.05)


def test_runner_uses_it_only_where_it_applies(tiny_internlm2_reward: Path) -> None:
    sdpa = load(tiny_internlm2_reward, device="cpu", dtype="float32")
    eager = load(tiny_internlm2_reward, device="cpu", dtype="float32", attn="eager")
    assert sdpa.unpadded and not eager.unpadded
    # a layer split over two devices keeps the standard forward (its hooks move activations)
    assert not supports_unpadded(sdpa.model.model, (torch.device("cpu"), torch.device("meta")))
    seqs = batch([9, 1, 33])
    torch.testing.assert_close(
        sdpa.last_hidden_states(seqs), eager.last_hidden_states(seqs), atol=2e-5, rtol=1e-4
    )


def test_empty_input_is_refused(tiny_internlm2_reward: Path) -> None:
    runner = load(tiny_internlm2_reward, device="cpu", dtype="float32")
    with pytest.raises(ValueError, match="at least one token"):
        last_hidden_states(runner.model.model, [[5, 6], []], "cpu")
    with pytest.raises(ValueError, match="at least one token"):
        last_hidden_states(runner.model.model, [], "cpu")


def test_reward_scorer_runs_padding_free_and_scores_alike(tiny_reward_fp32: Path) -> None:
    from model_zoo.reward.api import load_reward

    fast = load_reward(tiny_reward_fp32, device="cpu", dtype="float32")
    plain = load_reward(tiny_reward_fp32, device="cpu", dtype="float32", attn="eager")
    assert fast.scorer.last_hidden is not None and plain.scorer.last_hidden is None
    convs = [
        [{"role": "user", "content": "hi " * n}, {"role": "assistant", "content": "ok"}]
        for n in (1, 9, 20)
    ]
    for a, b in zip(fast.score_batch(convs), plain.score_batch(convs), strict=True):
        assert abs(a - b) < 1e-4
