"""Which configuration values are secrets, and a last-line redaction of them in any text we print."""
from __future__ import annotations

import functools
import os
import re
from typing import Any, Iterable

from .rulefiles import default_rules_dir
from .yamlsource import load_yaml_file

REDACTED = "[redacted]"
# Short values (e.g. "1", "true") would redact ordinary words; real secrets are longer.
_MIN_SECRET_LEN = 4


@functools.lru_cache(maxsize=None)
def sensitive_paths(side: str, rules_dir: str | None = None) -> tuple[str, ...]:
    """Patterns from rules/sensitive.yaml for ``side`` (``synapse`` or ``mas``)."""
    data = _sensitive_file(os.path.join(rules_dir or default_rules_dir(), "sensitive.yaml"))
    return tuple(data.get(side) or ())


@functools.lru_cache(maxsize=None)
def _sensitive_file(path: str) -> dict:
    # Parsed once for both sides: YAML parsing is a visible part of `lint`'s start-up.
    return load_yaml_file(path, (1, 2)).data or {}


@functools.lru_cache(maxsize=None)
def _parts(pattern: str) -> tuple[str, ...]:
    return tuple(re.findall(r"\[\]|[^.\[\]]+", pattern))


def _matches(pattern: str, path: tuple) -> bool:
    parts = _parts(pattern)
    if len(parts) != len(path):
        return False
    for want, got in zip(parts, path):
        if want == "[]":
            if not isinstance(got, int):
                return False
        elif want != "*" and want != got:
            return False
    return True


def is_sensitive(side: str, path: tuple) -> bool:
    """Whether the value at ``path`` (a tuple of keys and indexes) is a secret."""
    return any(_matches(p, tuple(path)) for p in sensitive_paths(side))


def secret_values(side: str, data: Any) -> set[str]:
    """Every secret value present in a configuration document (used to scrub output)."""
    found: set[str] = set()

    def walk(node: Any, path: tuple) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, path + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + (i,))
        elif node is not None and is_sensitive(side, path):
            text = str(node)
            if side == "mas" and path == ("database", "uri"):
                m = re.match(r"^[a-z]+://[^:/@]*:([^@]+)@", text)
                if m:
                    found.add(m.group(1))
                return
            found.add(text)

    walk(data, ())
    return {s for s in found if len(s) >= _MIN_SECRET_LEN}


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace any occurrence of a secret (longest first) by a marker."""
    for s in sorted(set(secrets), key=len, reverse=True):
        if s and s in text:
            text = text.replace(s, REDACTED)
    return text
