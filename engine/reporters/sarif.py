"""SARIF 2.1.0 for code-scanning dashboards: the rule catalogue, results, fingerprints, suppressions (style.md 5)."""
from __future__ import annotations

import json
import os
from typing import Any

from ..findings import Finding
from .model import NOTE_RULES, TOOL_NAME, Report, RuleInfo, display_path, tool_version

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def help_uri(rule_id: str) -> str:
    """The rule's generated documentation page (`syn2mas rules docs`), under `SYN2MAS_DOCS_URL` when set."""
    base = os.environ.get("SYN2MAS_DOCS_URL", "docs/rules/")
    return f"{base.rstrip('/')}/{rule_id}.md"


def _rule(info: RuleInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.id,
        "shortDescription": {"text": info.summary},
        "help": {"text": info.remediation},
        "helpUri": help_uri(info.id),
        "defaultConfiguration": {"level": _LEVEL[info.severity]},
        "properties": {"scope": info.scope},
    }


def _catalogue(report: Report) -> list[RuleInfo]:
    known = {r.id for r in report.rules}
    extra = sorted({f.rule for f in report.findings} - known)
    return list(report.rules) + [RuleInfo(r, "info", "synapse", NOTE_RULES.get(r, r), "") for r in extra]


def _result(f: Finding, index: dict[str, int]) -> dict[str, Any]:
    result: dict[str, Any] = {"ruleId": f.rule, "ruleIndex": index[f.rule], "level": _LEVEL[f.severity],
                              "message": {"text": f.message + (f"\nFix: {f.remediation}" if f.remediation else "")}}
    location: dict[str, Any] = {}
    if f.location.file and os.path.exists(f.location.file):
        location["physicalLocation"] = {
            "artifactLocation": {"uri": display_path(f.location.file)},
            "region": {"startLine": max(1, f.location.line), "startColumn": max(1, f.location.column)},
        }
    if f.location.logical:
        location["logicalLocations"] = [{"fullyQualifiedName": f.location.logical, "kind": "resource"}]
    if location:
        result["locations"] = [location]
    result["partialFingerprints"] = {"syn2mas/v1": f.fingerprint}
    props = {k: v for k, v in (("keyPath", f.location.key_path), ("scope", f.scope), ("provider", f.provider),
                               ("option", f.option), ("table", f.table), ("count", f.count)) if v not in (None, "")}
    if f.samples:
        props["samples"] = list(f.samples)
    if props:
        result["properties"] = props
    if f.acknowledged is not None:
        result["suppressions"] = [{"kind": "external", "justification": f.acknowledged}]
    return result


def document(report: Report) -> dict[str, Any]:
    """The SARIF log as plain data."""
    rules = _catalogue(report)
    index = {r.id: i for i, r in enumerate(rules)}
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": TOOL_NAME, "version": tool_version(), "rules": [_rule(r) for r in rules],
                                "properties": {"rulesDigest": report.rules_digest}}},
            "invocations": [{"executionSuccessful": True, "exitCode": report.exit_code}],
            "results": [_result(f, index) for f in report.findings],
        }],
    }


def render(report: Report, *, color: bool = False) -> str:
    """Pretty-printed SARIF JSON."""
    return json.dumps(document(report), indent=2, ensure_ascii=False) + "\n"
