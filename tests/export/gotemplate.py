"""A minimal interpreter for the subset of Go's text/template that dsft's Ollama TEMPLATEs use.

Enough to render a Modelfile TEMPLATE for a conversation and compare it with the Python renderer:
text, ``{{- ... -}}`` trimming, ``if / else if / else / end``, ``range $i, $_ := .Messages``,
``$var := expr``, and the functions ``eq ne not and len slice``. Anything else raises, so a template
using more than this fails the test loudly instead of rendering wrongly.
"""

from __future__ import annotations

import re
from typing import Any

_ACTION = re.compile(r"{{(-?)\s*(.*?)\s*(-?)}}", re.S)
_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\(|\)|[^\s()]+')


def _lex(template: str) -> list[tuple[str, str]]:
    parts: list[tuple[str, str]] = []
    pos, trim_next = 0, False
    for match in _ACTION.finditer(template):
        text = template[pos:match.start()]
        if trim_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        parts.append(("text", text))
        parts.append(("action", match.group(2)))
        pos, trim_next = match.end(), bool(match.group(3))
    tail = template[pos:]
    parts.append(("text", tail.lstrip() if trim_next else tail))
    return parts


def _parse(parts: list[tuple[str, str]], i: int = 0, stop: tuple[str, ...] = ()) -> tuple[list[Any], int, str]:
    """Nodes until one of ``stop`` keywords; returns (nodes, next index, the stop action)."""
    nodes: list[Any] = []
    while i < len(parts):
        kind, value = parts[i]
        i += 1
        if kind == "text":
            nodes.append(("text", value))
            continue
        word = value.split(" ", 1)[0]
        if word in ("end", "else") and word in stop or (value.startswith("else if") and "else" in stop):
            return nodes, i, value
        if word == "if":
            branches, i = _parse_if(parts, i, value[3:])
            nodes.append(("if", branches))
        elif word == "range":
            m = re.fullmatch(r"range \$(\w+), \$(\w+) := (.+)", value)
            assert m, value
            body, i, _ = _parse(parts, i, ("end",))
            nodes.append(("range", m.group(1), m.group(2), m.group(3), body))
        elif re.fullmatch(r"\$\w+ := .+", value):
            name, expr = value.split(" := ", 1)
            nodes.append(("assign", name[1:], expr))
        else:
            nodes.append(("print", value))
    return nodes, i, ""


def _parse_if(parts: list[tuple[str, str]], i: int, cond: str) -> tuple[list[tuple[str | None, list[Any]]], int]:
    branches = []
    while True:
        body, i, stop = _parse(parts, i, ("end", "else"))
        branches.append((cond, body))
        if stop == "end":
            return branches, i
        cond = stop[len("else if "):] if stop.startswith("else if") else None


def _eval(tokens: list[str], scope: dict[str, Any], dot: Any) -> Any:
    def atom(pos: int) -> tuple[Any, int]:
        tok = tokens[pos]
        if tok == "(":
            args, pos = [], pos + 1
            while tokens[pos] != ")":
                value, pos = atom(pos)
                args.append(value)
            return _call(args), pos + 1
        if tok.startswith('"'):
            return bytes(tok[1:-1], "utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8"), pos + 1
        if tok.startswith("$."):
            return scope["$"][tok[2:]], pos + 1
        if tok.startswith("$"):
            return scope[tok[1:]], pos + 1
        if tok.startswith("."):
            return dot[tok[1:]], pos + 1
        if tok.isdigit():
            return int(tok), pos + 1
        return ("fn", tok), pos + 1

    values, pos = [], 0
    while pos < len(tokens):
        value, pos = atom(pos)
        values.append(value)
    return _call(values)


def _call(values: list[Any]) -> Any:
    head = values[0]
    if not (isinstance(head, tuple) and head[0] == "fn"):
        assert len(values) == 1, values
        return head
    name, args = head[1], values[1:]
    functions = {
        "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "not": lambda a: not a,
        "and": lambda *a: all(a), "len": len, "slice": lambda seq, start: seq[start:],
    }
    if name not in functions:
        raise NotImplementedError(f"Go template function {name!r} is not supported by this interpreter")
    return functions[name](*args)


def _run(nodes: list[Any], scope: dict[str, Any], dot: Any, out: list[str]) -> None:
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "print":
            out.append(str(_eval(_TOKEN.findall(node[1]), scope, dot)))
        elif node[0] == "assign":
            scope[node[1]] = _eval(_TOKEN.findall(node[2]), scope, dot)
        elif node[0] == "if":
            for cond, body in node[1]:
                if cond is None or _eval(_TOKEN.findall(cond), scope, dot):
                    _run(body, scope, dot, out)
                    break
        elif node[0] == "range":
            _, index_name, item_name, expr, body = node
            for index, item in enumerate(_eval(_TOKEN.findall(expr), scope, dot)):
                _run(body, {**scope, index_name: index, item_name: item}, item, out)


def render_go_template(template: str, data: dict[str, Any]) -> str:
    """Render ``template`` with ``data`` as the root (``.System``, ``.Messages`` of ``{"Role", "Content"}``)."""
    nodes, _, _ = _parse(_lex(template))
    out: list[str] = []
    _run(nodes, {"$": data}, data, out)
    return "".join(out)
