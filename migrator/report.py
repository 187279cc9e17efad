"""The migration report (data-migration.md §14.5): per-entity counts, skip reasons, anomalies, timings.

Only counts and identifiers-free facts go in here; never a token, hash, address or secret.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

ENTITIES: tuple[str, ...] = ("users", "passwords", "emails", "unsupported_threepids", "links", "devices",
                             "deviceless_sessions", "access_tokens", "refresh_tokens")

SKIP_REASONS: frozenset[str] = frozenset({
    "appservice-user", "guest-user", "deactivated-user", "empty-password-hash", "unmapped-provider",
    "puppet-token", "device-missing", "hidden-device", "refresh-superseded", "refresh-token-missing",
    "refresh-token-shared",
})

ANOMALIES: tuple[str, ...] = ("invalid-ip", "expired", "creation-ts-missing", "unapproved", "hidden-null-device",
                              "non-guest-guest-device", "unpaired-refresh-token", "timestamp-out-of-range")

# MAS table (and row filter) holding each entity, for reconciliation (§13).
ENTITY_TABLES: dict[str, tuple[str, str]] = {
    "users": ("users", "TRUE"),
    "passwords": ("user_passwords", "TRUE"),
    "emails": ("user_emails", "TRUE"),
    "unsupported_threepids": ("user_unsupported_third_party_ids", "TRUE"),
    "links": ("upstream_oauth_links", "TRUE"),
    "devices": ("compat_sessions", "device_id IS NOT NULL"),
    "deviceless_sessions": ("compat_sessions", "device_id IS NULL"),
    "access_tokens": ("compat_access_tokens", "TRUE"),
    "refresh_tokens": ("compat_refresh_tokens", "TRUE"),
}


@dataclass
class EntityStats:
    """Rows read for one entity, how many were migrated, and why the others were skipped."""

    read: int = 0
    migrated: int = 0
    skipped: Counter = field(default_factory=Counter)

    def skip(self, reason: str) -> None:
        """Count one skipped row; ``reason`` must be one of the closed vocabulary of §14.5."""
        assert reason in SKIP_REASONS, reason
        self.skipped[reason] += 1

    @property
    def expected(self) -> int:
        """Rows that must be in MAS: read minus skipped."""
        return self.read - sum(self.skipped.values())


def _iso(ts: datetime | None) -> str | None:
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z") if ts else None


@dataclass
class MigrationReport:
    """Everything a run learned; ``to_dict`` gives the versioned JSON document of §14.5."""

    mode: str
    run_start: datetime
    source_kind: str = ""
    server_name: str = ""
    mas_schema_version: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    entities: dict[str, EntityStats] = field(default_factory=lambda: {e: EntityStats() for e in ENTITIES})
    anomalies: Counter = field(default_factory=lambda: Counter({a: 0 for a in ANOMALIES}))
    reconciliation: list[dict[str, Any]] = field(default_factory=list)
    sample_mismatches: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=lambda: {"read": 0.0, "copy": 0.0, "rebuild": 0.0,
                                                                 "total": 0.0})
    findings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reconciled(self) -> bool:
        """True when every reconciled count matched and no sampled user differed."""
        return all(r["status"] == "ok" for r in self.reconciliation) and not self.sample_mismatches

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready report."""
        from importlib import metadata

        try:
            version = metadata.version("syn2mas")
        except metadata.PackageNotFoundError:
            version = "0.0.0"
        return {
            "schema_version": 1,
            "tool": {"name": "syn2mas", "version": version},
            "mode": self.mode,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "run_start": _iso(self.run_start),
            "source": {"kind": self.source_kind, "server_name": self.server_name},
            "target": {"mas_schema_version": self.mas_schema_version},
            "entities": {name: {"read": s.read, "migrated": s.migrated, "skipped": dict(sorted(s.skipped.items()))}
                         for name, s in self.entities.items()},
            "anomalies": dict(self.anomalies),
            "reconciliation": self.reconciliation,
            "samples": {"mismatches": self.sample_mismatches},
            "timings_s": {k: round(v, 3) for k, v in self.timings_s.items()},
            "findings": self.findings,
        }

    def write(self, path: str) -> None:
        """Write the JSON report to ``path``."""
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=2)
            fh.write("\n")

    def summary_lines(self) -> list[str]:
        """A short human summary: one line per entity."""
        lines = []
        for name, s in self.entities.items():
            skipped = ", ".join(f"{k} {v}" for k, v in sorted(s.skipped.items()))
            lines.append(f"{name:22} read {s.read:>9}  migrated {s.migrated:>9}" + (f"  skipped: {skipped}" if skipped
                                                                                    else ""))
        notable = {k: v for k, v in self.anomalies.items() if v}
        if notable:
            lines.append("anomalies: " + ", ".join(f"{k} {v}" for k, v in sorted(notable.items())))
        return lines
