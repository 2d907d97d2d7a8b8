"""Defects found by reviewing reward scoring and running from the user's side, each pinned by a test."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import httpx
import pytest
from fixtures_reward import conv, make_fake_rm

from model_zoo.cli.main import main
from model_zoo.errors import InvalidConversationError, UsageError
from model_zoo.reward.model import RewardModel
from model_zoo.server.protocol import ServerLimits
from model_zoo.server.reward_server import RewardServer

OPTS = ["--device", "cpu", "--dtype", "float32"]
LONE_SURROGATE = "caf\ud800"  # what json.loads gives for the escape "\ud800": not encodable as UTF-8


# ---------------------------------------------------------------------- text that is not valid Unicode


def test_api_refuses_a_lone_surrogate_naming_the_field(tiny_rm: RewardModel) -> None:
    with pytest.raises(InvalidConversationError) as info:
        tiny_rm.score([{"role": "user", "content": "hi"}, {"role": "assistant", "content": LONE_SURROGATE}])
    assert info.value.fields["field"] == "conversation[1].content"
    with pytest.raises(InvalidConversationError) as info:
        tiny_rm.score_text(["ok", LONE_SURROGATE])
    assert info.value.fields["field"] == "texts[1]"


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/v1/score", {"conversations": [[{"role": "user", "content": LONE_SURROGATE}]]}, "conversations[0][0].content"),
        ("/v1/score", {"texts": ["a", LONE_SURROGATE]}, "texts[1]"),
        ("/get_reward", {"query": [LONE_SURROGATE]}, "query[0]"),
        ("/v1/compare", {"a": [{"role": "user", "content": "a"}], "b": [{"role": "\ud800", "content": "b"}]},
         "b[0].role"),
    ],
)
def test_server_answers_400_for_a_lone_surrogate(route: str, body: object, field: str) -> None:
    raw = json.dumps(body)  # ensure_ascii keeps the surrogate as the escape \ud800, as a client would send it
    with RewardServer(make_fake_rm(), limits=ServerLimits()) as server:
        r = httpx.post(server.url + route, content=raw, timeout=10)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == field


def test_score_cli_refuses_a_lone_surrogate_before_loading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('[{"role": "user", "content": "\\ud800"}]\n')
    assert main(["score", str(tmp_path / "no-such-model"), "--input", str(src)]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert f"{src}:1[0].content" in err and "Traceback" not in err
