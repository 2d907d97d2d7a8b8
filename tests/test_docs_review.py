"""The docs say only true things: tables and defaults they state are compared with the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fixtures_docs import ROOT

from model_zoo import errors
from model_zoo.hubs.catalog import HUBS
from model_zoo.settings import default_config_path, load_settings

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
    from model_zoo.testing.hub_server import is_loopback_host

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
