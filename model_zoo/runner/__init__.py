"""Load HF-format InternLM checkpoints natively (no hub code), tokenize, chat and generate."""
