"""Executor of YAML cases for mapping rules (rules/mapping/*.yaml, mapping.md): run `generate`, compare.

Case keys:

* ``synapse`` (YAML text, written as homeserver.yaml) and/or ``files`` (name -> text; `.yaml` names are
  further Synapse files in order, others are data files such as secret files); ``inputs`` (list of paths)
  overrides the order, e.g. to pass a directory;
* ``existing_mas`` (YAML text): an existing MAS configuration that generate updates (mapping.md 5.10);
* ``options``: fields of ``translator.generate.GenerateOptions`` (``tos_uri``, ``synapse_url``, ``compat``...);
* ``mas``: a subset the generated MAS document must contain (mappings by key, lists item by item with the
  same length); ``mas_absent``: target paths (``a.b[key=value].c``) that must not exist;
* ``patch`` / ``patch_absent``: the same for the Synapse overlay (mapping.md 7.7);
* ``findings``: the exact rule ids (a multiset) of the findings of this rule file's rules and of the
  ``oidc-provider-*`` checks, each an id or ``{rule, line, file, provider, message_contains}``;
* ``trace``: entries the trace must contain (``to``, ``from``, ``rule`` default the rule under test,
  ``origin``);
* ``fires`` (default true): whether the rule under test writes (a trace entry) or reports (a note);
* ``error``: ``{line, message_contains}`` of the error (exit 1) generate must stop with instead; nothing else
  is checked then;
* ``mas_invalid``: the MAS-rule ids (``MAS-U1``) or ``schema`` the generated document is expected to fail;
  any other error of the published schema or of engine.masvalidate fails the case.

Inline ``# expect: <check-id>`` / ``# ok: <check-id>`` markers (style.md 3) work for the ``oidc-provider-*``
ids. Every case runs in its own directory, so relative paths in snippets resolve there.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
import tempfile
from typing import Any

import pytest

from engine.configdoc import ConfigDoc
from engine.errors import Syn2MasError
from engine.findings import Finding
from engine.masvalidate import validate_mas_config
from engine.rulecases import markers, snippets
from engine.rulefiles import RuleFile
from engine.yamlsource import load_yaml_text
from translator.generate import GENERATE_CHECKS, GenerateOptions, GenerateResult, generate
from translator.randomness import Entropy
from translator.ruleset import load_ruleset
from translator.targetpath import get_at, parse_target

CLOCK = _dt.datetime(2026, 8, 7, 12, 0, tzinfo=_dt.timezone.utc)
_CASE_KEYS = {"synapse", "files", "inputs", "existing_mas", "options", "mas", "mas_absent", "patch", "patch_absent",
              "findings", "trace", "fires", "mas_invalid", "error"}


class FastEntropy(Entropy):
    """Seeded entropy whose RSA key is made once per process from its own seed (seeded RSA takes ~0.3 s).

    Its values are deterministic, but differ from ``Entropy.seeded``; goldens use the real thing.
    """

    _rsa: dict[int, Any] = {}

    def rsa_key(self, bits: int = 2048):
        if bits not in self._rsa:
            self._rsa[bits] = Entropy.seeded("rsa-cache", CLOCK).rsa_key(bits)
        return self._rsa[bits]


def case_entropy(seed: int | str = 1) -> Entropy:
    """The entropy rule cases and most tests use."""
    return FastEntropy.seeded(seed, CLOCK)


def write_snippets(case: dict) -> list[str]:
    """Write the case's files into the working directory; the Synapse inputs in order."""
    inputs = []
    for snip in snippets(case):
        os.makedirs(os.path.dirname(snip.name) or ".", exist_ok=True)
        with open(snip.name, "w", encoding="utf-8") as fh:
            fh.write(snip.text)
        if snip.role == "synapse":
            inputs.append(snip.name)
    return list(case["inputs"]) if case.get("inputs") else inputs


def mas_schema_path() -> str:
    """MAS's published schema in ../shared (never copied into the repository)."""
    from tests.conftest import MAS_JSON_SCHEMA

    assert os.path.isfile(MAS_JSON_SCHEMA), f"MAS schema not found at {MAS_JSON_SCHEMA} (set SYN2MAS_SHARED)"
    return MAS_JSON_SCHEMA


def validation_errors(mas_text: str, directory: str) -> list[Finding]:
    """Errors of the published schema (with formats) and of mapping.md 6.2 for a generated MAS document.

    The text is parsed the way MAS parses it (YAML 1.2), so quoting mistakes of the writer show up here.
    """
    data = load_yaml_text(mas_text, "generated-mas.yaml", (1, 2)).data
    doc = ConfigDoc(data=data, files=["generated-mas.yaml"])
    found = validate_mas_config(doc, mas_schema_path(), base_dir=directory)
    return [f for f in found if f.severity == "error"]


def error_ids(errors: list[Finding]) -> list[str]:
    """``MAS-U1`` for a rule violation, ``schema`` for a published-schema failure."""
    return sorted("schema" if (f.option or "").startswith("schema:") else str(f.option) for f in errors)


def assert_subset(expected: Any, actual: Any, where: str = "") -> None:
    """``expected`` is contained in ``actual``: mappings by key, lists item by item (same length)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where or '<root>'}: expected a mapping, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{where}.{key}: missing (have {sorted(actual)})"
            assert_subset(value, actual[key], f"{where}.{key}" if where else str(key))
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), \
            f"{where}: expected {len(expected)} items, got {actual!r}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_subset(e, a, f"{where}[{i}]")
    else:
        assert actual == expected and type(actual) is type(expected), f"{where}: expected {expected!r}, got {actual!r}"


def _assert_absent(paths: list[str], doc: Any, what: str) -> None:
    for text in paths or ():
        found, value = get_at(doc, parse_target(text))
        assert not found, f"{what} `{text}` should be absent, is {value!r}"


def _relevant(result: GenerateResult, rule_ids: set[str]) -> list[Finding]:
    return [f for f in result.findings if f.rule in GENERATE_CHECKS or f.details.get("mapping_rule") in rule_ids]


def _show(findings: list[Finding]) -> str:
    return "\n".join(f"  {f.location.file}:{f.location.line} [{f.severity}] {f.rule}: {f.message}" for f in findings)


def _finding_matches(f: Finding, entry: Any) -> bool:
    if isinstance(entry, str):
        return f.rule == entry
    checks = {"rule": lambda v: f.rule == v, "line": lambda v: f.location.line == v,
              "file": lambda v: f.location.file == v, "provider": lambda v: f.provider == v,
              "message_contains": lambda v: str(v) in f.message}
    unknown = set(entry) - set(checks)
    assert not unknown, f"unknown keys in a `findings` entry: {sorted(unknown)}"
    return all(checks[k](v) for k, v in entry.items())


def _assert_findings(expected: list, found: list[Finding]) -> None:
    left = list(found)
    for entry in expected:
        match = next((f for f in left if _finding_matches(f, entry)), None)
        assert match is not None, f"expected finding {entry!r}; got:\n{_show(found)}"
        left.remove(match)
    assert not left, f"unexpected findings:\n{_show(left)}"


def _assert_markers(case: dict, found: list[Finding]) -> None:
    for m in markers(case):
        hits = [f for f in found if f.rule == m.rule and f.location.line == m.line
                and os.path.basename(f.location.file) == os.path.basename(m.file)]
        if m.kind == "expect":
            assert hits, f"{m.file}:{m.line}: expected `{m.rule}`; got:\n{_show(found)}"
        elif m.kind == "ok":
            assert not hits, f"{m.file}:{m.line}: `{m.rule}` should be silent; got:\n{_show(hits)}"


def _assert_trace(expected: list, result: GenerateResult, rule_id: str) -> None:
    entries = [t.as_dict() for t in result.trace]
    for want in expected:
        want = {"rule": rule_id, **want}
        assert any(all(e.get(k) == v for k, v in want.items()) for e in entries), \
            f"no trace entry {want}; the rule's entries: {[e for e in entries if e['rule'] == want['rule']]}"


def fired(result: GenerateResult, rule_id: str) -> bool:
    """Whether a rule wrote something (trace) or said something (a note or finding it produced)."""
    return any(t.rule == rule_id for t in result.trace) or \
        any(f.details.get("mapping_rule") == rule_id for f in result.findings)


def run_generate(case: dict, directory: str) -> GenerateResult:
    """Write the case into ``directory`` and run generate there (relative paths resolve inside it)."""
    with contextlib.chdir(directory):
        inputs = write_snippets(case)
        options = dict(case.get("options") or {})
        if case.get("existing_mas") is not None:
            with open("existing-mas.yaml", "w", encoding="utf-8") as fh:
                fh.write(case["existing_mas"])
            options["from_mas"] = "existing-mas.yaml"
        return generate(inputs, GenerateOptions(**options), case_entropy())


def run_case(rule_file: RuleFile, rule_id: str, case_name: str, case: dict) -> None:
    """Run one mapping case (see the module docstring)."""
    unknown = set(case) - _CASE_KEYS
    assert not unknown, f"{case_name}: unknown case keys {sorted(unknown)}"
    rule_ids = {r.id for mf in load_ruleset().files if mf.path == rule_file.path for r in mf.rules}
    if "error" in case:
        _assert_error(case)
        return
    with tempfile.TemporaryDirectory(prefix="syn2mas-case-") as directory:
        result = run_generate(case, directory)
        errors = validation_errors(result.mas_text, directory)
    assert error_ids(errors) == sorted(case.get("mas_invalid") or []), \
        f"the generated MAS configuration fails validation:\n{_show(errors)}"
    assert_subset(case.get("mas") or {}, result.mas, "")
    _assert_absent(case.get("mas_absent"), result.mas, "MAS key")
    patch = _patch_data(result)
    assert_subset(case.get("patch") or {}, patch, "")
    _assert_absent(case.get("patch_absent"), patch, "overlay key")
    relevant = _relevant(result, rule_ids)
    if "findings" in case:
        _assert_findings(case["findings"] or [], relevant)
    _assert_markers(case, relevant)
    _assert_trace(case.get("trace") or [], result, rule_id)
    expected_fire = case.get("fires", True)
    assert fired(result, rule_id) == expected_fire, \
        f"`{rule_id}` {'did not fire' if expected_fire else 'fired'} (set `fires:` to what the case shows)"


def _assert_error(case: dict) -> None:
    want = case["error"]
    with tempfile.TemporaryDirectory(prefix="syn2mas-case-") as directory:
        with pytest.raises(Syn2MasError) as caught:
            run_generate(case, directory)
    error = caught.value
    assert error.line == want.get("line", error.line), f"error at line {error.line}: {error}"
    assert str(want.get("message_contains", "")) in str(error), str(error)


def _patch_data(result: GenerateResult) -> dict:
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(result.patch_text) or {}
