"""The docs: they build strictly, the generated parts match the code, and every command they show
parses."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_docs import ROOT, docgen, parse_cli

import model_zoo
from model_zoo import errors
from model_zoo.hubs.catalog import HUBS
from model_zoo.settings import default_config_path, load_settings

DOCS = ROOT / "docs"
PAGES = (
    "index",
    "quickstart",
    "choosing-a-model",
    "mirrors",
    "integrity",
    "running",
    "rlhf",
    "cli",
    "api",
    "benchmarks",
)


def page_text(site: Path, name: str) -> str:
    """The visible text of a built page."""
    raw = (site / ("index.html" if name == "index" else f"{name}/index.html")).read_text()
    raw = re.sub(r"<script.*?</script>", "", raw, flags=re.DOTALL)
    return html.unescape(re.sub(r"<[^>]+>", " ", raw))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_build_has_every_page(site: Path) -> None:
    for name in PAGES:
        text = page_text(site, name)
        assert len(text.split()) > 100, name
        assert "generated:" not in text, f"{name}: a generated marker was left unexpanded"


def test_images_referenced_exist(site: Path) -> None:
    for page in site.rglob("*.html"):
        for src in re.findall(r'<img[^>]+src="([^"]+)"', page.read_text()):
            if not src.startswith(("http:", "https:", "data:")):
                target = (page.parent / src).resolve()
                assert target.is_file() and target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", (
                    page,
                    src,
                )


def table_rows(site: Path, name: str) -> list[list[str]]:
    """The body rows of every table of a built page, as cell texts."""
    raw = (site / f"{name}/index.html").read_text()
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", raw, flags=re.DOTALL):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.DOTALL)
        if cells:
            rows.append([html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in cells])
    return rows


def test_registry_table_matches_the_registry(site: Path) -> None:
    rows = {r[0]: r for r in table_rows(site, "choosing-a-model") if len(r) == 13}
    models = model_zoo.list_models(registry=docgen.builtin_registry())
    assert len(models) > 30 and len(rows) == len(models)
    assert f"{len(models)} models" in page_text(site, "choosing-a-model")
    for m in models:
        row = rows[m.name]
        assert row[1:4] == [m.kind, m.size, m.released.isoformat()]
        assert row[5:8] == [f"{m.memory_gb(d):.1f}" for d in ("bf16", "int8", "int4")], m.name
        hubs = dict(
            zip(
                ("hf", "modelscope", "modelers", "openxlab", "openxlab-origin"),
                row[8:],
                strict=True,
            )
        )
        assert {k: v for k, v in hubs.items() if v != "–"} == dict(m.sources), m.name


def test_registry_table_is_the_builtin_registry_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODEL_ZOO_REGISTRY", str(tmp_path / "does-not-exist.yaml"))
    table = docgen.registry_table()  # a user's overlay neither breaks nor changes the docs
    builtin = model_zoo.list_models(registry=docgen.builtin_registry())
    assert table.count("\n| `") == len(builtin)


def test_cli_reference_covers_every_command_and_option(site: Path) -> None:
    text = page_text(site, "cli")
    for path, cmd in docgen.iter_commands(docgen.cli_command()):
        assert " ".join(path) in text
        for param in cmd.params:
            if (
                param.param_type_name == "option"
                and param.name != "help"
                and not getattr(param, "hidden", False)
            ):
                assert param.opts[0] in text, (path, param.opts)


def test_api_reference_covers_every_export(site: Path) -> None:
    text = page_text(site, "api")
    for name in model_zoo._EXPORTS:
        assert f"model_zoo.{name}" in text
        doc = (getattr(model_zoo, name).__doc__ or "").strip().splitlines()[0]
        squash = re.compile(r"[\s`]+")  # markup becomes spacing in the page; compare the words only
        assert squash.sub("", doc) in squash.sub("", text), name
    for method in ("Runner.chat", "Runner.generate", "RewardModel.score_batch", "RewardModel.rank"):
        assert method in text


def test_signature_text_unquotes_annotations() -> None:
    def f(a: int, *, b: str | None = None, **kw: object) -> list[int]:
        """Annotations are strings here (``from __future__ import annotations``), as in
        model_zoo."""
        return []

    assert (
        docgen.signature_text("f", f)
        == "f(a: int, *, b: str | None = None, **kw: object) -> list[int]"
    )


def test_unknown_marker_is_an_error() -> None:
    with pytest.raises(KeyError, match="no-such"):
        docgen.expand_markers("x <!-- generated: no-such --> y")
    assert docgen.expand_markers("no markers") == "no markers"


# ---------------------------------------------------------------- the commands the docs show


def doc_commands() -> list[tuple[str, str]]:
    """(page, line) for every model-zoo command line in a bash or console block of README.md and
    docs/."""
    found = []
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        for block in re.findall(r"```(bash|console)\n(.*?)```", page.read_text(), flags=re.DOTALL):
            kind, body = block
            for line in body.splitlines():
                if kind == "console":
                    if not line.startswith("$ "):
                        continue
                    line = line[2:]
                line = line.split("#", 1)[0] if " #" in line else line
                if docgen.example_argv(line) is not None:  # the line runs model-zoo
                    found.append((page.name, line.strip()))
    return found


DOC_COMMANDS = doc_commands()


def test_docs_show_commands() -> None:
    pages = {p for p, _ in DOC_COMMANDS}
    assert {
        "README.md",
        "quickstart.md",
        "mirrors.md",
        "integrity.md",
        "running.md",
        "rlhf.md",
    } <= pages
    assert len(DOC_COMMANDS) > 40


@pytest.mark.parametrize(
    ("page", "line"), DOC_COMMANDS, ids=[f"{page}:{line[:60]}" for page, line in DOC_COMMANDS]
)
def test_every_documented_command_parses(
    page: str, line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = docgen.example_argv(line)
    assert argv is not None, line
    if argv and argv[0] == "--install-completion":
        return  # eager option that installs at parse time; covered by test_cli_polish
    monkeypatch.chdir(tmp_path)
    for arg in argv:
        if re.search(r"\.(json|jsonl|yaml|lock)$", arg):
            (tmp_path / arg).write_text("{}")
    try:
        parse_cli(argv)
    except SystemExit as exc:  # --version / --show-completion exit while parsing, successfully
        assert exc.code in (0, None), line
    except Exception as exc:
        if type(exc).__name__ == "Exit" and getattr(exc, "exit_code", 1) == 0:
            return
        pytest.fail(f"{page}: `{line}` does not parse: {type(exc).__name__}: {exc}")


def test_documented_environment_variables_exist_in_the_code() -> None:
    doc = (DOCS / "cli.md").read_text()
    table = doc[doc.index("## Environment variables") : doc.index("## Commands")]
    names = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    assert len(names) > 15
    source = "\n".join(p.read_text() for p in (ROOT / "model_zoo").rglob("*.py"))
    missing = sorted(
        n for n in names if n not in source and n not in {"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY"}
    )
    assert not missing, f"documented but never read by the code: {missing}"


# ---------------------------------------------------- what the pages state, compared with the code


# Pages and README checked here. docs/rlhf.md, docs/decisions.md and docs/benchmarks.md belong to
# other areas; their install lines are reported to the lead instead.
OWN_PAGES = [
    "README.md",
    *(
        f"docs/{p}"
        for p in (
            "index.md",
            "quickstart.md",
            "choosing-a-model.md",
            "mirrors.md",
            "integrity.md",
            "running.md",
            "cli.md",
            "api.md",
            "architecture.md",
        )
    ),
]


def _table_rows(text: str, header_start: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header line starts with ``header_start``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _codes(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


@pytest.mark.parametrize("page", OWN_PAGES)
def test_no_page_installs_model_zoo_from_an_index(page: str) -> None:
    # The `model-zoo` project on PyPI is an unrelated package: installing it by name gets that one.
    text = (ROOT / page).read_text(encoding="utf-8")
    bad = re.findall(r"pip install (?:-\S+ )*[\"']?model-zoo\b", text)
    assert not bad, f"{page} tells users to install model-zoo from an index: {bad}"


def test_mirrors_hub_table_matches_the_catalog() -> None:
    rows = _table_rows((ROOT / "docs" / "mirrors.md").read_text(encoding="utf-8"), "| Source key")
    assert [_codes(r[0])[0] for r in rows] == list(HUBS)
    for key_cell, _hub, endpoint, endpoint_var, tokens in rows:
        info = HUBS[_codes(key_cell)[0]]
        if endpoint != "same as `openxlab`":
            assert _codes(endpoint) == [info.default_endpoint]
        assert _codes(endpoint_var) == [info.endpoint_env]
        assert tuple(_codes(tokens)) == info.token_envs


def test_cli_exit_code_table_matches_the_error_types() -> None:
    rows = _table_rows((ROOT / "docs" / "cli.md").read_text(encoding="utf-8"), "| Status")
    documented = {int(r[0]): r[1] for r in rows}
    assert documented == {
        errors.EXIT_OK: "success",
        errors.EXIT_FAILURE: "failure",
        errors.EXIT_USAGE: "usage error or unknown name",
        errors.EXIT_INTEGRITY: "integrity failure",
        errors.EXIT_NETWORK: "network",
    }
    # the examples named in each row are raised with that status
    assert errors.UnknownModelError("x", []).exit_code == errors.EXIT_USAGE
    assert errors.ConfigError("bad", setting="x").exit_code == errors.EXIT_USAGE
    assert errors.OfflineError("x").exit_code == errors.EXIT_FAILURE
    assert errors.LockMismatchError.exit_code == errors.EXIT_INTEGRITY
    assert errors.HubUnreachableError.exit_code == errors.EXIT_NETWORK


def test_documented_settings_file_location_is_where_settings_look(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    row = next(r for r in _table_rows(text, "| Variable") if _codes(r[0]) == ["MODEL_ZOO_CONFIG"])
    assert (
        "~/.config/model-zoo/config.toml" in row[1]
        and "$XDG_CONFIG_HOME/model-zoo/config.toml" in row[1]
    )
    home = tmp_path / "home"
    assert (
        default_config_path({"HOME": str(home)}) == home / ".config" / "model-zoo" / "config.toml"
    )
    xdg = tmp_path / "xdg"
    assert (
        default_config_path({"HOME": str(home), "XDG_CONFIG_HOME": str(xdg)})
        == xdg / "model-zoo" / "config.toml"
    )


def test_documented_store_default_is_the_settings_default(tmp_path: Path) -> None:
    for page in ("docs/cli.md", "docs/integrity.md", "docs/mirrors.md"):
        assert "~/.cache/model-zoo" in (ROOT / page).read_text(encoding="utf-8"), page
    env = {"HOME": str(tmp_path), "MODEL_ZOO_CONFIG": str(tmp_path / "none.toml")}
    assert load_settings(env).home == tmp_path / ".cache" / "model-zoo"


def test_documented_default_source_order_is_the_settings_default(tmp_path: Path) -> None:
    assert "default `hf, modelscope, modelers,\n  openxlab`" in (
        ROOT / "docs" / "mirrors.md"
    ).read_text(encoding="utf-8")
    env = {"HOME": str(tmp_path), "MODEL_ZOO_CONFIG": str(tmp_path / "none.toml")}
    assert load_settings(env).sources == ("hf", "modelscope", "modelers", "openxlab")


def test_serve_mirror_examples_for_a_cluster_bind_beyond_loopback() -> None:
    # serve-mirror binds 127.0.0.1 unless --host says otherwise: other machines cannot reach that.
    from model_zoo.netaddr import is_loopback_host

    found = 0
    for page in OWN_PAGES:
        for line in (ROOT / page).read_text(encoding="utf-8").splitlines():
            command, _, comment = line.partition("#")
            if "model-zoo serve-mirror" in command and (
                "cluster" in comment or "this machine's store" in comment
            ):
                found += 1
                host = re.search(r"--host\s+(\S+)", command)
                assert host and not is_loopback_host(host.group(1)), f"{page}: {line}"
    assert found >= 2


def test_overlay_merge_rule_is_as_documented(tmp_path: Path) -> None:
    # docs/choosing-a-model.md: mappings merge key by key; lists and plain values replace.
    from model_zoo.registry.loader import builtin_registry_path, load_registry

    text = (ROOT / "docs" / "choosing-a-model.md").read_text(encoding="utf-8")
    assert "`aliases: [my-name]` leaves only `my-name`" in text
    overlay = tmp_path / "mine.yaml"
    overlay.write_text(
        "models:\n  - name: InternLM2.5-7B-Chat\n    aliases: [my-name]\n"
        "    sources: {hf: me/my-copy}\n    generation_defaults: {temperature: 0.1}\n",
        encoding="utf-8",
    )
    env = {
        "HOME": str(tmp_path),
        "MODEL_ZOO_CONFIG": str(tmp_path / "none.toml"),
        "MODEL_ZOO_REGISTRY": str(overlay),
    }
    m = load_registry(builtin_registry_path(), settings=load_settings(env), use_cache=False).get(
        "my-name"
    )
    assert m.aliases == ("my-name",)
    assert (
        m.sources["hf"] == "me/my-copy"
        and m.sources["modelscope"] == "Shanghai_AI_Laboratory/internlm2_5-7b-chat"
    )
    assert m.generation_defaults is not None
    assert m.generation_defaults.temperature == 0.1 and m.generation_defaults.top_p == 0.8
