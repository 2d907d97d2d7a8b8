"""``model-zoo export vllm NAME_OR_DIR [OUT]`` and ``model-zoo serve NAME --backend vllm|lmdeploy``.

Only typer at module level. ``export`` imports the tokenizer (sentencepiece, tokenizers) but not
torch; ``serve`` starts the engine in a process of its own and waits for it.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    export_app = typer.Typer(
        help="Export a checkpoint for a serving engine (no checkpoint code needed; "
        "see docs/serving.md).\n\n"
        "Example:\n  model-zoo export vllm internlm2_5-7b-chat",
        no_args_is_help=True,
    )
    app.add_typer(export_app, name="export")

    @export_app.command("vllm")
    def export_vllm_cmd(
        name: str = typer.Argument(
            ..., help="Registry name (pulled if missing) or checkpoint directory."
        ),
        out: str | None = typer.Argument(
            None, help="Export directory (default: under the store's exports/)."
        ),
        force: bool = typer.Option(False, "--force", help="Replace an earlier export in OUT."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Write a directory vLLM serves with trust_remote_code=False: hard links to the verified
        weights, a config without auto_map, and a tokenizer.json made from model-zoo's tokenizer
        (checked against it). Prints the directory last.

        Examples:
          model-zoo export vllm internlm2_5-7b-chat
          model-zoo export vllm ./internlm3-8b-instruct /data/exports/internlm3 --force
        """
        from ..export.vllm import export_vllm
        from .output import err_console, print_json

        result = export_vllm(name, out, force=force)
        if as_json:
            print_json(result.to_dict())
            return
        how = "reused" if result.reused else f"{result.linked} linked, {result.copied} copied"
        err_console().print(
            f"exported {result.architecture} ({how}; tokenizer checked on "
            f"{result.tokenizer_texts} texts) in {result.seconds:.2f} s",
            highlight=False,
            markup=False,
        )
        for note in result.notes:
            err_console().print(f"note: {note}", highlight=False, markup=False)
        typer.echo(str(result.path))

    @app.command(
        "serve", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
    )
    def serve_cmd(
        ctx: typer.Context,
        name: str = typer.Argument(
            ..., help="Registry name (pulled if missing) or checkpoint directory."
        ),
        backend: str = typer.Option(..., "--backend", help="vllm or lmdeploy (GPU only)."),
        host: str = typer.Option(
            "127.0.0.1", "--host", help="Address to bind (loopback by default)."
        ),
        port: int = typer.Option(8000, "--port", help="Port."),
        python: str | None = typer.Option(
            None,
            "--python",
            help="Interpreter of the environment that has the engine (default: this one).",
        ),
        ready_timeout: float = typer.Option(
            900.0, "--ready-timeout", help="Seconds to wait for the server's /health."
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Export, print the engine's command, and stop."
        ),
    ) -> None:
        """Serve a checkpoint with vLLM or LMDeploy's OpenAI-compatible server, on model-zoo's
        export: no checkpoint code runs, the registry's chat template and sampling are the
        defaults, and reward models answer /pooling with the reward token appended. Arguments
        after -- go to the engine.

        Examples:
          model-zoo serve internlm2_5-7b-chat --backend vllm --port 8000 -- --max-model-len 8192
          model-zoo serve internlm2-7b-reward --backend vllm --python ~/venvs/vllm/bin/python
        """
        import shlex
        import signal
        import subprocess

        from ..errors import UsageError
        from ..export.serve import engine_environment, plan_serve, wait_until_ready
        from .output import err_console

        if not 0 < port <= 65535:
            raise UsageError(f"--port must be between 1 and 65535, got {port}")
        plan = plan_serve(
            name, engine=backend, host=host, port=port, python=python, extra=list(ctx.args)
        )
        err = err_console()
        if dry_run:
            typer.echo(shlex.join(plan.command))
            return
        err.print(f"starting {plan.engine} on {plan.export_dir} ...", highlight=False, markup=False)
        proc = subprocess.Popen(plan.command, env=engine_environment())

        def stop(
            signum: int, _frame: object
        ) -> None:  # SIGTERM: stop the engine too (finally below)
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, stop)
        try:
            wait_until_ready(proc, plan.url, engine=plan.engine, timeout=ready_timeout)
            what = (
                "/pooling (reward: last score of data[i].data)"
                if plan.reward
                else "/v1/chat/completions"
            )
            err.print(
                f"{plan.model} is served at {plan.url} ({what}); Ctrl-C stops it",
                highlight=False,
                markup=False,
            )
            proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if proc.returncode not in (0, -signal.SIGTERM, -signal.SIGINT):
            raise typer.Exit(1)
