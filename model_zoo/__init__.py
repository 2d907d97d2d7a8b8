"""model-zoo: get any InternLM checkpoint onto a GPU, verified, from whichever hub can serve it.

Nothing heavy happens at import time: the public functions below are imported from their
modules on first use, so ``import model_zoo`` stays fast and never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "list_models": "model_zoo.registry.api",
    "get": "model_zoo.registry.api",
    "select": "model_zoo.registry.api",
    "search": "model_zoo.registry.api",
    "ModelInfo": "model_zoo.registry.api",
    "load_registry": "model_zoo.registry.loader",
    "load_settings": "model_zoo.settings",
    "pull": "model_zoo.download.pull",
    "verify": "model_zoo.store.verify",
    "load": "model_zoo.runner.api",
    "load_reward": "model_zoo.reward.api",
}

# spelled out, so linters and type checkers read it; a test keeps it equal to _EXPORTS
__all__ = [
    "__version__",
    "list_models",
    "get",
    "select",
    "search",
    "ModelInfo",
    "load_registry",
    "load_settings",
    "pull",
    "verify",
    "load",
    "load_reward",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'model_zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from .download.pull import pull
    from .registry.api import ModelInfo, get, list_models, search, select
    from .registry.loader import load_registry
    from .reward.api import load_reward
    from .runner.api import load
    from .settings import load_settings
    from .store.verify import verify
