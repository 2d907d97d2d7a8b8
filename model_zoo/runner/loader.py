"""Fill a meta-device native module from a checkpoint, shard by shard, tensor by tensor.

No full copy of the weights is ever built in host memory:

- a tensor that stays on the CPU in its stored dtype is memory-mapped (copy-on-write), as
  transformers does: no bytes are copied and pages are read on first use;
- any other safetensors tensor is read with ``pread`` (a few threads, a small window ahead)
  straight into a freshly allocated tensor, then cast and moved to its device: a per-tensor
  transient;
- a packed ``wqkv`` is read block by block directly into its q, k and v pieces, so the packed
  tensor is never materialised and its file pages are never mapped.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import IncompatibleCheckpointError
from .checkpoint import (
    CheckpointTensor,
    WeightFiles,
    find_weights,
    iter_tensors,
    pread_into,
    torch_dtype,
)
from .config import ModelSpec
from .convert import Rule, plan
from .devices import Placement
from .modeling import build_meta_model, finish_native


def _assign(model: nn.Module, name: str, tensor: torch.Tensor) -> None:
    owner, _, leaf = name.rpartition(".")
    module = model.get_submodule(owner)
    module._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)


def check_weights(spec: ModelSpec, weights: WeightFiles) -> None:
    """Raise IncompatibleCheckpointError unless the tensors match the architecture exactly."""
    _plan(spec, weights, str(weights.root))


def _plan(spec: ModelSpec, weights: WeightFiles, where: str) -> dict[str, Rule]:
    return plan(
        spec,
        {n: i.shape for n, i in weights.tensors.items()},
        where=where,
        files={n: i.file.name for n, i in weights.tensors.items()},
    )


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
    rules = _plan(spec, weights, str(path))
    model = build_meta_model(spec, attn=attn, dtype=dtype)
    if spec.tie_word_embeddings and not spec.is_reward:
        # the head *is* the embedding: it runs where the embedding lives (a layer split would
        # otherwise send the last hidden states to a device the tied weight is not on)
        placement.module_devices["lm_head"] = placement.device_for("model.embed_tokens")

    def lazy(info: CheckpointTensor, rule: Rule) -> bool:
        return (
            not rule.blocks
            and torch_dtype(info) == dtype
            and all(placement.device_for(t).type == "cpu" for t in rule.targets)
        )

    for rule, pieces in _pieces(weights, rules, lazy):
        for target, piece in zip(rule.targets, pieces, strict=True):
            dev = placement.device_for(target)
            want = dtype if piece.is_floating_point() else piece.dtype
            _assign(model, target, piece.to(device=dev, dtype=want))
        del pieces
    if spec.tie_word_embeddings and not spec.is_reward:
        _check_tied_head(model, path)
    finish_native(model, spec, placement.device_for("model.rotary_emb"))
    left = [n for n, p in model.named_parameters() if p.is_meta] + [
        n for n, b in model.named_buffers() if b.is_meta
    ]
    if left:  # every parameter must come from the checkpoint; plan() should make this unreachable
        raise IncompatibleCheckpointError(
            str(path), f"no weights were found for {', '.join(left[:8])}"
        )
    return model


def _check_tied_head(model: nn.Module, path: Path) -> None:
    """A tied checkpoint that also stores its head must store a copy of the embedding."""
    tree: Any = model  # submodules by name: torch types each as Tensor | Module
    head, emb = tree.lm_head.weight, tree.model.embed_tokens.weight
    if head.is_meta:
        return
    if not torch.equal(head, emb.to(head.device)):
        raise IncompatibleCheckpointError(
            str(path),
            "config.json sets tie_word_embeddings, but the checkpoint's output head "
            "differs from its token embedding",
            hint="Set tie_word_embeddings to false in config.json if the head is meant to be "
            "separate.",
        )


def _read_safetensors(fd: int, info: CheckpointTensor, rule: Rule) -> list[torch.Tensor]:
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
        pread_into(
            fd, pieces[piece][dst : dst + rows], info.offset + src * row_bytes, where=info.file
        )
    return pieces


def _mapped(file: Path) -> Any:
    from safetensors import safe_open

    return safe_open(str(file), framework="pt")  # mmap; tensors keep the mapping alive


def _done(value: list[torch.Tensor]) -> Future[list[torch.Tensor]]:
    fut: Future[list[torch.Tensor]] = Future()
    fut.set_result(value)
    return fut


def _read_threads() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _pieces(
    weights: WeightFiles, rules: dict[str, Rule], lazy: Callable[[CheckpointTensor, Rule], bool]
) -> Iterator[tuple[Rule, list[torch.Tensor]]]:
    """Each checkpoint tensor's target pieces, in file order.

    ``lazy(info, rule)`` says which safetensors tensors to memory-map rather than read. Reads run
    on a few threads (``preadv`` releases the GIL), at most a small window ahead of the
    consumer, so at most that many tensors are in flight at once.
    """
    for file in weights.files:
        infos = sorted(
            (i for i in weights.tensors.values() if i.file == file and i.name in rules),
            key=lambda i: i.offset or 0,
        )
        if weights.format == "safetensors":
            fd = os.open(file, os.O_RDONLY)
            mapped = _mapped(file) if any(lazy(i, rules[i.name]) for i in infos) else None
            try:
                with ThreadPoolExecutor(max_workers=_read_threads()) as pool:
                    window: deque[tuple[Rule, Future[list[torch.Tensor]]]] = deque()
                    for info in infos:
                        rule = rules[info.name]
                        if mapped is not None and lazy(info, rule):
                            window.append((rule, _done([mapped.get_tensor(info.name)])))
                        else:
                            window.append((rule, pool.submit(_read_safetensors, fd, info, rule)))
                        if len(window) > 2 * _read_threads():
                            done_rule, fut = window.popleft()
                            yield done_rule, fut.result()
                    while window:
                        done_rule, fut = window.popleft()
                        yield done_rule, fut.result()
            finally:
                os.close(fd)
            continue
        for name, tensor in iter_tensors(weights, file, {i.name for i in infos}):
            rule = rules[name]
            yield rule, rule.split(tensor) if rule.split is not None else [tensor]
