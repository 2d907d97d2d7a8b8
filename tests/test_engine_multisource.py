"""Several sources at once: ranges of one file and whole files spread over every candidate,
a slow source never holds the end, and a lying source is found out and dropped."""

from __future__ import annotations

import time
from pathlib import Path

from fixtures_engine import BIG, ENGINE_FILES, assert_tree_matches, fast_options, jobs_for

from model_zoo.download.engine import fetch
from model_zoo.testing.faults import Fault
from model_zoo.testing.local_hub import LocalHub

TWO = ("hf", "modelscope")


def test_ranges_of_one_file_come_from_both_sources(engine_hub: LocalHub, tmp_path: Path) -> None:
    engine_hub.bandwidth.set(per_protocol={"hf": 2_000_000, "modelscope": 2_000_000})
    out = tmp_path / "out"
    report = fetch(
        jobs_for(engine_hub, paths=[BIG], protocols=TWO),
        out,
        options=fast_options(multi_source=True, connections=4),
    )
    f = report.files[0]
    assert f.sha256 == f.expected_sha256
    assert set(f.bytes_by_source) == set(TWO) and all(n > 0 for n in f.bytes_by_source.values())
    assert sum(f.bytes_by_source.values()) == ENGINE_FILES[BIG]
    assert engine_hub.stats.bytes_served(protocol="hf") > 0
    assert engine_hub.stats.bytes_served(protocol="modelscope") > 0
    assert set(f.sources) == set(TWO)


def test_whole_files_are_spread_across_sources(engine_hub: LocalHub, tmp_path: Path) -> None:
    out = tmp_path / "out"
    engine_hub.bandwidth.set(per_protocol={"hf": 3_000_000, "modelscope": 3_000_000})
    report = fetch(
        jobs_for(engine_hub, protocols=TWO),
        out,
        options=fast_options(multi_source=True, range_split_threshold=1 << 40, connections=2),
    )
    assert_tree_matches(engine_hub, out)
    used = {src for f in report.files for src in f.sources}
    assert used == set(TWO)
    assert all(len(f.sources) <= 1 for f in report.files)  # no file was split


def test_without_multi_source_only_the_first_candidate_serves(
    engine_hub: LocalHub, tmp_path: Path
) -> None:
    fetch(jobs_for(engine_hub, protocols=TWO), tmp_path / "out", options=fast_options())
    assert engine_hub.stats.bytes_served(protocol="modelscope") == 0


def test_a_slow_source_does_not_hold_the_end(engine_hub: LocalHub, tmp_path: Path) -> None:
    engine_hub.bandwidth.set(per_protocol={"hf": 100_000})  # alone it would need about 30 s
    t0 = time.monotonic()
    report = fetch(
        jobs_for(engine_hub, paths=[BIG], protocols=TWO),
        tmp_path / "out",
        options=fast_options(multi_source=True, connections=4),
    )
    elapsed = time.monotonic() - t0
    f = report.files[0]
    assert f.sha256 == f.expected_sha256
    assert elapsed < 8, elapsed
    assert f.bytes_by_source["modelscope"] > f.bytes_by_source.get("hf", 0)


def test_lying_source_in_a_mixed_file_is_found_and_dropped(
    engine_hub: LocalHub, tmp_path: Path
) -> None:
    engine_hub.faults.add(Fault.flip_byte(offset=10, times=None, path=BIG, protocol="hf"))
    report = fetch(
        jobs_for(engine_hub, paths=[BIG], protocols=TWO),
        tmp_path / "out",
        options=fast_options(multi_source=True, connections=4),
    )
    f = report.files[0]
    assert f.sha256 == f.expected_sha256
    assert f.sources == ("modelscope",)
    assert f.bytes_discarded >= ENGINE_FILES[BIG]
    assert [fb.from_source for fb in f.fallbacks] == ["hf"] and "sha256 mismatch" in f.fallbacks[
        0
    ].reason
