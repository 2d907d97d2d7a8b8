"""vLLM's and LMDeploy's ``/pooling`` and SGLang's ``/classify`` on the reward server.

The shapes asserted here are the runtimes' own (model_zoo/server/runtimes.py names the source
file of each). Most tests use the fake reward model (predictable scores, see fixtures_reward);
the last ones serve the tiny InternLM2-Reward checkpoint and check that every endpoint scores
exactly what ``RewardModel.score_ids`` scores for the text tokenized as the runtimes tokenize it
(bos first) with the reward token last. POLAR's own client is driven in
test_server_polar_client.py.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fixtures_reward import FAKE_REWARD_ID, CharCodec, fake_score, make_fake_rm

from model_zoo.reward.model import RewardModel
from model_zoo.server.protocol import ServerLimits
from model_zoo.server.reward_server import RewardServer

REWARD = "@"  # the fake codec's reward token, as text (id FAKE_REWARD_ID)


def ids_of(text: str) -> list[int]:
    """What the fake server scores for ``text``: its ids, the reward token appended once."""
    ids = CharCodec().encode(text)
    return ids if ids[-1] == FAKE_REWARD_ID else [*ids, FAKE_REWARD_ID]


@pytest.fixture()
def served() -> Iterator[tuple[RewardServer, RewardModel, httpx.Client]]:
    rm = make_fake_rm()
    limits = ServerLimits(max_items_per_request=4, max_tokens_per_item=40)
    with (
        RewardServer(rm, limits=limits) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        yield server, rm, client


# ---------------------------------------------------------------------- vLLM


def test_vllm_pooling_answers_in_vllms_shape(served: Any) -> None:
    _, _, client = served
    texts = ["prompt\nref<|reward|>prompt\nout" + REWARD, "no reward token yet"]
    r = client.post("/pooling", json={"input": texts})
    assert r.status_code == 200
    out = r.json()
    assert set(out) == {"id", "object", "created", "model", "data", "usage"}
    assert (
        out["object"] == "list"
        and out["model"] == "fake-reward"
        and out["id"].startswith("pooling-")
    )
    assert isinstance(out["created"], int)
    assert [d["index"] for d in out["data"]] == [0, 1]
    assert all(d["object"] == "pooling" for d in out["data"])
    # one [score] row (the last token's): what POLAR's client reads as data[-1][0]
    assert [d["data"] for d in out["data"]] == [[[fake_score(ids_of(t))]] for t in texts]
    tokens = sum(len(ids_of(t)) for t in texts)
    assert out["usage"] == {
        "prompt_tokens": tokens,
        "total_tokens": tokens,
        "completion_tokens": 0,
        "prompt_tokens_details": None,
    }


def test_vllm_pooling_takes_every_input_form_vllm_takes(served: Any) -> None:
    _, rm, client = served

    def scores(body: dict[str, Any]) -> list[float]:
        r = client.post("/pooling", json=body)
        assert r.status_code == 200, r.text
        return [d["data"][-1][0] for d in r.json()["data"]]

    assert scores({"input": "one text"}) == [fake_score(ids_of("one text"))]
    assert scores({"input": [11, 12, 13]}) == [
        fake_score([11, 12, 13, FAKE_REWARD_ID])
    ]  # one prompt of ids
    assert scores({"input": [[11, 12], [13, FAKE_REWARD_ID]]}) == [
        fake_score([11, 12, FAKE_REWARD_ID]),
        fake_score([13, FAKE_REWARD_ID]),
    ]  # reward token never doubled
    chat = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    assert scores({"messages": chat}) == rm.score_batch([chat])  # the chat template's recipe
    # fields vLLM accepts and the answer does not depend on
    extra = {
        "model": "anything",
        "user": "u",
        "priority": 0,
        "encoding_format": "float",
        "task": "token_classify",
        "add_special_tokens": True,
        "truncation_side": "left",
        "dimensions": None,
    }
    assert scores({"input": "one text", **extra}) == [fake_score(ids_of("one text"))]
    r = client.post("/pooling", json={"input": "x", "model": "my-served-name", "request_id": "abc"})
    assert r.json()["model"] == "my-served-name" and r.json()["id"] == "pooling-abc"


def test_vllm_use_activation_and_truncate_prompt_tokens(served: Any) -> None:
    _, rm, client = served
    text = "y" * 60  # over the server's 40 tokens per item
    too_long = client.post("/pooling", json={"input": text})
    assert too_long.status_code == 413
    err = too_long.json()["error"]
    assert err["limit"] == "max_tokens_per_item" and err["field"] == "input"
    assert "truncate_prompt_tokens" in err["message"] and "--truncate" in err["message"]
    cut = client.post("/pooling", json={"input": text, "truncate_prompt_tokens": 10}).json()
    assert rm.scorer.seen[-1] == CharCodec().encode("y" * 9) + [
        FAKE_REWARD_ID
    ]  # the last 10, reward token last
    assert cut["data"][0]["data"] == [[fake_score(rm.scorer.seen[-1])]]
    client.post("/pooling", json={"input": text, "truncate_prompt_tokens": -1})
    assert len(rm.scorer.seen[-1]) == 40  # -1: the server's limit
    raw = fake_score(ids_of("ab"))
    sig = client.post("/pooling", json={"input": "ab", "use_activation": True}).json()["data"][0][
        "data"
    ][0][0]
    assert sig == pytest.approx(1 / (1 + math.exp(-raw)))
    assert client.post("/pooling", json={"input": "ab", "use_activation": False}).json()["data"][0][
        "data"
    ] == [[raw]]


# ---------------------------------------------------------------------- LMDeploy


def test_lmdeploy_pooling_answers_the_score_itself(served: Any) -> None:
    _, _, client = served
    texts = ["first" + REWARD, "second"]
    out = client.post("/lmdeploy/pooling", json={"input": texts}).json()
    assert set(out) == {"id", "object", "created", "model", "data", "usage"} and out[
        "id"
    ].startswith("pool-")
    assert out["data"] == [
        {"index": i, "object": "pooling", "data": fake_score(ids_of(t))}
        for i, t in enumerate(texts)
    ]
    tokens = sum(len(ids_of(t)) for t in texts)
    assert out["usage"] == {
        "prompt_tokens": tokens,
        "total_tokens": tokens,
        "completion_tokens": 0,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": None,
    }
    one = client.post("/lmdeploy/pooling", json={"input": [11, 12]}).json()["data"]
    assert one == [{"index": 0, "object": "pooling", "data": fake_score([11, 12, FAKE_REWARD_ID])}]


def test_pooling_format_picks_whose_answer_plain_pooling_gives() -> None:
    with (
        RewardServer(make_fake_rm(), pooling_format="lmdeploy") as server,
        httpx.Client(base_url=server.url) as c,
    ):
        assert c.post("/pooling", json={"input": ["ab"]}).json()["data"][0]["data"] == fake_score(
            ids_of("ab")
        )
        assert c.post("/vllm/pooling", json={"input": ["ab"]}).json()["data"][0]["data"] == [
            [fake_score(ids_of("ab"))]
        ]
    with pytest.raises(Exception, match="pooling format must be one of vllm, lmdeploy"):
        RewardServer(make_fake_rm(), pooling_format="tgi")


def test_the_cli_refuses_an_unknown_pooling_format(capsys: pytest.CaptureFixture[str]) -> None:
    from model_zoo.cli.main import main

    assert main(["serve-reward", "internlm2-1_8b-reward", "--pooling-format", "tgi"]) == 2
    assert "--pooling-format must be one of vllm, lmdeploy" in capsys.readouterr().err


# ---------------------------------------------------------------------- SGLang


def test_sglang_classify_answers_in_sglangs_shape(served: Any) -> None:
    _, _, client = served
    texts = ["a" + REWARD, "bb"]
    out = client.post("/classify", json={"model": "POLAR-7B", "text": texts}).json()
    assert isinstance(out, list) and [set(o) for o in out] == [{"embedding", "meta_info"}] * 2
    assert [o["embedding"] for o in out] == [[fake_score(ids_of(t))] for t in texts]
    assert [o["meta_info"]["prompt_tokens"] for o in out] == [len(ids_of(t)) for t in texts]
    assert out[0]["meta_info"]["id"] != out[1]["meta_info"]["id"]
    one = client.post(
        "/classify", json={"text": "bb"}
    ).json()  # one text: one object, as SGLang answers
    assert isinstance(one, dict) and one["embedding"] == [fake_score(ids_of("bb"))]
    by_ids = client.post("/classify", json={"input_ids": [[11, 12], [13]]}).json()
    assert [o["embedding"][0] for o in by_ids] == [
        fake_score([11, 12, FAKE_REWARD_ID]),
        fake_score([13, FAKE_REWARD_ID]),
    ]


# ---------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("route", "body", "status", "field"),
    [
        ("/pooling", {}, 400, "input"),
        ("/pooling", {"input": "a", "messages": []}, 400, "input"),
        ("/pooling", {"input": []}, 400, "input"),
        ("/pooling", {"input": 5}, 400, "input"),
        ("/pooling", {"input": [{"text": "a"}]}, 400, "input[0]"),
        ("/pooling", {"input": ["a", 3]}, 400, "input[1]"),
        ("/pooling", {"input": ["a", "\ud800"]}, 400, "input[1]"),
        ("/pooling", {"input": [1, 2.5]}, 400, "input[1]"),
        ("/pooling", {"input": [[1], []]}, 400, "input[1]"),
        ("/pooling", {"input": [[1], [True]]}, 400, "input[1][0]"),
        ("/pooling", {"input": [-1]}, 400, "input[0]"),
        ("/pooling", {"input": "a", "model": 3}, 400, "model"),
        ("/pooling", {"input": "a", "dimensions": 8}, 400, "dimensions"),
        ("/pooling", {"input": "a", "encoding_format": "base64"}, 400, "encoding_format"),
        ("/pooling", {"input": "a", "task": "embed"}, 400, "task"),
        ("/pooling", {"input": "a", "use_activation": "yes"}, 400, "use_activation"),
        ("/pooling", {"input": "a", "add_special_tokens": 1}, 400, "add_special_tokens"),
        ("/pooling", {"input": "a", "truncate_prompt_tokens": 0}, 400, "truncate_prompt_tokens"),
        ("/pooling", {"input": "a", "truncate_prompt_tokens": 41}, 400, "truncate_prompt_tokens"),
        ("/pooling", {"input": "a", "truncation_side": "right"}, 400, "truncation_side"),
        ("/pooling", {"messages": [{"role": "user"}]}, 400, "messages[0].content"),
        (
            "/pooling",
            {"messages": [{"role": "user", "content": "a"}], "add_special_tokens": True},
            400,
            "add_special_tokens",
        ),
        ("/pooling", {"input": ["a"] * 5}, 413, None),
        ("/lmdeploy/pooling", {}, 400, "input"),
        ("/lmdeploy/pooling", {"input": [[1], "a"]}, 400, "input[1]"),
        ("/lmdeploy/pooling", {"input": ["z" * 50]}, 413, "input[0]"),
        ("/classify", {"model": "m"}, 400, "text"),
        ("/classify", {"text": "a", "input_ids": [1]}, 400, "text"),
        ("/classify", {"input": ["a"]}, 400, "text"),
        ("/classify", {"text": [[1, 2]]}, 400, "text"),
        ("/classify", {"input_ids": ["a"]}, 400, "input_ids"),
        ("/classify", {"text": ["a"] * 5}, 413, None),
    ],
)
def test_bad_requests_answer_json_naming_the_field(
    served: Any, route: str, body: Any, status: int, field: str | None
) -> None:
    _, rm, client = served
    before = len(rm.scorer.seen)
    r = client.post(
        route, content=json.dumps(body)
    )  # (ASCII-escaped, so a lone surrogate gets through)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err.get("field") == field
    if status == 413:
        assert err["type"] == "limit_exceeded" and (
            "split" in err["message"] or "shorten" in err["message"]
        )
    assert len(rm.scorer.seen) == before  # nothing refused reaches the model


def test_classify_with_vllms_body_says_where_it_goes(served: Any) -> None:
    _, _, client = served
    assert (
        "POST /pooling"
        in client.post("/classify", json={"input": ["a"]}).json()["error"]["message"]
    )


def test_token_ids_outside_the_vocabulary_are_refused(tiny_rm: RewardModel) -> None:
    vocab = tiny_rm.vocab_size
    assert vocab is not None
    with RewardServer(tiny_rm) as server:
        r = httpx.post(server.url + "/pooling", json={"input": [[1, 5], [1, vocab]]})
    assert r.status_code == 400 and r.json()["error"]["field"] == "input[1][1]"
    assert f"0 to {vocab - 1}" in r.json()["error"]["message"]


def test_api_key_guards_the_runtime_routes() -> None:
    with (
        RewardServer(make_fake_rm(), api_key="k3y") as server,
        httpx.Client(base_url=server.url) as c,
    ):
        for route, body in (
            ("/pooling", {"input": "a"}),
            ("/lmdeploy/pooling", {"input": "a"}),
            ("/classify", {"text": "a"}),
        ):
            assert c.post(route, json=body).status_code == 401
            assert (
                c.post(route, json=body, headers={"Authorization": "Bearer k3y"}).status_code == 200
            )


def test_runtime_routes_share_batches_with_each_other_and_get_reward() -> None:
    rm = make_fake_rm(delay_s=0.02)
    texts = [f"question {i} answer {'a' * i}" for i in range(12)]
    with RewardServer(rm, wait_s=0.01) as server:
        got: list[Any] = [None] * len(texts)
        barrier = threading.Barrier(len(texts))

        def one(i: int) -> None:
            route, body, read = [
                ("/pooling", {"input": [texts[i]]}, lambda o: o["data"][0]["data"][-1][0]),
                ("/lmdeploy/pooling", {"input": texts[i]}, lambda o: o["data"][0]["data"]),
                ("/classify", {"text": texts[i]}, lambda o: o["embedding"][0]),
                ("/get_reward", {"query": [texts[i]]}, lambda o: o["rewards"][0]),
            ][i % 4]
            with httpx.Client(base_url=server.url, timeout=30) as c:
                barrier.wait()
                got[i] = read(c.post(route, json=body).json())

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(texts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        stats = httpx.get(server.url + "/health").json()
    assert got == [fake_score(ids_of(t)) for t in texts]
    assert (
        stats["requests"] == len(texts)
        and stats["merged_batches"] >= 1
        and stats["largest_batch_requests"] > 1
    )


# ---------------------------------------------------------------------- the tiny real model


def runtime_ids(rm: RewardModel, text: str) -> list[int]:
    """The text as vLLM, SGLang and LMDeploy tokenize it: the tokenizer's special tokens (bos)."""
    return rm.codec.tokenizer.encode(text, add_special_tokens=True)  # type: ignore[attr-defined]


def test_every_endpoint_scores_what_score_ids_scores(tiny_rm: RewardModel) -> None:
    tok = tiny_rm.codec.tokenizer  # type: ignore[attr-defined]
    texts = [
        # as POLAR's client writes it
        "What is 2+2?\n4<|reward|>What is 2+2?\nfour[UNUSED_TOKEN_130]",
        "What is 2+2?\n4<|reward|>What is 2+2?\nfive",  # the reward token left out: appended here
        "hello world",
    ]
    ids = [runtime_ids(tiny_rm, t) for t in texts]
    assert all(x[0] == tok.bos_token_id for x in ids) and ids[0][-1] == tiny_rm.reward_token_id
    expected = tiny_rm.score_ids(ids)  # appends the reward token where it is not last
    assert expected[1] != pytest.approx(
        tiny_rm.score_text([texts[1]])[0], abs=1e-4
    )  # the bos matters
    with RewardServer(tiny_rm) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        vllm = [d["data"][-1][0] for d in c.post("/pooling", json={"input": texts}).json()["data"]]
        lmdeploy = [
            d["data"] for d in c.post("/lmdeploy/pooling", json={"input": texts}).json()["data"]
        ]
        sglang = [
            o["embedding"][0]
            for o in c.post("/classify", json={"model": "m", "text": texts}).json()
        ]
        by_ids = [d["data"][-1][0] for d in c.post("/pooling", json={"input": ids}).json()["data"]]
        no_bos = c.post("/pooling", json={"input": texts[2], "add_special_tokens": False}).json()
    for got in (vllm, lmdeploy, sglang, by_ids):
        assert got == pytest.approx(expected, abs=1e-5)
    assert no_bos["data"][0]["data"][0][0] == pytest.approx(
        tiny_rm.score_text([texts[2]])[0], abs=1e-5
    )
