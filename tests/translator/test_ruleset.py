"""Mapping rule files: what the loader rejects (with file and line), ordering, and test-case coverage."""
from __future__ import annotations

import os
import textwrap

import pytest

from engine.errors import RuleFileError
from engine.rulefiles import default_rules_dir
from engine.yamlsource import load_yaml_file
from translator.generate import GenerateOptions, generate
from translator.ruleset import load_ruleset
from tests.rulecases.mapping import case_entropy

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(os.path.dirname(HERE), "rules", "mapping")


def _write_rule_file(rules_dir, name: str, text: str) -> str:
    path = rules_dir / "mapping" / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def _load_error(rules_dir, text: str) -> RuleFileError:
    path = _write_rule_file(rules_dir, "zz-extra.yaml", text)
    with pytest.raises(RuleFileError) as caught:
        load_ruleset(str(rules_dir))
    assert caught.value.file == path
    return caught.value


RULE_HEAD = """\
kind: mapping
section: account
rules:
"""


@pytest.mark.parametrize("body, line, message", [
    # Two rules writing the same target (here one of account.yaml's targets).
    ("""\
  - id: extra.email-change
    summary: Writes a target another rule owns.
    value: true
    to: account.email_change_allowed
""", 7, "both write `account.email_change_allowed`"),
    ("""\
  - id: extra.x
    summary: Unknown transform.
    from: server_name
    transform: no_such_transform
    to: branding.service_name
""", 7, "unknown transform `no_such_transform`"),
    ("""\
  - id: extra.x
    summary: After an unknown rule.
    value: 1
    to: branding.service_name
    after: [no.such-rule]
""", 4, "unknown rule `no.such-rule`"),
    ("""\
  - id: extra.x
    summary: Bad path.
    value: 1
    to: branding..service_name
""", 7, "invalid target path"),
    ("""\
  - id: extra.x
    summary: No source.
    to: branding.service_name
""", 6, "needs exactly one of `from`, `value`, `cases`"),
    ("""\
  - id: extra.x
    summary: Two sources.
    value: 1
    from: server_name
    to: branding.service_name
""", 8, "needs exactly one of"),
    ("""\
  - id: extra.x
    summary: The JMESPath `!` trap.
    value: 1
    when: "!vars.pw_login"
    to: branding.service_name
""", 7, "`!` applies to the first name only"),
    ("""\
  - id: extra.x
    summary: A misspelt function.
    value: 1
    when: truthyy(server_name)
    to: branding.service_name
""", 7, "unknown function `truthyy()`"),
    ("""\
  - id: extra.x
    summary: A secret target without the flag.
    from: server_name
    to: database.password
""", 4, "must say `sensitive: true`"),
    ("""\
  - id: extra.x
    summary: An undefined var.
    value: 1
    when: vars.nope
    to: branding.service_name
""", 4, "undefined `vars.nope`"),
    ("""\
  - id: extra.x
    summary: A key the schema does not know.
    value: 1
    to: branding.service_name
    wehn: server_name
""", 8, "unknown field"),
    ("""\
  - id: passwords.pepper
    summary: A duplicate id.
    value: 1
    to: branding.service_name
""", 4, "rule id `passwords.pepper` is already used"),
    ("""\
  - id: extra.x
    summary: Does nothing.
    when: server_name
""", 4, "neither `to` nor `report`"),
])
def test_malformed_rules_are_rejected_with_file_and_line(rules_copy, body, line, message):
    error = _load_error(rules_copy, RULE_HEAD + body)
    assert error.line == line, str(error)
    assert message in str(error)


def test_after_cycles_are_rejected(rules_copy):
    error = _load_error(rules_copy, RULE_HEAD + """\
  - id: extra.a
    summary: First.
    value: 1
    to: branding.service_name
    after: [extra.b]
  - id: extra.b
    summary: Second.
    value: 1
    to: branding.imprint
    after: [extra.a]
""")
    assert "cycle" in str(error)


def test_ordering_follows_after_and_target_prefixes():
    ordered = [r.id for r in load_ruleset().ordered]
    assert ordered.index("passwords.scheme-v1") < ordered.index("passwords.scheme-v2")
    assert ordered.index("passwords.scheme-v1") < ordered.index("passwords.pepper")  # container first
    assert ordered.index("passwords.scheme-v1") < ordered.index("passwords.cost")
    # The overlay reads the final MAS document, so every MAS rule comes first.
    first_patch = min(i for i, r in enumerate(load_ruleset().ordered) if r.document == "synapse_patch")
    assert all(r.document == "synapse_patch" for r in load_ruleset().ordered[first_patch:])


def test_a_mapping_is_added_with_yaml_only(rules_copy, tmp_path, monkeypatch):
    """A contributor's new rule file (and nothing else) changes the generated configuration."""
    _write_rule_file(rules_copy, "branding_service_name.yaml", """\
        # Synapse server_name -> MAS branding.service_name.
        kind: mapping
        section: branding
        rules:
          - id: branding.service-name
            summary: Show the server name as the service name.
            from: server_name
            to: branding.service_name
        """)
    monkeypatch.setenv("SYN2MAS_RULES_DIR", str(rules_copy))
    hs = tmp_path / "homeserver.yaml"
    hs.write_text("server_name: example.org\n")
    result = generate([str(hs)], GenerateOptions(), case_entropy())
    assert result.mas["branding"] == {"service_name": "example.org"}
    assert {"to": "branding.service_name", "from": "S:server_name", "rule": "branding.service-name",
            "origin": f"{hs}:1:1"} in [t.as_dict() for t in result.trace]
    assert "branding:\n  service_name: example.org  # from " in result.mas_text


def _case_files() -> dict[str, dict]:
    return {name: load_yaml_file(os.path.join(CASES, name), (1, 2)).data or {}
            for name in sorted(os.listdir(CASES)) if name.endswith(".yaml")}


def test_every_mapping_rule_has_a_firing_case_and_conditional_ones_a_silent_case():
    cases = _case_files()
    missing = []
    for mf in load_ruleset().files:
        file_cases = cases.get(os.path.basename(mf.path), {})
        for rule in mf.rules:
            runs = [c for c in (file_cases.get(rule.id) or {}).values() if "error" not in c]
            if not any(c.get("fires", True) for c in runs):
                missing.append(f"{rule.id}: no firing case")
            if (rule.when or rule.to is None) and not any(c.get("fires") is False for c in runs):
                missing.append(f"{rule.id}: no silent case (`fires: false`)")
    assert not missing, "\n".join(missing)


def test_no_mapping_rule_reads_an_ignored_key():
    ignored = load_yaml_file(os.path.join(default_rules_dir(), "ignored.yaml"), (1, 2)).data["keys"]
    names = [entry["key"] for entry in ignored]
    for mf in load_ruleset().files:
        for rule in mf.rules:
            for expr in rule.expressions():
                for name in names:
                    assert not _reads(expr, name), f"{rule.id} reads the ignored key `{name}` ({expr})"


def _reads(expr: str, key: str) -> bool:
    import re

    return re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", expr) is not None


def test_the_ignored_list_is_valid():
    from engine.rulefiles import RuleFile, validate

    path = os.path.join(default_rules_dir(), "ignored.yaml")
    loaded = load_yaml_file(path, (1, 2))
    validate(RuleFile(path, "ignored.yaml", loaded.data, loaded))
