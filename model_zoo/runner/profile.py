"""A checkpoint's chat profile: template, default system prompt, sampling defaults, stop tokens.

Pure (no torch), so that what only needs the profile (``model-zoo export``, which writes the
template and sampling for serving engines) does not import the model code; ``runner.api``
re-exports ``make_profile``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .chat import (
    DEFAULT_SYSTEM_PROMPT,
    END_OF_TURN,
    FAMILY_DEFAULTS,
    THINKING_MAX_NEW_TOKENS,
    ChatProfile,
    default_template,
)
from .config import ModelSpec
from .tokenizer import InternLMTokenizer


def _generation_config(path: Path) -> dict[str, Any]:
    f = path / "generation_config.json"
    try:
        data = json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {}
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}


def _as_ids(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return [int(value)]


def make_profile(
    spec: ModelSpec, tokenizer: InternLMTokenizer | None, path: Path, info: Any = None
) -> ChatProfile:
    """Chat template, default system prompt, sampling defaults and stop tokens for a checkpoint."""
    family = spec.family
    gen = FAMILY_DEFAULTS[family]
    thinking_max = THINKING_MAX_NEW_TOKENS
    stops: list[int] = _as_ids(spec.eos_token_id) + _as_ids(
        _generation_config(path).get("eos_token_id")
    )
    defaults = getattr(info, "generation_defaults", None)
    if defaults is not None:
        values = {
            k: getattr(defaults, k)
            for k in ("temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens")
        }
        gen = gen.updated(**values)
        thinking_max = defaults.max_new_tokens_thinking or thinking_max
        stops += list(defaults.stop_token_ids)
    if tokenizer is not None:
        stops += _as_ids(tokenizer.eos_token_id)
        end = tokenizer.token_to_id(END_OF_TURN[family])
        if end is not None:
            stops.append(end)
    template = (tokenizer.chat_template if tokenizer is not None else None) or default_template(
        family
    )
    # InternLM v1 was not trained with a system prompt; InternLM2/2.5/3 use the default one.
    default_system = None if family == "internlm" else DEFAULT_SYSTEM_PROMPT
    unique = tuple(dict.fromkeys(stops))
    return ChatProfile(
        family=family,
        template=template,
        default_system=default_system,
        generation=gen,
        stop_token_ids=unique,
        thinking_max_new_tokens=thinking_max,
    )
