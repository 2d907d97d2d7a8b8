"""``load(name_or_path) -> Runner``: a native InternLM model, its tokenizer, chat and generation.

The model is transformers' Llama implementation filled from the InternLM checkpoint (see
``modeling`` and ``convert``); no file of the checkpoint is ever executed and
``trust_remote_code`` is never set.

For the reward model (``InternLM2ForRewardModel``) ``runner.model`` is an
``InternLM2RewardModel`` (decoder ``runner.model.model`` + ``runner.model.v_head``);
``runner.hidden_states(ids, mask)`` and ``runner.v_head`` are what scoring builds on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, overload

import torch
from torch import nn

from ..errors import UsageError
from .chat import (
    ChatProfile,
    GenerationSettings,
    messages_with_system,
)
from .config import ModelSpec, read_config
from .devices import (
    Placement,
    default_budgets,
    dispatch,
    plan_placement,
    resolve_devices,
    resolve_dtype,
)
from .generate import Completion, generate_ids, stream_ids
from .profile import make_profile
from .tokenizer import InternLMTokenizer, StreamDecoder

if TYPE_CHECKING:
    from .backends import EngineRunner
    from .gguf.llamacpp import LlamaCppRunner

Messages = str | Sequence[Mapping[str, Any]]


@dataclass
class Runner:
    """A loaded model with its tokenizer: ``chat``, ``generate``, ``hidden_states``."""

    model: nn.Module
    tokenizer: InternLMTokenizer | None
    spec: ModelSpec
    path: Path
    placement: Placement
    dtype: torch.dtype
    profile: ChatProfile
    name: str | None = None
    backend: str = "transformers"
    quantization: str | None = None
    info: Any = field(default=None, repr=False)

    # ---------------------------------------------------------------- basics

    @property
    def device(self) -> torch.device:
        """Where inputs go (the device of the embedding)."""
        return self.placement.device_for("model.embed_tokens")

    @property
    def is_reward(self) -> bool:
        return self.spec.is_reward

    @property
    def v_head(self) -> nn.Linear:
        if not self.spec.is_reward:
            raise UsageError(f"{self.path} is not a reward model; it has no v_head.")
        return cast(nn.Linear, self.model.v_head)

    @property
    def reward_token_id(self) -> int | None:
        return self.spec.reward_token_id

    @property
    def pad_token_id(self) -> int:
        for value in (
            self.tokenizer.pad_token_id if self.tokenizer else None,
            self.spec.pad_token_id,
            self.tokenizer.eos_token_id if self.tokenizer else None,
        ):
            if value is not None:
                return int(value)
        return 0

    def _require_tokenizer(self) -> InternLMTokenizer:
        if self.tokenizer is None:
            raise UsageError(f"{self.path} has no tokenizer.model; pass token ids instead of text.")
        return self.tokenizer

    def _require_lm(self) -> None:
        if self.spec.is_reward:
            raise UsageError(
                f"{self.path} is a reward model: it scores text, it does not generate. "
                "Use model_zoo.load_reward() (CLI: model-zoo score / serve-reward)."
            )

    def hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Final (normed) hidden states ``[batch, seq, hidden]`` of the decoder."""
        decoder: Any = self.model.model  # a submodule: torch types it Tensor | Module
        with torch.inference_mode():
            ids = input_ids.to(self.device)
            mask = attention_mask.to(self.device) if attention_mask is not None else None
            return decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state

    @property
    def unpadded(self) -> bool:
        """Whether :meth:`last_hidden_states` can skip padding (one device, SDPA attention)."""
        from .unpadded import supports_unpadded

        return supports_unpadded(self.model.model, self.placement.devices)

    def last_hidden_states(self, seqs: Sequence[Sequence[int]]) -> torch.Tensor:
        """Final hidden state ``[len(seqs), hidden]`` at each sequence's last token.

        Computed without padding when :attr:`unpadded`, else from a right-padded batch.
        """
        with torch.inference_mode():
            if self.unpadded:
                from .unpadded import last_hidden_states

                return last_hidden_states(self.model.model, seqs, self.device)
            from .unpadded import right_pad

            ids, mask = right_pad(seqs, self.pad_token_id)
            hidden = self.hidden_states(ids, mask)
            last = mask.sum(dim=1).to(hidden.device) - 1
            return hidden[torch.arange(len(seqs), device=hidden.device), last]

    # ---------------------------------------------------------------- generation

    def settings(self, *, thinking: bool = False, **generation: Any) -> GenerationSettings:
        """The generation settings a call would use: profile defaults, then ``generation``."""
        out = self.profile.settings(thinking=thinking, **generation)
        if "max_new_tokens" not in generation and self.device.type == "cpu":
            _hint_cpu_length(out.max_new_tokens)
        return out

    def generate_ids(self, prompts: Sequence[Sequence[int]], **generation: Any) -> list[Completion]:
        """Batched generation from token ids (left-padded); stop tokens are not included."""
        self._require_lm()
        if not prompts:  # nothing to do, like score_batch([])
            return []
        return generate_ids(
            self.model,
            prompts,
            self.settings(**generation),
            pad_id=self.pad_token_id,
            device=self.device,
            vocab_size=self.spec.vocab_size,
            recompute_beyond=self._recompute_beyond(),
        )

    def generate(
        self, prompts: str | Sequence[str], *, add_special_tokens: bool = True, **generation: Any
    ) -> str | list[str]:
        """Plain continuation of each prompt (batched with left padding)."""
        tok = self._require_tokenizer()
        single = isinstance(prompts, str)
        items = [prompts] if isinstance(prompts, str) else list(prompts)
        encoded = [tok.encode(p, add_special_tokens=add_special_tokens) for p in items]
        outs = [
            tok.decode(c.ids, skip_special_tokens=True)
            for c in self.generate_ids(encoded, **generation)
        ]
        return outs[0] if single else outs

    def chat_ids(
        self, messages: Messages, *, system: str | None = None, thinking: bool = False
    ) -> list[int]:
        """The prompt ``chat`` feeds the model: template applied, generation prompt added."""
        tok = self._require_tokenizer()
        from .messages import check_conversation

        if isinstance(messages, str):
            msgs: list[dict[str, str]] = [{"role": "user", "content": messages}]
        elif isinstance(messages, Sequence) and not messages:
            raise UsageError(
                "chat needs at least one message, e.g. [{'role': 'user', 'content': 'Hello'}]"
            )
        else:  # a malformed message is an error naming it, not a TypeError from the template
            msgs = check_conversation(messages, "messages")
        convo = messages_with_system(
            msgs, system=system, thinking=thinking, default_system=self.profile.default_system
        )
        ids = tok.apply_chat_template(
            convo, add_generation_prompt=True, tokenize=True, template=self.profile.template
        )
        return list(ids)

    @overload
    def chat(
        self,
        messages: Messages,
        *,
        system: str | None = ...,
        thinking: bool = ...,
        stream: Literal[False] = ...,
        **generation: Any,
    ) -> str: ...

    @overload
    def chat(
        self,
        messages: Messages,
        *,
        system: str | None = ...,
        thinking: bool = ...,
        stream: Literal[True],
        **generation: Any,
    ) -> Iterator[str]: ...

    @overload
    def chat(
        self,
        messages: Messages,
        *,
        system: str | None = ...,
        thinking: bool = ...,
        stream: bool,
        **generation: Any,
    ) -> str | Iterator[str]: ...

    def chat(
        self,
        messages: Messages,
        *,
        system: str | None = None,
        thinking: bool = False,
        stream: bool = False,
        **generation: Any,
    ) -> str | Iterator[str]:
        """The assistant's reply to ``messages`` (a string is one user message).

        ``system=None`` uses the model's default system prompt (the deep-thinking prompt when
        ``thinking``); ``system=""`` sends none. ``stream=True`` returns an iterator of text
        pieces. ``generation`` overrides the defaults (temperature, top_p, top_k,
        repetition_penalty, max_new_tokens, do_sample, seed, stop_token_ids).
        """
        self._require_lm()
        ids = self.chat_ids(messages, system=system, thinking=thinking)
        settings = self.settings(thinking=thinking, **generation)
        pieces = self._stream(ids, settings)
        return pieces if stream else "".join(pieces)

    def _stream(self, ids: list[int], settings: GenerationSettings) -> Iterator[str]:
        tok = self._require_tokenizer()
        decoder = StreamDecoder(tok, skip_special_tokens=True)
        stops = set(settings.stop_token_ids)
        for step in stream_ids(
            self.model,
            [ids],
            settings,
            pad_id=self.pad_token_id,
            device=self.device,
            vocab_size=self.spec.vocab_size,
            recompute_beyond=self._recompute_beyond(),
        ):
            token = step[0]
            if token is None or token in stops:
                break
            piece = decoder.push(token)
            if piece:
                yield piece
        tail = decoder.flush()
        if tail:
            yield tail

    def _recompute_beyond(self) -> int | None:
        scaling = self.spec.rope_scaling
        if self.spec.family == "internlm" and scaling is not None and scaling.type == "dynamic":
            return self.spec.max_position_embeddings
        return None


# -------------------------------------------------------------------- load


def placement_for(
    spec: ModelSpec,
    devices: tuple[torch.device, ...],
    dtype: torch.dtype,
    max_memory: Mapping[Any, int | str] | None,
) -> Placement:
    """Which device holds each module, from the module sizes the registry's formula gives."""
    size = torch.empty((), dtype=dtype).element_size()
    counts = spec.param_counts()
    sizes = {
        "embed": counts.embeddings * size,
        "layer": counts.per_layer * size,
        "final": counts.head * size,
    }
    return plan_placement(
        sizes, counts.num_hidden_layers, devices, default_budgets(devices, max_memory)
    )


#: transformers' attention implementations that fit a native Llama module.
_ATTENTION_IMPLEMENTATIONS = (
    "sdpa",
    "eager",
    "flash_attention_2",
    "flash_attention_3",
    "flash_attention_4",
    "flex_attention",
)


def _load_native(
    path: Path, spec: Any, placement: Any, dtype: Any, attn: str | None, weights: Any
) -> Any:
    """The native loader, with a missing flash-attention package named instead of transformers'
    ImportError."""
    from ..errors import MissingDependencyError
    from .loader import load_native

    try:
        return load_native(path, spec, placement, dtype, attn=attn, weights=weights)
    except ImportError as exc:
        if attn is None or not attn.startswith("flash_attention"):
            raise
        raise MissingDependencyError(
            "flash-attn", feature=f"attn={attn!r} (or use attn='sdpa'): {exc}"
        ) from None


@overload
def load(
    name_or_path: str | Path,
    *,
    device: str | torch.device = ...,
    dtype: str | torch.dtype = ...,
    quantization: str | None = ...,
    attn: str | None = ...,
    max_memory: Mapping[Any, int | str] | None = ...,
    backend: Literal["transformers"] = ...,
    gguf: str | None = ...,
) -> Runner: ...


@overload
def load(
    name_or_path: str | Path,
    *,
    device: str | torch.device = ...,
    dtype: str | torch.dtype = ...,
    quantization: str | None = ...,
    attn: str | None = ...,
    max_memory: Mapping[Any, int | str] | None = ...,
    backend: str,
    gguf: str | None = ...,
) -> Runner | EngineRunner | LlamaCppRunner: ...


def load(
    name_or_path: str | Path,
    *,
    device: str | torch.device = "auto",
    dtype: str | torch.dtype = "auto",
    quantization: str | None = None,
    attn: str | None = None,
    max_memory: Mapping[Any, int | str] | None = None,
    backend: str = "transformers",
    gguf: str | None = None,
) -> Runner | EngineRunner | LlamaCppRunner:
    """Load an InternLM checkpoint (registry name, pulled if missing, a directory, or a GGUF file).

    ``device``: "auto" (every CUDA GPU, layers split across several; else the CPU with a
    warning), "cpu", "cuda:N". ``dtype``: "auto" (bf16 on GPUs that support it, else fp16;
    fp32 on CPU) or a dtype name. ``quantization``: None, "8bit" or "4bit" (bitsandbytes).
    ``attn``: transformers attention implementation ("sdpa" default, "eager",
    "flash_attention_2"). ``max_memory``: per-device budgets such as ``{0: "20GiB", 1: "20GiB"}``.
    ``backend``: "transformers" (native), "vllm" or "lmdeploy" (installed separately), or
    "llama.cpp" for GGUF files (llama-cpp-python, installed separately). ``gguf``: a quantization
    level ("q4_k_m") to load the model's GGUF variant; a ``.gguf`` path needs none.
    """
    from .checkpoint import find_weights
    from .gguf.resolve import looks_like_gguf
    from .resolve import resolve_checkpoint

    if attn is not None and attn not in _ATTENTION_IMPLEMENTATIONS:
        raise UsageError(
            f"attn {attn!r} is not one of {', '.join(_ATTENTION_IMPLEMENTATIONS)} (or None: sdpa)."
        )
    if backend == "llama.cpp" or looks_like_gguf(name_or_path, gguf):
        from .gguf.load import load_gguf_request

        return load_gguf_request(
            name_or_path,
            gguf=gguf,
            device=device,
            dtype=dtype,
            attn=attn,
            max_memory=max_memory,
            backend=backend,
            quantization=quantization,
        )
    resolved = resolve_checkpoint(name_or_path)
    path, info = resolved.path, resolved.info
    spec = read_config(path)
    tokenizer = (
        InternLMTokenizer.from_pretrained(path) if (path / "tokenizer.model").is_file() else None
    )
    profile = make_profile(spec, tokenizer, path, info)
    name = info.name if info is not None else None
    if backend != "transformers":
        from .backends import load_engine

        if tokenizer is None:
            raise UsageError(f"backend={backend!r} needs the checkpoint's tokenizer.model.")
        engine_dtype = str(dtype).removeprefix("torch.")
        return load_engine(backend, path, tokenizer, profile, dtype=engine_dtype)
    devices = resolve_devices(device)
    torch_dtype = resolve_dtype(dtype, devices[0])
    weights = find_weights(path)
    if quantization is not None:
        from .quantize import MODES, quantize_decoder, require_bitsandbytes

        if quantization not in MODES:
            raise UsageError(
                f"quantization {quantization!r} is not one of {', '.join(MODES)} (or None)."
            )
        if (
            len(devices) > 1 or devices[0].type != "cuda"
        ):  # before the install advice: no GPU, no point
            raise UsageError(
                f"quantization={quantization!r} needs exactly one CUDA device; "
                f"got {', '.join(map(str, devices))}."
            )
        require_bitsandbytes(quantization)
        cpu = Placement((torch.device("cpu"),), {"": torch.device("cpu")})
        model = _load_native(path, spec, cpu, torch_dtype, attn, weights)
        model = quantize_decoder(model, quantization, devices[0], torch_dtype)
        decoder: Any = model.model  # a submodule: torch types it Tensor | Module
        decoder.rotary_emb.inv_freq = decoder.rotary_emb.inv_freq.to(devices[0])
        placement = Placement(devices, {"": devices[0]})
    else:
        placement = placement_for(spec, devices, torch_dtype, max_memory)
        model = _load_native(path, spec, placement, torch_dtype, attn, weights)
        dispatch(model, placement)
    return Runner(
        model=model,
        tokenizer=tokenizer,
        spec=spec,
        path=path,
        placement=placement,
        dtype=torch_dtype,
        profile=profile,
        name=name,
        quantization=quantization,
        info=info,
    )


_CPU_HINTED = False
_CPU_HINT_ABOVE = 256  # new tokens: more than this on the CPU and the first call seems to hang


def _hint_cpu_length(max_new_tokens: int) -> None:
    """Warn once per process: the model's default reply length (1024 tokens) takes minutes on a
    CPU, and a newcomer trying the README's snippet thinks the call hangs."""
    global _CPU_HINTED
    if _CPU_HINTED or max_new_tokens <= _CPU_HINT_ABOVE:
        return
    _CPU_HINTED = True
    import warnings

    warnings.warn(
        f"generating up to {max_new_tokens} new tokens on the CPU can take minutes; pass "
        "max_new_tokens=64 (or any small number; on the command line -n 64) for a quick answer",
        UserWarning,
        stacklevel=3,
    )


__all__ = [
    "Messages",
    "Runner",
    "load",
]
