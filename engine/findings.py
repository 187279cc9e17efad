"""The one finding model shared by generate, lint, check, migrate and verify."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from .locations import Location

SEVERITIES = ("error", "warning", "info")


@dataclass
class Finding:
    """A rule's result at a location. ``samples`` hold identifiers only, never secrets."""

    rule: str
    severity: str
    message: str
    location: Location
    scope: str = "synapse"
    remediation: str = ""
    provider: str | None = None
    option: str | None = None
    table: str | None = None
    count: int | None = None
    samples: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    acknowledged: str | None = None  # the reason, when an acknowledgement matched

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    @property
    def is_database(self) -> bool:
        return self.location.logical is not None

    @property
    def blocking(self) -> bool:
        return self.severity in ("error", "warning") and self.acknowledged is None

    @property
    def fingerprint(self) -> str:
        """Stable identity across edits: rule, file, key path, provider, option, table."""
        parts = [self.rule, self.location.file, self.location.key_path, self.provider or "", self.option or "",
                 self.table or ""]
        return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()

    def sort_key(self) -> tuple:
        if self.is_database:
            return (1, "", 0, 0, self.rule, self.table or "", self.location.logical or "")
        return (0, self.location.file, self.location.line, self.location.column, self.rule, self.provider or "",
                self.option or "")


def note(message: str, location: Location, rule: str = "note") -> Finding:
    """An informational finding (generate notes, load notes, unused acknowledgements)."""
    return Finding(rule=rule, severity="info", message=message, location=location, scope="synapse")


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """checks.md 1.4: configuration findings by file/line/column/rule, then database findings by rule/table."""
    return sorted(findings, key=lambda f: f.sort_key())


def exit_code(findings: list[Finding]) -> int:
    """0 clean, 10 any error, 11 unacknowledged warnings only (checks.md 2)."""
    if any(f.severity == "error" for f in findings):
        return 10
    if any(f.severity == "warning" and f.acknowledged is None for f in findings):
        return 11
    return 0
