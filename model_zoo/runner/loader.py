"""Fill a meta-device native module from a checkpoint, shard by shard, tensor by tensor.

No full copy of the weights is ever built in host memory. safetensors tensors are read with
``pread`` straight into freshly allocated tensors (nothing stays memory-mapped, so resident
memory is the model and nothing else); a packed ``wqkv`` is read block by block directly into
its q, k and v pieces. Each piece is then cast to the target dtype and moved to its device
(a per-tensor transient), and assigned in place of the meta parameter.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..errors import IncompatibleCheckpointError
from .checkpoint import TensorInfo, WeightFiles, find_weights, iter_tensors, pread_into, torch_dtype
from .config import ModelSpec
from .convert import Rule, plan
from .devices import Placement
from .modeling import build_meta_model, rope_inv_freq


def _assign(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    owner, _, leaf = name.rpartition(".")
    module = model.get_submodule(owner)
    module._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)


def check_weights(spec: ModelSpec, weights: WeightFiles) -> None:
    """Raise IncompatibleCheckpointError unless the tensors match the architecture exactly."""
    plan(spec, {n: i.shape for n, i in weights.tensors.items()}, where=str(weights.root))


def load_native(
    path: Path,
    spec: ModelSpec,
    placement: Placement,
    dtype: torch.dtype,
    *,
    attn: str | None = None,
    weights: WeightFiles | None = None,
) -> nn.Module:
    """Build the native module for ``spec`` and load ``path``'s weights onto ``placement``."""
    weights = weights or find_weights(path)
    rules = plan(spec, {n: i.shape for n, i in weights.tensors.items()}, where=str(path))
    model = build_meta_model(spec, attn=attn, dtype=dtype)
    for rule, pieces in _pieces(weights, rules):
        for target, piece in zip(rule.targets, pieces):
            dev = placement.device_for(target)
            want = dtype if piece.is_floating_point() else piece.dtype
            _assign(model, target, piece.to(device=dev, dtype=want))
        del pieces
    if spec.tie_word_embeddings and not spec.is_reward:
        model.lm_head.weight = model.model.embed_tokens.weight
    rotary = model.model.rotary_emb
    rotary.inv_freq = rope_inv_freq(spec, 0, placement.device_for("model.rotary_emb"))
    left = [n for n, p in model.named_parameters() if p.is_meta] + [n for n, b in model.named_buffers() if b.is_meta]
    if left:  # every parameter must come from the checkpoint; plan() should make this unreachable
        raise IncompatibleCheckpointError(str(path), f"no weights were found for {', '.join(left[:8])}")
    return model


def _read_safetensors(fd: int, info: TensorInfo, rule: Rule) -> list[torch.Tensor]:
    dtype = torch_dtype(info)
    assert info.offset is not None
    if not rule.blocks:
        out = torch.empty(info.shape, dtype=dtype)
        pread_into(fd, out, info.offset, where=info.file)
        return [out]
    rest = info.shape[1:]
    row_bytes = math.prod(rest) * torch.empty((), dtype=dtype).element_size()
    pieces = [torch.empty((rows, *rest), dtype=dtype) for rows in rule.piece_rows]
    for piece, src, rows, dst in rule.blocks:
        pread_into(fd, pieces[piece][dst : dst + rows], info.offset + src * row_bytes, where=info.file)
    return pieces


def _pieces(weights: WeightFiles, rules: dict[str, Rule]) -> Iterator[tuple[Rule, list[torch.Tensor]]]:
    """Each checkpoint tensor's target pieces, one tensor at a time, in file order."""
    for file in weights.files:
        infos = sorted((i for i in weights.tensors.values() if i.file == file and i.name in rules),
                       key=lambda i: i.offset or 0)
        if weights.format == "safetensors":
            fd = os.open(file, os.O_RDONLY)
            try:
                for info in infos:
                    yield rules[info.name], _read_safetensors(fd, info, rules[info.name])
            finally:
                os.close(fd)
            continue
        for name, tensor in iter_tensors(weights, file, {i.name for i in infos}):
            rule = rules[name]
            yield rule, rule.split(tensor) if rule.split is not None else [tensor]
