"""The docs: they build strictly, the generated parts match the code, and every command they show parses."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_docs import ROOT, docgen, parse_cli

import model_zoo

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
        hubs = dict(zip(("hf", "modelscope", "modelers", "openxlab", "openxlab-origin"), row[8:]))
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
        """Annotations are strings here (``from __future__ import annotations``), as in model_zoo."""
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
    """(page, line) for every model-zoo command line in a bash or console block of README.md and docs/."""
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
    ("page", "line"), DOC_COMMANDS, ids=[f"{p}:{l[:60]}" for p, l in DOC_COMMANDS]
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
