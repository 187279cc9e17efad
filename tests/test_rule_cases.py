"""The single runner for every YAML rule test: tests/rules/** mirrors rules/** file for file.

Each case file is keyed by rule id, then case name; the mirrored rule file's `kind` picks the case
executor in tests/rulecases/<kind>.py (`run_case(rule_file, rule_id, case)`), so `pytest -k <rule-id>`
selects one rule and adding a rule's tests needs no Python.
"""
from __future__ import annotations

import importlib
import os

import pytest

from engine.rulefiles import RuleFile, default_rules_dir, validate
from engine.yamlsource import load_yaml_file

HERE = os.path.dirname(os.path.abspath(__file__))
CASES_DIR = os.path.join(HERE, "rules")


def _case_files() -> list[str]:
    out = []
    for root, dirs, files in os.walk(CASES_DIR):
        dirs.sort()
        out.extend(os.path.join(root, f) for f in sorted(files) if f.endswith(".yaml"))
    return out


def _rule_file(rel: str) -> RuleFile:
    rules_dir = default_rules_dir()
    path = os.path.join(rules_dir, rel)
    loaded = load_yaml_file(path, (1, 2))
    rf = RuleFile(path, rel, loaded.data, loaded)
    validate(rf)
    return rf


def _params():
    for path in _case_files():
        rel = os.path.relpath(path, CASES_DIR)
        data = load_yaml_file(path, (1, 2)).data or {}
        for rule_id, cases in data.items():
            for case_name, case in (cases or {}).items():
                yield pytest.param(rel, rule_id, case_name, case, path, id=f"{rule_id}/{case_name}")


@pytest.mark.parametrize("rel, rule_id, case_name, case, case_path", list(_params()))
def test_rule_case(rel, rule_id, case_name, case, case_path):
    rule_file = _rule_file(rel)
    ids = {r["id"] for r in rule_file.data.get("rules", [])}
    assert rule_id in ids, f"{case_path}: no rule `{rule_id}` in rules/{rel}"
    executor = importlib.import_module(f"tests.rulecases.{rule_file.kind}")
    executor.run_case(rule_file, rule_id, case_name, case)


def test_every_rule_file_has_a_case_file():
    rules_dir = default_rules_dir()
    missing = []
    for sub in ("mapping", "checks"):
        base = os.path.join(rules_dir, sub)
        for root, _dirs, files in os.walk(base):
            for f in files:
                if f.endswith(".yaml"):
                    rel = os.path.relpath(os.path.join(root, f), rules_dir)
                    if not os.path.exists(os.path.join(CASES_DIR, rel)):
                        missing.append(rel)
    assert not missing, f"rule files without test cases under tests/rules/: {missing}"
