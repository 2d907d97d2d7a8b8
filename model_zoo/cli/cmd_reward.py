"""Reward commands: ``serve-reward`` (the HTTP server), ``score`` (a JSONL file) and ``compare``.

Only typer is imported at module level; the model, torch and the server load inside the commands.
Input files hold conversations: a JSON list of ``{"role", "content"}`` messages, or an object
with the list under ``"messages"`` (other keys, such as ``"id"``, are carried to the output).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

_DEVICE = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N")
_DTYPE = typer.Option("auto", "--dtype", help="auto | float32 | bfloat16 | float16")
_TRUNCATE = typer.Option(
    False,
    "--truncate",
    help="Keep the last max-length tokens of overlong inputs instead of failing.",
)
_MAX_LENGTH = typer.Option(
    None, "--max-length", help="Tokens per conversation (default: the model's)."
)
_JSON = typer.Option(False, "--json", help="Machine-readable JSON on stdout.")


def _conversation_of(value: Any, where: str) -> tuple[Any, dict[str, Any]]:
    """The messages of one input record, and the keys to carry over to the output."""
    from ..errors import InvalidConversationError
    from ..runner.messages import check_conversation

    extra: dict[str, Any] = {}
    if isinstance(value, dict):
        if "messages" not in value:
            raise InvalidConversationError(where, 'an object needs a "messages" list')
        extra = {k: v for k, v in value.items() if k != "messages"}
        value = value["messages"]
    return check_conversation(value, where), extra


def _read_text(path: Path) -> str:
    from ..errors import UsageError

    try:
        return path.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is not JSON
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8 JSON"
        ) from None


def read_conversations(path: Path) -> list[tuple[Any, dict[str, Any], str]]:
    """Every conversation of a JSONL file, checked before any model is loaded (errors name
    file:line).

    Each record is (messages, keys to carry to the output, "file:line").
    """
    from ..errors import InvalidConversationError, UsageError

    # JSONL records end at "\n" only: str.splitlines() would also cut at U+2028, U+0085 and other
    # separators that json.dumps(ensure_ascii=False) leaves raw inside strings.
    lines = [line.removesuffix("\r") for line in _read_text(path).split("\n")]
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidConversationError(where, f"not valid JSON ({exc.msg})") from None
        out.append((*_conversation_of(value, where), where))
    if not out:
        raise UsageError(f"{path} holds no conversations (one JSON conversation per line)")
    return out


def read_conversation(path: Path) -> Any:
    """One conversation from a JSON file."""
    from ..errors import InvalidConversationError

    text = _read_text(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidConversationError(str(path), f"not valid JSON ({exc.msg})") from None
    return _conversation_of(value, str(path))[0]


def _carried(extra: dict[str, Any]) -> dict[str, Any]:
    """An input record's keys to copy to its output line: never over the computed index and
    score."""
    return {k: v for k, v in extra.items() if k not in ("index", "score")}


def _too_long(exc: Any, where: str) -> Any:
    """An overlong input named by where it came from (file:line or file), with the CLI's way out."""
    from ..errors import UsageError

    limit = exc.fields["limit"]
    return UsageError(
        f"{where}: {exc.fields['tokens']} tokens, over the limit of {limit}. Shorten it, or pass "
        f"--truncate to keep its last {limit} tokens (reward token included)."
    )


def _score_with_progress(
    rm: Any, convs: list[Any], wheres: list[str], chunk: int, quiet: bool, **kw: Any
) -> list[float]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from ..errors import InputTooLongError
    from .output import err_console

    scores: list[float] = []
    columns = (TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console(), transient=True, disable=quiet) as bar:
        task = bar.add_task("score", total=len(convs))
        for start in range(0, len(convs), chunk):
            part = convs[start : start + chunk]
            try:
                scores += rm.score_batch(part, **kw)
            except InputTooLongError as exc:
                raise _too_long(exc, wheres[start + exc.fields["index"]]) from None
            bar.advance(task, len(part))
    return scores


def register(app: typer.Typer) -> None:
    @app.command("serve-reward")
    def serve_reward_cmd(
        name: str = typer.Argument(..., help="Reward model name or checkpoint directory."),
        host: str = typer.Option(
            "127.0.0.1", "--host", help="Address to bind (loopback by default)."
        ),
        port: int = typer.Option(8000, "--port", help="Port (0 picks a free one)."),
        api_key: str | None = typer.Option(
            None,
            "--api-key",
            envvar="MODEL_ZOO_API_KEY",
            help="Require 'Authorization: Bearer KEY' (env MODEL_ZOO_API_KEY).",
        ),
        device: str = _DEVICE,
        dtype: str = _DTYPE,
        replicas: int = typer.Option(
            1, "--replicas", help="Replicas on Ray (needs the 'ray' extra) when > 1."
        ),
        max_length: int | None = _MAX_LENGTH,
        truncate: bool = _TRUNCATE,
        wait_ms: float = typer.Option(
            5.0, "--wait-ms", help="How long a batch waits for more requests."
        ),
        max_batch_items: int = typer.Option(
            256, "--max-batch-items", help="Conversations per merged batch."
        ),
        max_tokens_per_batch: int | None = typer.Option(
            None, "--max-tokens-per-batch", help="Padded tokens per forward pass."
        ),
        max_request_bytes: int = typer.Option(8 * 1024 * 1024, "--max-request-bytes"),
        max_items: int = typer.Option(1024, "--max-items", help="Items per request."),
        max_tokens_per_item: int | None = typer.Option(None, "--max-tokens-per-item"),
        max_queue: int = typer.Option(4096, "--max-queue", help="Items waiting before 429."),
        request_timeout: float = typer.Option(
            600.0, "--request-timeout", help="Seconds a request may wait for its scores before 504."
        ),
        drain_timeout: float = typer.Option(
            30.0,
            "--drain-timeout",
            help="Seconds Ctrl-C/SIGTERM waits for requests in flight "
            "(a second Ctrl-C stops at once).",
        ),
        pooling_format: str = typer.Option(
            "vllm",
            "--pooling-format",
            help="Whose answer POST /pooling gives: vllm or lmdeploy (their "
            "clients send the same request; /vllm/pooling and "
            "/lmdeploy/pooling always give each).",
        ),
    ) -> None:
        """Serve a reward model over HTTP: OpenRLHF's /get_reward, vLLM's and LMDeploy's /pooling,
        SGLang's /classify, and /v1/score, /v1/compare, /v1/rank.

        Examples:
          model-zoo serve-reward internlm2-7b-reward --port 8000
          model-zoo serve-reward internlm2-7b-reward --host 0.0.0.0 --api-key "$KEY" --replicas 4
        """
        import os
        import signal
        import threading

        from ..errors import UsageError
        from ..reward.model import check_positive
        from ..server.protocol import ServerLimits

        check_positive(
            **{
                "--max-request-bytes": max_request_bytes,
                "--max-items": max_items,
                "--max-tokens-per-item": max_tokens_per_item,
                "--max-queue": max_queue,
                "--max-batch-items": max_batch_items,
                "--replicas": replicas,
            }
        )
        if not 0 <= port <= 65535:
            raise UsageError(f"--port must be between 0 and 65535 (0 picks a free one), got {port}")
        if wait_ms < 0:
            raise UsageError(f"--wait-ms must be 0 or more, got {wait_ms:g}")
        from ..server.runtimes import POOLING_FORMATS

        if pooling_format not in POOLING_FORMATS:
            raise UsageError(
                f"--pooling-format must be one of {', '.join(POOLING_FORMATS)}, "
                f"got {pooling_format!r}"
            )
        for flag, value in (
            ("--request-timeout", request_timeout),
            ("--drain-timeout", drain_timeout),
        ):
            if not value > 0:
                raise UsageError(f"{flag} must be a number of seconds above 0, got {value:g}")
        from ..server.reward_server import check_api_key, check_listenable, serve_reward
        from .output import err_console

        con = err_console()
        from ..netaddr import is_loopback_host

        if not is_loopback_host(host) and not api_key:
            con.print(
                f"[yellow]warning:[/] serving on {host} without an API key: anyone who can reach "
                "this port can use the model. Set --api-key or MODEL_ZOO_API_KEY.",
                highlight=False,
            )
        check_api_key(api_key)
        check_listenable(host, port)  # a taken port fails now, not after the model has loaded
        rm = _load(
            name,
            device=device,
            dtype=dtype,
            replicas=replicas,
            max_length=max_length,
            max_tokens_per_batch=max_tokens_per_batch,
        )
        stop = threading.Event()

        def on_signal(*_: Any) -> None:
            if stop.is_set():  # a second Ctrl-C/SIGTERM while draining: stop now
                con.print("stopping at once: requests in flight are not answered", highlight=False)
                os._exit(130)
            stop.set()
            con.print(
                f"stopping: answering the requests in flight (up to {drain_timeout:g} s; "
                "Ctrl-C again to stop at once)",
                highlight=False,
            )

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, on_signal)

        def ready(server: Any) -> None:
            # A wildcard address is where the server listens, not where a client can reach it.
            reach = server.url.replace("0.0.0.0", "THIS-HOST").replace("[::]", "THIS-HOST")
            con.print(
                f"serving {rm.name} on {server.url} "
                f"(OpenRLHF: --reward.remote_url {reach}/get_reward; "
                f"vLLM/LMDeploy/SGLang clients: {reach}, /pooling is {pooling_format}'s); "
                "Ctrl-C to stop",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )

        limits = ServerLimits(
            max_request_bytes=max_request_bytes,
            max_items_per_request=max_items,
            max_tokens_per_item=max_tokens_per_item,
            max_queue=max_queue,
        )
        try:
            server = serve_reward(
                rm,
                host=host,
                port=port,
                api_key=api_key,
                stop=stop,
                on_ready=ready,
                limits=limits,
                wait_s=wait_ms / 1000,
                max_batch_items=max_batch_items,
                truncate=truncate,
                max_tokens_per_batch=max_tokens_per_batch,
                request_timeout=request_timeout,
                drain_timeout=drain_timeout,
                pooling_format=pooling_format,
            )
        finally:
            rm.close()
        if server.unanswered:
            con.print(
                f"[yellow]stopped after {drain_timeout:g} s:[/] {server.unanswered} connection(s) "
                "still had requests unanswered",
                highlight=False,
            )
        else:
            con.print("stopped: every request received was answered", highlight=False)

    @app.command("score")
    def score_cmd(
        name: str = typer.Argument(..., help="Reward model name or checkpoint directory."),
        input: Path = typer.Option(
            ..., "--input", "-i", help="JSONL file, one conversation per line."
        ),  # noqa: A002
        output: Path | None = typer.Option(
            None, "--output", "-o", help="Write JSONL scores here (default: stdout)."
        ),
        batch_size: int | None = typer.Option(
            None, "--batch-size", help="Conversations per forward pass."
        ),
        max_tokens_per_batch: int | None = typer.Option(None, "--max-tokens-per-batch"),
        max_length: int | None = _MAX_LENGTH,
        truncate: bool = _TRUNCATE,
        device: str = _DEVICE,
        dtype: str = _DTYPE,
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ) -> None:
        """Score every conversation of a JSONL file; one {"index", "score", ...} line per input.

        Each line: a list of {"role", "content"} messages, or an object with the
        list under "messages" (its other keys, such as "id", are copied to the
        output line; "index" and "score" there are always model-zoo's own).

        Examples:
          model-zoo score internlm2-1_8b-reward --input conversations.jsonl --output scores.jsonl
          model-zoo score internlm2-7b-reward -i pairs.jsonl --batch-size 16 --truncate
        """
        from ..errors import UsageError
        from ..reward.model import check_positive

        records = read_conversations(input)
        check_positive(
            max_length=max_length, max_tokens_per_batch=max_tokens_per_batch, batch_size=batch_size
        )
        if output is not None and output.is_dir():
            raise UsageError(
                f"--output {output} is a directory; give the path of the JSONL file to write"
            )
        if output is not None and output.exists() and output.samefile(input):
            raise UsageError(
                f"--output {output} is the input file: writing scores would replace the input "
                "conversations. Choose another --output path."
            )
        rm = _load(
            name,
            device=device,
            dtype=dtype,
            max_length=max_length,
            max_tokens_per_batch=max_tokens_per_batch,
        )
        convs, wheres = [c for c, _, _ in records], [w for _, _, w in records]
        chunk = max(256, batch_size or 0)  # progress steps; never smaller than one forward pass
        scores = _score_with_progress(
            rm, convs, wheres, chunk, quiet, batch_size=batch_size, truncate=truncate
        )
        lines = [
            json.dumps({"index": i, "score": s, **_carried(extra)}, ensure_ascii=False)
            for i, (s, (_, extra, _)) in enumerate(zip(scores, records, strict=True))
        ]
        text = "\n".join(lines) + "\n"
        if output is None:
            typer.echo(text, nl=False)
        else:
            from ..store.atomic import write_atomic

            write_atomic(output, text)

    @app.command("compare")
    def compare_cmd(
        name: str = typer.Argument(..., help="Reward model name or checkpoint directory."),
        a: Path = typer.Argument(..., help="JSON file with conversation A."),
        b: Path = typer.Argument(..., help="JSON file with conversation B."),
        truncate: bool = _TRUNCATE,
        device: str = _DEVICE,
        dtype: str = _DTYPE,
        as_json: bool = _JSON,
    ) -> None:
        """Which of two conversations the reward model prefers (A wins only if it scores strictly
        higher).

        Examples:
          model-zoo compare internlm2-1_8b-reward a.json b.json
          model-zoo compare internlm2-7b-reward a.json b.json --json
        """
        conv_a, conv_b = read_conversation(a), read_conversation(b)
        rm = _load(name, device=device, dtype=dtype)
        from ..errors import InputTooLongError

        try:
            sa, sb = rm.score_batch([conv_a, conv_b], truncate=truncate)
        except InputTooLongError as exc:
            raise _too_long(exc, str((a, b)[exc.fields["index"]])) from None
        better = "a" if sa > sb else "b" if sb > sa else "tie"
        if as_json:
            from .output import print_json

            print_json({"a": sa, "b": sb, "better": better, "a_better": sa > sb})
            return
        typer.echo(
            f"A {sa:+.6f}  {a}\nB {sb:+.6f}  {b}\n"
            + (f"better: {better.upper()}" if better != "tie" else "tie")
        )


def _load(name: str, *, device: str, dtype: str, replicas: int = 1, **kw: Any) -> Any:
    from .cmd_run import cli_warnings

    with cli_warnings():
        if replicas > 1:
            from ..reward.ray import load_reward_ray

            return load_reward_ray(
                name,
                replicas=replicas,
                device=device,
                dtype=dtype,
                **{k: v for k, v in kw.items() if v is not None},
            )
        from ..reward.api import load_reward

        return load_reward(name, device=device, dtype=dtype, **kw)
