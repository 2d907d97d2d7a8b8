"""Plug a reward model into the RLHF pipelines people already run.

- :func:`trl_reward_func`: a TRL-style reward function
  ``(prompts, completions, **kw) -> list[float]`` (GRPOTrainer's ``reward_funcs``), for
  conversational or plain-text datasets.
- :func:`openrlhf_reward_func`: OpenRLHF's custom remote function
  ``reward_func(queries, prompts, labels) -> {"rewards", "scores", "extra_logs"}`` (the file named
  by ``--remote_rm_url reward_func.py``), scoring in-process.
- :func:`remote_rm_fn` and :class:`RemoteRewardModel`: clients of a running reward server, the
  first speaking OpenRLHF's ``/get_reward`` protocol, the second model-zoo's ``/v1`` routes.

Each adapter takes a ``RewardModel``, a :class:`RemoteRewardModel`, or a model name or path
(loaded on the first call, so importing a reward-function file stays cheap).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC
from typing import Any, Protocol, cast

from ..errors import RewardServerError, UsageError
from ..runner.messages import Conversation

DEFAULT_TIMEOUT = 180.0  # what OpenRLHF's own client waits


class BatchScorer(Protocol):
    """What the adapters need: a RewardModel, a PolarRewardModel or a RemoteRewardModel.

    ``score_batch`` takes conversations, or ``{"prompt", "reference", "output"}`` inputs for a
    reference-based (POLAR) model, whose ``scoring_style`` says so.
    """

    def score_batch(self, items: Sequence[Any], /, **kw: Any) -> list[float]: ...

    def score_text(self, texts: Sequence[str], /, **kw: Any) -> list[float]: ...


def _lazy(model: BatchScorer | str, load_kw: Mapping[str, Any]) -> Callable[[], BatchScorer]:
    """A getter that loads ``model`` on first use when it is a name or path."""
    cache: list[BatchScorer] = []

    def get() -> BatchScorer:
        if not cache:
            if isinstance(model, str):
                from .api import load_reward

                # its keyword-only options (batch_size...) are the ones the adapters pass
                cache.append(cast(BatchScorer, load_reward(model, **load_kw)))
            else:
                cache.append(model)
        return cache[0]

    return get


def _as_messages(value: Any, role: str, field: str) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, Sequence):
        return list(value)
    raise UsageError(
        f"{field}: expected a string or a list of messages, got {type(value).__name__}"
    )


_REFERENCE_BASED = "reference-based"  # POLAR's scoring style (RewardModel.scoring_style)


def _reference_based(model: Any) -> bool:
    return getattr(model, "scoring_style", "conversation") == _REFERENCE_BASED


def trl_reward_func(
    model: BatchScorer | str,
    *,
    name: str = "internlm2_reward",
    batch_size: int | None = None,
    reference_key: str = "reference",
    **load_kw: Any,
) -> Callable[..., list[float]]:
    """A TRL reward function scoring ``prompt + completion`` with the reward model.

    Conversational data (lists of messages) is scored as the prompt messages followed by the
    completion messages; plain strings become one user turn and one assistant turn, so the chat
    template is applied exactly as the reward model was trained on it. A reference-based model
    (POLAR) scores each completion against the dataset column ``reference_key``, which TRL passes
    to reward functions with the other columns.
    """
    get = _lazy(model, load_kw)

    def reward_func(
        prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float]:
        if len(prompts) != len(completions):
            raise UsageError(
                f"got {len(prompts)} prompts and {len(completions)} completions; they must pair up"
            )
        kw = {"batch_size": batch_size} if batch_size is not None else {}
        scorer = get()
        if _reference_based(scorer):
            references = columns.get(reference_key)
            if references is None or len(references) != len(prompts):
                raise UsageError(
                    f"{getattr(scorer, 'name', 'this model')} scores a completion against a "
                    f"reference answer: give the dataset a {reference_key!r} column (or name yours "
                    "with reference_key=)"
                )
            items = [
                {"prompt": p, "reference": r, "output": c}
                for p, r, c in zip(prompts, references, completions, strict=True)
            ]
            return scorer.score_batch(items, **kw)
        convs = [
            _as_messages(p, "user", f"prompts[{i}]")
            + _as_messages(c, "assistant", f"completions[{i}]")
            for i, (p, c) in enumerate(zip(prompts, completions, strict=True))
        ]
        return scorer.score_batch(convs, **kw)

    reward_func.__name__ = name  # TRL logs each reward function under its __name__
    return reward_func


def openrlhf_reference_inputs(
    queries: Sequence[str], prompts: Sequence[str] | None, labels: Sequence[Any] | None
) -> list[dict[str, Any]]:
    """OpenRLHF's request as POLAR inputs: the output is what follows ``prompts[i]`` in
    ``queries[i]``, and the reference answer is ``labels[i]`` (the dataset's label column), as the
    server reads it."""
    prompts = _one_per_query("prompts", prompts, len(queries))
    labels = _one_per_query("labels", labels, len(queries))
    items = []
    for i, (query, prompt, label) in enumerate(zip(queries, prompts, labels, strict=True)):
        at = query.find(prompt)
        if at < 0:
            raise UsageError(
                f"queries[{i}] does not contain prompts[{i}]: the output scored is what follows it"
            )
        items.append({"prompt": prompt, "reference": label, "output": query[at + len(prompt) :]})
    return items


def _one_per_query(field: str, value: Sequence[Any] | None, queries: int) -> Sequence[Any]:
    """``value`` when it holds one entry per query; else the error that says what OpenRLHF sends."""
    if value is None or len(value) != queries:
        raise UsageError(
            f"a reference-based reward model (POLAR) needs one of {field} per query: OpenRLHF "
            "sends the prompt in prompts and the reference answer in labels (the dataset column "
            "named by --data.label_key, --label_key in older releases)"
        )
    return value


def openrlhf_reward_func(model: BatchScorer | str, **load_kw: Any) -> Callable[..., dict[str, Any]]:
    """OpenRLHF's custom reward function, scoring already-templated queries in-process.

    Returns torch tensors, as OpenRLHF expects of a ``reward_func``. Pad tokens at either end of
    a query (OpenRLHF decodes left-padded batches with special tokens kept) are ignored. A
    reference-based model (POLAR) scores the response that follows the prompt in each query
    against the label (:func:`openrlhf_reference_inputs`).
    """
    get = _lazy(model, load_kw)

    def reward_func(
        queries: Sequence[str], prompts: Sequence[str] | None = None, labels: Any = None, **_: Any
    ) -> dict[str, Any]:
        import torch

        scorer = get()
        if _reference_based(scorer):
            got = scorer.score_batch(openrlhf_reference_inputs(list(queries), prompts, labels))
        else:
            got = scorer.score_text(list(queries), strip_pad=True)
        scores = torch.tensor(got, dtype=torch.float32)
        return {"rewards": scores, "scores": scores, "extra_logs": {"reward_model_score": scores}}

    return reward_func


# ---------------------------------------------------------------------- HTTP clients


def _post(
    url: str,
    payload: dict[str, Any],
    *,
    api_key: str | None,
    timeout: float,
    retries: int,
    client: Any = None,
) -> Any:
    """POST JSON, retrying connection failures and 429/503 (honouring Retry-After); other errors
    raise."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    last = ""
    for attempt in range(max(retries, 1)):
        try:
            r = (client or httpx).post(url, json=payload, headers=headers, timeout=timeout)
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if r.status_code in (429, 503):
                last = f"HTTP {r.status_code}"
                time.sleep(_retry_after(r.headers.get("Retry-After")))
                continue
            if r.status_code != 200:
                try:
                    detail = r.json()["error"]["message"]
                except (ValueError, KeyError, TypeError):
                    detail = r.text[:200]
                raise RewardServerError(
                    url,
                    f"refused the request (HTTP {r.status_code}): {detail}",
                    status=r.status_code,
                )
            try:
                return r.json()
            except ValueError:
                raise RewardServerError(
                    url,
                    f"answered HTTP 200 with a body that is not a JSON document "
                    f"({r.headers.get('Content-Type', 'no Content-Type')}); is this the "
                    "reward server's URL and route?",
                ) from None
        if attempt + 1 < retries:
            time.sleep(1.0)
    raise RewardServerError(url, f"no answer after {max(retries, 1)} tries ({last})")


def _retry_after(value: str | None, *, default: float = 1.0, most: float = 60.0) -> float:
    """Seconds to wait from a Retry-After header: a number of seconds or an HTTP date (RFC 9110)."""
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return default
        from datetime import datetime

        seconds = (when - datetime.now(UTC)).total_seconds() if when.tzinfo else default
    return min(max(seconds, 0.0), most)


def _field(body: Any, key: str, url: str) -> list[Any]:
    """``body[key]`` as a list, or an error saying the server answered in another shape."""
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, list):
        got = ", ".join(sorted(map(str, body))) if isinstance(body, dict) else type(body).__name__
        raise RewardServerError(
            url,
            f'its answer has no "{key}" list (got: {got or "an empty object"}); '
            "is this the reward server's URL and route?",
        )
    return value


def remote_rm_fn(
    api_url: str,
    queries: Sequence[str],
    prompts: Sequence[str] | None = None,
    labels: Sequence[Any] | None = None,
    *,
    score_key: str = "rewards",
    api_key: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = 5,
) -> list[float]:
    """Score queries on a server speaking OpenRLHF's ``/get_reward`` protocol (ours or another)."""
    payload: dict[str, Any] = {"query": list(queries)}
    if prompts is not None:
        payload["prompts"] = list(prompts)
    if labels is not None:
        payload["labels"] = list(labels)
    body = _post(api_url, payload, api_key=api_key, timeout=timeout, retries=retries)
    return [float(x) for x in _field(body, score_key, api_url)]


class RemoteRewardModel:
    """A reward server used like a RewardModel (score, score_batch, score_text, compare, rank,
    best_of)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 5,
        max_items: int = 1024,
    ) -> None:
        if max_items < 1:
            raise UsageError(f"max_items must be at least 1, got {max_items}")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.max_items = max_items  # items per request: the server's --max-items (default 1024)
        self._client: Any = None  # one connection pool, made on first use
        self._style: str | None = None  # the served model's scoring style, asked on first use

    def _chunks(self, items: Sequence[Any]) -> list[list[Any]]:
        """``items`` in requests the server accepts (a local RewardModel takes any number)."""
        return [list(items[i : i + self.max_items]) for i in range(0, len(items), self.max_items)]

    def _call(self, route: str, payload: dict[str, Any], key: str) -> Any:
        """The field ``key`` of ``route``'s answer."""
        if self._client is None:
            import httpx

            self._client = httpx.Client()
        url = self.base_url + route
        body = _post(
            url,
            payload,
            api_key=self.api_key,
            timeout=self.timeout,
            retries=self.retries,
            client=self._client,
        )
        if key == "scores":
            return _field(body, key, url)
        if not isinstance(body, dict) or key not in body:
            raise RewardServerError(
                url, f'its answer has no "{key}" field; is this a model-zoo reward server?'
            )
        return body[key]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def scoring_style(self) -> str:
        """The served model's inputs: ``conversation`` or ``reference-based`` (POLAR), from
        /v1/models."""
        if self._style is None:
            import httpx

            url = self.base_url + "/v1/models"
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            try:
                r = httpx.get(url, headers=headers, timeout=self.timeout)
                models = r.json()["data"] if r.status_code == 200 else None
            except (httpx.TransportError, ValueError, KeyError, TypeError) as exc:
                raise RewardServerError(
                    url, f"could not read the served model ({type(exc).__name__}: {exc})"
                ) from None
            if not models:
                raise RewardServerError(
                    url, f"refused the request (HTTP {r.status_code})", status=r.status_code
                )
            # a server from before POLAR names no style: it scores conversations only
            self._style = str(models[0].get("scoring") or "conversation")
        return self._style

    def score(
        self,
        conversation: Conversation | None = None,
        *,
        prompt: Any = None,
        reference: Any = None,
        output: Any = None,
    ) -> float:
        """One conversation's score, or (POLAR) ``output``'s given ``prompt`` and ``reference``."""
        if conversation is None:
            item = {"prompt": prompt, "reference": reference, "output": output}
            return self.score_batch([item])[0]
        return self.score_batch([conversation])[0]

    def score_batch(self, conversations: Sequence[Any], **_: Any) -> list[float]:
        """Scores in input order; an empty list gives [] (the server refuses one), long lists are
        split.

        Items are conversations, or ``{"prompt", "reference", "output"}`` inputs for a
        reference-based (POLAR) model, sent as ``/v1/score``'s ``inputs``.
        """
        key = (
            "inputs" if conversations and isinstance(conversations[0], Mapping) else "conversations"
        )
        return [
            float(x)
            for part in self._chunks(conversations)
            for x in self._call("/v1/score", {key: part}, "scores")
        ]

    def score_text(self, texts: Sequence[str], *, strip_pad: bool = False, **_: Any) -> list[float]:
        out: list[float] = []
        for part in self._chunks(texts):
            if strip_pad:  # /get_reward drops pads at the ends, as OpenRLHF's queries need
                out += remote_rm_fn(
                    self.base_url + "/get_reward",
                    part,
                    api_key=self.api_key,
                    timeout=self.timeout,
                    retries=self.retries,
                )
            else:
                out += [float(x) for x in self._call("/v1/score", {"texts": part}, "scores")]
        return out

    def compare(self, a: Conversation, b: Conversation) -> bool:
        return bool(self._call("/v1/compare", {"a": a, "b": b}, "a_better"))

    # rank, order and best_of follow from the scores exactly as a local RewardModel's do.

    def rank(self, conversations: Sequence[Conversation]) -> list[int]:
        from .model import ranks_from_scores

        return ranks_from_scores(self.score_batch(conversations))

    def order(self, conversations: Sequence[Conversation]) -> list[int]:
        from .model import order_from_scores

        return order_from_scores(self.score_batch(conversations))

    def best_of(self, conversations: Sequence[Conversation]) -> int:
        if not conversations:
            raise UsageError("best_of needs at least one conversation")
        return self.order(conversations)[0]


__all__ = [
    "DEFAULT_TIMEOUT",
    "BatchScorer",
    "RemoteRewardModel",
    "openrlhf_reference_inputs",
    "openrlhf_reward_func",
    "remote_rm_fn",
    "trl_reward_func",
]
