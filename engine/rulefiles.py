"""Discover rule files under a rules directory and validate them with cerberus, reporting file:line:field."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from importlib import resources
from typing import Any

from .errors import RuleFileError
from .locations import Location, Path, format_path
from .yamlsource import LoadedYaml, load_yaml_file

_SCHEMA_DIR = os.path.join(os.path.dirname(__file__), "rule_schemas")


def default_rules_dir() -> str:
    """The rules shipped with syn2mas (``SYN2MAS_RULES_DIR`` overrides it, for contributors and tests)."""
    env = os.environ.get("SYN2MAS_RULES_DIR")
    if env:
        return env
    return str(resources.files("rules"))


@dataclass
class RuleFile:
    """One validated rule file: its data and the positions of every key, for messages and findings."""

    path: str
    rel: str
    data: dict
    source: LoadedYaml

    @property
    def kind(self) -> str:
        return self.data["kind"]

    def where(self, path: Path) -> Location:
        probe = tuple(path)
        while probe and probe not in self.source.positions:
            probe = probe[:-1]
        loc = self.source.positions.get(probe, Location(self.path, 1, 1))
        return Location(loc.file, loc.line, loc.column, format_path(path))


@functools.lru_cache(maxsize=None)
def _schema(kind: str) -> dict:
    path = os.path.join(_SCHEMA_DIR, f"{kind}.yaml")
    if not os.path.exists(path):
        raise RuleFileError(f"no schema for rule kind {kind!r}", file=path)
    return load_yaml_file(path, (1, 2)).data


def _flatten(errors: Any, path: Path = ()) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    if isinstance(errors, dict):
        for key, sub in errors.items():
            out.extend(_flatten(sub, path + (key,)))
    elif isinstance(errors, list):
        for item in errors:
            if isinstance(item, str):
                out.append((path, item))
            else:
                out.extend(_flatten(item, path))
    return out


def validate(rule_file: RuleFile) -> None:
    """Validate against ``engine/rule_schemas/<kind>.yaml``; raise on the first error with its position."""
    data = rule_file.data
    if not isinstance(data, dict) or "kind" not in data:
        raise RuleFileError("a rule file must be a mapping with a `kind`", file=rule_file.path, line=1)
    import cerberus  # imported here: `lint` loads a compiled, already validated catalogue (engine/rulebundle.py)

    validator = cerberus.Validator(_schema(str(data["kind"])))
    if not validator.validate(data):
        problems = sorted(_flatten(validator.errors), key=lambda e: rule_file.where(e[0]).line)
        path, message = problems[0]
        loc = rule_file.where(path)
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise RuleFileError(f"invalid rule file: {message}{more}", file=rule_file.path, line=loc.line,
                            column=loc.column, key=format_path(path) or None)


def discover(rules_dir: str, subdir: str) -> list[RuleFile]:
    """Every ``*.yaml`` under ``rules_dir/subdir``, sorted, loaded and validated."""
    base = os.path.join(rules_dir, subdir)
    found: list[RuleFile] = []
    if not os.path.isdir(base):
        return found
    for root, dirs, files in os.walk(base):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".yaml"):
                continue
            full = os.path.join(root, name)
            loaded = load_yaml_file(full, (1, 2))
            rf = RuleFile(full, os.path.relpath(full, rules_dir), loaded.data, loaded)
            validate(rf)
            found.append(rf)
    found.sort(key=lambda r: r.rel)
    return found
