"""Source planning is a pure function: tables of (entry, settings, probes) -> ordered plan."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from model_zoo.download.plan import (
    PlannedSource,
    ProbeResult,
    describe_plan,
    parse_source_list,
    plan_sources,
    probe_sources,
)
from model_zoo.errors import HubUnreachableError, NoSourceError, UsageError
from model_zoo.hubs.catalog import HUBS
from model_zoo.settings import Settings


@dataclass(frozen=True)
class Entry:
    name: str
    sources: dict[str, str] = field(default_factory=dict)


ALL = Entry(
    "InternLM2.5-7B-Chat",
    {
        "hf": "internlm/internlm2_5-7b-chat",
        "modelscope": "Shanghai_AI_Laboratory/internlm2_5-7b-chat",
        "openxlab": "OpenLMLab/internlm2_5-7b-chat",
        "openxlab-origin": "OpenLMLab/internlm2_5-7b-chat-original",
    },
)


def settings(order: tuple[str, ...] = ("hf", "modelscope", "modelers", "openxlab")) -> Settings:
    return Settings(
        home=Path("/nonexistent"),
        sources=order,
        endpoints={k: f"http://127.0.0.1:9/{k}" for k in HUBS},
        tokens={},
    )


def keys(plan: list[PlannedSource]) -> list[str]:
    return [p.source for p in plan]


def ok(key: str, ms: float) -> ProbeResult:
    return ProbeResult(key, True, ms / 1000)


def bad(key: str) -> ProbeResult:
    return ProbeResult(key, False, None, "connection refused")


@pytest.mark.parametrize(
    ("order", "probes", "expected"),
    [
        # no probes: the configured order, restricted to the entry's sources, origin never
        (("hf", "modelscope", "modelers", "openxlab"), None, ["hf", "modelscope", "openxlab"]),
        (("modelscope", "hf"), None, ["modelscope", "hf"]),
        # fastest reachable first, unreachable dropped
        (
            ("hf", "modelscope", "openxlab"),
            {"hf": ok("hf", 300), "modelscope": ok("modelscope", 40), "openxlab": bad("openxlab")},
            ["modelscope", "hf"],
        ),
        (
            ("hf", "modelscope", "openxlab"),
            {"hf": bad("hf"), "modelscope": ok("modelscope", 140), "openxlab": ok("openxlab", 10)},
            ["openxlab", "modelscope"],
        ),
        # about as fast (within 50 ms, or half the fastest): the configured order decides
        (
            ("modelscope", "hf"),
            {"hf": ok("hf", 50), "modelscope": ok("modelscope", 50)},
            ["modelscope", "hf"],
        ),
        (
            ("hf", "modelscope"),
            {"hf": ok("hf", 45), "modelscope": ok("modelscope", 2)},
            ["hf", "modelscope"],
        ),
        (
            ("hf", "modelscope"),
            {"hf": ok("hf", 1400), "modelscope": ok("modelscope", 1000)},
            ["hf", "modelscope"],
        ),
        (
            ("hf", "modelscope"),
            {"hf": ok("hf", 1600), "modelscope": ok("modelscope", 1000)},
            ["modelscope", "hf"],
        ),
        # a candidate nobody probed keeps a place after the reachable ones
        (("hf", "modelscope"), {"modelscope": ok("modelscope", 80)}, ["modelscope", "hf"]),
        # openxlab-origin listed in settings is still not an auto candidate
        (("openxlab-origin", "hf"), None, ["hf"]),
    ],
)
def test_auto_ordering(order, probes, expected) -> None:
    assert keys(plan_sources(ALL, settings(order), probes)) == expected


def test_auto_plan_carries_endpoint_repo_and_reason() -> None:
    plan = plan_sources(
        ALL,
        settings(),
        {"hf": ok("hf", 120), "modelscope": ok("modelscope", 30), "openxlab": bad("openxlab")},
    )
    first = plan[0]
    assert first.source == "modelscope"
    assert first.repo_id == "Shanghai_AI_Laboratory/internlm2_5-7b-chat"
    assert first.endpoint == "http://127.0.0.1:9/modelscope"
    assert "30 ms" in first.reason and "fastest" in first.reason
    assert plan[1].reason == "reachable in 120 ms, slower"
    assert first.latency == pytest.approx(0.03)
    text = describe_plan(plan, {"openxlab": bad("openxlab")})
    assert "modelscope" in text and "skipped openxlab (connection refused)" in text


def test_all_probes_failed_is_no_source_error_with_reasons() -> None:
    probes = {k: bad(k) for k in ("hf", "modelscope", "openxlab")}
    with pytest.raises(NoSourceError) as info:
        plan_sources(ALL, settings(), probes)
    assert info.value.tried == ["hf", "modelscope", "openxlab"]
    assert any("connection refused" in r for r in info.value.reasons)


def test_no_candidate_in_settings() -> None:
    entry = Entry("InternLM3-8B-Instruct", {"modelers": "Intern/internlm3-8b-instruct"})
    with pytest.raises(NoSourceError, match="MODEL_ZOO_SOURCES"):
        plan_sources(entry, settings(("hf", "modelscope")))


def test_explicit_source_and_sources() -> None:
    assert keys(plan_sources(ALL, settings(), None, source="openxlab-origin")) == [
        "openxlab-origin"
    ]
    assert keys(plan_sources(ALL, settings(), None, source="HF")) == ["hf"]
    # --sources wins over --source and keeps the order given
    plan = plan_sources(ALL, settings(), None, source="hf", sources=["modelscope", "hf"])
    assert keys(plan) == ["modelscope", "hf"]
    assert all(p.reason == "named with --sources" for p in plan)
    # explicit sources ignore probes: the user asked for them
    assert keys(plan_sources(ALL, settings(), {"hf": bad("hf")}, source="hf")) == ["hf"]


def test_explicit_source_the_model_lacks_is_usage_error() -> None:
    with pytest.raises(UsageError, match="not published on modelers"):
        plan_sources(ALL, settings(), None, source="modelers")
    with pytest.raises(UsageError, match="unknown source"):
        plan_sources(ALL, settings(), None, source="github")


def test_parse_source_list() -> None:
    assert parse_source_list("hf, modelscope,hf") == ("hf", "modelscope")
    assert parse_source_list(None) is None
    with pytest.raises(UsageError):
        parse_source_list("hf,nope")
    with pytest.raises(UsageError):
        parse_source_list(" , ")


class FakeAdapter:
    def __init__(self, delay: float, fail: bool = False) -> None:
        self.delay, self.fail = delay, fail

    def probe(self, timeout: float = 2.0) -> float:
        time.sleep(min(self.delay, timeout + 1))
        if self.fail:
            raise HubUnreachableError("x", "http://127.0.0.1:9", reason="refused")
        return self.delay


def test_probe_sources_parallel_within_budget() -> None:
    adapters = {
        "hf": FakeAdapter(0.3),
        "modelscope": FakeAdapter(0.1),
        "openxlab": FakeAdapter(0.05, fail=True),
        "modelers": FakeAdapter(5.0),
    }
    start = time.monotonic()
    probes = probe_sources(adapters, adapters.__getitem__, budget=0.5)
    elapsed = time.monotonic() - start
    assert elapsed < 1.0  # parallel, and the slow hub does not hold us past the budget
    assert probes["hf"].ok and probes["hf"].latency == pytest.approx(0.3)
    assert probes["modelscope"].ok
    assert not probes["openxlab"].ok and "cannot reach" in (probes["openxlab"].error or "")
    assert not probes["modelers"].ok and "no answer" in (probes["modelers"].error or "")
    entry = Entry("m", {k: f"ns/{k}" for k in adapters})
    assert keys(plan_sources(entry, settings(), probes)) == ["modelscope", "hf"]


def test_the_plan_line_never_shows_a_mirror_password() -> None:
    from model_zoo.download.plan import PlannedSource

    plan = [
        PlannedSource(
            "hf", "https://alice:s3cret@mirror.example/hf", "internlm/x", "named with --source"
        )
    ]
    text = describe_plan(plan)
    assert "s3cret" not in text and "alice" not in text and "***@mirror.example/hf" in text


def test_cli_prints_every_hubs_reason_and_advice_whole_one_line_each(
    tmp_path, free_tcp_port
) -> None:
    """Every hub down: stderr names each hub on a line of its own with its advice in full."""
    import os
    import subprocess
    import sys

    closed = f"http://127.0.0.1:{free_tcp_port}"  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_PROXY", "_proxy"))}
    env.update(
        {
            "HF_ENDPOINT": closed,
            "MODELSCOPE_ENDPOINT": closed,
            "OPENMIND_HUB_ENDPOINT": closed,
            "OPENXLAB_ENDPOINT": closed,
            "MODEL_ZOO_HOME": str(tmp_path / "mz"),
            "MODEL_ZOO_CONFIG": str(tmp_path / "none.toml"),
            "MODEL_ZOO_SOURCES": "hf,modelscope",
            "NO_PROXY": "127.0.0.1",
        }
    )
    proc = subprocess.run(
        [sys.executable, "-m", "model_zoo.cli.main", "pull", "internlm2_5-7b-chat"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    lines = proc.stderr.splitlines()
    assert "…" not in proc.stderr
    for hub in ("hf", "modelscope"):
        (line,) = [ln for ln in lines if ln.strip().startswith(f"{hub}:")]
        assert line.rstrip().endswith(".") and "Check your network or proxy" in line, line
