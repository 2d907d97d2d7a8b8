"""Ollama: Modelfiles for GGUF variants (``modelfile``) and ``model-zoo ollama`` (``create``).

The registry protocol that lets ``ollama pull`` fetch from ``serve-mirror`` is served by the
local hub (``model_zoo.testing.ollama_registry``) and builds its template and params layers
from ``modelfile`` too, so a pulled model and a created one get the same chat format.
"""
