"""Structural checks of a checkpoint without torch: safetensors headers, the shard index, and
the tensor shapes config.json implies.

These catch a truncated, spliced or damaged checkpoint even when no hash is known: every
tensor's byte range must lie inside its file, the ranges must tile the data section exactly
(no gaps, no overlaps, nothing after the last tensor), the index must name shards that exist and
tensors those shards hold, and embeddings / heads / layers must agree with config.json.
Only headers are read (a few KB per shard), never the tensor data.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# bits per element of every dtype the safetensors format defines
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}
FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})
MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file."""

    path: str  # relative to the checkpoint directory
    kind: str  # header | layout | index | shape | missing | hash | size | zip
    detail: str

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}"


@dataclass(frozen=True)
class HeaderEntry:
    """One tensor's entry in a safetensors header: ``begin``/``end`` are offsets into the data
    section that follows the header, as the file states them."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


class HeaderError(ValueError):
    pass


def read_header(path: Path) -> tuple[dict[str, HeaderEntry], int]:
    """Parse and check one safetensors file's header; returns tensors and the file size.

    Raises HeaderError describing the first structural problem found.
    """
    parsed = read_safetensors(path)
    return parsed.tensors, parsed.size


@dataclass(frozen=True)
class SafetensorsHeader:
    """One file's checked header: its tensors (offsets relative to the data section), its size,
    and where the data section starts (``8 + header length``), for readers that seek."""

    tensors: dict[str, HeaderEntry]
    size: int
    data_start: int


def read_safetensors(path: Path) -> SafetensorsHeader:
    """The one safetensors header reader (store checks and the runner's loader): every dtype of
    the format, offsets that tile the data section exactly. Raises HeaderError."""
    size = path.stat().st_size
    if size < 8:
        raise HeaderError(f"file is {size} bytes, too short for a safetensors header")
    with path.open("rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > MAX_HEADER:
            raise HeaderError(f"header length {n} is implausible (damaged file)")
        if 8 + n > size:
            raise HeaderError(
                f"header length {n} runs past the end of the {size}-byte file (truncated)"
            )
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HeaderError(f"header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise HeaderError("header is not a JSON object")
    tensors: dict[str, HeaderEntry] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            if meta is not None and not (
                isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())
            ):
                raise HeaderError("__metadata__ must map strings to strings")
            continue
        tensors[name] = _tensor(name, meta)
    _check_tiling(tensors, size - 8 - n)
    return SafetensorsHeader(tensors, size, 8 + n)


def _tensor(name: str, meta: Any) -> HeaderEntry:
    if not isinstance(meta, dict):
        raise HeaderError(f"tensor {name!r}: entry is not an object")
    dtype = meta.get("dtype")
    shape = meta.get("shape")
    offsets = meta.get("data_offsets")
    if dtype not in DTYPE_BITS:
        raise HeaderError(f"tensor {name!r}: unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise HeaderError(
            f"tensor {name!r}: shape {shape!r} is not a list of non-negative integers"
        )
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
    ):
        raise HeaderError(
            f"tensor {name!r}: data_offsets {offsets!r} is not two non-negative integers"
        )
    begin, end = offsets
    if end < begin:
        raise HeaderError(f"tensor {name!r}: data_offsets end {end} before begin {begin}")
    count = 1
    for d in shape:
        count *= d
    bits = count * DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 != end - begin:
        raise HeaderError(
            f"tensor {name!r}: {dtype} {shape} needs {bits / 8:g} bytes "
            f"but data_offsets give {end - begin}"
        )
    return HeaderEntry(dtype, tuple(shape), begin, end)


def _check_tiling(tensors: dict[str, HeaderEntry], data_len: int) -> None:
    pos = 0
    for name, t in sorted(tensors.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if t.begin < pos:
            raise HeaderError(
                f"tensor {name!r} overlaps the previous tensor "
                f"(starts at {t.begin}, previous ends at {pos})"
            )
        if t.begin > pos:
            raise HeaderError(f"gap of {t.begin - pos} bytes before tensor {name!r}")
        if t.end > data_len:
            raise HeaderError(
                f"tensor {name!r} ends at byte {t.end} of the data section, but the file holds "
                f"only {data_len} data bytes (truncated)"
            )
        pos = t.end
    if pos != data_len:
        raise HeaderError(f"{data_len - pos} unexpected bytes after the last tensor")


# ---------------------------------------------------------------- whole checkpoint

_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def check_checkpoint(root: Path, files: Iterable[str] | None = None) -> list[Problem]:
    """Every structural problem of the checkpoint in ``root`` (``files``: relative paths
    present)."""
    root = Path(root)
    rels = (
        sorted(files)
        if files is not None
        else sorted(
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and ".model-zoo" not in p.parts
        )
    )
    problems: list[Problem] = []
    headers: dict[str, dict[str, HeaderEntry]] = {}
    for rel in rels:
        path = root / rel
        if rel.endswith(".safetensors"):
            if not path.is_file():
                continue  # missing files are reported by the caller
            try:
                headers[rel], _ = read_header(path)
            except (HeaderError, OSError) as exc:
                problems.append(Problem(rel, "header", str(exc)))
        elif rel.endswith((".bin", ".pth", ".pt")) and path.is_file():
            problems += _check_zip(root, rel)
    for rel in rels:
        if rel.endswith(".safetensors.index.json") and (root / rel).is_file():
            problems += _check_index(root, rel, headers)
    config = _read_config(root)
    if config is None and "config.json" in rels and (root / "config.json").is_file():
        problems.append(
            Problem(
                "config.json",
                "config",
                f"is not a JSON object ({_config_error(root)}); "
                "no loader can read the checkpoint's configuration",
            )
        )
    if config is not None:
        tensors: dict[str, HeaderEntry] = {}
        for rel in sorted(headers):
            tensors.update(headers[rel])
        problems += check_shapes(tensors, config, where=_shape_owner(headers))
    return problems


def _check_zip(root: Path, rel: str) -> list[Problem]:
    """A torch .bin is a zip: its central directory must be readable (catches truncation)."""
    import zipfile

    path = root / rel
    with path.open("rb") as fh:
        magic = fh.read(4)
    if magic != b"PK\x03\x04":
        return []  # legacy pickle format: nothing cheap to check
    try:
        with zipfile.ZipFile(path) as zf:
            zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return [Problem(rel, "zip", f"torch zip archive is damaged or truncated ({exc})")]
    return []


def _check_index(root: Path, rel: str, headers: dict[str, dict[str, HeaderEntry]]) -> list[Problem]:
    try:
        data = json.loads((root / rel).read_text(encoding="utf-8"))
        weight_map = data["weight_map"]
        if not isinstance(weight_map, dict) or not all(
            isinstance(v, str) for v in weight_map.values()
        ):
            raise ValueError("weight_map must map tensor names to file names")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [Problem(rel, "index", f"index cannot be read ({exc})")]
    base = Path(rel).parent
    problems: list[Problem] = []
    shards = sorted(set(weight_map.values()))
    for shard in shards:
        shard_rel = (base / shard).as_posix()
        if "/" in shard or shard in ("", ".", ".."):
            problems.append(Problem(rel, "index", f"shard name {shard!r} is not a plain file name"))
            continue
        if not (root / shard_rel).is_file():
            problems.append(Problem(shard_rel, "missing", f"shard named by {rel} is missing"))
            continue
        if shard_rel not in headers:
            continue  # its header failed and is already reported
        held = headers[shard_rel]
        wanted = [t for t, s in weight_map.items() if s == shard]
        absent = [t for t in wanted if t not in held]
        if absent:
            problems.append(
                Problem(
                    shard_rel,
                    "index",
                    f"{len(absent)} tensor(s) the index places here are absent, e.g. {absent[0]!r}",
                )
            )
        extra = [t for t in held if weight_map.get(t) != shard]
        if extra:
            problems.append(
                Problem(
                    shard_rel,
                    "index",
                    f"{len(extra)} tensor(s) here are not mapped to this shard by {rel}, "
                    f"e.g. {extra[0]!r}",
                )
            )
    # Sharded names say how many shards exist: model-00002-of-00008 implies 8.
    counts = {int(m.group(2)) for s in shards if (m := re.search(r"-(\d+)-of-(\d+)\.", s))}
    for total in counts:
        listed = {int(m.group(1)) for s in shards if (m := re.search(rf"-(\d+)-of-0*{total}\.", s))}
        lost = sorted(set(range(1, total + 1)) - listed)
        if lost:
            problems.append(
                Problem(rel, "index", f"shard number(s) {lost} of {total} are not in the index")
            )
    return problems


def _read_config(root: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((root / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _config_error(root: Path) -> str:
    try:
        json.loads((root / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return str(exc)
    return "it holds another JSON value"


def _shape_owner(headers: dict[str, dict[str, HeaderEntry]]) -> dict[str, str]:
    return {name: rel for rel, tensors in headers.items() for name in tensors}


def _int(config: dict[str, Any], *keys: str) -> int | None:
    for k in keys:
        v = config.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def check_shapes(
    tensors: dict[str, HeaderEntry], config: dict[str, Any], *, where: dict[str, str] | None = None
) -> list[Problem]:
    """Shapes config.json implies for the usual decoder tensors (floating-point ones only)."""
    if not tensors:
        return []
    where = where or {}
    text_config = config.get("text_config")  # multimodal configs nest the decoder's dims
    cfg: dict[str, Any] = text_config if isinstance(text_config, dict) else config
    hidden = _int(cfg, "hidden_size", "n_embd", "d_model")
    vocab = _int(cfg, "vocab_size")
    layers = _int(cfg, "num_hidden_layers", "n_layer")
    inter = _int(cfg, "intermediate_size")
    heads = _int(cfg, "num_attention_heads", "n_head")
    kv = _int(cfg, "num_key_value_heads") or heads
    head_dim = _int(cfg, "head_dim") or (hidden // heads if hidden and heads else None)

    expect: list[tuple[tuple[str, ...], tuple[int | None, ...]]] = [
        (("tok_embeddings.weight", "embed_tokens.weight", "wte.weight"), (vocab, hidden)),
        (("output.weight", "lm_head.weight"), (vocab, hidden)),
        (("v_head.weight",), (1, hidden)),
        (("model.norm.weight",), (hidden,)),
        (
            (
                "feed_forward.w1.weight",
                "feed_forward.w3.weight",
                "mlp.gate_proj.weight",
                "mlp.up_proj.weight",
            ),
            (inter, hidden),
        ),
        (("feed_forward.w2.weight", "mlp.down_proj.weight"), (hidden, inter)),
        (
            ("attention.wqkv.weight",),
            ((heads + 2 * kv) * head_dim if heads and kv and head_dim else None, hidden),
        ),
        (
            ("self_attn.q_proj.weight", "attention.wq.weight"),
            (heads * head_dim if heads and head_dim else None, hidden),
        ),
        (
            (
                "self_attn.k_proj.weight",
                "self_attn.v_proj.weight",
                "attention.wk.weight",
                "attention.wv.weight",
            ),
            (kv * head_dim if kv and head_dim else None, hidden),
        ),
        (
            ("self_attn.o_proj.weight", "attention.wo.weight"),
            (hidden, heads * head_dim if heads and head_dim else None),
        ),
        (
            (
                "attention_norm.weight",
                "ffn_norm.weight",
                "input_layernorm.weight",
                "post_attention_layernorm.weight",
            ),
            (hidden,),
        ),
    ]
    problems: list[Problem] = []
    for name, t in tensors.items():
        if t.dtype not in FLOAT_DTYPES:
            continue
        for suffixes, dims in expect:
            if not name.endswith(suffixes):
                continue
            if len(dims) != len(t.shape) or any(
                d is not None and d != s for d, s in zip(dims, t.shape, strict=True)
            ):
                want = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
                problems.append(
                    Problem(
                        where.get(name, "config.json"),
                        "shape",
                        f"tensor {name!r} has shape {list(t.shape)} but config.json implies {want}",
                    )
                )
            break
    if layers:
        found = {int(m.group(1)) for n in tensors if (m := _LAYER.search(n))}
        if found and found != set(range(layers)):
            missing = sorted(set(range(layers)) - found)
            extra = sorted(found - set(range(layers)))
            detail = (
                f"config.json says {layers} layers "
                f"but the weights hold layers {min(found)}..{max(found)}"
            )
            if missing:
                detail += f" (missing {missing[:5]}{'...' if len(missing) > 5 else ''})"
            if extra:
                detail += f" (unexpected {extra[:5]})"
            problems.append(Problem("config.json", "shape", detail))
    return problems
