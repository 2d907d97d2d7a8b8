"""The reward server with a reference-based model (POLAR): every route scores what the Python
API scores, OpenRLHF's labels arrive as the reference, and the wrong style of input is a 400
that says what to send.

The model is the tiny POLAR checkpoint (``tiny_polar_rm``, a ``PolarRewardModel``); the
expected numbers come from its own ``score_batch``/``rank``, whose recipe is tested against an
independent computation and against xtuner's client in test_reward_polar.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fixtures_reward import conv, make_fake_rm

from model_zoo.reward.model import RewardModel
from model_zoo.server.reward_server import RewardServer

ITEMS: list[dict[str, Any]] = [
    {"prompt": "What is 2+2?", "reference": "4", "output": "four"},
    {"prompt": "What is 2+2?", "reference": "4", "output": "5"},
    {
        "prompt": [{"role": "user", "content": "Capital of France?"}],
        "reference": [{"role": "assistant", "content": "Paris."}],
        "output": "Lyon.",
    },
]
TOL = 1e-5


@pytest.fixture(scope="module")
def polar_client(tiny_polar_rm: Any) -> Iterator[httpx.Client]:
    with (
        RewardServer(tiny_polar_rm) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield client


def test_score_rank_compare_equal_the_python_api(
    polar_client: httpx.Client, tiny_polar_rm: Any
) -> None:
    expected = tiny_polar_rm.score_batch(ITEMS)
    assert len(set(expected)) == len(expected)
    for key in ("inputs", "conversations"):  # "conversations" too: score_batch takes either kind
        got = polar_client.post("/v1/score", json={key: ITEMS}).json()["scores"]
        assert got == pytest.approx(expected, abs=TOL), key
    outputs = ["four", "5", "4"]
    ranked = polar_client.post(
        "/v1/rank", json={"prompt": "What is 2+2?", "reference": "4", "outputs": outputs}
    )
    body = ranked.json()
    assert body["ranks"] == tiny_polar_rm.rank("What is 2+2?", "4", outputs)
    assert body["order"] == tiny_polar_rm.order("What is 2+2?", "4", outputs)
    assert body["best"] == tiny_polar_rm.best_of("What is 2+2?", "4", outputs)
    pretrain = polar_client.post(
        "/v1/rank",
        json={"prompt": "Hi", "reference": "Hello", "outputs": ["Hey"], "wrapper": "pretrain"},
    ).json()["scores"]
    item = {"prompt": "Hi", "reference": "Hello", "output": "Hey", "wrapper": "pretrain"}
    assert pretrain == pytest.approx(tiny_polar_rm.score_batch([item]), abs=TOL)
    cmp = polar_client.post("/v1/compare", json={"a": ITEMS[0], "b": ITEMS[1]}).json()
    assert cmp["scores"] == pytest.approx(expected[:2], abs=TOL)
    assert cmp["a_better"] is tiny_polar_rm.compare(ITEMS[0], ITEMS[1])
    models = polar_client.get("/v1/models").json()["data"][0]
    assert models["scoring"] == "reference-based"


def test_the_text_polars_client_sends_scores_the_same_on_every_runtime_route(
    polar_client: httpx.Client, tiny_polar_rm: Any
) -> None:
    texts = tiny_polar_rm.render(
        ITEMS
    )  # what RewardModelClient.encode builds (tested in test_reward_polar)
    expected = tiny_polar_rm.score_batch(ITEMS)
    vllm = [
        d["data"][-1][0]
        for d in polar_client.post("/pooling", json={"input": texts}).json()["data"]
    ]
    lmdeploy = [
        d["data"]
        for d in polar_client.post("/lmdeploy/pooling", json={"input": texts}).json()["data"]
    ]
    sglang = [
        o["embedding"][0] for o in polar_client.post("/classify", json={"text": texts}).json()
    ]
    for got in (vllm, lmdeploy, sglang):
        assert got == pytest.approx(expected, abs=TOL)


def test_openrlhf_labels_are_the_reference(polar_client: httpx.Client, tiny_polar_rm: Any) -> None:
    """OpenRLHF posts query (prompt + response, as decoded), prompts and labels (the dataset's
    label)."""
    prompt = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    responses = ["four", "5"]
    queries = [
        "</s></s>" + prompt + responses[0] + "<|im_end|></s>",
        prompt + responses[1],
    ]  # pads at either end
    body = {
        "query": queries,
        "prompts": [prompt, prompt],
        "labels": ["4", [{"role": "assistant", "content": "4"}]],
    }
    got = polar_client.post("/get_reward", json=body).json()
    # the response is what follows the prompt; special-token text in it is dropped by POLAR's recipe
    items = [{"prompt": prompt, "reference": "4", "output": r} for r in responses]
    expected = tiny_polar_rm.score_batch(items)
    assert got["rewards"] == pytest.approx(expected, abs=TOL) and got["scores"] == got["rewards"]
    assert got["extra_logs"]["num_tokens"] == [len(x) for x in tiny_polar_rm.encode_inputs(items)]


@pytest.mark.parametrize(
    ("route", "body", "field", "says"),
    [
        ("/get_reward", {"query": ["What is 2+2? 4"]}, "prompts", "labels"),
        ("/get_reward", {"query": ["ab"], "prompts": ["a"]}, "labels", "reference"),
        (
            "/get_reward",
            {"query": ["ab", "ac"], "prompts": ["a"], "labels": ["b", "c"]},
            "prompts",
            "one entry per query",
        ),
        ("/get_reward", {"query": ["ab"], "prompts": [3], "labels": ["b"]}, "prompts[0]", "string"),
        (
            "/get_reward",
            {"query": ["ab"], "prompts": ["zz"], "labels": ["b"]},
            "query[0]",
            "does not contain",
        ),
        ("/get_reward", {"query": ["ab"], "prompts": ["a"], "labels": [5]}, "labels[0]", "string"),
        (
            "/v1/score",
            {"inputs": [{"prompt": "a", "output": "b"}]},
            "inputs[0].reference",
            "missing",
        ),
        (
            "/v1/score",
            {"conversations": [{"prompt": "a", "reference": 1, "output": "b"}]},
            "conversations[0].reference",
            "string",
        ),
        ("/v1/score", {"conversations": [conv("hi", "hello")]}, "conversations", '"inputs"'),
        ("/v1/rank", {"conversations": [conv("hi", "hello")]}, "conversations", '"inputs"'),
        ("/v1/rank", {"prompt": "a", "reference": "b"}, "outputs", "required"),
        (
            "/v1/rank",
            {"prompt": "a", "reference": "b", "outputs": ["x", 3]},
            "outputs[1]",
            "string",
        ),
        ("/v1/rank", {"prompt": 3, "reference": "b", "outputs": ["x"]}, "prompt", "string"),
        ("/v1/compare", {"a": ITEMS[0], "b": conv("hi")}, None, "conversation"),
        (
            "/v1/compare",
            {"a": ITEMS[0], "b": {"prompt": "a", "reference": "b"}},
            "b.output",
            "missing",
        ),
    ],
)
def test_wrong_inputs_say_what_to_send(
    polar_client: httpx.Client, route: str, body: Any, field: str | None, says: str
) -> None:
    r = polar_client.post(route, json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    if field is not None:
        assert err["field"] == field
    assert says in err["message"]


def test_a_conversation_model_refuses_reference_inputs() -> None:
    rm: RewardModel = make_fake_rm()
    with RewardServer(rm) as server, httpx.Client(base_url=server.url) as client:
        r = client.post("/v1/score", json={"inputs": ITEMS})
        assert r.status_code == 400 and "takes no reference answer" in r.json()["error"]["message"]
        r = client.post(
            "/v1/score", json={"conversations": ITEMS}
        )  # objects where messages lists belong
        assert r.status_code == 400 and r.json()["error"]["field"] == "conversations[0]"
        assert client.get("/v1/models").json()["data"][0]["scoring"] == "conversation"
