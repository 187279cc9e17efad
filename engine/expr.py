"""JMESPath with Synapse's value semantics as named functions (mapping.md 1.5).

Plain JMESPath truthiness treats ``0`` as true; rules use ``truthy()``, ``explicit_true()`` and
``synapse_strtobool()`` wherever Synapse's own reading matters.
"""
from __future__ import annotations

import functools
import re
from typing import Any

import jmespath
from jmespath import functions
from jmespath.exceptions import JMESPathError

from .errors import RuleFileError


def py_truthy(value: Any) -> bool:
    """Python truthiness, as Synapse tests "section is on": false for absent, null, false, 0, "", {}, []."""
    return bool(value)


def explicit_true(value: Any) -> bool:
    """True only for the boolean ``true`` (after YAML 1.1 resolution)."""
    return value is True


_STRTOBOOL_TRUE = {"y", "yes", "t", "true", "on", "1"}
_STRTOBOOL_FALSE = {"n", "no", "f", "false", "off", "0"}


def synapse_strtobool(value: Any) -> bool | None:
    """Synapse's ``strtobool(str(v))``; ``None`` for a value Synapse would reject (rules treat it as false)."""
    if value is None:
        return False
    text = str(value).lower()
    if text in _STRTOBOOL_TRUE:
        return True
    if text in _STRTOBOOL_FALSE:
        return False
    return None


class _Functions(functions.Functions):
    @functions.signature({"types": []})
    def _func_truthy(self, value):
        return py_truthy(value)

    @functions.signature({"types": []})
    def _func_explicit_true(self, value):
        return explicit_true(value)

    @functions.signature({"types": []})
    def _func_synapse_strtobool(self, value):
        return bool(synapse_strtobool(value))

    @functions.signature({"types": ["string", "null"]})
    def _func_lower(self, value):
        return value.lower() if value is not None else None

    @functions.signature({"types": []}, {"types": ["string"]})
    def _func_regex_match(self, value, pattern):
        return isinstance(value, str) and re.search(pattern, value) is not None

    @functions.signature({"types": []})
    def _func_is_string(self, value):
        return isinstance(value, str)

    @functions.signature({"types": []})
    def _func_is_list(self, value):
        return isinstance(value, list)

    @functions.signature({"types": []})
    def _func_is_map(self, value):
        return isinstance(value, dict)


_OPTIONS = jmespath.Options(custom_functions=_Functions())


@functools.lru_cache(maxsize=4096)
def compile_expr(text: str):
    """Compile a rule expression; raises :class:`RuleFileError` with the parser's message."""
    try:
        return jmespath.compile(text)
    except JMESPathError as exc:
        raise RuleFileError(f"invalid JMESPath expression {text!r}: {exc}") from None


def evaluate(text: str, data: Any) -> Any:
    """Evaluate ``text`` against ``data``. A type error inside an expression counts as "no value"."""
    try:
        return compile_expr(text).search(data, options=_OPTIONS)
    except JMESPathError:
        return None


def holds(text: str, data: Any) -> bool:
    """A ``when`` guard: true when the expression yields a Python-truthy value."""
    return py_truthy(evaluate(text, data))
