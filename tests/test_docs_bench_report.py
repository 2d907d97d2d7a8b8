"""bench/report.py on small synthetic bench outputs: charts, tables, machine, failures; no real
bench runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fixtures_docs import ROOT

REPORT = ROOT / "bench" / "report.py"
PNG = b"\x89PNG\r\n\x1a\n"

# Shaped like the real scripts' output (only the parts report.py reads, plus a few extras).
SAMPLES = {
    "pull": {
        "checkpoint": {"bytes": 200_000_000, "files": 6},
        "pull": {
            "model-zoo": {"seconds": 0.5, "mb_per_s": 400.0},
            "huggingface_hub.snapshot_download": {"seconds": 1.0, "mb_per_s": 200.0},
            "hf download (CLI)": {"seconds": 1.25, "mb_per_s": 160.0},
        },
        "verify": {
            "model-zoo verify": {"seconds": 0.2, "mb_per_s": 1000.0, "ok": True},
            "sha256sum": {"seconds": 0.4, "mb_per_s": 500.0},
        },
        "multi_source": {
            "rate_per_source_mb_per_s": 50.0,
            "pull, 1 source (hf)": {"seconds": 4.0, "mb_per_s": 50.0},
            "pull, 2 sources (hf,modelscope)": {"seconds": 2.1, "mb_per_s": 95.2},
        },
    },
    "reward": {
        "conversations_per_s": {
            "one_at_a_time": 100.0,
            "score_batch": 520.0,
            "server_16_clients": 480.0,
        },
        "targets_met": {"batched": True},
    },
    "cli_startup": {
        "results": {"python -c pass": {"median_s": 0.02}, "list": {"median_s": 0.21}},
        "target_s": 0.3,
    },
}


def run_report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPORT), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )


def saved_dir(tmp_path: Path) -> Path:
    d = tmp_path / "saved"
    d.mkdir()
    for name, data in SAMPLES.items():
        (d / f"{name}.json").write_text(
            json.dumps(data)
        )  # raw bench output, as a user would save it
    (d / "load.json").write_text(
        json.dumps({"command": "python bench/load.py", "error": "exit status 1: boom"})
    )
    (d / "machine.json").write_text(
        json.dumps(
            {
                "date": "2026-01-02 03:04 UTC",
                "cpu": "Test CPU 9000",
                "cores": 2,
                "memory_gib": 23.5,
                "sizes": "quick (--quick)",
            }
        )
    )
    return d


def test_report_from_saved_json(tmp_path: Path) -> None:
    out, img = tmp_path / "docs" / "benchmarks.md", tmp_path / "docs" / "img"
    proc = run_report(
        "--from-json", str(saved_dir(tmp_path)), "--output", str(out), "--img-dir", str(img)
    )
    assert proc.returncode == 1, proc.stderr  # the failed load bench makes the run non-zero
    text = out.read_text()
    assert "Test CPU 9000" in text and "2026-01-02 03:04 UTC" in text and "23.5" in text
    charts = sorted(img.glob("*.png"))
    assert [p.name for p in charts] == [
        "bench-cli_startup-1.png",
        "bench-pull-1.png",
        "bench-pull-2.png",
        "bench-pull-3.png",
        "bench-reward-1.png",
    ]
    for chart in charts:
        assert chart.read_bytes()[:8] == PNG
        assert f"](img/{chart.name})" in text
    assert "| `pull.model-zoo.mb_per_s` | 400.0 |" in text
    assert "| `conversations_per_s.score_batch` | 520.0 |" in text
    assert "This bench did not produce results" in text and "boom" in text


def test_report_runs_bench_scripts_and_passes_quick_sizes(tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "reward.py").write_text(
        '"""Fake reward bench."""\nimport json, sys\n'
        'print("warming up")\n'
        'print(json.dumps({"argv": sys.argv[1:],\n'
        '                  "conversations_per_s": {"one_at_a_time": 1.0, "score_batch": 5.0}}))\n'
    )
    (bench / "verify.py").write_text('import sys\nsys.exit("verify exploded")\n')
    out, img, saved = tmp_path / "b.md", tmp_path / "img", tmp_path / "saved"
    proc = run_report(
        "--quick",
        "--only",
        "reward,verify",
        "--bench-dir",
        str(bench),
        "--output",
        str(out),
        "--img-dir",
        str(img),
        "--save-json",
        str(saved),
    )
    assert proc.returncode == 1
    text = out.read_text()
    assert '"--n", "64"' in text or "--n 64" in text  # the quick sizes reached the script
    assert (img / "bench-reward-1.png").read_bytes()[:8] == PNG
    assert "verify exploded" in text
    machine = json.loads((saved / "machine.json").read_text())
    assert machine["cores"] >= 1 and machine["cpu"] and machine["sizes"].startswith("quick")
    assert json.loads((saved / "reward.json").read_text())["data"]["argv"][:2] == ["--n", "64"]
    # and the page can be rebuilt from what was saved, without running anything
    again = tmp_path / "again.md"
    proc = run_report(
        "--from-json", str(saved), "--only", "reward", "--output", str(again), "--img-dir", str(img)
    )
    assert proc.returncode == 0, proc.stderr
    assert "| `conversations_per_s.score_batch` | 5.0 |" in again.read_text()


def test_no_results_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = run_report("--from-json", str(empty), "--output", str(tmp_path / "x.md"))
    assert proc.returncode == 1 and "no bench results" in proc.stderr
    assert not (tmp_path / "x.md").exists()


def test_sections_written_by_hand_survive_a_report_run(tmp_path: Path) -> None:
    out, img = tmp_path / "docs" / "benchmarks.md", tmp_path / "docs" / "img"
    out.parent.mkdir(parents=True)
    out.write_text(
        "# Benchmarks\n\n## pull\n\nold numbers\n\n"
        "## pull over a far link\n\nWritten by hand: kept.\n"
        "| model-zoo | 3.1 |\n\n## verify\n\nold verify\n"
    )
    run_report("--from-json", str(saved_dir(tmp_path)), "--output", str(out), "--img-dir", str(img))
    text = out.read_text()
    assert "## pull over a far link\n\nWritten by hand: kept.\n| model-zoo | 3.1 |" in text
    assert (
        "old numbers" not in text and "old verify" not in text
    )  # generated sections are rewritten
    assert text.count("## pull over a far link") == 1
