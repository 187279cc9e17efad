"""The YAML rule-case format (style.md 3): snippets, inline `# expect:` / `# ok:` markers, `expect:` lists.

Read by the test executor (tests/rulecases/check.py), by `syn2mas rules lint` (every rule needs a firing
and a silent case) and by `syn2mas rules docs` (examples come from the cases, so they always run).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from .yamlsource import load_yaml_file

MARKER = re.compile(r"#\s*(expect|ok|todo-expect|todo-ok):\s*([a-z0-9-]+(?:\s*,\s*[a-z0-9-]+)*)")
SYNAPSE_FILE = "homeserver.yaml"
MAS_FILE = "mas.yaml"


@dataclass(frozen=True)
class Marker:
    """An inline marker: ``kind`` (`expect`, `ok`, `todo-expect`, `todo-ok`) for ``rule`` at ``file``:``line``."""

    file: str
    line: int
    kind: str
    rule: str


@dataclass(frozen=True)
class Snippet:
    """A file a case writes: its name in the case directory, its text and its role."""

    name: str
    text: str
    role: str  # synapse | mas | data


def snippets(case: dict) -> list[Snippet]:
    """The files of a case, in order: `synapse` (homeserver.yaml), `files` (`.yaml` ones are further Synapse
    files of a split configuration, others are data such as secret files), `mas_config` (one text, or
    name -> text for several MAS files)."""
    out: list[Snippet] = []
    if isinstance(case.get("synapse"), str):
        out.append(Snippet(SYNAPSE_FILE, case["synapse"], "synapse"))
    for name, text in (case.get("files") or {}).items():
        role = "synapse" if str(name).endswith(".yaml") else "data"
        out.append(Snippet(str(name), "" if text is None else str(text), role))
    mas = case.get("mas_config")
    if isinstance(mas, str):
        out.append(Snippet(MAS_FILE, mas, "mas"))
    elif isinstance(mas, dict):
        out.extend(Snippet(str(n), "" if t is None else str(t), "mas") for n, t in mas.items())
    return out


def markers(case: dict) -> list[Marker]:
    """Every inline marker of the case's YAML snippets, with the 1-based line it marks."""
    out: list[Marker] = []
    for snip in snippets(case):
        if snip.role == "data":
            continue
        for number, line in enumerate(snip.text.splitlines(), start=1):
            for m in MARKER.finditer(line):
                out.extend(Marker(snip.name, number, m.group(1), rule.strip()) for rule in m.group(2).split(","))
    return out


def is_database_case(case: dict) -> bool:
    """Cases with database rows are run by the database executor."""
    return "synapse_db" in case or "mas_db" in case


def roles(case: dict, rule_id: str) -> set[str]:
    """Whether the case shows ``rule_id`` firing (`fires`) and/or staying silent (`silent`)."""
    found: set[str] = set()
    for m in markers(case):
        if m.rule == rule_id:
            found.add("fires" if m.kind == "expect" else "silent" if m.kind == "ok" else "todo")
    expect = case.get("expect")
    if isinstance(expect, list):
        if any(isinstance(e, dict) and e.get("rule", rule_id) == rule_id for e in expect):
            found.add("fires")
        elif not any(m.rule == rule_id and m.kind == "expect" for m in markers(case)):
            found.add("silent")
    return found


def load_case_file(path: str) -> dict[str, dict[str, Any]]:
    """A case file: rule id -> case name -> case."""
    data = load_yaml_file(path, (1, 2)).data or {}
    return {str(rule): dict(cases or {}) for rule, cases in data.items()}


def cases_for(cases_dir: str, rel: str) -> dict[str, dict[str, Any]]:
    """The cases mirroring rule file ``rel`` (e.g. `checks/auth.yaml`), or nothing when there is no case file."""
    path = os.path.join(cases_dir, rel)
    return load_case_file(path) if os.path.isfile(path) else {}


def default_cases_dir(rules_dir: str) -> str:
    """`tests/rules` next to the rules directory (in a source checkout)."""
    return os.path.join(os.path.dirname(os.path.abspath(rules_dir)), "tests", "rules")
