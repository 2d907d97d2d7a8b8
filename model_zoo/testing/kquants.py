"""Q4_K and Q6_K block encoders, for tiny k-quant GGUF files in tests.

The ``gguf`` package (0.19) decodes every ggml type but encodes only the legacy ones (Q4_0 ..
Q8_0); llama.cpp's k-quants come from its C ``llama-quantize``. These encoders write blocks in
ggml's k-quant layout (super-blocks of 256 values, as ``ggml-common.h`` declares them) with a
plain min/max fit, not llama.cpp's error-minimising search: the bytes are valid Q4_K / Q6_K
that any reader decodes, a little less accurate than llama.cpp's. Tests check them against the
``gguf`` package's decoder, an implementation that is not ours.
"""

from __future__ import annotations

import numpy as np

QK_K = 256


def _blocks(x: np.ndarray) -> np.ndarray:
    rows, cols = x.shape
    if cols % QK_K:
        raise ValueError(f"k-quants need rows of a multiple of {QK_K} values, got {cols}")
    return x.astype(np.float32).reshape(rows * cols // QK_K, QK_K)


def _f16_bytes(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float16).reshape(-1, 1).view(np.uint8)


def quantize_q6_k(x: np.ndarray) -> np.ndarray:
    """``x`` [rows, cols] -> Q6_K bytes [rows, cols / 256 * 210]: 16 sub-blocks of 16 values,
    6-bit quants (low nibbles in ``ql``, high pairs in ``qh``), int8 sub-scales, f16 scale."""
    rows = x.shape[0]
    blocks = _blocks(x)
    n = blocks.shape[0]
    sub = blocks.reshape(n, 16, 16)
    sub_scale = np.abs(sub).max(axis=2) / 31.0  # [n, 16]
    d = sub_scale.max(axis=1) / 127.0
    d = d.astype(np.float16).astype(np.float32)
    safe_d = np.where(d > 0, d, 1.0)
    scales = np.clip(np.round(sub_scale / safe_d[:, None]), -128, 127).astype(np.int8)
    step = d[:, None] * scales.astype(np.float32)
    safe_step = np.where(step > 0, step, 1.0)
    q = np.clip(np.round(sub / safe_step[:, :, None]), -32, 31).astype(np.int16) + 32  # 0..63
    q = q.reshape(n, QK_K).astype(np.uint8)
    # value p = h*128 + k*32 + l (h: half, k: 0..3, l: 0..31)
    q = q.reshape(n, 2, 4, 32)
    low, high = q & 0x0F, q >> 4
    ql = np.empty((n, 2, 64), dtype=np.uint8)
    ql[:, :, :32] = low[:, :, 0] | (low[:, :, 2] << 4)
    ql[:, :, 32:] = low[:, :, 1] | (low[:, :, 3] << 4)
    qh = high[:, :, 0] | (high[:, :, 1] << 2) | (high[:, :, 2] << 4) | (high[:, :, 3] << 6)
    out = np.concatenate(
        [ql.reshape(n, 128), qh.reshape(n, 64), scales.view(np.uint8), _f16_bytes(d)], axis=1
    )
    return out.reshape(rows, -1)


def quantize_q4_k(x: np.ndarray) -> np.ndarray:
    """``x`` [rows, cols] -> Q4_K bytes [rows, cols / 256 * 144]: 8 sub-blocks of 32 values,
    value = d * sc * q - dmin * m with 4-bit q and 6-bit sc / m packed into 12 bytes."""
    rows = x.shape[0]
    blocks = _blocks(x)
    n = blocks.shape[0]
    sub = blocks.reshape(n, 8, 32)
    lo = np.minimum(sub.min(axis=2), 0.0)  # offsets are subtracted, so they are >= 0
    span = (sub.max(axis=2) - lo) / 15.0
    d = (span.max(axis=1) / 63.0).astype(np.float16).astype(np.float32)
    dmin = ((-lo).max(axis=1) / 63.0).astype(np.float16).astype(np.float32)
    sc = np.clip(np.round(span / np.where(d > 0, d, 1.0)[:, None]), 0, 63).astype(np.uint8)
    m = np.clip(np.round(-lo / np.where(dmin > 0, dmin, 1.0)[:, None]), 0, 63).astype(np.uint8)
    step = d[:, None] * sc.astype(np.float32)
    offset = dmin[:, None] * m.astype(np.float32)
    q = np.round((sub + offset[:, :, None]) / np.where(step > 0, step, 1.0)[:, :, None])
    q = np.clip(q, 0, 15).astype(np.uint8)  # [n, 8, 32]
    qs = (q[:, 0::2] | (q[:, 1::2] << 4)).reshape(n, 128)
    packed = np.empty((n, 12), dtype=np.uint8)
    packed[:, 0:4] = (sc[:, 0:4] & 0x3F) | ((sc[:, 4:8] >> 4) << 6)
    packed[:, 4:8] = (m[:, 0:4] & 0x3F) | ((m[:, 4:8] >> 4) << 6)
    packed[:, 8:12] = (sc[:, 4:8] & 0x0F) | ((m[:, 4:8] & 0x0F) << 4)
    out = np.concatenate([_f16_bytes(d), _f16_bytes(dmin), packed, qs], axis=1)
    return out.reshape(rows, -1)
