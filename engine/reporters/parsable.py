"""One line per finding, `file:line:col: [severity] message (rule)`, for goldens and editors."""
from __future__ import annotations

from .model import Report, display_path, one_line


def render(report: Report, *, color: bool = False) -> str:
    """The parsable report (never coloured); accepted warnings end with `[accepted]`."""
    lines = []
    for f in report.findings:
        where = f"[{f.location.logical}] " if f.location.logical else ""
        accepted = " [accepted]" if f.acknowledged is not None else ""
        lines.append(f"{display_path(f.location.file)}:{f.location.line}:{f.location.column}: [{f.severity}] "
                     f"{where}{one_line(f.message)} ({f.rule}){accepted}")
    return "".join(line + "\n" for line in lines)
