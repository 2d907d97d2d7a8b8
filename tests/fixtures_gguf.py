"""Session-cached tiny GGUF files, written from the tiny HuggingFace checkpoints.

    tiny_gguf   factory ``(arch, outtype="f32", *, kquant_dims=False) -> (hf_dir, gguf_path)``

``kquant_dims`` builds the checkpoint with rows of 256 values (hidden 256, intermediate 512),
which k-quants need. Files are read-only for tests; copy one before damaging it.
Test modules import the fixture (``from fixtures_gguf import tiny_gguf``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from model_zoo.testing.tiny import TinyDims, make_tiny
from model_zoo.testing.tiny_gguf import write_gguf

GGUFFactory = Callable[..., tuple[Path, Path]]

KQUANT_DIMS = {
    "internlm2": TinyDims(hidden_size=256, intermediate_size=512),
    "internlm3": TinyDims(hidden_size=256, intermediate_size=512, head_dim=64),
}


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> GGUFFactory:
    checkpoints: dict[tuple[str, bool], Path] = {}
    files: dict[tuple[str, str, bool], Path] = {}

    def build(arch: str, outtype: str = "f32", *, kquant_dims: bool = False) -> tuple[Path, Path]:
        key = (arch, kquant_dims)
        if key not in checkpoints:
            out = tmp_path_factory.mktemp(f"gguf-hf-{arch}{'-k' if kquant_dims else ''}")
            dims = KQUANT_DIMS[arch] if kquant_dims else None
            checkpoints[key] = make_tiny(arch, out / f"{arch}-tiny", dims=dims)
        hf_dir = checkpoints[key]
        fkey = (arch, outtype, kquant_dims)
        if fkey not in files:
            out = tmp_path_factory.mktemp(f"gguf-{arch}-{outtype}")
            files[fkey] = write_gguf(hf_dir, out / f"{arch}-tiny-{outtype}.gguf", outtype)
        return hf_dir, files[fkey]

    return build
