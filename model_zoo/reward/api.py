"""``load_reward(name_or_path) -> RewardModel``: a reward model loaded natively, ready to score.

Loading goes through the runner (no hub code, verified bytes, device and dtype rules); this
module adds the reward pieces: the reward token from ``config.json``, the chat template and
tokenizer as the reward recipe uses them, and the batched torch scorer.

Two scoring styles share that scorer. ``conversation`` (InternLM2-Reward, the StepProver critic)
gives a :class:`RewardModel`; ``reference-based`` (POLAR) gives a
:class:`~model_zoo.reward.polar.PolarRewardModel`. The style comes from, in this order: the
``style=`` argument; the registry entry (a registry name, or a directory pulled by model-zoo);
the checkpoint itself: a tokenizer with POLAR's ``<|reward|>`` separator as a token of its own
(other than the reward token) is reference-based (:func:`~model_zoo.reward.polar.detect_style`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import IncompatibleCheckpointError, UsageError
from ..runner.messages import Conversation
from .model import RewardModel, check_positive
from .polar import SEPARATOR, PolarOptions, PolarRewardModel, detect_style
from .torch_scorer import TorchScorer

if TYPE_CHECKING:  # pragma: no cover
    from ..registry.info import ModelInfo
    from ..runner.tokenizer import InternLMTokenizer

STYLES: tuple[str, ...] = ("conversation", "reference-based")

_REWARD_TOKEN = (
    "[UNUSED_TOKEN_130]"  # InternLM2-Reward's reward token, when config.json omits the id
)


class TemplateCodec:
    """The checkpoint's chat template (no generation prompt) and tokenizer (no added special
    tokens)."""

    def __init__(self, tokenizer: InternLMTokenizer, template: str | None) -> None:
        self.tokenizer = tokenizer
        self.template = template

    def render(self, conversation: Conversation) -> str:
        text = self.tokenizer.apply_chat_template(
            [dict(m) for m in conversation],
            add_generation_prompt=False,
            tokenize=False,
            template=self.template,
        )
        return str(text)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)


@dataclass(frozen=True)
class RecipeSettings:
    """What the recipe needs from a checkpoint besides its weights (the registry's
    ``RewardInfo`` is what the registry records about a reward model, not this)."""

    name: str
    reward_token_id: int
    pad_token_id: int
    max_length: int
    vocab_size: int | None = None


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """The checkpoint directory for a registry name (pulled when missing) or a path."""
    from ..runner.resolve import resolve_checkpoint as resolve

    return resolve(name_or_path).path


def require_reward_name(name_or_path: str | Path) -> None:
    """Refuse a registry name of a non-reward model before it is pulled."""
    from ..runner.resolve import registry_entry

    info = registry_entry(name_or_path)
    if info is not None and info.kind != "reward":
        raise IncompatibleCheckpointError(
            info.name,
            f"{info.architecture} is not a reward model",
            hint="Scoring needs a reward model (model-zoo list --kind reward); "
            "use model_zoo.load() or model-zoo run for chat models.",
        )


def _require_reward(spec: Any, path: Path) -> None:
    if not spec.is_reward:
        raise IncompatibleCheckpointError(
            str(path),
            f"{spec.architecture} is not a reward model",
            hint="load_reward needs an InternLM2ForRewardModel checkpoint "
            "(model-zoo list --kind reward); use model_zoo.load() for chat models.",
        )


def _recipe_settings(
    spec: Any, tokenizer: InternLMTokenizer, path: Path, name: str | None
) -> RecipeSettings:
    _require_reward(spec, path)
    reward_id = (
        spec.reward_token_id
        if spec.reward_token_id is not None
        else tokenizer.token_to_id(_REWARD_TOKEN)
    )
    if reward_id is None:
        raise IncompatibleCheckpointError(
            str(path),
            f"config.json has no reward_token_id and the tokenizer has no {_REWARD_TOKEN} token",
        )
    pad = next(
        (
            int(v)
            for v in (tokenizer.pad_token_id, spec.pad_token_id, tokenizer.eos_token_id)
            if v is not None
        ),
        0,
    )
    vocab = int(spec.vocab_size) if spec.vocab_size else None
    return RecipeSettings(
        name or path.name, int(reward_id), pad, int(spec.max_position_embeddings), vocab
    )


def scoring_style(
    style: str | None,
    info: ModelInfo | None,
    tokenizer: InternLMTokenizer,
    reward_token_id: int,
    path: Path,
) -> str:
    """The scoring style to load with: ``style`` if given, else the registry's, else the
    checkpoint's.

    A reference-based model must have POLAR's ``<|reward|>`` separator as one token: without it
    the scored text would split the separator into ordinary pieces and every score would be wrong.
    """
    if style is not None and style not in STYLES:
        raise UsageError(f"style must be one of {', '.join(STYLES)}, got {style!r}", style=style)
    chosen = (
        style
        or (info.scoring_style if info is not None else None)
        or detect_style(tokenizer, reward_token_id)
    )
    if chosen == "reference-based":
        sep = tokenizer.token_to_id(SEPARATOR)
        if sep is None or sep == reward_token_id:
            raise IncompatibleCheckpointError(
                str(path),
                f"its tokenizer has no {SEPARATOR} token of its own, which the reference-based "
                "(POLAR) format needs",
                hint="Load a POLAR checkpoint, or pass style='conversation' for a conversation "
                "reward model.",
            )
    return chosen


def load_reward_codec(name_or_path: str | Path) -> tuple[TemplateCodec, RecipeSettings]:
    """Tokenizer, chat template and reward settings only, without the weights (a Ray driver's
    share).

    Conversation-style models only: the Ray pool builds a conversation :class:`RewardModel`, so a
    reference-based (POLAR) checkpoint is refused here rather than scored with the wrong recipe.
    """
    from ..runner.api import make_profile
    from ..runner.config import read_config
    from ..runner.resolve import resolve_checkpoint as resolve
    from ..runner.tokenizer import InternLMTokenizer

    resolved = resolve(name_or_path)
    spec = read_config(resolved.path)
    tokenizer = _require_tokenizer(resolved.path, InternLMTokenizer)
    profile = make_profile(spec, tokenizer, resolved.path, resolved.info)
    name = resolved.info.name if resolved.info is not None else None
    info = _recipe_settings(spec, tokenizer, resolved.path, name)
    if (
        scoring_style(None, resolved.info, tokenizer, info.reward_token_id, resolved.path)
        != "conversation"
    ):
        raise IncompatibleCheckpointError(
            str(resolved.path),
            "is a reference-based (POLAR) reward model, which the Ray pool does not serve yet",
            hint="Load it with model_zoo.load_reward() in one process.",
        )
    return TemplateCodec(tokenizer, profile.template), info


_NO_TOKENIZER = (
    "A reward model scores text: copy tokenizer.model and tokenizer_config.json next to the "
    "weights."
)


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
    style: str | None = None,
    reference_options: PolarOptions | None = None,
) -> RewardModel:
    """Load a reward model (registry name, pulled if missing, or a directory).

    ``device`` / ``dtype`` follow ``model_zoo.load`` ("auto": CUDA in bf16 when present, else
    CPU in fp32). ``max_length`` caps tokens per scored sequence (default: the model's
    ``max_position_embeddings``); longer inputs raise ``InputTooLongError`` unless
    ``truncate=True``, which keeps the last ``max_length`` tokens. ``max_tokens_per_batch``
    bounds padded tokens per forward pass (default 16384).

    ``style`` (``conversation`` or ``reference-based``) overrides the scoring style read from
    the registry or the checkpoint (module doc). A reference-based model is a
    :class:`~model_zoo.reward.polar.PolarRewardModel`; ``reference_options`` sets its truncation
    rules (default: POLAR's client's, 16384 tokens in all, 4096 per reference and output, cut
    from the left).
    """
    from ..runner.api import load
    from ..runner.config import read_config
    from ..runner.resolve import resolve_checkpoint as resolve
    from ..runner.tokenizer import InternLMTokenizer

    check_positive(max_length=max_length, max_tokens_per_batch=max_tokens_per_batch)
    if style is not None and style not in STYLES:
        raise UsageError(f"style must be one of {', '.join(STYLES)}, got {style!r}", style=style)
    require_reward_name(name_or_path)
    resolved = resolve(name_or_path)
    spec = read_config(resolved.path)
    _require_reward(spec, resolved.path)  # refuse before reading any weights
    # The style is settled from the tokenizer before the weights load, so a wrong combination
    # (options for POLAR on a conversation model, a POLAR entry without the separator) fails fast.
    name = resolved.info.name if resolved.info is not None else None
    early_tokenizer = _require_tokenizer(resolved.path, InternLMTokenizer)
    early = _recipe_settings(spec, early_tokenizer, resolved.path, name)
    chosen = scoring_style(
        style, resolved.info, early_tokenizer, early.reward_token_id, resolved.path
    )
    if reference_options is not None and chosen != "reference-based":
        raise UsageError(
            f"reference_options apply to reference-based (POLAR) models; "
            f"{early.name} scores conversations",
            style=chosen,
        )
    runner = load(resolved.path, device=device, dtype=dtype, attn=attn)
    if runner.tokenizer is None:
        raise IncompatibleCheckpointError(
            str(runner.path), "has no tokenizer.model", hint=_NO_TOKENIZER
        )
    tokenizer = runner.tokenizer
    info = _recipe_settings(runner.spec, tokenizer, runner.path, name or runner.name)
    scorer = TorchScorer(
        runner.hidden_states,
        runner.v_head.weight,
        pad_token_id=info.pad_token_id,
        device=runner.device,
        max_tokens_per_batch=max_tokens_per_batch,
        runner=runner,
        last_hidden=runner.last_hidden_states if runner.unpadded else None,
    )
    common: dict[str, Any] = {
        "reward_token_id": info.reward_token_id,
        "max_length": info.max_length if max_length is None else max_length,
        "pad_token_id": info.pad_token_id,
        "name": info.name,
        "truncate": truncate,
        "vocab_size": info.vocab_size,
    }
    if chosen == "reference-based":
        return PolarRewardModel(scorer, tokenizer, options=reference_options, **common)
    return RewardModel(scorer, TemplateCodec(tokenizer, runner.profile.template), **common)


__all__ = [
    "STYLES",
    "RewardModel",
    "load_reward",
]
