"""Fill a meta-device native module from a checkpoint, shard by shard, tensor by tensor.

No full copy of the weights is ever built in host memory: each tensor is read from its shard
(directly onto the GPU when the whole model lives on one), split if it is a packed ``wqkv``,
cast to the target dtype and assigned in place of the meta parameter; then it is dropped.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import IncompatibleCheckpointError
from .checkpoint import WeightFiles, find_weights, iter_tensors
from .config import ModelSpec
from .convert import plan
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
    single = len(placement.devices) == 1
    read_device = str(placement.main) if single and placement.main.type == "cuda" else "cpu"
    for file in weights.files:
        names = {n for n, info in weights.tensors.items() if info.file == file and n in rules}
        for name, tensor in iter_tensors(weights, file, names, device=read_device):
            rule = rules[name]
            pieces = rule.split(tensor) if rule.split is not None else [tensor]
            del tensor
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
