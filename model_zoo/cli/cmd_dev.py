"""``model-zoo dev``: tools for building test fixtures (tiny checkpoints, a local hub tree)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

dev_app = typer.Typer(
    name="dev",
    help="Build fixtures for tests and CI: tiny InternLM checkpoints and a local hub tree.\n\n"
    "Example:\n  model-zoo dev make-tiny internlm2 ./tiny-internlm2",
    no_args_is_help=True,
)


@dev_app.command("make-tiny")
def make_tiny_cmd(
    arch: str = typer.Argument(
        ..., help="internlm2, internlm2-reward, polar, internlm3 or internlm (v1)."
    ),
    out_dir: Path = typer.Argument(..., help="Directory to write (created; must be empty)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives identical bytes."),
    shards: int = typer.Option(2, "--shards", help="Number of safetensors shards (1: no index)."),
    dtype: str = typer.Option("bfloat16", "--dtype", help="bfloat16, float16 or float32."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Write a tiny checkpoint with the real InternLM layout (config, sharded weights,
    SentencePiece tokenizer with chat template) for tests and CI pipelines.

    The result is a plain checkpoint directory: `model-zoo run DIR "Hello" -n 16` loads it.

    To serve tiny repositories from a local hub for `pull` and the official clients:

      model-zoo dev make-hub-tree ./hub && model-zoo serve-mirror ./hub

    Examples:
      model-zoo dev make-tiny internlm2 ./tiny-internlm2
      model-zoo dev make-tiny internlm2-reward ./tiny-reward --shards 1 --seed 7
    """
    _need_numpy()
    from ..testing.tiny import make_tiny, special_token_ids

    with _writing(out_dir):
        path = make_tiny(arch, out_dir, seed=seed, shards=shards, dtype=dtype, overwrite=force)
    _report(
        path, {"arch": arch, "seed": seed, "special_token_ids": special_token_ids(arch)}, as_json
    )
    if not as_json:  # a hint for people, on stderr: stdout stays the one result line
        typer.echo(
            f'run it: model-zoo run {path} "Hello" -n 16 --device cpu; serve tiny repos from a '
            "local hub: model-zoo dev make-hub-tree ./hub && model-zoo serve-mirror ./hub",
            err=True,
        )


@dev_app.command("make-hub-tree")
def make_hub_tree_cmd(
    root: Path = typer.Argument(..., help="Directory to lay out as ROOT/<namespace>/<name>/."),
    models: list[str] = typer.Option(
        [],
        "--model",
        "-m",
        help="Registry model whose sources to lay out (repeatable); "
        "default: one chat, reward, InternLM3 and v1 model.",
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed for the tiny weights."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Lay out tiny repositories under real InternLM repository ids, for `serve-mirror`.

    Examples:
      model-zoo dev make-hub-tree ./hub
      model-zoo dev make-hub-tree ./hub -m internlm2_5-7b-chat -m internlm2-7b-reward
    """
    _need_numpy()
    from ..testing.tiny_hub import make_hub_tree, registry_repos

    wanted = registry_repos(*models) if models else None
    with _writing(root):
        repos = make_hub_tree(root, wanted, seed=seed)
    if as_json:
        from .output import print_json

        print_json({"root": str(root), "repos": {k: str(v) for k, v in repos.items()}})
        return
    # Plain echo, never wrapped: scripts read these lines (a wrapped path is a broken path).
    for repo_id in repos:
        typer.echo(repo_id)
    typer.echo(f"{len(repos)} repositories under {root}")


@contextmanager
def _writing(target: Path) -> Iterator[None]:
    """Turn a filesystem failure while writing ``target`` into an error that names it."""
    try:
        yield
    except OSError as exc:
        from ..errors import UsageError

        where = exc.filename or target
        raise UsageError(
            f"cannot write {target}: {exc.strerror or exc} ({where}); pass a directory you can "
            "create and write (it must not be an existing file)",
        ) from None


def _need_numpy() -> None:
    try:
        import numpy  # noqa: F401
    except ImportError as exc:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("numpy", extra="runner", feature="tiny checkpoints") from exc


def _report(path: Path, info: dict[str, object], as_json: bool) -> None:
    files = sorted(p for p in path.iterdir() if p.is_file())
    total = sum(p.stat().st_size for p in files)
    if as_json:
        from .output import print_json

        print_json({"path": str(path), **info, "files": [p.name for p in files], "bytes": total})
        return
    from .output import human_size

    typer.echo(f"wrote {len(files)} files ({human_size(total)}) to {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(dev_app, name="dev")
