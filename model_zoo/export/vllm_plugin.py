"""model-zoo's vLLM plugin (entry point group ``vllm.general_plugins``).

vLLM loads every general plugin in each process it starts (the API server, the engine core,
the workers) before it reads a model's config, so registering InternLM's config classes here
makes ``vllm serve EXPORTED_DIR`` work with ``trust_remote_code=False`` everywhere, including in
worker processes that a script's own ``AutoConfig.register`` call would never reach.
"""

from __future__ import annotations


def register() -> None:
    """Register model-zoo's InternLM config classes with transformers' ``AutoConfig``."""
    from .hf_config import register as register_configs

    register_configs()


__all__ = [
    "register",
]
