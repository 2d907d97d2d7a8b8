"""Where a model goes: device and dtype resolution, and splitting layers across GPUs.

``plan_placement`` is a pure function (sizes and budgets in, module -> device out) so the
split can be tested without GPUs; ``dispatch`` adds the hooks that move activations between
devices at layer boundaries.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import UsageError

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


@dataclass(frozen=True)
class Placement:
    """The devices a model is spread over and which module prefix lives where."""

    devices: tuple[torch.device, ...]
    module_devices: dict[
        str, torch.device
    ]  # "model.embed_tokens", "model.layers.3", "lm_head", ...

    @property
    def main(self) -> torch.device:
        return self.devices[0]

    def device_for(self, param_name: str) -> torch.device:
        parts = param_name.split(".")
        for n in range(len(parts), 0, -1):
            dev = self.module_devices.get(".".join(parts[:n]))
            if dev is not None:
                return dev
        return self.devices[0]


def resolve_devices(device: str | torch.device | None) -> tuple[torch.device, ...]:
    """``"auto"``: every visible CUDA GPU, else the CPU with a warning. Else the one named."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            return tuple(torch.device("cuda", i) for i in range(torch.cuda.device_count()))
        warnings.warn(
            "no CUDA GPU found: loading on the CPU (slow). "
            "Pass device='cpu' (CLI: --device cpu) to silence this.",
            RuntimeWarning,
            stacklevel=3,
        )
        return (torch.device("cpu"),)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UsageError(
            f"device {device!r} is not a torch device ({exc}); use 'auto', 'cpu' or 'cuda:N'."
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            f"device {device!r} was asked for, but CUDA is not available here. "
            "Use device='cpu' (CLI: --device cpu)."
        )
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return (dev,)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``"auto"``: bf16 on GPUs that support it, else fp16 on GPU; fp32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise UsageError(f"dtype {dtype!r} is not one of auto, float32, float16, bfloat16.")
    return _DTYPES[key]


def parse_memory(value: int | str) -> int:
    """``"20GiB"``, ``"500MB"`` (``units.parse_size``: GB is 10**9, GiB 2**30), or bytes as an
    int or a plain number in text (``"2e9"``), as transformers' ``max_memory`` takes them."""
    from ..units import parse_size

    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value)
    if re.fullmatch(r"\s*\d+(?:\.\d*)?(?:[eE][+]?\d+)?\s*", text):
        return int(float(text))
    return parse_size(text, what="max_memory")


def _too_big(need: int, have: int, devices: tuple[torch.device, ...]) -> UsageError:
    return UsageError(
        f"the model needs about {need / 2**30:.1f} GiB "
        f"but max_memory allows {have / 2**30:.1f} GiB on {', '.join(map(str, devices))}. "
        "Raise max_memory, use more GPUs, or quantization='8bit'/'4bit'."
    )


def plan_placement(
    module_bytes: Mapping[str, int],
    num_hidden_layers: int,
    devices: tuple[torch.device, ...],
    budgets: Mapping[torch.device, int] | None = None,
) -> Placement:
    """Assign embedding, layers in order, then norm and head, filling each device's budget.

    ``module_bytes`` maps "embed", "layer", "final" (norm + lm_head / v_head) to sizes in
    bytes; without budgets the layers are split evenly. Raises UsageError when the model does
    not fit in the budgets given.
    """
    embed, layer, final = module_bytes["embed"], module_bytes["layer"], module_bytes["final"]
    if len(devices) == 1:
        have = (budgets or {}).get(devices[0])
        if have is not None and embed + layer * num_hidden_layers + final > have:
            raise _too_big(embed + layer * num_hidden_layers + final, have, devices)
        return Placement(devices, {"": devices[0]})
    if budgets is None:
        total = embed + layer * num_hidden_layers + final
        per = total / len(devices) * 1.0001 + 1
        budgets = {d: int(per) for d in devices}
    order = [("model.embed_tokens", embed)] + [
        (f"model.layers.{i}", layer) for i in range(num_hidden_layers)
    ]
    order += [("model.norm", 0), ("lm_head", final), ("v_head", 0)]
    out: dict[str, torch.device] = {}
    idx, used = 0, 0
    for name, size in order:
        while idx < len(devices) and used + size > budgets.get(devices[idx], 0) and used > 0:
            idx, used = idx + 1, 0
        if idx >= len(devices) or size > budgets.get(devices[idx], 0):
            raise _too_big(
                embed + layer * num_hidden_layers + final,
                sum(budgets.get(d, 0) for d in devices),
                devices,
            )
        out[name] = devices[idx]
        used += size
    out["model.rotary_emb"] = out["model.embed_tokens"]
    return Placement(devices, out)


def default_budgets(
    devices: tuple[torch.device, ...], max_memory: Mapping[Any, int | str] | None
) -> dict[torch.device, int] | None:
    """Per-device byte budgets from ``max_memory`` ({0: "20GiB", "cuda:1": ...}) or free memory."""
    if max_memory is None and all(d.type == "cuda" for d in devices) and len(devices) > 1:
        # leave ~10% of each GPU for activations and the KV cache
        return {d: int(torch.cuda.mem_get_info(d)[0] * 0.9) for d in devices}
    if max_memory is None:
        return None
    out: dict[torch.device, int] = {}
    for key, value in max_memory.items():
        dev = torch.device("cuda", key) if isinstance(key, int) else torch.device(key)
        out[dev] = parse_memory(value)
    return out


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True) if obj.device != device else obj
    if isinstance(obj, tuple):
        return tuple(_to_device(o, device) for o in obj)
    if isinstance(obj, list):
        return [_to_device(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj


def dispatch(model: nn.Module, placement: Placement) -> None:
    """Move each module's inputs to its device at the boundaries of a layer split."""
    if len(placement.devices) == 1:
        return
    for name, device in placement.module_devices.items():
        if not name:
            continue
        module = model.get_submodule(name) if _has_submodule(model, name) else None
        if module is None:
            continue

        def hook(
            _mod: nn.Module, args: tuple, kwargs: dict, _dev: torch.device = device
        ) -> tuple[tuple, dict]:
            return _to_device(args, _dev), _to_device(kwargs, _dev)

        module.register_forward_pre_hook(hook, with_kwargs=True)


def _has_submodule(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True
