"""Generate the reference parts of the docs from the code, so they cannot drift from it.

Three generators, each returning Markdown:

- ``registry_table()``: every model of the built-in ``registry.yaml`` (through
  ``model_zoo.registry.api``), memory per dtype and which hub has what.
- ``cli_reference()``: every command of ``model_zoo.cli.main.build_app()`` with its usage,
  help, examples, arguments and options.
- ``api_reference()``: signature and docstring of each public name in ``model_zoo._EXPORTS``,
  and the public methods of the objects they return.

The MkDocs hook (``tools/mkdocs_hooks.py``) puts them into the pages at build time where a page
says ``<!-- generated: NAME -->``. ``python tools/docgen.py NAME`` prints one to stdout.
"""

from __future__ import annotations

import inspect
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from typing import Any

MARKER_RE = re.compile(r"<!--\s*generated:\s*([a-z-]+)\s*-->")
# Dtypes shown in the model table (fp16 costs what bf16 costs).
TABLE_DTYPES: tuple[str, ...] = ("bf16", "int8", "int4")


# ---------------------------------------------------------------- registry table


def builtin_registry() -> Any:
    """The built-in registry alone: a user's MODEL_ZOO_REGISTRY overlay never leaks into the
    docs."""
    from model_zoo.registry.loader import load_registry
    from model_zoo.settings import load_settings

    return load_registry(settings=load_settings({"HOME": "/nonexistent"}), use_cache=False)


def registry_table() -> str:
    from model_zoo.hubs.catalog import HUBS, SOURCE_KEYS
    from model_zoo.registry.api import list_models
    from model_zoo.registry.memory import DEFAULT_CONTEXT

    registry = builtin_registry()
    models = list_models(registry=registry)
    hub_titles = {k: HUBS[k].title.replace(" (origin format)", " origin") for k in SOURCE_KEYS}
    head = ["Model", "Kind", "Size", "Released", "Context"]
    head += [f"{d} GiB" for d in TABLE_DTYPES] + [hub_titles[k] for k in SOURCE_KEYS]
    lines = [
        (
            f"{len(models)} models. Memory: GiB to serve one sequence of {DEFAULT_CONTEXT} tokens "
            "(weights at that dtype + KV cache + 1 GiB runtime; see the formula below). "
            "Hub columns link to each model's page."
        ),
        "",
    ]
    family = None
    for m in models:
        if m.family != family:
            family = m.family
            lines += ["", f"### {m.family_title}", "", _row(head), _row(["---"] * len(head))]
        cells = [
            f"`{m.name}`",
            m.kind,
            m.size,
            m.released.isoformat(),
            f"{m.context_length:,}" if m.context_length else "?",
        ]
        cells += [f"{m.memory_gb(d):.1f}" for d in TABLE_DTYPES]
        urls = m.web_urls()
        cells += [f"[{m.sources[k]}]({urls[k]})" if k in m.sources else "–" for k in SOURCE_KEYS]
        lines.append(_row(cells))
    return "\n".join(lines).strip() + "\n"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


# ---------------------------------------------------------------- CLI reference


def cli_command() -> Any:
    """The click command behind the ``model-zoo`` console script."""
    import typer.main

    from model_zoo.cli.main import build_app

    return typer.main.get_command(build_app())


def iter_commands(
    cmd: Any, path: tuple[str, ...] = ("model-zoo",)
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command below ``cmd`` (groups first, then their subcommands), in the app's order."""
    commands = getattr(cmd, "commands", None)
    if commands is None:
        return
    for name in cmd.list_commands(None):
        sub = commands[name]
        if getattr(sub, "hidden", False):
            continue
        yield (*path, name), sub
        yield from iter_commands(sub, (*path, name))


def split_help(text: str | None) -> tuple[str, list[str], list[str]]:
    """(summary, prose paragraphs, example lines) of a command's help text.

    Examples are the indented lines after a paragraph that starts with ``Example``.
    """
    text = inspect.cleandoc(text or "").partition("\f")[0].replace("\b\n", "").replace("\b", "")
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    if not paragraphs:
        return "", [], []
    summary, prose, examples = " ".join(paragraphs[0].split()), [], []
    in_examples = False
    for para in paragraphs[1:]:
        first, _, rest = para.partition("\n")
        if first.strip().startswith("Example"):
            in_examples = True
            inline = first.split(":", 1)[1].strip() if ":" in first else ""
            examples += ([inline] if inline else []) + [
                ln.strip() for ln in rest.splitlines() if ln.strip()
            ]
        elif in_examples and all(
            ln.startswith((" ", "\t")) for ln in para.splitlines() if ln.strip()
        ):
            # an indented block after the header
            examples += [ln.strip() for ln in para.splitlines() if ln.strip()]
        else:
            in_examples = False
            prose.append(" ".join(para.split()))
    return summary, prose, examples


def example_argv(line: str) -> list[str] | None:
    """The model-zoo arguments of one example shell line (after ``model-zoo``), or None.

    Understands ``VAR=value`` prefixes, ``$(...)``, and stops at redirections and pipes.
    """
    try:
        tokens = shlex.split(line.replace("$(", " ").replace(")", " "), comments=True)
    except ValueError:
        return None
    if "model-zoo" not in tokens:
        return None
    out: list[str] = []
    for tok in tokens[tokens.index("model-zoo") + 1 :]:
        if tok in {">", ">>", "|", "&&", ";", "<", "2>", "&"} or tok.startswith((">", "|")):
            break
        out.append(tok)
    return out


def _param_row(param: Any) -> list[str]:
    if param.param_type_name == "argument":
        name = f"`{param.human_readable_name.upper()}`"
    else:
        name = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
    kind = (
        "flag" if getattr(param, "is_flag", False) else getattr(param.type, "name", str(param.type))
    )
    default = param.default
    if getattr(param, "is_flag", False) or default in (None, [], (), False) or callable(default):
        shown = ""
    else:
        shown = f"`{default}`"
    help_text = " ".join((getattr(param, "help", None) or "").split())
    if param.required:
        help_text = "Required. " + help_text
    if getattr(param, "envvar", None):
        help_text += f" (env: `{param.envvar}`)"
    return [name, kind, shown, help_text]


def cli_reference() -> str:
    root = cli_command()
    lines: list[str] = []
    for path, cmd in iter_commands(root):
        summary, prose, examples = split_help(cmd.help)
        depth = "###" if len(path) == 2 else "####"
        lines += [f"{depth} `{' '.join(path)}`", "", summary, ""]
        import typer._click as click_mod  # typer's vendored click, the one the app runs on

        ctx = click_mod.Context(cmd, info_name=" ".join(path))
        usage = " ".join(cmd.collect_usage_pieces(ctx))
        lines += ["```text", f"{' '.join(path)} {usage}".rstrip(), "```", ""]
        lines += [p + "\n" for p in prose]
        if examples:
            lines += ["Examples:", "", "```bash", *examples, "```", ""]
        params = [p for p in cmd.params if not getattr(p, "hidden", False) and p.name != "help"]
        if params and getattr(cmd, "commands", None) is None:
            lines += [
                "| Argument / option | Type | Default | Description |",
                "| --- | --- | --- | --- |",
            ]
            lines += [_row(_param_row(p)) for p in params]
            lines.append("")
        elif getattr(cmd, "commands", None):
            subs = ", ".join(f"`{s}`" for s in cmd.list_commands(ctx))
            lines += [f"Subcommands: {subs}.", ""]
    return "\n".join(lines).strip() + "\n"


# ---------------------------------------------------------------- API reference


def _annotation(value: Any) -> str:
    if value is inspect.Parameter.empty:
        return ""
    return value if isinstance(value, str) else inspect.formatannotation(value)


def signature_text(name: str, obj: Callable[..., Any]) -> str:
    """``name(params) -> return`` with string annotations shown unquoted."""
    sig = inspect.signature(obj)
    parts: list[str] = []
    seen_kw_only = False
    for p in sig.parameters.values():
        if p.name == "self":
            continue
        if p.kind is p.KEYWORD_ONLY and not seen_kw_only:
            parts.append("*")
            seen_kw_only = True
        prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        if p.kind is p.VAR_POSITIONAL:
            seen_kw_only = True
        text = prefix + p.name
        ann = _annotation(p.annotation)
        if ann:
            text += f": {ann}"
        if p.default is not p.empty:
            text += f" = {p.default!r}" if ann else f"={p.default!r}"
        parts.append(text)
    ret = _annotation(sig.return_annotation)
    return f"{name}({', '.join(parts)})" + (f" -> {ret}" if ret and ret != "None" else "")


def _returned_class(obj: Callable[..., Any]) -> type | None:
    """The model-zoo class a function's return annotation names, when it can be found."""
    ret = _annotation(inspect.signature(obj).return_annotation)
    name = re.sub(r"[^A-Za-z0-9_].*$", "", ret)
    found = getattr(obj, "__globals__", {}).get(name)
    if isinstance(found, type) and found.__module__.startswith("model_zoo"):
        return found
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith("model_zoo") and isinstance(getattr(module, name, None), type):
            cls = getattr(module, name)
            if cls.__module__.startswith("model_zoo"):
                return cls
    return None


def _members(cls: type) -> Iterator[tuple[str, Any]]:
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            if member.fget and member.fget.__doc__:
                yield name, member
        elif inspect.isfunction(member) or isinstance(member, (classmethod, staticmethod)):
            yield name, member


def _doc(obj: Any) -> str:
    return (inspect.getdoc(obj) or "(no docstring)").replace("``", "`")


def api_reference() -> str:
    import model_zoo

    lines: list[str] = []
    returned: dict[str, type] = {}
    for name in model_zoo._EXPORTS:
        obj = getattr(model_zoo, name)
        kind = "class" if inspect.isclass(obj) else "function"
        lines += [
            f"### `model_zoo.{name}`",
            "",
            f"*{kind}*",
            "",
            "```python",
            signature_text(name, obj),
            "```",
            "",
            _doc(obj),
            "",
        ]
        if inspect.isclass(obj):
            returned.setdefault(obj.__name__, obj)
        else:
            cls = _returned_class(obj)
            if cls is not None:
                returned.setdefault(cls.__name__, cls)
    # what a function may return in its place (load_reward: POLAR's)
    for cls in list(returned.values()):
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("model_zoo") and not sub.__name__.startswith("_"):
                returned.setdefault(sub.__name__, sub)
    lines += ["## Objects these return", ""]
    for cls_name, cls in returned.items():
        lines += [f"### `{cls.__module__}.{cls_name}`", "", _doc(cls), ""]
        for member_name, member in _members(cls):
            if isinstance(member, property):
                lines += [
                    f"- **`{member_name}`** (property): {' '.join(_doc(member.fget).split())}"
                ]
                continue
            func = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
            lines += [
                "",
                "```python",
                signature_text(f"{cls_name}.{member_name}", func),
                "```",
                "",
                _doc(func),
                "",
            ]
        lines.append("")
    return "\n".join(lines).strip() + "\n"


GENERATORS: dict[str, Callable[[], str]] = {
    "registry-table": registry_table,
    "cli-reference": cli_reference,
    "api-reference": api_reference,
}


def expand_markers(markdown: str, cache: dict[str, str] | None = None) -> str:
    """Replace every ``<!-- generated: NAME -->`` with the generator's output."""
    cache = {} if cache is None else cache

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise KeyError(f"unknown generated section {name!r}; known: {', '.join(GENERATORS)}")
        if name not in cache:
            cache[name] = GENERATORS[name]()
        return cache[name]

    return MARKER_RE.sub(one, markdown)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in GENERATORS:
        print(f"usage: python tools/docgen.py {{{'|'.join(GENERATORS)}}}", file=sys.stderr)
        return 2
    sys.stdout.write(GENERATORS[args[0]]())
    return 0


if __name__ == "__main__":
    sys.exit(main())
