"""Human output: findings grouped per file, `line:col  severity  message  (rule)`, an "Accepted" section, a summary."""
from __future__ import annotations

from itertools import groupby

from ..findings import Finding
from .model import Report, group_key, one_line, visible

_COLOURS = {"error": "\033[31m", "warning": "\033[33m", "info": "\033[36m", "accepted": "\033[32m"}
_DIM, _BOLD, _RESET = "\033[2m", "\033[1m", "\033[0m"


class _Style:
    def __init__(self, color: bool):
        self.color = color

    def __call__(self, text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if self.color else text


def _position(f: Finding) -> str:
    return f"{f.location.line}:{f.location.column}"


def _line(f: Finding, style: _Style, width: int) -> list[str]:
    label = "accepted" if f.acknowledged is not None else f.severity
    where = f"[{f.location.logical}] " if f.location.logical else ""
    severity = style(f.severity.ljust(7), _COLOURS[label])
    rule = style(f"({f.rule})", _DIM)
    out = [f"  {_position(f).ljust(width)}  {severity}  {where}{one_line(f.message)}  {rule}"]
    if f.samples:
        out.append(" " * (width + 4) + style("samples: " + ", ".join(visible(x) for x in f.samples), _DIM))
    if f.remediation and f.severity != "info":
        out.append(" " * (width + 4) + style("fix: " + one_line(f.remediation), _DIM))
    if f.acknowledged is not None:
        out.append(" " * (width + 4) + style("accepted: " + f.acknowledged, _COLOURS["accepted"]))
    return out


def _section(findings: list[Finding], style: _Style) -> list[str]:
    lines: list[str] = []
    for heading, group in groupby(findings, key=group_key):
        group = list(group)
        width = max(len(_position(f)) for f in group)
        lines.append(style(heading, _BOLD))
        for f in group:
            lines.extend(_line(f, style, width))
    return lines


def render(report: Report, *, color: bool = False) -> str:
    """The text report; ANSI colour only when ``color`` (the caller passes it for a TTY)."""
    style = _Style(color)
    open_findings = [f for f in report.findings if f.acknowledged is None]
    accepted = [f for f in report.findings if f.acknowledged is not None]
    lines = _section(open_findings, style)
    if accepted:
        lines += ["", style("Accepted", _BOLD)] + _section(accepted, style)
    if report.skipped:
        by_reason: dict[str, list[str]] = {}
        for s in report.skipped:
            by_reason.setdefault(s.reason, []).append(s.rule)
        lines.append("")
        for reason, ids in by_reason.items():
            lines.append(f"skipped ({reason}): {', '.join(ids)}")
    if lines:
        lines.append("")
    code = {10: _COLOURS["error"], 11: _COLOURS["warning"], 0: _COLOURS["accepted"]}[report.exit_code]
    lines.append(style(report.summary_line(), code))
    return "\n".join(lines) + "\n"
