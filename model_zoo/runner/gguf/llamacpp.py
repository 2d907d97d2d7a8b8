"""``backend="llama.cpp"``: the same GGUF file run by llama.cpp through ``llama-cpp-python``.

llama.cpp gets token ids from model-zoo's tokenizer (rebuilt from the file's metadata, see
``vocab``) and returns token ids, so the prompt is exactly the one the native runner would feed
and the chat template is rendered by model-zoo, never by llama.cpp's own template engine.
``llama-cpp-python`` compiles llama.cpp when installed from PyPI (no wheels there); it is not a
model-zoo dependency, and a missing one is a ``MissingDependencyError``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ...errors import MissingDependencyError
from ..chat import ChatProfile, GenerationSettings, messages_with_system


class LlamaCppRunner:
    """A Runner-like object over ``llama_cpp.Llama``: ``chat``, ``generate``, ``generate_ids``,
    ``logits``."""

    backend = "llama.cpp"

    def __init__(
        self, llm: Any, tokenizer: Any, profile: ChatProfile, path: Path, spec: Any = None
    ) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.profile = profile
        self.path = path
        self.spec = spec
        self.model = None  # llama.cpp owns the weights

    def logits(self, ids: Sequence[int]) -> Any:
        """llama.cpp's logits at every position of ``ids`` (numpy, [len(ids), vocab])."""
        import numpy as np

        self.llm.reset()
        self.llm.eval(list(ids))
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32)

    def generate_ids(self, prompt: Sequence[int], **generation: Any) -> list[int]:
        """Token ids after ``prompt`` until a stop token or ``max_new_tokens`` (stop excluded)."""
        s = self.profile.settings(**generation)
        return self._run(list(prompt), s)

    def _run(self, prompt: list[int], s: GenerationSettings) -> list[int]:
        if s.seed is not None:
            self.llm.set_seed(int(s.seed))
        stops = set(s.stop_token_ids)
        out: list[int] = []
        if s.max_new_tokens == 0:
            return out
        tokens = self.llm.generate(
            prompt,
            temp=0.0 if s.greedy else s.temperature,
            top_k=s.top_k if s.top_k else 0,
            top_p=s.top_p,
            repeat_penalty=s.repetition_penalty,
            reset=True,
        )
        for token in tokens:
            if int(token) in stops:
                break
            out.append(int(token))
            if len(out) >= s.max_new_tokens:
                break
        return out

    def generate(self, prompts: str | Sequence[str], **generation: Any) -> str | list[str]:
        single = isinstance(prompts, str)
        items = [prompts] if isinstance(prompts, str) else list(prompts)
        s = self.profile.settings(**generation)
        outs = [
            self.tokenizer.decode(self._run(self.tokenizer.encode(p), s), skip_special_tokens=True)
            for p in items
        ]
        return outs[0] if single else outs

    def chat_ids(
        self,
        messages: str | Sequence[dict[str, Any]],
        *,
        system: str | None = None,
        thinking: bool = False,
    ) -> list[int]:
        msgs = (
            [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)
        )
        convo = messages_with_system(
            msgs, system=system, thinking=thinking, default_system=self.profile.default_system
        )
        return list(
            self.tokenizer.apply_chat_template(
                convo, add_generation_prompt=True, tokenize=True, template=self.profile.template
            )
        )

    def chat(
        self,
        messages: str | Sequence[dict[str, Any]],
        *,
        system: str | None = None,
        thinking: bool = False,
        stream: bool = False,
        **generation: Any,
    ) -> str | Iterator[str]:
        ids = self.chat_ids(messages, system=system, thinking=thinking)
        reply_ids = self._run(ids, self.profile.settings(thinking=thinking, **generation))
        reply = self.tokenizer.decode(reply_ids, skip_special_tokens=True)
        return iter([reply]) if stream else reply


def load_llama_cpp(
    path: Path,
    tokenizer: Any,
    profile: ChatProfile,
    *,
    spec: Any = None,
    n_ctx: int | None = None,
    **options: Any,
) -> LlamaCppRunner:
    """Open ``path`` with llama.cpp (``llama-cpp-python``; installed separately)."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise MissingDependencyError("llama-cpp-python", feature="backend='llama.cpp'")
    from llama_cpp import Llama

    context = n_ctx or min(getattr(spec, "max_position_embeddings", 4096) or 4096, 4096)
    llm = Llama(model_path=str(path), n_ctx=context, logits_all=True, verbose=False, **options)
    return LlamaCppRunner(llm, tokenizer, profile, path, spec)
