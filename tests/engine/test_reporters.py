"""Report formats (style.md 5): structure of json and sarif, GitHub escaping, text layout, parsable lines."""
from __future__ import annotations

import json

import jsonschema
import pytest

from engine.checks import SkippedRule
from engine.findings import Finding, sort_findings
from engine.locations import Location
from engine.reporters import render, resolve_format
from engine.reporters.github import escape_data, escape_property
from engine.reporters.model import InputFile, Report, RuleInfo

# A minimal skeleton of the SARIF 2.1.0 schema: the properties code-scanning consumers rely on.
SARIF_SKELETON = {
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "version": {"const": "2.1.0"},
        "$schema": {"type": "string"},
        "runs": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "required": ["tool", "results"],
            "properties": {
                "tool": {"type": "object", "required": ["driver"], "properties": {"driver": {
                    "type": "object", "required": ["name", "rules"],
                    "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                                   "rules": {"type": "array", "items": {
                                       "type": "object", "required": ["id", "shortDescription"],
                                       "properties": {
                                           "id": {"type": "string"},
                                           "shortDescription": {"type": "object", "required": ["text"]},
                                           "help": {"type": "object", "required": ["text"]},
                                           "helpUri": {"type": "string"},
                                           "defaultConfiguration": {"type": "object", "properties": {
                                               "level": {"enum": ["none", "note", "warning", "error"]}}}}}}}}}},
                "results": {"type": "array", "items": {
                    "type": "object",
                    "required": ["ruleId", "level", "message"],
                    "properties": {
                        "ruleId": {"type": "string"},
                        "ruleIndex": {"type": "integer", "minimum": 0},
                        "level": {"enum": ["none", "note", "warning", "error"]},
                        "message": {"type": "object", "required": ["text"]},
                        "locations": {"type": "array", "items": {"type": "object", "properties": {
                            "physicalLocation": {"type": "object", "required": ["artifactLocation", "region"],
                                                 "properties": {
                                                     "artifactLocation": {"type": "object", "required": ["uri"]},
                                                     "region": {"type": "object", "required": ["startLine"],
                                                                "properties": {
                                                                    "startLine": {"type": "integer", "minimum": 1},
                                                                    "startColumn": {"type": "integer",
                                                                                    "minimum": 1}}}}},
                            "logicalLocations": {"type": "array", "items": {
                                "type": "object", "required": ["fullyQualifiedName"]}}}}},
                        "partialFingerprints": {"type": "object", "additionalProperties": {"type": "string"}},
                        "suppressions": {"type": "array", "items": {
                            "type": "object", "required": ["kind"],
                            "properties": {"kind": {"enum": ["inSource", "external"]},
                                           "justification": {"type": "string"}}}}}}}}}},
    },
}


@pytest.fixture
def report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "homeserver.yaml").write_text("server_name: example.org\nallow_guest_access: true\n")
    (tmp_path / "mas.yaml").write_text("matrix: {}\n")
    findings = [
        Finding("guest-access-enabled", "error", "`allow_guest_access` is on, 100% sure: really,\nyes",
                Location("homeserver.yaml", 2, 1, "allow_guest_access"), remediation="Set it to false."),
        Finding("oidc-provider-option-unsupported", "warning", "Provider `oidc`: `idp_icon`",
                Location("homeserver.yaml", 5, 5, "oidc_providers[0].idp_icon"), provider="oidc", option="idp_icon",
                acknowledged="Icons do not matter to us."),
        Finding("note", "info", "a note", Location("mas.yaml", 1, 1), scope="synapse+mas"),
        Finding("guests-in-database", "warning", "3 guest accounts exist", scope="database",
                location=Location("homeserver.yaml", 1, 1, "database", "synapse-db:users"), table="users", count=3,
                samples=["@a:example.org", "@b:example.org"]),
    ]
    rules = [RuleInfo("guest-access-enabled", "error", "synapse", "Guests are on.", "Turn them off."),
             RuleInfo("oidc-provider-option-unsupported", "warning", "synapse", "Option lost.", "See docs."),
             RuleInfo("guests-in-database", "warning", "database", "Guests exist.", "Acknowledge.")]
    inputs = [InputFile.of("homeserver.yaml", "synapse")]
    skipped = [SkippedRule("pepper-mismatch", "needs the MAS configuration (`--config`)")]
    return Report("lint", sort_findings(findings), skipped, inputs, rules, "sha256:abc")


def test_json_is_a_versioned_document(report):
    doc = json.loads(render(report, "json"))
    assert list(doc) == ["schema_version", "tool", "command", "inputs", "findings", "summary", "skipped_rules"]
    assert doc["schema_version"] == 1 and doc["tool"]["name"] == "syn2mas" and doc["tool"]["rules_digest"]
    assert doc["inputs"][0]["path"] == "homeserver.yaml" and len(doc["inputs"][0]["sha256"]) == 64
    first = doc["findings"][0]
    assert first["location"] == {"file": "homeserver.yaml", "line": 2, "column": 1, "key_path": "allow_guest_access",
                                 "logical": None}
    assert len(first["fingerprint"]) == 64 and first["acknowledged"] is None
    assert doc["findings"][1]["acknowledged"] == {"reason": "Icons do not matter to us."}
    assert doc["summary"] == {"errors": 1, "warnings": 1, "info": 1, "acknowledged": 1, "blocking": True,
                              "exit_code": 10}
    assert doc["skipped_rules"] == [{"rule": "pepper-mismatch", "reason": "needs the MAS configuration (`--config`)"}]


def test_sarif_validates_and_carries_fingerprints_suppressions_and_logical_locations(report):
    log = json.loads(render(report, "sarif"))
    jsonschema.validate(log, SARIF_SKELETON)
    run = log["runs"][0]
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert rule_ids[:3] == ["guest-access-enabled", "oidc-provider-option-unsupported", "guests-in-database"]
    assert "note" in rule_ids  # info findings get a catalogue entry too
    assert run["tool"]["driver"]["rules"][0]["helpUri"].endswith("guest-access-enabled.md")
    results = {r["ruleId"]: r for r in run["results"]}
    for r in run["results"]:
        assert rule_ids[r["ruleIndex"]] == r["ruleId"]
        assert r["partialFingerprints"]["syn2mas/v1"]
    assert results["guest-access-enabled"]["level"] == "error"
    assert results["note"]["level"] == "note"
    region = results["guest-access-enabled"]["locations"][0]["physicalLocation"]
    assert region == {"artifactLocation": {"uri": "homeserver.yaml"}, "region": {"startLine": 2, "startColumn": 1}}
    assert results["oidc-provider-option-unsupported"]["suppressions"] == [
        {"kind": "external", "justification": "Icons do not matter to us."}]
    db = results["guests-in-database"]["locations"][0]
    assert db["logicalLocations"] == [{"fullyQualifiedName": "synapse-db:users", "kind": "resource"}]
    assert results["guests-in-database"]["properties"]["samples"] == ["@a:example.org", "@b:example.org"]


def test_github_escaping():
    assert escape_data("100%\r\nok: a,b") == "100%25%0D%0Aok: a,b"
    assert escape_property("a:b,c%\n") == "a%3Ab%2Cc%25%0A"


def test_github_annotations_are_grouped_and_escaped(report):
    out = render(report, "github").splitlines()
    assert out[0] == "::group::homeserver.yaml"
    error = next(line for line in out if line.startswith("::error "))
    assert error.startswith("::error file=homeserver.yaml,line=2,col=1,title=guest-access-enabled::")
    assert "100%25 sure: really,%0Ayes%0AFix: Set it to false." in error
    accepted = next(line for line in out if "oidc-provider-option-unsupported" in line)
    assert accepted.startswith("::notice ") and "title=oidc-provider-option-unsupported (accepted)" in accepted
    assert "[synapse-db:users] 3 guest accounts exist" in next(line for line in out if "guests-in-database" in line)
    assert out.count("::endgroup::") == 3 and "::group::databases" in out
    assert out[-1] == "1 error, 1 warning, 1 accepted, 1 note: migration blocked"


def test_text_groups_per_file_with_accepted_section_and_colour_only_when_asked(report):
    text = render(report, "text")
    assert "\033[" not in text
    lines = text.splitlines()
    assert lines[0] == "homeserver.yaml"
    assert lines[1].startswith("  2:1  error    `allow_guest_access` is on, 100% sure: really, yes  ")
    assert lines[1].endswith("(guest-access-enabled)")
    assert "mas.yaml" in lines and "databases" in lines
    db = lines[lines.index("databases") + 1]
    assert db.startswith("  1:1  warning  [synapse-db:users] 3 guest accounts exist") and "samples: @a:" in text
    assert "Accepted" in lines and "accepted: Icons do not matter to us." in text
    accepted_at = lines.index("Accepted")
    assert any("idp_icon" in line for line in lines[accepted_at:])
    assert not any("idp_icon" in line for line in lines[:accepted_at])
    assert "skipped (needs the MAS configuration (`--config`)): pepper-mismatch" in text
    assert lines[-1] == "1 error, 1 warning, 1 accepted, 1 note: migration blocked"
    assert "\033[31m" in render(report, "text", color=True)


def test_parsable_is_one_line_per_finding(report):
    lines = render(report, "parsable").splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("homeserver.yaml:2:1: [error] `allow_guest_access`")
    assert lines[0].endswith("(guest-access-enabled)")
    assert lines[1].endswith("(oidc-provider-option-unsupported) [accepted]")


@pytest.mark.parametrize("fmt", ["text", "parsable"])
def test_control_characters_from_the_data_are_shown_escaped(report, fmt):
    """A client-chosen device id (or a user id) holding ESC, CR or a bidi override must neither drive the
    admin's terminal nor forge a line of the report."""
    hostile = "@eve:example.org \x1b[2J\rerror: forged\u202e"
    report.findings.append(Finding("hidden-device-tokens", "warning", f"tokens of {hostile}", scope="database",
                                   location=Location("homeserver.yaml", 1, 1, "database", "synapse-db:devices"),
                                   samples=[hostile]))
    text = render(report, fmt)
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text
    assert "of @eve:example.org \\x1b[2J error: forged\\u202e" in text  # the message: one line, escaped
    if fmt == "text":
        assert "samples: @eve:example.org \\x1b[2J\\x0derror: forged\\u202e" in text
    assert not any(line.startswith("error: forged") for line in text.splitlines())


def test_summary_verdicts():
    clean = Report("lint", [])
    assert clean.summary_line() == "0 errors, 0 warnings, 0 accepted: ready to migrate" and clean.exit_code == 0
    warn = Report("lint", [Finding("x", "warning", "m", Location("f", 1, 1))])
    assert warn.exit_code == 11 and warn.summary_line().endswith("fix or acknowledge them")


def test_auto_format_follows_github_actions():
    assert resolve_format("auto", {"GITHUB_ACTIONS": "true"}) == "github"
    assert resolve_format("auto", {}) == "text"
    assert resolve_format("json", {"GITHUB_ACTIONS": "true"}) == "json"
