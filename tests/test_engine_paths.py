"""Remote paths are untrusted: nothing is ever written outside the target directory."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from fixtures_engine import (
    ENGINE_FILES,
    fast_options,
    jobs_for,
    sha256_of,
)

from model_zoo.download.engine import FileJob, fetch
from model_zoo.download.paths import (
    PARTIAL_DIR,
    check_on_disk,
    check_relpath,
    is_partial_artifact,
    partial_paths,
    validate_paths,
)
from model_zoo.errors import UnsafePathError
from model_zoo.hubs.base import RemoteFile
from model_zoo.testing.local_hub import LocalHub

UNSAFE = {
    "../../escaped.txt": "'..' segment",
    "sub/../../x": "'..' segment",
    "..": "'..' segment",
    "/etc/passwd": "absolute",
    "C:/model-zoo/x": "drive letter",
    "c:x": "drive letter",
    "C:\\model-zoo\\x": "backslash",
    "a\\..\\b": "backslash",
    "a/./b": "'.' segment",
    "./a": "'.' segment",
    "a//b": "empty segment",
    "a/": "empty segment",
    "": "empty",
    "a\x00b": "NUL",
    "a\nb": "control character",
    f"{PARTIAL_DIR}/x.part": "reserves",
    "x" * 300: "longer than 255",
}


@pytest.mark.parametrize("path", list(UNSAFE))
def test_unsafe_paths_are_refused_with_the_reason(path: str) -> None:
    with pytest.raises(UnsafePathError) as info:
        check_relpath(path)
    assert UNSAFE[path] in info.value.reason
    assert info.value.path == path


@pytest.mark.parametrize(
    "path", ["config.json", "a/b/c.safetensors", ".gitattributes", "a..b", "..a/b", "名字.txt"]
)
def test_ordinary_paths_pass(path: str) -> None:
    assert "/".join(check_relpath(path)) == path


def test_symlinked_folder_inside_target_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (target / "sub").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="symlink"):
        check_on_disk(target, "sub/x.bin")
    # a symlink at the final name itself is fine: it gets replaced, not followed
    (target / "final").symlink_to(outside / "f")
    assert check_on_disk(target, "final") == target / "final"


def test_listing_clashes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError, match="twice"):
        validate_paths(tmp_path, ["a", "a"])
    with pytest.raises(UnsafePathError, match="file and as a folder"):
        validate_paths(tmp_path, ["a/b", "a"])


def test_partial_paths_live_in_the_hidden_folder(tmp_path: Path) -> None:
    pp = partial_paths(tmp_path, "sub/model.safetensors")
    assert pp.final == tmp_path / "sub/model.safetensors"
    assert pp.data == tmp_path / PARTIAL_DIR / "sub/model.safetensors.part"
    assert (
        pp.sidecar.name == "model.safetensors.part.json"
        and pp.lock.name == "model.safetensors.lock"
    )
    assert is_partial_artifact(f"{PARTIAL_DIR}/sub/model.safetensors.part")
    assert not is_partial_artifact("sub/model.safetensors")


def _snapshot_dir(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize(
    "bad", ["../../escaped.txt", "/tmp/abs.txt", "C:/drive.txt", "a/../../b", "x\\..\\y"]
)
def test_one_unsafe_path_aborts_the_whole_fetch_before_any_write(
    engine_hub: LocalHub, tmp_path: Path, bad: str
) -> None:
    out = tmp_path / "deep" / "out"
    good = jobs_for(engine_hub)
    url = good[0].candidates[0].url
    evil = FileJob(bad, 5, None, (RemoteFile(bad, 5, None, url),), ("hf",))
    before = _snapshot_dir(tmp_path)
    with pytest.raises(UnsafePathError):
        fetch([*good, evil], out, options=fast_options())
    assert _snapshot_dir(tmp_path) == before  # not even the target directory was created
    assert engine_hub.stats.file_requests() == []


def test_symlink_planted_in_target_is_never_written_through(
    engine_hub: LocalHub, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    outside = tmp_path / "outside"
    outside.mkdir()
    out.mkdir()
    (out / "sub").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        fetch(jobs_for(engine_hub), out, options=fast_options())
    assert list(outside.iterdir()) == []
    assert engine_hub.stats.file_requests() == []


def test_symlinked_partial_folder_is_refused(engine_hub: LocalHub, tmp_path: Path) -> None:
    out = tmp_path / "out"
    outside = tmp_path / "outside"
    outside.mkdir()
    out.mkdir()
    (out / PARTIAL_DIR).symlink_to(outside)
    with pytest.raises(UnsafePathError):
        fetch(jobs_for(engine_hub, paths=["config.json"]), out, options=fast_options())
    assert list(outside.iterdir()) == []


def test_symlink_entries_are_refused_before_any_write(engine_hub: LocalHub, tmp_path: Path) -> None:
    out = tmp_path / "out"
    good = jobs_for(engine_hub, paths=["config.json"])[0]
    link = RemoteFile("link", 11, None, good.candidates[0].url, kind="symlink")
    with pytest.raises(UnsafePathError, match="symlink"):
        fetch([good, FileJob("link", 11, None, (link,), ("hf",))], out, options=fast_options())
    assert not out.exists()


def test_malicious_listing_through_the_hf_adapter_writes_nothing_outside(
    engine_hub: LocalHub, tmp_path: Path
) -> None:
    """The local hub's malicious listing (``..``, absolute, drive letters, symlinks) read through
    the HuggingFace adapter: whatever the adapter passes on, nothing lands outside the target."""
    from fixtures_engine import ENGINE_REPO

    from model_zoo.hubs.factory import adapter_for
    from model_zoo.settings import load_settings
    from model_zoo.testing.faults import Fault

    engine_hub.faults.add(Fault.malicious_listing())
    out = tmp_path / "a" / "b" / "out"
    settings = load_settings(
        {"HF_ENDPOINT": engine_hub.url, "MODEL_ZOO_CONFIG": str(tmp_path / "none.toml")}
    )
    try:
        manifest = adapter_for("hf", settings).manifest(ENGINE_REPO)
        jobs = [FileJob(f.path, f.size, f.sha256, (f,), ("hf",)) for f in manifest.files]
        unsafe = [f.path for f in manifest.files if f.path not in ENGINE_FILES]
        if unsafe:
            with pytest.raises(UnsafePathError):
                fetch(jobs, out, options=fast_options())
            assert not out.exists()
        else:
            fetch(jobs, out, options=fast_options())
    except UnsafePathError:
        assert not out.exists()  # refused while listing: nothing was written either
    names = {p.name for p in tmp_path.rglob("*")}
    assert not names & {
        "escaped.txt",
        "escaped-nested.txt",
        "drive.txt",
        "drive-slash.txt",
        "outside",
    }
    assert not os.path.exists("/etc/model-zoo-absolute.txt")


# --------------------------------------------------- local names too long, or something in the way


SHARD2 = "model-00002-of-00002.safetensors"


@pytest.mark.timeout(60)
def test_directory_at_a_final_name_is_refused_before_any_byte_is_fetched(
    engine_hub: LocalHub, tmp_path: Path
) -> None:
    """Was found only at the rename: the whole file was fetched, then the fetch failed."""
    from fixtures_engine import BIG

    from model_zoo.errors import UsageError

    out = tmp_path / "out"
    (out / BIG).mkdir(parents=True)
    (out / BIG / "notes.txt").write_text("the user's")
    with pytest.raises(UsageError) as info:
        fetch(jobs_for(engine_hub), out, options=fast_options())
    assert "is a directory" in str(info.value) and "Move that directory away" in str(info.value)
    assert engine_hub.stats.bytes_served() == 0
    assert (out / BIG / "notes.txt").read_text() == "the user's"


@pytest.mark.timeout(60)
def test_a_file_name_near_the_255_byte_limit_is_fetched(
    engine_hub: LocalHub, tmp_path: Path
) -> None:
    """Its partial's name plus ``.part.json`` passed 255 bytes: 'File name too long', a
    LocalWriteError for a file the hub serves and the disk can hold."""
    from fixtures_engine import BIG

    names = [
        "\u00e9" * 120 + "-a.bin",
        "\u00e9" * 120 + "-b.bin",
        "x" * 255,
    ]  # 246, 246 and 255 bytes
    served = [BIG, SHARD2, "config.json"]
    jobs = []
    for name, job in zip(names, jobs_for(engine_hub, paths=served), strict=True):
        jobs.append(
            FileJob(
                name, job.size, job.sha256, (replace(job.candidates[0], path=name),), job.sources
            )
        )
    out = tmp_path / "out"
    report = fetch(jobs, out, options=fast_options())
    assert len(report.files) == 3
    for job in jobs:
        assert sha256_of(out / job.path) == job.sha256
    assert partial_paths(out, names[0]).data != partial_paths(out, names[1]).data
    assert not (out / ".model-zoo-partial").exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["target", "above", "partial-folder"])
def test_a_file_where_a_folder_belongs_is_a_local_write_error(
    engine_hub: LocalHub, tmp_path: Path, where: str
) -> None:
    """Was a NotADirectoryError traceback (target is a file), or an UnsafePathError blaming a
    'remote path' named '.model-zoo-partial/.model-zoo-partial' (a file at the partial folder)."""
    from model_zoo.download.paths import PARTIAL_DIR
    from model_zoo.errors import LocalWriteError

    if where == "target":
        (tmp_path / "out").write_text("a file")
        out, in_the_way = tmp_path / "out", tmp_path / "out"
    elif where == "above":
        (tmp_path / "f").write_text("a file")
        out, in_the_way = tmp_path / "f" / "out", tmp_path / "f"
    else:
        out = tmp_path / "out"
        out.mkdir()
        in_the_way = out / PARTIAL_DIR
        in_the_way.write_text("a file")
    with pytest.raises(LocalWriteError) as info:
        fetch(jobs_for(engine_hub), out, options=fast_options())
    assert str(in_the_way if where != "above" else out) in str(info.value)
    assert in_the_way.read_text() == "a file"
    assert engine_hub.stats.file_requests() == [] or where == "partial-folder"
