"""``load_reward(name_or_path) -> RewardModel``: InternLM2-Reward loaded natively, ready to score.

Loading goes through the runner (no hub code, verified bytes, device and dtype rules); this
module adds the reward pieces: the reward token from ``config.json``, the chat template and
tokenizer as the reward recipe uses them, and the batched torch scorer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import IncompatibleCheckpointError
from .conversation import Conversation
from .model import RewardModel, check_positive
from .torch_scorer import TorchScorer

if TYPE_CHECKING:  # pragma: no cover
    from ..runner.tokenizer import InternLMTokenizer

REWARD_TOKEN = "[UNUSED_TOKEN_130]"  # InternLM2-Reward's reward token, when config.json omits the id


class TemplateCodec:
    """The checkpoint's chat template (no generation prompt) and tokenizer (no added special tokens)."""

    def __init__(self, tokenizer: InternLMTokenizer, template: str | None) -> None:
        self.tokenizer = tokenizer
        self.template = template

    def render(self, conversation: Conversation) -> str:
        text = self.tokenizer.apply_chat_template(
            [dict(m) for m in conversation], add_generation_prompt=False, tokenize=False, template=self.template
        )
        return str(text)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)


@dataclass(frozen=True)
class RewardInfo:
    """What the recipe needs from a checkpoint besides its weights."""

    name: str
    reward_token_id: int
    pad_token_id: int
    max_length: int
    vocab_size: int | None = None


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """The checkpoint directory for a registry name (pulled when missing) or a path."""
    from ..runner.resolve import resolve_checkpoint as resolve

    return resolve(name_or_path).path


def _require_reward_name(name_or_path: str | Path) -> None:
    """Refuse a registry name of a non-reward model before it is pulled."""
    from ..runner.resolve import registry_entry

    info = registry_entry(name_or_path)
    if info is not None and info.kind != "reward":
        raise IncompatibleCheckpointError(
            info.name,
            f"{info.architecture} is not a reward model",
            hint="Scoring needs an InternLM2-Reward model (model-zoo list --kind reward); use model_zoo.load() "
            "or model-zoo run for chat models.",
        )


def _require_reward(spec: Any, path: Path) -> None:
    if not spec.is_reward:
        raise IncompatibleCheckpointError(
            str(path),
            f"{spec.architecture} is not a reward model",
            hint="load_reward needs an InternLM2ForRewardModel checkpoint such as InternLM2-1.8B-Reward; "
            "use model_zoo.load() for chat models.",
        )


def _reward_info(spec: Any, tokenizer: InternLMTokenizer, path: Path, name: str | None) -> RewardInfo:
    _require_reward(spec, path)
    reward_id = spec.reward_token_id if spec.reward_token_id is not None else tokenizer.token_to_id(REWARD_TOKEN)
    if reward_id is None:
        raise IncompatibleCheckpointError(
            str(path), f"config.json has no reward_token_id and the tokenizer has no {REWARD_TOKEN} token"
        )
    pad = next((int(v) for v in (tokenizer.pad_token_id, spec.pad_token_id, tokenizer.eos_token_id) if v is not None), 0)
    vocab = int(spec.vocab_size) if spec.vocab_size else None
    return RewardInfo(name or path.name, int(reward_id), pad, int(spec.max_position_embeddings), vocab)


def load_reward_codec(name_or_path: str | Path) -> tuple[TemplateCodec, RewardInfo]:
    """Tokenizer, chat template and reward settings only, without the weights (a Ray driver's share)."""
    from ..runner.api import make_profile
    from ..runner.config import read_config
    from ..runner.resolve import resolve_checkpoint as resolve
    from ..runner.tokenizer import InternLMTokenizer

    resolved = resolve(name_or_path)
    spec = read_config(resolved.path)
    tokenizer = _require_tokenizer(resolved.path, InternLMTokenizer)
    profile = make_profile(spec, tokenizer, resolved.path, resolved.info)
    name = resolved.info.name if resolved.info is not None else None
    return TemplateCodec(tokenizer, profile.template), _reward_info(spec, tokenizer, resolved.path, name)


_NO_TOKENIZER = "A reward model scores text: copy tokenizer.model and tokenizer_config.json next to the weights."


def _require_tokenizer(path: Path, cls: Any) -> Any:
    if not (path / "tokenizer.model").is_file():
        raise IncompatibleCheckpointError(str(path), "has no tokenizer.model", hint=_NO_TOKENIZER)
    return cls.from_pretrained(path)


def load_reward(
    name_or_path: str | Path,
    *,
    device: str = "auto",
    dtype: str = "auto",
    max_length: int | None = None,
    max_tokens_per_batch: int | None = None,
    truncate: bool = False,
    attn: str | None = None,
) -> RewardModel:
    """Load an InternLM2-Reward checkpoint (registry name, pulled if missing, or a directory).

    ``device`` / ``dtype`` follow ``model_zoo.load`` ("auto": CUDA in bf16 when present, else
    CPU in fp32). ``max_length`` caps tokens per conversation (default: the model's
    ``max_position_embeddings``); longer inputs raise ``InputTooLongError`` unless
    ``truncate=True``, which keeps the last ``max_length`` tokens. ``max_tokens_per_batch``
    bounds padded tokens per forward pass (default 16384).
    """
    from ..runner.api import load
    from ..runner.config import read_config
    from ..runner.resolve import resolve_checkpoint as resolve

    check_positive(max_length=max_length, max_tokens_per_batch=max_tokens_per_batch)
    _require_reward_name(name_or_path)
    resolved = resolve(name_or_path)
    _require_reward(read_config(resolved.path), resolved.path)  # refuse before reading any weights
    runner = load(resolved.path, device=device, dtype=dtype, attn=attn)
    if runner.tokenizer is None:
        raise IncompatibleCheckpointError(str(runner.path), "has no tokenizer.model", hint=_NO_TOKENIZER)
    tokenizer = runner.tokenizer
    name = resolved.info.name if resolved.info is not None else runner.name
    info = _reward_info(runner.spec, tokenizer, runner.path, name)
    scorer = TorchScorer(
        runner.hidden_states,
        runner.v_head.weight,
        pad_token_id=info.pad_token_id,
        device=runner.device,
        max_tokens_per_batch=max_tokens_per_batch,
        runner=runner,
        last_hidden=runner.last_hidden_states if runner.unpadded else None,
    )
    return RewardModel(
        scorer,
        TemplateCodec(tokenizer, runner.profile.template),
        reward_token_id=info.reward_token_id,
        max_length=info.max_length if max_length is None else max_length,
        pad_token_id=info.pad_token_id,
        name=info.name,
        truncate=truncate,
        vocab_size=info.vocab_size,
    )
