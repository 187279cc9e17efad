"""The YAML case executor for check rules catches wrong expectations (so a passing case means something)."""
from __future__ import annotations

import os

import pytest

from engine.rulecases import markers, roles
from engine.rulefiles import RuleFile, default_rules_dir, validate
from engine.yamlsource import load_yaml_file
from tests.rulecases import check


def rule_file(rel: str) -> RuleFile:
    path = os.path.join(default_rules_dir(), rel)
    loaded = load_yaml_file(path, (1, 2))
    rf = RuleFile(path, rel, loaded.data, loaded)
    validate(rf)
    return rf


ACCOUNTS = "checks/accounts.yaml"


def run(case: dict, rule_id: str = "guest-access-enabled", rel: str = ACCOUNTS) -> None:
    check.run_case(rule_file(rel), rule_id, "self_test", case)


def test_a_correct_marker_passes():
    run({"synapse": "server_name: x\nallow_guest_access: true   # expect: guest-access-enabled\n"})


@pytest.mark.parametrize("case, words", [
    ({"synapse": "allow_guest_access: true\n# expect: guest-access-enabled\n"}, "markers expect"),
    ({"synapse": "allow_guest_access: true\n"}, "markers expect []"),
    ({"synapse": "allow_guest_access: true   # ok: guest-access-enabled\n"}, "reported at"),
    ({"synapse": "allow_guest_access: true\n", "expect": [{"rule": "guest-access-enabled", "severity": "warning"}]},
     "no finding matches"),
    ({"synapse": "allow_guest_access: true\n", "expect": []}, "markers expect []"),
    ({"synapse": "allow_guest_access: true\n", "expect": [{"rule": "guest-access-enabled"},
                                                          {"rule": "guest-access-enabled"}]}, "no finding matches"),
    ({"synapse": "x: 1\n", "expect": [{"rule": "guest-access-enabled", "colour": "red"}]}, "malformed expect"),
    ({"synapse": "x: 1\n", "mas": "oops"}, "unknown case keys"),
    ({"files": {"secret": "x"}}, "needs a `synapse` snippet"),
])
def test_wrong_expectations_fail(case, words):
    with pytest.raises(AssertionError, match=words.replace("[", r"\[").replace("]", r"\]")):
        run(case)


def test_split_configuration_markers_resolve_per_file():
    run({"synapse": "server_name: x\n", "files": {
        "conf.d/10-guests.yaml": "allow_guest_access: true   # expect: guest-access-enabled\n"}})
    with pytest.raises(AssertionError, match="conf.d/10-guests.yaml"):
        run({"synapse": "server_name: x   # expect: guest-access-enabled\n",
             "files": {"conf.d/10-guests.yaml": "allow_guest_access: true\n"}})


def test_todo_markers_are_expected_failures_until_they_hold():
    with pytest.raises(pytest.xfail.Exception):
        run({"synapse": "server_name: x   # todo-expect: guest-access-enabled\n"})
    with pytest.raises(pytest.fail.Exception, match="todo marker"):
        run({"synapse": "allow_guest_access: true   # expect: guest-access-enabled\n"
                        "# the line above also holds:\nx: 1   # todo-ok: guest-access-enabled\n"})


def test_marker_parsing_and_roles():
    case = {"synapse": "a: 1   # expect: r1, r2\nb: 2  # ok: r3\n", "mas_config": {"m1.yaml": "c: 3 # todo-ok: r1\n"},
            "files": {"secret": "# expect: ignored-in-data-files\n"}}
    assert [(m.file, m.line, m.kind, m.rule) for m in markers(case)] == [
        ("homeserver.yaml", 1, "expect", "r1"), ("homeserver.yaml", 1, "expect", "r2"),
        ("homeserver.yaml", 2, "ok", "r3"), ("m1.yaml", 1, "todo-ok", "r1")]
    assert roles(case, "r1") == {"fires", "todo"} and roles(case, "r3") == {"silent"}
    assert roles({"expect": []}, "r") == {"silent"} and roles({"expect": [{"rule": "r"}]}, "r") == {"fires"}
    assert roles({"expect": [{"rule": "other"}]}, "r") == {"silent"}
