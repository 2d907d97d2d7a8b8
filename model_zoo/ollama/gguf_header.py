"""A GGUF header reader in the standard library, for the mirror's Ollama manifests and
``model-zoo ollama FILE.gguf``.

``serve-mirror`` runs in the core install (no numpy, no ``gguf`` package) but its Ollama
manifests want a few facts from each GGUF file: the architecture, the file type, the chat
template and the parameter count. The header is a short, simple structure (GGUF v2/v3: magic,
version, counts, typed key/values, tensor infos), so this reads it directly and skips every
array it was not asked for. The runner reads files with the ``gguf`` package instead.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"GGUF"
_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
# llama.cpp's LlamaFileType numbers -> names (general.file_type), as ``gguf.LlamaFileType``
# has them.
FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
}


class GGUFHeaderError(ValueError):
    """The file is not GGUF or its header is cut short."""


@dataclass
class GGUFHeader:
    version: int
    values: dict[str, Any] = field(default_factory=dict)  # the keys asked for (and every scalar)
    tensor_count: int = 0
    parameter_count: int = 0

    @property
    def architecture(self) -> str | None:
        value = self.values.get("general.architecture")
        return str(value) if value is not None else None

    @property
    def file_type(self) -> str | None:
        value = self.values.get("general.file_type")
        return FILE_TYPES.get(int(value), str(value)) if value is not None else None


def _read(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise GGUFHeaderError("the header is cut short")
    return data


def _scalar(fh: BinaryIO, kind: int) -> Any:
    fmt = _SCALARS.get(kind)
    if fmt is None:
        raise GGUFHeaderError(f"unknown value type {kind}")
    return struct.unpack(fmt, _read(fh, struct.calcsize(fmt)))[0]


def _string(fh: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", _read(fh, 8))
    if n > 1 << 30:
        raise GGUFHeaderError("a string longer than 1 GiB: not a GGUF header")
    return _read(fh, n).decode("utf-8", errors="replace")


def _value(fh: BinaryIO, kind: int, keep: bool) -> Any:
    if kind == _STRING:
        return _string(fh)
    if kind != _ARRAY:
        return _scalar(fh, kind)
    (item_kind,) = struct.unpack("<I", _read(fh, 4))
    (count,) = struct.unpack("<Q", _read(fh, 8))
    if item_kind == _STRING:
        items = [_string(fh) for _ in range(count)]
        return items if keep else None
    if item_kind == _ARRAY:
        return [_value(fh, _ARRAY, keep) for _ in range(count)] if keep else None
    fmt = _SCALARS.get(item_kind)
    if fmt is None:
        raise GGUFHeaderError(f"unknown array item type {item_kind}")
    size = struct.calcsize(fmt)
    if not keep:
        fh.seek(size * count, 1)
        return None
    raw = _read(fh, size * count)
    return [v[0] for v in struct.iter_unpack(fmt, raw)]


def read_header(path: Path | str, keys: frozenset[str] | set[str] = frozenset()) -> GGUFHeader:
    """Read the header of a GGUF file: every scalar and string, the arrays named in ``keys``,
    and the tensor count and total parameter count. Raises GGUFHeaderError for non-GGUF data."""
    with open(path, "rb") as fh:
        if fh.read(4) != MAGIC:
            raise GGUFHeaderError("not a GGUF file (no GGUF magic)")
        (version,) = struct.unpack("<I", _read(fh, 4))
        if version < 2:
            raise GGUFHeaderError(f"GGUF version {version} is too old (v2 and v3 are read)")
        n_tensors, n_kv = struct.unpack("<QQ", _read(fh, 16))
        header = GGUFHeader(version=version, tensor_count=n_tensors)
        for _ in range(n_kv):
            key = _string(fh)
            (kind,) = struct.unpack("<I", _read(fh, 4))
            value = _value(fh, kind, keep=key in keys)
            if value is not None:
                header.values[key] = value
        for _ in range(n_tensors):
            _string(fh)
            (n_dims,) = struct.unpack("<I", _read(fh, 4))
            dims = struct.unpack(f"<{n_dims}Q", _read(fh, 8 * n_dims))
            _read(fh, 12)  # type (u32) and offset (u64)
            count = 1
            for d in dims:
                count *= d
            header.parameter_count += count
    return header
