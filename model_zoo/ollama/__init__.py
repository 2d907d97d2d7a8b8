"""Ollama: Modelfiles for GGUF variants (``modelfile``) and ``model-zoo ollama`` (``create``).

The registry protocol that lets ``ollama pull`` fetch from ``serve-mirror`` is served by the
mirror (``model_zoo.mirror.ollama_registry``) and builds its template and params layers from
``modelfile`` too, so a pulled model and a created one get the same chat format; both read GGUF
headers with ``gguf_header`` (standard library only).
"""
