"""Run inside llama-cpp-python's own virtualenv: llama.cpp's view of a GGUF file, as JSON.

    python llama_cpp_harness.py \
        '{"model": PATH, "prompt_ids": [...], "new_tokens": 8, "texts": [...]}'

Prints one ``HARNESS-RESULT {json}`` line: the logits llama.cpp computes at each prompt position,
its greedy continuation (argmax of its own logits, token by token, on its KV cache), and its
tokenization of each text (bos added, special tokens parsed, as llama.cpp tokenizes chat prompts).
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    args = json.loads(sys.argv[1])
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(
        model_path=args["model"],
        n_ctx=args.get("n_ctx", 64),
        logits_all=True,
        verbose=False,
        n_threads=1,
        seed=0,
    )
    ids = list(args["prompt_ids"])
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)], dtype=np.float32)
    greedy: list[int] = []
    for _ in range(args["new_tokens"]):
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        greedy.append(token)
        llm.eval([token])
    tokens = [
        llm.tokenize(t.encode("utf-8"), add_bos=True, special=True) for t in args.get("texts", [])
    ]
    print(
        "HARNESS-RESULT "
        + json.dumps({"logits": logits.tolist(), "greedy": greedy, "tokens": tokens})
    )


if __name__ == "__main__":
    main()
