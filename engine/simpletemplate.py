"""Render the simplest message templates without Jinja2, whose import alone costs `lint` ~40 ms.

Covered: literal text, `{{ name }}`, `{{ name.key }}` and `{% if [not] name[.key] %}` with `elif`, `else`
and `endif`. Jinja2 (engine/render.py) stays the reference: anything else - filters, tests, operators,
whitespace control, comments, a name that is not a variable, an attribute that is not a plain dict key
- makes :func:`try_render` return None and the caller renders with Jinja2, which also raises the errors.
"""
from __future__ import annotations

import functools
import re
from typing import Any

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_PATH = re.compile(rf"{_NAME}(?:\.{_NAME})*")
# A tag we understand, or the start of any other Jinja2 construct (then the whole template is left to Jinja2).
_TAG = re.compile(r"\{\{\s*(?P<out>[^{}]*?)\s*\}\}|\{%\s*(?P<stmt>[^{}%]*?)\s*%\}|\{[{%#]")
# Jinja2 reads these as constants or operators, never as variables.
_RESERVED = frozenset("and or not in is if else elif endif for endfor true false none True False None "
                      "loop self caller varargs kwargs".split())


class _Unsupported(Exception):
    """The template (or a value it reads) is outside the covered subset."""


def _path(text: str) -> tuple[str, ...]:
    if not _PATH.fullmatch(text):
        raise _Unsupported
    parts = tuple(text.split("."))
    if _RESERVED.intersection(parts):
        raise _Unsupported
    return parts


def _condition(text: str) -> tuple[bool, tuple[str, ...]]:
    negate, _, rest = text.partition(" ")
    if negate == "not":
        return True, _path(rest.strip())
    return False, _path(text)


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> list | None:
    """The template as nodes: ``str`` literal, ``("out", path)`` or ``("if", [(cond, body)...], else_body)``."""
    try:
        root: list = []
        # Open `if` blocks: (their branches, the branch being filled, whether `else` was seen).
        stack: list[tuple[list, list, bool]] = []
        body = root
        pos = 0
        for m in _TAG.finditer(text):
            if m.start() > pos:
                body.append(text[pos:m.start()])
            pos = m.end()
            if m.group("out") is not None:
                body.append(("out", _path(m.group("out"))))
                continue
            stmt = m.group("stmt")
            if stmt is None:
                raise _Unsupported
            word, _, rest = stmt.partition(" ")
            rest = rest.strip()
            if word == "if":
                branches: list = [(_condition(rest), [])]
                node = ("if", branches, [])
                body.append(node)
                stack.append((node, body, False))
                body = branches[0][1]
            elif word == "elif" and stack and not stack[-1][2]:
                node = stack[-1][0]
                node[1].append((_condition(rest), []))
                body = node[1][-1][1]
            elif word == "else" and not rest and stack and not stack[-1][2]:
                node, outer, _ = stack.pop()
                stack.append((node, outer, True))
                body = node[2]
            elif word == "endif" and not rest and stack:
                _, body, _ = stack.pop()
            else:
                raise _Unsupported
        if stack:
            raise _Unsupported
        if pos < len(text):
            root.append(text[pos:])
        return root
    except _Unsupported:
        return None


def _value(path: tuple[str, ...], variables: dict[str, Any]) -> Any:
    if path[0] not in variables:
        raise _Unsupported  # Jinja2 would look at its globals, or raise for an undefined variable
    value = variables[path[0]]
    for key in path[1:]:
        # Jinja2's sandbox tries the attribute first, then the item: only a plain dict key is unambiguous.
        if type(value) is not dict or key not in value or hasattr(value, key):
            raise _Unsupported
        value = value[key]
    return value


def _emit(nodes: list, variables: dict[str, Any], out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif node[0] == "out":
            out.append(str(_value(node[1], variables)))
        else:
            for (negate, path), branch in node[1]:
                if bool(_value(path, variables)) is not negate:
                    _emit(branch, variables, out)
                    break
            else:
                _emit(node[2], variables, out)


def try_render(text: str, variables: dict[str, Any]) -> str | None:
    """``text`` rendered as Jinja2 would render it (up to whitespace), or None when outside the covered subset."""
    nodes = _parse(text)
    if nodes is None:
        return None
    out: list[str] = []
    try:
        _emit(nodes, variables, out)
    except _Unsupported:
        return None
    return "".join(out)
