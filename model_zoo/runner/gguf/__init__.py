"""GGUF checkpoints (llama.cpp's format) loaded into the native torch runner.

``metadata`` reads a file's header into a ``ModelSpec`` and a vocabulary, ``layout`` undoes
llama.cpp's tensor layout for InternLM (names, the q/k row permutation), ``vocab`` rebuilds the
SentencePiece tokenizer from the metadata, ``load`` dequantizes each tensor (with the ``gguf``
package) into transformers' Llama modules, and ``llamacpp`` runs the same file through
``llama-cpp-python`` instead. Nothing heavy is imported here.
"""
