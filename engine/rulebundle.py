"""A compiled copy of the check-rule catalogue (rules/checks.compiled.json), so that `syn2mas lint` starts fast.

Parsing ~70 kB of rule YAML with a pure-Python parser and validating it takes about half a second;
reading the same, already validated, data as JSON takes a few milliseconds. Each file's entry records
a digest of the file and of everything its validation depends on (the rule schema, rules/sensitive.yaml
and the validating code); a file whose entry does not match is loaded and validated from YAML as usual,
so a stale bundle costs time, never correctness. `syn2mas rules compile` rewrites it.
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


def rule_file_paths(rules_dir: str) -> list[tuple[str, str]]:
    """(rel, path) of every check-rule file, sorted as `engine.rulefiles.discover` sorts them."""
    out = []
    base = os.path.join(rules_dir, "checks")
    for root, dirs, files in os.walk(base):
        dirs.sort()
        out += [(os.path.relpath(os.path.join(root, f), rules_dir), os.path.join(root, f))
                for f in files if f.endswith(".yaml")]
    return sorted(out)


def _engine_digest(rules_dir: str) -> str:
    h = hashlib.sha256(f"format {_FORMAT}\0".encode())
    inputs = [("rules/sensitive.yaml", os.path.join(rules_dir, "sensitive.yaml"))]
    inputs += [(f"engine/{name}", os.path.join(_ENGINE, name)) for name in _VALIDATING_CODE]
    for label, path in inputs:
        h.update(label.encode() + b"\0")
        if os.path.exists(path):
            with open(path, "rb") as fh:
                h.update(fh.read())
        h.update(b"\0")
    return h.hexdigest()


def _file_digest(engine: str, rel: str, path: str) -> str:
    with open(path, "rb") as fh:
        content = fh.read()
    return hashlib.sha256(engine.encode() + b"\0" + rel.replace(os.sep, "/").encode() + b"\0" + content).hexdigest()


def compile_bundle(rules_dir: str) -> dict[str, Any]:
    """Load and validate the catalogue from YAML (raising on any problem) and return the bundle."""
    from .checks import load_rule_files

    engine = _engine_digest(rules_dir)
    entries = []
    for rule_file in load_rule_files(rules_dir):
        positions = [[list(path), loc.line, loc.column] for path, loc in rule_file.source.positions.items()]
        entries.append({"rel": rule_file.rel.replace(os.sep, "/"),
                        "sha256": _file_digest(engine, rule_file.rel, rule_file.path),
                        "data": rule_file.data, "positions": positions})
    return {"format": _FORMAT, "files": entries}


def write_bundle(rules_dir: str) -> str:
    """Write a fresh bundle next to the rules (atomically) and return its path."""
    path = bundle_path(rules_dir)
    text = json.dumps(compile_bundle(rules_dir), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
    os.replace(tmp, path)
    return path


def _entries(rules_dir: str) -> dict[str, dict]:
    try:
        with open(bundle_path(rules_dir), encoding="utf-8") as fh:
            bundle = json.load(fh)
    except (OSError, ValueError):
        return {}
    if not isinstance(bundle, dict) or bundle.get("format") != _FORMAT:
        return {}
    return {e["rel"]: e for e in bundle.get("files") or [] if isinstance(e, dict) and "rel" in e}


def load_rule_files(rules_dir: str) -> list[tuple[object, bool]]:
    """Every check-rule file as ``(RuleFile, validated_already)``: from the bundle where its entry matches
    the file on disk, else parsed from YAML and validated by schema (the caller applies the other checks)."""
    from .rulefiles import RuleFile, validate
    from .yamlsource import load_yaml_file

    entries = _entries(rules_dir)
    engine = _engine_digest(rules_dir) if entries else ""
    out: list[tuple[object, bool]] = []
    for rel, path in rule_file_paths(rules_dir):
        entry = entries.get(rel.replace(os.sep, "/"))
        if entry is not None and entry.get("sha256") == _file_digest(engine, rel, path):
            positions = {tuple(p): Location(path, line, col) for p, line, col in entry["positions"]}
            out.append((RuleFile(path, rel, entry["data"], LoadedYaml(path, entry["data"], positions)), True))
            continue
        loaded = load_yaml_file(path, (1, 2))
        rule_file = RuleFile(path, rel, loaded.data, loaded)
        validate(rule_file)
        out.append((rule_file, False))
    return out


def is_fresh(rules_dir: str) -> bool:
    """Whether the bundle holds a matching entry for every rule file, and nothing else."""
    entries = _entries(rules_dir)
    if not entries:
        return False
    engine = _engine_digest(rules_dir)
    on_disk = rule_file_paths(rules_dir)
    return len(entries) == len(on_disk) and all(
        entries.get(rel.replace(os.sep, "/"), {}).get("sha256") == _file_digest(engine, rel, path)
        for rel, path in on_disk)
