"""The tests' k-quant encoders against the gguf package's decoders (an implementation not ours),
and the file-name rule for quantization levels."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from model_zoo.ggufnames import canonical, level_of, levels, pick
from model_zoo.testing.kquants import quantize_q4_k, quantize_q6_k


@pytest.mark.parametrize(
    ("encode", "qtype", "bound"),
    [
        (quantize_q4_k, gguf.GGMLQuantizationType.Q4_K, 0.12),
        (quantize_q6_k, gguf.GGMLQuantizationType.Q6_K, 0.03),
    ],
)
def test_blocks_decode_to_the_values_within_the_levels_error(encode, qtype, bound: float) -> None:
    x = np.random.default_rng(1).standard_normal((6, 512)).astype(np.float32) * 0.05
    data = encode(x)
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    assert data.shape == (6, 512 // block * size) and data.dtype == np.uint8
    y = gguf.quants.dequantize(data, qtype)
    assert y.shape == x.shape
    assert np.linalg.norm(y - x) / np.linalg.norm(x) < bound  # a wrong layout gives ~1


def test_levels_in_file_names() -> None:
    assert level_of("internlm2_5-7b-chat-q4_k_m.gguf") == "q4_k_m"
    assert level_of("internlm2_5-7b-chat-fp16.gguf") == "fp16"
    assert level_of("Meta-Llama.Q8_0.gguf") == "q8_0"
    assert level_of("model-q4_k_m-00001-of-00002.gguf") == "q4_k_m"
    assert level_of("internlm3-8b-instruct.gguf") is None and level_of("README.md") is None
    assert canonical("FP16") == canonical("f16") == "f16"
    files = ["a-q8_0.gguf", "a-fp16.gguf", "a-q4_k_m.gguf", "mmproj-a-f16.gguf", "README.md"]
    assert pick(files, None) == pick(files, "latest") == "a-q4_k_m.gguf"
    assert pick(files, "F16") == "a-fp16.gguf" and pick(files, "q2_k") is None
    assert levels(files) == {
        "q8_0": "a-q8_0.gguf",
        "fp16": "a-fp16.gguf",
        "q4_k_m": "a-q4_k_m.gguf",
    }
