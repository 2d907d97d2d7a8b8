"""Download and integrity commands: ``pull``, ``verify``, ``lock`` and ``cache list|du|rm``.

Only typer is imported at module level. ``pull`` prints progress on stderr and the final path
last on stdout, so ``DIR=$(model-zoo pull NAME)`` works; ``--json`` prints events as JSON lines
on stdout instead, the last one ``{"event": "result", "path": ...}``. Ctrl-C during ``pull``
prints one line saying how many bytes are kept and where (a rerun resumes) and exits 130.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

_JSON = typer.Option(False, "--json", help="Machine-readable JSON on stdout.")
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C


def _report_interrupt(tally: Any, json_out: bool) -> None:
    """Ctrl-C: one line on stderr saying what is kept and where, so the user knows a rerun
    resumes instead of starting over (and, with ``--json``, the same as an event on stdout)."""
    import sys

    if json_out:
        print_json_line(
            {
                "event": "interrupted",
                "path": tally.path,
                "kept_bytes": tally.completed,
                "total_bytes": tally.total,
                "files_done": tally.files_done,
                "files_total": tally.files_total,
            }
        )
    sys.stderr.write(tally.interrupted_line() + "\n")
    sys.stderr.flush()


@contextmanager
def _second_interrupt_stops_at_once() -> Iterator[None]:
    """The first Ctrl-C stops the pull cleanly (workers end, partials are recorded); a second
    one, while that winds down, exits at once: a user who presses it twice means it."""
    import os
    import signal
    import sys
    import threading

    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield  # not ours to change (a host program, or Ctrl-C ignored as in a background job)
        return
    fired = False

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal fired
        if fired:
            restore = "\x1b[?25h\n" if sys.stderr.isatty() else ""  # the bars hid the cursor
            os.write(
                2,
                f"{restore}interrupted again: stopped at once; run the same command again "
                "to resume\n".encode(),
            )
            os._exit(EXIT_INTERRUPTED)
        fired = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _emit_path(path: Path) -> None:
    typer.echo(str(path))


def _dry_run_table(result: Any) -> None:
    from rich.table import Table

    from .output import err_console, human_size

    con = err_console()
    table = Table(
        title=f"{result.name} from {result.source} ({result.repo_id} @ "
        f"{(result.commit or result.revision or 'default')[:12]})",
        title_justify="left",
    )
    for col in ("file", "size", "verified by", "status"):
        table.add_column(col, justify="right" if col == "size" else "left")
    for f in result.files:
        status = (
            "present"
            if f.present
            else (
                "on disk, re-hashed"
                if f.size and f.resumable >= f.size
                else f"to download ({human_size(f.resumable)} kept)"
                if f.resumable
                else "to download"
            )
        )
        table.add_row(f.path, human_size(f.size), f.method, status)
    con.print(table)
    con.print(f"{result.plan_text}", highlight=False, markup=False)
    if result.skipped:
        con.print(
            f"skipped {len(result.skipped)} file(s): "
            + ", ".join(f"{p} ({r})" for p, r in result.skipped[:6])
            + (" …" if len(result.skipped) > 6 else ""),
            highlight=False,
            markup=False,
        )
    fits = {True: "fits", False: "does NOT fit", None: "free space unknown"}[result.fits]
    con.print(
        f"total {human_size(result.total_size)}, to download {human_size(result.to_download)}, "
        f"free {human_size(result.free_bytes)} at {result.path}: {fits}",
        highlight=False,
    )


def _summary(result: Any) -> None:
    from .output import err_console, human_size

    counts = result.verified_counts()
    how = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    moved = f"downloaded {human_size(result.downloaded_bytes)}"
    if result.resumed_bytes:
        moved += f" (+{human_size(result.resumed_bytes)} resumed)"
    if result.reused_files:
        moved += f", {result.reused_files} file(s) reused from the store"
    if not result.plan:
        moved = "nothing downloaded"
    con = err_console()
    for note in result.notes:
        con.print(f"[yellow]note:[/] {note}", highlight=False)
    con.print(
        f"{result.name}: {sum(counts.values())} files verified ({how}); {moved}",
        highlight=False,
        markup=False,
    )
    weak = [
        r.path
        for r in (result.manifest.files if result.manifest else ())
        if r.verified == "size-only"
    ]
    if weak:
        con.print(
            f"[yellow]note:[/] no hub publishes a sha256 for {', '.join(weak[:5])}"
            f"{' …' if len(weak) > 5 else ''}; only sizes were checked (use --sources with a "
            "second hub, or a lock file, to verify them)",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    cache = typer.Typer(
        help="Inspect and clean the local store ($MODEL_ZOO_HOME).\n\n"
        "Example:\n  model-zoo cache du",
        no_args_is_help=True,
    )
    app.add_typer(cache, name="cache")

    @app.command("pull")
    def pull_cmd(
        name: str | None = typer.Argument(
            None, help="Model name (any spelling, optional :LEVEL and @revision)."
        ),
        source: str = typer.Option(
            "auto",
            "--source",
            "-s",
            help="auto | hf | modelscope | modelers | openxlab | openxlab-origin",
        ),
        sources: str | None = typer.Option(
            None, "--sources", help="Several sources at once, e.g. hf,modelscope."
        ),
        revision: str | None = typer.Option(None, "--revision", "-r", help="Commit or tag to pin."),
        gguf: str | None = typer.Option(
            None,
            "--gguf",
            help="One GGUF file of the model's GGUF release, by level: q4_k_m, q8_0, fp16.",
        ),
        local_dir: Path | None = typer.Option(
            None, "--local-dir", help="Put the files here, not in the store."
        ),
        include: list[str] = typer.Option(
            [], "--include", help="Only files matching this glob (repeatable)."
        ),
        exclude: list[str] = typer.Option(
            [], "--exclude", help="Skip files matching this glob (repeatable)."
        ),
        all_files: bool = typer.Option(
            False, "--all-files", help="Also take redundant weight formats (.bin)."
        ),
        lock: Path | None = typer.Option(
            None, "--lock", help="Pull exactly what this lock file records."
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Show files, sizes and free space; download nothing."
        ),
        json_out: bool = _JSON,
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
        connections: int | None = typer.Option(
            None,
            "--connections",
            "--max-workers",
            min=1,
            help="Most requests at once (default: as many as the link rewards, up to 32).",
        ),
    ) -> None:
        """Download a checkpoint, verify every byte, and print its directory (last line of stdout).

        Examples:
          model-zoo pull internlm2_5-7b-chat
          DIR=$(model-zoo pull InternLM3-8B-Instruct -q)
          model-zoo pull internlm2_5-7b-chat --sources hf,modelscope
          model-zoo pull internlm2_5-7b-chat --dry-run
          model-zoo pull internlm3-8b-instruct --gguf q4_k_m  # one GGUF file
          model-zoo pull internlm3-8b-instruct-gguf:q4_k_m    # the same file
          model-zoo pull --lock model-zoo.lock
        """
        from ..download.pull import pull_model
        from ..errors import UsageError
        from .progress import make_renderer

        names = [name] if name else []
        if not names:
            if lock is None:
                raise UsageError(
                    "name a model to pull, or pass --lock FILE to pull every model it lists"
                )
            from ..store.lockfile import read_lock

            names = [m.name for m in read_lock(lock).models]
            if local_dir is not None and len(names) > 1:
                raise UsageError(
                    f"the lock file lists {len(names)} models ({', '.join(names)}) and "
                    "--local-dir holds one checkpoint; name the model: "
                    "model-zoo pull NAME --lock FILE --local-dir DIR"
                )
        renderer = make_renderer(json_events=json_out, quiet=quiet)
        results = []
        try:
            with _second_interrupt_stops_at_once():
                for n in names:
                    results.append(
                        pull_model(
                            n,
                            source=source,
                            sources=sources,
                            revision=revision,
                            local_dir=local_dir,
                            include=include or None,
                            exclude=exclude or None,
                            all_files=all_files,
                            lock=lock,
                            dry_run=dry_run,
                            progress=renderer,
                            connections=connections,
                            gguf=gguf,
                        )
                    )
        except KeyboardInterrupt:
            renderer.close()  # the bars' last frame first, then the one line below it
            _report_interrupt(renderer.tally, json_out)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        finally:
            renderer.close()
        for result in results:
            if json_out:
                print_json_line(result.to_dict())
                continue
            if dry_run:
                _dry_run_table(result)
            elif not quiet:
                _summary(result)
        if not json_out:
            for result in results:
                _emit_path(result.path)

    @app.command("verify")
    def verify_cmd(
        target: str = typer.Argument(..., help="A model name (its store copy) or a directory."),
        lock: Path | None = typer.Option(
            None, "--lock", help="Check hashes against this lock file."
        ),
        json_out: bool = _JSON,
        quick: bool = typer.Option(
            False, "--quick", help="Sizes and structure only; re-hash only changed files."
        ),
        workers: int | None = typer.Option(
            None, "--workers", min=1, help="Hashing threads (default: cores)."
        ),
    ) -> None:
        """Re-hash every file against the manifest (or a lock) and check the safetensors structure.

        Exits 3 naming the file when anything is wrong.

        Examples:
          model-zoo verify internlm2_5-7b-chat
          model-zoo verify ./my-checkpoint --json
          model-zoo verify internlm2_5-7b-chat --lock model-zoo.lock
        """
        from ..store.verify import verify
        from .output import err_console, human_size, print_json

        report = verify(target, lock=lock, hashes="changed" if quick else "all", workers=workers)
        if json_out:
            print_json(report.to_dict())
        else:
            con = err_console()
            for p in report.problems:
                con.print(f"[red]✗[/] {p.path}: {p.detail}", highlight=False)
            if report.unlisted:
                shown = ", ".join(report.unlisted[:5]) + (" …" if len(report.unlisted) > 5 else "")
                con.print(
                    f"[yellow]note:[/] {len(report.unlisted)} file(s) on disk that the "
                    f"{report.against} does not list (no hash to compare): {shown}",
                    highlight=False,
                )
            status = "OK" if report.ok else f"{len(report.problems)} problem(s)"
            against = (
                f"against the {report.against}"
                if report.against != "none"
                else "(no manifest or lock file: hashes computed, not compared)"
            )
            con.print(
                f"{report.root}: {len(report.files)} files, "
                f"{human_size(report.bytes_hashed)} hashed {against} in {report.seconds:.2f} s "
                f"({human_size(report.throughput)}/s, {report.workers} threads); "
                f"structure checked: {status}",
                highlight=False,
            )
        report.raise_for_problems()
        if not json_out:
            typer.echo(str(report.root))

    @app.command("lock")
    def lock_cmd(
        names: list[str] = typer.Argument(..., help="Models to lock (each may carry @revision)."),
        source: str = typer.Option("auto", "--source", "-s", help="Source to lock against."),
        revision: str | None = typer.Option(None, "--revision", "-r", help="Commit or tag."),
        include: list[str] = typer.Option([], "--include", help="Only files matching this glob."),
        exclude: list[str] = typer.Option([], "--exclude", help="Skip files matching this glob."),
        all_files: bool = typer.Option(
            False, "--all-files", help="Also lock redundant weight formats."
        ),
        output: Path | None = typer.Option(
            None,
            "--output",
            "-o",
            help="Write the lock here, only once locking succeeded (atomic; a shell "
            "redirect leaves an empty file behind when it fails).",
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
    ) -> None:
        """Record each model's source, commit and every file's size and sha256 (JSON).

        Examples:
          model-zoo lock internlm2_5-7b-chat InternLM2-7B-Reward -o model-zoo.lock
          model-zoo lock InternLM3-8B-Instruct --source modelscope -o model-zoo.lock
        """
        from ..download.make_lock import lock_models
        from ..store.atomic import write_json_atomic
        from .progress import make_renderer

        renderer = make_renderer(quiet=quiet, tty=False)
        lock_file = lock_models(
            names,
            source=source,
            revision=revision,
            include=include or None,
            exclude=exclude or None,
            all_files=all_files,
            progress=renderer,
        )
        if output is not None:
            write_json_atomic(output, lock_file.to_dict())
        else:
            typer.echo(lock_file.dumps(), nl=False)

    @cache.command("list")
    def cache_list(json_out: bool = _JSON) -> None:
        """Every model in the store: revision, source, size, when verified, path.

        Examples:
          model-zoo cache list
          model-zoo cache list --json
        """
        from ..settings import load_settings
        from ..store.cache import incomplete_dirs, iter_snapshots
        from .output import console, human_size, print_json

        home = load_settings().home
        snaps = iter_snapshots(home)
        partial = incomplete_dirs(home)
        if json_out:
            print_json(
                {
                    "home": str(home),
                    "models": [
                        {
                            "name": s.name,
                            "slug": s.slug,
                            "revision": s.manifest.revision,
                            "commit": s.manifest.commit,
                            "source": s.manifest.source,
                            "repo_id": s.manifest.repo_id,
                            "files": len(s.manifest.files),
                            "size": s.manifest.total_size,
                            "verified_at": s.manifest.verified_at,
                            "path": str(s.root),
                        }
                        for s in snaps
                    ],
                    "incomplete": [str(p) for p in partial],
                }
            )
            return
        from rich.table import Table

        table = Table(title=f"store: {home}", title_justify="left")
        for col in ("name", "revision", "source", "files", "size", "verified"):
            table.add_column(
                col, justify="right" if col in ("files", "size") else "left", no_wrap=True
            )
        for s in snaps:
            table.add_row(
                s.name,
                s.revision_label,
                s.manifest.source,
                str(len(s.manifest.files)),
                human_size(s.manifest.total_size),
                s.manifest.verified_at[:16].replace("T", " "),
            )
        console().print(table)
        for s in snaps:
            console().print(
                f"{s.name} @ {s.revision_label}: {s.root}", highlight=False, soft_wrap=True
            )
        for p in partial:
            console().print(f"incomplete (resumable): {p}", highlight=False)

    @cache.command("du")
    def cache_du(json_out: bool = _JSON) -> None:
        """Disk space the store uses, per model and in total.

        Examples:
          model-zoo cache du
        """
        from ..settings import load_settings
        from ..store.cache import disk_usage
        from ..store.layout import models_dir
        from .output import console, human_size, print_json

        home = load_settings().home
        base = models_dir(home)
        per = (
            {p.name: disk_usage(p) for p in sorted(base.iterdir()) if p.is_dir()}
            if base.is_dir()
            else {}
        )
        total = disk_usage(home) if home.is_dir() else 0
        if json_out:
            print_json({"home": str(home), "models": per, "total": total})
            return
        for slug, n in per.items():
            console().print(f"{human_size(n):>10}  {slug}", highlight=False)
        console().print(f"{human_size(total):>10}  total ({home})", highlight=False)

    @cache.command("rm")
    def cache_rm(
        targets: list[str] = typer.Argument(..., help="NAME, NAME@REVISION, or a store directory."),
        yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    ) -> None:
        """Remove models (all revisions) or one revision from the store; asks first unless --yes.

        Examples:
          model-zoo cache rm internlm2_5-7b-chat
          model-zoo cache rm internlm2_5-7b-chat@5febe2b0707f --yes
        """
        from ..errors import UsageError
        from ..settings import load_settings
        from ..store.cache import find_snapshot, remove_from_store, resolve_store_target
        from ..store.layout import model_dir
        from .output import err_console, human_size

        home = load_settings().home
        paths: list[Path] = []
        for t in targets:
            p = Path(t).expanduser()
            if p.exists():
                paths.append(resolve_store_target(home, p))
                continue
            from ..registry.api import get

            info = get(t)
            if info.revision:
                snap = find_snapshot(home, info.slug, info.revision)
                if snap is None:
                    raise UsageError(f"{info.name}@{info.revision} is not in the store {home}")
                paths.append(snap.root)
            elif model_dir(home, info.slug).is_dir():
                paths.append(model_dir(home, info.slug))
            else:
                raise UsageError(f"{info.name} is not in the store {home}")
        con = err_console()
        for p in paths:
            con.print(f"will remove {p}", highlight=False)
        if not yes and not typer.confirm("Remove these from the store?", err=True):
            raise typer.Exit(1)
        freed = sum(remove_from_store(home, p) for p in paths)
        con.print(
            f"removed {len(paths)} director{'y' if len(paths) == 1 else 'ies'}, "
            f"freed {human_size(freed)}",
            highlight=False,
        )


def print_json_line(data: Any) -> None:
    import json
    import sys

    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()
