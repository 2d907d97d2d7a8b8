"""transformers config classes for the InternLM model types, so no checkpoint code is needed.

transformers knows no ``internlm2``/``internlm3`` model type; the checkpoints name config
classes in their own ``configuration_internlm*.py`` through ``auto_map``, which only
``trust_remote_code`` would import. Engines (vLLM) build the config with ``AutoConfig`` in every
process they start, and need only the field names the published configs already use: these
classes are transformers' own ``LlamaConfig`` under the InternLM model types (Llama's config
reads ``rope_theta``/``rope_scaling`` and keeps unknown fields such as ``bias`` and
``reward_token_id`` as attributes). :func:`register` adds them to ``AutoConfig``.

Imports transformers at import time: only the vLLM plugin and the export import this module,
and the classes must live at module level so engines can pickle configs between processes.
"""

from __future__ import annotations

from transformers import AutoConfig, LlamaConfig


class InternLM2Config(LlamaConfig):
    """InternLM2, 2.5, Math and Reward (``InternLM2ForCausalLM``, ``InternLM2ForRewardModel``)."""

    model_type = "internlm2"


class InternLM3Config(LlamaConfig):
    """InternLM3 (``InternLM3ForCausalLM``: Llama's layout with an explicit ``head_dim`` and
    ``qkv_bias``)."""

    model_type = "internlm3"


CONFIG_CLASSES: dict[str, type[LlamaConfig]] = {
    InternLM2Config.model_type: InternLM2Config,
    InternLM3Config.model_type: InternLM3Config,
}


def register() -> list[str]:
    """Register every class with ``AutoConfig`` (idempotent); returns the model types added now."""
    added = []
    for model_type, cls in CONFIG_CLASSES.items():
        try:
            AutoConfig.register(model_type, cls)
        except ValueError:  # already registered: by an earlier call, or by a newer transformers
            continue
        added.append(model_type)
    return added
