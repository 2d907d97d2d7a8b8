"""Entry point of the ``model-zoo`` console script.

Builds one Typer app from the ``cmd_*`` modules, runs it, and turns model-zoo errors into a
short message on stderr and the documented exit code (see ``model_zoo.errors``).
"""

from __future__ import annotations

import importlib
import sys

import typer
from typer.models import CommandInfo

from .. import __version__
from ..errors import EXIT_USAGE, ModelZooError

# Modules that define commands; each exposes ``register(app)``. Add yours here.
COMMAND_MODULES: tuple[str, ...] = (
    "model_zoo.cli.cmd_registry",
    "model_zoo.cli.cmd_demo",
    "model_zoo.cli.cmd_dev",
    "model_zoo.cli.cmd_mirror",
    "model_zoo.cli.cmd_pull",
    "model_zoo.cli.cmd_run",
    "model_zoo.cli.cmd_reward",
    "model_zoo.cli.cmd_doctor",
    "model_zoo.cli.cmd_export",
    "model_zoo.cli.cmd_ollama",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"model-zoo {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="model-zoo",
        help="Get any InternLM checkpoint onto a GPU, verified, from whichever hub can serve it.",
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def _root(
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ) -> None:
        """model-zoo: InternLM checkpoints, verified, from any hub."""

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
    return app


def _command_name(info: CommandInfo) -> str:
    """A top-level command's name as the user types it."""
    return info.name or typer.main.get_command_name(getattr(info.callback, "__name__", ""))


def keep_only_invoked(app: typer.Typer, args: list[str]) -> None:
    """Drop every top-level command but the one ``args`` invokes, before typer builds them.

    Typer turns every command's signature into click parameters on each start (tens of
    milliseconds for all of them); a run needs only its own command. With no command, an
    option first (``--help``, ``--version``) or a name we don't know (click's "No such
    command" lists the others), everything stays.
    """
    if not args or args[0].startswith("-"):
        return
    commands = [info for info in app.registered_commands if _command_name(info) == args[0]]
    groups = [info for info in app.registered_groups if info.name == args[0]]
    if commands or groups:
        app.registered_commands, app.registered_groups = commands, groups


def report_error(exc: ModelZooError) -> None:
    """Print a model-zoo error for a person: one message, no traceback."""
    from rich.markup import escape

    from .output import err_console

    # The message is text, not markup: a path like run[1]/in.jsonl must print as it is.
    err_console().print(
        f"[bold red]error:[/] {escape(exc.message)}", markup=True, highlight=False, soft_wrap=True
    )


def _click_exceptions() -> tuple[type[BaseException], type[BaseException], type[BaseException]]:
    """(Exit, Abort, ClickException) of whichever click typer runs on.

    typer 0.26+ vendors its own click; taking the classes from typer itself keeps this
    right for every supported typer and avoids importing a second click at start-up.
    """
    click_exc = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    return typer.Exit, typer.Abort, click_exc


def main(argv: list[str] | None = None) -> int:
    exit_exc, abort_exc, click_exc = _click_exceptions()
    app = build_app()
    keep_only_invoked(app, sys.argv[1:] if argv is None else list(argv))
    try:
        rv = app(args=argv, standalone_mode=False, prog_name="model-zoo")
    except ModelZooError as exc:
        report_error(exc)
        return _exit(exc.exit_code, argv)
    except exit_exc as exc:
        return _exit(exc.exit_code, argv)  # type: ignore[attr-defined]
    except abort_exc:
        typer.echo("aborted.", err=True)
        return _exit(130, argv)
    except click_exc as exc:
        exc.show()  # type: ignore[attr-defined]
        return _exit(EXIT_USAGE, argv)
    except KeyboardInterrupt:
        typer.echo("interrupted.", err=True)
        return _exit(130, argv)
    return _exit(rv if isinstance(rv, int) else 0, argv)


def _exit(code: int, argv: list[str] | None) -> int:
    # Called as a console script (argv None): exit the process. Called from Python: return.
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    main()
