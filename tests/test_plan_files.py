"""Pure planning of files: filters, redundant formats, cross-source matching by sha256."""

from __future__ import annotations

import pytest

from model_zoo.download.filelist import select_files
from model_zoo.download.matching import check_against_lock, plan_file
from model_zoo.errors import LockMismatchError
from model_zoo.hubs.base import Manifest, RemoteFile

A, B, C = "a" * 64, "b" * 64, "c" * 64
REPO = [
    "config.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "pytorch_model-00001-of-00002.bin",
    "pytorch_model.bin.index.json",
    "tokenizer.model",
    "sub/extra.pth",
    "tf_model.h5",
    "README.md",
]


def test_default_skips_redundant_formats_when_safetensors_exist() -> None:
    sel = select_files(REPO)
    assert set(sel.selected) == {
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.model",
        "README.md",
    }
    skipped = dict(sel.skipped)
    assert set(skipped) == {
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model.bin.index.json",
        "sub/extra.pth",
        "tf_model.h5",
    }
    assert all("redundant" in r for r in skipped.values())


def test_bin_only_repositories_keep_their_bins() -> None:
    repo = ["config.json", "pytorch_model.bin", "pytorch_model.bin.index.json"]
    assert select_files(repo).selected == tuple(sorted(repo))


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"all_files": True}, set(REPO)),
        ({"include": ["*.json"]}, {"config.json", "model.safetensors.index.json"}),
        (
            {"include": ["*.bin"]},
            {"pytorch_model-00001-of-00002.bin"},
        ),  # explicit: the user wants bins
        (
            {"include": ["*.bin*"]},
            {"pytorch_model-00001-of-00002.bin", "pytorch_model.bin.index.json"},
        ),
        ({"include": ["sub/*"]}, set()),  # the .pth is redundant and the glob is not about .pth
        ({"include": ["*.pth"]}, {"sub/extra.pth"}),  # a name-only glob matches in folders too
        (
            {"exclude": ["*.safetensors", "README*"]},
            {"config.json", "model.safetensors.index.json", "tokenizer.model"},
        ),
        ({"include": ["*.json"], "exclude": ["model.*"]}, {"config.json"}),
        (
            {
                "all_files": True,
                "exclude": ["*.bin", "*.h5", "*.pth", "*.safetensors", "*.json", "*.model"],
            },
            {"README.md"},
        ),
    ],
)
def test_globs(kwargs: dict, expected: set[str]) -> None:
    sel = select_files(REPO, **kwargs)
    assert set(sel.selected) == expected
    assert set(sel.selected) | {p for p, _ in sel.skipped} == set(REPO)


def _m(
    source: str, files: dict[str, tuple[int | None, str | None]], commit: str | None = "1" * 40
) -> Manifest:
    return Manifest(
        source=source,
        repo_id=f"{source}/repo",
        revision="main",
        commit=commit,
        endpoint="http://127.0.0.1:1",
        files=tuple(
            RemoteFile(p, size, sha, f"http://127.0.0.1:1/{source}/{p}")
            for p, (size, sha) in files.items()
        ),
    )


def test_published_hash_and_agreeing_candidates() -> None:
    hf = _m("hf", {"w.safetensors": (10, A)})
    ms = _m("modelscope", {"w.safetensors": (10, A.upper())})
    ox = _m("openxlab", {"w.safetensors": (10, None)})
    fp = plan_file("w.safetensors", hf, [ms, ox])
    assert (fp.sha256, fp.method, fp.expected_from) == (A, "published-sha256", "hf")
    # a source without a hash but the right size may serve it: the bytes are checked against A
    assert (
        fp.sources == ("hf", "modelscope", "openxlab")
        and not fp.disputed
        and fp.cross_check is None
    )


def test_disagreeing_source_is_disputed_not_a_candidate() -> None:
    hf = _m("hf", {"w.safetensors": (10, A)})
    ms = _m("modelscope", {"w.safetensors": (10, B)})
    small = _m("modelers", {"w.safetensors": (9, None)})
    fp = plan_file("w.safetensors", hf, [ms, small])
    assert fp.sources == ("hf",)
    assert [(c.source, c.remote.sha256) for c in fp.disputed] == [("modelscope", B)]


def test_unhashed_on_primary_takes_another_sources_hash() -> None:
    hf = _m("hf", {"config.json": (5, None)})
    ms = _m("modelscope", {"config.json": (5, C)})
    fp = plan_file("config.json", hf, [ms])
    assert (fp.sha256, fp.method, fp.expected_from) == (C, "cross-source-sha256", "modelscope")
    assert fp.sources == ("hf", "modelscope")
    # a different size is a different file: its hash is not borrowed
    fp = plan_file("config.json", hf, [_m("modelscope", {"config.json": (6, C)})])
    assert fp.method == "size-only" and fp.sha256 is None


def test_no_hash_anywhere_cross_checks_bytes_with_a_second_source() -> None:
    hf = _m("hf", {"config.json": (5, None)})
    ox = _m("openxlab", {"config.json": (5, None)})
    fp = plan_file("config.json", hf, [ox])
    assert fp.method == "cross-source-bytes" and fp.sha256 is None
    assert (
        fp.sources == ("hf",) and fp.cross_check is not None and fp.cross_check.source == "openxlab"
    )
    alone = plan_file("config.json", hf, [])
    assert alone.method == "size-only" and alone.cross_check is None


def test_lock_hash_wins_and_sources_agreeing_with_it_serve() -> None:
    hf = _m("hf", {"config.json": (5, None)})
    ms = _m("modelscope", {"config.json": (5, A)})
    ox = _m("openxlab", {"config.json": (5, B)})
    fp = plan_file("config.json", hf, [ms, ox], locked=(5, A))
    assert (fp.sha256, fp.method, fp.expected_from) == (A, "lock", "lock")
    assert fp.sources == ("hf", "modelscope")
    assert [c.source for c in fp.disputed] == ["openxlab"]


def test_check_against_lock() -> None:
    hf = _m("hf", {"config.json": (5, None), "w.safetensors": (10, A)}, commit="1" * 40)
    locked = {"config.json": (5, B), "w.safetensors": (10, A)}
    check_against_lock("M", hf, locked, locked_commit="1" * 40)  # unchanged: fine
    with pytest.raises(LockMismatchError, match="commit"):
        check_against_lock("M", hf, locked, locked_commit="2" * 40)
    with pytest.raises(LockMismatchError, match="w.safetensors has sha256"):
        check_against_lock("M", hf, {**locked, "w.safetensors": (10, C)}, locked_commit=None)
    with pytest.raises(LockMismatchError, match="config.json is 5 bytes, locked 6"):
        check_against_lock("M", hf, {**locked, "config.json": (6, B)}, locked_commit=None)
    with pytest.raises(LockMismatchError, match="gone.json is gone"):
        check_against_lock("M", hf, {**locked, "gone.json": (1, A)}, locked_commit=None)


def test_hf_git_blob_id_is_used_when_no_sha256_is_known(tmp_path) -> None:
    from model_zoo.download.matching import git_blob_sha1

    (tmp_path / "f").write_bytes(b"hello\n")
    blob = git_blob_sha1(tmp_path / "f")
    assert blob == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object` of "hello\n"
    hf = Manifest(
        "hf",
        "r",
        "main",
        "1" * 40,
        "http://127.0.0.1:1",
        (RemoteFile("f", 6, None, "http://127.0.0.1:1/f", etag=f'"{blob}"', git_blob=blob),),
    )
    fp = plan_file("f", hf, [])
    assert (fp.method, fp.git_blob, fp.sha256, fp.git_blob_from) == (
        "git-blob-sha1",
        blob,
        None,
        "hf",
    )
    # a published sha256 elsewhere is stronger: it wins
    ms = _m("modelscope", {"f": (6, A)})
    fp = plan_file("f", hf, [ms])
    assert (fp.method, fp.git_blob) == ("cross-source-sha256", None)
    # an etag that merely looks like one is not a git blob id: the adapter says which it is
    ox = Manifest(
        "openxlab",
        "r",
        "main",
        None,
        "http://127.0.0.1:1",
        (RemoteFile("f", 6, None, "http://127.0.0.1:1/f", etag=blob),),
    )
    assert plan_file("f", ox, []).method == "size-only"


def test_a_git_blob_id_counts_whichever_source_is_primary() -> None:
    blob = "ce013625030ba8dba906f756967f9e9ca394464a"
    modelers = Manifest(
        "modelers",
        "r",
        "main",
        "1" * 40,
        "http://127.0.0.1:1",
        (RemoteFile("f", 6, None, "http://127.0.0.1:1/m/f", etag=blob, git_blob=blob),),
    )
    ox = Manifest(
        "openxlab",
        "r",
        "latest",
        None,
        "http://127.0.0.1:1",
        (RemoteFile("f", 6, None, "http://127.0.0.1:1/x/f", etag="whatever"),),
    )
    assert plan_file("f", modelers, []).method == "git-blob-sha1"  # Modelers primary
    fp = plan_file("f", ox, [modelers])  # OpenXLab primary: Modelers' id checks its bytes
    assert (fp.method, fp.git_blob, fp.git_blob_from, fp.sources) == (
        "git-blob-sha1",
        blob,
        "modelers",
        ("openxlab",),
    )
    other_size = Manifest(
        "modelers",
        "r",
        "main",
        "1" * 40,
        "http://127.0.0.1:1",
        (RemoteFile("f", 7, None, "http://127.0.0.1:1/m/f", git_blob=blob),),
    )
    assert plan_file("f", ox, [other_size]).git_blob is None  # another file: its id says nothing
