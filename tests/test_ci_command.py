"""CI runs exactly the README's test command, and that command runs the static checks first.

Issue 17: "the README's test command stays the one CI runs", so a newcomer who copies it sees
what CI sees, ruff and mypy included.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATIC_CHECKS = ("ruff check", "ruff format --check", "mypy model_zoo")


def readme_test_command() -> str:
    """The one line of the bash block under README's "## Test it"."""
    section = (ROOT / "README.md").read_text().split("\n## Test it\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    assert block, "README.md: no bash block under '## Test it'"
    lines = [ln.strip() for ln in block.group(1).splitlines() if ln.strip()]
    assert len(lines) == 1, f"README's test command should be one line: {lines}"
    return lines[0]


def ci_command() -> str:
    """What .ci/run runs after its preamble (shebang, comments, ``set``, ``cd``)."""
    lines = [
        ln.strip()
        for ln in (ROOT / ".ci" / "run").read_text().splitlines()
        if ln.strip() and not ln.startswith(("#", "set ", "cd "))
    ]
    assert len(lines) == 1, f".ci/run should run one command line: {lines}"
    return lines[0]


def test_ci_runs_the_readmes_test_command() -> None:
    assert ci_command() == readme_test_command()


def test_static_checks_run_before_the_tests() -> None:
    steps = [s.strip() for s in readme_test_command().split("&&")]
    tests_at = next(i for i, s in enumerate(steps) if s.split()[0] == "pytest")
    for check in STATIC_CHECKS:
        assert check in steps, f"the test command does not run `{check}`: {steps}"
        assert steps.index(check) < tests_at, f"`{check}` should run before pytest: {steps}"


def test_the_checkers_are_pinned_in_the_test_extra() -> None:
    """Pinned, so a new ruff or mypy release cannot fail CI on code nobody touched."""
    text = (ROOT / "pyproject.toml").read_text()
    test_extra = text.split("\ntest = [", 1)[1].split("\n]", 1)[0]
    for tool in ("ruff", "mypy"):
        assert re.search(rf'"{tool}==\d+(\.\d+)+"', test_extra), (
            f"{tool} is not pinned: {test_extra}"
        )


def _pytest(*args: str) -> subprocess.CompletedProcess[str]:
    """This suite's pytest, with pyproject's addopts (two xdist workers), on one small file."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_mistakes_on_the_pytest_command_line_are_usage_errors_that_name_them() -> None:
    """Under xdist a mistyped file was "no tests ran" and an unknown ``-m`` marker an xdist
    INTERNALERROR (exit 3): both say what is wrong, with pytest's usage-error status."""
    missing = _pytest("tests/test_no_such_file.py")
    assert missing.returncode == 4, missing.stdout + missing.stderr
    assert "tests/test_no_such_file.py" in missing.stderr
    marker = _pytest("-m", "slow or nosuchmarker", "tests/test_ci_command.py")
    assert marker.returncode == 4, marker.stdout + marker.stderr
    assert "nosuchmarker" in marker.stderr and "INTERNALERROR" not in marker.stdout
    known = _pytest("-m", "not slow", "tests/test_ci_command.py", "-k", "readme")
    assert known.returncode == 0, known.stdout + known.stderr
