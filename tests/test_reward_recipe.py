"""The reward recipe and batching mechanics, over a predictable codec and scorer (no torch)."""

from __future__ import annotations

import itertools
import random

import pytest
from fixtures_reward import FAKE_PAD_ID, FAKE_REWARD_ID, CharCodec, conv, fake_score, make_fake_rm

from model_zoo.errors import InputTooLongError, InvalidConversationError, UsageError
from model_zoo.reward.batching import fit_length, plan_buckets, split_for_workers, with_reward_token
from model_zoo.reward.model import order_from_scores, ranks_from_scores


def test_reward_token_appended_once_and_never_twice() -> None:
    assert with_reward_token([5, 6], 9) == [5, 6, 9]
    assert with_reward_token([5, 9], 9) == [5, 9]  # already last: unchanged
    assert with_reward_token([9, 5], 9) == [9, 5, 9]  # present but not last: appended
    assert with_reward_token([], 9) == [9]


def test_fit_length_errors_or_truncates_from_the_left() -> None:
    ids = list(range(10)) + [99]
    assert fit_length(ids, 11, truncate=False, index=0) == ids
    with pytest.raises(InputTooLongError) as exc:
        fit_length(ids, 4, truncate=False, index=3)
    assert (exc.value.index, exc.value.tokens, exc.value.limit) == (3, 11, 4)
    assert "truncate=True" in str(exc.value)
    assert fit_length(ids, 4, truncate=True, index=0) == [7, 8, 9, 99]


@pytest.mark.parametrize("seed", range(5))
def test_buckets_cover_every_item_once_and_respect_the_budget(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.randint(1, 60) for _ in range(rng.randint(1, 80))]
    budget, cap = rng.choice([64, 200, 1000]), rng.choice([None, 3, 16])
    buckets = plan_buckets(lengths, max_tokens=budget, max_items=cap)
    assert sorted(itertools.chain.from_iterable(buckets)) == list(range(len(lengths)))
    for b in buckets:
        longest = max(lengths[i] for i in b)
        assert (
            longest * len(b) <= budget or len(b) == 1
        )  # an item over budget alone still gets scored
        assert cap is None or len(b) <= cap
    # longest first, and sorted inside: buckets never interleave lengths
    flat = [lengths[i] for b in buckets for i in b]
    assert flat == sorted(flat, reverse=True)


def _cost(buckets: list[list[int]], lengths: list[int], overhead: int) -> int:
    """Padded tokens plus ``overhead`` per forward pass: what the planner minimises."""
    return sum(overhead + len(b) * max(lengths[i] for i in b) for b in buckets)


def _best_cost(lengths: list[int], overhead: int, budget: int) -> int:
    """The optimum by exhaustive dynamic programming over cuts of the sorted lengths."""
    sorted_lengths = sorted(lengths, reverse=True)
    best = [0] + [10**18] * len(lengths)
    for end in range(1, len(lengths) + 1):
        for start in range(end):
            size, longest = end - start, sorted_lengths[start]
            if size == 1 or size * longest <= budget:
                best[end] = min(best[end], best[start] + overhead + size * longest)
    return best[-1]


def test_similar_lengths_share_one_bucket() -> None:
    assert plan_buckets([40, 38, 35, 31, 30], max_tokens=1000) == [[0, 1, 2, 3, 4]]
    # a few short items ride along with long ones: one more pass would cost more than their padding
    assert plan_buckets([40, 10, 38, 9], max_tokens=1000) == [[0, 2, 1, 3]]
    # many short items behind a long one get their own pass
    lengths = [400] + [20] * 30
    assert plan_buckets(lengths, max_tokens=100_000) == [[0], list(range(1, 31))]
    # and a pass costs nothing: every length change starts a bucket
    assert plan_buckets([40, 10, 38, 9], max_tokens=1000, pass_overhead_tokens=0) == [
        [0],
        [2],
        [1],
        [3],
    ]


@pytest.mark.parametrize("seed", range(8))
def test_bucket_plan_is_close_to_the_cheapest(seed: int) -> None:
    """Padding plus per-pass cost stays within 15% of the exhaustive optimum, and beats both naive
    plans."""
    rng = random.Random(seed)
    lengths = [rng.randint(5, rng.choice([60, 400])) for _ in range(rng.randint(2, 120))]
    overhead, budget = rng.choice([64, 256, 1024]), rng.choice([2000, 16384])
    plan = plan_buckets(lengths, max_tokens=budget, pass_overhead_tokens=overhead)
    cost = _cost(plan, lengths, overhead)
    assert cost <= 1.15 * _best_cost(lengths, overhead, budget)
    per_length = plan_buckets(lengths, max_tokens=budget, pass_overhead_tokens=0)
    one_pass = plan_buckets(lengths, max_tokens=budget, pass_overhead_tokens=10**9)
    assert cost <= _cost(per_length, lengths, overhead)
    assert cost <= _cost(one_pass, lengths, overhead)


def test_bucket_limits_are_checked() -> None:
    with pytest.raises(UsageError):
        plan_buckets([3], max_tokens=0)
    with pytest.raises(UsageError):
        plan_buckets([3], max_items=0)


def test_split_for_workers_balances_tokens() -> None:
    lengths = [50, 40, 30, 20, 10, 10]
    shares = split_for_workers(lengths, 2)
    assert sorted(i for s in shares for i in s) == list(range(6))
    loads = [sum(lengths[i] for i in s) for s in shares]
    assert abs(loads[0] - loads[1]) <= 10
    assert split_for_workers([5], 3)[1:] == [[], []]


def test_score_follows_the_recipe_exactly() -> None:
    rm = make_fake_rm()
    c = conv("hi", "hello")
    expected_ids = CharCodec().encode(CharCodec().render(c)) + [FAKE_REWARD_ID]
    assert rm.encode_conversations([c]) == [expected_ids]
    assert rm.score(c) == pytest.approx(fake_score(expected_ids))
    assert rm.scorer.seen == [expected_ids]


def test_score_text_and_score_ids_append_the_reward_token_exactly_once() -> None:
    rm = make_fake_rm()
    text_ids = CharCodec().encode("abc")
    rm.score_text(["abc", "abc@"])  # "@" is the reward token, already last in the second text
    rm.score_ids([text_ids, text_ids + [FAKE_REWARD_ID]])
    # Both inputs of each call become the same sequence, so each call scores it once (copies share a
    # score).
    assert rm.scorer.seen == [text_ids + [FAKE_REWARD_ID]] * 2


def test_strip_pad_drops_pads_at_both_ends_only() -> None:
    rm = make_fake_rm()
    ids = rm.encode_texts(["###a#b##"], strip_pad=True)[0]  # "#" is the pad token
    a, b = CharCodec().encode("ab")
    assert ids == [a, FAKE_PAD_ID, b, FAKE_REWARD_ID]
    assert rm.encode_texts(["#a#"])[0] == [
        FAKE_PAD_ID,
        a,
        FAKE_PAD_ID,
        FAKE_REWARD_ID,
    ]  # kept unless asked


def test_batch_equals_one_at_a_time_and_keeps_input_order() -> None:
    rm = make_fake_rm()
    rng = random.Random(1)
    convs = [conv("q" * rng.randint(1, 30), "a" * rng.randint(0, 40)) for _ in range(25)]
    singles = [rm.score(c) for c in convs]
    assert rm.score_batch(convs, max_tokens_per_batch=150, batch_size=4) == singles
    assert len(set(singles)) > 10  # the inputs really differ


def test_overlong_input_is_an_error_by_default_and_truncated_on_request() -> None:
    rm = make_fake_rm(max_length=20)
    long = conv("x" * 40)
    with pytest.raises(InputTooLongError) as exc:
        rm.score_batch([conv("ok"), long])
    assert exc.value.index == 1 and exc.value.limit == 20
    ids = rm.encode_conversations([long], truncate=True)[0]
    assert len(ids) == 20 and ids[-1] == FAKE_REWARD_ID
    assert ids[:-1] == rm.encode_conversations([long], truncate=True, max_length=10_000)[0][-20:-1]
    assert rm.score(long, truncate=True) == pytest.approx(fake_score(ids))
    assert make_fake_rm(max_length=20, truncate=True).score(long) == pytest.approx(fake_score(ids))


def test_rank_is_each_conversations_rank_and_order_is_upstreams_argsort() -> None:
    rm = make_fake_rm()
    convs = [conv("b"), conv("dddd"), conv("a"), conv("cc")]
    scores = rm.score_batch(convs)
    ranks, order = rm.rank(convs), rm.order(convs)
    assert sorted(scores, reverse=True) == [scores[i] for i in order]
    assert all(ranks[order[k]] == k for k in range(4)) and all(
        order[ranks[i]] == i for i in range(4)
    )
    assert ranks != order  # a case where the two readings differ (they agree for two items)
    assert ranks[rm.best_of(convs)] == 0
    assert rm.compare(convs[1], convs[0]) is (scores[1] > scores[0])
    assert rm.compare(convs[0], convs[0]) is False  # strictly greater, like upstream


def test_ties_keep_input_order() -> None:
    assert order_from_scores([1.0, 2.0, 2.0, 0.5]) == [1, 2, 0, 3]
    assert ranks_from_scores([1.0, 2.0, 2.0, 0.5]) == [2, 0, 1, 3]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ("hello", "conversations[0]"),
        ([], "conversations[0]"),
        ([{"role": "user"}], "conversations[0][0].content"),
        ([{"role": "user", "content": 3}], "conversations[0][0].content"),
        ([{"content": "x"}], "conversations[0][0].role"),
        (["not a message"], "conversations[0][0]"),
    ],
)
def test_malformed_conversations_name_the_field(bad: object, field: str) -> None:
    rm = make_fake_rm()
    with pytest.raises(InvalidConversationError) as exc:
        rm.score_batch([bad])  # type: ignore[list-item]
    assert exc.value.field == field


def test_bare_strings_are_refused_where_lists_are_expected() -> None:
    rm = make_fake_rm()
    with pytest.raises(InvalidConversationError):
        rm.score_text("abc")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        rm.score_ids(["abc"])  # type: ignore[list-item]
    with pytest.raises(UsageError):
        rm.best_of([])
    assert rm.score_batch([]) == []


def test_many_distinct_lengths_are_planned_quickly_and_within_the_budget() -> None:
    rng = random.Random(7)
    lengths = [rng.randint(1, 8000) for _ in range(20_000)]
    buckets = plan_buckets(lengths, max_tokens=16384, max_items=64)
    assert sorted(itertools.chain.from_iterable(buckets)) == list(range(len(lengths)))
    for b in buckets:
        longest = max(lengths[i] for i in b)
        assert (longest * len(b) <= 16384 or len(b) == 1) and len(b) <= 64
    # merging nearly equal lengths to keep planning fast costs little against planning every length
    exact = plan_buckets(lengths, max_tokens=16384, max_items=64, pass_overhead_tokens=0)
    assert _cost(buckets, lengths, 256) <= _cost(exact, lengths, 256)
