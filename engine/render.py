"""Sandboxed Jinja2 for rule messages: undefined variables are errors, no attribute tricks.

Jinja2 is imported on first use only: the templates `lint` usually renders are covered by
engine/simpletemplate.py, which gives the same text without it.
"""
from __future__ import annotations

import functools
from typing import Any

from .errors import RuleFileError
from .simpletemplate import try_render


@functools.lru_cache(maxsize=None)
def _env():
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


@functools.lru_cache(maxsize=4096)
def _template(text: str):
    from jinja2 import TemplateError

    try:
        return _env().from_string(text)
    except TemplateError as exc:
        raise RuleFileError(f"invalid message template {text!r}: {exc}") from None


def render(text: str, variables: dict[str, Any]) -> str:
    """Render a message template; a missing variable is a rule-file error, never a silent blank."""
    quick = try_render(text, variables)
    if quick is not None:
        return " ".join(quick.split())
    from jinja2 import TemplateError

    try:
        return " ".join(_template(text).render(**variables).split())
    except TemplateError as exc:
        raise RuleFileError(f"cannot render message {text!r}: {exc}") from None
