"""LMDeploy on model-zoo's export: GPU only.

LMDeploy does not install without CUDA, so this test is skipped on the CI machine (no GPU) and
wherever LMDeploy is missing; it is the one engine check that cannot run there. On a GPU with
LMDeploy it loads a tiny InternLM2 export in float16 through ``load(backend="lmdeploy")``
(model-zoo's config classes registered, no Python file in the directory) and compares the
greedy tokens of a prompt with model-zoo's runner on the same GPU.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from model_zoo.testing.tiny import TinyDims, make_tiny


def _cuda() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(
    not _cuda() or importlib.util.find_spec("lmdeploy") is None,
    reason="GPU-only path: needs a CUDA GPU and LMDeploy installed",
)
def test_lmdeploy_generates_like_the_runner(tmp_path: Path) -> None:
    import model_zoo

    src = make_tiny(
        "internlm2",
        tmp_path / "ckpt",
        dtype="float16",
        dims=TinyDims(
            hidden_size=512,
            intermediate_size=1024,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
        ),
    )
    native = model_zoo.load(src, device="cuda", dtype="float16")
    engine = model_zoo.load(src, backend="lmdeploy")
    prompt = "The quick brown fox"
    expected = native.generate(prompt, do_sample=False, max_new_tokens=8, stop_token_ids=())
    assert engine.generate(prompt, do_sample=False, max_new_tokens=8, stop_token_ids=()) == expected
