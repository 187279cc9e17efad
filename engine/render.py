"""Sandboxed Jinja2 for rule messages: undefined variables are errors, no attribute tricks."""
from __future__ import annotations

import functools
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from .errors import RuleFileError

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


@functools.lru_cache(maxsize=4096)
def _template(text: str):
    try:
        return _ENV.from_string(text)
    except TemplateError as exc:
        raise RuleFileError(f"invalid message template {text!r}: {exc}") from None


def render(text: str, variables: dict[str, Any]) -> str:
    """Render a message template; a missing variable is a rule-file error, never a silent blank."""
    try:
        return " ".join(_template(text).render(**variables).split())
    except TemplateError as exc:
        raise RuleFileError(f"cannot render message {text!r}: {exc}") from None
