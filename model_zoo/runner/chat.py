"""Chat formats, system prompts and generation defaults of the InternLM families.

Templates are rendered the way transformers renders ``chat_template``: Jinja2 in a sandbox,
``trim_blocks`` and ``lstrip_blocks`` on, with ``bos_token``, ``eos_token``,
``add_generation_prompt`` and ``raise_exception`` available. A checkpoint's own template
always wins; the built-in ChatML and v1 templates are only for checkpoints that ship none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from ..errors import UsageError

# The InternLM default system prompt (seed README).
DEFAULT_SYSTEM_PROMPT = (
    "You are an AI assistant whose name is InternLM (书生·浦语).\n"
    "- InternLM (书生·浦语) is a conversational language model that is developed by Shanghai AI "
    "Laboratory (上海人工智能实验室). It is designed to be helpful, honest, and harmless.\n"
    "- InternLM (书生·浦语) can understand and communicate fluently in the language chosen by the "
    "user such as English and 中文."
)

# InternLM3's deep-thinking system prompt (seed README, "thinking_system_prompt").
THINKING_SYSTEM_PROMPT = (
    "You are an expert mathematician with extensive experience in mathematical competitions. "
    "You approach problems through systematic thinking and rigorous reasoning. When solving "
    "problems, follow these thought processes:\n"
    "## Deep Understanding\n"
    "Take time to fully comprehend the problem before attempting a solution. Consider:\n"
    "- What is the real question being asked?\n"
    "- What are the given conditions and what do they tell us?\n"
    "- Are there any special restrictions or assumptions?\n"
    "- Which information is crucial and which is supplementary?\n"
    "## Multi-angle Analysis\n"
    "Before solving, conduct thorough analysis:\n"
    "- What mathematical concepts and properties are involved?\n"
    "- Can you recall similar classic problems or solution methods?\n"
    "- Would diagrams or tables help visualize the problem?\n"
    "- Are there special cases that need separate consideration?\n"
    "## Systematic Thinking\n"
    "Plan your solution path:\n"
    "- Propose multiple possible approaches\n"
    "- Analyze the feasibility and merits of each method\n"
    "- Choose the most appropriate method and explain why\n"
    "- Break complex problems into smaller, manageable steps\n"
    "## Rigorous Proof\n"
    "During the solution process:\n"
    "- Provide solid justification for each step\n"
    "- Include detailed proofs for key conclusions\n"
    "- Pay attention to logical connections\n"
    "- Be vigilant about potential oversights\n"
    "## Repeated Verification\n"
    "After completing your solution:\n"
    "- Verify your results satisfy all conditions\n"
    "- Check for overlooked special cases\n"
    "- Consider if the solution can be optimized or simplified\n"
    "- Review your reasoning process\n"
    "Remember:\n"
    "1. Take time to think thoroughly rather than rushing to an answer\n"
    "2. Rigorously prove each key conclusion\n"
    "3. Keep an open mind and try different approaches\n"
    "4. Summarize valuable problem-solving methods\n"
    "5. Maintain healthy skepticism and verify multiple times\n"
    "Your response should reflect deep mathematical understanding and precise logical "
    "thinking, making your solution path and reasoning clear to others.\n"
    "When you're ready, present your complete solution with:\n"
    "- Clear problem understanding\n"
    "- Detailed solution process\n"
    "- Key insights\n"
    "- Thorough verification\n"
    "Focus on clear, logical progression of ideas and thorough explanation of your "
    "mathematical reasoning. Provide answers in the same language as the user asking the "
    "question, repeat the final answer using a '\\boxed{}' without any units, you have "
    "[[8192]] tokens to complete the answer.\n"
)

CHATML_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
V1_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|System|>:' + message['content'] + '\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|User|>:' + message['content'] + '<eoh>\n' }}"
    "{% else %}{{ '<|Bot|>:' + message['content'] + '<eoa>\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|Bot|>:' }}{% endif %}"
)

# Tokens that end an assistant turn, by family (ids come from the tokenizer).
END_OF_TURN = {"internlm2": "<|im_end|>", "internlm3": "<|im_end|>", "internlm": "<eoa>"}


def default_template(family: str) -> str:
    return V1_TEMPLATE if family == "internlm" else CHATML_TEMPLATE


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling settings; ``temperature == 0`` or ``do_sample=False`` means greedy."""

    max_new_tokens: int = 1024
    do_sample: bool = True
    temperature: float = 0.8
    top_p: float = 0.8
    top_k: int = 0  # 0: off
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()

    @property
    def greedy(self) -> bool:
        return not self.do_sample or self.temperature <= 0

    def updated(self, **overrides: Any) -> GenerationSettings:
        known = set(self.__dataclass_fields__)
        unknown = [k for k in overrides if k not in known]
        if unknown:
            raise UsageError(
                f"unknown generation option(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(known))}."
            )
        values = {k: v for k, v in overrides.items() if v is not None}
        if "stop_token_ids" in values:
            values["stop_token_ids"] = tuple(int(i) for i in values["stop_token_ids"])
        out = replace(self, **values)
        rules = (
            ("max_new_tokens", out.max_new_tokens >= 0, ">= 0"),
            ("temperature", out.temperature >= 0, ">= 0 (0 = greedy)"),
            ("top_p", 0 < out.top_p <= 1, "in (0, 1]"),
            ("top_k", out.top_k >= 0, ">= 0 (0 = off)"),
            ("repetition_penalty", out.repetition_penalty > 0, "> 0"),
        )
        wrong = [
            f"{name} must be {need}, got {getattr(out, name)}" for name, ok, need in rules if not ok
        ]
        if wrong:
            raise UsageError(f"generation options out of range: {'; '.join(wrong)}.")
        return out


# Recommended settings (facts file, section 5). InternLM3 from its model card; InternLM2's chat().
FAMILY_DEFAULTS: dict[str, GenerationSettings] = {
    "internlm3": GenerationSettings(
        max_new_tokens=1024, temperature=1.0, top_p=0.8, top_k=40, repetition_penalty=1.005
    ),
    "internlm2": GenerationSettings(max_new_tokens=1024, temperature=0.8, top_p=0.8),
    "internlm": GenerationSettings(max_new_tokens=1024, temperature=0.8, top_p=0.8),
}
THINKING_MAX_NEW_TOKENS = 8192


@dataclass(frozen=True)
class ChatProfile:
    """How to chat with one checkpoint: template, default system prompt, defaults, stops."""

    family: str
    template: str
    default_system: str | None
    generation: GenerationSettings
    stop_token_ids: tuple[int, ...] = ()
    thinking_max_new_tokens: int = 8192

    def settings(self, *, thinking: bool = False, **overrides: Any) -> GenerationSettings:
        base = self.generation
        if thinking:
            base = replace(
                base, max_new_tokens=max(base.max_new_tokens, self.thinking_max_new_tokens)
            )
        base = replace(base, stop_token_ids=self.stop_token_ids)
        return base.updated(**overrides)


def messages_with_system(
    messages: Sequence[Mapping[str, Any]],
    *,
    system: str | None,
    thinking: bool,
    default_system: str | None,
) -> list[dict[str, Any]]:
    """The conversation to render: a system message first unless the caller brought one.

    ``system=None`` uses the default (the thinking prompt when ``thinking``), ``system=""``
    means no system message at all.
    """
    out = [dict(m) for m in messages]
    for i, m in enumerate(out):
        if "role" not in m or "content" not in m:
            raise UsageError(f"message {i} needs 'role' and 'content' keys, got {sorted(m)}.")
    if out and out[0]["role"] == "system":
        if system is not None:
            out[0]["content"] = system
        return out
    chosen = (
        system if system is not None else (THINKING_SYSTEM_PROMPT if thinking else default_system)
    )
    if chosen:
        out.insert(0, {"role": "system", "content": chosen})
    return out


@lru_cache(maxsize=32)
def _compiled(template: str) -> Any:
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template)


def render_chat(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    add_generation_prompt: bool = False,
    bos_token: str = "",
    eos_token: str = "",
    **extra: Any,
) -> str:
    """Render ``messages`` with a Jinja2 chat template (sandboxed, as transformers does)."""
    from jinja2.exceptions import TemplateError

    if not template:
        raise UsageError(
            "no chat template: the checkpoint ships none and no family default applies."
        )
    try:
        return str(
            _compiled(template).render(
                messages=list(messages),
                add_generation_prompt=add_generation_prompt,
                bos_token=bos_token,
                eos_token=eos_token,
                **extra,
            )
        )
    except TemplateError as exc:
        raise UsageError(f"the chat template failed to render: {exc}") from None
