"""verify(): hashes against manifest or lock, and safetensors structure without torch."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from fixtures_pull import MODEL
from safetensors.numpy import save_file

from model_zoo.download.pull import pull_model
from model_zoo.errors import (
    CheckpointError,
    HashMismatchError,
    ModelNotPulledError,
    SizeMismatchError,
    UsageError,
)
from model_zoo.store.lockfile import LockedFile, LockedModel, make_lock
from model_zoo.store.manifest import (
    PUBLISHED,
    FileRecord,
    SourceRecord,
    StoreManifest,
    write_manifest,
)
from model_zoo.store.safetensors_check import HeaderError, read_header
from model_zoo.store.verify import verify

CONFIG = {
    "architectures": ["InternLM2ForCausalLM"],
    "hidden_size": 8,
    "intermediate_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "vocab_size": 32,
}


def _tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    h, i, v, qkv = 8, 16, 32, (2 + 2 * 1) * 4
    t = {"model.tok_embeddings.weight": (v, h), "output.weight": (v, h), "model.norm.weight": (h,)}
    for n in range(2):
        p = f"model.layers.{n}."
        t |= {
            p + "attention.wqkv.weight": (qkv, h),
            p + "attention.wo.weight": (h, h),
            p + "feed_forward.w1.weight": (i, h),
            p + "feed_forward.w3.weight": (i, h),
            p + "feed_forward.w2.weight": (h, i),
            p + "attention_norm.weight": (h,),
            p + "ffn_norm.weight": (h,),
        }
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in t.items()}


def make_checkpoint(root: Path, *, shards: int = 2, manifest: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    tensors = _tensors()
    names = sorted(tensors)
    weight_map = {}
    for k in range(shards):
        shard = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[k::shards]}
        save_file(part, str(root / shard))
        weight_map |= {n: shard for n in part}
    (root / "model.safetensors.index.json").write_text(
        json.dumps(
            {
                "metadata": {"total_size": sum(a.nbytes for a in tensors.values())},
                "weight_map": weight_map,
            }
        )
    )
    (root / "config.json").write_text(json.dumps(CONFIG))
    (root / "tokenizer_config.json").write_text("{}")
    if manifest:
        write_manifest(
            root,
            StoreManifest(
                name="Tiny-Chat",
                slug="tiny-chat",
                revision=None,
                commit="c" * 40,
                sources=(SourceRecord("hf", "internlm/tiny", "http://127.0.0.1:1"),),
                files=tuple(_record(root, p) for p in sorted(_files(root))),
            ),
        )
    return root


def _files(root: Path) -> list[str]:
    return [
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and ".model-zoo" not in p.parts
    ]


def _record(root: Path, rel: str) -> FileRecord:
    data = (root / rel).read_bytes()
    return FileRecord(rel, len(data), hashlib.sha256(data).hexdigest(), PUBLISHED, ("hf",))


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_clean_checkpoint_verifies(tmp_path: Path) -> None:
    root = make_checkpoint(tmp_path / "ckpt")
    report = verify(root)
    assert report.ok, report.problems
    assert report.against == "manifest"
    assert len(report.files) == 5 and all(
        f.ok and f.sha256 == f.expected_sha256 for f in report.files
    )
    assert report.bytes_hashed == sum((root / f).stat().st_size for f in _files(root))
    assert report.error() is None
    report.raise_for_problems()


def test_flipped_byte_in_tensor_data_is_a_hash_mismatch(tmp_path: Path) -> None:
    root = make_checkpoint(tmp_path / "ckpt")
    shard = root / "model-00002-of-00002.safetensors"
    flip_byte(shard, shard.stat().st_size - 3)  # tensor data: structure still fine
    report = verify(root)
    assert not report.ok
    assert [(p.path, p.kind) for p in report.problems] == [
        ("model-00002-of-00002.safetensors", "hash")
    ]
    with pytest.raises(HashMismatchError, match="model-00002-of-00002.safetensors"):
        report.raise_for_problems()
    # structure alone cannot see a flipped data byte, hashes can
    assert verify(root, hashes="none").ok


def test_truncated_shard_is_caught_without_hashes(tmp_path: Path) -> None:
    root = make_checkpoint(tmp_path / "ckpt", manifest=False)
    shard = root / "model-00001-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-10])
    report = verify(root)
    assert report.against == "none"
    assert [(p.path, p.kind) for p in report.problems] == [
        ("model-00001-of-00002.safetensors", "header")
    ]
    assert "truncated" in report.problems[0].detail
    with pytest.raises(CheckpointError, match="model-00001-of-00002.safetensors"):
        report.raise_for_problems()


def test_truncated_shard_with_manifest_is_a_size_problem(tmp_path: Path) -> None:
    root = make_checkpoint(tmp_path / "ckpt")
    shard = root / "model-00001-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-10])
    report = verify(root)
    kinds = {(p.path, p.kind) for p in report.problems}
    assert ("model-00001-of-00002.safetensors", "size") in kinds
    assert ("model-00001-of-00002.safetensors", "header") in kinds
    with pytest.raises(SizeMismatchError):
        report.raise_for_problems()


def test_missing_shard(tmp_path: Path) -> None:
    root = make_checkpoint(tmp_path / "ckpt", manifest=False)
    (root / "model-00002-of-00002.safetensors").unlink()
    report = verify(root)
    assert ("model-00002-of-00002.safetensors", "missing") in {
        (p.path, p.kind) for p in report.problems
    }
    # with a manifest, the missing file is named as listed-but-missing too
    root2 = make_checkpoint(tmp_path / "ckpt2")
    (root2 / "model-00001-of-00002.safetensors").unlink()
    problems = verify(root2).problems
    assert any(p.kind == "missing" and "listed in the manifest" in p.detail for p in problems)


def _rewrite_header(path: Path, edit) -> None:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    edit(header)
    new = json.dumps(header).encode()
    new += b" " * (n - len(new)) if len(new) <= n else b""
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n :])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda h: h["model.norm.weight"].update(shape=[9]), "needs"),
        (lambda h: h["model.norm.weight"].update(dtype="F99"), "unknown dtype"),
        (
            lambda h: h.update({"extra": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}),
            "overlaps",
        ),
        (lambda h: h.pop("model.norm.weight"), "gap|unexpected bytes"),
    ],
)
def test_tampered_header_is_caught(tmp_path: Path, edit, message: str) -> None:
    root = make_checkpoint(tmp_path / "ckpt", shards=1, manifest=False)
    shard = root / "model-00001-of-00001.safetensors"
    _rewrite_header(shard, edit)
    with pytest.raises(HeaderError, match=message):
        read_header(shard)
    problems = verify(root).problems
    assert any(p.path == shard.name and p.kind == "header" for p in problems)


def test_garbage_header_bytes(tmp_path: Path) -> None:
    root = make_checkpoint(tmp_path / "ckpt", shards=1, manifest=False)
    shard = root / "model-00001-of-00001.safetensors"
    flip_byte(shard, 9)  # inside the JSON header
    problems = verify(root).problems
    assert problems and problems[0].path == shard.name and problems[0].kind == "header"
    shard.write_bytes(b"\xff" * 8 + b"rest")
    assert "implausible" in verify(root).problems[0].detail


def test_index_naming_a_tensor_the_shard_lacks(tmp_path: Path) -> None:
    root = make_checkpoint(tmp_path / "ckpt", manifest=False)
    index = json.loads((root / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.layers.9.attention.wo.weight"] = "model-00001-of-00002.safetensors"
    moved = "model.norm.weight"
    index["weight_map"][moved] = (
        "model-00002-of-00002.safetensors"
        if index["weight_map"][moved].startswith("model-00001")
        else "model-00001-of-00002.safetensors"
    )
    (root / "model.safetensors.index.json").write_text(json.dumps(index))
    details = " ".join(p.detail for p in verify(root).problems if p.kind == "index")
    assert "absent" in details and "not mapped to this shard" in details


def test_index_missing_a_shard_number(tmp_path: Path) -> None:
    root = make_checkpoint(tmp_path / "ckpt", shards=2, manifest=False)
    index = json.loads((root / "model.safetensors.index.json").read_text())
    index["weight_map"] = {
        k: v for k, v in index["weight_map"].items() if v.startswith("model-00001")
    }
    (root / "model.safetensors.index.json").write_text(json.dumps(index))
    details = [p.detail for p in verify(root).problems]
    assert any("[2] of 2 are not in the index" in d for d in details)


def test_shapes_disagree_with_config(tmp_path: Path) -> None:
    root = make_checkpoint(tmp_path / "ckpt", manifest=False)
    cfg = dict(CONFIG, vocab_size=33, num_hidden_layers=3)
    (root / "config.json").write_text(json.dumps(cfg))
    problems = [p for p in verify(root).problems if p.kind == "shape"]
    text = " ".join(p.detail for p in problems)
    assert "model.tok_embeddings.weight" in text and "[33, 8]" in text
    assert "output.weight" in text
    assert "says 3 layers" in text
    assert any(
        p.path.endswith(".safetensors") for p in problems
    )  # names the shard holding the tensor


def test_verify_against_lock(tmp_path: Path) -> None:
    root = make_checkpoint(tmp_path / "ckpt", manifest=False)
    locked = LockedModel(
        "Tiny-Chat",
        "hf",
        "internlm/tiny",
        None,
        "c" * 40,
        tuple(
            LockedFile(r.path, r.size, r.sha256)
            for r in map(lambda p: _record(root, p), _files(root))
        ),
    )
    lock_path = tmp_path / "model-zoo.lock"
    lock_path.write_text(make_lock([locked]).dumps())
    assert verify(root, lock=lock_path).ok
    flip_byte(root / "config.json", 2)
    report = verify(root, lock=lock_path)
    assert report.against == "lock file"
    assert [(p.path, p.kind) for p in report.problems] == [("config.json", "hash")]


def test_changed_mode_hashes_only_modified_files(tmp_path: Path) -> None:
    root = make_checkpoint(tmp_path / "ckpt")
    assert verify(root, hashes="changed").bytes_hashed == 0  # nothing modified since verification
    import os
    import time

    later = time.time() + 5
    os.utime(root / "config.json", (later, later))
    report = verify(root, hashes="changed")
    assert report.bytes_hashed == (root / "config.json").stat().st_size


def test_symlinked_file_and_unlisted_files_are_reported(tmp_path: Path) -> None:
    root = make_checkpoint(tmp_path / "ckpt")
    (root / "notes.txt").write_text("mine")
    target = tmp_path / "elsewhere.json"
    target.write_text((root / "tokenizer_config.json").read_text())
    (root / "tokenizer_config.json").unlink()
    (root / "tokenizer_config.json").symlink_to(target)
    report = verify(root)
    assert report.unlisted == ["notes.txt"]
    assert any(p.path == "tokenizer_config.json" and "symlink" in p.detail for p in report.problems)


# ---------------------------------------------------------------------- verify on pulled snapshots


def test_verify_missing_revision_names_it(pull_hub) -> None:
    pull_model(MODEL, source="hf")
    with pytest.raises(ModelNotPulledError) as info:
        verify(f"{MODEL}@0123456789abcdef")
    assert "@0123456789abcdef" in info.value.message


def test_verify_ignores_the_partial_work_folder(pull_hub) -> None:
    path = pull_model(MODEL, source="hf").path
    work = path / ".model-zoo-partial"
    work.mkdir()
    (work / "extra.bin.part").write_bytes(b"\0" * 100)
    report = verify(path)
    assert (
        report.ok
        and report.unlisted == []
        and all(not f.path.startswith(".model-zoo") for f in report.files)
    )


def test_verify_against_a_lock_without_the_model_says_so(pull_hub, tmp_path: Path) -> None:
    from model_zoo.store.lockfile import LockedFile, LockedModel, make_lock

    path = pull_model(MODEL, source="hf").path
    other = LockedModel(
        "InternLM2-7B-Reward",
        "hf",
        "internlm/internlm2-7b-reward",
        None,
        "0" * 40,
        (LockedFile("config.json", 10, "0" * 64),),
    )
    with pytest.raises(UsageError, match="no entry for InternLM2.5-1.8B-Chat"):
        verify(path, lock=make_lock([other]))
    # a directory without a manifest still takes a one-model lock as its reference
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "config.json").write_bytes((path / "config.json").read_bytes())
    report = verify(copy, lock=make_lock([other]))
    assert report.against == "lock file" and not report.ok


def test_verify_advice_for_a_flipped_byte_actually_repairs(pull_hub) -> None:
    from model_zoo.errors import HashMismatchError

    path = pull_model(MODEL, source="hf").path
    shard = path / "model-00002-of-00002.safetensors"
    st = shard.stat()
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x40
    shard.write_bytes(bytes(data))
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))  # bit rot: same size, same time
    assert pull_model(MODEL, source="hf").downloaded_bytes == 0  # a pull trusts it, by design
    with pytest.raises(HashMismatchError) as info:
        verify(path).raise_for_problems()
    assert "Delete the file and pull again" in info.value.message
    shard.unlink()  # what the message says to do
    assert pull_model(MODEL, source="hf").downloaded_bytes == st.st_size
    assert verify(path).ok


def test_verify_reports_a_damaged_config_json(pull_hub, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(pull_model(MODEL, source="hf").path, copy)
    shutil.rmtree(copy / ".model-zoo")  # a copied-in directory: structure checks only
    (copy / "config.json").write_text('{"architectures": ["InternLM2ForCausalLM"], ')  # cut short
    report = verify(copy)
    assert [(p.path, p.kind) for p in report.problems] == [("config.json", "config")]
    (copy / "config.json").write_text("[]")
    assert [p.path for p in verify(copy).problems] == ["config.json"]


def test_verify_size_mismatch_message_reads_right_and_pull_repairs(pull_hub) -> None:
    from model_zoo.errors import SizeMismatchError

    path = pull_model(MODEL, source="hf").path
    for name in ("config.json", "tokenizer_config.json"):
        with open(path / name, "ab") as fh:
            fh.write(b" ")
    with pytest.raises(SizeMismatchError) as info:
        verify(path).raise_for_problems()
    message = info.value.message
    assert "more problem(s); see `model-zoo verify --json`). Pull again to repair." in message, (
        message
    )
    assert pull_model(MODEL, source="hf").downloaded_bytes > 0 and verify(path).ok
