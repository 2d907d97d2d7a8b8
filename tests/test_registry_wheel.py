"""The built wheel ships registry.yaml inside the package, and an installed copy loads it.

Builds with hatchling (the project's build backend, imported from this environment so no
network is needed) and installs with pip into a private --target directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_registry_and_installed_copy_loads_it(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = "import sys; from hatchling.build import build_wheel; print(build_wheel(sys.argv[1]))"
    out = subprocess.run(
        [sys.executable, "-c", build, str(dist)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    wheel = dist / out.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "model_zoo/registry.yaml" in names
        assert zf.read("model_zoo/registry.yaml") == (REPO / "registry.yaml").read_bytes()
        assert "model_zoo/py.typed" in names

    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    probe = (
        "import json, model_zoo\n"
        "from model_zoo.registry.loader import builtin_registry_path\n"
        "from model_zoo import list_models, get\n"
        "print(json.dumps({'package': model_zoo.__file__,\n"
        "                  'registry': str(builtin_registry_path()),\n"
        "                  'count': len(list_models()),\n"
        "                  'hf': get('internlm2_5-7b-chat').sources['hf']}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    seen = json.loads(result.stdout)
    assert Path(seen["package"]).is_relative_to(site)
    assert seen["registry"] == str(site / "model_zoo" / "registry.yaml")
    assert seen["count"] == 41 and seen["hf"] == "internlm/internlm2_5-7b-chat"
