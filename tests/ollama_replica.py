"""Two pieces of Ollama, re-implemented from its Go source for tests that have no Ollama binary.

- ``parse_modelfile``: ``parser/parser.go`` ``ParseFile``: the same state machine (command
  names, PARAMETER and MESSAGE sub-states, comments, values ended by a newline or a space once
  ``unquote`` accepts them, triple- and double-quoted values taken verbatim, non-printable runes
  dropped outside them).
- ``render``: the part of Go's ``text/template`` Ollama's chat templates use (text, ``{{- ... -}}``
  trim markers, ``.Field``, ``range``, ``if``/``else``, ``end``) and Ollama's
  ``template.Execute`` for ``.Messages`` templates (consecutive messages of one role joined with
  a blank line; the Modelfile's SYSTEM first when the conversation has no system message, as
  ``server/routes.go`` does for chat requests).
"""

from __future__ import annotations

import re
from typing import Any

COMMANDS = {
    "from",
    "license",
    "template",
    "system",
    "adapter",
    "draft",
    "renderer",
    "parser",
    "parameter",
    "message",
    "requires",
}


def _unquote(s: str) -> tuple[str, bool]:
    if len(s) >= 3 and s[:3] == '"""':
        if len(s) >= 6 and s[-3:] == '"""':
            return s[3:-3], True
        return "", False
    if len(s) >= 1 and s[0] == '"':
        if len(s) >= 2 and s[-1] == '"':
            return s[1:-1], True
        return "", False
    return s, True


def parse_modelfile(text: str) -> list[tuple[str, str]]:
    """(command, argument) pairs as Ollama's parser produces them; ValueError where it fails."""
    NIL, NAME, VALUE, PARAM, MESSAGE, COMMENT = range(6)
    state, buf, name, role = NIL, "", "", ""
    out: list[tuple[str, str]] = []
    for r in text:
        space, newline = r in " \t", r in "\r\n"
        if state == NIL:
            nxt, keep = (
                (COMMENT, None) if r == "#" else (NIL, None) if space or newline else (NAME, r)
            )
        elif state == NAME:
            if r.isascii() and r.isalpha():
                nxt, keep = NAME, r
            elif space:
                nxt, keep = VALUE, None
            else:
                raise ValueError("invalid command")
        elif state == VALUE:
            nxt, keep = (NIL, r) if newline or space else (VALUE, r)
        elif state == PARAM:
            if (r.isascii() and r.isalnum()) or r == "_":
                nxt, keep = PARAM, r
            elif space:
                nxt, keep = VALUE, None
            else:
                raise ValueError("unexpected EOF")
        elif state == MESSAGE:
            if r.isascii() and r.isalpha():
                nxt, keep = MESSAGE, r
            elif space:
                nxt, keep = VALUE, None
            else:
                raise ValueError("unexpected EOF")
        else:  # COMMENT
            nxt, keep = (NIL, None) if newline else (COMMENT, None)
        if nxt != state:
            if state == NAME:
                if buf.lower() not in COMMANDS:
                    raise ValueError(f"invalid command {buf!r}")
                low = buf.lower()
                if low == "from":
                    name = "model"
                elif low == "parameter":
                    nxt = PARAM
                elif low == "message":
                    nxt, name = MESSAGE, low
                else:
                    name = low
            elif state == PARAM:
                name = buf
            elif state == MESSAGE:
                role = buf
            elif state == VALUE:
                value, ok = _unquote(buf.strip())
                if not ok or (keep is not None and keep in " \t"):
                    buf += keep or ""
                    continue
                out.append((name, f"{role}: {value}" if role else value))
                role = ""
            buf = ""
            state = nxt
        if keep is not None and keep.isprintable():
            buf += keep
    if state == VALUE:
        value, ok = _unquote(buf.strip())
        if not ok:
            raise ValueError("unexpected EOF")
        out.append((name, value))
    elif state not in (NIL, COMMENT):
        raise ValueError("unexpected EOF")
    if not any(c == "model" for c, _ in out):
        raise ValueError("no FROM line")
    return out


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)


def _tokens(template: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(template):
        text = template[pos : m.start()]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        out.append(("text", text))
        out.append(("action", m.group(2).strip()))
        trim_next = bool(m.group(3))
        pos = m.end()
    tail = template[pos:]
    out.append(("text", tail.lstrip(" \t\r\n") if trim_next else tail))
    return out


def _field(dot: Any, expr: str) -> Any:
    value = dot
    for part in expr.split(".")[1:]:
        value = value.get(part, "") if isinstance(value, dict) else getattr(value, part, "")
    return value


def _run(
    tokens: list[tuple[str, str]], i: int, dot: Any, out: list[str], stop: tuple[str, ...]
) -> int:
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "text":
            out.append(value)
            i += 1
            continue
        word = value.split()[0] if value else ""
        if word in stop:
            return i
        if word == "range":
            items = _field(dot, value.split()[1])
            body_start = i + 1
            end = _skip(tokens, body_start)
            for item in items or []:
                _run(tokens, body_start, item, out, ("end",))
            i = end + 1
        elif word == "if":
            cond = bool(_field(dot, value.split()[1]))
            j = i + 1
            branch: list[str] = []
            j = _run(tokens, j, dot, branch if cond else [], ("else", "end"))
            if tokens[j][1] == "else":
                other: list[str] = []
                j = _run(tokens, j + 1, dot, other if not cond else [], ("end",))
                branch += other if not cond else []
            out.extend(branch)
            i = j + 1
        elif value.startswith("."):
            out.append(str(_field(dot, value)))
            i += 1
        else:
            raise ValueError(f"unsupported action {value!r}")
    return i


def _skip(tokens: list[tuple[str, str]], i: int) -> int:
    depth = 0
    while i < len(tokens):
        kind, value = tokens[i]
        word = value.split()[0] if kind == "action" and value else ""
        if word in ("range", "if", "with"):
            depth += 1
        elif word == "end":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    raise ValueError("unclosed range")


def collate(messages: list[dict[str, str]]) -> tuple[str, list[dict[str, str]]]:
    system = [m["content"] for m in messages if m["role"] == "system"]
    out: list[dict[str, str]] = []
    for m in messages:
        if out and out[-1]["Role"] == m["role"] and m["role"] != "tool":
            out[-1]["Content"] += "\n\n" + m["content"]
        else:
            out.append({"Role": m["role"], "Content": m["content"]})
    return "\n\n".join(system), out


def render(
    template: str, messages: list[dict[str, str]], modelfile_system: str | None = None
) -> str:
    """The prompt Ollama's chat endpoint builds for ``messages``."""
    msgs = list(messages)
    if modelfile_system and (not msgs or msgs[0]["role"] != "system"):
        msgs = [{"role": "system", "content": modelfile_system}, *msgs]
    system, collated = collate(msgs)
    out: list[str] = []
    _run(_tokens(template), 0, {"System": system, "Messages": collated, "Response": ""}, out, ())
    return "".join(out)
