"""What every report format renders: findings (acknowledgements applied), skipped rules, inputs, the rule catalogue."""
from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..findings import Finding, exit_code

SCHEMA_VERSION = 1
TOOL_NAME = "syn2mas"
# Rule ids the engine uses for informational findings that are not check rules.
NOTE_RULES = {
    "note": "A remark made while loading or checking (never changes the exit code).",
    "unused-acknowledgement": "An acknowledgement matched no finding; remove it if the warning is gone for good.",
    "expired-acknowledgement": "An acknowledgement is past its `until` date and no longer applies.",
}


@dataclass(frozen=True)
class InputFile:
    """A file the command read, for the JSON report (`inputs`)."""

    path: str
    kind: str
    sha256: str

    @classmethod
    def of(cls, path: str, kind: str) -> "InputFile":
        with open(path, "rb") as fh:
            return cls(path, kind, hashlib.sha256(fh.read()).hexdigest())


@dataclass(frozen=True)
class RuleInfo:
    """The catalogue entry of a rule as reports need it (SARIF `tool.driver.rules`)."""

    id: str
    severity: str
    scope: str
    summary: str
    remediation: str


@dataclass
class Report:
    """Everything a writer needs; writers add no logic of their own beyond layout and escaping."""

    command: str
    findings: list[Finding]
    skipped: list[Any] = field(default_factory=list)
    inputs: list[InputFile] = field(default_factory=list)
    rules: list[RuleInfo] = field(default_factory=list)
    rules_digest: str = ""

    @property
    def exit_code(self) -> int:
        return exit_code(self.findings)

    def counts(self) -> dict[str, int]:
        """Findings per severity (acknowledged warnings counted apart), as in the summary line."""
        out = {"error": 0, "warning": 0, "info": 0, "acknowledged": 0}
        for f in self.findings:
            out["acknowledged" if f.acknowledged is not None else f.severity] += 1
        return out

    def summary_line(self) -> str:
        """`2 errors, 3 warnings, 1 accepted: migration blocked` (style.md 5)."""
        c = self.counts()
        parts = [_plural(c["error"], "error"), _plural(c["warning"], "warning"), f"{c['acknowledged']} accepted"]
        if c["info"]:
            parts.append(_plural(c["info"], "note"))
        verdict = {10: "migration blocked",
                   11: "review the warnings, then fix or acknowledge them",
                   0: "ready to migrate"}[self.exit_code]
        return f"{', '.join(parts)}: {verdict}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@functools.lru_cache(maxsize=None)
def tool_version() -> str:
    """The installed distribution's version, else the one in pyproject.toml (running from a checkout)."""
    from importlib import metadata

    try:
        return metadata.version(TOOL_NAME)
    except metadata.PackageNotFoundError:
        pyproject = os.path.join(os.path.dirname(__file__), "..", "..", "pyproject.toml")
        with open(pyproject, encoding="utf-8") as fh:
            found = re.search(r'^version\s*=\s*"([^"]+)"', fh.read(), re.M)
        return found.group(1) if found else "unknown"


def rules_digest(rules_dir: str) -> str:
    """sha256 over every file under the rules directory (path and content), so reports say which rules ran."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(rules_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".yaml", ".sql")):
                path = os.path.join(root, name)
                digest.update(os.path.relpath(path, rules_dir).replace(os.sep, "/").encode() + b"\0")
                with open(path, "rb") as fh:
                    digest.update(fh.read() + b"\0")
    return "sha256:" + digest.hexdigest()


def one_line(text: str) -> str:
    """Messages are one line in line-oriented formats (a schema message may hold a newline); control
    characters that came from the data are shown escaped (:func:`visible`)."""
    return visible(" ".join(text.split()))


# C0 and C1 controls, DEL, and the invisible format characters that reorder or hide text (bidi overrides,
# zero-width ones): a device id or user id holding them must not move the cursor, clear the terminal or
# forge a line of the report.
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")


def visible(text: str) -> str:
    """``text`` with its control and invisible format characters written as ``\\xNN`` or ``\\uNNNN``."""
    return _INVISIBLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                          else f"\\u{ord(m.group()):04x}", text)


def group_key(finding: Finding) -> str:
    """Per-file groups for configuration findings; database findings form one group of their own."""
    return "databases" if finding.is_database else display_path(finding.location.file) or "(no file)"


def display_path(path: str) -> str:
    """A path relative to the working directory when it is below it (what CI annotations expect)."""
    if not path or not os.path.isabs(path):
        return path.replace(os.sep, "/")
    rel = os.path.relpath(path)
    return (path if rel.startswith("..") else rel).replace(os.sep, "/")
