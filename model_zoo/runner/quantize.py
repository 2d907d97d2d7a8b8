"""8-bit / 4-bit weights through bitsandbytes (optional; CUDA only).

The decoder's linear layers are swapped for bitsandbytes modules and moved to the GPU layer by
layer, which is when bitsandbytes quantizes them; embeddings, norms and the output head stay in
the compute dtype, as transformers' own bitsandbytes integration does.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
from torch import nn

from ..errors import MissingDependencyError, UsageError

MODES = ("8bit", "4bit")


def require_bitsandbytes(mode: str) -> Any:
    if mode not in MODES:
        raise UsageError(f"quantization {mode!r} is not one of {', '.join(MODES)} (or None).")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise MissingDependencyError("bitsandbytes", feature=f"quantization={mode!r}")
    import bitsandbytes

    return bitsandbytes


def _quantized_linear(bnb: Any, linear: nn.Linear, mode: str, dtype: torch.dtype) -> nn.Module:
    has_bias = linear.bias is not None
    if mode == "8bit":
        new = bnb.nn.Linear8bitLt(
            linear.in_features,
            linear.out_features,
            bias=has_bias,
            has_fp16_weights=False,
            threshold=6.0,
        )
        new.weight = bnb.nn.Int8Params(
            linear.weight.data.to(torch.float16), requires_grad=False, has_fp16_weights=False
        )
    else:
        new = bnb.nn.Linear4bit(
            linear.in_features,
            linear.out_features,
            bias=has_bias,
            compute_dtype=dtype,
            quant_type="nf4",
        )
        new.weight = bnb.nn.Params4bit(linear.weight.data, requires_grad=False, quant_type="nf4")
    if has_bias:
        new.bias = nn.Parameter(linear.bias.data.to(dtype), requires_grad=False)
    return new


def quantize_decoder(
    model: nn.Module, mode: str, device: torch.device, dtype: torch.dtype
) -> nn.Module:
    """Swap the decoder layers' Linear modules for bitsandbytes ones and move them to ``device``."""
    bnb = require_bitsandbytes(mode)
    if device.type != "cuda":
        raise UsageError(
            f"quantization={mode!r} needs a CUDA GPU (bitsandbytes); the model is on {device}."
        )
    decoder: Any = model.model  # submodules by name: torch types each as Tensor | Module
    for layer in decoder.layers:
        for name, child in list(layer.named_modules()):
            if isinstance(child, nn.Linear):
                owner_name, _, leaf = name.rpartition(".")
                owner = layer.get_submodule(owner_name) if owner_name else layer
                setattr(owner, leaf, _quantized_linear(bnb, child, mode, dtype))
        layer.to(device)
    return model.to(device)
