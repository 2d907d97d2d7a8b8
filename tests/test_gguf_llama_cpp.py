"""The independent check of the GGUF reader: llama.cpp itself, on the same F32 file.

Writer and reader of the tiny GGUF files are both model-zoo's, so this asks llama.cpp (through
llama-cpp-python) for its logits, greedy tokens and tokenization and compares them with the
native runner's. llama-cpp-python has only a source distribution on PyPI: installing it compiles
llama.cpp, which took 50 minutes (2998 s) on this project's 2-core machine, more than CI's whole
budget. So it is built into ``.venv-clients/`` (as the hub clients are, ``fixtures_clients``)
only when ``MODEL_ZOO_LLAMA_CPP=1`` asks for it, and reused whenever that virtualenv is there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_clients import build_venv, venv_root
from fixtures_gguf import tiny_gguf  # noqa: F401  (fixture)

from model_zoo.runner.api import load

# llama.cpp in its own venv, a process per check (and a 50-minute compile the first time).
pytestmark = pytest.mark.slow

PIN = "llama-cpp-python==0.3.36"
HARNESS = Path(__file__).resolve().parent / "llama_cpp_harness.py"


def build_llama_cpp_python(venv: Path) -> Path:
    """llama-cpp-python's interpreter, compiled into ``venv`` (under a file lock) when missing."""
    return build_venv(venv.name, [[PIN]], marker=PIN, lock_name=".llama-cpp.lock", timeout=3 * 3600)


@pytest.fixture(scope="session")
def llama_cpp_python() -> Path:
    venv = venv_root() / PIN.replace("==", "-")
    ready = venv / ".ready"
    if (
        not (ready.is_file() and ready.read_text() == PIN)
        and os.environ.get("MODEL_ZOO_LLAMA_CPP") != "1"
    ):
        pytest.skip(
            "llama-cpp-python compiles llama.cpp on install (50 minutes on 2 cores); "
            "MODEL_ZOO_LLAMA_CPP=1 builds it into .venv-clients/ once"
        )
    return build_llama_cpp_python(venv)


@pytest.mark.parametrize("arch", ["internlm2", "internlm3"])
def test_llama_cpp_agrees_with_the_native_reader(
    llama_cpp_python: Path,
    tiny_gguf,  # noqa: F811
    arch: str,
) -> None:
    _, path = tiny_gguf(arch, "f32")
    runner = load(path, device="cpu", dtype="float32")
    texts = [
        "Hello world, this is a test.",
        "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n",
        "  spaces  and\ttabs\n",
        "emoji 🤖 ✓",
    ]
    prompt = runner.tokenizer.encode("The quick brown fox jumps over")
    args = {"model": str(path), "prompt_ids": prompt, "new_tokens": 8, "texts": texts}
    done = subprocess.run(
        [str(llama_cpp_python), str(HARNESS), json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("HARNESS-RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-4000:]
    theirs = json.loads(lines[-1][len("HARNESS-RESULT ") :])
    with torch.no_grad():
        ours = runner.model(torch.tensor([prompt])).logits[0].numpy()
    # llama.cpp keeps its KV cache in F16 by default: ~1e-3 apart (a layout error is ~1)
    np.testing.assert_allclose(np.array(theirs["logits"]), ours, atol=5e-3, rtol=0)
    greedy = runner.generate_ids([prompt], max_new_tokens=8, do_sample=False, stop_token_ids=[])[
        0
    ].ids
    assert theirs["greedy"] == greedy
    assert theirs["tokens"] == [runner.tokenizer.encode(t) for t in texts]


def test_backend_llama_cpp_chats_as_the_native_runner(llama_cpp_python: Path, tiny_gguf) -> None:  # noqa: F811
    """``load(path, backend="llama.cpp")`` in this interpreter, llama_cpp taken from its own
    venv."""
    hf_dir, path = tiny_gguf("internlm2", "f32")
    site = next((llama_cpp_python.parent.parent / "lib").glob("python*/site-packages"))
    script = (
        "import sys; sys.path.append(sys.argv[3])\n"
        "from model_zoo.runner.api import load\n"
        "kw = dict(max_new_tokens=6, do_sample=False, system='')\n"
        "r = load(sys.argv[1], backend='llama.cpp')\n"
        "ref = load(sys.argv[2], device='cpu', dtype='float32')\n"
        "print('SAME', r.chat('Hello there', **kw) == ref.chat('Hello there', **kw),\n"
        "      r.generate('The quick brown', max_new_tokens=5, do_sample=False)\n"
        "      == ref.generate('The quick brown', max_new_tokens=5, do_sample=False), flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), str(hf_dir), str(site)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "SAME True True" in done.stdout, done.stdout + done.stderr[-3000:]
