"""GitHub Actions workflow commands: `::error file=...,line=...,col=...,title=<rule>::<message>`, grouped per file."""
from __future__ import annotations

from itertools import groupby

from .model import Report, display_path, group_key

_LEVEL = {"error": "error", "warning": "warning", "info": "notice"}


def escape_data(text: str) -> str:
    """Escape a command's message: `%`, CR and LF (GitHub's toolkit `escapeData`)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a property value: as data, plus `:` and `,` (GitHub's toolkit `escapeProperty`)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render(report: Report, *, color: bool = False) -> str:
    """Annotations per finding; accepted warnings become notices that say why they were accepted."""
    lines: list[str] = []
    for heading, group in groupby(report.findings, key=group_key):
        lines.append(f"::group::{escape_data(heading)}")
        for f in group:
            shown = display_path(f.location.file)
            level = "notice" if f.acknowledged is not None else _LEVEL[f.severity]
            title = f.rule + (" (accepted)" if f.acknowledged is not None else "")
            props = [f"file={escape_property(shown)}"] if shown else []
            props += [f"line={f.location.line}", f"col={f.location.column}", f"title={escape_property(title)}"]
            text = f.message
            if f.location.logical:
                text = f"[{f.location.logical}] {text}"
            if f.remediation and f.severity != "info":
                text += "\nFix: " + f.remediation
            if f.acknowledged is not None:
                text += "\nAccepted: " + f.acknowledged
            lines.append(f"::{level} {','.join(props)}::{escape_data(text)}")
        lines.append("::endgroup::")
    for s in report.skipped:
        lines.append(f"skipped: {s.rule} ({s.reason})")
    lines.append(report.summary_line())
    return "\n".join(lines) + "\n"
