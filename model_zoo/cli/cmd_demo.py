"""`model-zoo demo`: the whole flow offline against the built-in local hub."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(
    workdir: Path | None = typer.Option(
        None, "--workdir", help="Keep the hub tree and store here (default: a temporary directory)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON report instead of the steps."
    ),
) -> None:
    """Run pull, verify, load, chat and reward scoring offline on tiny checkpoints.

    Needs the runner extra (torch). Touches neither the network nor your store.

    Example:

        model-zoo demo
    """
    from ..demo import DemoStep, run_demo
    from .output import print_json

    def show(step: DemoStep) -> None:
        if as_json:
            return
        typer.echo(f"✔ {step.title}  ({step.seconds:.2f} s)")
        for line in step.detail:
            typer.echo(f"    {line}")

    report = run_demo(workdir=workdir, on_step=show)
    if as_json:
        print_json(report.to_dict())
    else:
        typer.echo("\nDone. For a real model: model-zoo pull internlm2_5-7b-chat")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
