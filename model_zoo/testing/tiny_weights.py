"""Weights for the tiny checkpoints: the InternLM2 ``wqkv`` packing, deterministic random
tensors, and safetensors files sharded the way HuggingFace shards them.

numpy only (no torch), so a CI job can build fixtures without the runner stack. The
safetensors files are written by a small writer of the documented format (8-byte header
length, JSON header, raw little-endian data) because numpy has no bfloat16 and the published
checkpoints are bfloat16; ``safetensors.safe_open`` reads them back in the tests.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..store.atomic import write_atomic as _write_atomic

_T = TypeVar("_T")

# safetensors dtype code and bytes per element, by the names make_tiny accepts.
DTYPES: dict[str, tuple[str, int]] = {
    "float32": ("F32", 4),
    "float16": ("F16", 2),
    "bfloat16": ("BF16", 2),
}


# ------------------------------------------------------------------ wqkv packing


def pack_wqkv(
    q: np.ndarray,
    k: np.ndarray,
    v: np.ndarray,
    num_attention_heads: int,
    num_key_value_heads: int,
    head_dim: int,
) -> np.ndarray:
    """Pack separate q/k/v projections into InternLM2's grouped ``wqkv`` layout.

    ``q`` has ``num_attention_heads * head_dim`` rows, ``k`` and ``v``
    ``num_key_value_heads * head_dim`` each (any trailing shape: a weight ``[rows, hidden]`` or a
    bias ``[rows]``). The result holds, for each key/value head in turn, that group's
    ``num_attention_heads // num_key_value_heads`` query heads, then its key head, then its value
    head.
    """
    groups = num_attention_heads // num_key_value_heads
    rest = q.shape[1:]
    qg = q.reshape(num_key_value_heads, groups, head_dim, *rest)
    kg = k.reshape(num_key_value_heads, 1, head_dim, *rest)
    vg = v.reshape(num_key_value_heads, 1, head_dim, *rest)
    packed = np.concatenate([qg, kg, vg], axis=1)
    return packed.reshape((num_attention_heads + 2 * num_key_value_heads) * head_dim, *rest)


def unpack_wqkv(
    wqkv: _T, num_attention_heads: int, num_key_value_heads: int, head_dim: int
) -> tuple[_T, _T, _T]:
    """Inverse of :func:`pack_wqkv`: split a packed ``wqkv`` into (q, k, v).

    Uses only ``reshape`` and slicing, so it works on numpy arrays and torch tensors alike
    (torch callers may need ``.contiguous()`` on the results).
    """
    groups = num_attention_heads // num_key_value_heads
    rest = tuple(wqkv.shape[1:])  # type: ignore[attr-defined]
    blocks = wqkv.reshape(num_key_value_heads, groups + 2, head_dim, *rest)  # type: ignore[attr-defined]
    q = blocks[:, :groups].reshape(num_attention_heads * head_dim, *rest)
    k = blocks[:, groups].reshape(num_key_value_heads * head_dim, *rest)
    v = blocks[:, groups + 1].reshape(num_key_value_heads * head_dim, *rest)
    return q, k, v


# ------------------------------------------------------------------ random tensors


@dataclass(frozen=True)
class TensorPlan:
    """One tensor of a checkpoint: its state-dict name, shape and how to initialise it."""

    name: str
    shape: tuple[int, ...]
    init: str  # "norm": U(0.5, 1.5); else zero-mean with std 1 ("embedding"),
    # 1/sqrt(fan_in) ("linear") or 0.2 ("bias")

    def nbytes(self, dtype: str) -> int:
        return int(np.prod(self.shape)) * DTYPES[dtype][1]


def random_tensor(plan: TensorPlan, seed: int) -> np.ndarray:
    """The float32 values of one tensor: depends only on ``seed`` and the tensor's name.

    Seeding per name keeps a tensor's values the same whatever the shard count or order.
    """
    digest = hashlib.sha256(plan.name.encode()).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    rng = np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, *words]))
    # Uniform draws (5x faster than normal ones, which matters for bench-sized builds),
    # scaled so the standard deviation is what the init asks for.
    values = rng.random(size=plan.shape, dtype=np.float32)
    if plan.init == "norm":
        values += np.float32(0.5)
        return values
    std = {"embedding": 1.0, "linear": 1.0 / np.sqrt(plan.shape[-1]), "bias": 0.2}[plan.init]
    half_width = np.float32(np.sqrt(3.0) * std)
    values *= 2 * half_width
    values -= half_width
    return values


def encode(values: np.ndarray, dtype: str) -> np.ndarray:
    """float32 values -> little-endian array of the target dtype (bfloat16 as uint16 bits).

    Works in place for bfloat16: ``values`` must not be used afterwards.
    """
    values = np.ascontiguousarray(values, dtype="<f4")
    if dtype == "float32":
        return values
    if dtype == "float16":
        return values.astype("<f2")
    bits = values.view("<u4")  # round to nearest even: add 0x7FFF + the lowest kept bit
    carry = bits >> np.uint32(16)
    carry &= np.uint32(1)
    carry += np.uint32(0x7FFF)
    bits += carry
    bits >>= np.uint32(16)
    return bits.astype("<u2")


# ------------------------------------------------------------------ safetensors files


def write_atomic(path: Path, chunks: Iterable[bytes | memoryview]) -> None:
    """``store.atomic.write_atomic`` without fsync: test fixtures are rebuilt, not recovered."""
    _write_atomic(path, chunks, fsync=False)


def write_safetensors(path: Path, tensors: Mapping[str, np.ndarray], dtype: str) -> None:
    """Write already-encoded ``tensors`` as one safetensors file (``format: pt`` metadata)."""
    code = DTYPES[dtype][0]
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in sorted(tensors):
        size = tensors[name].nbytes
        header[name] = {
            "dtype": code,
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    chunks: list[bytes | memoryview] = [struct.pack("<Q", len(raw)), raw]
    chunks += [tensors[name].data.cast("B") for name in sorted(tensors)]  # the arrays' bytes
    write_atomic(path, chunks)


def split_into_shards(
    plans: Sequence[TensorPlan], shards: int, dtype: str
) -> list[list[TensorPlan]]:
    """Cut the ordered tensor list into ``shards`` consecutive, non-empty runs of similar size."""
    total = sum(p.nbytes(dtype) for p in plans)
    out: list[list[TensorPlan]] = [[] for _ in range(shards)]
    done = 0
    index = 0
    for i, plan in enumerate(plans):
        remaining_plans = len(plans) - i
        remaining_shards = shards - index
        # move on once this shard has its share, or when each later shard needs one tensor
        if (
            out[index]
            and index < shards - 1
            and (done >= total * (index + 1) / shards or remaining_plans < remaining_shards)
        ):
            index += 1
        out[index].append(plan)
        done += plan.nbytes(dtype)
    return out


def shard_name(k: int, n: int) -> str:
    return f"model-{k:05d}-of-{n:05d}.safetensors"


def write_weights(
    out_dir: Path, plans: Sequence[TensorPlan], *, seed: int, shards: int, dtype: str
) -> list[str]:
    """Write the tensors as HuggingFace does: ``model.safetensors`` for one shard, else
    ``model-0000k-of-0000n.safetensors`` plus ``model.safetensors.index.json``. Returns the
    file names written. One shard's tensors are in memory at a time."""
    if shards == 1:
        write_safetensors(out_dir / "model.safetensors", _encoded(plans, seed, dtype), dtype)
        return ["model.safetensors"]
    weight_map: dict[str, str] = {}
    names: list[str] = []
    for k, group in enumerate(split_into_shards(plans, shards, dtype), start=1):
        name = shard_name(k, shards)
        write_safetensors(out_dir / name, _encoded(group, seed, dtype), dtype)
        weight_map.update({p.name: name for p in group})
        names.append(name)
    index = {
        "metadata": {"total_size": sum(p.nbytes(dtype) for p in plans)},
        "weight_map": dict(sorted(weight_map.items())),
    }
    text = json.dumps(index, indent=2, sort_keys=True) + "\n"
    write_atomic(out_dir / "model.safetensors.index.json", [text.encode()])
    return [*names, "model.safetensors.index.json"]


def _encoded(plans: Iterable[TensorPlan], seed: int, dtype: str) -> dict[str, np.ndarray]:
    return {p.name: encode(random_tensor(p, seed), dtype) for p in plans}
