"""An InternLM model's chat format, stops, defaults and licence, as Ollama wants them.

Ollama renders prompts with Go templates over ``.Messages`` (its own ``template/chatml.gotmpl``,
which its template index maps InternLM2's Jinja chat template to). For InternLM's ChatML:

    {{- range .Messages }}<|im_start|>{{ .Role }}
    {{ .Content }}<|im_end|>
    {{ end }}<|im_start|>assistant

followed by a newline, which InternLM's template puts after ``assistant`` (the template Ollama's
library ``internlm2`` model carries, as Hugging Face's ``ollama-utils`` records it, ends at
``assistant`` without it; this one follows the checkpoint). No ``<s>``: llama.cpp's tokenizer
adds bos itself (``tokenizer.ggml.add_bos_token``). The system prompt is InternLM's default,
as ``SYSTEM``: Ollama puts it first when a conversation has no system message of its own, as
model-zoo's runner does. Parameters use Ollama's names (``repeat_penalty``, ``num_predict``);
``top_k 0`` is "off" in llama.cpp's sampler, InternLM2's default.

``modelfile_text`` writes a Modelfile that Ollama's parser (``parser/parser.go``) reads back
as these commands: multi-line values in triple quotes, which it takes verbatim.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from .gguf_header import GGUFHeader

CHATML_TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n"
)
CHATML_STOPS = ("<|im_start|>", "<|im_end|>")

MEDIA_TYPES = {
    "model": "application/vnd.ollama.image.model",
    "template": "application/vnd.ollama.image.template",
    "system": "application/vnd.ollama.image.system",
    "params": "application/vnd.ollama.image.params",
    "license": "application/vnd.ollama.image.license",
}


@dataclass(frozen=True)
class OllamaProfile:
    """What a Modelfile (or a registry manifest) says besides the weights."""

    template: str
    stops: tuple[str, ...]
    system: str | None = None
    parameters: Mapping[str, float | int] = field(default_factory=dict)  # Ollama option names
    license: str | None = None

    def params(self) -> dict[str, Any]:
        """The ``params`` layer / PARAMETER lines: stop strings first, then the numbers."""
        return {"stop": list(self.stops), **dict(self.parameters)}


def is_chatml(chat_template: str | None) -> bool:
    """Whether a Jinja chat template is InternLM's ChatML (``<|im_start|>`` + role + newline)."""
    if not chat_template:
        return False
    return "<|im_start|>" in chat_template and "<|im_end|>" in chat_template


def parameters_from(defaults: Any) -> dict[str, float | int]:
    """Ollama options from model-zoo generation defaults (a ``GenerationDefaults`` or
    ``GenerationSettings``; missing values are left to Ollama)."""
    if defaults is None:
        return {}
    names = {
        "temperature": "temperature",
        "top_p": "top_p",
        "top_k": "top_k",
        "repetition_penalty": "repeat_penalty",
        "max_new_tokens": "num_predict",
    }
    out: dict[str, float | int] = {}
    for ours, theirs in names.items():
        value = getattr(defaults, ours, None)
        if value is not None:
            out[theirs] = int(value) if ours in ("top_k", "max_new_tokens") else float(value)
    return out


def profile_for(
    chat_format: str | None,
    *,
    defaults: Any = None,
    system: str | None = None,
    license: str | None = None,
    chat_template: str | None = None,
) -> OllamaProfile:
    """The Ollama profile of a ChatML InternLM model (``chat_format`` from the registry, or the
    GGUF's own ``chat_template``). Other formats (InternLM v1) have no GGUF release."""
    if chat_format not in (None, "chatml") or (
        chat_format is None and not is_chatml(chat_template)
    ):
        raise UsageError(
            f"no Ollama template for chat format {chat_format or 'unknown'!r}; InternLM's GGUF "
            "releases are all ChatML."
        )
    return OllamaProfile(
        template=CHATML_TEMPLATE,
        stops=CHATML_STOPS,
        system=system,
        parameters=parameters_from(defaults),
        license=license,
    )


def header_profile(header: GGUFHeader) -> OllamaProfile | None:
    """The profile a GGUF file's own header implies: the ChatML template and stops when its
    chat template is ChatML, InternLM's default system prompt when it is an InternLM file;
    None when its chat template is not ChatML."""
    from ..runner.chat import DEFAULT_SYSTEM_PROMPT

    arch = header.architecture or ""
    name = str(header.values.get("general.name") or "").lower().replace("_", "").replace("-", "")
    internlm = arch == "internlm2" or "internlm" in name
    try:
        return profile_for(
            None,
            chat_template=header.values.get("tokenizer.chat_template"),
            system=DEFAULT_SYSTEM_PROMPT if internlm else None,
            license=header.values.get("general.license"),
        )
    except UsageError:
        return None


def params_blob(profile: OllamaProfile) -> bytes:
    """The ``application/vnd.ollama.image.params`` layer, JSON as Ollama's encoder writes it."""
    return (json.dumps(profile.params(), ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def quote(value: str) -> str:
    """A Modelfile value that Ollama's parser reads back as ``value``.

    Triple quotes keep newlines and surrounding spaces verbatim; the parser has no escapes, so
    a value holding three double quotes in a row cannot be written.
    """
    if '"""' in value:
        raise UsageError('a Modelfile value cannot contain three double quotes in a row (""").')
    if "\n" in value or value != value.strip() or '"' in value or not value:
        return f'"""{value}"""'
    if " " in value or "\t" in value:
        return f'"{value}"'
    return value


def _quoted(value: str) -> str:
    """Always quoted (``PARAMETER stop "<|im_end|>"``, as Ollama's own Modelfiles write stops)."""
    return f'"{value}"' if '"' not in value and "\n" not in value else quote(value)


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def modelfile_text(from_path: str, profile: OllamaProfile) -> str:
    """The Modelfile: FROM, TEMPLATE, SYSTEM, PARAMETER lines, LICENSE."""
    lines = [f"FROM {quote(from_path)}", f"TEMPLATE {quote(profile.template)}"]
    if profile.system:
        lines.append(f"SYSTEM {quote(profile.system)}")
    lines += [f"PARAMETER stop {_quoted(stop)}" for stop in profile.stops]
    lines += [f"PARAMETER {name} {_number(value)}" for name, value in profile.parameters.items()]
    if profile.license:
        lines.append(f"LICENSE {quote(profile.license)}")
    return "\n".join(lines) + "\n"
