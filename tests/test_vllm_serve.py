"""``model-zoo serve NAME --backend vllm``: vLLM's own OpenAI-compatible server, in its own
processes.

``model-zoo serve`` (this project's environment) exports the checkpoint and starts
``vllm serve`` with the vLLM test venv's interpreter (``--python``). vLLM runs its API server
and engine core as separate processes, so model-zoo's config classes must reach them through
the plugin entry point. Every Python process started here imports a ``sitecustomize`` that
fences the network to 127.0.0.0/8 (``client_harness.fence``), and vLLM's usage statistics are
off. Checked over HTTP on 127.0.0.1:

* the chat template (with the default system prompt) tokenizes as ``runner.chat_ids``, and a
  greedy chat reply has the runner's tokens (and text, unless the random model emits stray
  UTF-8 fragments, which streaming decoders hold back);
* the reward model's ``/pooling`` score equals ``load_reward``'s, for ``input`` texts (the
  tokenizer appends the reward token) and for ``messages`` (the template does).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures_vllm import vllm_env, vllm_python  # noqa: F401 - fixture

from model_zoo.testing.tiny import TinyDims, make_tiny

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
_DIMS = TinyDims(
    hidden_size=128,
    intermediate_size=192,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
)
CONVERSATIONS = [
    [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
    [
        {"role": "user", "content": "写一首关于海的诗"},
        {"role": "assistant", "content": "海风轻拂，月光洒落。"},
    ],
]
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with _DIRECT.open(request, timeout=300) as response:
        return json.loads(response.read())


class Served:
    def __init__(self, url: str, source: Path, log: Path) -> None:
        self.url, self.source, self.log = url, source, log


def _serve(arch: str, tmp: Path, python: Path, seed: int) -> Iterator[Served]:
    src = make_tiny(arch, tmp / "ckpt", dtype="float32", dims=_DIMS, seed=seed)
    fence = tmp / "fence"
    fence.mkdir()
    (fence / "sitecustomize.py").write_text("from client_harness import fence\nfence({})\n")
    port = _free_port()
    env = vllm_env(
        tmp / "home",
        {
            "MODEL_ZOO_HOME": str(tmp / "store"),
            "PYTHONPATH": f"{fence}:{HERE}",
            "VLLM_LOGGING_LEVEL": "WARNING",
        },
    )
    log = tmp / "serve.log"
    cmd = [
        sys.executable,
        "-m",
        "model_zoo.cli.main",
        "serve",
        str(src),
        "--backend",
        "vllm",
        "--python",
        str(python),
        "--port",
        str(port),
        "--ready-timeout",
        "600",
        "--",
        "--enforce-eager",
        "--dtype",
        "float32",
        "--max-num-seqs",
        "4",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            if proc.poll() is not None:
                pytest.fail(f"model-zoo serve exited {proc.returncode}:\n{log.read_text()[-6000:]}")
            if "is served at" in log.read_text(errors="replace"):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"vLLM did not come up:\n{log.read_text()[-6000:]}")
        yield Served(url, src, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "blocked by the test fence" not in log.read_text(errors="replace")
    # stopping model-zoo serve (SIGTERM) stopped vLLM too: nothing answers on the port any more
    for _ in range(120):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) != 0:
                break
        time.sleep(0.5)
    else:
        pytest.fail(f"vLLM still answers on port {port} after model-zoo serve was stopped")


@pytest.fixture(scope="module")
def lm_server(tmp_path_factory: pytest.TempPathFactory, vllm_python: Path) -> Iterator[Served]:  # noqa: F811
    yield from _serve("internlm2", tmp_path_factory.mktemp("serve-lm"), vllm_python, seed=11)


@pytest.fixture(scope="module")
def reward_server(tmp_path_factory: pytest.TempPathFactory, vllm_python: Path) -> Iterator[Served]:  # noqa: F811
    yield from _serve("internlm2-reward", tmp_path_factory.mktemp("serve-rm"), vllm_python, seed=12)


def test_chat_prompt_and_greedy_reply_equal_the_runner(lm_server: Served) -> None:
    import model_zoo

    runner = model_zoo.load(lm_server.source, device="cpu", dtype="float32")
    messages = [{"role": "user", "content": "Hello! 你好"}]
    tokens = _post(
        lm_server.url + "/tokenize", {"messages": messages, "add_generation_prompt": True}
    )["tokens"]
    assert tokens == runner.chat_ids(
        messages
    )  # template and default system prompt, through the server
    reply = _post(
        lm_server.url + "/v1/chat/completions",
        {
            "model": "ckpt",
            "messages": messages,
            "max_tokens": 8,
            "temperature": 0,
            "repetition_penalty": 1.0,
            "top_p": 1.0,
            "top_k": -1,
            "ignore_eos": True,
            "logprobs": True,
            "return_tokens_as_token_ids": True,
        },
    )
    choice = reply["choices"][0]
    ids = [int(t["token"].removeprefix("token_id:")) for t in choice["logprobs"]["content"]]
    expected = runner.generate_ids([tokens], do_sample=False, max_new_tokens=8, stop_token_ids=())[
        0
    ].ids
    assert ids == expected
    text = runner.tokenizer.decode(expected, skip_special_tokens=True)
    if (
        "\ufffd" not in text
    ):  # a random model's stray UTF-8 fragments stream differently; real text is equal
        assert choice["message"]["content"] == text


def test_reward_pooling_equals_load_reward(reward_server: Served) -> None:
    from model_zoo.reward.api import load_reward

    with load_reward(reward_server.source, device="cpu", dtype="float32") as rm:
        expected = rm.score_batch(CONVERSATIONS)
        texts = [rm.codec.render(c) for c in CONVERSATIONS]
    answer = _post(reward_server.url + "/pooling", {"model": "ckpt", "input": texts})
    scores = [
        item["data"][-1][0] for item in answer["data"]
    ]  # a score per token; the last is the reward
    assert scores == pytest.approx(expected, abs=1e-4)
    for conversation, score in zip(CONVERSATIONS, expected, strict=True):
        answer = _post(reward_server.url + "/pooling", {"model": "ckpt", "messages": conversation})
        assert answer["data"][0]["data"][-1][0] == pytest.approx(score, abs=1e-4)
