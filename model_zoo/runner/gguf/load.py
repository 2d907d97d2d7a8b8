"""``load_gguf(path) -> Runner``: a GGUF InternLM checkpoint in the native torch runner.

Each tensor is dequantized on its own by the ``gguf`` package (llama.cpp's Python reader:
F32/F16/BF16, Q4_0..Q8_0, the k-quants and i-quants), un-permuted where llama.cpp permuted it
(``layout``), cast to the compute dtype and assigned to transformers' Llama modules built on the
meta device, so the transient is one tensor in float32, never the whole model. Every tensor of
the file must be one the architecture needs, with the right shape, before anything is read.

The result computes what the quantized weights say, in the compute dtype: a Q4_K_M file gives
Q4_K_M's answers at bfloat16 speed and memory, not llama.cpp's kernels. For llama.cpp itself,
``backend="llama.cpp"`` (``llamacpp``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import IncompatibleCheckpointError
from ...registry.info import RopeScaling
from ..config import ModelSpec
from .layout import Target, native_plan, unpermute
from .metadata import GGUFCheckpoint, read_gguf


def check_tensors(ckpt: GGUFCheckpoint) -> dict[str, Target]:
    """The plan for ``ckpt``'s tensors; IncompatibleCheckpointError naming any that do not fit."""
    plan = native_plan(ckpt.spec)
    present = set(ckpt.tensors)
    missing = sorted(set(plan) - present)
    unexpected = sorted(present - set(plan))
    wrong = [
        f"{n} has shape {list(ckpt.tensors[n].shape)}, expected {list(plan[n].shape)}"
        for n in sorted(present & set(plan))
        if ckpt.tensors[n].shape != plan[n].shape
    ]
    problems = []
    if missing:
        problems.append("missing tensor(s) " + ", ".join(missing[:8]))
    if unexpected:
        problems.append("unexpected tensor(s) " + ", ".join(unexpected[:8]))
    if wrong:
        problems.append("; ".join(wrong[:8]))
    if problems:
        raise IncompatibleCheckpointError(
            str(ckpt.path),
            f"the tensors do not match {ckpt.arch} as its own header describes it: "
            + "; ".join(problems),
            hint="The file may be truncated or converted by another tool; "
            "run `model-zoo verify` on it.",
        )
    return plan


def dequantized(ckpt: GGUFCheckpoint, tensor: Any) -> Any:
    """One reader tensor as a float32 numpy array in torch order (rows, columns)."""
    import numpy as np

    from .metadata import require_gguf

    gguf = require_gguf()
    name = tensor.name
    try:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
    except NotImplementedError:
        raise IncompatibleCheckpointError(
            str(ckpt.path),
            f"tensor {name} is {tensor.tensor_type.name}, which the installed gguf "
            "package cannot dequantize",
            hint="Upgrade it: pip install -U gguf.",
        ) from None
    out = np.ascontiguousarray(values, dtype=np.float32).reshape(ckpt.tensors[name].shape)
    return (
        out if out.flags.writeable else out.copy()
    )  # F32 comes back as a read-only view of the map


def load_weights(
    ckpt: GGUFCheckpoint, placement: Any, dtype: Any, *, attn: str | None = None
) -> Any:
    """The native module for ``ckpt.spec`` filled from the file, tensor by tensor."""
    import torch
    from torch import nn

    from ..modeling import build_meta_model, finish_native

    plan = check_tensors(ckpt)
    model = build_meta_model(ckpt.spec, attn=attn, dtype=dtype)
    if ckpt.spec.tie_word_embeddings:
        placement.module_devices["lm_head"] = placement.device_for("model.embed_tokens")
    by_name = {t.name: t for t in ckpt.reader.tensors}
    for name, target in plan.items():
        values = dequantized(ckpt, by_name[name])
        if target.unpermute_heads:
            values = unpermute(values, target.unpermute_heads)
        tensor = torch.from_numpy(values).to(device=placement.device_for(target.param), dtype=dtype)
        owner, _, leaf = target.param.rpartition(".")
        model.get_submodule(owner)._parameters[leaf] = nn.Parameter(tensor, requires_grad=False)
    finish_native(model, ckpt.spec, placement.device_for("model.rotary_emb"))
    return model


def load_gguf(
    path: Path | str,
    *,
    device: Any = "auto",
    dtype: Any = "auto",
    attn: str | None = None,
    max_memory: Mapping[Any, int | str] | None = None,
    rope_scaling: RopeScaling | None = None,
    info: Any = None,
) -> Any:
    """Load a GGUF InternLM2/2.5/3 file into a native ``Runner`` (tokenizer from its metadata).

    ``rope_scaling`` restores the rotary scaling the GGUF format drops (the registry passes the
    parent checkpoint's); ``info`` is the registry entry, for its generation defaults.
    """
    from ..api import Runner, make_profile, placement_for
    from ..devices import dispatch, resolve_devices, resolve_dtype
    from .vocab import gguf_tokenizer

    ckpt = read_gguf(path, rope_scaling=rope_scaling)
    check_tensors(ckpt)  # before any device or dtype work
    tokenizer = gguf_tokenizer(ckpt.vocab)
    devices = resolve_devices(device)
    torch_dtype = resolve_dtype(dtype, devices[0])
    placement = placement_for(ckpt.spec, devices, torch_dtype, max_memory)
    model = load_weights(ckpt, placement, torch_dtype, attn=attn)
    dispatch(model, placement)
    profile = make_profile(ckpt.spec, tokenizer, ckpt.path, info)
    name = getattr(info, "name", None)
    return Runner(
        model=model,
        tokenizer=tokenizer,
        spec=ckpt.spec,
        path=ckpt.path,
        placement=placement,
        dtype=torch_dtype,
        profile=profile,
        name=name,
        info=info,
    )


def spec_of(path: Path | str) -> ModelSpec:
    """The architecture a GGUF file describes (header only)."""
    return read_gguf(path).spec


def load_gguf_request(
    name_or_path: Path | str,
    *,
    gguf: str | None = None,
    backend: str = "transformers",
    quantization: str | None = None,
    device: Any = "auto",
    dtype: Any = "auto",
    attn: str | None = None,
    max_memory: Mapping[Any, int | str] | None = None,
) -> Any:
    """``load()`` for GGUF: resolve the file, then the native runner or llama.cpp."""
    from ...errors import UsageError
    from .resolve import resolve_gguf

    if quantization is not None:
        raise UsageError(
            "a GGUF file is already quantized: leave out quantization= (pick another "
            "quantization level with gguf='q8_0', ...)."
        )
    if backend not in ("transformers", "llama.cpp"):
        raise UsageError(
            f"backend={backend!r} does not read GGUF files; "
            "use 'transformers' (native) or 'llama.cpp'."
        )
    request = resolve_gguf(name_or_path, gguf)
    if backend == "llama.cpp":
        from ..api import make_profile
        from .llamacpp import load_llama_cpp
        from .vocab import gguf_tokenizer

        ckpt = read_gguf(request.path, rope_scaling=request.rope_scaling)
        tokenizer = gguf_tokenizer(ckpt.vocab)
        profile = make_profile(ckpt.spec, tokenizer, ckpt.path, request.info)
        return load_llama_cpp(ckpt.path, tokenizer, profile, spec=ckpt.spec)
    return load_gguf(
        request.path,
        device=device,
        dtype=dtype,
        attn=attn,
        max_memory=max_memory,
        rope_scaling=request.rope_scaling,
        info=request.info,
    )
