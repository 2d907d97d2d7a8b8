"""Optional serving engines (vLLM, LMDeploy) behind the same ``chat`` / ``generate`` calls.

Both engines load InternLM2/3 with their own native model code. What they must not do is run
Python shipped inside the checkpoint: model-zoo never sets ``trust_remote_code``. The engine is
handed model-zoo's export of the checkpoint (``model_zoo.export.vllm``): hard links to the
verified weights, a ``config.json`` without ``auto_map`` whose model type model-zoo's config
classes answer (registered here, and in vLLM's other processes by model-zoo's vLLM plugin), a
``tokenizer.json`` written from the native tokenizer, and no Python file at all, so LMDeploy's
internal ``trust_remote_code=True`` finds nothing to run either. Prompts are still tokenized
by model-zoo and fed to the engine as token ids.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import IncompatibleCheckpointError, MissingDependencyError, UsageError
from .chat import ChatProfile, GenerationSettings, messages_with_system
from .tokenizer import InternLMTokenizer

BACKENDS = ("transformers", "vllm", "lmdeploy")


def _refuse_remote_code(path: Path, engine: str, exc: BaseException) -> IncompatibleCheckpointError:
    return IncompatibleCheckpointError(
        str(path),
        f"{engine} wants to run Python code shipped with the checkpoint (trust_remote_code): {exc}",
        hint="model-zoo never executes checkpoint code. Use backend='transformers' (the native "
        "loader), or a newer engine release that supports this architecture natively.",
    )


class EngineRunner:
    """A Runner-like wrapper over an external engine: ``chat`` and ``generate`` only."""

    def __init__(
        self,
        engine: str,
        handle: Any,
        tokenizer: InternLMTokenizer,
        profile: ChatProfile,
        path: Path,
    ) -> None:
        self.backend = engine
        self.engine = handle
        self.tokenizer = tokenizer
        self.profile = profile
        self.path = path
        self.model = None  # no torch module: the engine owns the weights

    def _run(self, prompts: list[list[int]], s: GenerationSettings) -> list[str]:
        if self.backend == "vllm":
            from vllm import SamplingParams

            params = SamplingParams(
                temperature=0.0 if s.greedy else s.temperature,
                top_p=s.top_p,
                top_k=s.top_k or -1,
                repetition_penalty=s.repetition_penalty,
                max_tokens=s.max_new_tokens,
                seed=s.seed,
                stop_token_ids=list(s.stop_token_ids),
                detokenize=False,
            )
            outs = self.engine.generate(
                [{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False
            )
            return [
                self.tokenizer.decode(o.outputs[0].token_ids, skip_special_tokens=True)
                for o in outs
            ]
        from lmdeploy import GenerationConfig

        gen = GenerationConfig(
            do_sample=not s.greedy,
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k or 0,
            repetition_penalty=s.repetition_penalty,
            max_new_tokens=s.max_new_tokens,
            random_seed=s.seed,
            stop_token_ids=list(s.stop_token_ids),
        )
        texts = [self.tokenizer.decode(p, skip_special_tokens=False) for p in prompts]
        return [r.text for r in self.engine(texts, gen_config=gen)]

    def generate(self, prompts: str | Sequence[str], **generation: Any) -> str | list[str]:
        single = isinstance(prompts, str)
        items = [prompts] if isinstance(prompts, str) else list(prompts)
        s = self.profile.settings(**generation)
        out = self._run([self.tokenizer.encode(p) for p in items], s)
        return out[0] if single else out

    def chat(
        self,
        messages: str | Sequence[dict[str, Any]],
        *,
        system: str | None = None,
        thinking: bool = False,
        stream: bool = False,
        **generation: Any,
    ) -> str | Iterator[str]:
        msgs = (
            [{"role": "user", "content": messages}] if isinstance(messages, str) else list(messages)
        )
        convo = messages_with_system(
            msgs, system=system, thinking=thinking, default_system=self.profile.default_system
        )
        ids = self.tokenizer.apply_chat_template(
            convo, add_generation_prompt=True, tokenize=True, template=self.profile.template
        )
        reply = self._run([list(ids)], self.profile.settings(thinking=thinking, **generation))[0]
        return iter([reply]) if stream else reply


def load_engine(
    engine: str,
    path: Path,
    tokenizer: InternLMTokenizer,
    profile: ChatProfile,
    *,
    dtype: str = "auto",
    **engine_options: Any,
) -> EngineRunner:
    """Hand ``path`` to vLLM or LMDeploy (installed separately); never with trust_remote_code."""
    if engine not in ("vllm", "lmdeploy"):
        raise UsageError(f"backend {engine!r} is not one of {', '.join(BACKENDS)}.")
    if importlib.util.find_spec(engine) is None:
        raise MissingDependencyError(engine, feature=f"backend={engine!r}")
    from ..export.hf_config import register
    from ..export.vllm import export_vllm

    exported = export_vllm(path).path
    register()  # this process; vLLM's own processes get it from the plugin
    try:
        if engine == "vllm":
            from vllm import LLM

            handle = LLM(
                model=str(exported),
                trust_remote_code=False,
                skip_tokenizer_init=True,
                dtype=dtype,
                **engine_options,
            )
        else:
            import lmdeploy

            handle = lmdeploy.pipeline(str(exported), **engine_options)
    except Exception as exc:
        if "trust_remote_code" in str(exc):
            raise _refuse_remote_code(path, engine, exc) from None
        raise
    return EngineRunner(engine, handle, tokenizer, profile, path)
