"""Executor of YAML cases for check rules (style.md 3); cases with database rows go to tests/rulecases/database.py.

Case keys: ``synapse`` (YAML text, written as homeserver.yaml), ``files`` (name -> text; `.yaml` names are
further Synapse files in order, other names are data files such as secret files), ``mas_config`` (text, or
name -> text), ``options`` (``ignore_missing_auth_providers``), ``mas_schema: true`` (validate against
MAS's published schema from ../shared), ``expect`` (a list of findings, each with any of ``rule``,
``severity``, ``file``, ``line``, ``column``, ``message_contains``, ``provider``, ``option``,
``key_path``, ``variant``; ``expect: []`` asserts silence).

Inline markers at the end of a line: ``# expect: id`` (a finding of ``id`` is reported on this line),
``# ok: id`` (none is), ``# todo-expect:`` / ``# todo-ok:`` (known gaps, run as expected failures). For
the rule under test the reported lines must equal the ``expect`` markers exactly, unless the case's
``expect`` list describes that rule's findings instead. The case runs in its own directory, so relative
paths in the snippets (secret files) resolve there.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import tempfile
from typing import Iterator

import pytest

from engine.checks import CheckOptions, build_rules, run_checks
from engine.configdoc import load_mas_config, load_synapse_config
from engine.findings import Finding
from engine.rulecases import is_database_case, markers, snippets
from engine.rulefiles import default_rules_dir
from engine.sensitive import secret_values

_CASE_KEYS = {"synapse", "files", "mas_config", "options", "mas_schema", "expect"}
_EXPECT_KEYS = {"rule", "severity", "file", "line", "column", "message_contains", "provider", "option", "key_path",
                "variant"}


@contextlib.contextmanager
def _in_directory(path: str) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _mas_schema_path() -> str:
    from tests.conftest import MAS_JSON_SCHEMA

    assert os.path.isfile(MAS_JSON_SCHEMA), f"MAS schema not found at {MAS_JSON_SCHEMA} (set SYN2MAS_SHARED)"
    return MAS_JSON_SCHEMA


def _write(case: dict) -> tuple[list[str], list[str]]:
    synapse, mas = [], []
    for snip in snippets(case):
        os.makedirs(os.path.dirname(snip.name) or ".", exist_ok=True)
        with open(snip.name, "w", encoding="utf-8") as fh:
            fh.write(snip.text)
        {"synapse": synapse, "mas": mas}.get(snip.role, []).append(snip.name)
    return synapse, mas


def _show(f: Finding) -> str:
    return f"{f.location.file}:{f.location.line}:{f.location.column} [{f.severity}] {f.rule}: {f.message}"


def _matches(f: Finding, entry: dict, rule_id: str) -> bool:
    checks = {
        "rule": f.rule == entry.get("rule", rule_id),
        "severity": f.severity == entry.get("severity"),
        "file": f.location.file == entry.get("file"),
        "line": f.location.line == entry.get("line"),
        "column": f.location.column == entry.get("column"),
        "message_contains": str(entry.get("message_contains")) in f.message,
        "provider": f.provider == entry.get("provider"),
        "option": f.option == entry.get("option"),
        "key_path": f.location.key_path == entry.get("key_path"),
        "variant": f.details.get("variant") == entry.get("variant"),
    }
    return checks["rule"] and all(ok for key, ok in checks.items() if key != "rule" and key in entry)


def _assert_expect_list(findings: list[Finding], expect: list, rule_id: str, where: str) -> set[str]:
    """Each entry matches a distinct finding; returns the rules the list describes."""
    described: set[str] = set()
    remaining = list(findings)
    for entry in expect:
        assert isinstance(entry, dict) and set(entry) <= _EXPECT_KEYS, f"{where}: malformed expect entry {entry!r}"
        described.add(entry.get("rule", rule_id))
        hit = next((f for f in remaining if _matches(f, entry, rule_id)), None)
        shown = "\n  ".join(_show(f) for f in findings) or "nothing"
        assert hit is not None, f"{where}: no finding matches {entry!r}; reported:\n  {shown}"
        remaining.remove(hit)
    for rule in described:
        wanted = sum(1 for e in expect if e.get("rule", rule_id) == rule)
        got = [f for f in findings if f.rule == rule]
        assert len(got) == wanted, f"{where}: expected {wanted} `{rule}` finding(s), got:\n  " + \
            "\n  ".join(_show(f) for f in got)
    return described


def _lines(findings: list[Finding], rule: str) -> set[tuple[str, int]]:
    return {(f.location.file, f.location.line) for f in findings if f.rule == rule}


def _assert_markers(findings: list[Finding], case: dict, rule_id: str, described: set[str], where: str) -> None:
    found = markers(case)
    rules = {m.rule for m in found if m.kind in ("expect", "ok")} | ({rule_id} - described)
    for rule in sorted(rules):
        expected = {(m.file, m.line) for m in found if m.rule == rule and m.kind == "expect"}
        silent = {(m.file, m.line) for m in found if m.rule == rule and m.kind == "ok"}
        got = _lines(findings, rule)
        if rule not in described:
            assert got == expected, (f"{where}: `{rule}` reported at {sorted(got)}, markers expect {sorted(expected)}:"
                                     "\n  " + "\n  ".join(_show(f) for f in findings if f.rule == rule))
        assert not (got & silent), f"{where}: `{rule}` fired on a line marked `# ok`: {sorted(got & silent)}"
        assert expected <= got, f"{where}: `{rule}` missing at {sorted(expected - got)}"


def _todo(findings: list[Finding], case: dict, where: str) -> None:
    todos = [m for m in markers(case) if m.kind.startswith("todo-")]
    if not todos:
        return
    holds = [((m.file, m.line) in _lines(findings, m.rule)) == (m.kind == "todo-expect") for m in todos]
    if all(holds):
        pytest.fail(f"{where}: every todo marker now holds; turn them into `# expect:` / `# ok:` markers")
    pytest.xfail(f"{where}: known gap marked with todo markers")


def _assert_no_secret_printed(findings: list[Finding], secrets: set[str], where: str) -> None:
    for f in findings:
        for text in (f.message, f.remediation):
            leaked = [s for s in secrets if s and s in text]
            assert not leaked, f"{where}: a secret value appears in the text of `{f.rule}`"


def run_database_case(rule_file, rule_id: str, case_name: str, case: dict) -> None:
    """Hand a case with `synapse_db` / `mas_db` rows to the database executor."""
    if importlib.util.find_spec("tests.rulecases.database") is None:
        pytest.fail(f"{rule_id}/{case_name}: database cases need tests/rulecases/database.py (run_db_case)")
    importlib.import_module("tests.rulecases.database").run_db_case(rule_file, rule_id, case_name, case)


def run_case(rule_file, rule_id: str, case_name: str, case: dict) -> None:
    """Run one case of a check-rule file and assert its markers and `expect` list."""
    where = f"{rule_file.rel} {rule_id}/{case_name}"
    if is_database_case(case):
        run_database_case(rule_file, rule_id, case_name, case)
        return
    unknown = sorted(set(case) - _CASE_KEYS)
    assert not unknown, f"{where}: unknown case keys {unknown}; allowed: {sorted(_CASE_KEYS)}"
    options = CheckOptions(rules_dir=default_rules_dir(), mas_schema=_mas_schema_path() if case.get("mas_schema")
                           else None, **(case.get("options") or {}))
    rules = build_rules(rule_file, options.rules_dir)
    with tempfile.TemporaryDirectory() as tmp, _in_directory(tmp):
        synapse_paths, mas_paths = _write(case)
        assert synapse_paths, f"{where}: a case needs a `synapse` snippet (or `.yaml` files)"
        synapse = load_synapse_config(synapse_paths, skip_patch_overlays=True)
        mas = load_mas_config(mas_paths) if mas_paths else None
        run = run_checks(rules, synapse, mas, options)
    findings = [f for f in run.findings if f.rule != "note"]
    described = _assert_expect_list(findings, case["expect"], rule_id, where) if "expect" in case else set()
    _assert_markers(findings, case, rule_id, described, where)
    secrets = secret_values("synapse", synapse.data) | (secret_values("mas", mas.data) if mas else set())
    _assert_no_secret_printed(findings, secrets | run.file_secrets, where)
    _todo(findings, case, where)
