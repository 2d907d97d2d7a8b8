"""verl's ``custom_reward_function``, scoring with InternLM2-Reward or POLAR, locally or on a
server.

verl calls ``compute_score(data_source, solution_str, ground_truth, extra_info, **reward_kwargs)``
once per response (its reward loop, the only path in verl 0.9, runs these calls concurrently in
a thread pool), and the ``batch`` reward manager of earlier releases calls
``compute_score_batch(data_sources, solution_strs, ground_truths, extra_infos, **reward_kwargs)``.
Both return plain floats. Point verl at this module with ``path: pkg://model_zoo.reward.verl``
(verl 0.7 and later) or at this file's path (any release: the imports below are absolute, so a
file load works too). docs/rlhf.md has the config.

What is scored, per row:

* InternLM2-Reward: the conversation ``extra_info["prompt"]`` (a list of messages, or a string
  taken as one user turn) followed by ``{"role": "assistant", "content": solution_str}``;
  ``ground_truth`` is not used.
* POLAR: ``{"prompt": extra_info["prompt"], "reference": ground_truth, "output": solution_str}``,
  the layout of POLAR's own verl recipe (its data scripts copy the prompt into ``extra_info``).

The model is configured by keyword (verl's ``custom_reward_function.reward_kwargs``) or, for
any keyword left out, by environment variable, and loaded once per process on the first call:

==================  ==========================  ==================================================
keyword             environment                 meaning
==================  ==========================  ==================================================
``model``           ``MODEL_ZOO_REWARD_MODEL``  registry name or checkpoint directory (in-process)
``server_url``      ``MODEL_ZOO_REWARD_URL``    a ``model-zoo serve-reward`` base URL (remote)
``api_key``         ``MODEL_ZOO_API_KEY``       the server's ``--api-key``
``device``          ``MODEL_ZOO_REWARD_DEVICE`` in-process device (default: the runner's choice)
``dtype``           ``MODEL_ZOO_REWARD_DTYPE``  in-process dtype (default ``auto``)
``style``                                       ``conversation`` or ``reference-based`` (alias
                                                ``polar``); default: the model's own
``prompt_key``                                  the ``extra_info`` key of the prompt (``prompt``)
``strip_thinking``                              score only what follows ``</think>`` (default:
                                                on for POLAR, as its recipe does; off otherwise)
``wrapper``                                     POLAR: ``sft`` (default) or ``pretrain``
``cut_side``                                    POLAR, in-process: which end of an over-long
                                                reference or output is cut (``left``, model-zoo's
                                                default; POLAR's verl client cuts ``right``)
==================  ==========================  ==================================================

Calls that arrive together from verl's reward threads are merged into one ``score_batch`` (one
forward pass or one request), so the per-row form costs about what the batch form does.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from model_zoo.errors import UsageError

_CONVERSATION = "conversation"
_REFERENCE = "reference-based"  # POLAR
_STYLES = (_CONVERSATION, _REFERENCE)
_ALIASES = {"polar": _REFERENCE, "reference_based": _REFERENCE}

_THINK = re.compile(r"<think>(.*?)</think>(.*)", re.DOTALL)


# ---------------------------------------------------------------------- configuration


class VerlRewardConfig(NamedTuple):
    """Which model scores, and how rows become its inputs (hashable: it keys the process cache).

    No dataclasses in this module: verl may load it from a file path without registering it in
    ``sys.modules``, where ``@dataclass`` cannot resolve its annotations.
    """

    model: str | None = None
    server_url: str | None = None
    api_key: str | None = None
    device: str | None = None
    dtype: str | None = None
    style: str | None = None
    prompt_key: str = "prompt"
    strip_thinking: bool | None = None
    wrapper: str | None = None
    cut_side: str | None = None

    @classmethod
    def from_kwargs(
        cls, kw: Mapping[str, Any], env: Mapping[str, str] | None = None
    ) -> VerlRewardConfig:
        """Keywords first, then the environment; unknown keywords (verl adds its own) are
        ignored."""
        env = os.environ if env is None else env

        def pick(key: str, var: str | None = None) -> str | None:
            value = kw.get(key)
            if value is None and var is not None:
                value = env.get(var) or None
            return None if value is None else str(value)

        style = pick("style")
        style = _ALIASES.get(style, style) if style is not None else None
        if style is not None and style not in _STYLES:
            raise UsageError(
                f"reward_kwargs.style must be one of {', '.join(_STYLES)} (or polar), got {style!r}"
            )
        if kw.get("model") is not None and kw.get("server_url") is not None:
            raise UsageError(
                "reward_kwargs: give either model (score in-process) or server_url (a model-zoo "
                "reward server), not both"
            )
        if kw.get("model") is not None or kw.get("server_url") is not None:
            model, server_url = (
                pick("model"),
                pick("server_url"),
            )  # a keyword overrides both variables
        else:
            model, server_url = (
                pick("model", "MODEL_ZOO_REWARD_MODEL"),
                pick("server_url", "MODEL_ZOO_REWARD_URL"),
            )
            if model is not None and server_url is not None:
                raise UsageError(
                    "both MODEL_ZOO_REWARD_MODEL and MODEL_ZOO_REWARD_URL are set; keep one"
                )
        if model is None and server_url is None:
            raise UsageError(
                "model_zoo.reward.verl needs a reward model: set "
                "custom_reward_function.reward_kwargs.model (a registry name such as "
                "internlm2-7b-reward, or a checkpoint directory) or reward_kwargs.server_url "
                "(a `model-zoo serve-reward` URL), or the environment variable "
                "MODEL_ZOO_REWARD_MODEL or MODEL_ZOO_REWARD_URL"
            )
        strip = kw.get("strip_thinking")
        return cls(
            model=model,
            server_url=server_url,
            api_key=pick("api_key", "MODEL_ZOO_API_KEY"),
            device=pick("device", "MODEL_ZOO_REWARD_DEVICE"),
            dtype=pick("dtype", "MODEL_ZOO_REWARD_DTYPE"),
            style=style,
            prompt_key=pick("prompt_key") or "prompt",
            strip_thinking=None if strip is None else _as_bool(strip, "strip_thinking"),
            wrapper=pick("wrapper"),
            cut_side=pick("cut_side"),
        )


def _as_bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"reward_kwargs.{field} must be true or false, got {value!r}")


# ------------------------------------------------------------------ the scorer, once per process


class _Coalescer:
    """Merges concurrent single-row calls into one batch call (group commit, no waiting window).

    The first caller scores its row alone; rows that arrive while a batch is being scored are
    scored together by whichever of their threads takes the model next. verl's reward loop
    scores rows one per thread, so this turns its calls back into batches.
    """

    def __init__(self, score_many: Callable[[list[Any]], list[float]]) -> None:
        self._score_many = score_many
        self._queue_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._queue: list[_Pending] = []

    def score(self, item: Any) -> float:
        mine = _Pending(item)
        with self._queue_lock:
            self._queue.append(mine)
        with self._model_lock:
            if not mine.done:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                try:
                    scores = self._score_many([p.item for p in batch])
                    for p, s in zip(batch, scores, strict=True):
                        p.score = s
                except Exception as exc:  # noqa: BLE001 - every row of the batch fails with its cause
                    for p in batch:
                        p.error = exc
                finally:  # even when interrupted, no waiting row is left without an answer
                    for p in batch:
                        if p.score is None and p.error is None:
                            p.error = RuntimeError("scoring was interrupted")
                        p.done = True
        if mine.error is not None:
            raise mine.error
        assert mine.score is not None
        return mine.score

    def score_batch(self, items: list[Any]) -> list[float]:
        with self._model_lock:
            return self._score_many(items)


class _Pending:
    __slots__ = ("done", "error", "item", "score")

    def __init__(self, item: Any) -> None:
        self.item = item
        self.done = False
        self.score: float | None = None
        self.error: BaseException | None = None


class _Scorer(NamedTuple):
    model: Any
    style: str
    coalescer: _Coalescer


_SCORERS: dict[VerlRewardConfig, _Scorer] = {}
_SCORERS_LOCK = threading.Lock()


def _open_model(config: VerlRewardConfig) -> Any:
    if config.model is None:
        from model_zoo.reward.adapters import RemoteRewardModel

        if config.cut_side is not None:
            raise UsageError(
                "reward_kwargs.cut_side applies to a model loaded in-process; "
                "a server cuts as it was started"
            )
        return RemoteRewardModel(str(config.server_url), api_key=config.api_key)
    from model_zoo.reward.api import load_reward

    load_kw: dict[str, Any] = {
        k: v
        for k, v in (("device", config.device), ("dtype", config.dtype), ("style", config.style))
        if v is not None
    }
    if config.cut_side is not None:
        from model_zoo.reward.polar import PolarOptions

        load_kw["reference_options"] = PolarOptions(cut_side=config.cut_side)
    return load_reward(config.model, **load_kw)


def _model_style(model: Any) -> str:
    """The model's scoring style: ``reference-based`` (POLAR) or ``conversation``."""
    style = getattr(model, "scoring_style", None)
    return _REFERENCE if style == _REFERENCE else _CONVERSATION


def _scorer(config: VerlRewardConfig) -> _Scorer:
    """The process's scorer for ``config``, loaded on first use (once, even from many threads)."""
    with _SCORERS_LOCK:
        found = _SCORERS.get(config)
        if found is None:
            model = _open_model(config)

            def score_many(items: list[Any]) -> list[float]:
                return [float(x) for x in model.score_batch(items)]

            found = _SCORERS[config] = _Scorer(
                model, config.style or _model_style(model), _Coalescer(score_many)
            )
        return found


def reset() -> None:
    """Forget the loaded models (tests; a process that changes its configuration)."""
    with _SCORERS_LOCK:
        for scorer in _SCORERS.values():
            close = getattr(scorer.model, "close", None)
            if callable(close):
                close()
        _SCORERS.clear()


# ---------------------------------------------------------------------- rows to model inputs


def _plain(value: Any) -> Any:
    """verl hands rows over as numpy object arrays when its data went through pandas: make lists."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def strip_thinking(text: str) -> str:
    """What follows ``</think>`` when the text opens a ``<think>`` block, as POLAR's recipe
    scores it."""
    match = _THINK.search(text)
    return match.group(2).strip() if match else text


def _prompt(extra_info: Any, key: str, row: int) -> Any:
    info = _plain(extra_info) if extra_info is not None else {}
    if not isinstance(info, Mapping) or info.get(key) is None:
        raise UsageError(
            f"row {row}: extra_info has no {key!r}: model_zoo.reward.verl scores the prompt with "
            f"the response, and verl passes the prompt only inside extra_info. Copy the prompt "
            f"messages into extra_info[{key!r}] when you write the parquet file (as POLAR's verl "
            "recipe does), or set reward_kwargs.prompt_key to the key that holds them"
        )
    return info[key]


def _as_messages(value: Any, role: str, field: str) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, Sequence):
        return [dict(m) if isinstance(m, Mapping) else m for m in value]
    raise UsageError(
        f"{field}: expected a string or a list of messages, got {type(value).__name__}"
    )


def _row_input(
    style: str,
    config: VerlRewardConfig,
    solution_str: Any,
    ground_truth: Any,
    extra_info: Any,
    row: int,
) -> Any:
    if not isinstance(solution_str, str):
        raise UsageError(
            f"row {row}: solution_str must be a string, got {type(solution_str).__name__}"
        )
    strip = config.strip_thinking if config.strip_thinking is not None else style == _REFERENCE
    output = strip_thinking(solution_str) if strip else solution_str
    prompt = _prompt(extra_info, config.prompt_key, row)
    if style == _REFERENCE:
        reference = _plain(ground_truth)
        if reference is None:
            raise UsageError(
                f"row {row}: POLAR scores against a reference, and ground_truth is empty; put the "
                "reference answer in reward_model.ground_truth"
            )
        item = {"prompt": prompt, "reference": reference, "output": output}
        if config.wrapper is not None:
            item["wrapper"] = config.wrapper
        return item
    return _as_messages(prompt, "user", f"row {row}: extra_info[{config.prompt_key!r}]") + [
        {"role": "assistant", "content": output}
    ]


# ---------------------------------------------------------------------- verl's entry points


def compute_score(
    data_source: Any, solution_str: str, ground_truth: Any, extra_info: Any = None, **kw: Any
) -> float:
    """One response's reward, as verl's reward managers call ``custom_reward_function``.

    ``kw`` holds ``reward_kwargs`` (see the module docstring) and whatever verl adds of its own
    (``reward_router_address``, ``reward_model_tokenizer``...), which is ignored.
    """
    config = VerlRewardConfig.from_kwargs(kw)
    scorer = _scorer(config)
    return scorer.coalescer.score(
        _row_input(scorer.style, config, solution_str, ground_truth, extra_info, 0)
    )


def compute_score_batch(
    data_sources: Sequence[Any],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[Any] | None = None,
    **kw: Any,
) -> list[float]:
    """Every response's reward in one ``score_batch``, for verl's ``batch`` reward manager."""
    n = len(solution_strs)
    infos: Sequence[Any] = [None] * n if extra_infos is None else extra_infos
    for name, values in (
        ("data_sources", data_sources),
        ("ground_truths", ground_truths),
        ("extra_infos", infos),
    ):
        if len(values) != n:
            raise UsageError(
                f"compute_score_batch got {n} solution_strs and {len(values)} {name}; "
                "they must pair up"
            )
    config = VerlRewardConfig.from_kwargs(kw)
    scorer = _scorer(config)
    items = [
        _row_input(scorer.style, config, s, g, e, i)
        for i, (s, g, e) in enumerate(zip(solution_strs, ground_truths, infos, strict=True))
    ]
    return scorer.coalescer.score_batch(items) if items else []


__all__ = [
    "VerlRewardConfig",
    "compute_score",
    "compute_score_batch",
    "reset",
    "strip_thinking",
]
