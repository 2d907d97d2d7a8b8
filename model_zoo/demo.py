"""The whole model-zoo flow, offline, in a few seconds: what `model-zoo demo` runs.

It builds tiny random InternLM checkpoints under their real repository ids, serves them from
the built-in local hub on 127.0.0.1 (speaking the HuggingFace, ModelScope, Modelers and
OpenXLab protocols), then runs the same code a real pull runs: pick a source, download with
verification, verify again, load natively (no hub code), chat, and score with a reward model.
Nothing touches the user's store or the network: everything lives in one work directory.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHAT_MODEL = "InternLM2.5-1.8B-Chat"
REWARD_MODEL = "InternLM2-1.8B-Reward"


@dataclass
class DemoStep:
    title: str
    detail: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class DemoReport:
    workdir: Path
    steps: list[DemoStep] = field(default_factory=list)
    chat_path: Path | None = None
    reward_path: Path | None = None
    reply: str = ""
    scores: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "workdir": str(self.workdir),
            "chat_path": str(self.chat_path) if self.chat_path else None,
            "reward_path": str(self.reward_path) if self.reward_path else None,
            "reply": self.reply,
            "scores": self.scores,
            "steps": [
                {"title": s.title, "detail": s.detail, "seconds": round(s.seconds, 3)}
                for s in self.steps
            ],
        }


def _hub_settings(url: str, home: Path) -> Any:
    """Settings whose every hub endpoint is the local hub and whose store is ``home``."""
    from .hubs.catalog import HUBS
    from .settings import load_settings

    env = {
        k: v for k, v in os.environ.items() if not k.endswith("_PROXY") and not k.endswith("_proxy")
    }
    env.update({info.endpoint_env: url for info in HUBS.values()})
    env["MODEL_ZOO_HOME"] = str(home)
    env["MODEL_ZOO_SOURCES"] = "hf,modelscope,modelers,openxlab"
    env["MODEL_ZOO_CONFIG"] = str(home / "no-config.toml")
    for var in ("MODEL_ZOO_OFFLINE", "HF_HUB_OFFLINE", "MODEL_ZOO_REGISTRY"):
        env.pop(var, None)
    return load_settings(env)


@contextmanager
def _workdir(path: str | Path | None) -> Iterator[Path]:
    if path is not None:
        p = Path(path).expanduser()
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from .errors import UsageError

            raise UsageError(
                f"cannot use {p} as the demo's work directory: {exc.strerror or exc}; pass a "
                "directory you can create and write with --workdir, or leave it out",
                workdir=str(p),
            ) from None
        yield p
        return
    with tempfile.TemporaryDirectory(prefix="model-zoo-demo-") as tmp:
        yield Path(tmp)


def run_demo(
    *,
    workdir: str | Path | None = None,
    on_step: Callable[[DemoStep], None] | None = None,
    max_new_tokens: int = 16,
) -> DemoReport:
    """Run the offline flow end to end and return what each step did.

    ``workdir``: keep everything there (hub tree, store); default: a temporary directory that
    is removed afterwards. ``on_step`` is called as each step completes.
    """
    from .download.pull import pull_model
    from .registry.api import get
    from .store.verify import verify
    from .testing.local_hub import LocalHub
    from .testing.tiny_hub import make_hub_tree, registry_repos

    with _workdir(workdir) as root:
        report = DemoReport(workdir=root)

        def step(title: str, started: float, *detail: str) -> None:
            s = DemoStep(title, [d for d in detail if d], time.perf_counter() - started)
            report.steps.append(s)
            if on_step is not None:
                on_step(s)

        t = time.perf_counter()
        chat_info, reward_info = get(CHAT_MODEL), get(REWARD_MODEL)
        repos = registry_repos(chat_info.name, reward_info.name)
        make_hub_tree(root / "hub", repos)
        step(
            "Built tiny random checkpoints under the real repository ids",
            t,
            f"{len(repos)} repositories, e.g. {', '.join(sorted(repos)[:3])}",
            "same InternLM2 architecture and file layout as the real models, a few hundred KB each",
        )

        t = time.perf_counter()
        with LocalHub(root / "hub") as hub:
            settings = _hub_settings(hub.url, root / "store")
            step(
                "Started the local hub",
                t,
                f"{hub.url} speaks the HuggingFace, ModelScope, Modelers and OpenXLab protocols",
                f"e.g. HF_ENDPOINT={hub.url} works for any HuggingFace client",
            )

            t = time.perf_counter()
            result = pull_model(chat_info.name, settings=settings)
            report.chat_path = result.path
            counts = ", ".join(f"{n} {how}" for how, n in sorted(result.verified_counts().items()))
            step(
                f"Pulled {chat_info.name}",
                t,
                result.plan_text.strip().splitlines()[0] if result.plan_text.strip() else "",
                f"{len(result.files)} files, {result.total_size / 1e6:.2f} MB from {result.source} "
                f"({result.repo_id} @ {(result.commit or result.revision or '?')[:12]})",
                f"every byte hashed while streaming; verification: {counts}",
                f"stored at {result.path}",
            )

            t = time.perf_counter()
            again = pull_model(chat_info.name, settings=settings)
            step(
                "Pulled it again",
                t,
                f"{again.downloaded_bytes} bytes downloaded: "
                "the verified copy in the store was reused",
            )

            t = time.perf_counter()
            reward = pull_model(reward_info.name, settings=settings, source="modelscope")
            report.reward_path = reward.path
            step(
                f"Pulled {reward_info.name} from ModelScope's protocol",
                t,
                f"{len(reward.files)} files from {reward.repo_id}",
                f"the local hub served {hub.stats.bytes_served()} bytes in all",
            )

        t = time.perf_counter()
        vr = verify(result.path)
        vr.raise_for_problems()
        step(
            "Verified the checkpoint again",
            t,
            f"{len(vr.files)} files re-hashed and safetensors structure checked: ok",
        )

        t = time.perf_counter()
        from .reward.api import load_reward
        from .runner.api import load

        runner = load(result.path, device="cpu")
        step(
            "Loaded it natively onto the CPU",
            t,
            f"{runner.spec.architecture} mapped onto transformers' Llama; "
            "no code from the hub was run",
        )

        t = time.perf_counter()
        question = "Please tell me five scenic spots in Shanghai"
        report.reply = runner.chat(
            [{"role": "user", "content": question}], max_new_tokens=max_new_tokens, temperature=0
        )
        step(
            "Chatted with it (ChatML template, InternLM default system prompt, greedy)",
            t,
            f"user: {question}",
            f"assistant: {report.reply!r}",
            "(random tiny weights, so the reply is noise: this shows the path, not the model)",
        )

        t = time.perf_counter()
        rm = load_reward(reward.path, device="cpu")
        # Short texts: the tiny reward model's context is 64 tokens.
        convs = [
            [
                {"role": "user", "content": "A spot in Shanghai?"},
                {"role": "assistant", "content": answer},
            ]
            for answer in ("The Bund.", "No idea.")
        ]
        report.scores = rm.score_batch(convs)
        ranks = rm.rank(convs)
        step(
            "Scored two answers with the reward model",
            t,
            f"scores {[round(s, 4) for s in report.scores]}, ranks {ranks} (0 = best)",
            "the reward token is appended and the score read at the last token, as upstream does",
        )
        return report
