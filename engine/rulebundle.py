"""A compiled copy of the check-rule catalogue (rules/checks.compiled.json), so that `syn2mas lint` starts fast.

Parsing ~70 kB of rule YAML with a pure-Python parser and validating it takes about half a second;
reading the same, already validated, data as JSON takes a few milliseconds. The bundle records a
digest of everything its validity depends on (the rule files, the rule schema, rules/sensitive.yaml
and the validating code); when the digest does not match, the rule files are loaded and validated
as usual, so a stale bundle costs time, never correctness. `syn2mas rules compile` rewrites it.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from .locations import Location
from .yamlsource import LoadedYaml

BUNDLE_NAME = "checks.compiled.json"
_FORMAT = 1
_ENGINE = os.path.dirname(os.path.abspath(__file__))
# The code whose checks a bundled rule has already passed.
_VALIDATING_CODE = ("checks.py", "varsafety.py", "rulefiles.py", "predicates.py", "rule_schemas/check.yaml")


def bundle_path(rules_dir: str) -> str:
    return os.path.join(rules_dir, BUNDLE_NAME)


def _inputs(rules_dir: str) -> list[tuple[str, str]]:
    out = []
    base = os.path.join(rules_dir, "checks")
    for root, dirs, files in os.walk(base):
        dirs.sort()
        out += [(f"rules/{os.path.relpath(os.path.join(root, f), rules_dir)}", os.path.join(root, f))
                for f in sorted(files) if f.endswith(".yaml")]
    out.append(("rules/sensitive.yaml", os.path.join(rules_dir, "sensitive.yaml")))
    out += [(f"engine/{name}", os.path.join(_ENGINE, name)) for name in _VALIDATING_CODE]
    return [(label.replace(os.sep, "/"), path) for label, path in out]


def digest(rules_dir: str) -> str:
    """sha256 over the names and bytes of every input the bundle's validity depends on."""
    h = hashlib.sha256(f"format {_FORMAT}\0".encode())
    for label, path in _inputs(rules_dir):
        h.update(label.encode() + b"\0")
        if os.path.exists(path):
            with open(path, "rb") as fh:
                h.update(fh.read())
        h.update(b"\0")
    return h.hexdigest()


def _file_entry(rule_file) -> dict[str, Any]:
    positions = [[list(path), loc.line, loc.column] for path, loc in rule_file.source.positions.items()]
    return {"rel": rule_file.rel.replace(os.sep, "/"), "data": rule_file.data, "positions": positions}


def compile_bundle(rules_dir: str) -> dict[str, Any]:
    """Load and validate the catalogue from YAML (raising on any problem) and return the bundle."""
    from .checks import load_rule_files

    files = load_rule_files(rules_dir)
    return {"format": _FORMAT, "digest": digest(rules_dir), "files": [_file_entry(f) for f in files]}


def write_bundle(rules_dir: str) -> str:
    """Write a fresh bundle next to the rules (atomically) and return its path."""
    path = bundle_path(rules_dir)
    text = json.dumps(compile_bundle(rules_dir), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    os.replace(tmp, path)
    return path


def is_fresh(rules_dir: str) -> bool:
    """Whether the bundle exists and matches the current rule files."""
    return _read(rules_dir) is not None


def _read(rules_dir: str) -> dict | None:
    path = bundle_path(rules_dir)
    try:
        with open(path, encoding="utf-8") as fh:
            bundle = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(bundle, dict) or bundle.get("format") != _FORMAT or bundle.get("digest") != digest(rules_dir):
        return None
    return bundle


def load_bundle(rules_dir: str) -> list | None:
    """The validated rule files from a fresh bundle, or None (missing or stale: load the YAML instead)."""
    from .rulefiles import RuleFile

    bundle = _read(rules_dir)
    if bundle is None:
        return None
    out = []
    for entry in bundle["files"]:
        path = os.path.join(rules_dir, *entry["rel"].split("/"))
        positions = {tuple(p): Location(path, line, col) for p, line, col in entry["positions"]}
        out.append(RuleFile(path, os.path.join(*entry["rel"].split("/")), entry["data"],
                            LoadedYaml(path, entry["data"], positions)))
    return out
