"""The newcomer's first five minutes, replayed: README's install and first command, then the
quickstart.

The steps come from README.md itself (the first ``bash`` block under "## Run it", split on
``&&``), so a README change that breaks them fails here; a step this test does not know how to
replay fails too, asking for it to be taught here. Then a few documented commands run, and the
quickstart's Python blocks run verbatim against a local mirror (``model-zoo serve-mirror`` over
``model-zoo dev make-hub-tree``), all in the fresh environment.

Trade-offs, to stay fast and offline (CI has no business downloading torch again):

- The fresh virtual environment is made from the base interpreter with
  ``--system-site-packages`` plus a ``.pth`` line that exposes this test environment's
  site-packages (a venv made from a venv's python would not see them). So third-party packages
  are shared, not installed: ``pip install torch==X`` is checked (the visible torch satisfies the
  pin) rather than run, and the ``runner`` extra is checked requirement by requirement against
  what the new environment sees.
- The project itself IS installed into the new environment, the README's way (``pip install
  -e``), from a copy of the checkout, with ``--no-deps`` (see above) and, when the build backend
  (hatchling, and ``editables`` for editable installs) is importable here, ``--no-build-isolation
  --no-index`` so nothing is fetched; otherwise pip builds in isolation, which needs the index.
- ``HOME``, the store and the settings file are fresh; no real hub is ever contacted (every
  endpoint points at the local mirror or nowhere).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fixtures_docs import ROOT

from model_zoo.hubs.catalog import HUBS

pytestmark = pytest.mark.slow

COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    "site",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    "*.egg-info",
    "build",
    "dist",
    ".mypy_cache",
    ".ruff_cache",
)


def readme_first_command() -> list[str]:
    """The README's first command (the "Run it" block), as its ``&&``-separated steps."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Run it") :]
    block = re.search(r"```(?:bash|sh|console)?\n(.*?)```", section, flags=re.DOTALL)
    assert block, "README.md: no code block under '## Run it'"
    command = " ".join(
        line.rstrip("\\").strip() for line in block.group(1).splitlines() if line.strip()
    )
    return [step.strip() for step in command.split("&&")]


def quickstart_python(heading: str) -> str:
    """The first python block under ``heading`` in docs/quickstart.md."""
    text = (ROOT / "docs" / "quickstart.md").read_text()
    section = text[text.index(heading) :]
    block = re.search(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert block, f"docs/quickstart.md: no python block under {heading!r}"
    return block.group(1)


@dataclass
class Newcomer:
    """A fresh machine, as far as model-zoo can tell: new venv, new HOME, new store."""

    work: Path
    venv: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def run(
        self,
        args: list[str],
        *,
        timeout: float = 600,
        check: bool = True,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.work,
            env={**self.env, **(extra_env or {})},
            check=False,
        )
        self.log.append(
            f"$ {shlex.join(args)}  -> {proc.returncode} in {time.monotonic() - started:.1f} s"
        )
        if check:
            assert proc.returncode == 0, (
                f"{shlex.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc

    @property
    def python(self) -> str:
        assert self.venv is not None, "README: a step ran before the virtual environment was made"
        return str(self.venv / "bin" / "python")

    # ---- the README steps this test knows how to replay
    def make_venv(self, name: str) -> None:
        self.venv = self.work / name
        base = getattr(sys, "_base_executable", sys.executable)
        self.run([base, "-m", "venv", "--system-site-packages", str(self.venv)])
        site = Path(
            self.run(
                [self.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
            ).stdout.strip()
        )
        (site / "_newcomer_shared.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    def activate(self) -> None:
        assert self.venv is not None
        self.env["VIRTUAL_ENV"] = str(self.venv)
        self.env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{self.env.get('PATH', '')}"

    def check_pinned(self, requirement: str) -> None:
        """``pip install PKG==V`` without downloading: the package the new env sees satisfies it."""
        code = (
            "import sys\nfrom importlib.metadata import version\n"
            "from packaging.requirements import Requirement\n"
            f"r = Requirement({requirement!r})\nv = version(r.name)\n"
            "ok = r.specifier.contains(v, prereleases=True)\n"
            "sys.exit(0 if ok else f'{r.name} {v} does not satisfy {r}')\n"
        )
        self.run([self.python, "-c", code])

    def install_project(self, extras: str) -> None:
        src = self.work / "checkout"
        shutil.copytree(ROOT, src, ignore=COPY_IGNORE)
        # the build backend and its editable helper, when present here, let pip build with no index
        offline = (
            self.run([self.python, "-c", "import hatchling, editables"], check=False).returncode
            == 0
        )
        flags = ["--no-build-isolation", "--no-index"] if offline else []
        self.run(
            [
                self.python,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                *flags,
                "-e",
                f"{src}[{extras}]" if extras else str(src),
            ]
        )
        code = (
            "import sys, tomllib\nfrom importlib.metadata import version, PackageNotFoundError\n"
            "from packaging.requirements import Requirement\n"
            f"meta = tomllib.load(open({str(src / 'pyproject.toml')!r}, 'rb'))['project']\n"
            f"reqs = list(meta['dependencies']) + [r for e in {extras!r}.split(',') if e "
            "for r in meta['optional-dependencies'][e] if not r.startswith('model-zoo')]\n"
            "bad = []\nfor line in reqs:\n    r = Requirement(line)\n"
            "    try:\n        v = version(r.name)\n"
            "    except PackageNotFoundError:\n        bad.append(f'{r.name} missing'); continue\n"
            "    if not r.specifier.contains(v, prereleases=True):\n"
            "        bad.append(f'{r.name} {v} not {r.specifier}')\n"
            "sys.exit('; '.join(bad) if bad else 0)\n"
        )
        self.run([self.python, "-c", code])
        where = self.run(
            [self.python, "-c", "import model_zoo; print(model_zoo.__file__)"]
        ).stdout.strip()
        assert where.startswith(str(src)), f"model_zoo imported from {where}, not the fresh install"

    def replay(self, step: str) -> subprocess.CompletedProcess[str] | None:
        if m := re.fullmatch(r"python3? -m venv (\S+)", step):
            self.make_venv(m.group(1))
        elif m := re.fullmatch(r"(?:\.|source) (\S+)/bin/activate", step):
            self.activate()
        elif m := re.fullmatch(r"pip install (?:-q )?(\S+==\S+)", step):
            self.check_pinned(m.group(1))
        elif m := re.fullmatch(r"""pip install (?:-q )?-e ["']?\.(?:\[([\w,-]+)\])?["']?""", step):
            self.install_project(m.group(1) or "")
        elif step.startswith("model-zoo"):
            return self.run(shlex.split(step))
        else:
            pytest.fail(
                f"README step {step!r} is not one tests/test_newcomer.py knows how to replay; "
                "teach it"
            )
        return None


@pytest.fixture
def newcomer(tmp_path: Path) -> Iterator[Newcomer]:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "VIRTUAL_ENV", "MODEL_ZOO"))
    }
    env.update(
        {
            "HOME": str(home),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )
    env["PATH"] = os.pathsep.join(
        p
        for p in env.get("PATH", "").split(os.pathsep)
        if not p.startswith(str(Path(sys.executable).parent))
    )
    # No real hub, ever: until a step points them at the local mirror, endpoints go nowhere.
    for info in HUBS.values():
        env[info.endpoint_env] = "http://127.0.0.1:9"
    person = Newcomer(tmp_path, env=env)
    yield person
    print("\n".join(person.log))


def start_mirror(person: Newcomer, root: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        ["model-zoo", "serve-mirror", str(root), "--port", "0"],
        cwd=person.work,
        env=person.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if m := re.search(r"at (http://127\.0\.0\.1:\d+)", line):
            return proc, m.group(1)
        if not line and proc.poll() is not None:
            break
    proc.kill()
    pytest.fail("serve-mirror did not start")


def test_readme_first_command_then_the_quickstart(newcomer: Newcomer) -> None:
    steps = readme_first_command()
    assert steps[-1] == "model-zoo demo", (
        f"the README's first command should end with `model-zoo demo`: {steps}"
    )
    demo = None
    for step in steps:
        demo = newcomer.replay(step) or demo
    assert demo is not None
    out = demo.stdout
    for said in (
        "Pulled",
        "Verified",
        "Loaded",
        "Chatted",
        "Scored",
        "no code from the hub was run",
    ):
        assert said in out, f"`model-zoo demo` did not report {said!r}:\n{out}"
    assert not list((Path(newcomer.env["HOME"]) / ".cache").glob("model-zoo/models/*")), (
        "demo wrote to the store"
    )

    # documented commands (quickstart: "Find and pull a model")
    assert newcomer.run(["model-zoo", "--version"]).stdout.startswith("model-zoo ")
    listed = newcomer.run(["model-zoo", "list", "--kind", "chat", "--fits", "24GB"]).stdout
    assert "InternLM2.5-7B-Chat" in listed and "InternLM2.5-20B-Chat" not in listed
    info = newcomer.run(["model-zoo", "info", "internlm2_5-7b-chat"]).stdout
    assert "https://huggingface.co/internlm/internlm2_5-7b-chat" in info
    unknown = newcomer.run(["model-zoo", "info", "internlm2_5-7b-chatt"], check=False)
    assert unknown.returncode == 2 and "InternLM2.5-7B-Chat" in unknown.stderr

    # the quickstart's offline session: a local mirror of tiny checkpoints under the real ids
    newcomer.run(
        [
            "model-zoo",
            "dev",
            "make-hub-tree",
            "hub",
            "-m",
            "internlm2_5-7b-chat",
            "-m",
            "internlm2-1_8b-reward",
        ]
    )
    mirror, url = start_mirror(newcomer, newcomer.work / "hub")
    try:
        for info_ in HUBS.values():
            newcomer.env[info_.endpoint_env] = url
        pulled = (
            newcomer.run(["model-zoo", "pull", "internlm2_5-7b-chat"])
            .stdout.strip()
            .splitlines()[-1]
        )
        assert (Path(pulled) / "config.json").is_file()
        assert Path(pulled).is_relative_to(Path(newcomer.env["HOME"]) / ".cache" / "model-zoo")
        again = newcomer.run(["model-zoo", "pull", "internlm2_5-7b-chat", "-q"]).stdout
        assert again.strip() == pulled  # DIR=$(model-zoo pull NAME -q) gives just the directory
        verified = newcomer.run(["model-zoo", "verify", "internlm2_5-7b-chat"])
        assert "OK" in verified.stdout + verified.stderr

        chat = quickstart_python("## Load and chat in Python")
        result = newcomer.run([newcomer.python, "-c", chat], timeout=900)
        assert result.stdout.strip(), "the chat example printed nothing"

        score = quickstart_python("## Score with a reward model") + (
            "\nassert isinstance(rm.score(good), float)"
            "\nassert len(rm.score_batch([good, bad])) == 2"
            "\nassert sorted(rm.rank([good, bad])) == [0, 1]"
            "\nprint('scored')\n"
        )
        assert (
            newcomer.run([newcomer.python, "-c", score], timeout=900)
            .stdout.strip()
            .endswith("scored")
        )
    finally:
        mirror.terminate()
        mirror.wait(timeout=30)
