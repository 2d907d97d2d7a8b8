"""Quantization levels in GGUF file names: ``internlm2_5-7b-chat-q4_k_m.gguf`` -> ``q4_k_m``.

One place for the rule, used by the registry (a variant's level -> file), ``pull --gguf``, the
mirror's Ollama tags and ``model-zoo ollama``. Levels are compared case-insensitively, and
``fp16``/``f16`` (and ``fp32``/``f32``) name the same level, as llama.cpp's file types and the
hubs' Ollama tags treat them. Pure: stdlib only.
"""

from __future__ import annotations

import re

# llama.cpp's quantization names (llama-quantize's list, plus the float types).
_LEVEL = re.compile(
    r"^(?:i?q\d+(?:_[a-z0-9]+)*|tq\d_\d|f16|fp16|bf16|f32|fp32|mxfp4)$", re.IGNORECASE
)
_SHARD = re.compile(r"-\d{5}-of-\d{5}$")
_ALIASES = {"fp16": "f16", "fp32": "f32"}

# What a tagless request gets (hf.co's rule for Ollama: Q4_K_M when the repository has it).
DEFAULT_LEVEL = "q4_k_m"


def canonical(level: str) -> str:
    """The form levels are compared in: lower case, ``fp16`` -> ``f16``."""
    low = level.strip().lower()
    return _ALIASES.get(low, low)


def is_level(text: str) -> bool:
    return bool(_LEVEL.match(text.strip()))


def level_of(filename: str) -> str | None:
    """The quantization level a GGUF file name states (lower case, as written), or None.

    The level is the last ``-`` / ``.`` separated part of the stem that is a quantization
    name; a split file's ``-00001-of-00003`` suffix is looked past.
    """
    name = filename.rsplit("/", 1)[-1]
    if not name.lower().endswith(".gguf"):
        return None
    stem = _SHARD.sub("", name[: -len(".gguf")])
    for part in reversed(re.split(r"[-.]", stem)):
        if _LEVEL.match(part):
            return part.lower()
    return None


def is_shard(filename: str) -> bool:
    """True for one part of a split GGUF (``...-00001-of-00002.gguf``)."""
    name = filename.rsplit("/", 1)[-1]
    return name.lower().endswith(".gguf") and bool(_SHARD.search(name[: -len(".gguf")]))


def same_level(a: str, b: str) -> bool:
    return canonical(a) == canonical(b)


def pick(files: list[str], level: str | None) -> str | None:
    """The GGUF file among ``files`` for ``level`` (None or ``latest``: the default level, else
    the first file in name order); None when no file has that level."""
    ggufs = sorted(
        f
        for f in files
        if f.lower().endswith(".gguf")
        and not is_shard(f)
        and not f.rsplit("/", 1)[-1].lower().startswith("mmproj")
    )
    if not ggufs:
        return None
    if level is None or level.lower() == "latest":
        default = [f for f in ggufs if same_level(level_of(f) or "", DEFAULT_LEVEL)]
        return (default or ggufs)[0]
    matches = [f for f in ggufs if same_level(level_of(f) or "", level)]
    return matches[0] if matches else None


def levels(files: list[str]) -> dict[str, str]:
    """Level -> file for every single-file GGUF in ``files`` (first file wins per level)."""
    out: dict[str, str] = {}
    for f in sorted(files):
        lvl = level_of(f)
        projector = (
            f.rsplit("/", 1)[-1].lower().startswith("mmproj")
        )  # a vision projector, not the model
        if lvl is not None and not is_shard(f) and not projector and lvl not in out:
            out[lvl] = f
    return out
