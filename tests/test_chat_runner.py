"""Chat templates, system prompts, generation defaults, sampling and streaming."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from model_zoo.errors import (
    InvalidConversationError,
    UsageError,
)
from model_zoo.runner.api import Runner, load, make_profile
from model_zoo.runner.chat import (
    CHATML_TEMPLATE,
    DEFAULT_SYSTEM_PROMPT,
    THINKING_SYSTEM_PROMPT,
    V1_TEMPLATE,
    messages_with_system,
)
from model_zoo.runner.config import read_config
from model_zoo.runner.tokenizer import InternLMTokenizer

CONVO = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Name a city."},
    {"role": "assistant", "content": "Shanghai"},
    {"role": "user", "content": "Another, 请"},
]


def jinja_render(path: Path, messages: list[dict], add_generation_prompt: bool) -> str:
    """The checkpoint's own template rendered by plain Jinja2, as transformers configures it."""
    import jinja2

    cfg = json.loads((path / "tokenizer_config.json").read_text())
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(cfg["chat_template"]).render(
        messages=messages,
        add_generation_prompt=add_generation_prompt,
        bos_token=cfg["bos_token"],
        eos_token=cfg["eos_token"],
    )


@pytest.fixture(scope="module")
def runners(tiny_checkpoint):
    cache: dict[str, Runner] = {}

    def get(arch: str) -> Runner:
        if arch not in cache:
            cache[arch] = load(tiny_checkpoint(arch, dtype="float32"), device="cpu")
        return cache[arch]

    return get


# ------------------------------------------------------------------ templates


@pytest.mark.parametrize("arch", ["internlm2", "internlm3", "internlm"])
@pytest.mark.parametrize("gen_prompt", [True, False])
def test_template_matches_jinja_rendering_of_the_checkpoint_template(
    tiny_checkpoint, arch: str, gen_prompt: bool
) -> None:
    path = tiny_checkpoint(arch)
    tok = InternLMTokenizer.from_pretrained(path)
    ours = tok.apply_chat_template(CONVO, add_generation_prompt=gen_prompt)
    assert ours == jinja_render(path, CONVO, gen_prompt)
    ids = tok.apply_chat_template(CONVO, add_generation_prompt=gen_prompt, tokenize=True)
    assert ids == tok.encode(ours, add_special_tokens=False)
    assert ids.count(tok.bos_token_id) == 1  # the template's bos, not a second one


def test_chatml_and_v1_formats_literally() -> None:
    from model_zoo.runner.chat import render_chat

    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    assert render_chat(CHATML_TEMPLATE, msgs, add_generation_prompt=True, bos_token="<s>") == (
        "<s><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n<|im_start|>assistant\n"
    )
    assert render_chat(V1_TEMPLATE, msgs, add_generation_prompt=True, bos_token="<s>") == (
        "<s><|User|>:hi<eoh>\n<|Bot|>:yo<eoa>\n<|Bot|>:"
    )


def test_builtin_template_used_when_the_checkpoint_ships_none(
    tiny_internlm2: Path, tmp_path: Path
) -> None:
    import shutil

    path = tmp_path / "ck"
    shutil.copytree(tiny_internlm2, path)
    cfg = json.loads((path / "tokenizer_config.json").read_text())
    original = jinja_render(path, CONVO, True)
    del cfg["chat_template"]
    (path / "tokenizer_config.json").write_text(json.dumps(cfg))
    tok = InternLMTokenizer.from_pretrained(path)
    profile = make_profile(read_config(path), tok, path)
    assert (
        tok.apply_chat_template(CONVO, add_generation_prompt=True, template=profile.template)
        == original
    )


def test_template_errors_are_usage_errors() -> None:
    from model_zoo.runner.chat import render_chat

    with pytest.raises(UsageError, match="only user"):
        render_chat("{{ raise_exception('only user') }}", [])


# ------------------------------------------------------------------ system prompts and defaults


def test_system_prompts() -> None:
    user = [{"role": "user", "content": "q"}]
    assert messages_with_system(
        user, system=None, thinking=False, default_system=DEFAULT_SYSTEM_PROMPT
    )[0] == {"role": "system", "content": DEFAULT_SYSTEM_PROMPT}
    assert (
        messages_with_system(
            user, system=None, thinking=True, default_system=DEFAULT_SYSTEM_PROMPT
        )[0]["content"]
        == THINKING_SYSTEM_PROMPT
    )
    assert (
        messages_with_system(user, system="", thinking=False, default_system=DEFAULT_SYSTEM_PROMPT)
        == user
    )
    assert (
        messages_with_system(user, system="Custom", thinking=False, default_system=None)[0][
            "content"
        ]
        == "Custom"
    )
    own = [{"role": "system", "content": "mine"}, *user]
    assert (
        messages_with_system(own, system=None, thinking=True, default_system=DEFAULT_SYSTEM_PROMPT)
        == own
    )
    with pytest.raises(UsageError, match="role"):
        messages_with_system([{"content": "x"}], system=None, thinking=False, default_system=None)


def test_prompt_texts_are_the_published_ones() -> None:
    assert DEFAULT_SYSTEM_PROMPT.startswith(
        "You are an AI assistant whose name is InternLM (书生·浦语).\n"
    )
    assert "Shanghai AI Laboratory (上海人工智能实验室)" in DEFAULT_SYSTEM_PROMPT
    assert DEFAULT_SYSTEM_PROMPT.endswith("such as English and 中文.")
    assert THINKING_SYSTEM_PROMPT.startswith("You are an expert mathematician")
    assert "## Repeated Verification\n" in THINKING_SYSTEM_PROMPT
    assert (
        "using a '\\boxed{}' without any units, you have [[8192]] tokens" in THINKING_SYSTEM_PROMPT
    )


def test_chat_prompt_includes_default_system_and_generation_prompt(runners) -> None:
    r = runners("internlm2")
    text = r.tokenizer.decode(r.chat_ids("hello"))
    assert text == (
        f"<s><|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n"
        "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    )
    v1 = runners("internlm")
    assert v1.tokenizer.decode(v1.chat_ids("hello")) == "<s><|User|>:hello<eoh>\n<|Bot|>:"


def test_generation_defaults_and_stop_tokens(runners) -> None:
    r3 = runners("internlm3")
    s = r3.settings()
    assert (s.temperature, s.top_p, s.top_k, s.repetition_penalty, s.max_new_tokens) == (
        1.0,
        0.8,
        40,
        1.005,
        1024,
    )
    assert r3.settings(thinking=True).max_new_tokens == 8192
    im_end = r3.tokenizer.token_to_id("<|im_end|>")
    assert set(s.stop_token_ids) == {2, im_end}
    r2 = runners("internlm2")
    s2 = r2.settings()
    assert (s2.temperature, s2.top_p, s2.max_new_tokens) == (0.8, 0.8, 1024)
    assert set(s2.stop_token_ids) == {2, r2.tokenizer.token_to_id("<|im_end|>")}
    assert r2.settings(temperature=0.1, max_new_tokens=5).temperature == 0.1
    with pytest.raises(UsageError, match="unknown generation option"):
        r2.settings(temprature=1.0)
    with pytest.raises(UsageError, match="out of range"):
        r2.settings(top_p=0)


def test_registry_generation_defaults_win_over_family_defaults(tiny_internlm3: Path) -> None:
    info = SimpleNamespace(
        generation_defaults=SimpleNamespace(
            temperature=0.5,
            top_p=0.9,
            top_k=None,
            repetition_penalty=None,
            max_new_tokens=77,
            max_new_tokens_thinking=4096,
            stop_token_ids=(5,),
        )
    )
    tok = InternLMTokenizer.from_pretrained(tiny_internlm3)
    profile = make_profile(read_config(tiny_internlm3), tok, tiny_internlm3, info)
    s = profile.settings()
    assert (s.temperature, s.top_p, s.top_k, s.max_new_tokens) == (0.5, 0.9, 40, 77)
    assert 5 in s.stop_token_ids
    assert profile.settings(thinking=True).max_new_tokens == 4096


# ------------------------------------------------------------------ generation behaviour


def test_chat_reply_equals_manual_generation_and_stops_on_stop_tokens(runners) -> None:
    r = runners("internlm2")
    ids = r.chat_ids([{"role": "user", "content": "hi"}])
    completion = r.generate_ids([ids], do_sample=False, max_new_tokens=12)[0]
    reply = r.chat([{"role": "user", "content": "hi"}], do_sample=False, max_new_tokens=12)
    assert reply == r.tokenizer.decode(completion.ids, skip_special_tokens=True)
    # force a stop: make the first greedy token a stop token
    first = r.generate_ids([ids], do_sample=False, max_new_tokens=1, stop_token_ids=[])[0].ids[0]
    stopped = r.generate_ids([ids], do_sample=False, max_new_tokens=12, stop_token_ids=[first])[0]
    assert stopped.ids == [] and stopped.finish_reason == "stop"
    assert r.chat("hi", do_sample=False, max_new_tokens=12, stop_token_ids=[first]) == ""


def test_sampling_is_reproducible_with_a_seed(runners) -> None:
    r = runners("internlm3")
    sampled = {
        "max_new_tokens": 16,
        "temperature": 1.5,
        "top_k": 0,
        "top_p": 1.0,
        "stop_token_ids": [],
    }
    a, b, c = (r.chat("tell me", seed=seed, **sampled) for seed in (123, 123, 124))
    assert a == b and a != c
    # temperature 0 is greedy whatever the seed
    assert r.chat("tell me", max_new_tokens=8, temperature=0, seed=1) == r.chat(
        "tell me", max_new_tokens=8, do_sample=False, seed=2
    )


def test_streaming_yields_pieces_that_join_to_the_reply(runners) -> None:
    r = runners("internlm2")
    kwargs = {"max_new_tokens": 24, "seed": 7, "temperature": 1.0, "stop_token_ids": []}
    pieces = list(r.chat("stream please", stream=True, **kwargs))
    assert len(pieces) > 1
    assert "".join(pieces) == r.chat("stream please", **kwargs)


def test_batched_generate_with_left_padding_equals_one_at_a_time(runners) -> None:
    r = runners("internlm2")
    prompts = ["The capital of", "a much longer prompt with several more words in it", "你好"]
    batched = r.generate(prompts, do_sample=False, max_new_tokens=8)
    single = [r.generate(p, do_sample=False, max_new_tokens=8) for p in prompts]
    assert batched == single
    assert isinstance(r.generate("x", max_new_tokens=2, seed=1), str)


def test_top_k_and_top_p_filters() -> None:
    import torch

    from model_zoo.runner.generate import apply_repetition_penalty, filter_top_k_top_p

    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    kept = filter_top_k_top_p(logits, 2, 1.0)
    assert torch.isfinite(kept).tolist() == [[True, True, False, False, False]]
    probs = logits.softmax(-1)[0]
    p = float(probs[0] + probs[1]) - 1e-4  # the two best reach p
    kept = filter_top_k_top_p(logits, 0, p)
    assert torch.isfinite(kept).tolist() == [[True, True, False, False, False]]
    kept = filter_top_k_top_p(logits, 0, 0.01)
    assert torch.isfinite(kept).tolist() == [[True, False, False, False, False]]
    seen = torch.tensor([[True, False, False, False, True]])
    out = apply_repetition_penalty(torch.tensor([[2.0, 1.0, 1.0, 1.0, -2.0]]), seen, 2.0)
    assert out.tolist() == [[1.0, 1.0, 1.0, 1.0, -4.0]]


def test_reward_models_do_not_generate(runners) -> None:
    r = runners("internlm2-reward")
    with pytest.raises(UsageError, match="reward model"):
        r.chat("hi")


def test_cpu_run_with_the_default_reply_length_warns_once_how_to_be_quick(
    runners, monkeypatch: pytest.MonkeyPatch
) -> None:
    import warnings

    from model_zoo.runner import api

    runner = runners("internlm2")
    monkeypatch.setattr(api, "_CPU_HINTED", False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        runner.settings(max_new_tokens=8)  # said how long: no hint
        assert not seen
        runner.settings()  # the default 1024 on the CPU: one hint naming the fix
        runner.settings()
    hints = [w for w in seen if "max_new_tokens=" in str(w.message)]
    assert len(hints) == 1 and issubclass(hints[0].category, UserWarning)
    assert "CPU" in str(hints[0].message)


# ------------------------------------------------- inputs chat and generate refuse, and empty ones


@pytest.fixture(scope="module")
def chat_runner(runners):  # type: ignore[no-untyped-def]
    """The float32 internlm2 runner, loaded once for this module."""
    return runners("internlm2")


def test_chat_refuses_a_lone_surrogate_with_a_clear_error(chat_runner) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match="lone surrogate"):
        chat_runner.chat("caf\ud800", max_new_tokens=2)
    with pytest.raises(UsageError, match="lone surrogate"):
        chat_runner.generate(["ok", "\udcff"], max_new_tokens=2)


def test_chat_refuses_an_empty_message_list(chat_runner) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match="at least one message"):
        chat_runner.chat([], max_new_tokens=2)


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        (["hi"], "messages[0]"),
        ([{"role": "user", "content": 5}], "messages[0].content"),
        (5, "messages"),
        ([{"content": "x"}], "messages[0].role"),
    ],
)
def test_chat_names_a_malformed_message(chat_runner, messages: object, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidConversationError) as info:
        chat_runner.chat(messages, max_new_tokens=1)
    assert info.value.fields["field"] == field


def test_generation_options_out_of_range_are_named(chat_runner) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match=r"temperature must be >= 0 \(0 = greedy\), got -1"):
        chat_runner.chat("hi", temperature=-1, max_new_tokens=2)
    with pytest.raises(UsageError, match=r"top_p must be in \(0, 1\], got 2") as info:
        chat_runner.chat("hi", top_p=2, max_new_tokens=2)
    assert "top_k" not in str(info.value)


def test_generate_of_no_prompts_is_an_empty_list(chat_runner) -> None:  # type: ignore[no-untyped-def]
    assert chat_runner.generate([], max_new_tokens=2) == []
    assert chat_runner.generate_ids([], max_new_tokens=2) == []
    with pytest.raises(UsageError, match="prompt 1 has no tokens"):
        chat_runner.generate(["hi", ""], add_special_tokens=False, max_new_tokens=2)


# -------------------------------------------------------------------------------------- prompt ids


@pytest.mark.parametrize("bad", [1024, -3])
def test_prompt_ids_outside_the_vocabulary_are_a_usage_error(tiny_checkpoint, bad: int) -> None:
    from model_zoo.errors import UsageError

    runner = load(tiny_checkpoint("internlm2"), device="cpu")
    assert runner.spec.vocab_size == 1024
    with pytest.raises(UsageError, match=rf"prompt 1 holds token id {bad}"):
        runner.generate_ids([[1, 5], [1, bad]], max_new_tokens=2)
