"""Reject Synapse values of the wrong shape before translating (rules/synapse-shapes.yaml, mapping.md 2).

A mapping where Synapse expects a list (or the reverse, or a mapping where it expects a scalar) is a Synapse
configuration error; ``generate`` stops with exit 1 and names file, line and key instead of guessing.
"""
from __future__ import annotations

import functools
import os
from typing import Any

from engine.configdoc import ConfigDoc
from engine.errors import ConfigError, RuleFileError
from engine.locations import Path, format_path
from engine.rulefiles import RuleFile, validate
from engine.yamlsource import load_yaml_file

SHAPES_FILE = "synapse-shapes.yaml"
_TYPE_WORDS = {"mapping": "a mapping", "list": "a list", "scalar": "a single value (string, number or boolean)",
               "disabled": "false", "any": "anything"}


def _is(value: Any, kind: str) -> bool:
    if kind == "mapping":
        return isinstance(value, dict)
    if kind == "list":
        return isinstance(value, list)
    if kind == "scalar":
        return isinstance(value, (str, int, float, bool))
    if kind == "disabled":
        return value is False
    if kind == "any":
        return True
    raise RuleFileError(f"unknown shape type `{kind}` in rules/{SHAPES_FILE}")


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a string"


@functools.lru_cache(maxsize=4)
def load_shapes(rules_dir: str) -> dict:
    """The validated shape tree of ``rules_dir``."""
    path = os.path.join(rules_dir, SHAPES_FILE)
    loaded = load_yaml_file(path, (1, 2))
    validate(RuleFile(path, SHAPES_FILE, loaded.data, loaded))
    return loaded.data["shapes"]


def _node(spec: Any) -> tuple[list[str], dict, Any]:
    if isinstance(spec, dict):
        types = spec.get("type", "any")
        return ([types] if isinstance(types, str) else list(types)), spec.get("keys") or {}, spec.get("items")
    return ([spec] if isinstance(spec, str) else list(spec)), {}, None


def shape_errors(data: Any, shapes: dict, path: Path = ()) -> list[tuple[Path, str]]:
    """``(path, what was expected)`` for every value whose shape differs from ``shapes`` (null is fine)."""
    out: list[tuple[Path, str]] = []
    if not isinstance(data, dict):
        return out
    for key, spec in shapes.items():
        value = data.get(key)
        if value is None:
            continue
        types, keys, items = _node(spec)
        sub = path + (key,)
        if not any(_is(value, t) for t in types):
            out.append((sub, " or ".join(_TYPE_WORDS[t] for t in types) + f", not {_describe(value)}"))
            continue
        if keys and isinstance(value, dict):
            out.extend(shape_errors(value, keys, sub))
        if items is not None and isinstance(value, list):
            for index, element in enumerate(value):
                if element is None:
                    continue
                out.extend(shape_errors({index: element}, {index: items}, sub))
    return out


def check_shapes(doc: ConfigDoc, rules_dir: str) -> None:
    """Raise :class:`ConfigError` at the first (in file order) Synapse value of the wrong shape."""
    errors = shape_errors(doc.data, load_shapes(rules_dir))
    if not errors:
        return
    located = sorted(((doc.locate(p), p, what) for p, what in errors), key=lambda e: (e[0].file, e[0].line))
    loc, path, what = located[0]
    more = f" ({len(errors) - 1} more such problems)" if len(errors) > 1 else ""
    raise ConfigError(f"`{format_path(path)}` must be {what}{more}", file=loc.file, line=loc.line,
                      column=loc.column, key=format_path(path),
                      hint="Synapse cannot use this value either; correct it and run again")
