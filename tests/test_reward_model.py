"""The tiny InternLM2-Reward checkpoint, scored natively, against an independent computation.

The reference (fixtures_reward.reference_score) is a plain-torch InternLM2 forward from the packed
safetensors weights with its own v_head, position and reward-token logic; the expected token ids
are built here from the ChatML format in the facts file, not from the chat template code.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import httpx
import pytest
from fixtures_reward import LONE_SURROGATE, conv, reference_score

from model_zoo.errors import (
    IncompatibleCheckpointError,
    InputTooLongError,
    InvalidConversationError,
    UsageError,
)
from model_zoo.reward.model import RewardModel
from model_zoo.server.reward_server import RewardServer

CONVS = [
    conv("Hello there, how are you?", "Fine, thanks."),
    conv("What is 2 + 2?", "It is 4."),
    conv("What is 2 + 2?", "It is 5."),
    [{"role": "system", "content": "Be brief."}, *conv("Name a colour.", "Blue.")],
    conv("Hi", "Hello!"),
    conv("Write one word.", "Word"),
]


def chatml(conversation: list[dict[str, str]]) -> str:
    """ChatML as the facts file describes it (section 5), bos first, no generation prompt."""
    return "<s>" + "".join(
        f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in conversation
    )


def reward_token_id(path: Path) -> int:
    return int(json.loads((path / "config.json").read_text())["reward_token_id"])


def expected_ids(rm: RewardModel, path: Path, conversation: list[dict[str, str]]) -> list[int]:
    return rm.codec.tokenizer.encode(chatml(conversation), add_special_tokens=False) + [
        reward_token_id(path)
    ]


def test_scores_equal_an_independent_forward(tiny_rm: RewardModel, tiny_reward_fp32: Path) -> None:
    rid = reward_token_id(tiny_reward_fp32)
    assert rm_token(tiny_rm) == rid
    scores = tiny_rm.score_batch(CONVS)
    for c, got in zip(CONVS, scores, strict=True):
        ids = expected_ids(tiny_rm, tiny_reward_fp32, c)
        assert tiny_rm.encode_conversations([c])[0] == ids
        assert ids.count(rid) == 1 and ids[-1] == rid
        assert got == pytest.approx(reference_score(tiny_reward_fp32, ids), abs=1e-4)
    assert len({round(s, 5) for s in scores}) == len(scores)  # a head that ignored input would fail


def rm_token(rm: RewardModel) -> int:
    return rm.reward_token_id


def test_reward_token_is_appended_exactly_once(
    tiny_rm: RewardModel, tiny_reward_fp32: Path
) -> None:
    text = chatml(CONVS[0])
    with_token = text + "[UNUSED_TOKEN_130]"
    plain, marked = tiny_rm.encode_texts([text, with_token])
    assert plain == marked == expected_ids(tiny_rm, tiny_reward_fp32, CONVS[0])
    s_conv = tiny_rm.score(CONVS[0])
    s_plain, s_marked = tiny_rm.score_text([text, with_token])
    s_ids = tiny_rm.score_ids([plain[:-1], plain])
    assert s_plain == pytest.approx(s_conv, abs=1e-6) and s_marked == pytest.approx(
        s_conv, abs=1e-6
    )
    assert s_ids == pytest.approx([s_conv, s_conv], abs=1e-6)
    # the token counts: a sequence without it scores differently (what /pooling servers get wrong)
    assert tiny_rm.scorer.score_ids([plain[:-1]])[0] != pytest.approx(s_conv, abs=1e-3)


def test_batch_equals_one_at_a_time_in_input_order(tiny_rm: RewardModel) -> None:
    rng = random.Random(0)
    words = "the cat sat on a mat and then it ran far away from home".split()
    convs = [
        conv(
            " ".join(rng.choices(words, k=rng.randint(1, 6))),
            " ".join(rng.choices(words, k=rng.randint(0, 8))),
        )
        for _ in range(14)
    ]
    singles = [tiny_rm.score(c) for c in convs]
    before = tiny_rm.scorer.forward_passes
    batched = tiny_rm.score_batch(convs, max_tokens_per_batch=120, batch_size=5)
    assert tiny_rm.scorer.forward_passes - before > 1  # really ran in several buckets
    assert batched == pytest.approx(singles, abs=1e-4)
    perm = list(range(len(convs)))
    rng.shuffle(perm)
    assert tiny_rm.score_batch([convs[i] for i in perm]) == pytest.approx(
        [singles[i] for i in perm], abs=1e-4
    )


def test_rank_order_best_of_compare(tiny_rm: RewardModel) -> None:
    scores = tiny_rm.score_batch(CONVS)
    ranks, order = tiny_rm.rank(CONVS), tiny_rm.order(CONVS)
    assert [scores[i] for i in order] == sorted(scores, reverse=True)
    assert sorted(ranks) == list(range(len(CONVS)))
    assert all(ranks[order[k]] == k for k in range(len(CONVS)))
    assert tiny_rm.best_of(CONVS) == order[0] == ranks.index(0)
    assert tiny_rm.compare(CONVS[1], CONVS[2]) is (scores[1] > scores[2])
    assert tiny_rm.compare(CONVS[2], CONVS[1]) is (scores[2] > scores[1])


def test_overlong_conversations(tiny_rm: RewardModel, tiny_reward_fp32: Path) -> None:
    long = conv("one two three four five six seven " * 6, "eight nine ten")
    full = expected_ids(tiny_rm, tiny_reward_fp32, long)
    assert len(full) > tiny_rm.max_length
    with pytest.raises(InputTooLongError) as exc:
        tiny_rm.score_batch([CONVS[0], long])
    assert (
        exc.value.index == 1
        and exc.value.tokens == len(full)
        and exc.value.limit == tiny_rm.max_length
    )
    kept = full[-tiny_rm.max_length :]
    assert tiny_rm.encode_conversations([long], truncate=True)[0] == kept
    assert tiny_rm.score(long, truncate=True) == pytest.approx(
        reference_score(tiny_reward_fp32, kept), abs=1e-4
    )


def test_openrlhf_query_through_the_server(tiny_rm: RewardModel, tiny_reward_fp32: Path) -> None:
    """Left-padded, already-templated queries as OpenRLHF decodes them (pad = </s>)."""
    queries = ["</s></s>" + chatml(CONVS[1]), chatml(CONVS[2])]
    with RewardServer(tiny_rm) as server:
        out = httpx.post(
            server.url + "/get_reward",
            json={"query": queries, "prompts": ["p", "p"], "labels": [None, None]},
            timeout=30,
        ).json()
    want = [
        reference_score(tiny_reward_fp32, expected_ids(tiny_rm, tiny_reward_fp32, c))
        for c in CONVS[1:3]
    ]
    assert out["rewards"] == pytest.approx(want, abs=1e-4)


def test_a_chat_model_is_not_a_reward_model(tiny_internlm2: Path) -> None:
    from model_zoo.reward.api import load_reward

    with pytest.raises(IncompatibleCheckpointError, match="not a reward model"):
        load_reward(tiny_internlm2, device="cpu")


def test_concurrent_clients_on_the_real_model(tiny_rm: RewardModel) -> None:
    import threading

    expected = tiny_rm.score_batch(CONVS)
    got: list[float] = [0.0] * len(CONVS)
    # Clients are built and connected before the barrier: building an httpx client loads the CA
    # store (~50 ms of CPU each, serialised by the GIL), which spread the requests past the
    # merge window on a loaded machine. The window is wider than any scheduling jitter.
    clients = [httpx.Client(timeout=30) for _ in CONVS]
    with RewardServer(tiny_rm, wait_s=0.25) as server:
        for c in clients:
            assert c.get(server.url + "/health").status_code == 200  # connection open, warm
        barrier = threading.Barrier(len(CONVS))

        def one(i: int) -> None:
            barrier.wait()
            got[i] = (
                clients[i]
                .post(server.url + "/v1/score", json={"conversations": [CONVS[i]]})
                .json()["scores"][0]
            )

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(CONVS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        merged = server.scheduler.stats.merged_batches
    for c in clients:
        c.close()
    assert got == pytest.approx(expected, abs=1e-4)  # merged batches score like one batch
    assert merged >= 1


# ---------------------------------------------- inputs the model cannot take, and identical inputs


def test_api_refuses_a_lone_surrogate_naming_the_field(tiny_rm: RewardModel) -> None:
    with pytest.raises(InvalidConversationError) as info:
        tiny_rm.score(
            [{"role": "user", "content": "hi"}, {"role": "assistant", "content": LONE_SURROGATE}]
        )
    assert info.value.fields["field"] == "conversation[1].content"
    with pytest.raises(InvalidConversationError) as info:
        tiny_rm.score_text(["ok", LONE_SURROGATE])
    assert info.value.fields["field"] == "texts[1]"


@pytest.mark.parametrize("bad", [10**6, -3])
def test_score_ids_refuses_ids_outside_the_vocabulary_naming_the_input(
    tiny_rm: RewardModel, bad: int
) -> None:
    with pytest.raises(UsageError, match=r"input 1 .*outside the vocabulary") as info:
        tiny_rm.score_ids([[1, 5], [1, bad, 6]])
    assert str(bad) in str(info.value)


def test_load_reward_refuses_max_length_zero_instead_of_ignoring_it(tiny_reward_fp32: Path) -> None:
    from model_zoo.reward.api import load_reward

    with pytest.raises(UsageError, match="max_length must be at least 1"):
        load_reward(tiny_reward_fp32, device="cpu", max_length=0)


def test_load_reward_refuses_a_chat_model_name_before_pulling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from model_zoo.errors import IncompatibleCheckpointError
    from model_zoo.reward.api import load_reward

    monkeypatch.setenv("MODEL_ZOO_OFFLINE", "1")  # were it to pull, this would fail differently
    with pytest.raises(IncompatibleCheckpointError, match="not a reward model"):
        load_reward("internlm2_5-7b-chat", device="cpu")


def test_identical_conversations_score_identically_so_ties_keep_input_order(
    tiny_rm: RewardModel,
) -> None:
    same = conv("2+2?", "4")
    other = conv("hi", "hello")
    scores = tiny_rm.score_batch([same, other, same, same])
    assert scores[0] == scores[2] == scores[3]
    assert tiny_rm.rank([same, same, same]) == [0, 1, 2]
    assert tiny_rm.order([same, same, same]) == [0, 1, 2]
    assert tiny_rm.compare(same, same) is False and tiny_rm.best_of([same, same]) == 0
