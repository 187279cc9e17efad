"""The versioned JSON document (style.md 5): schema_version, tool, inputs, findings, summary, skipped_rules."""
from __future__ import annotations

import json
from typing import Any

from ..findings import Finding
from .model import SCHEMA_VERSION, TOOL_NAME, Report, display_path, tool_version


def finding_dict(f: Finding) -> dict[str, Any]:
    """One finding with a fixed key order; absent optional fields are null."""
    return {
        "rule": f.rule,
        "severity": f.severity,
        "scope": f.scope,
        "message": f.message,
        "remediation": f.remediation,
        "location": {"file": display_path(f.location.file), "line": f.location.line, "column": f.location.column,
                     "key_path": f.location.key_path, "logical": f.location.logical},
        "provider": f.provider,
        "option": f.option,
        "table": f.table,
        "count": f.count,
        "samples": list(f.samples),
        "fingerprint": f.fingerprint,
        "acknowledged": {"reason": f.acknowledged} if f.acknowledged is not None else None,
    }


def document(report: Report) -> dict[str, Any]:
    """The report as plain data (also used by tests and by `check`)."""
    counts = report.counts()
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": TOOL_NAME, "version": tool_version(), "rules_digest": report.rules_digest},
        "command": report.command,
        "inputs": [{"path": display_path(i.path), "kind": i.kind, "sha256": i.sha256} for i in report.inputs],
        "findings": [finding_dict(f) for f in report.findings],
        "summary": {"errors": counts["error"], "warnings": counts["warning"], "info": counts["info"],
                    "acknowledged": counts["acknowledged"], "blocking": report.exit_code != 0,
                    "exit_code": report.exit_code},
        "skipped_rules": [{"rule": s.rule, "reason": s.reason} for s in report.skipped],
    }


def render(report: Report, *, color: bool = False) -> str:
    """Pretty-printed, deterministic JSON."""
    return json.dumps(document(report), indent=2, ensure_ascii=False) + "\n"
