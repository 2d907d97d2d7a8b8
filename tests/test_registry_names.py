"""The name grammar and resolver: table-driven over real registry names, plus edge cases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from model_zoo.errors import AmbiguousNameError, UnknownModelError, UsageError
from model_zoo.registry.collection import Registry
from model_zoo.registry.loader import load_registry
from model_zoo.registry.names import NameIndex, NameKeys, fold, split_revision


@pytest.fixture
def registry() -> Registry:
    return load_registry()


RESOLVE_CASES = [
    # spelling                                   canonical                         revision
    ("InternLM2.5-7B-Chat", "InternLM2.5-7B-Chat", None),
    ("internlm2.5-7b-chat", "InternLM2.5-7B-Chat", None),
    ("internlm2_5-7b-chat", "InternLM2.5-7B-Chat", None),
    ("INTERNLM2_5_7B_CHAT", "InternLM2.5-7B-Chat", None),
    ("internlm2.5 7b chat", "InternLM2.5-7B-Chat", None),
    ("  InternLM2.5-7B-Chat  ", "InternLM2.5-7B-Chat", None),
    ("InternLM2.5-Chat-7B", "InternLM2.5-7B-Chat", None),
    ("internlm/internlm2_5-7b-chat", "InternLM2.5-7B-Chat", None),
    ("Shanghai_AI_Laboratory/internlm2_5-7b-chat", "InternLM2.5-7B-Chat", None),
    ("OpenLMLab/internlm2_5-7b-chat", "InternLM2.5-7B-Chat", None),
    ("openlmlab/INTERNLM2.5-7B-CHAT", "InternLM2.5-7B-Chat", None),
    ("OpenLMLab/internlm2_5-7b-chat-original", "InternLM2.5-7B-Chat", None),
    ("internlm2_5-7b-chat-1m", "InternLM2.5-7B-Chat-1M", None),
    ("internlm2-1_8b", "InternLM2-1.8B", None),
    ("internlm2-base-1.8b", "InternLM2-1.8B", None),
    ("OpenLMLab/internlm2-base-1.8b-original", "InternLM2-1.8B", None),
    ("internlm2-chat-1.8b", "InternLM2-Chat-1.8B", None),
    ("internlm2-chat-1_8b-sft", "InternLM2-Chat-1.8B-SFT", None),
    ("internlm2-base-7b", "InternLM2-Base-7B", None),
    ("Intern/internlm3-8b-instruct", "InternLM3-8B-Instruct", None),
    ("internlm3", "InternLM3-8B-Instruct", None),
    ("internlm2-7b-reward", "InternLM2-7B-Reward", None),
    ("InternLM2-Reward-7B", "InternLM2-7B-Reward", None),
    ("InternLM-7B-Chat", "InternLM-Chat-7B", None),
    ("OpenLMLab/InternLM-chat-7b-original", "InternLM-Chat-7B", None),
    ("OpenLMLab/InternLM2-Math-Base-7B", "InternLM2-Math-Base-7B", None),
    ("internlm2-math-plus-mixtral8x22b", "InternLM2-Math-Plus-Mixtral8x22B", None),
    ("InternLM2-Math-Plus-Mixtral-8x22B", "InternLM2-Math-Plus-Mixtral8x22B", None),
    ("internlm2_5-7b-chat@main", "InternLM2.5-7B-Chat", "main"),
    ("InternLM2.5-7B-Chat@v1.0", "InternLM2.5-7B-Chat", "v1.0"),
    (
        "internlm/internlm2_5-7b-chat@0123456789abcdef0123456789abcdef01234567",
        "InternLM2.5-7B-Chat",
        "0123456789abcdef0123456789abcdef01234567",
    ),
    (
        "Shanghai_AI_Laboratory/internlm3-8b-instruct@refs/pr/1",
        "InternLM3-8B-Instruct",
        "refs/pr/1",
    ),
]


@pytest.mark.parametrize(
    ("spelling", "canonical", "revision"), RESOLVE_CASES, ids=[c[0] for c in RESOLVE_CASES]
)
def test_resolve(registry: Registry, spelling: str, canonical: str, revision: str | None) -> None:
    m = registry.get(spelling)
    assert m.name == canonical
    assert m.revision == revision
    assert m.spec == (f"{canonical}@{revision}" if revision else canonical)


def test_revision_does_not_change_the_stored_entry(registry: Registry) -> None:
    pinned = registry.get("internlm2_5-7b-chat@abc")
    plain = registry.get("internlm2_5-7b-chat")
    assert pinned.revision == "abc" and plain.revision is None
    assert pinned.with_revision(None) == plain


@pytest.mark.parametrize(
    ("typo", "expected"),
    [
        ("internlm2.5-8b-chat", "InternLM2.5-7B-Chat"),
        ("internlm2_5-7b-caht", "InternLM2.5-7B-Chat"),
        ("internlm3-8b-instrct", "InternLM3-8B-Instruct"),
        ("internlm2-reward-7", "InternLM2-7B-Reward"),
        ("mixtral", "InternLM2-Math-Plus-Mixtral8x22B"),
    ],
)
def test_unknown_names_suggest_the_closest(registry: Registry, typo: str, expected: str) -> None:
    with pytest.raises(UnknownModelError) as info:
        registry.get(typo)
    err = info.value
    assert err.name == typo
    assert expected in err.suggestions and len(err.suggestions) <= 5
    assert "Did you mean" in str(err) and expected in str(err)
    assert err.exit_code == 2


def test_unknown_name_far_from_everything(registry: Registry) -> None:
    with pytest.raises(UnknownModelError) as info:
        registry.get("gpt-4o")
    assert info.value.suggestions == []
    assert "model-zoo list" in str(info.value)


@pytest.mark.parametrize("spec", ["name@", "@rev", "a@b@c", "name@has space", "@"])
def test_malformed_specs(spec: str) -> None:
    with pytest.raises(UsageError) as info:
        split_revision(spec)
    assert not isinstance(info.value, UnknownModelError)
    assert "NAME@REVISION" in str(info.value)


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("InternLM2.5-7B-Chat", "internlm2-5-7b-chat"),
        ("internlm2_5-7b-chat", "internlm2-5-7b-chat"),
        ("internlm2.5  7b__chat", "internlm2-5-7b-chat"),
        ("-lead-and-trail_", "lead-and-trail"),
        ("Org.Name/Repo_Name.v1", "org-name/repo-name-v1"),
    ],
)
def test_fold(text: str, folded: str) -> None:
    assert fold(text) == folded


def test_split_revision() -> None:
    assert split_revision("x") == ("x", None)
    assert split_revision(" x @ main ") == ("x", "main")
    assert split_revision("org/x@refs/pr/3") == ("org/x", "refs/pr/3")


def test_ambiguous_when_folding_merges_two_entries(write_registry: Callable[..., Path]) -> None:
    path = write_registry(
        """\
        families: {f: {title: F, generation: 1}}
        models:
          - {name: Demo-1.5, family: f, size: 1B, kind: base, released: 2024-01-01, license: x,
             architecture: A, sources: {hf: org/demo-one}}
          - {name: Demo-1-5, family: f, size: 1B, kind: chat, released: 2024-01-01, license: x,
             architecture: A, sources: {hf: org/demo-two}}
        """
    )
    reg = load_registry(path)
    assert reg.get("demo-1.5").name == "Demo-1.5"  # exact spellings still work
    assert reg.get("DEMO-1-5").name == "Demo-1-5"
    with pytest.raises(AmbiguousNameError) as info:
        reg.get("demo_1_5")
    assert info.value.candidates == ["Demo-1.5", "Demo-1-5"]
    assert info.value.exit_code == 2 and "Demo-1.5, Demo-1-5" in str(info.value)


def test_ambiguous_bare_repo_name() -> None:
    index = NameIndex(
        [
            NameKeys("A", ("A", "one/shared-name"), ("shared-name",)),
            NameKeys("B", ("B", "two/shared-name"), ("shared-name",)),
        ]
    )
    assert index.resolve("one/shared-name") == ("A", None)
    assert index.resolve("two/Shared_Name@r") == ("B", "r")
    with pytest.raises(AmbiguousNameError) as info:
        index.resolve("shared_name")
    assert info.value.candidates == ["A", "B"]


def test_exact_tier_wins_over_folded_and_bare() -> None:
    index = NameIndex(
        [
            NameKeys("X.1", ("X.1",), ()),
            NameKeys("X-1", ("X-1",), ()),
            NameKeys("Other", ("Other", "org/x-1"), ("x-1",)),
        ]
    )
    assert index.resolve("x.1")[0] == "X.1"
    assert index.resolve("X-1")[0] == "X-1"
    with pytest.raises(AmbiguousNameError):
        index.resolve("x_1")
