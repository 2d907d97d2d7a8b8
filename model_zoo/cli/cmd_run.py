"""``model-zoo run NAME "prompt"`` (one reply) and ``model-zoo chat NAME`` (interactive).

Only typer at module level; the runner (torch, transformers) is imported when a command runs.
Replies go to stdout; prompts, status lines and warnings to stderr, so ``run`` output pipes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

_HELP_CHAT = (
    "Type a message and press Enter. /reset clears the history, /system TEXT sets the system "
    "prompt, Ctrl-D quits."
)


def _generation(
    max_new_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    top_k: int | None,
    repetition_penalty: float | None,
    seed: int | None,
    greedy: bool,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "repetition_penalty": repetition_penalty,
        "seed": seed,
    }
    if greedy:
        out["do_sample"] = False
    chosen = {k: v for k, v in out.items() if v is not None}
    from ..runner.chat import GenerationSettings

    GenerationSettings().updated(**chosen)  # out-of-range values fail here, before a model loads
    return chosen


@contextmanager
def cli_warnings() -> Iterator[None]:
    """Show library warnings as one ``warning:`` line on stderr, not Python's file:line and
    source."""
    import warnings

    from rich.markup import escape

    from .output import err_console

    def show(message: Warning | str, *_: Any, **__: Any) -> None:  # paths may hold "[...]": escaped
        err_console().print(
            f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True
        )

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _load(name: str, device: str, dtype: str, backend: str = "transformers") -> Any:
    from ..errors import UsageError
    from ..runner.config import read_config
    from ..runner.gguf.resolve import looks_like_gguf
    from ..runner.resolve import registry_entry, resolve_checkpoint
    from .output import err_console

    if backend == "llama.cpp" or looks_like_gguf(name):  # a GGUF file, or NAME:LEVEL
        from ..runner.api import load

        err_console().print(f"loading {name} (GGUF, {backend}) ...", highlight=False, markup=False)
        with cli_warnings():
            return load(name, device=device, dtype=dtype, backend=backend)

    not_generative = UsageError(
        f"{name} is a reward model: it scores conversations, it does not generate. "
        "Use `model-zoo score`, `model-zoo compare` or `model-zoo serve-reward`."
    )
    info = registry_entry(name)
    if info is not None and info.kind == "reward":  # refuse before pulling it
        raise not_generative
    resolved = resolve_checkpoint(name)  # fails fast, before torch is imported
    if read_config(resolved.path).is_reward:  # refuse before reading any weights
        raise not_generative
    err_console().print(f"loading {resolved.path} ...", highlight=False, markup=False)
    from ..runner.api import load

    with cli_warnings():
        return load(resolved.path, device=device, dtype=dtype, backend=backend)


def _print_reply(
    runner: Any,
    messages: Any,
    *,
    system: str | None,
    thinking: bool,
    stream: bool,
    generation: dict[str, Any],
) -> str:
    if stream:
        parts = []
        for piece in runner.chat(
            messages, system=system, thinking=thinking, stream=True, **generation
        ):
            sys.stdout.write(piece)
            sys.stdout.flush()
            parts.append(piece)
        sys.stdout.write("\n")
        sys.stdout.flush()
        return "".join(parts)
    reply = runner.chat(messages, system=system, thinking=thinking, **generation)
    typer.echo(reply)
    return reply


def register(app: typer.Typer) -> None:
    device_opt = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N")
    dtype_opt = typer.Option("auto", "--dtype", help="auto | bfloat16 | float16 | float32")
    system_opt = typer.Option(
        None, "--system", help="System prompt (default: the model's; '' for none)."
    )
    thinking_opt = typer.Option(
        False, "--thinking", help="Use InternLM3's deep-thinking system prompt."
    )
    max_opt = typer.Option(None, "--max-new-tokens", "-n", help="Most tokens to generate.")
    temp_opt = typer.Option(None, "--temperature", "-t", help="Sampling temperature (0 = greedy).")
    top_p_opt = typer.Option(None, "--top-p")
    top_k_opt = typer.Option(None, "--top-k")
    rep_opt = typer.Option(None, "--repetition-penalty")
    seed_opt = typer.Option(None, "--seed", help="Seed for reproducible sampling.")
    greedy_opt = typer.Option(False, "--greedy", help="Greedy decoding (no sampling).")
    backend_opt = typer.Option(
        "transformers",
        "--backend",
        help="transformers (native) | vllm | lmdeploy | llama.cpp (GGUF files, llama-cpp-python).",
    )

    @app.command("run")
    def run_cmd(
        name: str = typer.Argument(
            ..., help="Model name (pulled if missing) or checkpoint directory."
        ),
        prompt: str = typer.Argument(..., help="The user message."),
        stream: bool = typer.Option(False, "--stream", help="Print the reply as it is generated."),
        thinking: bool = thinking_opt,
        system: str | None = system_opt,
        device: str = device_opt,
        dtype: str = dtype_opt,
        max_new_tokens: int | None = max_opt,
        temperature: float | None = temp_opt,
        top_p: float | None = top_p_opt,
        top_k: int | None = top_k_opt,
        repetition_penalty: float | None = rep_opt,
        seed: int | None = seed_opt,
        greedy: bool = greedy_opt,
        backend: str = backend_opt,
    ) -> None:
        """Load a model and print one reply to PROMPT.

        Examples:
          model-zoo run internlm2_5-7b-chat "Write a haiku about mirrors."
          model-zoo run InternLM3-8B-Instruct "How many primes are below 100?" --thinking --stream
          model-zoo run ./my-checkpoint "Hello" --device cpu --greedy -n 32
          model-zoo run internlm2_5-7b-chat:q4_k_m "Hello"          # the GGUF file, native
          model-zoo run ./internlm2_5-7b-chat-q4_k_m.gguf "Hello" --backend llama.cpp
        """
        gen = _generation(
            max_new_tokens, temperature, top_p, top_k, repetition_penalty, seed, greedy
        )
        runner = _load(name, device, dtype, backend)
        _print_reply(
            runner, prompt, system=system, thinking=thinking, stream=stream, generation=gen
        )

    @app.command("chat")
    def chat_cmd(
        name: str = typer.Argument(
            ..., help="Model name (pulled if missing) or checkpoint directory."
        ),
        thinking: bool = thinking_opt,
        system: str | None = system_opt,
        device: str = device_opt,
        dtype: str = dtype_opt,
        max_new_tokens: int | None = max_opt,
        temperature: float | None = temp_opt,
        top_p: float | None = top_p_opt,
        top_k: int | None = top_k_opt,
        repetition_penalty: float | None = rep_opt,
        seed: int | None = seed_opt,
        greedy: bool = greedy_opt,
        backend: str = backend_opt,
    ) -> None:
        """Chat with a model in the terminal (history, /reset, /system TEXT, Ctrl-D to quit).

        Examples:
          model-zoo chat InternLM3-8B-Instruct
          model-zoo chat internlm2_5-7b-chat --system "Answer briefly." -t 0.3
        """
        from .output import err_console

        gen = _generation(
            max_new_tokens, temperature, top_p, top_k, repetition_penalty, seed, greedy
        )
        runner = _load(name, device, dtype, backend)
        con = err_console()
        con.print(_HELP_CHAT, highlight=False, markup=False)
        history: list[dict[str, str]] = []
        while True:
            sys.stderr.write("you> ")
            sys.stderr.flush()
            line = sys.stdin.readline()
            if not line:  # Ctrl-D / end of input
                sys.stderr.write("\n")
                break
            text = line.rstrip("\n")
            if not text.strip():
                continue
            word, _, rest = text.strip().partition(" ") if text.startswith("/") else ("", "", "")
            if word == "/reset":
                history.clear()
                con.print("(history cleared)", highlight=False, markup=False)
                continue
            if word == "/system":
                system = rest.strip()
                history.clear()
                con.print(
                    f"(system prompt set{'' if system else ' to none'}; history cleared)",
                    highlight=False,
                    markup=False,
                )
                continue
            if word in ("/exit", "/quit"):
                break
            if word:
                con.print(f"unknown command {word}. {_HELP_CHAT}", highlight=False, markup=False)
                continue
            history.append({"role": "user", "content": text})
            sys.stderr.write("assistant> ")
            sys.stderr.flush()
            try:
                reply = _print_reply(
                    runner, history, system=system, thinking=thinking, stream=True, generation=gen
                )
            except KeyboardInterrupt:
                history.pop()
                con.print("\n(interrupted)", highlight=False, markup=False)
                continue
            history.append({"role": "assistant", "content": reply})
