"""bench/gpu_check.py: its code path on the CPU with tiny dims, and the real check on CUDA."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"


def gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_code_path_on_cpu_with_tiny_dims(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = gpu_check().main(
        [
            "--tiny",
            "--device",
            "cpu",
            "--new-tokens",
            "12",
            "--batch",
            "3",
            "--shards",
            "2",
            "--workdir",
            str(tmp_path),
        ]
    )
    assert json.loads(capsys.readouterr().out) == result
    assert result["generated_tokens"] == 12 and result["tokens_per_second"] > 0
    assert result["reward_scored"] == 3 and result["reward_scores_finite"]
    assert result["reward_batch_vs_single_max_diff"] < 1e-4
    assert result["load_seconds"] > 0 and result["checkpoint_bytes"] > 0
    assert list(tmp_path.iterdir()) == []  # the checkpoint was cleaned up


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA GPU")
def test_gpu_check_on_cuda() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=1200, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["dims"] == "internlm2-1.8b" and result["dtype"] == "bfloat16"
    assert result["generated_tokens"] == 256 and result["tokens_per_second"] > 0
    assert result["reward_scores_finite"] and result["reward_batch_vs_single_max_diff"] < 5e-2
    assert result["gpu_peak_allocated_bytes"] > result["checkpoint_bytes"] * 0.9
