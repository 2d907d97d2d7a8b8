"""POLAR's own ``RewardModelClient`` against model-zoo, unchanged, for each of its server types.

The client is InternLM's: ``xtuner/utils/rm_utils.py`` of xtuner 0.2.0 from PyPI, installed at
test time into a virtualenv of its own (cached like the hub clients' venvs, see
fixtures_clients) and run by polar_client_harness.py behind the loopback fence. It builds each
text itself (``prompt\\nreference<|reward|>prompt\\noutput[UNUSED_TOKEN_130]``) and posts it to
``/pooling`` (vLLM: reads ``data[i].data[-1][0]``; LMDeploy: reads ``data[i].data``) or
``/classify`` (SGLang: reads ``embedding[0]``). The scores it gets back must equal
``RewardModel.score_ids`` of the same texts tokenized as those runtimes tokenize them (bos first),
on the tiny InternLM2-Reward checkpoint served here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_polar_client import polar_client_python

from model_zoo.reward.model import RewardModel
from model_zoo.server.reward_server import RewardServer

HARNESS = Path(__file__).resolve().parent / "polar_client_harness.py"


DATA: list[dict[str, Any]] = [
    {"prompt": "What is 2+2?", "reference": "4", "output": "4"},
    {"prompt": "What is 2+2?", "reference": "4", "output": "five"},
    {  # messages: the client joins their contents with "\n" and drops the roles
        "prompt": [{"role": "user", "content": "Capital of France?"}],
        "reference": [{"role": "assistant", "content": "Paris."}],
        "output": [{"role": "assistant", "content": "Lyon."}],
    },
    {"prompt": "Say hi.", "reference": "hi", "output": "hello", "wrapper": "pretrain"},
]


def polar_text(item: dict[str, Any]) -> str:
    """The text POLAR's recipe scores (issue 14), written here to check what the client sends."""

    def plain(x: Any) -> str:
        return "\n".join(m["content"] for m in x) if isinstance(x, list) else x

    p, r, o = plain(item["prompt"]), plain(item["reference"]), plain(item["output"])
    sep = "" if item.get("wrapper") == "pretrain" else "\n"
    return f"{p}{sep}{r}<|reward|>{p}{sep}{o}[UNUSED_TOKEN_130]"


def stand_in_tokenizer(checkpoint: Path, parent: Path) -> Path:
    """What the client loads as its model ``path``: the checkpoint's SentencePiece model under
    transformers' own Llama tokenizer class.

    Not the checkpoint directory itself: like the published InternLM2 checkpoints, its
    tokenizer_config.json names ``InternLM2Tokenizer`` through ``auto_map``, code only the hub
    has, and the client asks ``AutoTokenizer`` for it with ``trust_remote_code=True``. The client
    uses the tokenizer only to cut over-long parts and decode them back; the texts it sends come
    back from the harness and are checked against POLAR's recipe. The directory is named like a
    published model, since the client sends its last path part as SGLang's ``model``.
    """
    path = parent / "POLAR-1_8B"
    path.mkdir()
    shutil.copy(checkpoint / "tokenizer.model", path / "tokenizer.model")
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "legacy": False,
    }
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def client_tokenizer(tiny_reward_fp32: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stand_in_tokenizer(tiny_reward_fp32, tmp_path_factory.mktemp("polar-client"))


@pytest.fixture(scope="module")
def servers(tiny_rm: RewardModel) -> Iterator[dict[str, RewardServer]]:
    """The tiny reward model behind two servers: /pooling in vLLM's shape, and in LMDeploy's."""
    with (
        RewardServer(tiny_rm) as vllm,
        RewardServer(tiny_rm, pooling_format="lmdeploy") as lmdeploy,
    ):
        yield {"vllm": vllm, "lmdeploy": lmdeploy}


def client_runs(vllm_port: int, lmdeploy_port: int) -> dict[str, dict[str, str]]:
    """Each of the client's server types against the servers (one per /pooling format)."""
    return {
        "vllm": {"server_type": "vllm", "server_address": f"127.0.0.1:{vllm_port}"},
        "sglang": {"server_type": "sglang", "server_address": f"127.0.0.1:{vllm_port}"},
        # LMDeploy's answer at its own path on the same server, or at /pooling on a server started
        # with --pooling-format lmdeploy (the two runtimes' clients send the same request)
        "lmdeploy (prefixed path)": {
            "server_type": "lmdeploy",
            "server_address": f"127.0.0.1:{vllm_port}/lmdeploy",
        },
        "lmdeploy (--pooling-format)": {
            "server_type": "lmdeploy",
            "server_address": f"127.0.0.1:{lmdeploy_port}",
        },
    }


def run_polar_client(tokenizer: Path, runs: list[dict[str, str]], tmp_path: Path) -> dict[str, Any]:
    home = tmp_path / "client-home"
    home.mkdir(exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR")},
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "HF_HOME": str(home / "hf"),
        "HF_HUB_OFFLINE": "1",
        "NO_PROXY": "*",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    args = {"tokenizer": str(tokenizer), "data": DATA, "runs": runs}
    done = subprocess.run(
        [str(polar_client_python()), str(HARNESS), json.dumps(args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("HARNESS-RESULT ")]
    assert done.returncode == 0 and lines, (
        f"harness failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
    result: dict[str, Any] = json.loads(lines[-1][len("HARNESS-RESULT ") :])
    assert result["ok"], result.get("trace")
    assert result["blocked"] == []
    assert result["module"].endswith(os.path.join("xtuner", "utils", "rm_utils.py"))
    return result


@pytest.mark.slow
def test_polar_client_works_unchanged_for_each_server_type(
    servers: dict[str, RewardServer], client_tokenizer: Path, tiny_rm: RewardModel, tmp_path: Path
) -> None:
    vllm, lmdeploy = servers["vllm"], servers["lmdeploy"]
    runs = {
        **client_runs(vllm.port, lmdeploy.port),
        # control: the vLLM reading of LMDeploy's answer fails, so the shapes above are what made it
        # work
        "vllm at an LMDeploy-shaped /pooling": {
            "server_type": "vllm",
            "server_address": f"127.0.0.1:{lmdeploy.port}",
        },
    }
    result = run_polar_client(client_tokenizer, list(runs.values()), tmp_path)
    got = dict(zip(runs, result["runs"], strict=True))

    texts = [polar_text(item) for item in DATA]
    tokenizer = tiny_rm.codec.tokenizer  # type: ignore[attr-defined]
    ids = [
        tokenizer.encode(t, add_special_tokens=True) for t in texts
    ]  # bos first, as the runtimes do
    assert all(x[-1] == tiny_rm.reward_token_id for x in ids)  # the client wrote the reward token
    expected = tiny_rm.score_ids(ids)
    assert len(set(expected)) == len(expected)  # distinct scores: a mix-up between items would show
    for name in ("vllm", "sglang", "lmdeploy (prefixed path)", "lmdeploy (--pooling-format)"):
        run = got[name]
        assert run["texts"] == texts, name
        assert "Error requesting reward" not in run["printed"], (name, run["printed"])
        assert run["scores"] == pytest.approx(expected, abs=1e-5), name
    control = got["vllm at an LMDeploy-shaped /pooling"]
    assert control["scores"] is None and "Error requesting reward" in control["printed"]


@pytest.mark.slow
def test_polar_client_against_a_polar_model_scores_what_score_batch_scores(
    tiny_polar_rm: Any, tiny_polar_fp32: Path, tmp_path: Path
) -> None:
    """End to end on a POLAR checkpoint: the client's texts, through each server type, score what
    model-zoo's own ``PolarRewardModel.score_batch`` scores for the same inputs."""
    tokenizer = stand_in_tokenizer(tiny_polar_fp32, tmp_path)
    with (
        RewardServer(tiny_polar_rm) as vllm,
        RewardServer(tiny_polar_rm, pooling_format="lmdeploy") as lmdeploy,
    ):
        runs = client_runs(vllm.port, lmdeploy.port)
        result = run_polar_client(tokenizer, list(runs.values()), tmp_path)
    expected = tiny_polar_rm.score_batch(DATA)
    assert len(set(expected)) == len(expected)
    for name, run in zip(runs, result["runs"], strict=True):
        assert run["texts"] == tiny_polar_rm.render(DATA), name
        assert run["scores"] == pytest.approx(expected, abs=1e-5), (name, run["printed"])
