"""A repository tree for the local hub: tiny checkpoints under real InternLM repository ids.

``make_hub_tree(root)`` lays out ``ROOT/<namespace>/<name>/`` for the HuggingFace, ModelScope,
Modelers and OpenXLab ids of a few registry models, which is what the local hub server serves.
Mirrors of one model hold byte-identical files (the seed is derived from the model name), while
different models differ.
"""

from __future__ import annotations

import shutil
import tempfile
import zlib
from collections.abc import Mapping
from pathlib import Path

from ..errors import UsageError
from .tiny import ARCHS, make_tiny
from .tiny_weights import TensorPlan, random_tensor, write_atomic

ORIGIN = "origin"  # an OpenXLab "-original" repository: InternEvo format, not loadable

# Registry entries whose sources make up the default tree: one model per tiny architecture.
DEFAULT_MODELS: tuple[str, ...] = (
    "internlm2_5-1_8b-chat",
    "internlm2-1_8b-reward",
    "internlm3-8b-instruct",
    "internlm-chat-7b",
)

_ARCH_OF_CLASS = {
    "InternLM2ForCausalLM": "internlm2",
    "InternLM2ForRewardModel": "internlm2-reward",
    "InternLM3ForCausalLM": "internlm3",
    "InternLMForCausalLM": "internlm",
}

_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.bin",
        "*.model",
        "*.pt",
        "*.pth",
        "*.safetensors",
        "*.msgpack",
        "*.h5",
        "*.onnx",
        "*.zip",
        "*.tar.gz",
        "*tfevents*",
    )
)


def registry_repos(*names: str) -> dict[str, str]:
    """Repo id -> tiny architecture for every source of the named registry entries
    (``"origin"`` for an ``openxlab-origin`` source)."""
    from ..registry.api import get

    out: dict[str, str] = {}
    for name in names:
        info = get(name)
        arch = (
            "polar"
            if info.scoring_style == "reference-based"
            else _ARCH_OF_CLASS.get(info.architecture)
        )
        if arch is None:
            raise UsageError(f"{name}: no tiny architecture for {info.architecture}", name=name)
        for source, repo_id in info.sources.items():
            out[repo_id] = ORIGIN if source == "openxlab-origin" else arch
    return out


def make_hub_tree(
    root: str | Path, repos: Mapping[str, str] | None = None, *, seed: int = 0
) -> dict[str, Path]:
    """Write one tiny repository per id in ``repos`` (repo id -> tiny architecture, or
    ``"origin"`` for an InternEvo-format repository) under ``root``; return id -> directory.

    Defaults to every source of :data:`DEFAULT_MODELS` in the registry. Repositories whose
    names match once case, ``.`` and ``-`` are ignored hold identical bytes (mirrors); others
    differ. Existing repository directories are replaced.
    """
    root = Path(root)
    repos = registry_repos(*DEFAULT_MODELS) if repos is None else repos
    out: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="tiny-hub-") as scratch:
        built: dict[tuple[str, int], Path] = {}
        for repo_id, arch in repos.items():
            namespace, _, name = repo_id.partition("/")
            if not namespace or not name or "/" in name or arch not in (*ARCHS, ORIGIN):
                raise UsageError(f"bad hub tree entry {repo_id!r}: {arch!r}", repo_id=repo_id)
            mirror_key = name.lower().replace(".", "_").replace("-", "_")
            model_seed = (seed + zlib.crc32(mirror_key.encode())) & 0x7FFFFFFF
            key = (arch, model_seed)
            if key not in built:
                built[key] = Path(scratch) / f"{len(built)}"
                _build(arch, built[key], model_seed)
                write_atomic(built[key] / ".gitattributes", [_GITATTRIBUTES.encode()])
                write_atomic(built[key] / "README.md", [_readme(mirror_key, arch).encode()])
            target = root / namespace / name
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(built[key], target)
            out[repo_id] = target
    return out


def _build(arch: str, out: Path, seed: int) -> None:
    if arch != ORIGIN:
        make_tiny(arch, out, seed=seed)
        return
    # InternEvo checkpoints are torch pickles per tensor-/pipeline-parallel rank; model-zoo only
    # pulls and verifies them, so an opaque payload of realistic naming is enough here.
    out.mkdir(parents=True)
    payload = random_tensor(TensorPlan("origin", (4096,), "embedding"), seed).tobytes()
    write_atomic(out / "model_tp0_pp0.pt", [payload])
    from .tiny_tokenizer import tokenizer_files

    write_atomic(out / "tokenizer.model", [tokenizer_files("internlm2")["tokenizer.model"]])


def _readme(name: str, arch: str) -> str:
    # The same text on every mirror of a model, so mirrors stay byte-identical.
    kind = "InternEvo (origin) format" if arch == ORIGIN else f"HuggingFace format, {arch}"
    return (
        "---\nlicense: other\npipeline_tag: text-generation\n---\n\n"
        f"# {name} (tiny test copy)\n\n"
        f"A randomly initialised stand-in for {name} ({kind}), built by\n"
        "`model-zoo dev make-hub-tree` for offline tests. It has the real file layout but\n"
        "produces no meaningful text.\n"
    )
