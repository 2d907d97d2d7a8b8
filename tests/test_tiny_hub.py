"""make_hub_tree: tiny repositories under real ids, identical on every mirror of a model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_tiny import HubTree

from model_zoo.errors import UsageError
from model_zoo.registry.api import get
from model_zoo.testing.tiny_hub import DEFAULT_MODELS, make_hub_tree, registry_repos


def _files(repo: Path) -> dict[str, bytes]:
    files = sorted(p for p in repo.rglob("*") if p.is_file())
    return {str(p.relative_to(repo)): p.read_bytes() for p in files}


def test_tree_holds_the_real_ids_on_disk(tiny_hub_tree: HubTree) -> None:
    root, repos = tiny_hub_tree
    for repo_id in (
        "internlm/internlm2_5-1_8b-chat",
        "Shanghai_AI_Laboratory/internlm2_5-1_8b-chat",
        "internlm/internlm2-1_8b-reward",
        "internlm/internlm3-8b-instruct",
        "Intern/internlm3-8b-instruct",
        "OpenLMLab/InternLM-chat-7b",
    ):
        assert repos[repo_id] == root / repo_id
        assert (root / repo_id / "config.json").is_file()
    assert sorted(p.relative_to(root).as_posix() for p in root.glob("*/*")) == sorted(repos)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("internlm/internlm2_5-1_8b-chat", "Shanghai_AI_Laboratory/internlm2_5-1_8b-chat"),
        ("internlm/internlm2_5-1_8b-chat", "OpenLMLab/internlm2_5-1_8b-chat"),
        ("internlm/internlm3-8b-instruct", "Intern/internlm3-8b-instruct"),
        ("internlm/internlm-chat-7b", "OpenLMLab/InternLM-chat-7b"),
    ],
)
def test_mirrors_are_byte_identical(tiny_hub_tree: HubTree, a: str, b: str) -> None:
    assert _files(tiny_hub_tree.repos[a]) == _files(tiny_hub_tree.repos[b])


def test_models_differ_and_repos_look_like_hub_repos(tiny_hub_tree: HubTree) -> None:
    repos = tiny_hub_tree.repos
    chat = _files(repos["internlm/internlm2_5-1_8b-chat"])
    reward = _files(repos["internlm/internlm2-1_8b-reward"])
    assert chat["model-00001-of-00002.safetensors"] != reward["model-00001-of-00002.safetensors"]
    assert json.loads(reward["config.json"])["architectures"] == ["InternLM2ForRewardModel"]
    for repo in repos.values():
        names = {p.name for p in repo.iterdir()}
        assert {".gitattributes", "README.md"} <= names
        assert not any(n.endswith(".py") for n in names)
        assert b"*.safetensors filter=lfs" in (repo / ".gitattributes").read_bytes()
    origin = repos["OpenLMLab/internlm2_5-1_8b-chat-original"]
    assert not (origin / "config.json").exists()
    assert (origin / "model_tp0_pp0.pt").stat().st_size > 0


def test_custom_repos_and_seed(tmp_path: Path) -> None:
    wanted = {"acme/tiny-one": "internlm3", "acme/tiny-two": "internlm3"}
    repos = make_hub_tree(tmp_path, wanted, seed=7)
    assert set(repos) == {"acme/tiny-one", "acme/tiny-two"}
    one, two = _files(repos["acme/tiny-one"]), _files(repos["acme/tiny-two"])
    assert one["model-00001-of-00002.safetensors"] != two["model-00001-of-00002.safetensors"]
    assert one["tokenizer.model"] == two["tokenizer.model"]
    again = make_hub_tree(tmp_path, {"acme/tiny-one": "internlm3"}, seed=7)  # replaces in place
    assert _files(again["acme/tiny-one"]) == one


@pytest.mark.parametrize(
    "repos", [{"no-namespace": "internlm2"}, {"a/b": "llama"}, {"a/b/c": "internlm2"}]
)
def test_bad_entries_are_refused(tmp_path: Path, repos: dict[str, str]) -> None:
    with pytest.raises(UsageError):
        make_hub_tree(tmp_path, repos)


def test_default_tree_covers_the_registry_sources_of_the_default_models(
    tiny_hub_tree: HubTree,
) -> None:
    for name in DEFAULT_MODELS:
        for repo_id in get(name).sources.values():
            assert repo_id in tiny_hub_tree.repos


def test_registry_repos_maps_architectures() -> None:
    repos = registry_repos("internlm2-math-plus-1_8b", "internlm2_5-1_8b-chat")
    assert repos["internlm/internlm2-math-plus-1_8b"] == "internlm2"
    assert repos["OpenLMLab/internlm2_5-1_8b-chat-original"] == "origin"
    with pytest.raises(UsageError, match="MixtralForCausalLM"):
        registry_repos("internlm2-math-plus-mixtral8x22b")
