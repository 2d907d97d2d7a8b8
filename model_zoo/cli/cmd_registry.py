"""Registry commands: ``list``, ``info``, ``search`` and ``registry check``.

Only typer is imported here at module level; the registry is imported inside the commands,
so ``model-zoo list`` never pays for anything it does not use (and never for torch). Output is
plain aligned text: rich's table layout alone took longer than the rest of the command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:  # pragma: no cover
    from ..registry.info import ModelInfo

_JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")
_CONTEXT = typer.Option(
    4096, "--context", min=0, help="Tokens of context the memory estimate allows for."
)

# What each reward scoring style takes, as `info` says it.
_SCORES = {
    "conversation": "conversations (scoring: conversation)",
    "reference-based": "prompt + reference + output (scoring: reference-based)",
}


def _memory_by_dtype(m: ModelInfo, context: int) -> dict[str, Any]:
    from ..registry.memory import SHOWN_DTYPES

    return {dtype: m.memory_estimate(dtype, context).to_dict() for dtype in SHOWN_DTYPES}


def _model_json(m: ModelInfo, context: int) -> dict[str, Any]:
    out = m.to_dict()
    out["web_urls"] = m.web_urls()
    out["memory"] = _memory_by_dtype(m, context)
    from ..registry.variants import variant_rows

    out["variant_memory"] = [row.to_dict() for row in variant_rows(m, context)]
    return out


# Short source names for narrow tables.
_SOURCE_CODES = {
    "hf": "hf",
    "modelscope": "ms",
    "modelers": "ml",
    "openxlab": "ox",
    "openxlab-origin": "ox-o",
}


def format_table(
    headers: list[str], rows: list[list[str]], right: frozenset[int] = frozenset()
) -> str:
    """Columns padded to their widest cell; ``right`` holds the indexes of right-aligned columns.

    Plain text on purpose: rich's table layout costs more than the rest of `model-zoo list`.
    """
    widths = [max(len(cell) for cell in col) for col in zip(headers, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _table(models: list[ModelInfo], dtype: str, context: int, title: str) -> None:
    headers = ["name", "kind", "size", "context", "released", f"{dtype} GiB", "sources"]
    rows = [
        [
            m.name,
            m.kind,
            m.size,
            _tokens(m.context_length),
            m.released.isoformat(),
            f"{m.memory_gb(dtype, context):.1f}",
            ",".join(_SOURCE_CODES.get(s, s) for s in m.sources),
        ]
        for m in models
    ]
    typer.echo(f"{title}\n")
    if rows:
        typer.echo(format_table(headers, rows, right=frozenset({2, 3, 5})))
        typer.echo(
            f"\nGiB: estimated memory at {dtype} for {context} tokens "
            "(model-zoo info NAME shows the parts). Sources: "
            + ", ".join(f"{c}={k}" for k, c in _SOURCE_CODES.items())
        )


def _tokens(n: int | None) -> str:
    if n is None:
        return "?"
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20}M"
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)


def _info_text(m: ModelInfo, context: int) -> None:
    rows: list[tuple[str, str]] = [
        ("name", m.spec),
        ("slug", m.slug),
        ("aliases", ", ".join(m.aliases) or "-"),
        ("family", f"{m.family_title} ({m.family}, generation {m.generation:g})"),
        ("kind", m.kind),
        ("size", f"{m.size} ({m.params_b:.2f}B parameters, from {m.params_from})"),
        (
            "released",
            m.released.isoformat() + (f" (updated {m.updated.isoformat()})" if m.updated else ""),
        ),
        ("license", m.license + (f": {m.license_note}" if m.license_note else "")),
        ("architecture", m.architecture),
        ("context", f"{_tokens(m.context_length)} tokens" if m.context_length else "unknown"),
        ("weights", m.weight_format or "unknown (see the repository listing)"),
    ]
    if m.description:
        rows.append(("about", m.description))
    if m.chat_format:
        rows.append(("chat format", m.chat_format))
    if m.generation_defaults:
        g = m.generation_defaults
        parts = [f"{k}={v}" for k, v in vars(g).items() if v not in (None, ())]
        rows.append(("generation", ", ".join(parts)))
    if m.reward:
        score = f", RewardBench {m.reward.rewardbench}" if m.reward.rewardbench is not None else ""
        rows.append(
            (
                "reward",
                f"scores {_SCORES[m.reward.scoring]}; "
                f"reward_token_id {m.reward.reward_token_id}{score}",
            )
        )
    if m.dims:
        d = m.dims
        rope = "none"
        if d.rope_scaling:
            factor = d.rope_scaling.factor
            rope = d.rope_scaling.type + (
                f" x{factor:g}" if factor is not None else " (factor not recorded)"
            )
        theta = d.rope_theta if d.rope_theta is None else format(d.rope_theta, "g")
        dims = (
            f"hidden_size {d.hidden_size}, intermediate_size {d.intermediate_size}, "
            f"num_hidden_layers {d.num_hidden_layers}, num_attention_heads "
            f"{d.num_attention_heads}, num_key_value_heads {d.num_key_value_heads}, "
            f"head_dim {d.head_dim}, vocab_size {d.vocab_size}, max_position_embeddings "
            f"{d.max_position_embeddings}, rope_theta {theta}, rope scaling {rope}"
        )
        if not d.confirmed:
            dims += f" [unconfirmed: {d.note or 'derived values'}]"
        rows.append(("dims", dims))
    for key, url in m.web_urls().items():
        rows.append((f"source {key}", f"{m.sources[key]}  {url}"))
    for dtype, est in _memory_by_dtype(m, context).items():
        rows.append(
            (
                f"memory {dtype}",
                f"{est['total_gib']:.1f} GiB (weights {est['weights_gib']:.1f} + KV cache "
                f"{est['kv_cache_gib']:.2f} at {context} tokens "
                f"+ runtime {est['runtime_gib']:.1f})",
            )
        )
    rows += _variant_lines(m, context)
    width = max(len(key) for key, _ in rows)
    typer.echo("\n".join(f"{key.ljust(width)}  {value}" for key, value in rows))


def _variant_lines(m: ModelInfo, context: int) -> list[tuple[str, str]]:
    """The quantized variants: each GGUF level with its file, size and memory; AWQ/GPTQ at int4."""
    from ..registry.variants import variant_rows

    lines: list[tuple[str, str]] = []
    if m.variant_of:
        v = m.variant
        assert v is not None
        note = "" if v.confirmed else f" [unconfirmed: {v.note or 'not seen in a public listing'}]"
        lines.append(
            (
                "variant of",
                f"{m.variant_of} ({v.format}{f', {v.bits}-bit' if v.bits else ''}){note}",
            )
        )
    shown: set[str] = set()
    for row in variant_rows(m, context):
        if row.variant not in shown and not m.variant_of:
            shown.add(row.variant)
            v = next(x for x in m.variants if x.name == row.variant)
            tail = "" if v.confirmed else " [unconfirmed]"
            bits = f", {v.bits}-bit" if v.bits else ""
            lines.append(
                (
                    f"variant {row.format}",
                    f"{row.variant} ({', '.join(v.sources.values())}{bits}){tail}",
                )
            )
        if row.level is None:
            lines.append(
                (
                    "",
                    f"  memory {row.memory_gib:.1f} GiB "
                    f"(weights {row.weights_gib:.1f} at int4 + KV cache and runtime)",
                )
            )
            continue
        size = f"{row.size_gb:.2f} GB" if row.size_gb is not None else "size not seen"
        lines.append(
            (
                "",
                f"  {row.level:<7} {row.file}  {size}, memory {row.memory_gib:.1f} GiB "
                f"(weights {row.weights_gib:.1f} from {row.weights_from})",
            )
        )
    if any(r.level for r in variant_rows(m, context)):
        name = m.variant_of or m.name
        variant = m.gguf_variant()
        by_name = variant.name.lower() if variant else name
        lines.append(
            ("", f"  pull one level: model-zoo pull {name} --gguf LEVEL (or {by_name}:LEVEL)")
        )
    return lines


def register(app: typer.Typer) -> None:
    @app.command("list")
    def list_cmd(
        family: str | None = typer.Option(
            None, "--family", "-f", help="Only this family, e.g. internlm2.5."
        ),
        kind: str | None = typer.Option(
            None, "--kind", "-k", help="Only this kind: base, chat, instruct, reward, ..."
        ),
        source: str | None = typer.Option(
            None, "--source", "-s", help="Only models this source serves (hf, modelscope, ...)."
        ),
        size: str | None = typer.Option(None, "--size", help="Only this size, e.g. 7B."),
        fits: str | None = typer.Option(
            None,
            "--fits",
            help="Only models whose estimate fits this GPU memory: 24GiB (2^30 bytes, what a "
            "card sold as 24 GB has) or 24GB (10^9 bytes).",
        ),
        dtype: str = typer.Option(
            "bf16", "--dtype", help="Weight dtype for memory estimates: bf16, fp16, int8, int4."
        ),
        scoring: str | None = typer.Option(
            None,
            "--scoring",
            help="Only reward models that score this way: conversation (InternLM2-Reward) or "
            "reference-based (POLAR).",
        ),
        context: int = _CONTEXT,
        json_out: bool = _JSON,
    ) -> None:
        """List registry models (a table; --json for scripts).

        Examples:
          model-zoo list
          model-zoo list --kind chat --fits 24GiB
          model-zoo list --scoring conversation
          model-zoo list --source modelscope --dtype int4 --json
        """
        from ..registry.api import list_models

        models = list_models(
            family=family,
            kind=kind,
            source=source,
            size=size,
            max_memory_gb=fits,
            dtype=dtype,
            context=context,
            scoring=scoring,
        )
        if json_out:
            from .output import print_json

            print_json([_model_json(m, context) for m in models])
            return
        note = f" fitting {fits} at {dtype}" if fits else ""
        _table(models, dtype, context, f"{len(models)} models{note}")

    @app.command("info")
    def info_cmd(
        name: str = typer.Argument(
            ..., help="Model name, alias or repo id; NAME@REVISION allowed."
        ),
        context: int = _CONTEXT,
        json_out: bool = _JSON,
    ) -> None:
        """Everything about one model: sources with web URLs, dims, chat settings, memory.

        Examples:
          model-zoo info internlm2_5-7b-chat
          model-zoo info InternLM2.5-7B-Chat-1M --context 200000
          model-zoo info internlm/internlm3-8b-instruct --json
        """
        from ..registry.api import get

        m = get(name)
        if json_out:
            from .output import print_json

            print_json(_model_json(m, context))
            return
        _info_text(m, context)

    @app.command("search")
    def search_cmd(
        text: list[str] = typer.Argument(
            ..., help="Words that must all appear (name, alias, repo id, family, kind)."
        ),
        json_out: bool = _JSON,
    ) -> None:
        """Find models by words in their names, aliases, repo ids, family or kind.

        Examples:
          model-zoo search reward
          model-zoo search math plus 7b
        """
        from ..registry.api import search

        models = search(" ".join(text))
        if json_out:
            from .output import print_json

            print_json([_model_json(m, 4096) for m in models])
            return
        _table(models, "bf16", 4096, f"{len(models)} matches for {' '.join(text)!r}")

    registry_app = typer.Typer(
        help="Work with registry files.\n\nExample:\n  model-zoo registry check my-models.yaml",
        no_args_is_help=True,
    )

    @registry_app.command("check")
    def check_cmd(
        file: str | None = typer.Argument(
            None, help="Registry file to check (default: the built-in one)."
        ),
        standalone: bool = typer.Option(
            False,
            "--standalone",
            help="Check FILE on its own, not laid over the built-in registry.",
        ),
        json_out: bool = _JSON,
    ) -> None:
        """Validate a registry file; exit 2 and list every problem when it is invalid.

        Examples:
          model-zoo registry check
          model-zoo registry check my-models.yaml
          model-zoo registry check my-models.yaml --standalone
        """
        from ..errors import RegistryError
        from ..registry.loader import builtin_registry_path, check_registry_file

        target = file or str(builtin_registry_path())
        problems = check_registry_file(file, standalone=standalone)
        if json_out:
            from .output import print_json

            print_json(
                {
                    "file": target,
                    "ok": not problems,
                    "problems": [
                        {
                            "location": p.location,
                            "entry": p.entry,
                            "field": p.field,
                            "message": p.message,
                        }
                        for p in problems
                    ],
                }
            )
            if problems:
                raise typer.Exit(RegistryError.exit_code)
            return
        if problems:
            raise RegistryError(target, problems)
        typer.echo(f"{target}: ok")

    app.add_typer(registry_app, name="registry")
