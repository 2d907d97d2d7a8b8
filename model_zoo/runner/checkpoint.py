"""Find a checkpoint's weight files and list its tensors without loading them.

safetensors headers are parsed here directly (8-byte length + JSON), so listing names, shapes
and dtypes costs a few kilobytes of reads and no torch, and a truncated or inconsistent shard is
caught before any tensor is materialised. PyTorch ``.bin`` shards (InternLM v1 ships only those)
are opened with ``torch.load(weights_only=True, mmap=True)``: no pickled code runs and the
bytes stay memory-mapped until a tensor is used.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import CheckpointError, IncompatibleCheckpointError

if TYPE_CHECKING:  # pragma: no cover
    import torch

Format = Literal["safetensors", "bin"]

_ST_INDEX = "model.safetensors.index.json"
_BIN_INDEX = "pytorch_model.bin.index.json"
# InternEvo ("origin") checkpoints: model_tp0_pp0.pt, model_zo0_tp0_pp0.pt, model_wp0_pp0.pt ...
_ORIGIN_FILE = re.compile(r"^model(_[a-z]+\d+)+\.pt$")


@dataclass(frozen=True)
class CheckpointTensor:
    """One tensor of a checkpoint and where its bytes are: the file (safetensors or .bin) and,
    for safetensors, the absolute offset (``store.safetensors_check.HeaderEntry`` is the header's
    own entry, with offsets into the data section)."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # safetensors spelling (BF16, F32, ...) or torch's for .bin
    file: Path
    offset: int | None = None  # safetensors: absolute file offset of the first byte

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class WeightFiles:
    """The weight files of one checkpoint, in load order, and every tensor they hold."""

    root: Path
    format: Format
    files: tuple[Path, ...]
    tensors: dict[str, CheckpointTensor]

    @property
    def total_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)


def is_origin_format(path: Path) -> bool:
    """True for an InternEvo ("origin") checkpoint directory, which no HF-style loader reads."""
    path = Path(path)
    if (path / "config.json").is_file() and _has_hf_weights(path):
        return False
    return any(_ORIGIN_FILE.match(p.name) for p in path.glob("*.pt"))


def _has_hf_weights(path: Path) -> bool:
    return any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin"))


def read_safetensors_header(file: Path) -> dict[str, CheckpointTensor]:
    """Names, shapes, dtypes and absolute offsets of one safetensors file, through the store's
    header reader (one parser, one dtype table); a damaged header is a CheckpointError."""
    from ..store.safetensors_check import HeaderError, read_safetensors

    try:
        parsed = read_safetensors(file)
    except OSError as exc:
        raise CheckpointError(str(file), f"cannot be read ({exc})") from None
    except HeaderError as exc:
        raise CheckpointError(str(file), f"is not a valid safetensors file: {exc}") from None
    return {
        name: CheckpointTensor(name, t.shape, t.dtype, file, parsed.data_start + t.begin)
        for name, t in parsed.tensors.items()
    }


def _index_files(root: Path, index_name: str) -> tuple[list[Path], dict[str, str]] | None:
    index = root / index_name
    if not index.is_file():
        return None
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(str(index), "index is not valid JSON with a weight_map") from None
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items()
    ):
        raise CheckpointError(str(index), "weight_map must map tensor names to file names")
    names = sorted(set(weight_map.values()))
    for n in names:  # a shard is a file of this checkpoint, never a path elsewhere
        if Path(n).is_absolute() or ".." in Path(n).parts or not n.strip():
            raise CheckpointError(
                str(index), f"weight_map names {n!r}, which is not a file in {root}"
            )
    files = [root / n for n in names]
    for f in files:
        if not f.is_file():
            raise CheckpointError(str(f), f"shard listed in {index_name} is missing")
    return files, dict(weight_map)


def find_weights(root: Path) -> WeightFiles:
    """Locate the weights (safetensors preferred over .bin) and list every tensor."""
    root = Path(root)
    indexed = _index_files(root, _ST_INDEX)
    if indexed is None and (root / "model.safetensors").is_file():
        # transformers' rule: without an index, model.safetensors is the checkpoint; other
        # *.safetensors beside it (adapters, exports of other tools) are not its weights.
        indexed = ([root / "model.safetensors"], {})
    if indexed is None:
        singles = sorted(root.glob("*.safetensors"))
        if singles:
            indexed = (singles, {})
    if indexed is not None:
        files, weight_map = indexed
        tensors: dict[str, CheckpointTensor] = {}
        for f in files:
            for name, info in read_safetensors_header(f).items():
                if name in tensors:
                    raise CheckpointError(str(f), f"tensor {name!r} appears in two shards")
                tensors[name] = info
        _check_index(root, weight_map, tensors)
        return WeightFiles(root, "safetensors", tuple(files), tensors)
    bins = _index_files(root, _BIN_INDEX)
    if bins is None and (root / "pytorch_model.bin").is_file():
        bins = ([root / "pytorch_model.bin"], {})
    bin_files, bin_map = bins if bins else (sorted(root.glob("pytorch_model*.bin")), {})
    if bin_files:
        infos = _bin_tensor_infos(bin_files)
        _check_index(root, bin_map, infos)
        return WeightFiles(root, "bin", tuple(bin_files), infos)
    raise IncompatibleCheckpointError(
        str(root),
        "no weight files (*.safetensors or pytorch_model*.bin)",
        hint="Check the directory, or pull the model again.",
    )


def _check_index(
    root: Path, weight_map: dict[str, str], tensors: dict[str, CheckpointTensor]
) -> None:
    for name, fname in weight_map.items():
        if name not in tensors or tensors[name].file.name != fname:
            raise CheckpointError(
                str(root / fname), f"index says it holds {name!r}, but the file does not"
            )


def _open_bin(file: Path) -> dict[str, torch.Tensor]:
    import pickle

    import torch

    try:
        obj = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:
        raise _unsafe_bin(file, exc) from None
    except RuntimeError:  # legacy (non-zip) serialization cannot be mmapped
        try:
            obj = torch.load(file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise _unsafe_bin(file, exc) from None
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
            raise CheckpointError(
                str(file), f"cannot be read as a PyTorch state dict ({_why(exc)})"
            ) from None
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(
            str(file), f"cannot be read as a PyTorch state dict ({_why(exc)})"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(str(file), "is not a state dict")
    import torch

    for name, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise IncompatibleCheckpointError(
                str(file),
                f"is not a flat state dict of tensors: entry {name!r} is a {type(value).__name__}",
                hint="Save the model's state_dict() itself (tensor names to tensors), "
                "or use its safetensors release.",
            )
    return obj


def _why(exc: Exception) -> str:
    return str(exc).strip() or f"{type(exc).__name__}; the file may be empty or truncated"


def _unsafe_bin(file: Path, exc: Exception) -> IncompatibleCheckpointError:
    """A .bin whose pickle holds more than tensors: refused, never unpickled in full.

    torch's own message advises ``weights_only=False``, which would run the file's code; that
    advice is not passed on.
    """
    found = re.search(r"unsupported GLOBAL (\S+)", str(exc))
    what = f"it refers to {found.group(1)}" if found else "objects other than tensors"
    return IncompatibleCheckpointError(
        str(file),
        f"the pickle holds more than tensors ({what}); model-zoo opens .bin weights only with "
        "torch.load(weights_only=True) and never runs code from a checkpoint",
        hint="Use the safetensors release of the model, or convert the file to safetensors with a "
        "tool you trust, in an environment you trust.",
    )


def _bin_tensor_infos(files: list[Path]) -> dict[str, CheckpointTensor]:
    out: dict[str, CheckpointTensor] = {}
    for f in files:
        for name, t in _open_bin(f).items():
            if name in out:
                raise CheckpointError(str(f), f"tensor {name!r} appears in two shards")
            out[name] = CheckpointTensor(
                name, tuple(t.shape), str(t.dtype).removeprefix("torch."), f
            )
    return out


def torch_dtype(info: CheckpointTensor) -> torch.dtype:
    import torch

    names = {
        "F64": "float64",
        "F32": "float32",
        "F16": "float16",
        "BF16": "bfloat16",
        "I64": "int64",
        "I32": "int32",
        "I16": "int16",
        "I8": "int8",
        "U8": "uint8",
        "BOOL": "bool",
    }
    if info.dtype not in names:
        raise IncompatibleCheckpointError(
            str(info.file), f"tensor {info.name!r} has unsupported dtype {info.dtype}"
        )
    return getattr(torch, names[info.dtype])


def pread_into(fd: int, out: torch.Tensor, offset: int, *, where: Path) -> None:
    """Fill the contiguous tensor ``out`` with the file's bytes at ``offset`` (no extra copy)."""
    import torch

    view = out.view(-1).view(torch.uint8).numpy().data  # the tensor's own bytes, writable
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n <= 0:
            raise CheckpointError(str(where), "ended early while reading tensor data (truncated?)")
        done += n


def iter_tensors(
    weights: WeightFiles, file: Path, names: set[str] | None = None, device: str = "cpu"
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield ``(name, tensor)`` for the tensors of one file, one at a time."""
    if weights.format == "bin":
        state = _open_bin(file)
        for name in list(state):
            if names is None or name in names:
                t = state.pop(name)
                yield name, t.to(device) if device != "cpu" else t
        return
    from safetensors import safe_open

    try:
        with safe_open(str(file), framework="pt", device=device) as fh:
            for name in fh.keys():  # noqa: SIM118 - safe_open has no __iter__
                if names is None or name in names:
                    yield name, fh.get_tensor(name)
    except OSError as exc:
        raise CheckpointError(str(file), f"cannot be read ({exc})") from None
