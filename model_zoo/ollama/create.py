"""``model-zoo ollama NAME[:LEVEL]``: a Modelfile next to the GGUF file, then ``ollama create``.

The GGUF file is a registry name's (pulled, verified, when missing) or a path. The Modelfile
says what model-zoo's runner does with the same model: the ChatML template, InternLM's default
system prompt, the stop strings and the generation defaults the runner uses (the family's,
overridden by the registry's), and the licence. ``ollama create`` runs when ``ollama`` is on
PATH; otherwise the exact command is printed. No torch: the header is read in the standard
library when the file is not a registry model.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import OllamaCreateError, UsageError
from .modelfile import OllamaProfile, header_profile, modelfile_text, profile_for


@dataclass(frozen=True)
class ModelfilePlan:
    """The Modelfile written for one GGUF file and the ``ollama create`` command for it."""

    gguf: Path
    modelfile: Path
    ollama_name: str
    profile: OllamaProfile

    @property
    def command(self) -> list[str]:
        return ["ollama", "create", self.ollama_name, "-f", str(self.modelfile)]


def effective_defaults(info: Any) -> Any:
    """The generation settings model-zoo's runner uses for ``info``: the family's, then the
    registry's recommended values (what ``runner.api.make_profile`` does)."""
    from ..runner.chat import FAMILY_DEFAULTS
    from ..runner.config import ARCHITECTURES

    family = ARCHITECTURES.get(info.architecture, ("internlm2", "lm"))[0]
    gen = FAMILY_DEFAULTS[family]
    d = info.generation_defaults
    if d is not None:
        gen = gen.updated(
            temperature=d.temperature,
            top_p=d.top_p,
            top_k=d.top_k,
            repetition_penalty=d.repetition_penalty,
            max_new_tokens=d.max_new_tokens,
        )
    return gen


def license_text(info: Any) -> str:
    lines = [info.license]
    if info.license_note:
        lines.append(info.license_note)
    lines += [f"{key}: {url}" for key, url in info.web_urls().items()]
    return "\n".join(lines)


def ollama_model_name(base: str, level: str | None) -> str:
    """A name Ollama accepts (``[a-z0-9_][a-z0-9_.-]*`` and a tag), from the model and level."""
    model = re.sub(r"[^a-z0-9_.-]+", "-", base.lower()).strip("-.") or "internlm"
    return f"{model}:{level.lower()}" if level else model


def prepare(
    name_or_path: str, *, gguf: str | None = None, ollama_name: str | None = None
) -> ModelfilePlan:
    """Resolve the GGUF file (pulling it when missing) and write its Modelfile beside it."""
    from ..ggufnames import level_of
    from ..runner.chat import DEFAULT_SYSTEM_PROMPT

    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf" or path.is_file():
        if not path.is_file():
            raise UsageError(f"{path}: no such GGUF file.")
        from .gguf_header import GGUFHeaderError, read_header

        try:
            header = read_header(path)
        except (GGUFHeaderError, OSError) as exc:
            raise UsageError(f"{path} is not a readable GGUF file ({exc}).") from None
        profile = header_profile(header)
        if profile is None:
            raise UsageError(
                f"{path} carries no ChatML chat template; model-zoo writes Modelfiles for "
                "InternLM's ChatML models. Name the registry model instead "
                "(model-zoo ollama NAME:LEVEL)."
            )
        level = level_of(path.name)
        base = path.name[: -len(".gguf")]
        if level:
            base = base[: -len(level) - 1] if base.lower().endswith("-" + level) else base
        gguf_file = path
    else:
        from ..runner.gguf.resolve import resolve_registry_gguf

        request = resolve_registry_gguf(name_or_path, gguf)
        info = request.info
        profile = profile_for(
            info.chat_format,
            defaults=effective_defaults(info),
            system=DEFAULT_SYSTEM_PROMPT,
            license=license_text(info),
        )
        level = info.gguf_level
        base = info.variant_of or info.name
        gguf_file = request.path
    modelfile = gguf_file.with_name(gguf_file.name[: -len(".gguf")] + ".Modelfile")
    text = modelfile_text("./" + gguf_file.name, profile)
    from ..store.atomic import write_atomic

    write_atomic(modelfile, text)
    return ModelfilePlan(
        gguf_file, modelfile, ollama_name or ollama_model_name(base, level), profile
    )


def ollama_binary() -> str | None:
    return shutil.which("ollama")


def create(plan: ModelfilePlan, binary: str) -> str:
    """Run ``ollama create``; its output, or OllamaCreateError with it."""
    command = [binary, *plan.command[1:]]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    output = (done.stdout or "") + (done.stderr or "")
    if done.returncode != 0:
        raise OllamaCreateError(plan.command, done.returncode, output, str(plan.modelfile))
    return output
