"""``model-zoo ollama NAME[:LEVEL]``: hand a GGUF release to Ollama (Modelfile + ``ollama create``).

Only typer at module level; the GGUF header is read with the standard library (no torch).
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("ollama")
    def ollama_cmd(
        name: str = typer.Argument(
            ..., help="Registry model with its GGUF level (NAME:LEVEL), or a .gguf file."
        ),
        gguf: str | None = typer.Option(
            None, "--gguf", help="The GGUF level, when NAME has none (default q4_k_m)."
        ),
        ollama_name: str | None = typer.Option(
            None, "--name", help="Name of the Ollama model (default NAME:LEVEL)."
        ),
        create: bool = typer.Option(
            True, "--create/--no-create", help="Run `ollama create` when ollama is on PATH."
        ),
    ) -> None:
        """Write an Ollama Modelfile next to a GGUF file (pulled, verified, when missing) and create
        the Ollama model: the chat template, stops, recommended parameters and licence of the model.

        Examples:
          model-zoo ollama internlm3-8b-instruct:q4_k_m
          model-zoo ollama internlm2_5-7b-chat --gguf q8_0 --name my-internlm
          model-zoo ollama ./internlm2_5-7b-chat-q4_k_m.gguf --no-create
        """
        from ..ollama.create import create as run_create
        from ..ollama.create import ollama_binary, prepare

        plan = prepare(name, gguf=gguf, ollama_name=ollama_name)
        typer.echo(f"wrote {plan.modelfile}", err=True)
        command = " ".join(plan.command)
        binary = ollama_binary() if create else None
        if binary is None:
            why = "ollama is not on PATH" if create else "--no-create"
            typer.echo(f"{why}; create the model with:\n  {command}", err=True)
        else:
            typer.echo(f"running: {command}", err=True)
            output = run_create(plan, binary)
            if output.strip():
                typer.echo(output.strip(), err=True)
            typer.echo(f"created {plan.ollama_name}: ollama run {plan.ollama_name}", err=True)
        typer.echo(str(Path(plan.modelfile)))
