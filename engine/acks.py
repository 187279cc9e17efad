"""Accepting reviewed warnings: the acknowledgements file, `--accept RULE=REASON`, and applying them (checks.md 3)."""
from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from .errors import ConfigError, Syn2MasError
from .findings import Finding
from .locations import Location
from .yamlsource import LoadedYaml, load_yaml_file

DEFAULT_FILE = "syn2mas-acknowledgements.yaml"
WHERE_KEYS = ("provider", "option", "table", "key_path", "file")
_ENTRY_KEYS = {"rule", "reason", "by", "until", "max_count", "where"}
_MIN_REASON = 10
UNUSED_RULE = "unused-acknowledgement"
EXPIRED_RULE = "expired-acknowledgement"


@dataclass
class Acknowledgement:
    """One accepted warning: which rule, why, optionally until when, up to which count, and where."""

    rule: str
    reason: str
    location: Location
    by: str | None = None
    until: _dt.date | None = None
    max_count: int | None = None
    where: dict[str, str] = field(default_factory=dict)
    used: int = 0

    def expired(self, today: _dt.date) -> bool:
        return self.until is not None and self.until < today

    def matches(self, finding: Finding) -> bool:
        """Same rule, every `where` key equal to the finding's field, count within `max_count`."""
        if finding.rule != self.rule or finding.severity != "warning":
            return False
        if self.max_count is not None and finding.count is not None and finding.count > self.max_count:
            return False
        return all(_same_file(finding.location.file, value) if key == "file" else _field(finding, key) == value
                   for key, value in self.where.items())


def _same_file(a: str, b: str) -> bool:
    return os.path.normpath(a) == os.path.normpath(b) or os.path.abspath(a) == os.path.abspath(b)


def _field(finding: Finding, key: str) -> str | None:
    return finding.location.key_path if key == "key_path" else getattr(finding, key)


class _EntryReader:
    """Validates one entry of the file; every error names the file and line of the offending key."""

    def __init__(self, loaded: LoadedYaml, index: int, acknowledgeable: Mapping[str, bool]):
        self.loaded = loaded
        self.base = ("acknowledgements", index)
        self.acknowledgeable = acknowledgeable

    def fail(self, message: str, key: tuple = (), hint: str | None = None) -> ConfigError:
        path = self.base + key
        while path and path not in self.loaded.positions:
            path = path[:-1]
        loc = self.loaded.positions.get(path, Location(self.loaded.path, 1, 1))
        return ConfigError(message, file=self.loaded.path, line=loc.line, column=loc.column,
                           key=".".join(str(k) for k in self.base + key), hint=hint)

    def read(self, entry: Any) -> Acknowledgement:
        if not isinstance(entry, dict):
            raise self.fail("an acknowledgement must be a mapping with at least `rule` and `reason`")
        unknown = sorted(str(k) for k in entry if k not in _ENTRY_KEYS)
        if unknown:
            raise self.fail(f"unknown key `{unknown[0]}` in an acknowledgement", (unknown[0],),
                            f"allowed keys: {', '.join(sorted(_ENTRY_KEYS))}")
        rule = check_rule(entry.get("rule"), self.acknowledgeable, lambda m, h=None: self.fail(m, ("rule",), h))
        reason = check_reason(entry.get("reason"), lambda m, h=None: self.fail(m, ("reason",), h))
        by = entry.get("by")
        if by is not None and not isinstance(by, str):
            raise self.fail("`by` must be a string (who accepted the warning)", ("by",))
        loc = self.loaded.positions.get(self.base, Location(self.loaded.path, 1, 1))
        return Acknowledgement(rule=rule, reason=reason, location=loc, by=by, until=self._until(entry.get("until")),
                               max_count=self._max_count(entry.get("max_count")), where=self._where(entry.get("where")))

    def _until(self, value: Any) -> _dt.date | None:
        if value is None:
            return None
        try:
            return _dt.date.fromisoformat(str(value))
        except ValueError:
            raise self.fail("`until` must be an ISO date such as 2026-12-31", ("until",)) from None

    def _max_count(self, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail("`max_count` must be a non-negative whole number", ("max_count",))
        return value

    def _where(self, value: Any) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail("`where` must be a mapping of finding fields to values", ("where",))
        for key, sub in value.items():
            if key not in WHERE_KEYS:
                raise self.fail(f"unknown `where` key `{key}`", ("where", key),
                                f"`where` may use {', '.join(WHERE_KEYS)}")
            if not isinstance(sub, (str, int)) or isinstance(sub, bool):
                raise self.fail(f"`where.{key}` must be a string", ("where", key))
        return {str(k): str(v) for k, v in value.items()}


def check_rule(rule: Any, acknowledgeable: Mapping[str, bool], fail) -> str:
    """The rule id if it names a rule that can report a warning; else ``fail(message, hint)`` is raised."""
    if not isinstance(rule, str) or not rule:
        raise fail("`rule` is required: the id of the warning rule to accept")
    if rule not in acknowledgeable:
        raise fail(f"unknown rule `{rule}`", "`syn2mas rules list` shows the rule ids")
    if not acknowledgeable[rule]:
        raise fail(f"`{rule}` reports errors only, and errors cannot be acknowledged (checks.md 3.1)",
                   "fix the cause of the error instead")
    return rule


def check_reason(reason: Any, fail) -> str:
    """The reason if it has at least 10 non-blank characters; else ``fail(message, hint)`` is raised."""
    if not isinstance(reason, str) or sum(1 for c in reason if not c.isspace()) < _MIN_REASON:
        raise fail(f"`reason` is required and must contain at least {_MIN_REASON} non-blank characters",
                   "say why the warning is acceptable, and who decided")
    return reason.strip()


def load_file(path: str, acknowledgeable: Mapping[str, bool]) -> list[Acknowledgement]:
    """Read and validate an acknowledgements file; any problem is a :class:`ConfigError` with file and line."""
    loaded = load_yaml_file(path, (1, 2))
    data = loaded.data
    if not isinstance(data, dict):
        raise ConfigError("an acknowledgements file must be a mapping with `version: 1` and `acknowledgements`",
                          file=path, line=1)
    if data.get("version") != 1:
        loc = loaded.positions.get(("version",), Location(path, 1, 1))
        raise ConfigError("unsupported acknowledgements file version (expected `version: 1`)", file=path,
                          line=loc.line, column=loc.column, key="version")
    unknown = sorted(str(k) for k in data if k not in ("version", "acknowledgements"))
    if unknown:
        loc = loaded.positions.get((unknown[0],), Location(path, 1, 1))
        raise ConfigError(f"unknown top-level key `{unknown[0]}`", file=path, line=loc.line, column=loc.column)
    entries = data.get("acknowledgements") or []
    if not isinstance(entries, list):
        loc = loaded.positions.get(("acknowledgements",), Location(path, 1, 1))
        raise ConfigError("`acknowledgements` must be a list", file=path, line=loc.line, column=loc.column)
    return [_EntryReader(loaded, i, acknowledgeable).read(e) for i, e in enumerate(entries)]


def parse_accept(values: list[str], acknowledgeable: Mapping[str, bool]) -> list[Acknowledgement]:
    """`--accept RULE=REASON` entries (no selector); a bad one is a usage error."""
    out = []
    for value in values:
        rule, sep, reason = value.partition("=")

        def fail(message: str, hint: str | None = None, _v=value) -> Syn2MasError:
            return Syn2MasError(f"--accept {_v!r}: {message}", hint=hint)

        if not sep:
            raise fail("expected RULE=REASON", "for example --accept guests-in-database='Historic guests, OPS-123'")
        out.append(Acknowledgement(rule=check_rule(rule.strip(), acknowledgeable, fail),
                                   reason=check_reason(reason, fail), location=Location("--accept", 1, 1)))
    return out


def default_file() -> str | None:
    """`syn2mas-acknowledgements.yaml` in the working directory, when it exists."""
    return DEFAULT_FILE if os.path.isfile(DEFAULT_FILE) else None


def apply(findings: list[Finding], acks: list[Acknowledgement], today: _dt.date) -> list[Finding]:
    """Mark matching warnings acknowledged (they stay in every output); return info notes for expired and
    unused entries, so that stale acknowledgements get cleaned up."""
    notes: list[Finding] = []
    active = []
    for ack in acks:
        if ack.expired(today):
            notes.append(Finding(rule=EXPIRED_RULE, severity="info", location=ack.location, scope="synapse",
                                 message=f"the acknowledgement of `{ack.rule}` expired on {ack.until.isoformat()} "
                                         "and no longer applies",
                                 remediation="Review the warning again; extend `until` or remove the entry."))
        else:
            active.append(ack)
    for finding in findings:
        for ack in active:
            if finding.acknowledged is None and ack.matches(finding):
                finding.acknowledged = ack.reason
                ack.used += 1
    for ack in active:
        if not ack.used:
            selector = "".join(f", {k}={v}" for k, v in sorted(ack.where.items()))
            notes.append(Finding(rule=UNUSED_RULE, severity="info", location=ack.location, scope="synapse",
                                 message=f"unused acknowledgement: no `{ack.rule}` warning{selector} was found",
                                 remediation="Remove the entry if the warning is gone for good."))
    return notes
