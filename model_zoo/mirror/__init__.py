"""The mirror behind ``model-zoo serve-mirror``: pulled checkpoints served back as a hub.

One read-only HTTP server (``server.MirrorServer``) speaks the HuggingFace, ModelScope, Modelers
and OpenXLab protocols (``protocols``, with OpenXLab's key exchange in ``openxlab_sso``) and
Ollama's registry protocol for GGUF files (``ollama_registry``), over repositories on disk
(``repo_store``), within optional rate caps and a simulated round trip (``bandwidth``).

Tests run the same server with fault injection and statistics plugged in through ``hooks``
(``model_zoo.testing.local_hub``); this package never imports ``model_zoo.testing``.
"""
